/* hf_vision4.h: Gemma 4's vision tower from a Hugging Face Gemma4ForConditionalGeneration
 * directory (config.json's vision_config and text_config.hidden_size; model.vision_tower.* and
 * model.embed_vision.embedding_projection.weight from its safetensors), into models/vision4.h's
 * encoder, as KerasHub's converter maps it: every linear weight (out, in) transposed to our
 * [in, out] (q/k/v to [D, heads * head_dim], o to [heads * head_dim, D]), the position table
 * [2, S, D] and norm scales as they are, a clipped linear's four scalar buffers gathered; the
 * image size (absent from HF's config) is 896, rope_parameters.rope_theta the RoPE base.
 * standardize (the 26B/31B towers' output standardisation) is refused.
 * Errors: -1 with one line naming the file and the key or tensor. */
#ifndef GT_MODELS_IO_HF_VISION4_H
#define GT_MODELS_IO_HF_VISION4_H

#include <stddef.h>

#include "models/vision4.h"

/* Config only (dir/config.json); -1 when it has no vision_config. */
int gt_hf_vision4_config(const char *dir, gt_vision4_config *c, char *err, size_t errn);
/* Config and weights; m is initialised here (gt_vision4_free it). */
int gt_hf_vision4_load(const char *dir, gt_vision4 *m, char *err, size_t errn);

/* The HF tensor name of one of our parameters (a clip's: the prefix to which ".input_min",
 * ".input_max", ".output_min", ".output_max" are added); -1 for an unknown name. */
int gt_hf_vision4_name(const char *ours, char *out, size_t n);

#endif
