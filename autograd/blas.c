#include "autograd/blas.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

static int g_threads = 0;

void gt_gemm(bool trans_a, bool trans_b, int m, int n, int k, gt_real alpha,
             const gt_real *a, int lda, const gt_real *b, int ldb, gt_real beta,
             gt_real *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (g_threads == 0) gt_threads_set(0);
#ifdef GT_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
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
