/* bench/moe: the MoE expert bank (autograd/ops_moe.h) costs what its active experts cost.
 *
 *   build-xxx/bench/moe [--reps N]        (threads: GT_THREADS, default all cores)
 *
 * 512 tokens, hidden 1024, 32 experts of width 512 (the 26B-A4B's shape, scaled down): routing,
 * grouped up and down projections, forward and forward+backward (all weight and input
 * gradients), for top-k = 1, 2, 4, 8, 32 of 32. Reports the median time and GFLOP/s of the expert
 * GEMMs (6 T k D F flops forward, twice that again backward): when the grouping works the time
 * grows with k (active parameters), not with the 32 experts held. Measured: docs/gemma4.md §4. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "bench/bench_util.h"

enum { T = 512, D = 1024, E = 32, FE = 512 };

static gt_tensor *rnd(int64_t a, int64_t b, bool req, unsigned *s, float amp) {
    int64_t sh[2] = {a, b};
    gt_tensor *t = gt_tensor_new(2, sh, req);
    if (!t) exit(1);
    for (int64_t i = 0; i < t->size; i++) {
        *s = *s * 1664525u + 1013904223u;
        t->data[i] = amp * ((float)(*s >> 8) / 16777216.0f - 0.5f);
    }
    return t;
}

static double run(gt_tensor **w, int64_t k, bool backward) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    double t0 = gt_now();
    const gt_moe_plan *p;
    gt_tensor *r = gt_moe_route(&ctx, gt_matmul(&ctx, w[0], w[1], false, true), NULL, k, &p);
    gt_tensor *y = gt_ok(&ctx) ? gt_moe_down(&ctx, gt_moe_up(&ctx, w[0], w[2], w[3], p), w[4], r, p) : NULL;
    if (y && backward) {
        gt_real *seed = gt_alloc(&ctx, (size_t)y->size * sizeof *seed);
        for (int64_t i = 0; seed && i < y->size; i++) seed[i] = 1e-3f;
        if (seed) gt_backward_seed(&ctx, y, seed);
    }
    double dt = gt_now() - t0;
    if (!gt_ok(&ctx)) {
        fprintf(stderr, "bench/moe: %s\n", ctx.err);
        exit(1);
    }
    gt_ctx_free(&ctx);
    return dt;
}

int main(int argc, char **argv) {
    int reps = argc == 3 && !strcmp(argv[1], "--reps") ? atoi(argv[2]) : 5;
    if (reps < 1) reps = 5;
    gt_threads_set(0);
    unsigned s = 7;
    gt_tensor *w[5] = {rnd(T, D, true, &s, 2), rnd(E, D, true, &s, 2), rnd(E * FE, D, true, &s, 0.1f),
                       rnd(E * FE, D, true, &s, 0.1f), rnd(E * D, FE, true, &s, 0.1f)};
    printf("moe bank: %d tokens, D %d, %d experts x %d, %d threads, median of %d\n", T, D, E, FE, gt_threads(), reps);
    printf("  top-k   fwd ms  fwd GFLOP/s   fwd+bwd ms  GFLOP/s\n");
    const int64_t ks[] = {1, 2, 4, 8, 32};
    double *t = malloc((size_t)reps * sizeof *t);
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        double med[2];
        for (int b = 0; b < 2; b++) {
            run(w, ks[i], b); /* warm-up */
            for (int r = 0; r < reps; r++) t[r] = run(w, ks[i], b);
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            med[b] = t[reps / 2];
        }
        double f = 6.0 * T * (double)ks[i] * D * FE;
        printf("  %5lld %8.1f %12.1f %12.1f %8.1f\n", (long long)ks[i], 1e3 * med[0], f / med[0] / 1e9, 1e3 * med[1],
               3 * f / med[1] / 1e9);
    }
    free(t);
    for (int i = 0; i < 5; i++) gt_tensor_free(w[i]);
    return 0;
}
