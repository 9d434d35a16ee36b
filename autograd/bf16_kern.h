/* bf16_kern.h: the instruction-set-specific halves of bf16_gemm.h, compiled (bf16_kern.c) with
 * -mavx512bf16 -mamx-tile -mamx-bf16 whatever the rest of the build targets. Only bf16_gemm.c
 * calls them, and only after it has checked that the CPU (and the OS) support them. Arguments as
 * in bf16_gemm.h. gt_bf16k_amx_thread_init loads the tile configuration of the calling thread
 * (every thread that runs an AMX kernel, in every parallel region), _thread_done releases it. */
#ifndef GT_BF16_KERN_H
#define GT_BF16_KERN_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    float *C;
    int64_t ldc, Mv, Nv;
    bool trans, accumulate;
    /* AVX512-BF16, optional: the last 16-column panel (at column ecol_n0, ecol_e < 16 valid
     * columns) as dot products instead of a padded panel: column j's K values of B at
     * ecol + j K. NULL: the panel is computed padded like the others. */
    const uint16_t *ecol;
    int64_t ecol_n0, ecol_e;
} gt_bf16k_out;

void gt_bf16k_amx_thread_init(void);
void gt_bf16k_amx_thread_done(void);
/* One block of C: rows [m0, m0 + 32) (or 16), columns [n0, n0 + 32) (or 16) of the product. */
void gt_bf16k_amx_block(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A,
                        int64_t lda, const uint16_t *Bp, const gt_bf16k_out *o);
void gt_bf16k_avx_block(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A,
                        int64_t lda, const uint16_t *Bp, const gt_bf16k_out *o);
/* The same with B row-major bf16 (B[k][n] at B[k ldb + n]; K even), not packed. */
void gt_bf16k_avx_block_rowb(int64_t m0, int64_t n0, int mt, int nt, int64_t K, const uint16_t *A, int64_t lda,
                             const uint16_t *B, int64_t ldb, const gt_bf16k_out *o);

/* Packers over rows [r0, r1) of their output (A: rows of x; bt: panels; b16: pairs of W rows). */
void gt_bf16k_pack_a_rows(const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *A, int64_t r0,
                          int64_t r1);
void gt_bf16k_pack_bt_panels(const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *Bp, int64_t p0,
                             int64_t p1);
void gt_bf16k_pack_b16_pairs(const uint16_t *W, int64_t N, int64_t ldw, uint16_t *Bp, int64_t K, int64_t k0,
                             int64_t k1);

/* Padded packers for fp32 operands of any extent (attention's products), single-threaded: values
 * times s, rounded to nearest even, zero outside the valid extents. Mp, Np multiples of 16; Kp a
 * multiple of 32; the valid part never reads outside x.
 *   a_pad:  A[i][k] = x[i ldx + k],  i < mv, k < kv          (A layout [Mp, Kp])
 *   at_pad: A[i][k] = x[k ldx + i],  i < mv, k < kv          (A layout, x transposed)
 *   bt_pad: B[k][j] = x[j ldx + k],  j < nv, k < kv          (Bp panels, B = x^T)
 *   b_pad:  B[k][j] = x[k ldx + j],  k < kv, j < nv          (Bp panels, B = x) */
void gt_bf16k_pack_a_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                         int64_t Kp);
void gt_bf16k_pack_at_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                          int64_t Kp);
void gt_bf16k_pack_bt_pad(const float *x, int64_t ldx, int64_t nv, int64_t kv, float s, uint16_t *Bp, int64_t Np,
                          int64_t Kp);
void gt_bf16k_pack_b_pad(const float *x, int64_t ldx, int64_t kv, int64_t nv, float s, uint16_t *Bp, int64_t Np,
                         int64_t Kp);

#endif
