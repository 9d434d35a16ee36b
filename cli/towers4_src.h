/* towers4_src.h: the Gemma 4 vision / audio towers of a model path, whatever its format (a
 * KerasHub preset: models/io/towers4_keras.h; a Hugging Face directory: hf_vision4 / hf_audio;
 * a GGUF file or a directory without them: none), and whether its image runs are bidirectional
 * (KerasHub's use_vision_bidirectional_attention, HF's text_config.use_bidirectional_attention
 * "vision"). Used by generate (cli/gen_media4.h), convert and export.
 * Errors: -1 with one line naming the file and the key or tensor. */
#ifndef GT_CLI_TOWERS4_SRC_H
#define GT_CLI_TOWERS4_SRC_H

#include <stdbool.h>
#include <stddef.h>

#include "models/audio.h"
#include "models/vision4.h"

/* The towers wanted (v / a NULL: not wanted) that path has: *has_v / *has_a say which were
 * loaded (free them with gt_vision4_free / gt_audio_enc_free). */
int cli_towers4_load(const char *path, gt_vision4 *v, bool *has_v, gt_audio_enc *a, bool *has_a,
                     char *err, size_t errn);
bool cli_towers4_vision_bidir(const char *path);

#endif
