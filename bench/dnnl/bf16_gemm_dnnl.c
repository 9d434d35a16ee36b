/* bench/dnnl/bf16_gemm_dnnl: oneDNN's bf16 matmul (the library PyTorch's bf16 autocast uses on
 * CPU) against the AMX kernel of autograd/bf16_gemm.h and OpenBLAS sgemm, same run, on the
 * forward product of the 270M shapes, y[M, N] = x W^T with W [N, K] bf16. Not built by `make`
 * (oneDNN is not a dependency); with Debian's libdnnl-dev:
 *   make build/libgemmatrain.a && gcc -std=c11 -D_GNU_SOURCE -O2 -fopenmp -I. \
 *     bench/dnnl/bf16_gemm_dnnl.c build/libgemmatrain.a -o build/bench/bf16_gemm_dnnl \
 *     $(pkg-config --libs openblas) -ldnnl -lm
 *   build/bench/bf16_gemm_dnnl [ROUNDS=5] [M list]      (threads: GT_THREADS / OMP_NUM_THREADS)
 * Each contender's time includes rounding x to bf16 (oneDNN: our packer's row-major rounding, then
 * its matmul on bf16 x and W as stored, fp32 out; the primitive is created once, outside the
 * timing, as a framework would cache it). GFLOP/s median [min..max] over rounds, each round the
 * best of 3 calls per contender, contenders alternated. */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/bf16_gemm.h"
#include "bench/bench_util.h"

#define CK(x)                                                                      \
    do {                                                                           \
        dnnl_status_t st_ = (x);                                                   \
        if (st_ != dnnl_success) {                                                 \
            fprintf(stderr, "oneDNN: %s failed (%d)\n", #x, (int)st_);             \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

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
    int th = gt_threads();
    bool amx = gt_bf16_kernel_best() == GT_BF16K_AMX;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    printf("bf16_gemm_dnnl: %d threads, oneDNN %d.%d.%d, AMX kernel %s, sgemm peak %.1f GFLOP/s, %d rounds\n", th,
           dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, amx ? "yes" : "no", sgemm_peak(),
           rounds);
    struct { const char *name; int64_t N, K; } shapes[] = {
        {"q", 1024, 640}, {"kv", 256, 640}, {"o", 640, 1024}, {"gate/up", 2048, 640}, {"down", 640, 2048}};
    for (int im = 0; im < nm; im++)
        for (int is = 0; is < 5; is++) {
            int64_t M = Ms[im], N = shapes[is].N, K = shapes[is].K, Mp = (M + 15) / 16 * 16;
            float *x = malloc(sizeof(float) * (size_t)(M * K)), *w = malloc(sizeof(float) * (size_t)(N * K));
            float *y = malloc(sizeof(float) * (size_t)(M * N));
            uint16_t *w16 = malloc(2 * (size_t)(N * K)), *xb = malloc(2 * (size_t)(Mp * K));
            unsigned s = 3;
            for (int64_t i = 0; i < M * K; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
            for (int64_t i = 0; i < N * K; i++) w[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
            gt_to_bf16_n(w, w16, N * K);
            dnnl_memory_desc_t a_md, b_md, c_md;
            dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
            CK(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dnnl_bf16, dnnl_ab));
            CK(dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_bf16, dnnl_ba)); /* W [N, K] row-major = B^T */
            CK(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
            dnnl_matmul_desc_t mmd;
            CK(dnnl_matmul_desc_init(&mmd, &a_md, &b_md, NULL, &c_md));
            dnnl_primitive_desc_t pd;
            CK(dnnl_primitive_desc_create(&pd, &mmd, NULL, eng, NULL));
            const char *impl = NULL;
            CK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
            dnnl_primitive_t prim;
            CK(dnnl_primitive_create(&prim, pd));
            dnnl_memory_t A, B, C;
            CK(dnnl_memory_create(&A, &a_md, eng, xb));
            CK(dnnl_memory_create(&B, &b_md, eng, w16));
            CK(dnnl_memory_create(&C, &c_md, eng, y));
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, A}, {DNNL_ARG_WEIGHTS, B}, {DNNL_ARG_DST, C}};
            double t[3][50], flops = 2.0 * (double)M * (double)N * (double)K;
            for (int r = 0; r < rounds; r++)
                for (int c = 0; c < 3; c++) {
                    if (c == 2 && !amx) continue;
                    double best = 1e30;
                    for (int i = 0; i < 4; i++) {
                        double t0 = gt_now();
                        if (c == 0)
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, x, (int)K, w,
                                        (int)K, 0, y, (int)N);
                        else if (c == 1) {
                            gt_bf16_pack_a(th, x, M, K, K, xb);
                            CK(dnnl_primitive_execute(prim, stream, 3, args));
                            CK(dnnl_stream_wait(stream));
                        } else {
                            gt_bf16_pack_bt(th, x, M, K, K, xb);
                            gt_bf16_gemm(GT_BF16K_AMX, th, N, Mp, K, w16, K, xb, y, N, N, M, true, false);
                        }
                        t0 = gt_now() - t0;
                        if (i > 0 && t0 < best) best = t0; /* call 0: warm-up */
                    }
                    t[c][r] = best;
                }
            printf("M %5lld %-8s fwd (N %lld, K %lld):", (long long)M, shapes[is].name, (long long)N, (long long)K);
            const char *nm_[3] = {"sgemm", "onednn", "amx"};
            for (int c = 0; c < 3; c++) {
                if (c == 2 && !amx) continue;
                double g[50], q[50];
                for (int r = 0; r < rounds; r++) g[r] = flops / t[c][r] / 1e9, q[r] = t[0][r] / t[c][r];
                qsort(g, (size_t)rounds, sizeof(double), cmpd);
                qsort(q, (size_t)rounds, sizeof(double), cmpd);
                printf("  %s %.0f [%.0f..%.0f]", nm_[c], g[rounds / 2], g[0], g[rounds - 1]);
                if (c) printf(" %.2fx", q[rounds / 2]);
            }
            printf("  (oneDNN impl: %s)\n", impl ? impl : "?");
            fflush(stdout);
            dnnl_memory_destroy(A), dnnl_memory_destroy(B), dnnl_memory_destroy(C);
            dnnl_primitive_destroy(prim);
            dnnl_primitive_desc_destroy(pd);
            free(x), free(w), free(y), free(w16), free(xb);
        }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return 0;
}
