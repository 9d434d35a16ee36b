/* vision_lora.h: Gemma 3's vision-encoder LoRA adapters (models/vision.h) inside a Keras
 * .lora.h5 file (models/io/keras_lora.h), at the indices KerasHub's Backbone.save_lora_weights
 * gives them.
 *
 * In a Gemma3Backbone with a vision encoder, Keras' _flatten_layers order (layers with weights)
 * is: 0 token_embedding, 1 gemma3_vision_encoder, 2 vision_output_encoder, 3
 * vision_input_projection, 4 vision_soft_embedding_norm, 5 image_encoder, then the encoder blocks
 * last to first, 10 layers each (the block, layer_norm_2, mlp_dense_2, mlp_dense_1, layer_norm_1,
 * multi_head_attention, out_proj, value_proj, key_proj, query_proj), then encoder_embeddings,
 * position_embedding, embedding_conv, encoder_layer_norm, and only then the decoder blocks:
 * the decoder's indices move by gt_vision_keras_lora_shift = 9 + 10 x num_layers (checked on
 * keras_hub 0.32's enable_lora for a 2-block encoder: query_proj 15 and 25, value_proj 13 and 23,
 * decoder_block_0's value 40). KerasHub's Gemma3Backbone enables query_proj and value_proj by
 * default; our adapters also cover key_proj and out_proj (Keras needs
 * enable_lora(rank, target_layer_names=[...]) for those).
 * Layout per adapter: lora_kernel_a (in, r), lora_kernel_b (r, out) = B x alpha/rank (Keras' scale
 * is 1), our A [in, r] and B [r, out] as they are.
 * Errors: -1 and one line naming the file and the HDF5 path. */
#ifndef GT_VISION_LORA_H
#define GT_VISION_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "models/io/h5io.h"
#include "models/vision.h"

/* How far an encoder of vc moves the decoder's Keras layer indices. */
int64_t gt_vision_keras_lora_shift(const gt_vision_config *vc);
/* Keras index of block `layer`'s projection k (0 query, 1 key, 2 value, 3 out). */
int64_t gt_vision_keras_lora_index(const gt_vision_config *vc, int64_t layer, int k);

/* v's adapters (none: nothing written) into f, an open .lora.h5 being written. */
int gt_vision_lora_write(gt_h5 f, const char *path, const gt_vision *v, char *err, size_t errn);
/* The encoder adapters f holds (rank = the file's) into v: into its adapters when it has them
 * (same rank; B divided by their alpha/rank), else new ones with alpha = rank. A projection the
 * file lacks gets B = 0. *found: the groups read (0: the file has none; v is left alone). */
int gt_vision_lora_read(gt_h5 f, const char *path, gt_vision *v, int64_t rank, int64_t *found, char *err,
                        size_t errn);

#endif
