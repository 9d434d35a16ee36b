/* bf16_gemm.h: bf16 x bf16 -> fp32 GEMM kernels on the CPU's bf16 instructions (AMX tiles or
 * AVX512-BF16 vdpbf16ps), chosen at run time, for ops_bf16's compute_dtype bfloat16 mode.
 *
 * Which kernel: gt_bf16_kernel_best() detects the CPU once (cpuid, the OS's saved-state bits,
 * and for AMX the arch_prctl permission Linux asks for): AMX, else AVX512-BF16, else
 * GT_BF16K_OFF. gt_bf16_kernel_active() is what callers use: by default (gt_bf16_kernel_auto)
 * AMX where present, else AVX512-BF16 on AMD CPUs (2-4x OpenBLAS sgemm on Zen 4), else
 * GT_BF16K_OFF (on Intel without AMX that kernel measured slower than sgemm; bench/bf16_gemm);
 * callers keep their fp32 path when it is GT_BF16K_OFF. The
 * environment variable GT_BF16_KERNEL=off|avx512|amx|auto (read at first use) forces the
 * fallback or a kernel;
 * a forced kernel the CPU lacks is taken as off. gt_bf16_kernel_force overrides it from code
 * (tests, benchmarks).
 *
 * The product: C[M, N] (=|+=) A[M, K] B[K, N] with
 *   A  bf16, row-major, row stride lda; M a multiple of 16, K a multiple of 32;
 *   Bp B packed in panels of 16 columns: panel p is K/2 rows of 16 pairs (B[2k][16p+j],
 *      B[2k+1][16p+j]), p = 0 .. N/16 - 1 (N a multiple of 16, padded with zeros by the packers);
 *   C  fp32, row stride ldc, only rows < Mv and columns < Nv written; trans: C is stored
 *      transposed (C[n * ldc + m]); accumulate: add to C instead of overwriting.
 * Rows and columns past Mv, Nv cost (almost) nothing on AVX512-BF16: the last rows go in steps of
 * 4, 2, 1 and a last panel of at most 8 valid columns as dot products (the same values up to the
 * order of the sums); AMX computes whole 16 x 16 tiles.
 * The packers turn fp32 activations or bf16 weights into A or Bp layout (rounding to nearest
 * even; zero padding). Speed, not correctness: A, Bp and C want 64-byte aligned starts (and row
 * strides of whole cache lines); a tile row split over two lines measured the whole path at about
 * half speed (bench/bf16_kern ALIGN 16 vs 64). All run OpenMP-parallel on `threads` threads
 * (threads <= 1: on the calling thread, no OpenMP region, so they can run inside one) and never fail; callers check shapes first. Calling a kernel other than the active one (or any when off) is undefined. */
#ifndef GT_BF16_GEMM_H
#define GT_BF16_GEMM_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { GT_BF16K_OFF = 0, GT_BF16K_AVX512 = 1, GT_BF16K_AMX = 2 } gt_bf16_kernel;

gt_bf16_kernel gt_bf16_kernel_active(void);
/* What this CPU supports (ignores the environment and forcing). */
gt_bf16_kernel gt_bf16_kernel_best(void);
/* The default choice: AMX where present, else AVX512-BF16 on AMD, else off. */
gt_bf16_kernel gt_bf16_kernel_auto(void);
/* Force a kernel (clamped to what the CPU supports; GT_BF16K_OFF always works); returns the one
 * now active. A negative value goes back to the environment's / detected choice. */
gt_bf16_kernel gt_bf16_kernel_force(int k);
const char *gt_bf16_kernel_name(gt_bf16_kernel k);

/* C (=|+=) A Bp as above, with kernel k (must be supported). */
void gt_bf16_gemm(gt_bf16_kernel k, int threads, int64_t M, int64_t N, int64_t K, const uint16_t *A,
                  int64_t lda, const uint16_t *Bp, float *C, int64_t ldc, int64_t Mv, int64_t Nv,
                  bool trans, bool accumulate);
/* The same with B bf16 row-major ([K, N], row stride ldb; N a multiple of 16, K even), not
 * packed: only the AVX512-BF16 kernel reads B so (it interleaves row pairs in registers), and
 * only a B of at most 4 MiB (K ldb bf16 values: larger ones span too many pages) whose row
 * stride is not a multiple of 4 KiB (cache-set conflicts); returns false, computing nothing,
 * otherwise (the caller packs B then). */
bool gt_bf16_gemm_rowb(gt_bf16_kernel k, int threads, int64_t M, int64_t N, int64_t K, const uint16_t *A,
                       int64_t lda, const uint16_t *B, int64_t ldb, float *C, int64_t ldc, int64_t Mv, int64_t Nv,
                       bool trans, bool accumulate);

/* fp32 x [M, K] (row stride ldx) -> A layout [Mp, K] (Mp = M rounded up to 16, extra rows 0);
 * K a multiple of 32. */
void gt_bf16_pack_a(int threads, const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *A);
/* fp32 x [M, K] as B = x^T (K x M): Bp panels of 16 rows of x, M padded to 16 with zeros;
 * K a multiple of 32. Size: roundup(M, 16) * K values. */
void gt_bf16_pack_bt(int threads, const float *x, int64_t M, int64_t K, int64_t ldx, uint16_t *Bp);
/* bf16 W rows [0, K) of [K, N] (row stride ldw) as B: Bp panels; K even, N a multiple of 16.
 * Size: K * N values. */
void gt_bf16_pack_b16(int threads, const uint16_t *W, int64_t K, int64_t N, int64_t ldw, uint16_t *Bp);

/* Single-threaded packers of fp32 operands of any extent, zero-padded (attention's products):
 * values times s, rounded to nearest even; Mp, Np multiples of 16, Kp a multiple of 32; nothing
 * outside the valid extents is read.
 *   pack_a_pad:  A [Mp, Kp], A[i][k] = x[i ldx + k] for i < mv, k < kv
 *   pack_at_pad: A [Mp, Kp], A[i][k] = x[k ldx + i] for i < mv, k < kv (x transposed)
 *   pack_bt_pad: Bp of B [Kp, Np] = x^T, B[k][j] = x[j ldx + k] for j < nv, k < kv
 *   pack_b_pad:  Bp of B [Kp, Np] = x,   B[k][j] = x[k ldx + j] for k < kv, j < nv */
void gt_bf16_pack_a_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                        int64_t Kp);
void gt_bf16_pack_at_pad(const float *x, int64_t ldx, int64_t mv, int64_t kv, float s, uint16_t *A, int64_t Mp,
                         int64_t Kp);
void gt_bf16_pack_bt_pad(const float *x, int64_t ldx, int64_t nv, int64_t kv, float s, uint16_t *Bp, int64_t Np,
                         int64_t Kp);
void gt_bf16_pack_b_pad(const float *x, int64_t ldx, int64_t kv, int64_t nv, float s, uint16_t *Bp, int64_t Np,
                        int64_t Kp);

#endif
