/* compute_dtype bfloat16: the bf16 GEMM kernels (autograd/bf16_gemm.h) behind gt_bf16_linear,
 * against fp32, on every kernel this CPU has (AMX, AVX512-BF16) and on the fallback.
 *
 * Tolerances (stated here, checked below):
 *  - against an exact (double) product of the bf16-rounded activations and the bf16 weights:
 *    |err| <= 1e-5 * sum_k |x_k w_k| (fp32 accumulation in another order: the kernels are exact
 *    products of what they are given);
 *  - against the fp32 op on the unrounded activations: |err| <= 2^-8 * sum_k |x_k w_k| (rounding x
 *    to bf16 moves each product by at most 2^-9 of itself, plus the accumulation);
 *  - a LoRA training run (tiny Gemma 3, 12 AdamW steps): each step's loss within 1% of the fp32
 *    compute run's, and the run learns (last loss < 0.8 x first).
 * Without a bf16 kernel (no AVX512-BF16/AMX, or GT_BF16_KERNEL=off) bf16 mode must be the fp32
 * path exactly. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/bf16_gemm.h"
#include "models/gemma.h"
#include "train/step.h"
#include "tests/cli_run.h"
#include "tests/check_main.h"
#include "tests/quant_model.h"

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

static double rb(double v) { return gt_bf16_to_f32(gt_f32_to_bf16((float)v)); }

/* y = x W^T and dx = dy W through gt_bf16_linear with compute_bf16 on kernel k, checked against
 * the exact products of the rounded operands and against fp32 mode. */
static void linear_vs_fp32(gt_bf16_kernel k, int64_t M, int64_t R, int64_t C, int64_t stage_rows) {
    ck_assert_int_eq(gt_bf16_kernel_force((int)k), k);
    uint64_t seed = 17 + (uint64_t)(M * R);
    uint16_t *w16 = malloc(sizeof(uint16_t) * (size_t)(R * C));
    gt_real *stage = malloc(sizeof(gt_real) * (size_t)(stage_rows * C)), *x = malloc(sizeof(gt_real) * (size_t)(M * C)),
            *g = malloc(sizeof(gt_real) * (size_t)(M * R));
    for (int64_t i = 0; i < R * C; i++) w16[i] = gt_f32_to_bf16((float)rnd(&seed));
    for (int64_t i = 0; i < M * C; i++) x[i] = (gt_real)(rnd(&seed) * (1 + i % 3));
    for (int64_t i = 0; i < M * R; i++) g[i] = (gt_real)rnd(&seed);
    gt_bf16_mat wb = {w16, R, C, stage, stage_rows * C, true, GT_WFMT_BF16, NULL}, wf = wb;
    wf.compute_bf16 = false;
    ck_assert(gt_bf16_linear_uses_bf16(&wb) == (k != GT_BF16K_OFF));
    int64_t xs[2] = {M, C};
    gt_test_pair p;
    gt_test_linear_pair(&p, &wb, &wf, NULL, x, 2, xs, g);
    const gt_tensor *y1 = p.y1, *y2 = p.y2, *x1 = p.x1, *x2 = p.x2;
    double worst_exact = 0, worst_fp32 = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t r = 0; r < R; r++) {
            double ex = 0, mag = 0;
            for (int64_t c = 0; c < C; c++) {
                double w = gt_bf16_to_f32(w16[r * C + c]);
                ex += (k != GT_BF16K_OFF ? rb(x[m * C + c]) : x[m * C + c]) * w;
                mag += fabs(x[m * C + c] * w);
            }
            double y = y1->data[m * R + r];
            worst_exact = fmax(worst_exact, fabs(y - ex) / mag);
            worst_fp32 = fmax(worst_fp32, fabs(y - y2->data[m * R + r]) / mag);
            if (k == GT_BF16K_OFF) ck_assert(y == y2->data[m * R + r]);
        }
    ck_assert_msg(worst_exact <= 1e-5, "%s forward: %g of sum |x w| from the exact product", gt_bf16_kernel_name(k),
                  worst_exact);
    ck_assert_msg(worst_fp32 <= 1.0 / 256, "%s forward: %g of sum |x w| from fp32", gt_bf16_kernel_name(k), worst_fp32);
    if (k != GT_BF16K_OFF) ck_assert(worst_fp32 > 0); /* the activations were rounded */
    double bw_exact = 0, bw_fp32 = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t c = 0; c < C; c++) {
            double ex = 0, mag = 0;
            for (int64_t r = 0; r < R; r++) {
                double w = gt_bf16_to_f32(w16[r * C + c]);
                ex += (k != GT_BF16K_OFF ? rb(g[m * R + r]) : g[m * R + r]) * w;
                mag += fabs(g[m * R + r] * w);
            }
            double d = x1->grad[m * C + c];
            bw_exact = fmax(bw_exact, fabs(d - ex) / mag);
            bw_fp32 = fmax(bw_fp32, fabs(d - x2->grad[m * C + c]) / mag);
            if (k == GT_BF16K_OFF) ck_assert(d == x2->grad[m * C + c]);
        }
    ck_assert_msg(bw_exact <= 1e-5, "%s backward: %g of sum |dy w| from the exact product", gt_bf16_kernel_name(k),
                  bw_exact);
    ck_assert_msg(bw_fp32 <= 1.0 / 256, "%s backward: %g of sum |dy w| from fp32", gt_bf16_kernel_name(k), bw_fp32);
    printf("compute_bf16 %s M %lld R %lld C %lld: vs exact %.1e / %.1e, vs fp32 %.1e / %.1e (fwd / bwd, of sum |a b|)\n",
           gt_bf16_kernel_name(k), (long long)M, (long long)R, (long long)C, worst_exact, bw_exact, worst_fp32, bw_fp32);
    gt_test_pair_free(&p);
    free(w16);
    free(stage);
    free(x);
    free(g);
    gt_bf16_kernel_force(-1);
}

START_TEST(linear_matches_fp32_on_every_kernel) {
    gt_bf16_kernel ks[3] = {GT_BF16K_OFF, GT_BF16K_AVX512, GT_BF16K_AMX};
    for (int i = 0; i < 3; i++) {
        if (gt_bf16_kernel_force((int)ks[i]) != ks[i]) continue; /* not on this CPU */
        /* 37 rows: 32 + an edge of 5 (forward: 48 padded token columns; backward: a full and an
         * edge tile row); R 96: three 32-blocks; the staging holds 32 rows: three backward blocks */
        linear_vs_fp32(ks[i], 37, 96, 64, 32);
        linear_vs_fp32(ks[i], 64, 64, 320, 64);
        linear_vs_fp32(ks[i], 3, 32, 32, 200);
    }
    gt_bf16_kernel_force(-1);
}
END_TEST

/* C from gt_bf16_gemm(_rowb) (started as c[i] = i) against the exact products of its bf16
 * operands: within 1e-5 of sum |a b| where valid, untouched past Mv, Nv. */
static void check_exact(const char *what, int mode, const float *c, const uint16_t *a, const uint16_t *b, int M, int N,
                        int K, int mv, int nv) {
    bool trans = mode & 1, acc = mode & 2;
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int at = trans ? n * M + m : m * N + n;
            if (m >= mv || n >= nv) {
                ck_assert_msg(c[at] == (float)at, "%s mode %d: C[%d][%d] written past Mv, Nv", what, mode, m, n);
                continue;
            }
            double ex = 0, mag = 0;
            for (int q = 0; q < K; q++) {
                double p = (double)gt_bf16_to_f32(a[m * K + q]) * gt_bf16_to_f32(b[q * N + n]);
                ex += p, mag += fabs(p);
            }
            worst = fmax(worst, fabs(c[at] - (acc ? at : 0) - ex) / (mag + (acc ? at : 0)));
        }
    ck_assert_msg(worst <= 1e-5, "%s mode %d (K %d, Mv %d, Nv %d): %g of sum |a b| from the exact product", what,
                  mode, K, mv, nv, worst);
}

/* gt_bf16_gemm on kernel k against the exact products of its bf16 operands, over M = 624 rows (two
 * whole 256-row chunks and a last one of 112, whose blocks the threads split evenly), N = 48 (a
 * 32-column block and a 16-column edge), every store mode, with rows and columns past Mv, Nv left
 * alone; on AVX512-BF16, gt_bf16_gemm_rowb (B row-major) must give the same bits. mv and nv pick
 * the edge paths: mv - 608 rows in the last block (steps of 8, 4, 2, 1), nv % 16 columns in the
 * last panel (up to 8: dot products). K not a multiple of 32: rowb only (masked dot products). */
static void gemm_vs_exact(gt_bf16_kernel k, int K, int mv, int nv) {
    enum { M = 624, N = 48 };
    uint64_t seed = 5;
    uint16_t *a = malloc(2 * M * K), *b = malloc(2 * K * N), *bp = malloc(2 * K * N);
    float *c = malloc(sizeof(float) * M * N), *c2 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = gt_f32_to_bf16((float)rnd(&seed));
    for (int i = 0; i < K * N; i++) b[i] = gt_f32_to_bf16((float)rnd(&seed));
    bool packed = K % 32 == 0;
    if (packed) gt_bf16_pack_b16(2, b, K, N, N, bp);
    for (int mode = 0; mode < 4; mode++) {
        bool trans = mode & 1, acc = mode & 2;
        for (int i = 0; i < M * N; i++) c[i] = c2[i] = (float)i; /* accumulated onto, or kept past Mv, Nv */
        if (packed) {
            gt_bf16_gemm(k, 2, M, N, K, a, K, bp, c, trans ? M : N, mv, nv, trans, acc);
            check_exact(gt_bf16_kernel_name(k), mode, c, a, b, M, N, K, mv, nv);
        }
        bool rowb = gt_bf16_gemm_rowb(k, 2, M, N, K, a, K, b, N, c2, trans ? M : N, mv, nv, trans, acc);
        ck_assert(rowb == (k == GT_BF16K_AVX512));
        if (rowb) check_exact("rowb", mode, c2, a, b, M, N, K, mv, nv);
        if (rowb && packed)
            ck_assert_msg(!memcmp(c, c2, sizeof(float) * M * N), "rowb mode %d differs from packed B", mode);
    }
    free(a), free(b), free(bp), free(c), free(c2);
}

START_TEST(gemm_matches_exact_on_every_kernel) {
    gt_bf16_kernel ks[2] = {GT_BF16K_AVX512, GT_BF16K_AMX};
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        if (gt_bf16_kernel_force((int)ks[i]) != ks[i]) continue; /* not on this CPU */
        gemm_vs_exact(ks[i], 96, 617, 41); /* 9 rows (8 + 1), 9 columns (padded panel) */
        gemm_vs_exact(ks[i], 96, 614, 35); /* 6 rows (8), 3 columns (dot products) */
        gemm_vs_exact(ks[i], 96, 611, 33); /* 3 rows (4), 1 column */
        gemm_vs_exact(ks[i], 96, 610, 40); /* 2 rows (2), 8 columns */
        gemm_vs_exact(ks[i], 90, 609, 37); /* K 90: rowb only, a masked last step */
        ran++;
    }
    printf("compute_bf16 gemm: %d kernel(s) checked on this CPU\n", ran);
    ck_assert(!gt_bf16_gemm_rowb(GT_BF16K_OFF, 2, 16, 16, 32, NULL, 32, NULL, 16, NULL, 16, 16, 16, false, false));
    /* a B over 4 MiB, or with rows 4 KiB apart, is left to the packed path (refused before
     * anything is read) */
    ck_assert(!gt_bf16_gemm_rowb(GT_BF16K_AVX512, 2, 16, 16, 2048, NULL, 2048, NULL, 1056, NULL, 16, 16, 16, false,
                                 false));
    ck_assert(!gt_bf16_gemm_rowb(GT_BF16K_AVX512, 2, 16, 16, 32, NULL, 32, NULL, 2048, NULL, 16, 16, 16, false,
                                 false));
    gt_bf16_kernel_force(-1);
}
END_TEST

/* The vendor as /proc/cpuinfo names it (the kernel reads cpuid itself) */
static bool cpu_is_amd(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    bool amd = false;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "vendor_id", 9)) {
            amd = strstr(line, "AuthenticAMD") != NULL;
            break;
        }
    if (f) fclose(f);
    return amd;
}

START_TEST(fallbacks) {
    /* GT_BF16_KERNEL=off forces the fp32 path; so does a kernel the CPU lacks */
    setenv("GT_BF16_KERNEL", "off", 1);
    ck_assert_int_eq(gt_bf16_kernel_force(-1), GT_BF16K_OFF);
    linear_vs_fp32(GT_BF16K_OFF, 37, 96, 64, 32);
    unsetenv("GT_BF16_KERNEL");
    gt_bf16_kernel best = gt_bf16_kernel_best();
    ck_assert_int_eq(gt_bf16_kernel_force(-1), gt_bf16_kernel_auto()); /* auto: AMX, AVX512 on AMD, or off */
    ck_assert_int_eq(gt_bf16_kernel_auto(), best == GT_BF16K_AMX || (best == GT_BF16K_AVX512 && cpu_is_amd())
                                                ? best : GT_BF16K_OFF);
    setenv("GT_BF16_KERNEL", "avx512", 1);
    ck_assert_int_eq(gt_bf16_kernel_force(-1), best == GT_BF16K_OFF ? GT_BF16K_OFF : GT_BF16K_AVX512);
    unsetenv("GT_BF16_KERNEL");
    if (best != GT_BF16K_AMX) ck_assert_int_eq(gt_bf16_kernel_force(GT_BF16K_AMX), GT_BF16K_OFF);
    if (best == GT_BF16K_OFF) ck_assert_int_eq(gt_bf16_kernel_force(GT_BF16K_AVX512), GT_BF16K_OFF);
    gt_bf16_kernel_force(-1);
    printf("compute_bf16: this CPU's bf16 kernel: %s\n", gt_bf16_kernel_name(best));
    /* shapes that are not multiples of 32 (and a staging buffer under 32 rows) stay fp32 */
    uint16_t w16[9 * 7] = {0};
    gt_real stage[64 * 64];
    gt_bf16_mat odd = {w16, 9, 7, stage, 2 * 7, true, GT_WFMT_BF16, NULL}, small = {w16, 64, 64, stage, 16 * 64 / 2, true, GT_WFMT_BF16, NULL};
    ck_assert(!gt_bf16_linear_uses_bf16(&odd));
    ck_assert(!gt_bf16_linear_uses_bf16(&small));
    ck_assert_str_eq(gt_bf16_kernel_name(GT_BF16K_OFF), "off");
}
END_TEST

/* The fused LM head + cross-entropy on a bf16 table in bf16 mode against fp32 mode: each row's
 * loss within 2 * 2^-8 * max_v sum_k |h_k e_vk| (logits move by at most 2^-8 of that), the
 * hidden gradient within 2% of its largest value. V 1000 with staging for 256 rows: three
 * blocks on the kernel and a short last one (232 rows) in fp32. */
static void lm_head_vs_fp32(gt_bf16_kernel k, int64_t V, int64_t N, double cap, int64_t D) {
    ck_assert_int_eq(gt_bf16_kernel_force((int)k), k);
    enum { SR = 256 };
    uint64_t seed = 99;
    uint16_t *e16 = malloc(sizeof(uint16_t) * (size_t)(V * D));
    gt_real *stage = malloc(sizeof(gt_real) * SR * D), *h = malloc(sizeof(gt_real) * (size_t)(N * D));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)N);
    gt_real *w = malloc(sizeof(gt_real) * (size_t)N), *ce1 = malloc(sizeof(gt_real) * (size_t)N),
            *ce2 = malloc(sizeof(gt_real) * (size_t)N);
    for (int64_t i = 0; i < V * D; i++) e16[i] = gt_f32_to_bf16((float)(rnd(&seed) * 0.5));
    for (int64_t i = 0; i < N * D; i++) h[i] = (gt_real)rnd(&seed);
    for (int64_t i = 0; i < N; i++) labels[i] = (int32_t)((i * 131 + 7) % V), w[i] = i % 5 == 3 ? 0 : 1;
    double bound = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t v = 0; v < V; v++) {
            double mag = 0;
            for (int d = 0; d < D; d++) mag += fabs(h[i * D + d] * gt_bf16_to_f32(e16[v * D + d]));
            bound = fmax(bound, mag);
        }
    bound *= 2.0 / 256;
    gt_bf16_mat eb = {e16, V, D, stage, SR * D, true, GT_WFMT_BF16, NULL}, ef = eb;
    ef.compute_bf16 = false;
    gt_test_pair p;
    gt_test_lm_head_pair(&p, &eb, &ef, NULL, h, N, cap, labels, w, 8, ce1, ce2);
    const gt_tensor *h1 = p.x1, *h2 = p.x2;
    double worst = 0, gmax = 0, gdiff = 0;
    for (int64_t i = 0; i < N; i++) {
        worst = fmax(worst, fabs(ce1[i] - ce2[i]));
        if (k == GT_BF16K_OFF) ck_assert(ce1[i] == ce2[i]);
    }
    for (int64_t i = 0; i < N * D; i++) {
        gmax = fmax(gmax, fabs(h2->grad[i]));
        gdiff = fmax(gdiff, fabs(h1->grad[i] - h2->grad[i]));
    }
    ck_assert_msg(worst <= bound, "%s: row loss off by %g (bound %g)", gt_bf16_kernel_name(k), worst, bound);
    ck_assert_msg(gdiff <= 0.02 * gmax, "%s: dh off by %g of max %g", gt_bf16_kernel_name(k), gdiff, gmax);
    ck_assert(gmax > 1e-3);
    if (k != GT_BF16K_OFF) ck_assert(worst > 0);
    printf("compute_bf16 %s lm head V %lld N %lld D %lld cap %g: row loss off by %.1e (bound %.1e), dh by %.1e of "
           "max\n", gt_bf16_kernel_name(k), (long long)V, (long long)N, (long long)D, cap, worst, bound, gdiff / gmax);
    gt_test_pair_free(&p);
    free(e16), free(stage), free(h), free(labels), free(w), free(ce1), free(ce2);
    gt_bf16_kernel_force(-1);
}

START_TEST(lm_head_matches_fp32_on_every_kernel) {
    gt_bf16_kernel ks[3] = {GT_BF16K_OFF, GT_BF16K_AVX512, GT_BF16K_AMX};
    for (int i = 0; i < 3; i++) {
        if (gt_bf16_kernel_force((int)ks[i]) != ks[i]) continue;
        lm_head_vs_fp32(ks[i], 1000, 21, 0, 64);
        lm_head_vs_fp32(ks[i], 1024, 5, 30, 64);
        /* table rows 4 KiB apart (Gemma 1 2B's width): AVX512-BF16 packs its blocks, not rowb */
        lm_head_vs_fp32(ks[i], 1024, 5, 0, 2048);
    }
    gt_bf16_kernel_force(-1);
}
END_TEST

/* tiny Gemma 3 (configs/tiny.yaml's widths: hidden 64, MLP 128, head 32), bf16 storage */
static gt_gemma *tiny_model(void) {
    gt_gemma_config c = gt_test_tiny3_cfg(64, 128);
    char err[256];
    gt_gemma *m;
    ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    gt_gemma_init_random(m, 5, 0.2);
    ck_assert_msg(gt_gemma_set_frozen_dtype(m, GT_FROZEN_BF16, err, sizeof err) == 0, "%s", err);
    return m;
}

enum { STEPS = 12 };

/* The LoRA run of quant_model.h (12 steps at 2e-2, B zero) with compute_bf16 on or off. */
static void train(bool bf16, double *losses) {
    gt_gemma *m = tiny_model();
    char err[256];
    ck_assert_msg(gt_gemma_set_compute_bf16(m, bf16, err, sizeof err) == 0, "%s", err);
    gt_test_lora_run(m, STEPS, 2e-2, false, losses, NULL, 0, NULL);
    gt_gemma_free(m);
}

START_TEST(lora_training_loss_follows_fp32) {
    double lf[STEPS], lb[STEPS];
    train(false, lf);
    train(true, lb);
    double worst = gt_test_losses_near(lb, lf, STEPS, 1e-2, "bf16 vs fp32");
    for (int s = 0; s < STEPS; s++)
        if (gt_bf16_kernel_active() == GT_BF16K_OFF) ck_assert(lb[s] == lf[s]);
    gt_test_loss_fell(lf, STEPS);
    printf("compute_bf16 (%s): LoRA loss %.4f -> %.4f (fp32 compute %.4f -> %.4f), worst step %.1e relative\n",
           gt_bf16_kernel_name(gt_bf16_kernel_active()), lb[0], lb[STEPS - 1], lf[0], lf[STEPS - 1], worst);
    /* bf16 arithmetic needs bf16 storage */
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = 64, c.num_layers = 1, c.hidden_dim = 32, c.intermediate_dim = 32, c.head_dim = 32;
    c.num_query_heads = 1, c.num_kv_heads = 1;
    gt_gemma *m;
    char err[256];
    ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_set_compute_bf16(m, true, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "model.compute_dtype") && strstr(err, "bf16"), "%s", err);
    ck_assert_int_eq(gt_gemma_set_compute_bf16(m, false, err, sizeof err), 0);
    ck_assert_msg(gt_gemma_set_frozen_dtype(m, GT_FROZEN_BF16, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_gemma_set_compute_bf16(m, true, err, sizeof err), 0);
    ck_assert(m->mats[m->embedding - m->tensors].compute_bf16);
    ck_assert_msg(gt_gemma_set_frozen_dtype(m, GT_FROZEN_FP32, err, sizeof err) == 0, "%s", err);
    ck_assert(!m->compute_bf16); /* widening turns it off */
    gt_gemma_free(m);
}
END_TEST

/* The trainer end to end (configs/tiny.yaml with LoRA on every target, bf16 storage): compute_dtype
 * bfloat16 says which kernel it runs on (or that it fell back), and the eval loss after 6 steps is
 * within 1% of compute_dtype float32's; float32 with fp32 storage is refused nothing, bfloat16
 * with it is a config error naming both keys. */
static double trained_eval(const char *compute, char *out, size_t n) {
    char args[2048];
    snprintf(args, sizeof args,
             "train configs/tiny.yaml tokenizer=tests/fixtures/gemma3-tokenizer-8k.json model.vocab_size=8192 "
             "lora.enabled=true train.full_finetune=false lora.targets=[query,value,ffw_linear] train.steps=6 "
             "schedule.warmup_steps=0 optimizer.learning_rate=0.05 model.frozen_dtype=bf16 model.compute_dtype=%s "
             "output_dir=/tmp/gt-test-compute-bf16-%d-%s",
             compute, (int)getpid(), compute);
    int rc = gt_test_run(args, out, n);
    ck_assert_msg(rc == 0, "%s: exit %d\n%s", args, rc, out);
    const char *p = strstr(out, "eval after training: loss ");
    ck_assert_msg(p != NULL, "no eval after training in:\n%s", out);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/gt-test-compute-bf16-%d-%s", (int)getpid(), compute);
    if (system(cmd)) fprintf(stderr, "%s failed\n", cmd);
    /* the loss line has 4 decimals, where the two modes can agree; ln(perplexity) carries ~7 digits */
    const char *ppl = strstr(p, "perplexity ");
    ck_assert_msg(ppl != NULL, "no perplexity in:\n%s", p);
    return log(atof(ppl + strlen("perplexity ")));
}

START_TEST(trainer_in_bf16_mode) {
    static char out[1 << 16];
    double f = trained_eval("float32", out, sizeof out);
    ck_assert_msg(!strstr(out, "model.compute_dtype bfloat16"), "%s", out);
    double b = trained_eval("bfloat16", out, sizeof out);
    if (gt_bf16_kernel_active() != GT_BF16K_OFF) {
        char want[96];
        snprintf(want, sizeof want, "model.compute_dtype bfloat16: frozen products on the %s kernel",
                 gt_bf16_kernel_name(gt_bf16_kernel_active()));
        ck_assert_msg(strstr(out, want), "%s", out);
        ck_assert(b != f);
    } else {
        ck_assert_msg(strstr(out, "fp32 arithmetic"), "%s", out);
        ck_assert(b == f);
    }
    ck_assert_msg(fabs(b - f) <= 1e-2 * f, "eval loss after training: bf16 %.5f vs fp32 %.5f", b, f);
    printf("compute_bf16 trainer (%s): eval loss after 6 LoRA steps %.5f (fp32 compute %.5f)\n",
           gt_bf16_kernel_name(gt_bf16_kernel_active()), b, f);
    ck_assert_int_ne(gt_test_run("train configs/tiny.yaml model.compute_dtype=bfloat16", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "model.compute_dtype") && strstr(out, "model.frozen_dtype: bf16"), "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("compute_bf16");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, linear_matches_fp32_on_every_kernel);
    tcase_add_test(tc, gemm_matches_exact_on_every_kernel);
    tcase_add_test(tc, fallbacks);
    tcase_add_test(tc, lm_head_matches_fp32_on_every_kernel);
    tcase_add_test(tc, lora_training_loss_follows_fp32);
    tcase_add_test(tc, trainer_in_bf16_mode);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
