/* bench/race_peak: the arithmetic peaks bench/race.sh divides achieved FLOP/s by, on this run's
 * threads (GT_THREADS): OpenBLAS sgemm (fp32, bench_util.h's 1536^3) and our bf16 GEMM kernel
 * (AMX, else AVX512-BF16) on operands already rounded and packed (the kernel alone: a peak, not
 * what a training step gets), the best over a few 270M-like shapes. Best of 5 calls after a
 * warm-up each.
 *
 *   build/bench/race_peak      prints one line: RESULT sgemm=GFLOPS bf16=GFLOPS kernel=NAME
 * bf16=0 and kernel=off where the CPU has no bf16 instructions. */
#include <stdio.h>
#include <stdlib.h>

#include "autograd/blas.h"
#include "autograd/bf16_gemm.h"
#include "bench/bench_util.h"

/* GFLOP/s of the bf16 kernel k on packed M x N x K operands (multiples of 32), best of 5; 0 when
 * out of memory. */
static double bf16_rate(gt_bf16_kernel k, int threads, int64_t M, int64_t N, int64_t K) {
    int64_t big = (M > N ? M : N) * K;
    /* 64-byte aligned, as the model and ops_bf16 allocate them (tile rows are cache lines) */
    float *x = aligned_alloc(64, sizeof(float) * (size_t)big), *c = aligned_alloc(64, sizeof(float) * (size_t)(M * N));
    uint16_t *a = aligned_alloc(64, 2 * (size_t)(M * K)), *bp = aligned_alloc(64, 2 * (size_t)(N * K));
    double best = 1e30;
    if (x && c && a && bp) {
        for (int64_t i = 0; i < big; i++) x[i] = (float)(i % 7) * 0.1f;
        gt_bf16_pack_a(threads, x, M, K, K, a);
        gt_bf16_pack_bt(threads, x, N, K, K, bp);
        for (int r = 0; r < 6; r++) { /* call 0 warms up */
            double t = gt_now();
            gt_bf16_gemm(k, threads, M, N, K, a, K, bp, c, N, M, N, false, false);
            t = gt_now() - t;
            if (r && t < best) best = t;
        }
    }
    free(x), free(c), free(a), free(bp);
    return best < 1e30 ? 2.0 * (double)M * (double)N * (double)K / best / 1e9 : 0;
}

static double bf16_peak(gt_bf16_kernel k, int threads) {
    static const int64_t shapes[][3] = {{1536, 1536, 1536}, {2048, 2048, 640}, {2048, 640, 2048}, {512, 2048, 640}};
    double best = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g = bf16_rate(k, threads, shapes[i][0], shapes[i][1], shapes[i][2]);
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    (void)argc;
    gt_threads_reexec_spin(argv);
    gt_bf16_kernel k = gt_bf16_kernel_best();
    double s = sgemm_peak();
    double b = k == GT_BF16K_OFF ? 0 : bf16_peak(k, gt_threads());
    printf("RESULT sgemm=%.1f bf16=%.1f kernel=%s threads=%d\n", s, b, gt_bf16_kernel_name(k), gt_threads());
    return 0;
}
