/* bench/bf16_kern: the bf16 GEMM path of compute_dtype bfloat16 (autograd/bf16_gemm.h) on the
 * Gemma 3 270M frozen-weight shapes, as ops_bf16 / ops_lmhead call it (activations rounded and
 * packed in the call; the backward packs W's row pairs on AMX, reads them as stored on
 * AVX512-BF16), for bench/bf16_race.sh to
 * alternate with other builds and with torch (bench/bf16_torch.py prints the same lines).
 *
 *   build/bench/bf16_kern [REPS=5] [M=512] [ALIGN=64]   (GT_THREADS threads; AMX, else AVX512-BF16)
 *
 * ALIGN 64 places W and the packed operands on 64-byte boundaries (what the model and ops_bf16 allocate), 16 puts them 16 bytes past one
 * (what glibc's malloc gave them before: every 64-byte tile row then spans two cache lines).
 * Outputs are 64-byte aligned either way (the step's arena).
 *
 * One line per product: "RESULT shape=NAME dir=fwd|bwd M= N= K= gflops=G cpu_gflops=H", G from
 * the median wall time of REPS calls (after a warm-up), H from the median process CPU time per
 * thread (flops * threads / CPU seconds): less moved by other processes on a shared machine.
 * fwd: y[M, N] = x W^T, bwd: dx[M, K] += dy W, W [N, K]; lmhead: N 262144 in blocks of 8192
 * vocabulary rows (as the LM head's chunked pass), forward only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/bf16_gemm.h"
#include "autograd/blas.h"
#include "bench/bench_util.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench/bf16_kern: out of memory\n");
        exit(1);
    }
    return p;
}

/* n bytes at offset `off` past a 64-byte boundary; *base is what to free */
static void *at_offset(size_t n, int off, void **base) {
    *base = xmalloc(n + 64);
    return (char *)*base + off;
}

typedef struct {
    int64_t M, N, K, vb;
    const float *x, *dy;
    const uint16_t *w;
    uint16_t *pa, *pb;
    float *y, *dx;
    int th;
    gt_bf16_kernel k;
} prob;

static void call(const prob *p, int bwd) {
    int64_t M = p->M, N = p->N, K = p->K, Mp = (M + 15) / 16 * 16;
    if (!bwd) { /* y^T = W x^T, W as stored, x rounded into B panels (ops_bf16's forward) */
        gt_bf16_pack_bt(p->th, p->x, M, K, K, p->pb);
        for (int64_t v0 = 0; v0 < N; v0 += p->vb)
            gt_bf16_gemm(p->k, p->th, p->vb, Mp, K, p->w + v0 * K, K, p->pb, p->y, p->vb, p->vb, M, true, false);
        return;
    }
    gt_bf16_pack_a(p->th, p->dy, M, N, N, p->pa);
    /* as ops_bf16's backward: W's rows read as stored where the kernel can (AVX512-BF16) */
    if (gt_bf16_gemm_rowb(p->k, p->th, Mp, K, N, p->pa, N, p->w, K, p->dx, K, M, K, false, true)) return;
    gt_bf16_pack_b16(p->th, p->w, N, K, K, p->pb);
    gt_bf16_gemm(p->k, p->th, Mp, K, N, p->pa, N, p->pb, p->dx, K, M, K, false, true);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    int64_t M = argc > 2 ? atoll(argv[2]) : 512;
    int align = argc > 3 ? atoi(argv[3]) : 64;
    if (reps < 1 || reps > 100 || M < 1 || M > 65536 || (align != 64 && align != 16)) {
        fprintf(stderr, "usage: bf16_kern [REPS 1-100] [M 1-65536] [ALIGN 64|16]\n");
        return 2;
    }
    gt_bf16_kernel k = gt_bf16_kernel_best();
    if (k == GT_BF16K_OFF) {
        fprintf(stderr, "bench/bf16_kern: no bf16 kernel on this CPU\n");
        return 1;
    }
    struct {
        const char *name;
        int64_t N, K;
    } sh[] = {{"q", 1024, 640}, {"kv", 256, 640}, {"o", 640, 1024}, {"gate", 2048, 640}, {"down", 640, 2048},
              {"lmhead", 262144, 640}};
    int th = gt_threads();
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        int64_t N = sh[s].N, K = sh[s].K, Mp = (M + 15) / 16 * 16, lm = N > 100000;
        int64_t vb = lm ? 8192 : N, yn = lm ? vb : N;
        float *x = xmalloc(4 * (size_t)(M * K)), *dy = xmalloc(4 * (size_t)(M * yn)), *y = xmalloc(4 * (size_t)(M * yn));
        float *dx = xmalloc(4 * (size_t)(M * K));
        void *bw, *ba, *bb;
        int off = align == 64 ? 0 : align;
        uint16_t *w = at_offset(2 * (size_t)(N * K), off, &bw), *pa = at_offset(2 * (size_t)(Mp * yn), off, &ba);
        uint16_t *pb = at_offset(2 * (size_t)((Mp > N ? Mp : N) * K), off, &bb);
        unsigned r = 11;
        for (int64_t i = 0; i < M * K; i++) x[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (int64_t i = 0; i < M * yn; i++) dy[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (int64_t i = 0; i < N * K; i++) w[i] = (uint16_t)(0x3c00 + ((r = r * 1664525u + 1013904223u) >> 24));
        memset(dx, 0, 4 * (size_t)(M * K));
        prob p = {M, N, K, vb, x, dy, w, pa, pb, y, dx, th, k};
        for (int bwd = 0; bwd < 2 - lm; bwd++) {
            double wall[100], cpu[100], fl = 2.0 * (double)M * (double)N * (double)K;
            call(&p, bwd);
            for (int i = 0; i < reps; i++) {
                double t0 = gt_now(), c0 = cpu_now();
                call(&p, bwd);
                wall[i] = gt_now() - t0, cpu[i] = (cpu_now() - c0) / th;
            }
            printf("RESULT align=%d shape=%s dir=%s M=%lld N=%lld K=%lld gflops=%.1f cpu_gflops=%.1f\n", align,
                   sh[s].name, bwd ? "bwd" : "fwd", (long long)M, (long long)N, (long long)K, fl / median(wall, reps) / 1e9,
                   fl / median(cpu, reps) / 1e9);
            fflush(stdout);
        }
        free(x), free(dy), free(y), free(dx), free(bw), free(ba), free(bb);
    }
    return 0;
}
