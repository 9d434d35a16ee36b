/* bench_util.h: what the benchmarks share: the monotonic clock (util/clock.h's gt_now), this
 * run's sgemm peak (the baseline every ratio is taken against) and a comparator for medians.
 * Header-only: each benchmark source is its own program.
 * Errors: none to report; a benchmark prints its own failures and exits non-zero. */
#ifndef GT_BENCH_UTIL_H
#define GT_BENCH_UTIL_H

#include <cblas.h>
#include <stdlib.h>

#include "autograd/blas.h"
#include "util/clock.h"

/* GFLOP/s of a 1536^3 fp32 product, the best of 5 after a warm-up each way: bare cblas_sgemm on
 * OpenBLAS's own pool of gt_threads() threads, and gt_gemm (the engine's bands on OpenMP's team);
 * the better one is the peak. Leaves OpenBLAS's pool at one thread. 0 when out of memory. */
static inline double sgemm_peak(void) {
    int n = 1536;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    double best = 1e30;
    if (a && b && c) {
        for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
        for (int way = 0; way < 2; way++) {
            gt_blas_pool(way == 0 ? gt_threads() : 1);
            for (int r = 0; r < 6; r++) {
                double t = gt_now();
                if (way == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
                else
                    gt_gemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n);
                t = gt_now() - t;
                if (r > 0 && t < best) best = t;
            }
        }
    }
    free(a);
    free(b);
    free(c);
    return best < 1e30 ? 2.0 * n * n * (double)n / best / 1e9 : 0;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
