#include "autograd/blas.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

static int g_threads = 0;

static void gemm1(bool ta, bool tb, int m, int n, int k, gt_real alpha, const gt_real *a, int lda,
                  const gt_real *b, int ldb, gt_real beta, gt_real *c, int ldc) {
#ifdef GT_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

/* A skinny product (one dimension <= 16: LoRA's rank) split into one band of C per OpenMP
 * thread, each a single-threaded BLAS call. OpenBLAS's own threads on these shapes spent most of
 * their time handing work over (bench: rank-4 LoRA GEMMs of the 270M, 2.1 -> 1.0 ms CPU per
 * adapter step). Bands of rows (columns when C is wider than tall): disjoint writes. */
static bool gemm_skinny(bool ta, bool tb, int m, int n, int k, gt_real alpha, const gt_real *a, int lda,
                        const gt_real *b, int ldb, gt_real beta, gt_real *c, int ldc) {
    int th = g_threads, lo = m < n ? (m < k ? m : k) : (n < k ? n : k), wide = m > n ? m : n;
    if (th < 2 || lo > 16 || (double)m * n * k < 262144.0 || wide < 2 * th || omp_in_parallel()) return false;
    gt_blas_serial(true);
#pragma omp parallel num_threads(th)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        if (m >= n) {
            int i0 = (int)((int64_t)m * t / nt), i1 = (int)((int64_t)m * (t + 1) / nt);
            gemm1(ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + (int64_t)i0 * lda, lda, b, ldb, beta,
                  c + (int64_t)i0 * ldc, ldc);
        } else {
            int j0 = (int)((int64_t)n * t / nt), j1 = (int)((int64_t)n * (t + 1) / nt);
            gemm1(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + (int64_t)j0 * ldb : b + j0, ldb, beta,
                  c + j0, ldc);
        }
    }
    gt_blas_serial(false);
    return true;
}

void gt_gemm(bool trans_a, bool trans_b, int m, int n, int k, gt_real alpha,
             const gt_real *a, int lda, const gt_real *b, int ldb, gt_real beta,
             gt_real *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (g_threads == 0) gt_threads_set(0);
    if (!gemm_skinny(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
        gemm1(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int gt_threads_default(void) {
    const char *env = getenv("GT_THREADS");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end && *end == 0 && v >= 1 && v <= 1024) return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)n : 1;
}

void gt_threads_set(int n) {
    if (n < 1) n = gt_threads_default();
    g_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

void gt_threads_reexec_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY") && getenv("OPENBLAS_THREAD_TIMEOUT")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    setenv("OPENBLAS_THREAD_TIMEOUT", "18", 0);
    execv("/proc/self/exe", argv);
}

void gt_blas_serial(bool on) { openblas_set_num_threads(on ? 1 : gt_threads()); }

int gt_threads(void) {
    if (g_threads == 0) gt_threads_set(0);
    return g_threads;
}
