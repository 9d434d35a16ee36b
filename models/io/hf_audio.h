/* hf_audio.h: Gemma 4's audio tower from a Hugging Face Gemma4ForConditionalGeneration directory
 * (config.json's audio_config and text_config.hidden_size; model.audio_tower.* and
 * model.embed_audio.embedding_projection.weight from its safetensors), into models/audio.h's
 * encoder, with the layout changes KerasHub's converter makes (linear weights transposed, conv
 * kernels to [kt, kf, in, out], the depthwise kernel to [K, D], the four clip scalars of each
 * clipped linear gathered). HF sizes the subsampling projection as if the mel count equalled
 * subsampling_conv_channels[0], so that is the encoder's input_feat_size.
 * Errors: -1 with one line naming the file and the key or tensor. */
#ifndef GT_MODELS_IO_HF_AUDIO_H
#define GT_MODELS_IO_HF_AUDIO_H

#include <stddef.h>

#include "models/audio.h"

/* Config only (dir/config.json); -1 when it has no audio_config. */
int gt_hf_audio_config(const char *dir, gt_audio_enc_config *c, char *err, size_t errn);
/* Config and weights; m is initialised here (gt_audio_enc_free it). */
int gt_hf_audio_load(const char *dir, gt_audio_enc *m, char *err, size_t errn);

/* The HF tensor name of one of our parameters (a clip's: the prefix to which ".input_min",
 * ".input_max", ".output_min", ".output_max" are added); -1 for an unknown name. */
int gt_hf_audio_name(const char *ours, char *out, size_t n);

#endif
