#include "autograd/ops_bf16.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/bf16_gemm.h"
#include "autograd/blas.h"
#include "autograd/quant.h"

/* A region only for long runs outside one: an OpenMP region costs microseconds even when its
 * `if` is false (called per row of attention's probabilities, that made its forward 1.5x slower) */
static bool convert_in_parallel(int64_t n) { return n > 65536 && !omp_in_parallel(); }

void gt_to_bf16_n(const gt_real *src, uint16_t *dst, int64_t n) {
    if (!convert_in_parallel(n)) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] = gt_f32_to_bf16((float)src[i]);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dst[i] = gt_f32_to_bf16((float)src[i]);
}

void gt_bf16_expand(const uint16_t *src, gt_real *dst, int64_t n) {
    if (!convert_in_parallel(n)) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] = (gt_real)gt_bf16_to_f32(src[i]);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dst[i] = (gt_real)gt_bf16_to_f32(src[i]);
}

uint32_t gt_wfmt_qtype(gt_wfmt fmt) {
    switch (fmt) {
    case GT_WFMT_Q8_0: return GT_QT_Q8_0;
    case GT_WFMT_Q5_0: return GT_QT_Q5_0;
    case GT_WFMT_Q4_K: return GT_QT_Q4_K;
    case GT_WFMT_Q6_K: return GT_QT_Q6_K;
    default: return 0;
    }
}

gt_wfmt gt_wfmt_of_qtype(uint32_t type) {
    for (int f = GT_WFMT_Q8_0; f <= GT_WFMT_Q6_K; f++)
        if (gt_wfmt_qtype((gt_wfmt)f) == type) return (gt_wfmt)f;
    return GT_WFMT_BF16;
}

bool gt_frozen_present(const gt_bf16_mat *w) {
    return w && (w->fmt != GT_WFMT_BF16 ? w->q8 != NULL : w->data != NULL);
}

/* Blocks [b0, b0 + nb) of a quantised w decoded into dst (or, with d16, rounded to bf16 there). */
/* Blocks [b0, b1) of a quantised run at src (qt's blocks of bl values, by bytes) into dst (fp32)
 * or d16 (bf16) */
static void decode_range(uint32_t qt, const uint8_t *src, int bl, int by, int64_t b0, int64_t b1, gt_real *dst,
                         uint16_t *d16) {
    for (int64_t b = b0; b < b1; b++) {
        float v[256];
        if (qt == GT_QT_Q8_0) gt_q8_block_f32(src + b * by, v); /* the common case, inline */
        else gt_qt_block_f32(qt, src + b * by, v);
        if (d16)
            for (int k = 0; k < bl; k++) d16[b * bl + k] = gt_f32_to_bf16(v[k]);
        else
            for (int k = 0; k < bl; k++) dst[b * bl + k] = (gt_real)v[k];
    }
}

/* Parallel only when long and not inside a parallel region already (the LM head's per-thread
 * blocks, the embedding's rows): an OpenMP region costs microseconds even with its `if` false. */
static void decode_blocks(const gt_bf16_mat *w, int64_t b0, int64_t nb, gt_real *dst, uint16_t *d16) {
    uint32_t qt = gt_wfmt_qtype(w->fmt);
    int bl = gt_qt_block(qt), by = gt_qt_block_bytes(qt);
    const uint8_t *src = w->q8 + b0 * by;
    if (nb * bl <= 65536 || omp_in_parallel()) {
        decode_range(qt, src, bl, by, 0, nb, dst, d16);
        return;
    }
#pragma omp parallel
    {
        int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
        decode_range(qt, src, bl, by, nb * t / n, nb * (t + 1) / n, dst, d16);
    }
}

void gt_frozen_rows(const gt_bf16_mat *w, int64_t r0, int64_t nr, gt_real *dst) {
    if (w->fmt == GT_WFMT_BF16) {
        gt_bf16_expand(w->data + r0 * w->cols, dst, nr * w->cols);
        return;
    }
    int64_t bl = gt_qt_block(gt_wfmt_qtype(w->fmt));
    decode_blocks(w, r0 * w->cols / bl, nr * w->cols / bl, dst, NULL);
}

void gt_frozen_rows_bf16(const gt_bf16_mat *w, int64_t r0, int64_t nr, uint16_t *dst) {
    if (w->fmt == GT_WFMT_BF16) {
        memcpy(dst, w->data + r0 * w->cols, (size_t)(nr * w->cols) * 2);
        return;
    }
    int64_t bl = gt_qt_block(gt_wfmt_qtype(w->fmt));
    decode_blocks(w, r0 * w->cols / bl, nr * w->cols / bl, NULL, dst);
}

int64_t gt_bf16_block_rows(const gt_bf16_mat *w) {
    if (!w->stage || w->cols < 1 || w->stage_n < w->cols) return 0;
    int64_t r = w->stage_n / w->cols;
    return r < w->rows ? r : w->rows;
}

#ifndef GT_REAL_DOUBLE
/* bf16 values the staging buffer holds */
static int64_t stage_bf16(const gt_bf16_mat *w) {
    return w->stage ? w->stage_n * (int64_t)sizeof(gt_real) / 2 : 0;
}
#endif

bool gt_bf16_linear_uses_bf16(const gt_bf16_mat *w) {
#ifdef GT_REAL_DOUBLE
    (void)w;
    return false;
#else
    /* Q8_0 rows are widened to bf16 in one half of the staging buffer (packed in the other) */
    int64_t need = (w && w->fmt != GT_WFMT_BF16 ? 64 : 32) * (w ? w->cols : 0);
    return w && w->compute_bf16 && w->rows % 32 == 0 && w->cols % 32 == 0 && stage_bf16(w) >= need &&
           gt_bf16_kernel_active() != GT_BF16K_OFF;
#endif
}

#ifndef GT_REAL_DOUBLE
/* The rounded activations live in malloc'ed scratch, not the step's arena: released arena pieces
 * of these sizes were not reused well (the 270M step's arena peak grew by 0.35 GB); glibc keeps
 * the freed blocks for the next call. */
static uint16_t *scratch(gt_ctx *ctx, size_t bytes) {
    uint16_t *p = aligned_alloc(64, (bytes + 64) & ~(size_t)63); /* tile rows = cache lines */
    if (!p) gt_fail(ctx, GT_ERR_NOMEM, "bf16_linear: out of memory for %zu bytes of bf16 activations", bytes);
    return p;
}


/* Rows per block of a quantised matrix widened to bf16 (half the staging buffer), a multiple of 32. */
static int64_t q8_block_rows(const gt_bf16_mat *w) { return stage_bf16(w) / 2 / w->cols / 32 * 32; }

/* y[M, R] = x W^T as y^T = W x^T: W is the kernel's A operand as stored (rows of C values; Q8_0
 * widened to bf16 a block of rows at a time), x rounded into B panels, the result stored
 * transposed. */
static bool linear_forward_bf16(gt_ctx *ctx, const gt_real *x, int64_t M, const gt_bf16_mat *w, gt_real *y) {
    int64_t R = w->rows, C = w->cols, Mp = (M + 15) / 16 * 16;
    uint16_t *xb = scratch(ctx, (size_t)(Mp * C) * 2);
    if (!xb) return false;
    gt_bf16_kernel k = gt_bf16_kernel_active();
    int th = gt_threads();
    gt_bf16_pack_bt(th, x, M, C, C, xb);
    if (w->fmt == GT_WFMT_BF16) gt_bf16_gemm(k, th, R, Mp, C, w->data, C, xb, y, R, R, M, true, false);
    for (int64_t r0 = 0, kb = q8_block_rows(w); w->fmt != GT_WFMT_BF16 && r0 < R; r0 += kb) {
        int64_t nr = R - r0 < kb ? R - r0 : kb;
        gt_frozen_rows_bf16(w, r0, nr, (uint16_t *)w->stage);
        gt_bf16_gemm(k, th, nr, Mp, C, (uint16_t *)w->stage, C, xb, y + r0, R, nr, M, true, false);
    }
    free(xb);
    return true;
}

/* dx[M, C] (=|+=) dy[M, R] W: dy rounded to the A operand; W read a block of rows (the reduction)
 * at a time, as stored by the AVX512-BF16 kernel (rowb: no packing pass over W, which cost 4% of
 * the 270M step waiting on memory), packed by row pairs into the staging buffer for AMX; fresh:
 * dx is stored, not added to. */
static void linear_backward_bf16(gt_ctx *ctx, const gt_real *dy, int64_t M, const gt_bf16_mat *w, gt_real *dx,
                                 bool fresh) {
    int64_t R = w->rows, C = w->cols, Mp = (M + 15) / 16 * 16;
    uint16_t *dyb = scratch(ctx, (size_t)(Mp * R) * 2);
    if (!dyb) return;
    gt_bf16_kernel k = gt_bf16_kernel_active();
    int th = gt_threads();
    gt_bf16_pack_a(th, dy, M, R, R, dyb);
    bool q8 = w->fmt != GT_WFMT_BF16;
    int64_t kb = q8 ? q8_block_rows(w) : stage_bf16(w) / C / 32 * 32;
    uint16_t *wp = (uint16_t *)w->stage, *wq = wp + kb * C; /* packed rows; Q8_0 rows widened */
    for (int64_t r0 = 0; r0 < R; r0 += kb) {
        int64_t nr = R - r0 < kb ? R - r0 : kb;
        if (q8) gt_frozen_rows_bf16(w, r0, nr, wq);
        if (gt_bf16_gemm_rowb(k, th, Mp, C, nr, dyb + r0, R, q8 ? wq : w->data + r0 * C, C, dx, C, M, C, false,
                              r0 > 0 || !fresh))
            continue; /* W's rows read as stored */
        gt_bf16_pack_b16(th, q8 ? wq : w->data + r0 * C, nr, C, C, wp);
        gt_bf16_gemm(k, th, Mp, C, nr, dyb + r0, R, wp, dx, C, M, C, false, r0 > 0 || !fresh);
    }
    free(dyb);
}
#endif

static void linear_backward(gt_ctx *ctx, gt_node *node) {
    const gt_bf16_mat *w = node->saved;
    gt_tensor *x = node->in[0];
    const gt_real *dy = gt_grad(ctx, node->out);
    bool fresh; /* dx stored, not added (gt_grad_w) */
    gt_real *dx = gt_grad_w(ctx, x, &fresh);
    if (!gt_ok(ctx)) return;
    int64_t M = gt_rows(x), R = w->rows, C = w->cols, rb = gt_bf16_block_rows(w);
#ifndef GT_REAL_DOUBLE
    if (gt_bf16_linear_uses_bf16(w)) {
        linear_backward_bf16(ctx, dy, M, w, dx, fresh);
        return;
    }
#endif
    for (int64_t r0 = 0; r0 < R; r0 += rb) {
        int64_t nr = R - r0 < rb ? R - r0 : rb;
        gt_frozen_rows(w, r0, nr, w->stage);
        gt_gemm(false, false, (int)M, (int)C, (int)nr, 1, dy + r0, (int)R, w->stage, (int)C,
                r0 > 0 || !fresh ? 1 : 0, dx, (int)C);
    }
}

gt_tensor *gt_bf16_linear(gt_ctx *ctx, gt_tensor *x, const gt_bf16_mat *w) {
    if (!gt_ok(ctx)) return NULL;
    if (!x || !gt_frozen_present(w)) return gt_fail(ctx, GT_ERR_ARG, "bf16_linear: NULL input");
    if (x->ndim < 1 || gt_cols(x) != w->cols)
        return gt_fail(ctx, GT_ERR_SHAPE, "bf16_linear: x %s does not fit W [%lld, %lld]", gt_shp(x),
                       (long long)w->rows, (long long)w->cols);
    int64_t rb = gt_bf16_block_rows(w), M = gt_rows(x);
    if (rb < 1)
        return gt_fail(ctx, GT_ERR_ARG, "bf16_linear: staging of %lld values cannot hold a row of W "
                       "[%lld, %lld]", (long long)w->stage_n, (long long)w->rows, (long long)w->cols);
    if (M > INT32_MAX || w->rows > INT32_MAX || w->cols > INT32_MAX)
        return gt_fail(ctx, GT_ERR_SHAPE, "bf16_linear: x %s or W too large", gt_shp(x));
    int64_t shape[GT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->rows;
    gt_tensor *out = gt_op_out(ctx, x->ndim, shape, &x, 1);
    if (!out) return NULL;
    int64_t R = w->rows, C = w->cols;
    bool bf = gt_bf16_linear_uses_bf16(w);
#ifndef GT_REAL_DOUBLE
    if (bf && !linear_forward_bf16(ctx, x->data, M, w, out->data)) return NULL;
#endif
    for (int64_t r0 = 0; r0 < R && !bf; r0 += rb) {
        int64_t nr = R - r0 < rb ? R - r0 : rb;
        gt_frozen_rows(w, r0, nr, w->stage);
        gt_gemm(false, true, (int)M, (int)nr, (int)C, 1, x->data, (int)C, w->stage, (int)C, 0,
                out->data + r0, (int)R);
    }
    /* backward reads only W (saved, persistent): x is free to go */
    if (!gt_record(ctx, "bf16_linear", linear_backward, out, &x, 1, (void *)w, 0)) return NULL;
    return out;
}

gt_tensor *gt_bf16_embedding(gt_ctx *ctx, const gt_bf16_mat *w, const int32_t *ids, int64_t n) {
    if (!gt_ok(ctx)) return NULL;
    if (!gt_frozen_present(w) || (!ids && n > 0)) return gt_fail(ctx, GT_ERR_ARG, "bf16_embedding: NULL input");
    if (n < 0) return gt_fail(ctx, GT_ERR_ARG, "bf16_embedding: negative id count %lld", (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->rows)
            return gt_fail(ctx, GT_ERR_ARG, "bf16_embedding: id %d at position %lld outside [0, %lld)",
                           ids[i], (long long)i, (long long)w->rows);
    int64_t d = w->cols, shape[2] = {n, d};
    gt_tensor *out = gt_empty(ctx, 2, shape);
    if (!out) return NULL;
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) gt_frozen_rows(w, ids[i], 1, out->data + i * d);
    return out;
}
