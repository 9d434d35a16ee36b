/* blas.h: the engine's one door to BLAS and to its thread pools.
 *
 * gt_gemm is cblas_sgemm (or dgemm in the f64 build) with row-major operands.
 * Threads: one setting drives both pools. The engine's own loops use OpenMP with
 * gt_threads() threads and call BLAS from inside a parallel region only between
 * gt_blas_serial(true) and (false); BLAS calls run OpenBLAS's pool with the same count. The two
 * pools therefore take turns, never stack. Skinny products (a dimension <= 16) run as one
 * single-threaded BLAS call per OpenMP thread instead.
 * Nothing here allocates or fails: gt_gemm trusts its shapes (the ops check them first). */
#ifndef GT_BLAS_H
#define GT_BLAS_H

#include "autograd/real.h"

/* C = alpha * op(A) @ op(B) + beta * C. op(A) is m x k, op(B) is k x n, C is m x n;
 * lda/ldb/ldc are row strides in elements. Zero-sized products are no-ops. */
void gt_gemm(bool trans_a, bool trans_b, int m, int n, int k, gt_real alpha,
             const gt_real *a, int lda, const gt_real *b, int ldb, gt_real beta,
             gt_real *c, int ldc);

/* Set the thread count of both pools (n < 1: use gt_threads_default()). */
void gt_threads_set(int n);
int gt_threads(void);
/* GT_THREADS from the environment if set and valid, else the number of online cores. */
int gt_threads_default(void);

/* gt_blas_serial(true): BLAS calls run on their caller's thread only, so that the threads of an
 * OpenMP region may each call gt_gemm at once (small GEMMs, one per thread); false: back to
 * gt_threads(). Call both outside parallel regions, in pairs. */
void gt_blas_serial(bool on);

/* The engine's loops: below GT_PAR_MIN elements a loop runs on one thread (a parallel region
 * costs more than it saves). gt_par: whether a loop over n elements goes parallel;
 * gt_par_chunks: how many fixed row bands (at most one per thread, at most rows) a reduction over
 * rows of elems elements in all is split into, so its sums do not depend on scheduling. */
#define GT_PAR_MIN ((int64_t)1 << 15)
static inline bool gt_par(int64_t n) { return n >= GT_PAR_MIN && gt_threads() > 1; }
static inline int gt_par_chunks(int64_t elems, int64_t rows) {
    if (elems < GT_PAR_MIN) return 1;
    int nt = gt_threads();
    return rows < nt ? (rows > 0 ? (int)rows : 1) : nt;
}

/* OpenMP workers that spin after a parallel region steal the cores OpenBLAS's pool needs for the
 * next GEMM (measured here: sgemm 65 -> 48 GFLOP/s when interleaved with OpenMP loops). libgomp
 * reads its wait policy once, at load, so programs call this first thing in main: when
 * OMP_WAIT_POLICY is unset it sets it to PASSIVE and re-executes the program (argv as given).
 * The same goes the other way: OpenBLAS's workers spin-yield for 2^28 cycles after each GEMM
 * (about 0.1 s) while OpenMP loops run in between, so OPENBLAS_THREAD_TIMEOUT (read at load too)
 * is set to 18 (2^18 cycles) when unset: 270M LoRA step at seq 512 1.95 -> 1.77 s here.
 * User-set values are respected; if the re-exec fails the program simply continues. */
void gt_threads_reexec_passive(char **argv);

#endif
