/* gguf_export.h: a Gemma model (and its tokenizer), or LoRA adapters, as llama.cpp GGUF files.
 *
 * Model: what llama.cpp's convert_hf_to_gguf.py writes for Gemma 1-4 (architecture gemma,
 * gemma2, gemma3, gemma4): the <arch>.* hyperparameters, the tokenizer.ggml.* vocabulary (Gemma's
 * whitespace-run pieces spelled with spaces, as llama.cpp's converter writes them), tensors under
 * the parameter table's GGUF names with Gemma 1-3's RMSNorm weights stored as 1 + w (Gemma 4's
 * keys, per-layer arrays, expert banks and rope_freqs: gemma4_gguf.h). Matrices in the chosen
 * type (F32, F16, BF16 or Q8_0), vectors in F32. gemma_gguf.h reads the result back.
 * Architectures llama.cpp hard-codes differently (other sliding patterns or local RoPE bases,
 * Gemma 4 layouts gemma4_gguf.h lists) are refused with a message naming the field.
 *
 * Adapters: llama.cpp's LoRA GGUF (general.type "adapter", adapter.type "lora"): per adapted
 * matrix "<tensor>.lora_a" [r_m, in] and ".lora_b" [out, r_m] in F32 (llama.cpp's
 * llama_adapter_lora_init); Keras' per-head query/key/value adapters are written at rank G*r with
 * a block-diagonal B (as the PEFT export), and the scale is folded into B, so
 * adapter.lora.alpha is 0 (llama.cpp then scales by 1).
 * Errors: -1 and one line; the file is replaced atomically.
 * Ownership: nothing of the model, tokenizer or adapters is kept or changed. */
#ifndef GT_GGUF_EXPORT_H
#define GT_GGUF_EXPORT_H

#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/lora.h"

/* type: GT_GGML_F32, _F16, _BF16 or _Q8_0 (models/io/gguf_writer.h). name: general.name. */
int gt_gguf_export_model(const gt_gemma *m, const gt_tokenizer *tok, const char *path, uint32_t type,
                         const char *name, char *err, size_t errn);
int gt_gguf_export_lora(const gt_lora *l, const gt_gemma_config *cfg, const char *path, char *err, size_t errn);

#endif
