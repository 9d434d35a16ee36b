/* Gemma 4's vision tower read from a Hugging Face directory (models/io/hf_vision4.h) against
 * transformers' Gemma4VisionModel + embed_vision on the same patches
 * (tests/fixtures/hf/gemma4_vision, tools/reference/make_hf_vision4_fixture.py), and the errors
 * for a directory without a vision tower and an unsupported config. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/io/hf_vision4.h"
#include "tests/h5fixture.h"
#include "tests/check_main.h"

#define DIR_ "tests/fixtures/hf/gemma4_vision"

START_TEST(matches_transformers) {
    char err[512];
    gt_vision4 m;
    ck_assert_msg(!gt_hf_vision4_load(DIR_, &m, err, sizeof err), "%s", err);
    ck_assert_int_eq(m.cfg.num_kv_heads, 1);
    ck_assert(m.cfg.clipped);
    ck_assert(m.cfg.rope_base == 100.0);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(DIR_ "/expected.h5", &f, err, sizeof err), "%s", err);
    int64_t n = 4, P = 36;
    float *pix = gt_fix_f32(f, "/inputs/pixels", n * P * 48);
    int32_t *pos = gt_fix_i32(f, "/inputs/positions");
    float *want = gt_fix_f32(f, "/expected/output", 14 * 32);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 22);
    gt_tensor *y = gt_vision4_encode(&ctx, &m, pix, pos, n, P);
    ck_assert_msg(y, "%s", ctx.err);
    ck_assert_int_eq(y->shape[1], 4);
    /* HF drops the pooled cells without real patches: image 3 keeps its first two */
    const int keep[4] = {4, 4, 4, 2};
    double worst = 0, mx = 0;
    int row = 0;
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < keep[i]; c++, row++)
            for (int d = 0; d < 32; d++) {
                double r = want[row * 32 + d], o = y->data[(i * 4 + c) * 32 + d];
                mx = fmax(mx, fabs(r));
                worst = fmax(worst, fabs(o - r));
            }
    printf("HF vision tower: max |ours - transformers| = %.3g x max (max %.3g)\n", worst / mx, mx);
    ck_assert_msg(worst <= 1e-4 * mx, "differs by %.3g (max %.3g)", worst, mx);
    /* the tight clip matters: widening it moves the output */
    gt_tensor *clip = gt_vision4_param(&m, "block_0.gate.clip");
    ck_assert(clip && fabs(clip->data[3] - 0.9) < 1e-6);
    clip->data[2] = -65504, clip->data[3] = 65504;
    float *y1 = malloc(sizeof(float) * (size_t)y->size); /* y lives in the arena reset below */
    for (int64_t i = 0; i < y->size; i++) y1[i] = (float)y->data[i];
    gt_ctx_reset(&ctx);
    gt_tensor *y2 = gt_vision4_encode(&ctx, &m, pix, pos, n, P);
    ck_assert_msg(y2, "%s", ctx.err);
    double moved = 0;
    for (int64_t i = 0; i < y2->size; i++) moved = fmax(moved, fabs(y2->data[i] - y1[i]));
    ck_assert_msg(moved > 1e-3 * mx, "the clip changed nothing (%g)", moved);
    free(pix), free(pos), free(want), free(y1);
    gt_ctx_free(&ctx);
    gt_h5_close(f);
    gt_vision4_free(&m);
}
END_TEST

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

START_TEST(refuses_what_it_cannot_read) {
    char err[512], dir[] = "/tmp/gt_hfv4_XXXXXX", p[600];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/config.json", dir);
    gt_vision4_config c;
    write_file(p, "{\"text_config\": {\"hidden_size\": 32}}");
    ck_assert_int_eq(gt_hf_vision4_config(dir, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "no vision_config"), "%s", err);
    write_file(p, "{\"text_config\": {\"hidden_size\": 32}, \"vision_config\": {\"standardize\": true}}");
    ck_assert_int_eq(gt_hf_vision4_config(dir, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "vision_config.standardize"), "%s", err);
    write_file(p, "{\"text_config\": {\"hidden_size\": 32}, \"vision_config\": {\"head_dim\": \"8\"}}");
    ck_assert_int_eq(gt_hf_vision4_config(dir, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "vision_config.head_dim must be an integer"), "%s", err);
    /* a config without weights beside it: the safetensors reader names the directory */
    write_file(p, "{\"text_config\": {\"hidden_size\": 32}, \"vision_config\": {\"hidden_size\": 16, "
                  "\"intermediate_size\": 24, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                  "\"head_dim\": 8}}");
    gt_vision4 m;
    ck_assert_int_eq(gt_hf_vision4_load(dir, &m, err, sizeof err), -1);
    ck_assert_msg(strstr(err, dir), "%s", err);
    unlink(p);
    rmdir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("hf_vision4");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_transformers);
    tcase_add_test(tc, refuses_what_it_cannot_read);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
