/* keras_lora.h: LoRA adapter files as Keras' Backbone.save_lora_weights / load_lora_weights
 * write and read them (name ends in ".lora.h5").
 *
 * Layout (written through Keras' H5IOStore):
 *   /lora/vars/rank                   int64 scalar
 *   /lora/<i>/vars/lora_kernel_a      float32, kernel.shape[:-1] + (r,): query/key/value (G, D, r),
 *                                     attention_output (N, H, r), ffw_gating[_2] (D, r), ffw_linear (F, r)
 *   /lora/<i>/vars/lora_kernel_b      float32, (r, kernel.shape[-1])
 * where <i> is the layer's index among the backbone's layers that have weights, in Keras'
 * _flatten_layers order (depth first, each layer's children in reverse tracking order).
 * gt_keras_lora_index derives it from the config: index 0 is the token embedding, block b spans
 * 1 + b*P .. with P = 11 + post-attention norm + post-FFW norm + 2 (QK norms), laid out as
 *   block, ffw_linear, ffw_gating_2, ffw_gating, [post_ffw_norm], pre_ffw_norm, attention,
 *   attention_output, [key_norm, query_norm], value, key, query, [post_attention_norm],
 *   pre_attention_norm
 * (checked against files written by keras_hub 0.32 for Gemma 1, 2 and 3: tests/fixtures/presets).
 * Gemma 4 (Gemma4Backbone): index 0 the token embedding, [1-3 the backbone PLE layers], then
 * per block: block, [post_per_layer_input_norm, per_layer_up_proj, per_layer_input_gate],
 *   ffw_linear, ffw_gating_2, ffw_gating, post_ffw_norm, pre_ffw_norm, attention,
 *   attention_output, query_norm, [key_norm], [value], [key], query, post_attention_norm,
 *   pre_attention_norm
 * (key_norm and key on layers with their own k/v, value also needs k != v); -1 for a kernel the
 * layer lacks. Both orders are the keras_flat ranks of the parameter table (gemma_params.c).
 *
 * Keras has no alpha in the file: its layers use scale 1 (alpha = rank). Saving therefore
 * writes B * (alpha / rank) (B itself when alpha == rank, bit for bit); loading into an adapter
 * set with another alpha divides by it again. Keras' load_lora_weights enables LoRA on query and
 * value only (its default); files with other targets need
 * backbone.enable_lora(rank, target_layer_names=[...]) first in Python.
 * Errors: -1 and a one-line message naming the file and the adapter (layer path and index). */
#ifndef GT_KERAS_LORA_H
#define GT_KERAS_LORA_H

#include "models/gemma.h"
#include "models/lora.h"
#include "models/vision.h"

/* Keras layer index of a target of decoder block `layer`. */
int64_t gt_keras_lora_index(const gt_gemma_config *cfg, int64_t layer, gt_lora_target t);

/* Write every adapter of l (atomically: temporary file, fsync, rename). */
int gt_keras_lora_save(const char *path, const gt_lora *l, const gt_gemma_config *cfg, char *err,
                       size_t errn);
/* Read a file into existing adapters: same rank, and exactly l's targets. */
int gt_keras_lora_load(const char *path, gt_lora *l, const gt_gemma_config *cfg, char *err,
                       size_t errn);
/* New adapters (rank and targets from the file, alpha = rank) filled from the file. */
int gt_keras_lora_open(const char *path, const gt_gemma_config *cfg, gt_lora **out, char *err,
                       size_t errn);

/* The same for a Gemma3Backbone with a vision encoder v (NULL: text only, as above): the
 * decoder's indices move past the encoder's layers, and the encoder's own adapters (v's, when it
 * has them) are written after the decoder's / read into v (models/io/vision_lora.h). */
int gt_keras_lora_save_mm(const char *path, const gt_lora *l, const gt_gemma_config *cfg, const gt_vision *v,
                          char *err, size_t errn);
int gt_keras_lora_load_mm(const char *path, gt_lora *l, const gt_gemma_config *cfg, gt_vision *v, char *err,
                          size_t errn);
int gt_keras_lora_open_mm(const char *path, const gt_gemma_config *cfg, gt_vision *v, gt_lora **out, char *err,
                          size_t errn);

#endif
