/* peft.h: LoRA adapters as Hugging Face PEFT saves and loads them (save_pretrained /
 * PeftModel.from_pretrained): a directory with adapter_config.json and adapter_model.safetensors.
 *
 * Tensor names are PEFT's for the Hugging Face model of the config (gemma_params.c's HF names):
 *   base_model.model.model.layers.<i>.self_attn.q_proj.lora_A.weight   [r_m, in]
 *   base_model.model.model.layers.<i>.self_attn.q_proj.lora_B.weight   [out, r_m]
 * with delta W = scaling * B @ A, scaling = lora_alpha_m / r_m (/ sqrt(r_m) with use_rslora).
 *
 * Our adapters are Keras' (lora.h): query/key/value adapters have one A per head group and a B
 * shared by the groups, which is a standard LoRA of rank G*r with a block-diagonal B. So:
 *  - saving writes, per module, rank G*r (rank_pattern) and lora_alpha G*alpha (alpha_pattern)
 *    where G > 1, else r and alpha: PEFT computes exactly our delta W;
 *  - opening builds adapters of rank R = max over modules of G * r_m (alpha = R, scale 1: each
 *    module's scaling is folded into its B), head group g using A's rows of block g; modules of
 *    smaller rank are zero-padded. The delta W is PEFT's exactly; training on from there uses
 *    the Keras parameterisation at rank R.
 * Refused with a message naming the file and key: peft_type other than LORA, use_dora,
 * bias other than "none", fan_in_fan_out, modules_to_save, tensors for modules the model lacks,
 * shapes that do not fit. Errors: -1 and one line; nothing half-written (files are replaced
 * atomically). */
#ifndef GT_PEFT_H
#define GT_PEFT_H

#include <stdbool.h>

#include "models/gemma_config.h"
#include "models/lora.h"

/* dir is created if needed; base_model (may be NULL) goes to base_model_name_or_path. */
int gt_peft_save(const char *dir, const gt_lora *l, const gt_gemma_config *cfg, const char *base_model,
                 char *err, size_t errn);
/* New adapters for the model of cfg from a PEFT directory; the caller frees them. */
int gt_peft_open(const char *dir, const gt_gemma_config *cfg, gt_lora **out, char *err, size_t errn);
/* A directory holding adapter_config.json. */
bool gt_peft_detect(const char *path);
/* Either adapter format: a PEFT directory or a Keras .lora.h5 (gt_keras_lora_open). */
int gt_adapters_open(const char *path, const gt_gemma_config *cfg, gt_lora **out, char *err, size_t errn);

#endif
