/* gemma_gguf.h: a Gemma model (config + fp32 weights) from a llama.cpp GGUF file.
 *
 * Architecture keys gemma / gemma2 / gemma3 give the config (shapes, epsilon, sliding window,
 * RoPE base and scaling, soft-caps); llama.cpp's hard-coded facts fill the rest (local RoPE base
 * 10000, Gemma 2 pattern 2, Gemma 3 pattern 6); the keys are the field table's GGUF column
 * (models/gemma_fields.h); Gemma 4 (gemma4, dense and MoE) is gemma4_gguf.h's. Tensors are dequantised to fp32 and mapped to
 * KerasHub names; llama.cpp's converter stored every RMSNorm weight as 1 + w, so 1 is subtracted
 * to get KerasHub's w back. A missing tensor or a shape mismatch is an error naming the tensor.
 * Ownership: gt_gemma_from_gguf returns a new model the caller frees (gt_gemma_free); nothing of
 * the gt_gguf is kept. Errors: -1 and one line. */
#ifndef GT_GEMMA_GGUF_H
#define GT_GEMMA_GGUF_H

#include "models/gemma.h"
#include "models/io/gguf.h"

int gt_gemma_config_from_gguf(const gt_gguf *g, gt_gemma_config *cfg, char *err, size_t errn);
int gt_gemma_from_gguf(const gt_gguf *g, bool trainable, gt_gemma **out, char *err, size_t errn);
/* A frozen model stored as dt (gemma.h) read straight into that storage: Q8_0 tensors into q8_0
 * as they are (no requantisation), any other type (Q4_K, F16, ...) dequantised a slice of rows at
 * a time and quantised or rounded; never an fp32 copy of the matrices. */
int gt_gemma_from_gguf_frozen(const gt_gguf *g, gt_frozen_dtype dt, gt_gemma **out, char *err, size_t errn);

#endif
