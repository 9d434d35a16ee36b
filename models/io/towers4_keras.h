/* towers4_keras.h: the vision and audio encoders of a KerasHub Gemma 4 preset (Gemma4Backbone
 * with "vision_encoder": Gemma4VisionEncoder and/or "audio_encoder": Gemma4AudioEncoder in
 * config.json), read into models/vision4.h and models/audio.h, and written back.
 *
 * Shapes come from config.json's config.vision_encoder.config / config.audio_encoder.config
 * (KerasHub's get_config keys; standardize, non-default subsampling kernels/strides and a
 * reduction factor other than 1 are refused, naming the key). Weights come from
 * model.weights.h5 as Keras 3 saves the backbone (checked on a preset keras_hub 0.32 saved:
 * tests/fixtures/presets/gemma4_towers):
 *   layers/gemma4_vision_encoder/layers/gemma4_vision_encoder_block/{patch_embedder/...,
 *     encoder_blocks/gemma4_vision_decoder_block[_i]/...}, .../gemma4_vision_output/...
 *   layers/gemma4_audio_encoder/{layers/gemma4_audio_sub_sample_conv_projection/...,
 *     conformer_blocks/gemma4_audio_conformer_block[_i]/..., layers/dense (output_proj: the
 *     layer's auto-generated Keras name), audio_output_projection}
 * A clipped dense keeps its kernel at <layer>/dense/vars/0 and its four bounds as scalars at
 * <layer>/vars/0-3 (input min, max, output min, max). Only the vision q/k/v kernels change
 * layout: Keras (heads, D, head_dim), ours [D, heads * head_dim].
 * Errors: -1 and one line naming the file and the key or HDF5 path (a missing or misshapen
 * tensor, a config field missing or out of range). */
#ifndef GT_MODELS_IO_TOWERS4_KERAS_H
#define GT_MODELS_IO_TOWERS4_KERAS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "models/audio.h"
#include "models/io/h5io.h"
#include "models/vision4.h"

/* Which encoders dir/config.json has, and their shapes (either pointer may be NULL). */
int gt_towers4_keras_config(const char *dir, gt_vision4_config *vc, bool *has_vision,
                            gt_audio_enc_config *ac, bool *has_audio, char *err, size_t errn);
/* Config and weights: *v and *a are initialised when present (gt_vision4_free /
 * gt_audio_enc_free them), zeroed when absent; NULL skips that encoder. */
int gt_towers4_keras_load(const char *dir, gt_vision4 *v, bool *has_vision, gt_audio_enc *a,
                          bool *has_audio, char *err, size_t errn);

/* The encoders' tensors into f (model.weights.h5 being written); either may be NULL. */
int gt_towers4_keras_write(gt_h5 f, const gt_vision4 *v, const gt_audio_enc *a, char *err,
                           size_t errn);
/* The serialized encoder objects KerasHub deserialises; NULL when out of memory. */
json_t *gt_towers4_keras_vision_json(const gt_vision4_config *c);
json_t *gt_towers4_keras_audio_json(const gt_audio_enc_config *c);

#endif
