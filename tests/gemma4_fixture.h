/* gemma4_fixture.h: building the Gemma 4 decoder and its encoders from a KerasHub fixture's
 * /config attributes (KerasHub names; encoders' prefixed "vision_" / "audio_") and /weights
 * (decoder weights by name, encoders' under vision/ and audio/). Failures fail the running test. */
#ifndef GT_TESTS_GEMMA4_FIXTURE_H
#define GT_TESTS_GEMMA4_FIXTURE_H

#include "models/audio.h"
#include "models/gemma.h"
#include "models/vision4.h"
#include "tests/h5fixture.h"

gt_gemma *gt_fix_gemma4_decoder(gt_h5 f);
void gt_fix_vision4(gt_h5 f, gt_vision4 *v, int64_t out_dim);
void gt_fix_audio_enc(gt_h5 f, gt_audio_enc *a, int64_t out_dim);

#endif
