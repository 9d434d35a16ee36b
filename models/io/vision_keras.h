/* vision_keras.h: the vision encoder of a KerasHub Gemma 3 preset (a Gemma3Backbone whose
 * config.json has "vision_encoder": Gemma3VisionEncoder), read into models/vision.h.
 *
 * Shapes come from config.json's config.vision_encoder.config (image_size, patch_size,
 * num_heads, hidden_dim, num_layers, intermediate_dim, output_dim, pool_size,
 * layer_norm_epsilon); weights from model.weights.h5 under layers/gemma3_vision_encoder/layers/
 * (gemma3_vision_encoder_block: vision_embeddings/{patch_embedding, position_embedding},
 * resblocks/gemma3_vision_encoder_layer[_i]/{attn/{query,key,value,out}_proj, layer_norm_1,
 * layer_norm_2, mlp_dense_1, mlp_dense_2}, encoder_layer_norm; gemma3_vision_output:
 * vision_soft_embedding_norm, vision_input_projection), as Keras 3 writes them (checked on a
 * preset keras_hub 0.32 saved: tests/fixtures/presets/gemma3_mm). Dense kernels are transposed
 * to our (out, in), the conv kernel (p, p, 3, D) to [D, p*p*3].
 * Ownership: *out is the caller's (gt_vision_free); NULL with 0 returned when the preset has no
 * encoder. Errors: -1 and one line naming the file and the key or HDF5 path (a missing or
 * misshapen tensor, a config field out of range).
 * Writing mirrors reading: gt_vision_keras_write puts every encoder tensor (LoRA adapters merged
 * as W + (alpha/r) A B) at the paths above in an HDF5 file open for writing, and
 * gt_vision_keras_config_json builds the config.vision_encoder object KerasHub deserialises. */
#ifndef GT_VISION_KERAS_H
#define GT_VISION_KERAS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "models/io/h5io.h"
#include "models/vision.h"

/* *has = whether dir/config.json has a vision encoder; its shapes into *vc. */
int gt_vision_keras_config(const char *dir, gt_vision_config *vc, bool *has, char *err, size_t errn);
int gt_vision_keras_load(const char *dir, bool trainable, gt_vision **out, char *err, size_t errn);

/* The encoder's tensors into f (model.weights.h5 being written), with Keras' layer names; its
 * adapters folded in when merge_lora, else the base weights. */
int gt_vision_keras_write(gt_h5 f, const gt_vision *v, bool merge_lora, char *err, size_t errn);
/* {"module", "class_name": "Gemma3VisionEncoder", "config": {...}, "registered_name"}; NULL when
 * out of memory. */
json_t *gt_vision_keras_config_json(const gt_vision_config *vc);

#endif
