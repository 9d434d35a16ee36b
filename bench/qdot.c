/* bench/qdot: the decode matvec (autograd/qdot.h) on the Gemma 3 270M shapes, each kernel, and a
 * plain read of the same bytes (memset-free sum) as the memory-bandwidth yardstick.
 * usage: build/bench/qdot [REPS]   (threads: GT_THREADS, default gemmatrain's)
 * Prints one line per shape and kernel: ms per matvec (best of REPS) and GB/s of weights read. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/blas.h"
#include "autograd/qdot.h"
#include "autograd/quant.h"
#include "bench/bench_util.h"

static double run(gt_qdot_kern k, const uint8_t *w, int64_t rows, const gt_qdot_x *x, float *y, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = gt_now();
        gt_qdot_matvec(k, w, rows, x, y);
        t = gt_now() - t;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    gt_threads_set(getenv("GT_THREADS") ? atoi(getenv("GT_THREADS")) : 0);
    static const struct { const char *name; int64_t rows, cols; } shapes[] = {
        {"lm_head 262144x640", 262144, 640}, {"gate 2048x640", 2048, 640}, {"down 640x2048", 640, 2048},
        {"query 1024x640", 1024, 640}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t R = shapes[s].rows, C = shapes[s].cols, n = R * C;
        float *wf = malloc(sizeof(float) * (size_t)C), *y = malloc(sizeof(float) * (size_t)R);
        uint8_t *w = malloc((size_t)gt_q8_bytes(n));
        void *xb = aligned_alloc(64, (size_t)(gt_qdot_x_bytes(C) + 63) / 64 * 64);
        if (!wf || !y || !w || !xb) return fprintf(stderr, "bench/qdot: out of memory\n"), 1;
        uint64_t st = 1;
        for (int64_t r = 0; r < R; r++) {
            for (int64_t i = 0; i < C; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                wf[i] = (float)((int64_t)(st >> 40) % 2001 - 1000) * 1e-3f;
            }
            gt_q8_quantize(wf, w + gt_q8_bytes(r * C), C);
        }
        gt_qdot_x x;
        gt_qdot_quantize(wf, C, xb, &x);
        double mb = (double)gt_q8_bytes(n) / 1e6;
        for (gt_qdot_kern k = GT_QDOT_SCALAR; k <= GT_QDOT_VNNI512; k++) {
            if (k == GT_QDOT_VNNI512 && gt_qdot_set_kernel(k) != k) continue;
            double t = run(k, w, R, &x, y, k == GT_QDOT_SCALAR ? 3 : reps);
            printf("%-20s %-11s %8.3f ms  %6.1f GB/s  (%d threads)\n", shapes[s].name, gt_qdot_kernel_name(k), t * 1e3,
                   mb / 1e3 / t, gt_threads());
        }
        free(wf);
        free(y);
        free(w);
        free(xb);
    }
    return 0;
}
