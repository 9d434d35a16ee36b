/* vision_hf.h: the vision tower and projector of a Hugging Face Gemma3ForConditionalGeneration
 * directory (config.json + safetensors), read into models/vision.h.
 *
 * Shapes from config.json: vision_config (image_size, patch_size, num_attention_heads,
 * hidden_size, num_hidden_layers, intermediate_size, layer_norm_eps), text_config.hidden_size
 * (output_dim) and mm_tokens_per_image (pool = patches per side / tokens per side). Tensors under
 * the first prefix that has them: model.vision_tower.vision_model., vision_tower.vision_model.,
 * model.vision_tower., vision_tower. (embeddings.{patch,position}_embedding, encoder.layers.<i>.
 * {layer_norm1, layer_norm2, self_attn.{q,k,v,out}_proj, mlp.fc1, mlp.fc2}, post_layernorm) and
 * model.multi_modal_projector. or multi_modal_projector. (mm_soft_emb_norm.weight,
 * mm_input_projection_weight [vision, text], transposed to our (out, in)); SigLIP's pooling head
 * (vision_use_head) is not part of Gemma 3 and is skipped. The conv weight (D, 3, p, p) becomes
 * our [D, p*p*3] in (row, column, channel) order.
 * Ownership: *out is the caller's; NULL with 0 returned when config.json has no vision_config.
 * Errors: -1 and one line naming the file and the key or tensor. Writing: not yet. */
#ifndef GT_VISION_HF_H
#define GT_VISION_HF_H

#include <stdbool.h>
#include <stddef.h>

#include "models/vision.h"

int gt_vision_hf_load(const char *dir, bool trainable, gt_vision **out, char *err, size_t errn);

#endif
