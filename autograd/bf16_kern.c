/* bf16_kern.c: AMX-BF16 and AVX512-BF16 blocks and the packers (see bf16_kern.h). This file is
 * compiled with the bf16 instruction sets enabled; nothing here may run before bf16_gemm.c has
 * checked the CPU. */
#include "autograd/bf16_kern.h"

#include <immintrin.h>
#include <string.h>

/* ---- output: a block computed into a local buffer, written into C ---- */

/* In-register transpose of 16 x 16 32-bit values: r[i] holds row i before, column i after.
 * Four stages: pairs of rows interleaved by 32 bits, then by 64 bits (each 128-bit lane then holds
 * a transposed 4 x 4 piece), then the lanes gathered across rows in two 128-bit shuffles. */
static inline void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* lane L of r[4g+q]: rows 4g..4g+3 of column 4L+q */
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int q = 0; q < 4; q++) {
        t[q] = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x88);          /* columns q, 8+q; rows 0-7 */
        t[4 + q] = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xdd);      /* columns 4+q, 12+q */
        t[8 + q] = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x88); /* the same, rows 8-15 */
        t[12 + q] = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xdd);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm512_shuffle_f32x4(t[q], t[8 + q], 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(t[q], t[8 + q], 0xdd);
        r[4 + q] = _mm512_shuffle_f32x4(t[4 + q], t[12 + q], 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(t[4 + q], t[12 + q], 0xdd);
    }
}

/* The word permute that interleaves two runs of 16 bf16 values into 16 pairs: pair j is (word j,
 * word off + j) of vpermt2w's two sources (off 32: the low 16 words of the second source; off
 * 16: the high half of the first). */
static inline __m512i pair_idx(int off) {
    uint16_t ix[32];
    for (int j = 0; j < 16; j++) ix[2 * j] = (uint16_t)j, ix[2 * j + 1] = (uint16_t)(off + j);
    __m512i idx;
    memcpy(&idx, ix, sizeof ix);
    return idx;
}

/* The valid part of a block buffer t (rows x cols, row stride ldt) into C, in 16 x 16 pieces with
 * masks for the ragged edges: transposed in registers when o->trans (the LM head's last column
 * block of 17 valid tokens went through scalar loops before: 12% of this function's time). Only
 * t's valid rows and columns are read, only C's valid ones written. */
static void finish(const gt_bf16k_out *o, const float *t, int ldt, int64_t m0, int64_t n0, int rows,
                   int cols) {
    int64_t mr = o->Mv - m0 < rows ? o->Mv - m0 : rows, nc = o->Nv - n0 < cols ? o->Nv - n0 : cols;
    for (int64_t i0 = 0; i0 < mr; i0 += 16)
        for (int64_t j0 = 0; j0 < nc; j0 += 16) {
            int pr = mr - i0 < 16 ? (int)(mr - i0) : 16, pc = nc - j0 < 16 ? (int)(nc - j0) : 16;
            __mmask16 rm = (__mmask16)((1u << pr) - 1), cm = (__mmask16)((1u << pc) - 1);
            if (!o->trans) {
                for (int i = 0; i < pr; i++) {
                    float *c = o->C + (m0 + i0 + i) * o->ldc + n0 + j0;
                    __m512 v = _mm512_maskz_loadu_ps(cm, t + (i0 + i) * ldt + j0);
                    if (o->accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(cm, c));
                    _mm512_mask_storeu_ps(c, cm, v);
                }
                continue;
            }
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < pr ? _mm512_maskz_loadu_ps(cm, t + (i0 + i) * ldt + j0) : _mm512_setzero_ps();
            tr16(r); /* r[j]: column j0 + j of the piece's rows */
            for (int j = 0; j < pc; j++) {
                float *c = o->C + (n0 + j0 + j) * o->ldc + m0 + i0;
                __m512 v = o->accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(rm, c), r[j]) : r[j];
                _mm512_mask_storeu_ps(c, rm, v);
            }
        }
}

/* ---- AMX ---- */

typedef struct __attribute__((packed)) {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

void gt_bf16k_amx_thread_init(void) {
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;
    /* not _tile_loadconfig: GCC 12's macro tells the compiler it reads only 8 bytes of the
     * configuration, so the stores to the rest may be dropped */
    __asm__ volatile("ldtilecfg %0" : : "m"(c));
}

void gt_bf16k_amx_thread_done(void) { _tile_release(); }

/* tmm0..3: C (2 x 2 tiles of 16 x 16 fp32), tmm4/5: A (16 rows x 32 bf16), tmm6/7: B (16 pairs x
 * 16 columns). Panel p of Bp holds rows k/2 of 64 bytes: the B tile for k is at Bp + p*K*16 + k*16. */
void gt_bf16k_amx_block(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A,
                        int64_t lda, const uint16_t *Bp, const gt_bf16k_out *o) {
    const uint16_t *a0 = A + m0 * lda, *b0 = Bp + (n0 / 16) * K * 16;
    const long sa = (long)(lda * 2);
    if (mt == 2 && nt == 2) {
        const uint16_t *a1 = a0 + 16 * lda, *b1 = b0 + K * 16;
        bool direct = !o->trans && m0 + 32 <= o->Mv && n0 + 32 <= o->Nv;
        float *c = o->C + m0 * o->ldc + n0;
        const long sc = (long)(o->ldc * 4);
        if (direct && o->accumulate) {
            _tile_loadd(0, c, sc);
            _tile_loadd(1, c + 16, sc);
            _tile_loadd(2, c + 16 * o->ldc, sc);
            _tile_loadd(3, c + 16 * o->ldc + 16, sc);
        } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        }
        for (int64_t k = 0; k < K; k += 32) {
            _tile_loadd(4, a0 + k, sa);
            _tile_loadd(6, b0 + k * 16, 64);
            _tile_loadd(5, a1 + k, sa);
            _tile_loadd(7, b1 + k * 16, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        if (direct) {
            _tile_stored(0, c, sc);
            _tile_stored(1, c + 16, sc);
            _tile_stored(2, c + 16 * o->ldc, sc);
            _tile_stored(3, c + 16 * o->ldc + 16, sc);
        } else {
            float t[32 * 32];
            _tile_stored(0, t, 128);
            _tile_stored(1, t + 16, 128);
            _tile_stored(2, t + 16 * 32, 128);
            _tile_stored(3, t + 16 * 32 + 16, 128);
            finish(o, t, 32, m0, n0, 32, 32);
        }
        return;
    }
    /* edges: one 16 x 16 tile at a time */
    for (int i = 0; i < mt; i++)
        for (int j = 0; j < nt; j++) {
            const uint16_t *a = a0 + 16 * i * lda, *b = b0 + j * K * 16;
            _tile_zero(0);
            for (int64_t k = 0; k < K; k += 32) {
                _tile_loadd(4, a + k, sa);
                _tile_loadd(6, b + k * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
            }
            float t[16 * 16];
            _tile_stored(0, t, 64);
            finish(o, t, 16, m0 + 16 * i, n0 + 16 * j, 16, 16);
        }
}

/* ---- AVX512-BF16: 8 rows x 32 columns of fp32 accumulators per micro-step ---- */

static inline __m512bh pair(const uint16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return (__m512bh)_mm512_set1_epi32(v);
}

/* The B operand of one pair step kk: packed panels (Bp panel pointers b0, b1; 16 pairs each), or
 * B row-major bf16 (rowb: rows k of N values, stride ldb, b at column n0), its row pairs
 * interleaved in registers, so the frozen weights' input gradients need no packing pass over W.
 * 32 columns (wide) take one unpack each for the low and high words of every 128-bit lane: the
 * pair vectors then hold columns {0-3, 8-11, 16-19, 24-27} and {4-7, 12-15, 20-23, 28-31}, which
 * the micro-step puts back in order once at its end (two permutes per row, where putting them in
 * order per pair step cost two permutes per 16 products: the rowb products ran at 0.88x the
 * packed ones). 16 columns (an edge) are interleaved in order with one permute. */
typedef struct {
    const uint16_t *b0, *b1; /* packed: the panels of columns [0, 16) and [16, 32) */
    const uint16_t *b;       /* rowb: B + n0 */
    int64_t ldb;
    __m512i lo_idx;          /* rowb, 16 columns: pair j is (row 0, row 1) of column j */
} bsrc;

static inline __attribute__((always_inline)) __m512bh b_lo(const bsrc *s, int64_t kk, bool rowb, bool wide) {
    if (!rowb) return (__m512bh)_mm512_loadu_si512(s->b0 + kk * 32);
    const uint16_t *r = s->b + 2 * kk * s->ldb;
    if (wide) return (__m512bh)_mm512_unpacklo_epi16(_mm512_loadu_si512(r), _mm512_loadu_si512(r + s->ldb));
    __m512i r0 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)r));
    __m512i r1 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(r + s->ldb)));
    return (__m512bh)_mm512_permutex2var_epi16(r0, s->lo_idx, r1);
}

static inline __attribute__((always_inline)) __m512bh b_hi(const bsrc *s, int64_t kk, bool rowb) {
    if (!rowb) return (__m512bh)_mm512_loadu_si512(s->b1 + kk * 32);
    const uint16_t *r = s->b + 2 * kk * s->ldb;
    return (__m512bh)_mm512_unpackhi_epi16(_mm512_loadu_si512(r), _mm512_loadu_si512(r + s->ldb));
}

/* R (8, 4, 2 or 1) rows of A times 32 (wide) or 16 columns of B into t (row stride ldt), added to
 * what t holds when init (C itself, accumulated in registers) */
static inline __attribute__((always_inline)) void avx_rows(const uint16_t *a, int64_t lda, const bsrc *s, int64_t K,
                                                           float *t, int64_t ldt, bool init, bool rowb, bool wide,
                                                           const int R) {
    __m512 c0[8], c1[8];
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    if (init) {
        for (int i = 0; i < R; i++) c0[i] = _mm512_loadu_ps(t + i * ldt);
        for (int i = 0; i < R && wide; i++) c1[i] = _mm512_loadu_ps(t + i * ldt + 16);
    }
    if (init && rowb && wide) { /* into the unpacks' column order (see bsrc) */
        const __m512i lo = _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0);
        const __m512i hi = _mm512_set_epi32(31, 30, 29, 28, 23, 22, 21, 20, 15, 14, 13, 12, 7, 6, 5, 4);
        for (int i = 0; i < R; i++) {
            __m512 l = _mm512_permutex2var_ps(c0[i], lo, c1[i]), h = _mm512_permutex2var_ps(c0[i], hi, c1[i]);
            c0[i] = l, c1[i] = h;
        }
    }
    for (int64_t kk = 0; kk < K / 2; kk++) {
        __m512bh x0 = b_lo(s, kk, rowb, wide), x1 = wide ? b_hi(s, kk, rowb) : x0;
        for (int i = 0; i < R; i++) {
            __m512bh ai = pair(a + i * lda + 2 * kk);
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, x0);
            if (wide) c1[i] = _mm512_dpbf16_ps(c1[i], ai, x1);
        }
    }
    if (rowb && wide) { /* columns back in order: 128-bit pieces of c0 and c1 alternate */
        const __m512i lo = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
        const __m512i hi = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
        for (int i = 0; i < R; i++) {
            __m512 l = _mm512_permutex2var_ps(c0[i], lo, c1[i]), h = _mm512_permutex2var_ps(c0[i], hi, c1[i]);
            c0[i] = l, c1[i] = h;
        }
    }
    for (int i = 0; i < R; i++) _mm512_storeu_ps(t + i * ldt, c0[i]);
    for (int i = 0; i < R && wide; i++) _mm512_storeu_ps(t + i * ldt + 16, c1[i]);
}

/* One function per row count and B form, kept out of line: inlined into their caller (all four
 * forms in one function), the gate forward ran 1.2x slower (bench/kern_ab.sh). */
#define AVX_FORM(name, R, rowb, wide)                                                                    \
    static __attribute__((noinline)) void name(const uint16_t *a, int64_t lda, const bsrc *s, int64_t K, \
                                               float *t, int64_t ldt, bool init) {                      \
        avx_rows(a, lda, s, K, t, ldt, init, rowb, wide, R);                                            \
    }
#define AVX_ROWS_FN(R)                                                                                      \
    AVX_FORM(avx_##R##x32, R, false, true)                                                                  \
    AVX_FORM(avx_##R##x16, R, false, false)                                                                 \
    AVX_FORM(avx_##R##x32_rowb, R, true, true)                                                              \
    AVX_FORM(avx_##R##x16_rowb, R, true, false)                                                             \
    static void avx_##R##rows(const uint16_t *a, int64_t lda, const bsrc *s, int64_t K, float *t, int64_t ldt, \
                              bool init, bool rowb, bool wide) {                                            \
        if (rowb && wide) avx_##R##x32_rowb(a, lda, s, K, t, ldt, init);                                    \
        else if (rowb) avx_##R##x16_rowb(a, lda, s, K, t, ldt, init);                                       \
        else if (wide) avx_##R##x32(a, lda, s, K, t, ldt, init);                                            \
        else avx_##R##x16(a, lda, s, K, t, ldt, init);                                                      \
    }
AVX_ROWS_FN(8)
AVX_ROWS_FN(4)
AVX_ROWS_FN(2)
AVX_ROWS_FN(1)
#undef AVX_ROWS_FN
#undef AVX_FORM

/* Rows [0, rows) of A times the panel's B columns in micro-steps of 8 rows, the last few rows of a
 * block in steps of 4, 2, 1 (rows past Mv cost nothing: the LM head's 177 response rows padded to
 * 192 took a whole 8-row step for the last row). Rows up to the block's 16 mt stay readable. */
static void avx_panel_rows(const uint16_t *A, int64_t lda, const bsrc *s, int64_t K, float *t, int64_t ldt, bool init,
                           int rows, bool rowb, bool wide) {
    for (int r = 0; r < rows;) {
        int left = rows - r, R = left >= 5 ? 8 : left >= 3 ? 4 : left;
        const uint16_t *a = A + r * lda;
        float *tr = t + r * ldt;
        if (R == 8) avx_8rows(a, lda, s, K, tr, ldt, init, rowb, wide);
        else if (R == 4) avx_4rows(a, lda, s, K, tr, ldt, init, rowb, wide);
        else if (R == 2) avx_2rows(a, lda, s, K, tr, ldt, init, rowb, wide);
        else avx_1rows(a, lda, s, K, tr, ldt, init, rowb, wide);
        r += R;
    }
}

/* The few valid columns of a last panel as dot products (lanes over K instead of over columns):
 * t[i * 32 + j] = A[i] . bcol[j] for i < rows, j < E. A padded panel costs a vdpbf16ps per row
 * and pair whatever E is; this costs E per 16 pairs and row, plus a 16 x 16 transpose per 16 / E
 * rows (the LM head's logits for 177 rows: 11 panels and a column instead of 12 panels). Rows go
 * 16 / E at a time with all E columns, so each load of A serves E products; a group's rows past
 * `rows` re-read the last valid row (A need not exist there) and are not stored. */
static inline __attribute__((always_inline)) void dots_e(const uint16_t *A, int64_t lda, int rows, const uint16_t *bcol,
                                                         int64_t K, float *t, const int E) {
    const int RG = 16 / E;
    for (int r0 = 0; r0 < rows; r0 += RG) {
        __m512 acc[16];
        const uint16_t *ap[16];
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int i = 0; i < RG; i++) ap[i] = A + (r0 + i < rows ? r0 + i : rows - 1) * lda;
        for (int64_t k = 0; k < K; k += 32) {
            __mmask32 m = K - k >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (K - k)) - 1);
            __m512bh bv[8];
            for (int c = 0; c < E; c++) bv[c] = (__m512bh)_mm512_maskz_loadu_epi16(m, bcol + c * K + k);
            for (int i = 0; i < RG; i++) {
                __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(m, ap[i] + k);
                for (int c = 0; c < E; c++) acc[i * E + c] = _mm512_dpbf16_ps(acc[i * E + c], av, bv[c]);
            }
        }
        tr16(acc); /* acc[l] lane g: accumulator g's partial sum l */
        __m512 sum = acc[0];
        for (int l = 1; l < 16; l++) sum = _mm512_add_ps(sum, acc[l]);
        float out[16];
        _mm512_storeu_ps(out, sum);
        for (int i = 0; i < RG && r0 + i < rows; i++)
            for (int c = 0; c < E; c++) t[(r0 + i) * 32 + c] = out[i * E + c];
    }
}

static void avx_dots(const uint16_t *A, int64_t lda, int rows, const uint16_t *bcol, int e, int64_t K, float *t) {
    switch (e) {
    case 1: dots_e(A, lda, rows, bcol, K, t, 1); break;
    case 2: dots_e(A, lda, rows, bcol, K, t, 2); break;
    case 3: dots_e(A, lda, rows, bcol, K, t, 3); break;
    case 4: dots_e(A, lda, rows, bcol, K, t, 4); break;
    case 5: dots_e(A, lda, rows, bcol, K, t, 5); break;
    case 6: dots_e(A, lda, rows, bcol, K, t, 6); break;
    case 7: dots_e(A, lda, rows, bcol, K, t, 7); break;
    default: dots_e(A, lda, rows, bcol, K, t, 8); break;
    }
}

/* One block: a whole untransposed one straight into C (accumulated in registers: no buffer, no
 * finish pass); otherwise its valid rows (finish reads only rows < Mv) into a buffer, a last panel
 * with o->ecol as dot products, then finish. */
static void avx_block(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A, int64_t lda,
                      const bsrc *s, bool rowb, const gt_bf16k_out *o) {
    float t[32 * 32];
    int rows = o->Mv - m0 < 16 * mt ? (int)(o->Mv - m0) : 16 * mt;
    int dp = o->ecol && o->ecol_n0 >= n0 && o->ecol_n0 < n0 + 16 * nt ? (int)((o->ecol_n0 - n0) / 16) : -1;
    const uint16_t *a = A + m0 * lda;
    if (!o->trans && dp < 0 && rows == 16 * mt && n0 + 16 * nt <= o->Nv) { /* whole block: straight into C */
        avx_panel_rows(a, lda, s, K, o->C + m0 * o->ldc + n0, o->ldc, o->accumulate, rows, rowb, nt == 2);
        return;
    }
    if (dp != 0) avx_panel_rows(a, lda, s, K, t, 32, false, rows, rowb, nt == 2 && dp < 0);
    if (dp >= 0) avx_dots(a, lda, rows, o->ecol, (int)o->ecol_e, K, t + 16 * dp);
    finish(o, t, 32, m0, n0, 16 * mt, 16 * nt);
}

void gt_bf16k_avx_block(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A,
                        int64_t lda, const uint16_t *Bp, const gt_bf16k_out *o) {
    const uint16_t *b0 = Bp + (n0 / 16) * K * 16;
    bsrc s = {b0, nt == 2 ? b0 + K * 16 : b0, NULL, 0, _mm512_setzero_si512()};
    avx_block(m0, n0, mt, nt, K, A, lda, &s, false, o);
}

void gt_bf16k_avx_block_rowb(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A, int64_t lda,
                             const uint16_t *B, int64_t ldb, const gt_bf16k_out *o) {
    bsrc s = {NULL, NULL, B + n0, ldb, pair_idx(32)};
    avx_block(m0, n0, mt, nt, K, A, lda, &s, true, o);
}

/* ---- packers ---- */

static inline __m512i cvt32(const float *x) { /* 32 floats -> 32 bf16, round to nearest even */
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
}

void gt_bf16k_pack_a_rows(const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *A, int64_t r0,
                          int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        uint16_t *d = A + r * K;
        if (r >= M) {
            memset(d, 0, (size_t)K * 2);
            continue;
        }
        for (int64_t k = 0; k < K; k += 32) _mm512_storeu_si512(d + k, cvt32(x + r * ldx + k));
    }
}

void gt_bf16k_pack_bt_panels(const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *Bp, int64_t p0,
                             int64_t p1) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16));
    for (int64_t p = p0; p < p1; p++) {
        uint16_t *panel = Bp + p * K * 16;
        if (16 * p + 16 <= M) { /* 16 rows of 16 bf16 pairs, transposed in registers */
            for (int64_t k = 0; k < K; k += 32) {
                __m512 r[16];
                for (int j = 0; j < 16; j++) r[j] = _mm512_castsi512_ps(cvt32(x + (16 * p + j) * ldx + k));
                tr16(r);
                for (int c = 0; c < 16; c++) _mm512_storeu_ps((float *)(panel + (k / 2 + c) * 32), r[c]);
            }
            continue;
        }
        for (int j = 0; j < 16; j++) {
            int64_t m = 16 * p + j;
            for (int64_t k = 0; k < K; k += 32) {
                __m512i v = m < M ? cvt32(x + m * ldx + k) : _mm512_setzero_si512();
                _mm512_i32scatter_epi32(panel + (k / 2) * 32 + 2 * j, idx, v, 4);
            }
        }
    }
}

void gt_bf16k_pack_b16_pairs(const uint16_t *W, int64_t N, int64_t ldw, uint16_t *Bp, int64_t K, int64_t k0,
                             int64_t k1) {
    const __m512i idx = pair_idx(32);
    for (int64_t kk = k0 / 2; kk < k1 / 2; kk++) {
        const uint16_t *r0 = W + 2 * kk * ldw, *r1 = r0 + ldw;
        for (int64_t p = 0; p < N / 16; p++) {
            __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(r0 + 16 * p)));
            __m512i b = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(r1 + 16 * p)));
            _mm512_storeu_si512(Bp + p * K * 16 + kk * 32, _mm512_permutex2var_epi16(a, idx, b));
        }
    }
}

/* ---- padded packers for fp32 operands of any extent (attention) ---- */

/* n (<= 16, may be <= 0) floats at x times s, zero beyond n, as 16 bf16 (round to nearest even). */
static inline __m256i cvt16m(const float *x, int64_t n, float s) {
    if (n <= 0) return _mm256_setzero_si256();
    __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x), _mm512_set1_ps(s)));
}

/* n floats of x times s as 16 fp32 (zero beyond n; nothing read when n <= 0) */
static inline __m512 ld16m(const float *x, int64_t n, float s) {
    if (n <= 0) return _mm512_setzero_ps();
    __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    return _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x), _mm512_set1_ps(s));
}

void gt_bf16k_pack_a_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                         int64_t Kp) {
    for (int64_t i = 0; i < Mp; i++) {
        uint16_t *d = A + i * Kp;
        if (i >= mv) {
            memset(d, 0, (size_t)Kp * 2);
            continue;
        }
        for (int64_t k = 0; k < Kp; k += 16)
            _mm256_storeu_si256((__m256i *)(d + k), cvt16m(k < kv ? x + i * ldx + k : x, kv - k, s));
    }
}

void gt_bf16k_pack_at_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                          int64_t Kp) {
    for (int64_t i0 = 0; i0 < Mp; i0 += 16)
        for (int64_t k0 = 0; k0 < Kp; k0 += 16) {
            __m512 r[16];
            for (int q = 0; q < 16; q++)
                r[q] = k0 + q < kv && i0 < mv ? ld16m(x + (k0 + q) * ldx + i0, mv - i0, s) : _mm512_setzero_ps();
            tr16(r); /* r[c]: column i0 + c of rows k0 .. k0 + 15 */
            for (int c = 0; c < 16; c++)
                _mm256_storeu_si256((__m256i *)(A + (i0 + c) * Kp + k0), (__m256i)_mm512_cvtneps_pbh(r[c]));
        }
}

void gt_bf16k_pack_bt_pad(const float *x, int64_t ldx, int64_t nv, int64_t kv, float s, uint16_t *Bp, int64_t Np,
                          int64_t Kp) {
    for (int64_t p = 0; p < Np / 16; p++) {
        uint16_t *panel = Bp + p * Kp * 16;
        for (int64_t k = 0; k < Kp; k += 32) {
            __m512 r[16];
            for (int j = 0; j < 16; j++) {
                int64_t row = 16 * p + j;
                if (row >= nv || k >= kv) {
                    r[j] = _mm512_setzero_ps();
                    continue;
                }
                const float *src = x + row * ldx + k;
                __m512i v = _mm512_castsi256_si512(cvt16m(src, kv - k, s));
                v = _mm512_inserti64x4(v, cvt16m(k + 16 < kv ? src + 16 : src, kv - k - 16, s), 1);
                r[j] = _mm512_castsi512_ps(v);
            }
            tr16(r); /* r[c]: the pair (k + 2c, k + 2c + 1) of the 16 rows */
            for (int c = 0; c < 16; c++) _mm512_storeu_ps((float *)(panel + (k / 2 + c) * 32), r[c]);
        }
    }
}

void gt_bf16k_pack_b_pad(const float *x, int64_t ldx, int64_t kv, int64_t nv, float s, uint16_t *Bp, int64_t Np,
                         int64_t Kp) {
    const __m512i idx = pair_idx(16);
    for (int64_t kk = 0; kk < Kp / 2; kk++)
        for (int64_t p = 0; p < Np / 16; p++) {
            int64_t c = 16 * p, r0 = 2 * kk;
            __m512 a = r0 < kv ? ld16m(x + r0 * ldx + c, nv - c, s) : _mm512_setzero_ps();
            __m512 b = r0 + 1 < kv ? ld16m(x + (r0 + 1) * ldx + c, nv - c, s) : _mm512_setzero_ps();
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a); /* a's 16 values low, b's high */
            _mm512_storeu_si512(Bp + p * Kp * 16 + kk * 32, _mm512_permutexvar_epi16(idx, v));
        }
}
