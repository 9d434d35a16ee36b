/* The Gemma 3 vision encoder against KerasHub's Gemma3VisionEncoder (tests/fixtures/vision.h5,
 * tools/reference/make_vision_fixture.py): output <= 1e-4 x max|output|, every parameter's
 * gradient of sum(output * R) <= 1e-3 x its max; plus config errors and parameter counting, and
 * the encoder's LoRA adapters (model.vision_train: lora) against finite differences. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma_config.h"
#include "models/io/h5io.h"
#include "models/vision.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/vision.h5"

static float *read_ds(gt_h5 f, const char *path, int64_t want) {
    float *d = NULL;
    int nd = 0;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(n == want, "%s: %lld values, want %lld", path, (long long)n, (long long)want);
    return d;
}

static gt_vision_config fixture_config(gt_h5 f) {
    const char *k[] = {"image_size", "patch_size", "num_heads", "hidden_dim", "num_layers",
                       "intermediate_dim", "output_dim", "pool_size"};
    double v[8], eps;
    char err[256];
    for (int i = 0; i < 8; i++)
        ck_assert_msg(gt_h5_attr_f64(f, "/config", k[i], &v[i], err, sizeof err) == 0, "%s", err);
    ck_assert(gt_h5_attr_f64(f, "/config", "layer_norm_epsilon", &eps, err, sizeof err) == 0);
    return (gt_vision_config){(int64_t)v[0], (int64_t)v[1], (int64_t)v[2], (int64_t)v[3],
                              (int64_t)v[4], (int64_t)v[5], (int64_t)v[6], (int64_t)v[7], eps};
}

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

START_TEST(encoder_matches_kerashub) {
    gt_h5 f;
    char err[512], path[256];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_vision_config c = fixture_config(f);
    gt_vision *v;
    ck_assert_msg(gt_vision_create(&c, true, &v, err, sizeof err) == 0, "%s", err);
    /* every parameter is read from the file under its KerasHub path */
    int64_t total = 0;
    for (int64_t i = 0; i < v->n_params; i++) {
        gt_tensor *t = v->params[i];
        snprintf(path, sizeof path, "/weights/%s", t->name);
        float *d = read_ds(f, path, t->size);
        memcpy(t->data, d, sizeof(float) * (size_t)t->size);
        free(d);
        total += t->size;
    }
    ck_assert_int_eq(total, gt_vision_param_count(&c));
    int64_t T = gt_vision_tokens_per_image(&c), n = 3, S = c.image_size;
    float *img = read_ds(f, "/inputs/images", n * S * S * 3);
    float *want = read_ds(f, "/expected/output", n * T * c.output_dim);
    float *seed = read_ds(f, "/expected/seed", n * T * c.output_dim);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = true;
    gt_tensor *y = gt_vision_encode(&ctx, v, img, n);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    ck_assert_int_eq(y->size, n * T * c.output_dim);
    double scale = max_abs(want, y->size), worst = 0;
    for (int64_t i = 0; i < y->size; i++) worst = fmax(worst, fabs((double)y->data[i] - want[i]));
    printf("vision encoder: output max|diff| %.3g (max|out| %.3g)\n", worst, scale);
    ck_assert_msg(worst <= 1e-4 * scale, "output differs by %g (scale %g)", worst, scale);
    ck_assert_int_eq(gt_backward_seed(&ctx, y, seed), 0);
    /* The key bias shifts every score of a query by the same amount, so softmax cancels it:
     * its gradient is 0 in exact arithmetic and both sides hold rounding noise (~1e-7). Each
     * tensor is judged against max(its max, 1e-3 x the largest gradient of all). */
    float **ref = calloc((size_t)v->n_params, sizeof *ref);
    double global = 0, worst_rel = 0;
    for (int64_t i = 0; i < v->n_params; i++) {
        snprintf(path, sizeof path, "/expected/grads/%s", v->params[i]->name);
        ref[i] = read_ds(f, path, v->params[i]->size);
        global = fmax(global, max_abs(ref[i], v->params[i]->size));
    }
    for (int64_t i = 0; i < v->n_params; i++) {
        gt_tensor *t = v->params[i];
        double gs = fmax(max_abs(ref[i], t->size), 1e-3 * global), e = 0;
        for (int64_t j = 0; j < t->size; j++) e = fmax(e, fabs((double)t->grad[j] - ref[i][j]));
        ck_assert_msg(e <= 1e-3 * gs, "%s: gradient differs by %g (scale %g)", t->name, e, gs);
        worst_rel = fmax(worst_rel, e / gs);
        free(ref[i]);
    }
    free(ref);
    printf("vision encoder: worst gradient error %.3g of the tensor's max\n", worst_rel);
    gt_ctx_free(&ctx);
    free(img), free(want), free(seed);
    gt_vision_free(v);
    gt_h5_close(f);
}
END_TEST

START_TEST(config_errors_and_counts) {
    gt_vision_config c = {16, 4, 2, 8, 2, 12, 6, 2, 1e-6};
    char err[256];
    ck_assert_int_eq(gt_vision_config_check(&c, err, sizeof err), 0);
    ck_assert_int_eq(gt_vision_tokens_per_image(&c), 4);
    /* patch 8*4*3*... by hand: conv 8*48+8, pos 16*8, per layer 2*(16) + 4*(72) + 12*8+12 + 8*12+8,
     * final norm 16, soft norm 8, projection 6*8 */
    int64_t per_layer = 32 + 4 * 72 + 108 + 104;
    ck_assert_int_eq(gt_vision_param_count(&c), 392 + 128 + 2 * per_layer + 16 + 8 + 48);
    gt_vision_config bad = c;
    bad.patch_size = 5;
    ck_assert_int_eq(gt_vision_config_check(&bad, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "patch_size 5 does not divide image_size 16"));
    bad = c;
    bad.num_heads = 3;
    ck_assert_int_eq(gt_vision_config_check(&bad, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "num_heads 3"));
    bad = c;
    bad.pool_size = 0;
    gt_vision *v = (gt_vision *)1;
    ck_assert_int_eq(gt_vision_create(&bad, false, &v, err, sizeof err), -1);
    ck_assert_ptr_null(v);
    ck_assert_ptr_nonnull(strstr(err, "pool_size = 0"));
}
END_TEST

START_TEST(multimodal_presets_carry_the_encoder) {
    gt_gemma_config mm, text;
    char err[512];
    ck_assert_int_eq(gt_gemma_preset("gemma3_instruct_12b", &mm, err, sizeof err), 0);
    ck_assert_int_eq(gt_gemma_preset("gemma3_instruct_12b_text", &text, err, sizeof err), 0);
    ck_assert_int_eq(text.vision.num_layers, 0);
    ck_assert_int_eq(gt_gemma_param_count(&mm), gt_gemma_param_count(&text));
    ck_assert_int_eq(mm.vision.output_dim, 3840);
    ck_assert_int_eq(gt_vision_tokens_per_image(&mm.vision), 256);
    ck_assert_int_eq(gt_gemma_config_validate(&mm, err, sizeof err), 0);
    mm.vision.output_dim = 2560;
    ck_assert_int_eq(gt_gemma_config_validate(&mm, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "output_dim 2560 must equal hidden_dim 3840"));
    mm.vision.output_dim = 3840;
    mm.vision.patch_size = 15;
    ck_assert_int_eq(gt_gemma_config_validate(&mm, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "patch_size 15 does not divide image_size 896"));
}
END_TEST

/* sum(encode(images) * r), in double. */
static double weighted_out(gt_vision *v, const float *img, int64_t n, const float *r, bool backward) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = backward;
    gt_tensor *y = gt_vision_encode(&ctx, v, img, n);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double s = 0;
    for (int64_t i = 0; i < y->size; i++) s += (double)y->data[i] * r[i];
    if (backward) {
        gt_tensor *rt = gt_empty(&ctx, y->ndim, y->shape);
        for (int64_t i = 0; i < y->size; i++) rt->data[i] = r[i];
        gt_tensor *l = gt_sum(&ctx, gt_mul(&ctx, y, rt));
        ck_assert_int_eq(gt_backward(&ctx, l), GT_OK);
    }
    gt_ctx_free(&ctx);
    return s;
}

/* LoRA on the encoder's attention: zero B leaves the output bit-identical; the gradients of A and
 * B match central finite differences. */
START_TEST(lora_adapters) {
    gt_vision_config c = {16, 4, 2, 8, 1, 16, 8, 2, 1e-6};
    gt_vision *v;
    char err[256];
    ck_assert_msg(gt_vision_create(&c, false, &v, err, sizeof err) == 0, "%s", err);
    unsigned g = 3;
#define RND() (g = g * 1103515245u + 12345u, (float)(((g >> 8) & 0xffff) / 65536.0 - 0.5))
    for (int64_t i = 0; i < v->n_params; i++)
        if (!strstr(v->params[i]->name, "gamma"))
            for (int64_t j = 0; j < v->params[i]->size; j++) v->params[i]->data[j] = RND();
    enum { N = 2 };
    static float img[N * 16 * 16 * 3], r[N * 4 * 8];
    for (size_t i = 0; i < sizeof img / sizeof *img; i++) img[i] = 2 * RND();
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) r[i] = RND();
    double plain = weighted_out(v, img, N, r, false);
    ck_assert_msg(gt_vision_lora_create(v, 2, 4, 7, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(v->n_lora, 8);
    ck_assert_msg(gt_vision_lora_create(v, 2, 4, 7, err, sizeof err) != 0, "a second set of adapters");
    ck_assert(weighted_out(v, img, N, r, false) == plain);
    for (int64_t i = 0; i < v->n_lora; i++)
        for (int64_t j = 0; j < v->lora[i]->size; j++) v->lora[i]->data[j] += 0.5f * RND();
    for (int64_t i = 0; i < v->n_lora; i++) memset(v->lora[i]->grad, 0, sizeof(gt_real) * (size_t)v->lora[i]->size);
    weighted_out(v, img, N, r, true);
    double worst = 0, gmax = 0;
    for (int64_t i = 0; i < v->n_lora; i++)
        for (int64_t j = 0; j < v->lora[i]->size; j += 3) {
            gt_real *x = &v->lora[i]->data[j], keep = *x;
            const double h = 1e-2;
            *x = keep + (gt_real)h;
            double up = weighted_out(v, img, N, r, false);
            *x = keep - (gt_real)h;
            double down = weighted_out(v, img, N, r, false);
            *x = keep;
            double fd = (up - down) / (2 * h), an = v->lora[i]->grad[j];
            worst = fmax(worst, fabs(fd - an));
            gmax = fmax(gmax, fabs(an));
        }
#undef RND
    printf("vision LoRA: gradient vs finite differences %.2e of max %.2e\n", worst, gmax);
    ck_assert_msg(gmax > 0 && worst <= 2e-3 * gmax, "gradient off by %g (max %g)", worst, gmax);
    gt_vision_free(v);
}
END_TEST

int main(void) {
    gt_h5_process_init();
    Suite *s = suite_create("vision");
    TCase *tc = tcase_create("vision");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, encoder_matches_kerashub);
    tcase_add_test(tc, config_errors_and_counts);
    tcase_add_test(tc, multimodal_presets_carry_the_encoder);
    tcase_add_test(tc, lora_adapters);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
