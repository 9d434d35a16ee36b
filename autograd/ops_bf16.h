/* ops_bf16.h: frozen matrices stored as bfloat16 or Q8_0, used by fp32 ops without an fp32 copy.
 *
 * A gt_bf16_mat is a [rows, cols] row-major matrix of bfloat16 values (the top 16 bits of an IEEE
 * float) that never receives a gradient: a base model's weights under LoRA. Ops expand it to
 * gt_real a block of rows at a time into the caller's staging buffer (stage_n values, at least
 * cols; rows * cols means one block) and compute in gt_real exactly as with an fp32 matrix
 * holding the same values. The staging buffer is shared state: matrices that share one must not
 * be used by two ops at the same time (one model, one thread of control).
 *
 *   gt_bf16_linear(x, W):    x [..., cols] -> x W^T [..., rows]; backward adds dy W into x's grad
 *   gt_bf16_embedding(W, ids, n): rows ids[0..n) -> [n, cols], no gradient (W is frozen)
 * Q8_0 (fmt GT_WFMT_Q8_0): the values are GGUF Q8_0 blocks at q8 (autograd/quant.h; cols a
 * multiple of 32) instead of bf16 at data; the ops dequantise a block of rows at a time into the
 * staging buffer exactly as they expand bf16 ones, so again the result equals an fp32 matrix
 * holding the dequantised values. With compute_bf16, gt_bf16_linear widens a block of rows
 * (a multiple of 32, half the staging buffer, which must hold 64 rows) to bf16 and multiplies
 * on the bf16 kernel as above: the result of a bf16 matrix holding the dequantised values rounded
 * to bf16 (the LM head and the embedding stay fp32 for Q8_0).
 * GT_WFMT_Q5_0 / Q4_K / Q6_K (model.frozen_dtype q4_k: a GGUF's blocks kept as stored) work
 * exactly as Q8_0 with their own blocks (cols a multiple of their block, 32 or 256; decoded by
 * gt_qt_block_f32 in autograd/quant.h).
 * gt_frozen_rows writes rows [r0, r0 + nr) as gt_real whatever the storage.
 * Conversion (util/half.h): gt_to_bf16_n rounds to nearest, ties to even (NaN stays NaN);
 * gt_bf16_expand is exact.
 * Ownership: a gt_bf16_mat only points at its values and staging buffer (the model owns both);
 * ops return step tensors or NULL with ctx's sticky error set, as tape.h says. */
#ifndef GT_OPS_BF16_H
#define GT_OPS_BF16_H

#include <stdint.h>

#include "autograd/tape.h"
#include "util/half.h"

typedef enum { GT_WFMT_BF16 = 0, GT_WFMT_Q8_0 = 1, GT_WFMT_Q5_0 = 2, GT_WFMT_Q4_K = 3, GT_WFMT_Q6_K = 4 } gt_wfmt;

typedef struct gt_bf16_mat {
    const uint16_t *data;
    int64_t rows, cols;
    gt_real *stage;
    int64_t stage_n;
    /* compute_dtype bfloat16: gt_bf16_linear rounds its activations (x forward, dy backward) to
     * bf16 and multiplies on the CPU's bf16 kernel (autograd/bf16_gemm.h) with fp32 accumulation,
     * W used as stored, no fp32 expansion. Taken only where that kernel is active
     * (gt_bf16_kernel_active), rows and cols are multiples of 32 and the staging buffer holds 32
     * rows; otherwise (and in the f64 build) the fp32 path runs as if this were false. */
    bool compute_bf16;
    gt_wfmt fmt;       /* GT_WFMT_BF16 (data) or a block type (q8) */
    const uint8_t *q8; /* the blocks of fmt (Q8_0, Q5_0, Q4_K, Q6_K), row-major; NULL for bf16 */
} gt_bf16_mat;

void gt_to_bf16_n(const gt_real *src, uint16_t *dst, int64_t n);
void gt_bf16_expand(const uint16_t *src, gt_real *dst, int64_t n);
/* The ggml type id of a block format (autograd/quant.h GT_QT_*); 0 for bf16. */
uint32_t gt_wfmt_qtype(gt_wfmt fmt);
/* The block format of a kept ggml type id; GT_WFMT_BF16 when it is none. */
gt_wfmt gt_wfmt_of_qtype(uint32_t type);
/* True when w holds values (bf16 data or blocks). */
bool gt_frozen_present(const gt_bf16_mat *w);
void gt_frozen_rows(const gt_bf16_mat *w, int64_t r0, int64_t nr, gt_real *dst);
/* Rows [r0, r0 + nr) as bf16: bf16 storage copied, blocks decoded and rounded to nearest even (the
 * values bf16 arithmetic multiplies; nr * cols a whole number of blocks). */
void gt_frozen_rows_bf16(const gt_bf16_mat *w, int64_t r0, int64_t nr, uint16_t *dst);
/* Rows per staging block (>= 1), or 0 when the staging buffer cannot hold one row. */
int64_t gt_bf16_block_rows(const gt_bf16_mat *w);
/* True when gt_bf16_linear on w multiplies in bf16 now (see compute_bf16). */
bool gt_bf16_linear_uses_bf16(const gt_bf16_mat *w);

gt_tensor *gt_bf16_linear(gt_ctx *ctx, gt_tensor *x, const gt_bf16_mat *w);
gt_tensor *gt_bf16_embedding(gt_ctx *ctx, const gt_bf16_mat *w, const int32_t *ids, int64_t n);

#endif
