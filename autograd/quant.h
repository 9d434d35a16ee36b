/* quant.h: GGUF blocks, the quantised storage of frozen matrices (model.frozen_dtype q8_0, q4_k).
 *
 * A Q8_0 block holds 32 consecutive values of one row as an IEEE fp16 scale d followed by 32
 * signed bytes q (34 bytes, the layout of ggml's block_q8_0, so GGUF Q8_0 tensors are used as
 * they lie in the file): value i = d * q[i]. A [rows, cols] matrix is rows * cols / 32 blocks,
 * row-major, cols a multiple of 32.
 *   gt_q8_quantize: d = max|x| / 127 (before rounding d to fp16), q = round(x * (1/d)), halves away
 *                   from zero, all in fp32: bit-equal to the gguf Python package's Q8_0
 *                   (tools/reference/make_quant_fixture.py); an all-zero block gets d = 0.
 *   gt_q8_dequant:  exact given the block (d widened from fp16, times q in fp32).
 * n counts values and must be a multiple of 32. Pure functions: safe from any thread.
 *
 * Kept GGUF block types (model.frozen_dtype q4_k keeps a GGUF's blocks as they lie in the file),
 * named by their ggml type ids: Q5_0 (32 values in 22 bytes), Q8_0, Q4_K (256 in 144: eight
 * sub-blocks of 32 with 6-bit scales and mins), Q6_K (256 in 210). gt_qt_block_f32 decodes one
 * block bit-equal to the gguf Python package's dequantize (tests/fixtures/quant_k.h5). Q4_K also
 * has a quantiser (gt_q4k_quantize); Q6_K and Q5_0 are only kept as a GGUF provides them. */
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

/* ggml type ids of the block types a frozen matrix may keep */
enum { GT_QT_Q5_0 = 6, GT_QT_Q8_0 = 8, GT_QT_Q4_K = 12, GT_QT_Q6_K = 14 };

/* Values per block (32 or 256) of a kept type; 0 for any other id. */
int gt_qt_block(uint32_t type);
/* Bytes per block of a kept type; 0 for any other id. */
int gt_qt_block_bytes(uint32_t type);
/* Bytes of n values (a multiple of the block) stored as type. */
int64_t gt_qt_bytes(uint32_t type, int64_t n);
/* One block of a kept type into gt_qt_block(type) floats (nothing for another id). */
void gt_qt_block_f32(uint32_t type, const uint8_t *b, float *y);
/* n values (a multiple of 256) as Q4_K blocks, byte-equal to ggml's reference quantiser
 * (quantize_row_q4_K_ref; tests/fixtures/quant_k.h5 /q4_k_quant, made through llama-cpp-python's
 * libggml). Threaded over blocks. */
void gt_q4k_quantize(const gt_real *src, uint8_t *dst, int64_t n);
/* "Q8_0", "Q4_K", ...; "?" for another id. */
const char *gt_qt_name(uint32_t type);

#endif
