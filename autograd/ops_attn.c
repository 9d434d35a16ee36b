#include "autograd/ops_attn.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "autograd/bf16_gemm.h"
#include "autograd/blas.h"
#include "autograd/ops_bf16.h"
#include "autograd/rowmath.h"
#include "util/half.h"

/* Query rows go through the GEMMs in blocks of GT_ATTN_QBLOCK so that a causal or sliding-window
 * block multiplies only the key columns [lo, hi) some row of it can see; every probability
 * outside a row's own visible set is stored as exactly 0, which is all backward relies on. Each
 * row's range is also trimmed to its first and last visible key, so packed examples (segments)
 * and padding narrow the GEMMs as well: a block of rows from short examples multiplies only the
 * keys of its own examples. */

typedef struct {
    int64_t B, T, S, N, K, H, Hv;
    int64_t window, q_offset;
    bool causal;
    bool bf16;    /* the products on the bf16 kernel (gt_attn_cfg.bf16, when usable) */
    gt_real scale, softcap;
    gt_real *p;   /* [B, N, T, S] probabilities (NULL when p16 holds them) */
    uint16_t *p16; /* [B, N, T, S] the same rounded to bf16: the bf16 path without soft-cap, for
                    * backward (whose products round them anyway); half the memory of p. Only
                    * each query block's key columns [lo / 32 * 32, up to 32 past hi) are
                    * written: backward reads nothing else */
    gt_real *lse; /* [B, N, T] log-sum-exp of the capped logits; softcap only */
    int32_t *rlo, *rhi; /* [B, T] each row's visible keys lie in [rlo, rhi) (empty: rlo == rhi) */
    /* with p16: q, k, v rounded to bf16 (each only where backward needs it, else NULL) instead of
     * reads of the fp32 inputs: backward's products round them anyway, and the fp32 tensors
     * (1.5x the bytes of these) leave with the forward */
    uint16_t *q16, *k16, *v16;
} attn_saved;

/* Keys [lo, hi) that rows [i0, i1) may see by position alone (causal, window). */
static void key_range(const attn_saved *s, int64_t i0, int64_t i1, int64_t *lo, int64_t *hi) {
    int64_t a = 0, b = s->S;
    if (s->window > 0) a = s->q_offset + i0 - s->window + 1;
    if (s->causal) b = s->q_offset + i1;
    if (a < 0) a = 0;
    if (a > s->S) a = s->S;
    if (b > s->S) b = s->S;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Each query row's [first, last + 1) visible key of batch b: the positional range trimmed by the
 * key mask and segment ids. */
static void row_ranges(const attn_saved *s, const uint8_t *mask, const int32_t *seg,
                       const int32_t *bidir_end, int32_t *rlo, int32_t *rhi) {
    for (int64_t i = 0; i < s->T; i++) {
        int64_t lo, hi;
        key_range(s, i, i + 1, &lo, &hi);
        if (bidir_end) { /* the rest of its span is contiguous: the range just grows */
            int64_t qi = s->q_offset + i, e = bidir_end[qi];
            if (s->window > 0 && e > qi + s->window) e = qi + s->window;
            if (e > s->S) e = s->S;
            if (e > hi) hi = e;
        }
        if (mask || seg) {
            int32_t qseg = seg ? seg[s->q_offset + i] : 0;
            while (lo < hi && !((!mask || mask[lo]) && (!seg || seg[lo] == qseg))) lo++;
            while (hi > lo && !((!mask || mask[hi - 1]) && (!seg || seg[hi - 1] == qseg))) hi--;
        }
        rlo[i] = (int32_t)lo;
        rhi[i] = (int32_t)hi;
    }
}

/* The keys [lo, hi) that rows [i0, i1) of batch b can see: the union of their ranges. */
static void block_range(const attn_saved *s, int64_t b, int64_t i0, int64_t i1, int64_t *lo,
                        int64_t *hi) {
    int64_t a = s->S, z = 0;
    for (int64_t i = i0; i < i1; i++) {
        int64_t l = s->rlo[b * s->T + i], h = s->rhi[b * s->T + i];
        if (l >= h) continue;
        if (l < a) a = l;
        if (h > z) z = h;
    }
    if (z <= a) a = z = 0;
    *lo = a;
    *hi = z;
}

/* Rows per query block: without a causal or window limit every block sees all keys, so one
 * block (the biggest GEMMs) is best. */
static int64_t qblock(const attn_saved *s) {
    if (s->causal || s->window > 0) return GT_ATTN_QBLOCK;
    return s->T > 0 ? s->T : 1;
}

/* gt_gemm, except that an empty inner dimension still defines C (0 when beta == 0). */
static void mm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, gt_real alpha, const gt_real *a,
               int64_t lda, const gt_real *b, int64_t ldb, gt_real beta, gt_real *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (beta == 0)
            for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(gt_real));
        return;
    }
    gt_gemm(ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static inline bool key_visible(const uint8_t *mask, const int32_t *seg, int32_t qseg, int64_t j) {
    return (!mask || mask[j]) && (!seg || seg[j] == qseg);
}


/* One query row: p holds scale*q.k on [lo, hi) (garbage elsewhere) and leaves as the
 * probabilities over keys [z0, z1) (0 outside [lo, hi); a range reaching outside [z0, z1) is
 * trimmed to it, as an empty row's may). mask/seg point at batch b's row (or NULL). Invisible
 * keys are excluded by selection, never by a large negative logit. */
static void softmax_row(gt_real *p, int64_t z0, int64_t z1, int64_t lo, int64_t hi, const uint8_t *mask,
                        const int32_t *seg, int32_t qseg, gt_real cap, gt_real *lse) {
    lo = lo < z0 ? z0 : lo > z1 ? z1 : lo;
    hi = hi < lo ? lo : hi > z1 ? z1 : hi;
    memset(p + z0, 0, (size_t)(lo - z0) * sizeof(gt_real));
    memset(p + hi, 0, (size_t)(z1 - hi) * sizeof(gt_real));
    bool all = !mask && !seg;
    if (cap > 0)
        for (int64_t j = lo; j < hi; j++) p[j] = cap * tanh(p[j] / cap);
    int64_t nvis = 0;
    gt_real m = -INFINITY;
    if (all) {
        nvis = hi - lo;
#pragma omp simd reduction(max : m)
        for (int64_t j = lo; j < hi; j++) m = p[j] > m ? p[j] : m;
    } else {
        for (int64_t j = lo; j < hi; j++)
            if (key_visible(mask, seg, qseg, j)) {
                m = p[j] > m ? p[j] : m;
                nvis++;
            }
    }
    if (nvis == 0) {
        memset(p + lo, 0, (size_t)(hi - lo) * sizeof(gt_real));
        if (lse) *lse = 0;
        return;
    }
    double sum = 0;
    if (all) {
#pragma omp simd reduction(+ : sum)
        for (int64_t j = lo; j < hi; j++) {
            gt_real e = gt_exp_inline(p[j] - m);
            p[j] = e;
            sum += e;
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (int64_t j = lo; j < hi; j++) {
            gt_real e = gt_exp_inline(p[j] - m);
            e = key_visible(mask, seg, qseg, j) ? e : 0;
            p[j] = e;
            sum += e;
        }
    }
    gt_real inv = (gt_real)(1.0 / sum);
#pragma omp simd
    for (int64_t j = lo; j < hi; j++) p[j] *= inv;
    if (lse) *lse = m + (gt_real)log(sum);
}

/* One row of the softmax backward, in place on d (= dP on [lo, hi)): dS = P (dP - sum P dP),
 * then times the soft-cap derivative 1 - tanh^2, with tanh = (log P + lse) / cap. Keys with
 * P == 0 (masked, or underflowed) get exactly 0. */
static void dsoftmax_row(const gt_real *p, gt_real *d, int64_t lo, int64_t hi, gt_real cap,
                         gt_real lse) {
    double r = 0;
#pragma omp simd reduction(+ : r)
    for (int64_t j = lo; j < hi; j++) r += (double)p[j] * (double)d[j];
    gt_real rr = (gt_real)r;
    if (cap > 0) {
        for (int64_t j = lo; j < hi; j++) {
            if (p[j] == 0) {
                d[j] = 0;
                continue;
            }
            gt_real t = (log(p[j]) + lse) / cap;
            d[j] = p[j] * (d[j] - rr) * (1 - t * t);
        }
    } else {
#pragma omp simd
        for (int64_t j = lo; j < hi; j++) d[j] = p[j] * (d[j] - rr);
    }
}

/* Threads for the per-head loops: one head per thread, when there are heads and work enough. */
static int attn_threads(const attn_saved *s) {
    int th = gt_threads();
    if (th > s->N) th = (int)s->N;
    return th > 1 && s->T * s->S * s->H >= GT_PAR_MIN * 8 ? th : 1;
}

/* Batch b, head n: scores, softmax into P (pn: this head's T x S), P V into its out columns. */
static void head_forward(const attn_saved *s, const gt_attn_cfg *cfg, const gt_tensor *q, const gt_tensor *k,
                         const gt_tensor *v, int64_t b, int64_t n, gt_real *pn, gt_real *out) {
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv, G = N / s->K, kv = n / G;
    const int64_t qs = N * H, ks = s->K * H, vs = s->K * Hv, os = N * Hv, QB = qblock(s);
    const gt_real *Q = q->data + b * T * qs + n * H, *Kp = k->data + b * S * ks + kv * H;
    const gt_real *V = v->data + b * S * vs + kv * Hv;
    const uint8_t *mask = cfg->key_mask ? cfg->key_mask + b * S : NULL;
    const int32_t *seg = cfg->segment_ids ? cfg->segment_ids + b * S : NULL;
    gt_real *lse = s->lse ? s->lse + (b * N + n) * T : NULL;
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t i1 = i0 + QB < T ? i0 + QB : T, lo, hi;
        block_range(s, b, i0, i1, &lo, &hi);
        mm(false, true, i1 - i0, hi - lo, H, s->scale, Q + i0 * qs, qs, Kp + lo * ks, ks, 0, pn + i0 * S + lo, S);
        /* a row's own range lies inside its block's, so this also clears the block's columns
         * the row may not see */
        for (int64_t i = i0; i < i1; i++)
            softmax_row(pn + i * S, 0, S, s->rlo[b * T + i], s->rhi[b * T + i], mask, seg,
                        seg ? seg[cfg->q_offset + i] : 0, s->softcap, lse ? lse + i : NULL);
        mm(false, false, i1 - i0, Hv, hi - lo, 1, pn + i0 * S + lo, S, V + lo * vs, vs, 0,
           out + b * T * os + i0 * os + n * Hv, os);
    }
}

/* Backward operands of batch b: saved inputs (NULL where not needed), the gradients, scratch. */
typedef struct {
    const attn_saved *s;
    const gt_real *dout, *qd, *kd, *vd;
    gt_real *dq, *dk, *dv, *ds; /* ds: one T x S slice per head of a group */
    int64_t b;
    uint16_t *bw; /* bf16 products: the kv heads' packs (kvn values each), then bwn values of
                     scratch per thread; NULL: fp32 */
    int64_t bwn, kvn;
    int gth;      /* threads of each bf16 product */
} attn_bwd;

/* Head n's dS (in its slice of ds: dO V^T through the softmax backward) and its dq columns. */
static void head_dq(const attn_bwd *w, int64_t n, gt_real *ds) {
    const attn_saved *s = w->s;
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv, G = N / s->K, b = w->b;
    const int64_t qs = N * H, ks = s->K * H, vs = s->K * Hv, os = N * Hv, QB = qblock(s), kv = n / G;
    const gt_real *P = s->p + (b * N + n) * T * S, *dO = w->dout + b * T * os + n * Hv;
    const gt_real *V = w->vd + b * S * vs + kv * Hv, *Kp = w->kd ? w->kd + b * S * ks + kv * H : NULL;
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t i1 = i0 + QB < T ? i0 + QB : T, lo, hi;
        block_range(s, b, i0, i1, &lo, &hi);
        mm(false, true, i1 - i0, hi - lo, Hv, 1, dO + i0 * os, os, V + lo * vs, vs, 0, ds + i0 * S + lo, S);
        for (int64_t i = i0; i < i1; i++)
            dsoftmax_row(P + i * S, ds + i * S, lo, hi, s->softcap, s->lse ? s->lse[(b * N + n) * T + i] : 0);
        if (w->dq)
            mm(false, false, i1 - i0, H, hi - lo, s->scale, ds + i0 * S + lo, S, Kp + lo * ks, ks, 1,
               w->dq + b * T * qs + i0 * qs + n * H, qs);
    }
}

/* Columns [c0, c1) of head n's kv head's dv (P^T dO) and dk (scale dS^T Q). */
static void head_dkv(const attn_bwd *w, int64_t n, const gt_real *ds, int64_t c0, int64_t c1) {
    const attn_saved *s = w->s;
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv, G = N / s->K, b = w->b;
    const int64_t qs = N * H, ks = s->K * H, vs = s->K * Hv, os = N * Hv, QB = qblock(s), kv = n / G;
    const gt_real *P = s->p + (b * N + n) * T * S, *dO = w->dout + b * T * os + n * Hv;
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t i1 = i0 + QB < T ? i0 + QB : T, lo, hi;
        block_range(s, b, i0, i1, &lo, &hi);
        int64_t v1 = c1 < Hv ? c1 : Hv, k1 = c1 < H ? c1 : H;
        if (w->dv && c0 < v1)
            mm(true, false, hi - lo, v1 - c0, i1 - i0, 1, P + i0 * S + lo, S, dO + i0 * os + c0, os, 1,
               w->dv + b * S * vs + lo * vs + kv * Hv + c0, vs);
        if (w->dk && c0 < k1)
            mm(true, false, hi - lo, k1 - c0, i1 - i0, s->scale, ds + i0 * S + lo, S,
               w->qd + b * T * qs + i0 * qs + n * H + c0, qs, 1, w->dk + b * S * ks + lo * ks + kv * H + c0, ks);
    }
}

#ifndef GT_REAL_DOUBLE
/* ---- bf16 products (gt_attn_cfg.bf16) ----
 * The same blocks as the fp32 path, each product on the bf16 kernel with its operands rounded
 * (and zero-padded) by the padded packers. A head's keys and values are packed once for all its
 * query blocks; outputs that would need a transposed operand are computed transposed (out^T =
 * V^T P^T, dq^T = K^T dS^T) and stored through the kernel's transposed store. Key columns are
 * taken from lo rounded down to 16 (products) or 32 (reductions over keys): the extra columns hold
 * exact zeros in P, and dS gets them zeroed, so nothing changes but the rounding. */

static int64_t up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* bf16 values of one kv head's packed keys and values (forward: K^T panels and V^T; backward:
 * V^T panels and K^T), shared by the query heads of its group. */
static int64_t bf_kv_n(const attn_saved *s) {
    int64_t S16 = up(s->S, 16), Sp = up(s->S, 32), f = S16 * s->H + s->Hv * Sp, g = S16 * s->Hv + s->H * Sp;
    return up(f > g ? f : g, 32);
}

/* bf16 values of one thread's scratch: the largest of a forward block's, head_dq's and
 * head_dkv's needs. */
static int64_t bf_scratch_n(const attn_saved *s, int th) {
    int64_t Sp = up(s->S, 32), S16 = up(s->S, 16), Q32 = up(qblock(s), 32);
    int64_t hm = s->H > s->Hv ? s->H : s->Hv, cw = up(hm, 16) + 16;
    int64_t fwd = Q32 * s->H + Q32 * Sp, dq = Q32 * s->Hv + Q32 * Sp, dkv = S16 * Q32 + Q32 * cw;
    int64_t n = fwd > dq ? fwd : dq;
    (void)th;
    return up(n > dkv ? n : dkv, 32);
}

/* With p16: the fp32 rows of one query block (QB x S), after the bf16 scratch above. */
static int64_t bf_pf_n(const attn_saved *s) { return s->p16 ? up(2 * qblock(s) * s->S, 32) : 0; }

/* This thread's fp32 block rows (p16 only): the end of its scratch wk. */
static gt_real *bf_pf(const attn_saved *s, uint16_t *wk) { return (gt_real *)(wk + bf_scratch_n(s, 1)); }

/* Rows [i0, i1), columns [c0, c1) of head P16 (row stride S) widened into pf (rows from 0). */
static void p16_rows(const uint16_t *P16, int64_t S, int64_t i0, int64_t i1, int64_t c0, int64_t c1, gt_real *pf) {
    for (int64_t i = i0; i < i1; i++) {
        const uint16_t *src = P16 + i * S;
        gt_real *dst = pf + (i - i0) * S;
#pragma omp simd
        for (int64_t j = c0; j < c1; j++) dst[j] = gt_bf16_to_f32(src[j]);
    }
}

/* The kv packs of every kv head, then th threads' scratch. */
static uint16_t *bf_scratch(gt_ctx *ctx, const attn_saved *s, int th) {
    size_t bytes = (size_t)(s->K * bf_kv_n(s) + (bf_scratch_n(s, th) + bf_pf_n(s)) * th) * 2;
    uint16_t *p = aligned_alloc(64, bytes);
    if (!p) gt_fail(ctx, GT_ERR_NOMEM, "attention: out of memory for %zu bytes of bf16 operands", bytes);
    return p;
}

/* Batch b's keys and values packed once per kv head (two packs per head, split over th
 * threads): fwd, K^T as B panels and V^T as A; otherwise (backward) V^T as B panels and, with
 * kd, K^T as A. */
static void bf_pack_kv(const attn_saved *s, const gt_real *kd, const gt_real *vd, int64_t b, bool fwd, uint16_t *kv,
                       int th) {
    const int64_t S = s->S, H = s->H, Hv = s->Hv, ks = s->K * H, vs = s->K * Hv, S16 = up(S, 16), Sp = up(S, 32);
    const int64_t kvn = bf_kv_n(s);
#pragma omp parallel for schedule(static) num_threads(th) if (th > 1)
    for (int64_t t = 0; t < 2 * s->K; t++) {
        int64_t h = t / 2;
        const gt_real *Kh = kd ? kd + b * S * ks + h * H : NULL, *Vh = vd + b * S * vs + h * Hv;
        uint16_t *p = kv + h * kvn;
        if (fwd && t % 2 == 0) gt_bf16_pack_bt_pad(Kh, ks, S, H, 1, p, S16, H);
        if (fwd && t % 2 == 1) gt_bf16_pack_at_pad(Vh, vs, Hv, S, 1, p + S16 * H, Hv, Sp);
        if (!fwd && t % 2 == 0) gt_bf16_pack_bt_pad(Vh, vs, S, Hv, 1, p, S16, Hv);
        if (!fwd && t % 2 == 1 && Kh) gt_bf16_pack_at_pad(Kh, ks, H, S, 1, p + S16 * Hv, H, Sp);
    }
}

/* head_forward's products in bf16; wk: this thread's scratch. */
static void head_forward_bf16(const attn_saved *s, const gt_attn_cfg *cfg, const gt_tensor *q, int64_t b,
                              int64_t n, gt_real *pn, gt_real *out, const uint16_t *kv, uint16_t *wk, int gth) {
    /* with p16 the block's fp32 rows live in the thread's scratch and leave rounded */
    uint16_t *p16 = s->p16 ? s->p16 + (b * s->N + n) * s->T * s->S : NULL;
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv, G = N / s->K;
    const int64_t qs = N * H, os = N * Hv, QB = qblock(s);
    const int64_t S16 = up(S, 16), Sp = up(S, 32), Q32 = up(QB, 32);
    const gt_real *Q = q->data + b * T * qs + n * H;
    const uint8_t *mask = cfg->key_mask ? cfg->key_mask + b * S : NULL;
    const int32_t *seg = cfg->segment_ids ? cfg->segment_ids + b * S : NULL;
    gt_real *lse = s->lse ? s->lse + (b * N + n) * T : NULL;
    const uint16_t *kt = kv + (n / G) * bf_kv_n(s), *vt = kt + S16 * H; /* K^T panels, V^T */
    uint16_t *qa = wk, *pt = qa + Q32 * H;
    gt_bf16_kernel kk = gt_bf16_kernel_active();
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t i1 = i0 + QB < T ? i0 + QB : T, lo, hi;
        block_range(s, b, i0, i1, &lo, &hi);
        int64_t mv = i1 - i0, Mp = up(mv, 16), l16 = lo / 16 * 16, l32 = lo / 32 * 32, kw = up(hi - l32, 32);
        gt_real *blk = p16 ? bf_pf(s, wk) : pn + i0 * S; /* rows i0.. */
        gt_bf16_pack_a_pad(Q + i0 * qs, qs, mv, H, (float)s->scale, qa, Mp, H);
        gt_bf16_gemm(kk, gth, Mp, up(hi - l16, 16), H, qa, H, kt + l16 * H, blk + l16, S, mv, hi - l16,
                     false, false);
        /* only the block's columns [l32, ze) are cleared and kept: every later read of these rows
         * (the product below, backward's) stays inside them (a full row of S per query cost as
         * much memory traffic as the products on short packed examples) */
        int64_t ze = l32 + kw < S ? l32 + kw : S;
        for (int64_t i = i0; i < i1; i++)
            softmax_row(blk + (i - i0) * S, l32, ze, s->rlo[b * T + i], s->rhi[b * T + i], mask, seg,
                        seg ? seg[cfg->q_offset + i] : 0, s->softcap, lse ? lse + i : NULL);
        for (int64_t i = i0; p16 && i < i1; i++) gt_to_bf16_n(blk + (i - i0) * S + l32, p16 + i * S + l32, ze - l32);
        /* out^T [Hv, rows] = V^T P^T; P is exactly 0 outside each row's keys */
        gt_bf16_pack_bt_pad(blk + l32, S, mv, S - l32 < kw ? S - l32 : kw, 1, pt, Mp, kw);
        gt_bf16_gemm(kk, gth, Hv, Mp, kw, vt + l32, Sp, pt, out + b * T * os + i0 * os + n * Hv, os, Hv, mv, true,
                     false);
    }
}

/* head_dq's products in bf16 (wk: this thread's scratch); dS leaves zeroed on the rounded-out
 * columns [lo / 32 * 32, lo) and [hi, hi rounded up) for head_dkv_bf16. */
static void head_dq_bf16(const attn_bwd *w, int64_t n, gt_real *ds, uint16_t *wk, int gth) {
    const uint16_t *vp = w->bw + (n / (w->s->N / w->s->K)) * w->kvn; /* V^T panels, then K^T */
    const attn_saved *s = w->s;
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv, b = w->b;
    const int64_t qs = N * H, os = N * Hv, QB = qblock(s);
    const int64_t S16 = up(S, 16), Sp = up(S, 32), Q32 = up(QB, 32);
    const gt_real *P = s->p ? s->p + (b * N + n) * T * S : NULL, *dO = w->dout + b * T * os + n * Hv;
    const uint16_t *P16 = s->p16 ? s->p16 + (b * N + n) * T * S : NULL;
    const uint16_t *ka = vp + S16 * Hv;
    uint16_t *da = wk, *dt = da + Q32 * Hv;
    gt_bf16_kernel kk = gt_bf16_kernel_active();
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t i1 = i0 + QB < T ? i0 + QB : T, lo, hi;
        block_range(s, b, i0, i1, &lo, &hi);
        int64_t mv = i1 - i0, Mp = up(mv, 16), l16 = lo / 16 * 16, l32 = lo / 32 * 32, kw = up(hi - l32, 32);
        int64_t ke = l32 + kw < S ? l32 + kw : S;
        gt_bf16_pack_a_pad(dO + i0 * os, os, mv, Hv, 1, da, Mp, Hv);
        gt_bf16_gemm(kk, gth, Mp, up(hi - l16, 16), Hv, da, Hv, vp + l16 * Hv, ds + i0 * S + l16, S, mv, hi - l16,
                     false, false);
        const gt_real *pr = P ? P + i0 * S : bf_pf(s, wk); /* rows i0.. */
        if (P16) p16_rows(P16, S, i0, i1, lo, hi, bf_pf(s, wk));
        for (int64_t i = i0; i < i1; i++) {
            dsoftmax_row(pr + (i - i0) * S, ds + i * S, lo, hi, s->softcap,
                         s->lse ? s->lse[(b * N + n) * T + i] : 0);
            memset(ds + i * S + l32, 0, (size_t)(lo - l32) * sizeof(gt_real));
            memset(ds + i * S + hi, 0, (size_t)(ke - hi) * sizeof(gt_real));
        }
        if (!w->dq) continue;
        /* dq^T [H, rows] += K^T (scale dS)^T */
        gt_bf16_pack_bt_pad(ds + i0 * S + l32, S, mv, ke - l32, (float)s->scale, dt, Mp, kw);
        gt_bf16_gemm(kk, gth, H, Mp, kw, ka + l32, Sp, dt, w->dq + b * T * qs + i0 * qs + n * H, qs, H, mv, true,
                     true);
    }
}

/* head_dkv's products in bf16: dv += P^T dO (with do_dv), dk += dS^T (scale Q) (with do_dk) on
 * columns [c0, c1). */
static void head_dkv_bf16(const attn_bwd *w, int64_t n, const gt_real *ds, int64_t c0, int64_t c1, uint16_t *wk,
                          int gth, bool do_dv, bool do_dk) {
    const attn_saved *s = w->s;
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv, G = N / s->K, b = w->b;
    const int64_t qs = N * H, ks = s->K * H, vs = s->K * Hv, os = N * Hv, QB = qblock(s), kv = n / G;
    const int64_t S16 = up(S, 16), Q32 = up(QB, 32);
    const gt_real *P = s->p ? s->p + (b * N + n) * T * S : NULL, *dO = w->dout + b * T * os + n * Hv;
    const uint16_t *P16 = s->p16 ? s->p16 + (b * N + n) * T * S : NULL;
    uint16_t *at = wk, *bp = at + S16 * Q32;
    gt_bf16_kernel kk = gt_bf16_kernel_active();
    for (int64_t i0 = 0; i0 < T; i0 += QB) {
        int64_t i1 = i0 + QB < T ? i0 + QB : T, lo, hi;
        block_range(s, b, i0, i1, &lo, &hi);
        int64_t mv = i1 - i0, Kq = up(mv, 32), l16 = lo / 16 * 16, mk = hi - l16, Mk = up(mk, 16);
        int64_t v1 = c1 < Hv ? c1 : Hv, k1 = c1 < H ? c1 : H;
        if (mk <= 0) continue;
        if (do_dv && w->dv && c0 < v1) {
            const gt_real *pr = P ? P + i0 * S : bf_pf(s, wk); /* rows i0.. */
            if (P16) p16_rows(P16, S, i0, i1, l16, hi, bf_pf(s, wk));
            gt_bf16_pack_at_pad(pr + l16, S, mk, mv, 1, at, Mk, Kq); /* A = P^T */
            gt_bf16_pack_b_pad(dO + i0 * os + c0, os, mv, v1 - c0, 1, bp, up(v1 - c0, 16), Kq);
            gt_bf16_gemm(kk, gth, Mk, up(v1 - c0, 16), Kq, at, Kq, bp, w->dv + b * S * vs + l16 * vs + kv * Hv + c0,
                         vs, mk, v1 - c0, false, true);
        }
        if (do_dk && w->dk && c0 < k1) {
            gt_bf16_pack_at_pad(ds + i0 * S + l16, S, mk, mv, 1, at, Mk, Kq); /* A = dS^T */
            gt_bf16_pack_b_pad(w->qd + b * T * qs + i0 * qs + n * H + c0, qs, mv, k1 - c0, (float)s->scale, bp,
                               up(k1 - c0, 16), Kq);
            gt_bf16_gemm(kk, gth, Mk, up(k1 - c0, 16), Kq, at, Kq, bp, w->dk + b * S * ks + l16 * ks + kv * H + c0,
                         ks, mk, k1 - c0, false, true);
        }
    }
}
#endif

/* One head's backward pieces on the path the saved state chose (see attn_bwd.bw). */
static void run_dq(const attn_bwd *w, int64_t n, gt_real *ds) {
#ifndef GT_REAL_DOUBLE
    if (w->bw) {
        head_dq_bf16(w, n, ds, w->bw + w->s->K * w->kvn + omp_get_thread_num() * w->bwn, w->gth);
        return;
    }
#endif
    head_dq(w, n, ds);
}

/* Part c of th of head n's dk and dv: columns [c cw, (c + 1) cw) of both; on the bf16 path with
 * two threads and both gradients, dv (c = 0) or dk (c = 1) whole, so that no thread packs the
 * other's transposed operand again. */
static void run_dkv(const attn_bwd *w, int64_t n, const gt_real *ds, int c, int th, int64_t cw) {
#ifndef GT_REAL_DOUBLE
    if (w->bw) {
        uint16_t *wk = w->bw + w->s->K * w->kvn + omp_get_thread_num() * w->bwn;
        int64_t hm = w->s->H > w->s->Hv ? w->s->H : w->s->Hv;
        if (th == 2 && w->dk && w->dv) head_dkv_bf16(w, n, ds, 0, hm, wk, w->gth, c == 0, c == 1);
        else head_dkv_bf16(w, n, ds, c * cw, (c + 1) * cw, wk, w->gth, true, true);
        return;
    }
#endif
    head_dkv(w, n, ds, c * cw, (c + 1) * cw);
}

/* Heads in groups of one per thread: first each head's dS and dq (its own columns), then dk and
 * dv split by columns between the threads, as heads of a group may share a kv head. Each thread
 * runs single-threaded GEMMs: OpenBLAS's pool on these small blocks spent more time handing work
 * over (sched_yield) than multiplying. */
static void attention_backward(gt_ctx *ctx, gt_node *node) {
    attn_saved *s = node->saved;
    gt_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2];
    attn_bwd w = {s, gt_grad(ctx, node->out), NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, 0, 1};
    w.dq = gt_needs_grad(q) ? gt_grad(ctx, q) : NULL;
    w.dk = gt_needs_grad(k) ? gt_grad(ctx, k) : NULL;
    w.dv = gt_needs_grad(v) ? gt_grad(ctx, v) : NULL;
    bool need_ds = w.dq || w.dk;
    const int64_t T = s->T, S = s->S, N = s->N, H = s->H, Hv = s->Hv;
    int th = attn_threads(s);
    size_t ds_n = (size_t)(th * T * S + 1);
    w.ds = need_ds ? gt_alloc(ctx, ds_n * sizeof(gt_real)) : NULL;
    /* reads: attention_reads, or the bf16 copies widened into one malloc'ed buffer (the same
     * size every layer: from the arena, each layer's took new memory, 100 MB at 270M 4 x 256) */
    gt_real *wide = NULL;
    if (s->p16) {
        const int64_t nq = s->q16 ? s->B * T * N * H : 0, nk = s->k16 ? s->B * S * s->K * H : 0;
        const int64_t nv = s->v16 ? s->B * S * s->K * Hv : 0;
        if (!(wide = malloc((size_t)(nq + nk + nv + 1) * sizeof(gt_real)))) {
            gt_fail(ctx, GT_ERR_NOMEM, "attention: out of memory widening its saved inputs");
            return;
        }
        if (nq) gt_bf16_expand(s->q16, wide, nq), w.qd = wide;
        if (nk) gt_bf16_expand(s->k16, wide + nq, nk), w.kd = wide + nq;
        if (nv) gt_bf16_expand(s->v16, wide + nq + nk, nv), w.vd = wide + nq + nk;
    } else {
        w.qd = w.dk ? gt_saved_data(ctx, node, 0) : NULL;
        w.kd = w.dq ? gt_saved_data(ctx, node, 1) : NULL;
        w.vd = need_ds ? gt_saved_data(ctx, node, 2) : NULL;
    }
#ifndef GT_REAL_DOUBLE
    if (s->bf16 && gt_ok(ctx)) {
        w.bw = bf_scratch(ctx, s, th);
        w.bwn = bf_scratch_n(s, th) + bf_pf_n(s);
        w.kvn = bf_kv_n(s);
        w.gth = th > 1 ? 1 : gt_threads();
    }
#endif
    if (!gt_ok(ctx)) return;
    int64_t cw = ((H > Hv ? H : Hv) + th - 1) / th;
    cw = (cw + 15) / 16 * 16; /* column chunks of whole vectors */
    for (w.b = 0; w.b < s->B; w.b++) {
#ifndef GT_REAL_DOUBLE
        if (w.bw && need_ds) bf_pack_kv(s, w.kd, w.vd, w.b, false, w.bw, th);
#endif
        for (int64_t g0 = 0; g0 < N; g0 += th) {
            int64_t g1 = g0 + th < N ? g0 + th : N;
#pragma omp parallel for schedule(static) num_threads(th) if (th > 1)
            for (int64_t n = g0; n < g1; n++)
                if (need_ds) run_dq(&w, n, w.ds + (n - g0) * T * S);
#pragma omp parallel for schedule(static) num_threads(th) if (th > 1)
            for (int c = 0; c < th; c++)
                for (int64_t n = g0; n < g1; n++)
                    run_dkv(&w, n, need_ds ? w.ds + (n - g0) * T * S : NULL, c, th, cw);
        }
    }
    free(w.bw);
    free(wide);
    /* the probabilities and the scratch are dead once this node has run */
    if (w.ds) gt_release(ctx, w.ds, ds_n * sizeof(gt_real));
    if (s->q16) gt_release(ctx, s->q16, (size_t)(s->B * T * N * H) * 2);
    if (s->k16) gt_release(ctx, s->k16, (size_t)(s->B * S * s->K * H) * 2);
    if (s->v16) gt_release(ctx, s->v16, (size_t)(s->B * S * s->K * Hv) * 2);
    size_t pbytes = (size_t)(s->B * N * T * S > 0 ? s->B * N * T * S : 1) * (s->p16 ? 2 : sizeof(gt_real));
    gt_release(ctx, s->p16 ? (void *)s->p16 : (void *)s->p, pbytes);
    if (s->lse) gt_release(ctx, s->lse, (size_t)(s->B * N * T + 1) * sizeof(gt_real));
    gt_release(ctx, s->rlo, (size_t)(2 * s->B * T + 1) * sizeof(int32_t));
}

/* What attention's backward reads (P is saved): v for dP (q's or k's gradient), k for q's
 * gradient, q for k's. v's gradient needs only P. */
static unsigned attention_reads(const gt_tensor *q, const gt_tensor *k, const gt_tensor *v) {
    bool dq = gt_needs_grad(q), dk = gt_needs_grad(k);
    return (dk ? GT_READ_IN(0) : 0) | (dq ? GT_READ_IN(1) : 0) | (dq || dk ? GT_READ_IN(2) : 0);
}

static bool fits_int(int64_t x) { return x >= 0 && x <= INT32_MAX; }

/* bf16 copies of the inputs whose values backward reads (the reads mask of attention_reads). */
static bool copy_bf16_inputs(gt_ctx *ctx, attn_saved *s, const gt_tensor *q, const gt_tensor *k, const gt_tensor *v,
                             unsigned reads) {
    const gt_tensor *src[3] = {q, k, v};
    uint16_t **dst[3] = {&s->q16, &s->k16, &s->v16};
    for (int i = 0; i < 3; i++) {
        if (!(reads & GT_READ_IN(i))) continue;
        if (!(*dst[i] = gt_alloc(ctx, (size_t)src[i]->size * 2))) return false;
        gt_to_bf16_n(src[i]->data, *dst[i], src[i]->size);
    }
    return true;
}

gt_tensor *gt_attention(gt_ctx *ctx, gt_tensor *q, gt_tensor *k, gt_tensor *v,
                        const gt_attn_cfg *cfg) {
    if (!gt_ok(ctx)) return NULL;
    if (!q || !k || !v || !cfg)
        return gt_fail(ctx, GT_ERR_ARG, "attention: NULL input (q %s, k %s, v %s, cfg %s)",
                       gt_shp(q), gt_shp(k), gt_shp(v), cfg ? "set" : "(null)");
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        return gt_fail(ctx, GT_ERR_SHAPE, "attention: q %s, k %s, v %s must be [B,T,N,H], "
                       "[B,S,K,H], [B,S,K,Hv]", gt_shp(q), gt_shp(k), gt_shp(v));
    const int64_t B = q->shape[0], T = q->shape[1], N = q->shape[2], H = q->shape[3];
    const int64_t S = k->shape[1], K = k->shape[2], Hv = v->shape[3];
    if (k->shape[0] != B || v->shape[0] != B || v->shape[1] != S || v->shape[2] != K ||
        k->shape[3] != H)
        return gt_fail(ctx, GT_ERR_SHAPE, "attention: q %s, k %s, v %s do not fit [B,T,N,H], "
                       "[B,S,K,H], [B,S,K,Hv]", gt_shp(q), gt_shp(k), gt_shp(v));
    if (N < 1 || K < 1 || N % K != 0)
        return gt_fail(ctx, GT_ERR_SHAPE, "attention: %lld query heads not a multiple of %lld kv "
                       "heads (q %s, k %s)", (long long)N, (long long)K, gt_shp(q), gt_shp(k));
    if (cfg->q_offset < 0 || cfg->q_offset > S)
        return gt_fail(ctx, GT_ERR_ARG, "attention: q_offset %lld outside [0, %lld] (q %s, k %s)",
                       (long long)cfg->q_offset, (long long)S, gt_shp(q), gt_shp(k));
    if ((cfg->causal || cfg->segment_ids || cfg->bidir_end) && T + cfg->q_offset > S)
        return gt_fail(ctx, GT_ERR_SHAPE, "attention: %s queries need T + q_offset <= S, got "
                       "%lld + %lld > %lld (q %s, k %s)", cfg->causal ? "causal" : "segmented",
                       (long long)T, (long long)cfg->q_offset, (long long)S, gt_shp(q), gt_shp(k));
    if (cfg->window < 0)
        return gt_fail(ctx, GT_ERR_ARG, "attention: window %lld < 0 (q %s)", (long long)cfg->window,
                       gt_shp(q));
    if (!(cfg->softcap >= 0) || isinf(cfg->softcap))
        return gt_fail(ctx, GT_ERR_ARG, "attention: softcap %g must be finite and >= 0 (q %s)",
                       cfg->softcap, gt_shp(q));
    if (!isfinite(cfg->scale))
        return gt_fail(ctx, GT_ERR_ARG, "attention: scale %g is not finite (q %s)", cfg->scale,
                       gt_shp(q));
    int64_t pshape[4] = {B, N, T, S};
    int64_t psize = gt_shape_size(4, pshape);
    if (!fits_int(T) || !fits_int(S) || !fits_int(N * H) || !fits_int(N * Hv) || psize < 0 ||
        psize > INT64_MAX / (int64_t)sizeof(gt_real))
        return gt_fail(ctx, GT_ERR_SHAPE, "attention: q %s, k %s, v %s too large for one op",
                       gt_shp(q), gt_shp(k), gt_shp(v));

    gt_tensor *in[3] = {q, k, v};
    int64_t oshape[4] = {B, T, N, Hv};
    gt_tensor *out = gt_op_out(ctx, 4, oshape, in, 3);
    attn_saved *s = gt_alloc(ctx, sizeof *s);
    if (!out || !s) return NULL;
    *s = (attn_saved){B, T, S, N, K, H, Hv, cfg->window, cfg->q_offset, cfg->causal, false,
                      (gt_real)cfg->scale, (gt_real)cfg->softcap, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
#ifndef GT_REAL_DOUBLE
    s->bf16 = cfg->bf16 && gt_bf16_kernel_active() != GT_BF16K_OFF && H % 32 == 0 && Hv % 32 == 0;
#endif
    /* Backward needs every batch's probabilities; inference reuses one batch's worth. */
    bool keep = out->requires_grad;
    int64_t pn = keep ? psize : N * T * S;
    if (keep && s->bf16 && s->softcap == 0) s->p16 = gt_alloc(ctx, (size_t)(pn ? pn : 1) * 2);
    else s->p = gt_alloc(ctx, (size_t)(pn ? pn : 1) * sizeof(gt_real));
    if (keep && s->softcap > 0) s->lse = gt_alloc(ctx, (size_t)(B * N * T + 1) * sizeof(gt_real));
    s->rlo = gt_alloc(ctx, (size_t)(2 * B * T + 1) * sizeof(int32_t));
    if (!gt_ok(ctx)) return NULL;
    s->rhi = s->rlo + B * T;
    for (int64_t b = 0; b < B; b++)
        row_ranges(s, cfg->key_mask ? cfg->key_mask + b * S : NULL,
                   cfg->segment_ids ? cfg->segment_ids + b * S : NULL,
                   cfg->bidir_end ? cfg->bidir_end + b * S : NULL, s->rlo + b * T, s->rhi + b * T);

    int th = attn_threads(s);
    uint16_t *bw = NULL;
    int64_t bwn = 0;
    (void)bwn;
#ifndef GT_REAL_DOUBLE
    if (s->bf16 && !(bw = bf_scratch(ctx, s, th))) return NULL;
    bwn = bf_scratch_n(s, th) + bf_pf_n(s);
#endif
    for (int64_t b = 0; b < B; b++) {
        gt_real *pb = s->p ? s->p + (keep ? b * N * T * S : 0) : NULL;
#ifndef GT_REAL_DOUBLE
        if (bw) bf_pack_kv(s, k->data, v->data, b, true, bw, th);
#endif
#pragma omp parallel for schedule(static) num_threads(th) if (th > 1)
        for (int64_t n = 0; n < N; n++) {
#ifndef GT_REAL_DOUBLE
            if (bw) {
                head_forward_bf16(s, cfg, q, b, n, pb ? pb + n * T * S : NULL, out->data, bw,
                                  bw + K * bf_kv_n(s) + omp_get_thread_num() * bwn, th > 1 ? 1 : gt_threads());
                continue;
            }
#endif
            head_forward(s, cfg, q, k, v, b, n, pb + n * T * S, out->data);
        }
    }
    free(bw);
    unsigned reads = attention_reads(q, k, v);
    if (s->p16 && !copy_bf16_inputs(ctx, s, q, k, v, reads)) return NULL;
    if (!gt_record(ctx, "attention", attention_backward, out, in, 3, s, s->p16 ? 0 : reads)) return NULL;
    return out;
}
