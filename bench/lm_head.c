/* bench/lm_head: the fused LM head + cross-entropy with its input gradient (gt_lm_head_loss_bf16,
 * the bf16 one-pass path) on Gemma 3 270M's table (262144 x 640, random bf16) for ROWS weighted
 * rows of 512, against its two products alone on the same kernel (logits z^T = E h^T and the
 * accumulation dh += P E, over the whole vocabulary in the same 256-row blocks, on the same
 * threads): the ratio is what everything around the products costs (softmax, packing, stores,
 * merging). The two are alternated call by call, so both see the same machine.
 * usage: build/bench/lm_head [ROWS=177] [REPS=8]   (threads: GT_THREADS, default all cores)
 * Needs a bf16 kernel (AMX or AVX512-BF16); says so and exits 0 without one. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/bf16_gemm.h"
#include "autograd/ops_bf16.h"
#include "autograd/ops_lmhead.h"
#include "bench/bench_util.h"

enum { V = 262144, D = 640, T = 512, BLOCK = 256 };

static uint64_t st = 1;
static float rnd(void) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(st >> 40) / (float)(1 << 24) - 0.5f;
}

/* Both products of one pass over the vocabulary, split between the threads as the LM head splits
 * it: per thread, per block, the logits (transposed store) and the accumulation (rows as stored
 * on AVX512-BF16, packed on AMX). */
static void products(gt_bf16_kernel k, const uint16_t *e, const uint16_t *hb, const uint16_t *pb, int64_t rows,
                     float *z, float *acc, uint16_t *eb) {
    int64_t cp = (rows + 15) / 16 * 16;
#pragma omp parallel
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        float *zt = z + (size_t)t * cp * BLOCK, *at = acc + (size_t)t * cp * D;
        uint16_t *ebt = eb + (size_t)t * BLOCK * D;
        int64_t lo = (int64_t)V / 32 * t / n * 32, hi = (int64_t)V / 32 * (t + 1) / n * 32;
        for (int64_t v0 = lo; v0 < hi; v0 += BLOCK) {
            const uint16_t *eblk = e + v0 * D;
            gt_bf16_gemm(k, 1, BLOCK, cp, D, eblk, D, hb, zt, BLOCK, BLOCK, rows, true, false);
            if (!gt_bf16_gemm_rowb(k, 1, cp, D, BLOCK, pb, BLOCK, eblk, D, at, D, rows, D, false, true)) {
                gt_bf16_pack_b16(1, eblk, BLOCK, D, D, ebt);
                gt_bf16_gemm(k, 1, cp, D, BLOCK, pb, BLOCK, ebt, at, D, rows, D, false, true);
            }
        }
    }
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    int64_t rows = argc > 1 ? atoll(argv[1]) : 177;
    int reps = argc > 2 ? atoi(argv[2]) : 8;
    if (rows < 1 || rows > T || reps < 1)
        return fprintf(stderr, "usage: %s [rows in 1..%d] [reps >= 1]\n", argv[0], T), 2;
    gt_threads_set(getenv("GT_THREADS") ? atoi(getenv("GT_THREADS")) : 0);
    gt_bf16_kernel k = gt_bf16_kernel_active();
    if (k == GT_BF16K_OFF) return printf("bench/lm_head: no bf16 kernel on this CPU (or GT_BF16_KERNEL=off)\n"), 0;
    int th = gt_threads();
    int64_t cp = (rows + 15) / 16 * 16, stage_rows = 2048;
    uint16_t *e = malloc(sizeof(uint16_t) * (size_t)V * D), *hb = aligned_alloc(64, 2 * (size_t)cp * D),
             *pb = aligned_alloc(64, 2 * (size_t)cp * BLOCK), *eb = aligned_alloc(64, 2 * (size_t)th * BLOCK * D);
    float *stage = malloc(sizeof(float) * (size_t)stage_rows * D), *h = malloc(sizeof(float) * T * D),
          *w = malloc(sizeof(float) * T), *z = aligned_alloc(64, 4 * (size_t)th * cp * BLOCK),
          *acc = aligned_alloc(64, 4 * (size_t)th * cp * D);
    int32_t *labels = malloc(sizeof(int32_t) * T);
    double *t_op = malloc(sizeof(double) * (size_t)reps), *t_pr = malloc(sizeof(double) * (size_t)reps);
    if (!e || !hb || !pb || !eb || !stage || !h || !w || !z || !acc || !labels || !t_op || !t_pr)
        return fprintf(stderr, "bench/lm_head: out of memory\n"), 1;
    for (int64_t i = 0; i < (int64_t)V * D; i++) e[i] = gt_f32_to_bf16(rnd() * 0.1f);
    for (int64_t i = 0; i < T * D; i++) h[i] = rnd();
    for (int i = 0; i < T; i++) labels[i] = (int32_t)((i * 7919) % V), w[i] = i < rows ? 1 : 0;
    gt_bf16_pack_bt(th, h, rows, D, D, hb);
    for (int64_t i = 0; i < cp * BLOCK; i++) pb[i] = gt_f32_to_bf16(rnd() * 1e-3f);
    memset(acc, 0, 4 * (size_t)th * cp * D);
    gt_bf16_mat table = {e, V, D, stage, stage_rows * D, true, GT_WFMT_BF16, NULL};
    int64_t hs[2] = {T, D};
    for (int r = -1; r < reps; r++) { /* r -1: warm-up of both */
        gt_ctx ctx;
        gt_ctx_init(&ctx, 0);
        gt_tensor *x = gt_from_data(&ctx, h, 2, hs, true);
        double ws, t0 = gt_now();
        gt_tensor *loss = gt_lm_head_loss_bf16(&ctx, x, &table, 0, labels, w, 128, &ws, NULL);
        double t1 = gt_now();
        if (!loss) return fprintf(stderr, "bench/lm_head: %s\n", ctx.err), 1;
        gt_ctx_free(&ctx);
        double t2 = gt_now();
        products(k, e, hb, pb, rows, z, acc, eb);
        double t3 = gt_now();
        if (r >= 0) t_op[r] = t1 - t0, t_pr[r] = t3 - t2;
    }
    qsort(t_op, (size_t)reps, sizeof(double), cmp_double);
    qsort(t_pr, (size_t)reps, sizeof(double), cmp_double);
    double flop = 4.0 * V * D * (double)rows, op = t_op[reps / 2], pr = t_pr[reps / 2];
    printf("lm_head %lld rows of %d, V %d, D %d, kernel %s, %d threads, %d reps (median [min])\n", (long long)rows,
           T, V, D, gt_bf16_kernel_name(k), th, reps);
    printf("  LM head + loss + input gradient: %.1f ms [%.1f], %.0f GFLOP/s\n", op * 1e3, t_op[0] * 1e3, flop / op * 1e-9);
    printf("  its two products alone:          %.1f ms [%.1f], %.0f GFLOP/s\n", pr * 1e3, t_pr[0] * 1e3, flop / pr * 1e-9);
    printf("  ratio (LM head / products): %.3f\n", op / pr);
    return 0;
}
