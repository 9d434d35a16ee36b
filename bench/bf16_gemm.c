/* bench/bf16_gemm: the bf16 GEMM kernels (autograd/bf16_gemm.h) against OpenBLAS sgemm on the
 * frozen-weight products of Gemma 3 270M, in the same run.
 *
 *   build/bench/bf16_gemm [ROUNDS=5] [M list, default "256 512 1024 2048"]   (GT_THREADS threads)
 *
 * Shapes: W [N, K] = q 1024x640, kv 256x640, o 640x1024, gate/up 2048x640, down 640x2048 and the
 * tied LM-head table 262144x640 (M = 256 only: the others' activations are the whole batch);
 * M rows of activations. Two products per shape:
 *   fwd: y[M, N] = x W^T          bwd: dx[M, K] += dy[M, N] W      (the input gradient)
 * Contenders, each timed as one call including every conversion it needs:
 *   sgemm   cblas_sgemm on fp32 W (what frozen_dtype fp32 runs)
 *   stage   W bf16 expanded to fp32, then sgemm (what frozen_dtype bf16 ran before compute_dtype)
 *   amx     activations rounded to bf16 + packing + AMX tiles (bwd also packs W's row pairs)
 *   avx512  the same with the AVX512-BF16 vdpbf16ps kernel, whose bwd reads W's rows as stored
 *   amx-k   the AMX kernel alone on packed operands (what packing costs: amx vs amx-k)
 * Rounds: each round runs every contender once per shape (alternated, 1 warm-up call), a
 * contender's time in a round is the best of 3 calls; reported: GFLOP/s median over rounds,
 * [min..max], and the median of the per-round ratio to sgemm. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/bf16_gemm.h"
#include "bench/bench_util.h"

typedef struct {
    const char *name;
    int64_t N, K;
} shape;

enum { C_SGEMM, C_STAGE, C_AMX, C_AVX, C_AMXK, NC };
static const char *cname[NC] = {"sgemm", "stage", "amx", "avx512", "amx-k"};

typedef struct {
    int64_t M, N, K;
    float *x, *w, *y, *dy, *dx, *stage;
    uint16_t *w16, *pa, *pb;
    int threads;
} op;

static void *xmalloc(size_t n) { /* 64-byte aligned, as the model allocates bf16 weights */
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench/bf16_gemm: out of memory\n");
        exit(1);
    }
    return p;
}

static void run(op *o, int c, bool bwd) {
    int64_t M = o->M, N = o->N, K = o->K, Mp = (M + 15) / 16 * 16;
    if (!bwd) {
        switch (c) {
        case C_SGEMM:
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, o->x, (int)K, o->w,
                        (int)K, 0, o->y, (int)N);
            break;
        case C_STAGE:
            gt_bf16_expand(o->w16, o->stage, N * K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, o->x, (int)K,
                        o->stage, (int)K, 0, o->y, (int)N);
            break;
        case C_AMX:
        case C_AVX: {
            gt_bf16_kernel k = c == C_AMX ? GT_BF16K_AMX : GT_BF16K_AVX512;
            gt_bf16_pack_bt(o->threads, o->x, M, K, K, o->pb);
            gt_bf16_gemm(k, o->threads, N, Mp, K, o->w16, K, o->pb, o->y, N, N, M, true, false);
            break;
        }
        case C_AMXK:
            gt_bf16_gemm(GT_BF16K_AMX, o->threads, N, Mp, K, o->w16, K, o->pb, o->y, N, N, M, true, false);
            break;
        }
    } else {
        switch (c) {
        case C_SGEMM:
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)K, (int)N, 1, o->dy, (int)N, o->w,
                        (int)K, 1, o->dx, (int)K);
            break;
        case C_STAGE:
            gt_bf16_expand(o->w16, o->stage, N * K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)K, (int)N, 1, o->dy, (int)N,
                        o->stage, (int)K, 1, o->dx, (int)K);
            break;
        case C_AMX:
        case C_AVX: {
            gt_bf16_kernel k = c == C_AMX ? GT_BF16K_AMX : GT_BF16K_AVX512;
            gt_bf16_pack_a(o->threads, o->dy, M, N, N, o->pa);
            /* as gt_bf16_linear's backward: AVX512-BF16 reads W as stored, AMX packs it */
            if (gt_bf16_gemm_rowb(k, o->threads, Mp, K, N, o->pa, N, o->w16, K, o->dx, K, M, K, false, true)) break;
            gt_bf16_pack_b16(o->threads, o->w16, N, K, K, o->pb);
            gt_bf16_gemm(k, o->threads, Mp, K, N, o->pa, N, o->pb, o->dx, K, M, K, false, true);
            break;
        }
        case C_AMXK:
            gt_bf16_gemm(GT_BF16K_AMX, o->threads, Mp, K, N, o->pa, N, o->pb, o->dx, K, M, K, false, true);
            break;
        }
    }
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (rounds < 1 || rounds > 50) rounds = 5;
    int64_t Ms[8] = {256, 512, 1024, 2048};
    int nm = 4;
    if (argc > 2) {
        nm = 0;
        char *s = strdup(argv[2]);
        for (char *t = strtok(s, " ,"); t && nm < 8; t = strtok(NULL, " ,")) Ms[nm++] = atoll(t);
        free(s);
    }
    int threads = gt_threads();
    double peak = sgemm_peak();
    gt_blas_pool(threads); /* the sgemm baselines are bare cblas calls on OpenBLAS's own pool */
    gt_bf16_kernel best = gt_bf16_kernel_best();
    bool have[NC] = {true, true, best == GT_BF16K_AMX, best != GT_BF16K_OFF, best == GT_BF16K_AMX};
    printf("bf16_gemm: %d threads, bf16 kernels on this CPU: %s; sgemm peak %.1f GFLOP/s; %d rounds\n",
           threads, gt_bf16_kernel_name(best), peak, rounds);
    shape shapes[] = {{"q", 1024, 640}, {"kv", 256, 640}, {"o", 640, 1024}, {"gate/up", 2048, 640},
                      {"down", 640, 2048}, {"lmhead", 262144, 640}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int im = 0; im < nm; im++)
        for (int is = 0; is < ns; is++) {
            int64_t M = Ms[im], N = shapes[is].N, K = shapes[is].K, Mp = (M + 15) / 16 * 16;
            if (N > 100000 && M != 256) continue;
            op o = {M, N, K, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, threads};
            o.x = xmalloc(sizeof(float) * (size_t)(M * K));
            o.dx = xmalloc(sizeof(float) * (size_t)(M * K));
            o.w = xmalloc(sizeof(float) * (size_t)(N * K));
            o.stage = xmalloc(sizeof(float) * (size_t)(N * K));
            o.y = xmalloc(sizeof(float) * (size_t)(M * N));
            o.dy = xmalloc(sizeof(float) * (size_t)(M * N));
            o.w16 = xmalloc(2 * (size_t)(N * K));
            o.pa = xmalloc(2 * (size_t)(Mp * (N > K ? N : K)));
            o.pb = xmalloc(2 * (size_t)((Mp > N ? Mp : N) * K));
            unsigned s = 7;
            for (int64_t i = 0; i < M * K; i++) o.x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
            for (int64_t i = 0; i < M * N; i++) o.dy[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
            for (int64_t i = 0; i < N * K; i++) o.w[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
            gt_to_bf16_n(o.w, o.w16, N * K);
            memset(o.dx, 0, sizeof(float) * (size_t)(M * K));
            double flops = 2.0 * (double)M * (double)N * (double)K;
            for (int bwd = 0; bwd < 2; bwd++) {
                if (N > 100000 && bwd) continue; /* the LM head's input gradient: same shape class */
                double t[NC][50];
                int calls = flops > 2e10 ? 1 : 3;
                for (int r = 0; r < rounds; r++)
                    for (int c = 0; c < NC; c++) {
                        if (!have[c]) continue;
                        if (c == C_AMXK) { /* packed operands for the kernel alone */
                            if (bwd) {
                                gt_bf16_pack_a(threads, o.dy, M, N, N, o.pa);
                                gt_bf16_pack_b16(threads, o.w16, N, K, K, o.pb);
                            } else {
                                gt_bf16_pack_bt(threads, o.x, M, K, K, o.pb);
                            }
                        }
                        if (r == 0) run(&o, c, bwd);
                        double b = 1e30;
                        for (int i = 0; i < calls; i++) {
                            double t0 = gt_now();
                            run(&o, c, bwd);
                            t0 = gt_now() - t0;
                            if (t0 < b) b = t0;
                        }
                        t[c][r] = b;
                    }
                printf("M %5lld %-8s %s (N %lld, K %lld):", (long long)M, shapes[is].name, bwd ? "bwd" : "fwd",
                       (long long)N, (long long)K);
                for (int c = 0; c < NC; c++) {
                    if (!have[c]) continue;
                    double g[50], ratio[50];
                    for (int r = 0; r < rounds; r++) g[r] = flops / t[c][r] / 1e9, ratio[r] = t[C_SGEMM][r] / t[c][r];
                    qsort(g, (size_t)rounds, sizeof(double), cmpd);
                    qsort(ratio, (size_t)rounds, sizeof(double), cmpd);
                    printf("  %s %.0f [%.0f..%.0f]", cname[c], g[rounds / 2], g[0], g[rounds - 1]);
                    if (c != C_SGEMM) printf(" %.2fx", ratio[rounds / 2]);
                }
                printf("\n");
                fflush(stdout);
            }
            free(o.x), free(o.dx), free(o.w), free(o.stage), free(o.y), free(o.dy), free(o.w16), free(o.pa), free(o.pb);
        }
    return 0;
}
