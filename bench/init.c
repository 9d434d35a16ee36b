/* bench/init: the random-init path of a stored base, per value: normal draws (autograd/normal.h)
 * and the quantisers that store them (Q4_K, Q8_0), on 1 thread and on GT_THREADS (default all).
 * usage: build/bench/init [millions of values=32] [reps=3]; prints ns/value, the best of reps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/blas.h"
#include "autograd/normal.h"
#include "autograd/quant.h"
#include "bench/bench_util.h"

static double best_of(int reps, int what, gt_real *x, uint8_t *q, int64_t n) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = gt_now();
        if (what == 0) gt_normal_fill((uint64_t)r, 0, 0.02, x, n);
        else if (what == 1) gt_q4k_quantize(x, q, n);
        else gt_q8_quantize(x, q, n);
        t = gt_now() - t;
        best = t < best ? t : best;
    }
    return best / (double)n * 1e9;
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    int64_t n = (argc > 1 ? atoll(argv[1]) : 32) * 1000000 / 256 * 256;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    if (n < 256 || reps < 1) return fprintf(stderr, "usage: %s [millions of values] [reps]\n", argv[0]), 2;
    gt_real *x = malloc(sizeof(gt_real) * (size_t)n);
    uint8_t *q = malloc((size_t)gt_q8_bytes(n));
    if (!x || !q) return fprintf(stderr, "out of memory for %lld values\n", (long long)n), 1;
    gt_threads_set(0);
    int all = gt_threads();
    const char *names[3] = {"normal draws", "Q4_K quantise", "Q8_0 quantise"};
    for (int w = 0; w < 3; w++) {
        gt_threads_set(1);
        double one = best_of(reps, w, x, q, n);
        gt_threads_set(all);
        double many = best_of(reps, w, x, q, n);
        printf("%-14s %6.2f ns/value on 1 thread, %6.2f on %d\n", names[w], one, many, all);
    }
    free(x);
    free(q);
    return 0;
}
