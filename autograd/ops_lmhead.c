#include "autograd/ops_lmhead.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "autograd/bf16_gemm.h"
#include "autograd/blas.h"
#include "autograd/ops_bf16.h"
#include "autograd/rowmath.h"

typedef struct {
    int64_t m;          /* active rows */
    int64_t *rows;      /* their indices in hidden */
    int32_t *labels;    /* per active row */
    gt_real *w;         /* per active row */
    gt_real *rmax;      /* per active row: max of the (capped) logits */
    double *inv_sum;    /* and 1 / sum exp(z - max): softmax = exp(z - max) * inv_sum */
    double *ce;         /* per active row, summed in row order (thread-count independent) */
    int64_t chunk;            /* active rows per chunk */
    gt_real *hbuf;      /* chunk x D gathered hidden rows */
    gt_real *dh;        /* m x D: d(sum w ce)/dh of the active rows, computed in the forward */
    gt_real *zbuf;      /* chunk x V logits */
    double softcap;
    int64_t V, D;
    const gt_real *tf;        /* the table, fp32 [V, D] ... */
    const gt_bf16_mat *t16;   /* ... or bf16 (frozen) */
    int64_t vblock;           /* vocabulary rows per block in the one-pass path; 0: two passes */
    /* compute_bf16 (a bf16 or quantised table, one pass, a bf16 kernel active): the chunk's hidden rows as the
     * kernel's B panels (chunk rounded up to 16, x D) and one block of exp-logits as its A operand
     * (chunk rounded up to 16, x vblock); NULL otherwise */
    uint16_t *hb16, *zb16;
    bool split;               /* compute_bf16 with V a multiple of 32: chunk_split_bf16 (no zbuf, zb16) */
} lmhead_saved;

/* Capped logits of active rows [r0, r0+c) into s->zbuf; gathers their h into s->hbuf (fp32
 * table). */
static void chunk_logits(const lmhead_saved *s, const gt_real *hidden, int64_t r0, int64_t c) {
    int64_t D = s->D, V = s->V;
    for (int64_t i = 0; i < c; i++)
        memcpy(s->hbuf + i * D, hidden + s->rows[r0 + i] * D, (size_t)D * sizeof(gt_real));
    gt_gemm(false, true, (int)c, (int)V, (int)D, 1, s->hbuf, (int)D, s->tf, (int)D, 0, s->zbuf,
            (int)V);
    if (s->softcap > 0) {
        gt_real cap = (gt_real)s->softcap, inv = (gt_real)(1.0 / s->softcap);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < c * V; i++) s->zbuf[i] = cap * tanh(s->zbuf[i] * inv);
    }
}

/* zbuf (capped logits of active rows [r0, r0+c)) -> d(g * sum w ce)/d(raw logits), in place:
 * g w (softmax - onehot), times the cap's derivative 1 - (z / cap)^2 (z = cap tanh(raw / cap)). */
static void chunk_dz(const lmhead_saved *s, int64_t V, int64_t r0, int64_t c, gt_real g) {
    gt_real inv_cap = s->softcap > 0 ? (gt_real)(1.0 / s->softcap) : 0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < c; i++) {
        gt_real *z = s->zbuf + i * V;
        int64_t y = s->labels[r0 + i];
        gt_real gw = g * s->w[r0 + i], zy = z[y];
        gt_row_exp_grad(z, V, s->rmax[r0 + i], (gt_real)(gw * s->inv_sum[r0 + i]), inv_cap);
        gt_real ty = zy * inv_cap;
        z[y] -= gw * (1 - ty * ty);
    }
}

/* One pass per row chunk when the table is frozen (backward then never needs logits again):
 * vocabulary blocks of vb rows (a bf16 table's are expanded once into its staging buffer, an fp32
 * table's are used in place) give logits c x vb in zbuf that feed a running max and sum of exp
 * per row (online softmax); when dh is wanted the block's exp(z - running max) * cap' goes
 * straight into acc += e @ E_block, rescaled whenever a row's max grows. At the end
 * dh_i = w_i (acc_i / sum_i - cap'_y E_y). Each table row is read once per chunk (not twice), the
 * GEMMs are c rows tall instead of a few, and the buffer is c x vb instead of c x V. */
static void chunk_one_pass(lmhead_saved *s, const gt_tensor *hidden, int64_t r0, int64_t c) {
    const gt_bf16_mat *t = s->t16;
    int64_t D = s->D, V = s->V, vb = s->vblock;
    gt_real inv_cap = s->softcap > 0 ? (gt_real)(1.0 / s->softcap) : 0, cap = (gt_real)s->softcap;
    gt_real *acc = s->dh ? s->dh + r0 * D : NULL, *zy = s->hbuf + c * D;
    double *sum = s->ce + r0; /* the running sums live where the row's loss will */
    for (int64_t i = 0; i < c; i++) {
        memcpy(s->hbuf + i * D, hidden->data + s->rows[r0 + i] * D, (size_t)D * sizeof(gt_real));
        s->rmax[r0 + i] = -INFINITY;
        sum[i] = 0;
    }
    if (acc) memset(acc, 0, (size_t)(c * D) * sizeof(gt_real));
#ifndef GT_REAL_DOUBLE
    /* bf16 arithmetic: logits z^T = E_block h^T with the table block as stored (A) and the rows
     * rounded once per chunk into B panels; acc += e E_block with e rounded (A) and the block's
     * row pairs packed into the staging buffer (B). Blocks whose rows are not a multiple of 32
     * (a short last one) go the fp32 way. */
    gt_bf16_kernel kern = s->hb16 ? gt_bf16_kernel_active() : GT_BF16K_OFF;
    int th = gt_threads();
    int64_t cp = (c + 15) / 16 * 16;
    if (kern != GT_BF16K_OFF) gt_bf16_pack_bt(th, s->hbuf, c, D, D, s->hb16);
#else
    const bool kern = false;
#endif
    for (int64_t v0 = 0; v0 < V; v0 += vb) {
        int64_t nv = V - v0 < vb ? V - v0 : vb;
        const gt_real *blk = s->tf + v0 * D;
        bool bf = kern != GT_BF16K_OFF && nv % 32 == 0;
#ifndef GT_REAL_DOUBLE
        /* the block's rows as bf16: as stored, or a quantised table's blocks widened into the upper
         * half of the staging buffer (the lower half takes the pair-packed copy below) */
        const uint16_t *e16 = NULL;
        if (bf && t->fmt == GT_WFMT_BF16) e16 = t->data + v0 * D;
        else if (bf) {
            uint16_t *wide = (uint16_t *)t->stage + vb * D;
            gt_frozen_rows_bf16(t, v0, nv, wide);
            e16 = wide;
        }
        if (bf) gt_bf16_gemm(kern, th, nv, cp, D, e16, D, s->hb16, s->zbuf, nv, nv, c, true, false);
#endif
        if (t && !bf) {
            gt_frozen_rows(t, v0, nv, t->stage);
            blk = t->stage;
        }
        if (!bf)
            gt_gemm(false, true, (int)c, (int)nv, (int)D, 1, s->hbuf, (int)D, blk, (int)D, 0,
                    s->zbuf, (int)nv);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < c; i++) {
            gt_real *z = s->zbuf + i * nv;
            if (cap > 0)
                for (int64_t j = 0; j < nv; j++) z[j] = cap * tanh(z[j] * inv_cap);
            int64_t y = s->labels[r0 + i];
            if (y >= v0 && y < v0 + nv) zy[i] = z[y - v0];
            gt_real m = s->rmax[r0 + i], bm = gt_row_max(z, nv);
            if (bm > m) { /* rescale what was summed under the old max */
                double f = m == -INFINITY ? 0 : exp((double)m - (double)bm);
                sum[i] *= f;
                if (acc)
                    for (int64_t k = 0; k < D; k++) acc[i * D + k] *= (gt_real)f;
                s->rmax[r0 + i] = m = bm;
            }
            sum[i] += gt_row_sum_exp(z, nv, m);
            if (acc) gt_row_exp_grad(z, nv, m, 1, inv_cap);
        }
#ifndef GT_REAL_DOUBLE
        if (acc && bf) {
            uint16_t *eb = (uint16_t *)t->stage;
            gt_bf16_pack_a(th, s->zbuf, c, nv, nv, s->zb16);
            gt_bf16_pack_b16(th, e16, nv, D, D, eb);
            gt_bf16_gemm(kern, th, cp, D, nv, s->zb16, nv, eb, acc, D, c, D, false, true);
            continue;
        }
#endif
        if (acc)
            gt_gemm(false, false, (int)c, (int)D, (int)nv, 1, s->zbuf, (int)nv, blk, (int)D, 1, acc,
                    (int)D);
    }
    for (int64_t i = 0; i < c; i++) {
        double total = sum[i];
        int64_t y = s->labels[r0 + i];
        s->inv_sum[r0 + i] = 1.0 / total;
        s->ce[r0 + i] = (double)s->rmax[r0 + i] + log(total) - (double)zy[i];
        if (!acc) continue;
        gt_real w = s->w[r0 + i], inv = (gt_real)(1.0 / total), ty = zy[i] * inv_cap;
        gt_real cy = 1 - ty * ty;
        gt_real *a = acc + i * D;
        if (t) { /* the staging buffer is free once the vocabulary is done */
            gt_frozen_rows(t, y, 1, t->stage);
#ifndef GT_REAL_DOUBLE
            /* a quantised table's label row as its block's bf16 product saw it (rounded) */
            int64_t yb = V - y / vb * vb < vb ? V - y / vb * vb : vb;
            if (kern != GT_BF16K_OFF && yb % 32 == 0 && t->fmt != GT_WFMT_BF16) {
                uint16_t *r16 = (uint16_t *)(t->stage + D);
                gt_frozen_rows_bf16(t, y, 1, r16);
                for (int64_t k = 0; k < D; k++) t->stage[k] = (gt_real)gt_bf16_to_f32(r16[k]);
            }
#endif
            for (int64_t k = 0; k < D; k++) a[k] = w * (a[k] * inv - cy * t->stage[k]);
        } else {
            const gt_real *ey = s->tf + y * D;
            for (int64_t k = 0; k < D; k++) a[k] = w * (a[k] * inv - cy * ey[k]);
        }
    }
}

#ifndef GT_REAL_DOUBLE
/* Merges the threads' partial softmaxes of rows [r0, r0 + c) as a log-sum-exp. Thread t's part
 * is at tb + t per: running max, label logit and its flag (cp each), then its accumulator
 * acc = sum_v exp(z_v - max) cap'_v E_v (cp x D) when s->dh; its running sums at tsum + t cp.
 * Fills rmax, inv_sum and ce, and dh with sum_t exp(max_t - M) / S acc_t: the caller subtracts
 * the label's term. The merged label logit replaces thread 0's (tb[cp + i]). */
static void merge_partials(lmhead_saved *s, int64_t r0, int64_t c, float *tb, size_t per, const double *tsum,
                           int64_t cp, int used) {
    const int64_t D = s->D;
    for (int64_t i = 0; i < c; i++) {
        float M = -INFINITY, zyi = 0;
        for (int t = 0; t < used; t++) {
            const float *m = tb + (size_t)t * per, *zy = m + cp, *has_y = zy + cp;
            if (m[i] > M) M = m[i];
            if (has_y[i] != 0) zyi = zy[i];
        }
        double S = 0;
        for (int t = 0; t < used; t++) {
            const float *m = tb + (size_t)t * per;
            if (m[i] != -INFINITY) S += tsum[(size_t)t * (size_t)cp + (size_t)i] * exp((double)m[i] - (double)M);
        }
        s->rmax[r0 + i] = M;
        s->inv_sum[r0 + i] = 1.0 / S;
        s->ce[r0 + i] = (double)M + log(S) - (double)zyi;
        tb[cp + i] = zyi;
        if (!s->dh) continue;
        float *dh = s->dh + (r0 + i) * D;
        for (int64_t k = 0; k < D; k++) dh[k] = 0;
        for (int t = 0; t < used; t++) {
            const float *m = tb + (size_t)t * per, *acc = m + 3 * cp;
            if (m[i] == -INFINITY) continue;
            float f = (float)(exp((double)m[i] - (double)M) / S);
            for (int64_t k = 0; k < D; k++) dh[k] += f * acc[i * D + k];
        }
    }
}

/* One thread's online softmax over vocabulary rows [lo, hi) (whole multiples of 32) for c active
 * rows whose hidden vectors are s->hb16 (B panels, cp = c rounded up to 16): blocks of SPLIT_BLOCK
 * rows, each a logits product, the running max / sum / label logit per row, and when acc is
 * given acc += exp(z - max) cap' E_block (rescaled when a row's max grows). The rows' labels start
 * at s->labels[r0]. All products and packers on the calling thread. */
#define SPLIT_BLOCK 256

typedef struct {
    float *m, *zy, *has_y; /* per row: running max, label logit and whether it was seen */
    float *acc;            /* cp x D, or NULL (no input gradient) */
    double *sum;           /* per row: running sum of exp(z - m) */
    float *z;              /* scratch: cp x SPLIT_BLOCK logits */
    uint16_t *zb, *eb, *wide; /* their bf16 A copy; a pair-packed block; a quantised block widened */
} walk_state;

static void walk_vocab(const lmhead_saved *s, int64_t r0, int64_t c, int64_t lo, int64_t hi, const walk_state *w) {
    const gt_bf16_mat *t16 = s->t16;
    const int64_t D = s->D, cp = (c + 15) / 16 * 16, VB = SPLIT_BLOCK;
    const gt_real inv_cap = s->softcap > 0 ? (gt_real)(1.0 / s->softcap) : 0, cap = (gt_real)s->softcap;
    const gt_bf16_kernel kern = gt_bf16_kernel_active();
    const bool widen = t16->fmt != GT_WFMT_BF16;
    float *m = w->m, *zy = w->zy, *has_y = w->has_y, *acc = w->acc, *z = w->z;
    double *sum = w->sum;
    for (int64_t i = 0; i < cp; i++) m[i] = -INFINITY, zy[i] = 0, has_y[i] = 0, sum[i] = 0;
    if (acc) memset(acc, 0, (size_t)(cp * D) * sizeof(float));
    for (int64_t v0 = lo; v0 < hi; v0 += VB) {
        const int64_t nv = hi - v0 < VB ? hi - v0 : VB;
        const uint16_t *e16 = t16->data + v0 * D;
        if (widen) {
            gt_frozen_rows_bf16(t16, v0, nv, w->wide);
            e16 = w->wide;
        }
        /* AMX: packed first: the packer streams the block in from memory and the logits
         * product then finds it in L2 (the other way round its tile loads waited on memory:
         * 810 -> 744 ms of the two over a one-thread run). AVX512-BF16 needs no packed copy:
         * its accumulation reads the block as stored (rowb), in L2 after the logits product. */
        const bool rowb = kern == GT_BF16K_AVX512;
        if (acc && !rowb) gt_bf16_pack_b16(1, e16, nv, D, D, w->eb);
        gt_bf16_gemm(kern, 1, nv, cp, D, e16, D, s->hb16, z, nv, nv, c, true, false);
        for (int64_t i = 0; i < c; i++) {
            float *zi = z + i * nv;
            if (cap > 0)
                for (int64_t j = 0; j < nv; j++) zi[j] = cap * tanh(zi[j] * inv_cap);
            int64_t y = s->labels[r0 + i];
            if (y >= v0 && y < v0 + nv) zy[i] = zi[y - v0], has_y[i] = 1;
            float bm = gt_row_max(zi, nv);
            if (bm > m[i]) { /* rescale what was summed under the smaller max */
                if (m[i] != -INFINITY) {
                    float f = gt_exp_inline(m[i] - bm);
                    sum[i] *= f;
                    if (acc)
                        for (int64_t k = 0; k < D; k++) acc[i * D + k] *= f;
                }
                m[i] = bm;
            }
            if (acc) sum[i] += gt_row_exp_sum_grad(zi, nv, m[i], inv_cap);
            else sum[i] += gt_row_sum_exp(zi, nv, m[i]);
        }
        if (!acc) continue;
        gt_bf16_pack_a(1, z, c, nv, nv, w->zb);
        if (!rowb || !gt_bf16_gemm_rowb(kern, 1, cp, D, nv, w->zb, nv, e16, D, acc, D, c, D, false, true)) {
            if (rowb) gt_bf16_pack_b16(1, e16, nv, D, D, w->eb); /* a block rowb refuses */
            gt_bf16_gemm(kern, 1, cp, D, nv, w->zb, nv, w->eb, acc, D, c, D, false, true);
        }
    }
}

/* dh_i = w_i (dh_i - cap'_y E_y) with dh_i = sum_v softmax_v cap'_v E_v (rows [r0, r0 + c));
 * zy: the rows' label logits. The label row as the products saw it (a quantised table's widened
 * to bf16); buf: D values of scratch. */
static void subtract_labels(const lmhead_saved *s, int64_t r0, int64_t c, const float *zy, uint16_t *buf) {
    const int64_t D = s->D;
    const gt_real inv_cap = s->softcap > 0 ? (gt_real)(1.0 / s->softcap) : 0;
    for (int64_t i = 0; i < c; i++) {
        float *dh = s->dh + (r0 + i) * D;
        const float w = s->w[r0 + i], ty = zy[i] * inv_cap, cy = 1 - ty * ty;
        gt_frozen_rows_bf16(s->t16, s->labels[r0 + i], 1, buf);
        for (int64_t k = 0; k < D; k++) dh[k] = w * (dh[k] - cy * gt_bf16_to_f32(buf[k]));
    }
}

/* The one pass on the bf16 kernel with the vocabulary split between the threads: each walks its
 * own range (walk_vocab) with a running (max, sum, acc) of its own, and the threads merge as a
 * log-sum-exp at the end (as chunk_direct does). A block's logits, exp terms and packed rows stay
 * in the core's L2 from the logits product to the accumulation, and a block costs no OpenMP
 * region (chunk_one_pass runs five per 2048-row block, each splitting the data differently
 * between the cores). Needs V a multiple of 32; the results equal chunk_one_pass's up to the
 * order of the sums. */
static int chunk_split_bf16(gt_ctx *ctx, lmhead_saved *s, const gt_tensor *hidden, int64_t r0, int64_t c) {
    const gt_bf16_mat *t16 = s->t16;
    const int64_t D = s->D, V = s->V, cp = (c + 15) / 16 * 16, VB = SPLIT_BLOCK;
    const bool want_dh = s->dh != NULL, widen = t16->fmt != GT_WFMT_BF16;
    const int nt = omp_get_max_threads();
    /* per thread (floats; every part a whole number of cache lines): max, label logit and its
     * flag (cp each), acc (cp x D), logits (cp x VB), their bf16 A copy (cp x VB / 2), the block
     * pair-packed (VB x D / 2) and a quantised block widened (VB x D / 2); sums in double (cp) */
    const size_t per = (size_t)(3 * cp + (want_dh ? cp * D : 0) + cp * VB + cp * VB / 2 + VB * D / 2 +
                                (widen ? VB * D / 2 : 0));
    const size_t tb_bytes = (size_t)nt * per * sizeof(float), ts_bytes = (size_t)(nt * cp) * sizeof(double);
    float *tb = gt_alloc(ctx, tb_bytes);
    double *tsum = gt_alloc(ctx, ts_bytes);
    if (!tb || !tsum) return -1;
    for (int64_t i = 0; i < c; i++)
        memcpy(s->hbuf + i * D, hidden->data + s->rows[r0 + i] * D, (size_t)D * sizeof(gt_real));
    gt_bf16_pack_bt(nt, s->hbuf, c, D, D, s->hb16);
    int used = 1;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        if (t == 0) used = n;
        float *m = tb + (size_t)t * per, *acc = m + 3 * cp, *z = acc + (want_dh ? cp * D : 0);
        uint16_t *zb = (uint16_t *)(z + cp * VB), *eb = zb + cp * VB;
        walk_state w = {m, m + cp, m + 2 * cp, want_dh ? acc : NULL, tsum + (size_t)t * (size_t)cp, z, zb, eb,
                        eb + VB * D};
        const int64_t units = V / 32;
        walk_vocab(s, r0, c, units * t / n * 32, units * (t + 1) / n * 32, &w);
    }
    merge_partials(s, r0, c, tb, per, tsum, cp, used);
    if (want_dh) subtract_labels(s, r0, c, tb + cp, (uint16_t *)t16->stage);
    gt_release(ctx, tsum, ts_bytes);
    gt_release(ctx, tb, tb_bytes);
    return 0;
}

/* The one pass without BLAS, for few rows (c <= DIRECT_MAX_ROWS; D a multiple of 64; no
 * soft-cap): OpenBLAS packs the whole table for both GEMMs of every chunk, which for tens of rows
 * costs more than the multiplications. Here each thread walks its own range of the vocabulary in
 * blocks of DIRECT_BLOCK rows (a bf16 table's expanded into the thread's buffer) that stay in
 * cache between the two products: zt = E_b H^T (logits vocabulary-major, lanes over rows), the
 * online softmax across lanes, then acc += P E_b; threads merge their (max, sum, acc) at the end
 * as a log-sum-exp. Nothing is packed. Measured here (270M, 2 threads): LM head with its input
 * gradient for 85 rows 0.46 -> 0.30 s, for 177 rows 0.59 -> 0.54 s. The limit keeps a thread's
 * working set (rows x D accumulators, the rows transposed, a block of the table; 1.4 MB at 192
 * rows of 640) inside a core's L2.
 * GT_LMHEAD_BLAS=1 turns it off (for comparison). */
#define DIRECT_MAX_ROWS 192
#define DIRECT_BLOCK 128
#define VL 16
typedef float vf __attribute__((vector_size(VL * sizeof(float))));

static inline vf vld(const float *p) {
    vf x;
    memcpy(&x, p, sizeof x);
    return x;
}
static inline void vst(float *p, vf x) { memcpy(p, &x, sizeof x); }

/* One register tile of logits: rows [0, R) of E (R <= 6) against lanes [i0, i0 + 16 NQ) of ht
 * (NQ <= 4). Always inlined with constant R and NQ, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void logits_tile(const float *E, int64_t D, const float *ht,
                                                              int64_t cp, int64_t i0, float *zt,
                                                              const int R, const int NQ) {
    vf a[6][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NQ; q++) a[r][q] = (vf){0};
    for (int64_t k = 0; k < D; k++) {
        const float *h = ht + k * cp + i0;
        vf hv[4];
        for (int q = 0; q < NQ; q++) hv[q] = vld(h + q * VL);
        for (int r = 0; r < R; r++) {
            const float e = E[r * D + k];
            for (int q = 0; q < NQ; q++) a[r][q] += e * hv[q];
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NQ; q++) vst(zt + r * cp + i0 + q * VL, a[r][q]);
}

#define LOGITS_NQ(R)                                                                    \
    switch (nq) {                                                                       \
    case 4: logits_tile(E + v * D, D, ht, cp, i0, zt + v * cp, R, 4); break;           \
    case 3: logits_tile(E + v * D, D, ht, cp, i0, zt + v * cp, R, 3); break;           \
    case 2: logits_tile(E + v * D, D, ht, cp, i0, zt + v * cp, R, 2); break;           \
    default: logits_tile(E + v * D, D, ht, cp, i0, zt + v * cp, R, 1); break;          \
    }

/* zt[v][i] = E[v] . ht[:, i] for v < nv, i < cp (cp a multiple of 16; ht is D x cp): tiles of
 * 6 rows x 64 lanes (24 accumulators; 4 loads and 6 broadcasts per 24 FMAs). */
static void direct_logits(const float *E, int64_t nv, int64_t D, const float *ht, int64_t cp,
                          float *zt) {
    for (int64_t v = 0; v < nv; v += 6) {
        int rows = (int)(nv - v < 6 ? nv - v : 6);
        for (int64_t i0 = 0; i0 < cp; i0 += 4 * VL) {
            int nq = (int)((cp - i0) / VL < 4 ? (cp - i0) / VL : 4);
            switch (rows) {
            case 6: LOGITS_NQ(6) break;
            case 5: LOGITS_NQ(5) break;
            case 4: LOGITS_NQ(4) break;
            case 3: LOGITS_NQ(3) break;
            case 2: LOGITS_NQ(2) break;
            default: LOGITS_NQ(1) break;
            }
        }
    }
}
#undef LOGITS_NQ

/* One register tile of acc += P E: rows [i0, i0 + R) (R <= 6) x columns [k0, k0 + 64). */
static inline __attribute__((always_inline)) void acc_tile(const float *pt, int64_t nv, int64_t cp,
                                                           const float *E, int64_t D, float *acc,
                                                           int64_t i0, int64_t k0, const int R) {
    vf a[6][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) a[r][q] = vld(acc + (i0 + r) * D + k0 + q * VL);
    for (int64_t v = 0; v < nv; v++) {
        const float *e = E + v * D + k0, *p = pt + v * cp + i0;
        vf ev[4] = {vld(e), vld(e + VL), vld(e + 2 * VL), vld(e + 3 * VL)};
        for (int r = 0; r < R; r++) {
            const float pr = p[r];
            for (int q = 0; q < 4; q++) a[r][q] += pr * ev[q];
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) vst(acc + (i0 + r) * D + k0 + q * VL, a[r][q]);
}

/* acc[i][:] += sum_v pt[v][i] E[v][:] for i < cp, D a multiple of 64: tiles of 6 rows x 64
 * columns (the last rows of cp in a tile of 4). */
static void direct_accumulate(const float *pt, int64_t nv, int64_t cp, const float *E, int64_t D,
                              float *acc) {
    for (int64_t i0 = 0; i0 < cp;) {
        int64_t left = cp - i0;
        int R = left >= 6 && left != 8 ? 6 : 4; /* cp is a multiple of 16: 6s, then 4s */
        for (int64_t k0 = 0; k0 < D; k0 += 4 * VL) {
            if (R == 6) acc_tile(pt, nv, cp, E, D, acc, i0, k0, 6);
            else acc_tile(pt, nv, cp, E, D, acc, i0, k0, 4);
        }
        i0 += R;
    }
}

static bool direct_fits(const lmhead_saved *s, int64_t c) {
    return s->softcap == 0 && c <= DIRECT_MAX_ROWS && s->D % (4 * VL) == 0 && !getenv("GT_LMHEAD_BLAS");
}

/* Same results as chunk_one_pass (to rounding) for rows [r0, r0 + c); scratch from the step's
 * arena. 0, or -1 out of memory (ctx's error set). */
static int chunk_direct(gt_ctx *ctx, lmhead_saved *s, const gt_tensor *hidden, int64_t r0, int64_t c) {
    const int64_t D = s->D, V = s->V, cp = (c + VL - 1) / VL * VL;
    const float *E = s->tf;
    const gt_bf16_mat *t16 = s->t16;
    const int nt = omp_get_max_threads();
    /* per thread: running max, label logit and its flag (cp each), accumulator (cp x D), logits
     * block (DIRECT_BLOCK x cp), a bf16 table's block expanded (DIRECT_BLOCK x D); running sums
     * in double (cp) */
    const size_t per = (size_t)(3 * cp + cp * D + DIRECT_BLOCK * cp + (t16 ? DIRECT_BLOCK * D : 0));
    const size_t ht_bytes = (size_t)(D * cp) * sizeof(float), tb_bytes = (size_t)nt * per * sizeof(float);
    const size_t ts_bytes = (size_t)(nt * cp) * sizeof(double);
    float *ht = gt_alloc(ctx, ht_bytes), *tb = gt_alloc(ctx, tb_bytes);
    double *tsum = gt_alloc(ctx, ts_bytes);
    if (!ht || !tb || !tsum) return -1;
    memset(ht, 0, ht_bytes);
    memset(tsum, 0, ts_bytes);
    for (int64_t i = 0; i < c; i++) {
        const float *h = hidden->data + s->rows[r0 + i] * D;
        for (int64_t k = 0; k < D; k++) ht[k * cp + i] = h[k];
    }
    const bool want_dh = s->dh != NULL;
    int used = 1;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        if (t == 0) used = n;
        float *m = tb + (size_t)t * per, *zy = m + cp, *has_y = zy + cp, *acc = has_y + cp;
        float *zt = acc + cp * D, *eb = zt + DIRECT_BLOCK * cp;
        double *sum = tsum + (size_t)t * (size_t)cp;
        for (int64_t i = 0; i < cp; i++) m[i] = -INFINITY, zy[i] = 0, has_y[i] = 0;
        if (want_dh) memset(acc, 0, (size_t)(cp * D) * sizeof(float));
        /* this thread's vocabulary range, in whole groups of 4 rows */
        const int64_t units = (V + 3) / 4;
        int64_t lo = units * t / n * 4, hi = units * (t + 1) / n * 4;
        if (hi > V) hi = V;
        for (int64_t v0 = lo; v0 < hi; v0 += DIRECT_BLOCK) {
            const int64_t nv = hi - v0 < DIRECT_BLOCK ? hi - v0 : DIRECT_BLOCK;
            const float *blk = E + v0 * D;
            if (t16) {
                gt_frozen_rows(t16, v0, nv, eb);
                blk = eb;
            }
            direct_logits(blk, nv, D, ht, cp, zt);
            for (int64_t i = 0; i < c; i++) { /* label logits that fall in this block */
                int64_t y = s->labels[r0 + i];
                if (y >= v0 && y < v0 + nv) zy[i] = zt[(y - v0) * cp + i], has_y[i] = 1;
            }
            float bm[DIRECT_MAX_ROWS];
            for (int64_t i = 0; i < cp; i++) bm[i] = m[i];
            for (int64_t v = 0; v < nv; v++)
                for (int64_t i = 0; i < cp; i++) bm[i] = zt[v * cp + i] > bm[i] ? zt[v * cp + i] : bm[i];
            for (int64_t i = 0; i < c; i++) { /* rescale what was summed under a smaller max */
                if (!(bm[i] > m[i])) continue;
                if (m[i] != -INFINITY) {
                    float f = gt_exp_inline(m[i] - bm[i]);
                    sum[i] *= f;
                    if (want_dh)
                        for (int64_t k = 0; k < D; k++) acc[i * D + k] *= f;
                }
                m[i] = bm[i];
            }
            float bsum[DIRECT_MAX_ROWS];
            for (int64_t i = 0; i < cp; i++) bsum[i] = 0;
            for (int64_t i = c; i < cp; i++) m[i] = INFINITY; /* padding lanes: exp(-inf) = 0 */
            for (int64_t v = 0; v < nv; v++) {
                float *z = zt + v * cp;
#pragma omp simd
                for (int64_t i = 0; i < cp; i++) {
                    float e = gt_exp_inline(z[i] - m[i]);
                    z[i] = e;
                    bsum[i] += e;
                }
            }
            for (int64_t i = c; i < cp; i++) m[i] = -INFINITY;
            for (int64_t i = 0; i < c; i++) sum[i] += bsum[i];
            if (want_dh) direct_accumulate(zt, nv, cp, blk, D, acc);
        }
    }
    merge_partials(s, r0, c, tb, per, tsum, cp, used);
    for (int64_t i = 0; want_dh && i < c; i++) {
        float *dh = s->dh + (r0 + i) * D;
        const float w = s->w[r0 + i];
        const int64_t y = s->labels[r0 + i];
        const float *ey = E ? E + y * D : t16->stage; /* staging: unused by this path */
        if (!E) gt_frozen_rows(t16, y, 1, t16->stage);
        for (int64_t k = 0; k < D; k++) dh[k] = w * (dh[k] - ey[k]);
    }
    gt_release(ctx, tsum, ts_bytes);
    gt_release(ctx, tb, tb_bytes);
    gt_release(ctx, ht, ht_bytes);
    return 0;
}
#endif

static void lmhead_backward(gt_ctx *ctx, gt_node *node) {
    lmhead_saved *s = node->saved;
    gt_tensor *hidden = node->in[0], *table = node->n_in > 1 ? node->in[1] : NULL;
    gt_real g = gt_grad(ctx, node->out)[0];
    gt_real *dh = gt_needs_grad(hidden) ? gt_grad(ctx, hidden) : NULL;
    gt_real *dt = gt_needs_grad(table) ? gt_grad(ctx, table) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t D = s->D, V = s->V;
    if (dh) /* the loss is linear in its upstream gradient: scale the forward's dh */
        for (int64_t i = 0; i < s->m; i++) {
            gt_real *dst = dh + s->rows[i] * D;
            const gt_real *src = s->dh + i * D;
            for (int64_t k = 0; k < D; k++) dst[k] += g * src[k];
        }
    if (s->dh) gt_release(ctx, s->dh, (size_t)(s->m * D) * sizeof(gt_real));
    s->dh = NULL;
    if (!dt) return;
    /* the table's gradient needs every chunk's logits again (holding them would cost n x V) */
    const gt_real *hd = gt_saved_data(ctx, node, 0);
    if (!hd || !gt_saved_data(ctx, node, 1)) return; /* s->tf is the table's data */
    for (int64_t r0 = 0; r0 < s->m; r0 += s->chunk) {
        int64_t c = s->m - r0 < s->chunk ? s->m - r0 : s->chunk;
        chunk_logits(s, hd, r0, c);
        chunk_dz(s, V, r0, c, g);
        gt_gemm(true, false, (int)V, (int)D, (int)c, 1, s->zbuf, (int)V, s->hbuf, (int)D, 1, dt,
                (int)D);
    }
}

/* The weighted rows (weight > 0) with their labels and weights into s; row_ce zeroed. */
static int pick_rows(gt_ctx *ctx, lmhead_saved *s, int64_t n, const int32_t *labels, const gt_real *weights,
                     gt_real *row_ce, double *wsum) {
    for (int64_t i = 0; i < n; i++) {
        gt_real w = weights ? weights[i] : 1;
        if (!(w >= 0) || !isfinite(w))
            return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: row %lld: weight %g must be finite and >= 0",
                           (long long)i, (double)w), -1;
        if (row_ce) row_ce[i] = 0;
        if (w == 0) continue;
        if (labels[i] < 0 || labels[i] >= s->V)
            return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: row %lld: label %d outside [0, %lld)",
                           (long long)i, labels[i], (long long)s->V), -1;
        s->rows[s->m] = i;
        s->labels[s->m] = labels[i];
        s->w[s->m] = w;
        s->m++;
        *wsum += w;
    }
    return 0;
}

/* The forward over row chunks: per-row loss (s->ce), the softmax statistics and, when hidden needs
 * it, the input gradient for an upstream 1 (s->dh). */
static int forward_chunks(gt_ctx *ctx, lmhead_saved *s, gt_tensor *hidden) {
    int64_t V = s->V, D = s->D;
    for (int64_t r0 = 0; r0 < s->m; r0 += s->chunk) {
        int64_t c = s->m - r0 < s->chunk ? s->m - r0 : s->chunk;
        if (s->vblock) {
#ifndef GT_REAL_DOUBLE
            if (!s->hb16 && direct_fits(s, c)) {
                if (chunk_direct(ctx, s, hidden, r0, c)) return -1;
                continue;
            }
            if (s->split) {
                if (chunk_split_bf16(ctx, s, hidden, r0, c)) return -1;
                continue;
            }
#endif
            chunk_one_pass(s, hidden, r0, c);
            continue;
        }
        chunk_logits(s, hidden->data, r0, c);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < c; i++) {
            const gt_real *z = s->zbuf + i * V;
            gt_real mx = gt_row_max(z, V);
            double sum = gt_row_sum_exp(z, V, mx);
            s->rmax[r0 + i] = mx;
            s->inv_sum[r0 + i] = 1.0 / sum;
            s->ce[r0 + i] = (double)mx + log(sum) - (double)z[s->labels[r0 + i]];
        }
        /* While the chunk's logits are at hand, take dh for an upstream gradient of 1 (llm.c's
         * fused classifier): backward then only scales it, saving a recompute of the logits. */
        if (s->dh) {
            chunk_dz(s, V, r0, c, 1);
            gt_gemm(false, false, (int)c, (int)D, (int)V, 1, s->zbuf, (int)V, s->tf, (int)D, 0,
                    s->dh + r0 * D, (int)D);
        }
    }
    return 0;
}

static gt_tensor *lm_head(gt_ctx *ctx, gt_tensor *hidden, gt_tensor *table, const gt_bf16_mat *t16,
                         int64_t V, int64_t D, double softcap, const int32_t *labels,
                         const gt_real *weights, int64_t chunk_rows, double *weight_sum,
                         gt_real *row_ce) {
    if (chunk_rows < 1 || softcap < 0)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: chunk_rows must be >= 1 and softcap >= 0");
    int64_t n = gt_rows(hidden);
    if (V > INT32_MAX || D > INT32_MAX)
        return gt_fail(ctx, GT_ERR_SHAPE, "lm_head_loss: table [%lld, %lld] too large", (long long)V,
                       (long long)D);
    lmhead_saved *s = gt_alloc(ctx, sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->softcap = softcap;
    s->V = V;
    s->D = D;
    s->tf = table ? table->data : NULL;
    s->t16 = t16;
    s->rows = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->rows);
    s->labels = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->labels);
    s->w = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->w);
    s->rmax = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->rmax);
    s->inv_sum = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->inv_sum);
    s->ce = gt_alloc(ctx, (size_t)(n ? n : 1) * sizeof *s->ce);
    if (!gt_ok(ctx)) return NULL;
    double wsum = 0;
    if (pick_rows(ctx, s, n, labels, weights, row_ce, &wsum)) return NULL;
    if (weight_sum) *weight_sum = wsum;
    gt_tensor *in[2] = {hidden, table};
    int n_in = table ? 2 : 1;
    gt_tensor *out = gt_op_out(ctx, 0, NULL, in, n_in);
    if (!out || !gt_ok(ctx)) return NULL;
    bool table_grad = out->requires_grad && table && table->requires_grad;
    /* A frozen table goes in one pass (chunk_one_pass) over vocabulary blocks: a bf16 table's
     * staging rows, else 32 x chunk_rows rows; its row chunk then gets the memory two passes
     * would use (chunk_rows x V logits). A trainable table needs the logits again in backward. */
    int64_t m1 = s->m ? s->m : 1;
    if (!table_grad) {
        int64_t vb = t16 ? gt_bf16_block_rows(t16) : (chunk_rows < V / 32 ? 32 * chunk_rows : V);
        int64_t c = chunk_rows * (V / vb);
        s->vblock = vb;
        s->chunk = c < m1 ? c : m1;
    } else
        s->chunk = chunk_rows < m1 ? chunk_rows : m1;
    /* bf16 arithmetic for a bf16 table marked compute_bf16 (see gt_bf16_mat) in the one pass */
#ifndef GT_REAL_DOUBLE
    /* the staging buffer (vblock x D reals) holds a block's pair-packed bf16 copy, and for a
     * quantised table its widened rows too */
    bool lm_bf16 = s->vblock && t16 && t16->compute_bf16 && D % 32 == 0 && s->vblock % 32 == 0 &&
                   s->vblock * D <= t16->stage_n && gt_bf16_kernel_active() != GT_BF16K_OFF;
    /* GT_LMHEAD_SHARED=1: the older pass whose blocks are split between the threads (comparison) */
    s->split = lm_bf16 && V % 32 == 0 && !getenv("GT_LMHEAD_SHARED");
#else
    const bool lm_bf16 = false;
#endif
    /* one pass: hbuf also keeps each row's label logit; zbuf is one vocabulary block wide */
    int64_t zcols = s->vblock ? s->vblock : V, hcols = s->vblock ? D + 1 : D;
    s->hbuf = gt_alloc(ctx, (size_t)(s->chunk * hcols) * sizeof(gt_real));
    if (!s->split) s->zbuf = gt_alloc(ctx, (size_t)(s->chunk * zcols) * sizeof(gt_real));
    if (!gt_ok(ctx)) return NULL;
    if (out->requires_grad && hidden->requires_grad) {
        s->dh = gt_alloc(ctx, (size_t)(s->m ? s->m * D : 1) * sizeof(gt_real));
        if (!s->dh) return NULL;
    }
    if (lm_bf16) {
        int64_t cp = (s->chunk + 15) / 16 * 16;
        s->hb16 = gt_alloc(ctx, (size_t)(cp * D) * 2);
        if (!s->split) s->zb16 = gt_alloc(ctx, (size_t)(cp * s->vblock) * 2);
        if (!gt_ok(ctx)) return NULL;
    }
    if (forward_chunks(ctx, s, hidden)) return NULL;
    double total = 0;
    for (int64_t i = 0; i < s->m; i++) {
        total += (double)s->w[i] * s->ce[i];
        if (row_ce) row_ce[s->rows[i]] = (gt_real)s->ce[i];
    }
    out->data[0] = (gt_real)total;
    if (!table_grad) { /* backward needs no logits again */
        if (s->zbuf) gt_release(ctx, s->zbuf, (size_t)(s->chunk * zcols) * sizeof(gt_real));
        gt_release(ctx, s->hbuf, (size_t)(s->chunk * hcols) * sizeof(gt_real));
        s->zbuf = s->hbuf = NULL;
    }
    /* backward reads hidden and the table only to recompute logits for the table's gradient; the
     * input gradient was taken in the forward (s->dh) */
    unsigned reads = table_grad ? GT_READ_IN(0) | GT_READ_IN(1) : 0;
    if (!gt_record(ctx, "lm_head_loss", lmhead_backward, out, in, n_in, s, reads)) return NULL;
    return out;
}

gt_tensor *gt_lm_head_loss(gt_ctx *ctx, gt_tensor *hidden, gt_tensor *table, double softcap,
                           const int32_t *labels, const gt_real *weights, int64_t chunk_rows,
                           double *weight_sum, gt_real *row_ce) {
    if (!gt_ok(ctx)) return NULL;
    if (!hidden || !table || !labels)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: NULL input");
    if (table->ndim != 2 || gt_cols(hidden) != gt_cols(table))
        return gt_fail(ctx, GT_ERR_SHAPE, "lm_head_loss: hidden %s does not fit table %s (want [..., D] "
                       "and [V, D])", gt_shp(hidden), gt_shp(table));
    return lm_head(ctx, hidden, table, NULL, table->shape[0], gt_cols(table), softcap, labels,
                   weights, chunk_rows, weight_sum, row_ce);
}

gt_tensor *gt_lm_head_loss_bf16(gt_ctx *ctx, gt_tensor *hidden, const gt_bf16_mat *table,
                                double softcap, const int32_t *labels, const gt_real *weights,
                                int64_t chunk_rows, double *weight_sum, gt_real *row_ce) {
    if (!gt_ok(ctx)) return NULL;
    if (!hidden || !gt_frozen_present(table) || !labels)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: NULL input");
    if (gt_cols(hidden) != table->cols)
        return gt_fail(ctx, GT_ERR_SHAPE, "lm_head_loss: hidden %s does not fit the bf16 table "
                       "[%lld, %lld]", gt_shp(hidden), (long long)table->rows, (long long)table->cols);
    if (gt_bf16_block_rows(table) < 1)
        return gt_fail(ctx, GT_ERR_ARG, "lm_head_loss: the bf16 table's staging cannot hold a row");
    return lm_head(ctx, hidden, NULL, table, table->rows, table->cols, softcap, labels, weights,
                   chunk_rows, weight_sum, row_ce);
}
