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
 * Errors: -1 and one line naming the file and the key or tensor.
 * Writing mirrors reading for models/io/hf_gemma.h's Gemma3ForConditionalGeneration output:
 * gt_vision_hf_tensors lays the encoder out under vision_tower.vision_model. and
 * multi_modal_projector. (the names of Google's checkpoints; LoRA adapters merged), and
 * gt_vision_hf_config wraps the text model's config.json object into the multimodal one
 * (text_config, vision_config as siglip_vision_model without the pooling head,
 * mm_tokens_per_image, the image token ids). */
#ifndef GT_VISION_HF_H
#define GT_VISION_HF_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "models/io/safetensors.h"
#include "models/vision.h"

int gt_vision_hf_load(const char *dir, bool trainable, gt_vision **out, char *err, size_t errn);

typedef struct gt_vision_hf_out {
    gt_st_entry *e; /* n tensors; names and data owned here */
    int64_t n;
} gt_vision_hf_out;

/* The encoder's tensors in HF's names and layouts (fp32). -1 with a message when out of memory. */
int gt_vision_hf_tensors(const gt_vision *v, gt_vision_hf_out *out, char *err, size_t errn);
void gt_vision_hf_out_free(gt_vision_hf_out *o);
/* Takes text (the Gemma3ForCausalLM config.json object; stolen) and returns the
 * Gemma3ForConditionalGeneration one; ids: <start_of_image>, <end_of_image>, the image token
 * (-1: transformers' defaults 255999, 256000, 262144). NULL when out of memory. */
json_t *gt_vision_hf_config(const gt_vision_config *vc, json_t *text, const int32_t ids[3]);

#endif
