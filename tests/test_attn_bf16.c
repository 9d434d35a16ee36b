/* Attention's bf16 products (gt_attn_cfg.bf16, model.compute_dtype bfloat16) against fp32, on
 * every bf16 kernel this CPU has, over shapes that exercise the padding: sequence lengths that are
 * not multiples of 16, 32 or the query block, packed segments with padding keys, a sliding
 * window, a soft-cap, grouped kv heads and a non-causal call (one query block).
 *
 * Tolerances (stated here, checked below):
 *  - forward, against a double computation on the same rounded operands (q scale, k, the fp32
 *    probabilities, v rounded to bf16): |err| <= 1e-3 * max |out| (the kernel products are exact
 *    products of what they are given; the rest is fp32 accumulation and the fp32 softmax, whose
 *    probabilities may round to the neighbouring bf16 value, 2^-8 of themselves);
 *  - forward and the three input gradients against the fp32 path: max |err| <= 1.5e-2 * max |ref|
 *    (backward reads the probabilities saved rounded to bf16 where there is no soft-cap, so the
 *    softmax backward sees the rounded P too: the Frobenius errors of dq and dk grew ~0.3e-3;
 *    it also keeps q, k and v as bf16 copies instead of the fp32 inputs, which its products
 *    round the same way, so that changes nothing here)
 *    and the relative Frobenius error <= 8e-3 (bf16 keeps 8 bits; observed values are printed);
 *    a block sliced wrongly moves entries by O(1) of the maximum;
 *  - without a kernel, or with H not a multiple of 32, the bf16 flag is the fp32 path exactly. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/bf16_gemm.h"
#include "autograd/ops_attn.h"
#include "util/half.h"
#include "tests/check_main.h"

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

static double rb(double v) { return gt_bf16_to_f32(gt_f32_to_bf16((float)v)); }

typedef struct {
    int64_t B, T, N, K, H, Hv, window;
    double softcap;
    bool causal, segments;
} shape;

typedef struct {
    gt_ctx c;
    gt_tensor *q, *k, *v, *o;
} run;

/* One forward + backward with the given flag; the inputs and the seed come from seed. */
static void attn_run(run *r, const shape *sh, const gt_attn_cfg *base, bool bf16, const gt_real *qd,
                     const gt_real *kd, const gt_real *vd, const gt_real *g) {
    gt_ctx_init(&r->c, 0);
    int64_t qs[4] = {sh->B, sh->T, sh->N, sh->H}, ks[4] = {sh->B, sh->T, sh->K, sh->H},
            vs[4] = {sh->B, sh->T, sh->K, sh->Hv};
    r->q = gt_from_data(&r->c, qd, 4, qs, true);
    r->k = gt_from_data(&r->c, kd, 4, ks, true);
    r->v = gt_from_data(&r->c, vd, 4, vs, true);
    gt_attn_cfg cfg = *base;
    cfg.bf16 = bf16;
    r->o = gt_attention(&r->c, r->q, r->k, r->v, &cfg);
    ck_assert_msg(r->o != NULL, "%s", r->c.err);
    ck_assert_int_eq(gt_backward_seed(&r->c, r->o, g), GT_OK);
}

/* max |a - b| / max |b| and ||a - b|| / ||b|| over n values */
static void errs(const gt_real *a, const gt_real *b, int64_t n, double *mx, double *fro) {
    double m = 0, bm = 0, d2 = 0, b2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        m = fmax(m, fabs(d));
        bm = fmax(bm, fabs((double)b[i]));
        d2 += d * d;
        b2 += (double)b[i] * b[i];
    }
    *mx = bm > 0 ? m / bm : m;
    *fro = b2 > 0 ? sqrt(d2 / b2) : sqrt(d2);
}

/* The forward in double on the operands the bf16 path rounds: scores from rounded (scale q) and
 * k, the softmax over the visible keys, then rounded probabilities times rounded v. Worst
 * |out - this| over max |out|. */
static double exact_forward(const shape *sh, const gt_attn_cfg *cfg, const gt_real *qd, const gt_real *kd,
                            const gt_real *vd, const gt_real *out) {
    int64_t T = sh->T, N = sh->N, K = sh->K, H = sh->H, Hv = sh->Hv, G = N / K;
    double worst = 0, omax = 0;
    double *s = malloc(sizeof(double) * (size_t)T), *p = malloc(sizeof(double) * (size_t)T);
    for (int64_t i = 0; i < sh->B * T * N * Hv; i++) omax = fmax(omax, fabs(out[i]));
    for (int64_t b = 0; b < sh->B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < T; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    bool vis = (!sh->causal || j <= i) && (!sh->window || i - j < sh->window) &&
                               (!cfg->key_mask || cfg->key_mask[b * T + j]) &&
                               (!cfg->segment_ids || cfg->segment_ids[b * T + j] == cfg->segment_ids[b * T + i]);
                    s[j] = -INFINITY;
                    if (!vis) continue;
                    double d = 0;
                    for (int64_t h = 0; h < H; h++)
                        d += rb(cfg->scale * qd[((b * T + i) * N + n) * H + h]) * rb(kd[((b * T + j) * K + n / G) * H + h]);
                    if (sh->softcap > 0) d = sh->softcap * tanh(d / sh->softcap);
                    s[j] = d;
                    mx = fmax(mx, d);
                }
                for (int64_t j = 0; j < T; j++) sum += p[j] = isinf(s[j]) ? 0 : exp(s[j] - mx);
                for (int64_t h = 0; h < Hv; h++) {
                    double o = 0;
                    for (int64_t j = 0; j < T && sum > 0; j++)
                        o += rb((float)(p[j] / sum)) * rb(vd[((b * T + j) * K + n / G) * Hv + h]);
                    worst = fmax(worst, fabs(o - out[((b * T + i) * N + n) * Hv + h]));
                }
            }
    free(s);
    free(p);
    return omax > 0 ? worst / omax : worst;
}

static void check_shape(gt_bf16_kernel kern, const shape *sh) {
    ck_assert_int_eq(gt_bf16_kernel_force((int)kern), kern);
    int64_t T = sh->T, nq = sh->B * T * sh->N * sh->H, nk = sh->B * T * sh->K * sh->H,
            nv = sh->B * T * sh->K * sh->Hv, no = sh->B * T * sh->N * sh->Hv;
    uint64_t seed = 5 + (uint64_t)(T * sh->H);
    gt_real *qd = malloc(sizeof(gt_real) * (size_t)nq), *kd = malloc(sizeof(gt_real) * (size_t)nk),
            *vd = malloc(sizeof(gt_real) * (size_t)nv), *g = malloc(sizeof(gt_real) * (size_t)no);
    for (int64_t i = 0; i < nq; i++) qd[i] = (gt_real)(2 * rnd(&seed));
    for (int64_t i = 0; i < nk; i++) kd[i] = (gt_real)(2 * rnd(&seed));
    for (int64_t i = 0; i < nv; i++) vd[i] = (gt_real)rnd(&seed);
    for (int64_t i = 0; i < no; i++) g[i] = (gt_real)rnd(&seed);
    uint8_t *mask = malloc((size_t)(sh->B * T));
    int32_t *seg = malloc(sizeof(int32_t) * (size_t)(sh->B * T));
    for (int64_t b = 0; b < sh->B; b++)
        for (int64_t j = 0; j < T; j++) { /* examples of 37 + 11 b tokens, the last 9 keys padding */
            seg[b * T + j] = (int32_t)(j / (37 + 11 * b));
            mask[b * T + j] = j < T - 9;
        }
    gt_attn_cfg cfg = {.scale = 1.0 / sqrt((double)sh->H), .softcap = sh->softcap, .window = sh->window,
                       .causal = sh->causal, .key_mask = sh->segments ? mask : NULL,
                       .segment_ids = sh->segments ? seg : NULL};
    run f, b;
    attn_run(&f, sh, &cfg, false, qd, kd, vd, g);
    attn_run(&b, sh, &cfg, true, qd, kd, vd, g);
    bool used = kern != GT_BF16K_OFF && sh->H % 32 == 0 && sh->Hv % 32 == 0;
    const char *nm[4] = {"out", "dq", "dk", "dv"};
    const gt_real *bx[4] = {b.o->data, b.q->grad, b.k->grad, b.v->grad}, *fx[4] = {f.o->data, f.q->grad, f.k->grad, f.v->grad};
    int64_t n[4] = {no, nq, nk, nv};
    printf("attn bf16 %s B %lld T %lld N %lld K %lld H %lld Hv %lld window %lld softcap %g causal %d segments %d:",
           gt_bf16_kernel_name(kern), (long long)sh->B, (long long)T, (long long)sh->N, (long long)sh->K,
           (long long)sh->H, (long long)sh->Hv, (long long)sh->window, sh->softcap, sh->causal, sh->segments);
    for (int t = 0; t < 4; t++) {
        double mx, fro;
        errs(bx[t], fx[t], n[t], &mx, &fro);
        printf(" %s %.1e/%.1e", nm[t], mx, fro);
        if (!used) {
            ck_assert_msg(mx == 0, "%s: the fp32 path expected, %g off", nm[t], mx);
            continue;
        }
        ck_assert_msg(mx <= 1.5e-2 && fro <= 8e-3, "%s: max %g, Frobenius %g of fp32", nm[t], mx, fro);
        ck_assert_msg(fro > 0, "%s: no rounding seen: was the bf16 path taken?", nm[t]);
    }
    if (used) {
        double ex = exact_forward(sh, &cfg, qd, kd, vd, b.o->data);
        printf(" exact %.1e", ex);
        ck_assert_msg(ex <= 1e-3, "forward %g of max |out| from the product of the rounded operands", ex);
    }
    printf("\n");
    gt_ctx_free(&f.c);
    gt_ctx_free(&b.c);
    free(qd), free(kd), free(vd), free(g), free(mask), free(seg);
    gt_bf16_kernel_force(-1);
}

static const shape shapes[] = {
    {1, 96, 4, 1, 64, 64, 0, 0, true, false},   /* GQA 4:1, T not a multiple of the 64-row block */
    {2, 130, 2, 2, 32, 64, 0, 0, true, true},   /* packed segments + padding keys, Hv != H */
    {1, 200, 4, 2, 64, 32, 40, 0, true, false}, /* sliding window */
    {1, 77, 2, 1, 64, 64, 0, 30, true, true},   /* soft-cap */
    {1, 48, 2, 1, 32, 32, 0, 0, false, false},  /* non-causal: one block of every row */
    {1, 50, 2, 1, 48, 48, 0, 0, true, false},   /* H % 32 != 0: stays fp32 */
};

START_TEST(attention_bf16_matches_fp32_on_every_kernel) {
    gt_bf16_kernel ks[3] = {GT_BF16K_OFF, GT_BF16K_AVX512, GT_BF16K_AMX};
    for (int i = 0; i < 3; i++) {
        if (gt_bf16_kernel_force((int)ks[i]) != ks[i]) continue; /* not on this CPU */
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++) check_shape(ks[i], &shapes[j]);
    }
    gt_bf16_kernel_force(-1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("attn_bf16");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, attention_bf16_matches_fp32_on_every_kernel);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
