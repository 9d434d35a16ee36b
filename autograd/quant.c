/* quant.c: Q8_0 blocks (autograd/quant.h). */
#include "autograd/quant.h"

#include <math.h>
#include <string.h>

#include "util/half.h"

static void quantize_block(const gt_real *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < GT_Q8_BLOCK; i++) {
        float a = fabsf((float)x[i]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = gt_f32_to_f16(d);
    memcpy(b, &h, 2);
    int8_t *q = (int8_t *)(b + 2);
    for (int i = 0; i < GT_Q8_BLOCK; i++) q[i] = (int8_t)roundf((float)x[i] * id);
}

void gt_q8_quantize(const gt_real *src, uint8_t *dst, int64_t n) {
    int64_t nb = n / GT_Q8_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t i = 0; i < nb; i++) quantize_block(src + i * GT_Q8_BLOCK, dst + i * GT_Q8_BYTES);
}

void gt_q8_dequant(const uint8_t *src, gt_real *dst, int64_t n) {
    int64_t nb = n / GT_Q8_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 2048)
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * GT_Q8_BYTES;
        uint16_t h;
        memcpy(&h, b, 2);
        const float d = gt_f16_to_f32(h);
        const int8_t *q = (const int8_t *)(b + 2);
        gt_real *y = dst + i * GT_Q8_BLOCK;
        for (int k = 0; k < GT_Q8_BLOCK; k++) y[k] = (gt_real)(d * (float)q[k]);
    }
}

int gt_qt_block(uint32_t type) {
    switch (type) {
    case GT_QT_Q5_0: case GT_QT_Q8_0: return 32;
    case GT_QT_Q4_K: case GT_QT_Q6_K: return 256;
    default: return 0;
    }
}

int gt_qt_block_bytes(uint32_t type) {
    switch (type) {
    case GT_QT_Q5_0: return 22;
    case GT_QT_Q8_0: return GT_Q8_BYTES;
    case GT_QT_Q4_K: return 144;
    case GT_QT_Q6_K: return 210;
    default: return 0;
    }
}

int64_t gt_qt_bytes(uint32_t type, int64_t n) {
    int b = gt_qt_block(type);
    return b ? n / b * gt_qt_block_bytes(type) : 0;
}

const char *gt_qt_name(uint32_t type) {
    switch (type) {
    case GT_QT_Q5_0: return "Q5_0";
    case GT_QT_Q8_0: return "Q8_0";
    case GT_QT_Q4_K: return "Q4_K";
    case GT_QT_Q6_K: return "Q6_K";
    default: return "?";
    }
}

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return gt_f16_to_f32(h);
}

/* Q5_0: d, qh[4] (the fifth bits), qs[16] (low nibbles: first half, high: second), offset 16 */
static void q5_0_block(const uint8_t *b, float *y) {
    float d = half_at(b);
    const uint8_t *qs = b + 6;
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0xF) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = d * (float)(x0 - 16);
        y[j + 16] = d * (float)(x1 - 16);
    }
}

/* K-quant 6-bit scale and min of sub-block j from the 12 packed bytes */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: d, dmin, scales[12], qs[128]; value = d * scale * q - dmin * min per sub-block of 32 */
static void q4_k_block(const uint8_t *b, float *y) {
    float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        uint8_t s1, m1, s2, m2;
        scale_min_k4(is, sc, &s1, &m1);
        scale_min_k4(is + 1, sc, &s2, &m2);
        float d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2;
        for (int l = 0; l < 32; l++) {
            y[j + l] = d1 * (float)(q[l] & 0xF) - mm1;
            y[j + 32 + l] = d2 * (float)(q[l] >> 4) - mm2;
        }
    }
}

/* Q6_K: ql[128] (low nibbles), qh[64] (2-bit highs), scales[16] (int8, one per 16), d */
static void q6_k_block(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half_at(b + 208);
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[n + l] = d * sc[is] * (float)q1;
            y[n + l + 32] = d * sc[is + 2] * (float)q2;
            y[n + l + 64] = d * sc[is + 4] * (float)q3;
            y[n + l + 96] = d * sc[is + 6] * (float)q4;
        }
    }
}

void gt_qt_block_f32(uint32_t type, const uint8_t *b, float *y) {
    switch (type) {
    case GT_QT_Q5_0: q5_0_block(b, y); break;
    case GT_QT_Q8_0: gt_q8_block_f32(b, y); break;
    case GT_QT_Q4_K: q4_k_block(b, y); break;
    case GT_QT_Q6_K: q6_k_block(b, y); break;
    default: break;
    }
}

/* ---------------------------------------------------------------- Q4_K quantiser
 * The reference (ggml's quantize_row_q4_K_ref) algorithm, step for step in fp32 so the bytes
 * agree: per sub-block of 32, weights |x| + rms, a min-max start refined over 21 candidate
 * scales by weighted least squares; then the 8 scales and mins quantised to 6 bits against
 * their maxima, and the values requantised with the rounded scales.
 * Speed: the fits of LANES sub-blocks (two blocks) run side by side, one sub-block a vector lane
 * (values transposed to [32][LANES]); every lane does the reference's operations in its order,
 * branches become selects, so the bytes are the same as one sub-block at a time. */

enum { LANES = 16, SUB = 32, NMAX = 15, NSTEP = 20 };

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the
 * low mantissa bits (ggml's nearest_int; inline and vectorisable, unlike lrintf's call). */
static inline int round_even(float v) {
    union { float f; int32_t i; } t = {v + 12582912.f};
    return (t.i & 0x007fffff) - 0x00400000;
}

/* the level of v clamped to [0, NMAX], as a float (exact) */
static inline float level(float v) {
    int l = round_even(v);
    l = l < 0 ? 0 : l; /* two selects, no branch: the lane loops vectorise */
    l = l > NMAX ? NMAX : l;
    return (float)l;
}

typedef struct {
    float x[SUB][LANES], w[SUB][LANES], L[SUB][LANES], aux[SUB][LANES];
    float lo[LANES], hi[LANES], sw[LANES], sx[LANES], best[LANES], scale[LANES];
    int flat[LANES];
} fit_lanes;

/* min, max, sums and the min-max start of every lane (a flat lane, hi == lo, keeps L = 0) */
static void fit_start(fit_lanes *f) {
    for (int k = 0; k < LANES; k++) {
        f->lo[k] = f->hi[k] = f->x[0][k];
        f->sw[k] = f->w[0][k];
        f->sx[k] = f->w[0][k] * f->x[0][k];
    }
    for (int i = 1; i < SUB; i++)
        for (int k = 0; k < LANES; k++) {
            float v = f->x[i][k];
            f->lo[k] = v < f->lo[k] ? v : f->lo[k];
            f->hi[k] = v > f->hi[k] ? v : f->hi[k];
            f->sw[k] += f->w[i][k];
            f->sx[k] += f->w[i][k] * v;
        }
    float is[LANES];
    for (int k = 0; k < LANES; k++) {
        f->lo[k] = f->lo[k] > 0 ? 0 : f->lo[k];
        f->flat[k] = f->hi[k] == f->lo[k];
        is[k] = NMAX / (f->flat[k] ? 1.f : f->hi[k] - f->lo[k]);
        f->scale[k] = f->flat[k] ? 0.f : 1 / is[k];
        f->best[k] = 0;
    }
    for (int i = 0; i < SUB; i++)
        for (int k = 0; k < LANES; k++) {
            float l = level(is[k] * (f->x[i][k] - f->lo[k])); /* a flat lane: x = lo, level 0 */
            float e = f->scale[k] * l + f->lo[k] - f->x[i][k];
            f->L[i][k] = l;
            f->best[k] += f->w[i][k] * (e * e);
        }
}

/* Candidate s of the refinement; lanes whose fit improves take it (and its min moves lo). */
static void fit_step(fit_lanes *f, int s) {
    const float num = -1.0f + 0.1f * s + NMAX;
    float is[LANES], sl[LANES] = {0}, sl2[LANES] = {0}, sxl[LANES] = {0}, sc[LANES], m[LANES], err[LANES] = {0};
    for (int k = 0; k < LANES; k++) is[k] = num / (f->flat[k] ? 1.f : f->hi[k] - f->lo[k]); /* lo as moved so far */
    for (int i = 0; i < SUB; i++)
        for (int k = 0; k < LANES; k++) {
            float l = level(is[k] * (f->x[i][k] - f->lo[k])), w = f->w[i][k];
            f->aux[i][k] = l;
            sl[k] += w * l;
            sl2[k] += w * l * l;
            sxl[k] += w * l * f->x[i][k];
        }
    int ok[LANES];
    for (int k = 0; k < LANES; k++) {
        float det = f->sw[k] * sl2[k] - sl[k] * sl[k];
        ok[k] = det > 0 && !f->flat[k];
        float dd = ok[k] ? det : 1.f, q2 = ok[k] ? sl2[k] : 1.f;
        float a = (f->sw[k] * sxl[k] - f->sx[k] * sl[k]) / dd, b = (sl2[k] * f->sx[k] - sl[k] * sxl[k]) / dd;
        float a0 = sxl[k] / q2;
        sc[k] = b > 0 ? a0 : a;
        m[k] = b > 0 ? 0.f : b;
    }
    for (int i = 0; i < SUB; i++)
        for (int k = 0; k < LANES; k++) {
            float e = sc[k] * f->aux[i][k] + m[k] - f->x[i][k];
            err[k] += f->w[i][k] * (e * e);
        }
    for (int k = 0; k < LANES; k++) ok[k] = ok[k] && err[k] < f->best[k];
    for (int i = 0; i < SUB; i++)
        for (int k = 0; k < LANES; k++) f->L[i][k] = ok[k] ? f->aux[i][k] : f->L[i][k];
    for (int k = 0; k < LANES; k++) {
        f->best[k] = ok[k] ? err[k] : f->best[k];
        f->scale[k] = ok[k] ? sc[k] : f->scale[k];
        f->lo[k] = ok[k] ? m[k] : f->lo[k];
    }
}

/* One block from its sub-block fits: 6-bit scales and mins against their maxima, the fp16 d and
 * dmin, the values requantised against the stored (rounded) scales, packed in nibbles. */
static void q4_k_finish_block(const float *x, const float *scales, const float *mins, uint8_t *L, uint8_t *b) {
    float max_scale = 0, max_min = 0;
    uint8_t *sc = b + 4;
    for (int j = 0; j < 8; j++) {
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    float is = max_scale > 0 ? 63.f / max_scale : 0.f, im = max_min > 0 ? 63.f / max_min : 0.f;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = round_even(is * scales[j]), lm = round_even(im * mins[j]);
        ls = ls > 63 ? 63 : ls, lm = lm > 63 ? 63 : lm;
        if (j < 4) {
            sc[j] = (uint8_t)ls, sc[j + 4] = (uint8_t)lm;
        } else { /* low nibbles in bytes 8..11, top two bits over bytes 0..7 */
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    uint16_t hd = gt_f32_to_f16(max_scale / 63.f), hm = gt_f32_to_f16(max_min / 63.f);
    memcpy(b, &hd, 2);
    memcpy(b + 2, &hm, 2);
    float d = gt_f16_to_f32(hd), dmin = gt_f16_to_f32(hm);
    for (int j = 0; j < 8; j++) { /* requantise against the stored (rounded) scales */
        uint8_t s, m;
        scale_min_k4(j, sc, &s, &m);
        float dj = d * s, mj = dmin * m;
        if (dj == 0) continue;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)level((x[32 * j + l] + mj) / dj);
    }
    uint8_t *q = b + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

/* Blocks i0 and i0 + 1 (the second only if i0 + 1 < nb) of src into dst. */
static void q4_k_quantize_pair(const gt_real *src, uint8_t *dst, int64_t i0, int64_t nb, fit_lanes *f) {
    int nblk = i0 + 1 < nb ? 2 : 1;
    float x[2][256];
    memset(x, 0, sizeof x);
    for (int b = 0; b < nblk; b++)
        for (int k = 0; k < 256; k++) x[b][k] = (float)src[(i0 + b) * 256 + k];
    for (int k = 0; k < LANES; k++) {
        const float *xk = x[k / 8] + SUB * (k % 8);
        float s2 = 0;
        for (int l = 0; l < SUB; l++) s2 += xk[l] * xk[l];
        float av = sqrtf(s2 / 32);
        for (int l = 0; l < SUB; l++) f->x[l][k] = xk[l], f->w[l][k] = av + fabsf(xk[l]);
    }
    fit_start(f);
    for (int s = 0; s <= NSTEP; s++) fit_step(f, s);
    for (int b = 0; b < nblk; b++) {
        float scales[8], mins[8];
        uint8_t L[256];
        for (int j = 0; j < 8; j++) {
            int k = 8 * b + j;
            scales[j] = f->scale[k], mins[j] = -f->lo[k];
            for (int l = 0; l < SUB; l++) L[SUB * j + l] = (uint8_t)f->L[l][k];
        }
        q4_k_finish_block(x[b], scales, mins, L, dst + (i0 + b) * 144);
    }
}

void gt_q4k_quantize(const gt_real *src, uint8_t *dst, int64_t n) {
    int64_t nb = n / 256;
#pragma omp parallel for schedule(static) if (nb > 64)
    for (int64_t i = 0; i < nb; i += 2) {
        fit_lanes f;
        q4_k_quantize_pair(src, dst, i, nb, &f);
    }
}
