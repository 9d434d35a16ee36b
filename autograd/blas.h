/* blas.h: the engine's one door to BLAS and to its thread pools.
 *
 * gt_gemm is cblas_sgemm (or dgemm in the f64 build) with row-major operands.
 * Threads: OpenMP's team of gt_threads() threads is the only pool. OpenBLAS runs on its
 * caller's thread (its own pool is set to one thread): a large product is split into one band of
 * C per OpenMP thread, and the engine's parallel regions may call gt_gemm from each thread.
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

/* How long an OpenMP worker spins for the next parallel region before it sleeps. A step runs
 * thousands of short regions; sleeping workers (OMP_WAIT_POLICY=PASSIVE, which this used to set
 * while OpenBLAS ran a pool of its own beside OpenMP's) each cost a futex wake-up: the 270M bf16
 * LoRA step at 1 x 512 on 2 threads took 0.80 s passive, 0.58 s spinning 100000 times (10000:
 * 0.70 s). Idle workers give their core back a few milliseconds after the last region. libgomp
 * reads it once, at load, so programs call this first thing in main: when neither
 * OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set it sets GOMP_SPINCOUNT (and OPENBLAS_THREAD_TIMEOUT
 * for benchmarks that time bare OpenBLAS calls on its own pool, see gt_blas_pool) and
 * re-executes the program (argv as given). User-set values are
 * respected (OMP_WAIT_POLICY=PASSIVE for a machine shared with other jobs); if the re-exec fails
 * the program simply continues. */
#define GT_SPINCOUNT "100000"
/* Benchmarks only: OpenBLAS's own pool size for bare cblas calls timed as baselines (n threads;
 * gt_blas_pool(1) before the engine runs again). */
void gt_blas_pool(int n);
void gt_threads_reexec_spin(char **argv);

#endif
