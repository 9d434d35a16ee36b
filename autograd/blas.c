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

/* A product split into one band of C per OpenMP thread, each a single-threaded BLAS call, so
 * that OpenMP's team is the only pool: OpenBLAS's own threads, spinning after each GEMM while
 * the team waited for them (or the other way round), forced a passive OpenMP wait policy that
 * cost a futex wake-up per parallel region. On skinny shapes (LoRA's rank) OpenBLAS's threads
 * also spent most of their time handing work over (rank-4 LoRA GEMMs of the 270M: 2.1 -> 1.0 ms
 * CPU per adapter step). Bands of rows, or of columns when C is wider than tall, whole 16-wide
 * vectors where the shape allows: disjoint writes, and each element's sum over k is the same
 * sequence of operations as in one call. */
static bool gemm_bands(bool ta, bool tb, int m, int n, int k, gt_real alpha, const gt_real *a, int lda,
                       const gt_real *b, int ldb, gt_real beta, gt_real *c, int ldc) {
    int th = g_threads, wide = m > n ? m : n;
    if (th < 2 || (double)m * n * k < 262144.0 || wide < 2 * th || omp_in_parallel()) return false;
    int unit = wide >= 32 * th ? 16 : 1;
    int units = (wide + unit - 1) / unit;
#pragma omp parallel num_threads(th)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int u0 = (int)((int64_t)units * t / nt), u1 = (int)((int64_t)units * (t + 1) / nt);
        int i0 = u0 * unit, i1 = u1 * unit < wide ? u1 * unit : wide;
        if (i1 > i0 && m >= n)
            gemm1(ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + (int64_t)i0 * lda, lda, b, ldb, beta,
                  c + (int64_t)i0 * ldc, ldc);
        else if (i1 > i0)
            gemm1(ta, tb, m, i1 - i0, k, alpha, a, lda, tb ? b + (int64_t)i0 * ldb : b + i0, ldb, beta,
                  c + i0, ldc);
    }
    return true;
}

void gt_gemm(bool trans_a, bool trans_b, int m, int n, int k, gt_real alpha,
             const gt_real *a, int lda, const gt_real *b, int ldb, gt_real beta,
             gt_real *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (g_threads == 0) gt_threads_set(0);
    if (!gemm_bands(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
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
    openblas_set_num_threads(1); /* every BLAS call runs on its caller's thread (gemm_bands) */
}

void gt_threads_reexec_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("GOMP_SPINCOUNT", GT_SPINCOUNT, 1);
    setenv("OPENBLAS_THREAD_TIMEOUT", "18", 0); /* benchmarks' bare sgemm baselines: short spins */
    execv("/proc/self/exe", argv);
}


void gt_blas_pool(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

int gt_threads(void) {
    if (g_threads == 0) gt_threads_set(0);
    return g_threads;
}
