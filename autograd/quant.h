/* quant.h: GGUF Q8_0 blocks, the quantised storage of frozen matrices (model.frozen_dtype q8_0).
 *
 * A Q8_0 block holds 32 consecutive values of one row as an IEEE fp16 scale d followed by 32
 * signed bytes q (34 bytes, the layout of ggml's block_q8_0, so GGUF Q8_0 tensors are used as
 * they lie in the file): value i = d * q[i]. A [rows, cols] matrix is rows * cols / 32 blocks,
 * row-major, cols a multiple of 32.
 *   gt_q8_quantize: d = max|x| / 127 (before rounding d to fp16), q = round(x * (1/d)), halves away
 *                   from zero, all in fp32: bit-equal to the gguf Python package's Q8_0
 *                   (tools/reference/make_quant_fixture.py); an all-zero block gets d = 0.
 *   gt_q8_dequant:  exact given the block (d widened from fp16, times q in fp32).
 * n counts values and must be a multiple of 32. Pure functions: safe from any thread. */
#ifndef GT_QUANT_H
#define GT_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "autograd/real.h"
#include "util/half.h"

enum { GT_Q8_BLOCK = 32, GT_Q8_BYTES = 34 };

/* Bytes of n values stored as Q8_0. */
static inline int64_t gt_q8_bytes(int64_t n) { return n / GT_Q8_BLOCK * GT_Q8_BYTES; }
void gt_q8_quantize(const gt_real *src, uint8_t *dst, int64_t n);
void gt_q8_dequant(const uint8_t *src, gt_real *dst, int64_t n);
/* One block into 32 floats, inline: for loops that are parallel already (no OpenMP region per
 * call, whose cost exceeds a block's). */
static inline void gt_q8_block_f32(const uint8_t *b, float *y) {
    uint16_t h;
    memcpy(&h, b, 2);
    const float d = gt_f16_to_f32(h);
    const int8_t *q = (const int8_t *)(b + 2);
    for (int k = 0; k < GT_Q8_BLOCK; k++) y[k] = d * (float)q[k];
}

#endif
