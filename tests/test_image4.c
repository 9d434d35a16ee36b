/* Gemma 4 image preprocessing against KerasHub's Gemma4ImageConverter
 * (tests/fixtures/image4_ref.h5, tools/reference/make_image4_fixture.py), and its errors. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image4.h"
#include "models/io/h5io.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/image4_ref.h5"
#define IMG_DIR "tests/fixtures/images/"

static const char *names[] = {"grey_18x30.png", "grey_25x50.jpg", "palette_24x17.png",
                              "rgb_37x23.png",  "rgb_45x33.jpg",  "rgba_20x20.png"};

typedef struct {
    const char *name;
    gt_image4_cfg cfg;
    int stride;
} conv_case;

/* The settings make_image4_fixture.py runs. */
static conv_case cases(int i) {
    const float s = (float)(1.0 / 255.0);
    conv_case c[3] = {
        {"shrink", {4, 2, 8, {s, s, s}, {0, 0, 0}}, 1},
        {"grow", {3, 2, 30, {(float)(1 / 127.5), 0.01f, 1.0f / 64}, {-1.0f, 0.25f, -0.5f}}, 1},
        {"gemma4", gt_image4_cfg_gemma4(), 613},
    };
    return c[i];
}

/* Worst |ours - KerasHub| over the stored values of one image; -1 when the fixture lacks it. */
static double compare(gt_h5 f, const conv_case *cc, const char *name) {
    char err[512], path[256];
    snprintf(path, sizeof path, "/%s/%s/patches", cc->name, name);
    if (!gt_h5_exists(f, path)) return -1;
    const gt_image4_cfg *c = &cc->cfg;
    int64_t P = gt_image4_max_patches(c), dim = gt_image4_patch_dim(c), n_real = 0;
    float *got = malloc(sizeof(float) * (size_t)(P * dim));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)P * 2);
    char file[256];
    snprintf(file, sizeof file, IMG_DIR "%s", name);
    ck_assert_msg(gt_image4_load(file, c, got, pos, &n_real, err, sizeof err) == 0, "%s", err);

    float *ref = NULL;
    int32_t *rpos = NULL, *hw = NULL;
    int nd;
    int64_t shape[8];
    ck_assert_msg(gt_h5_read_f32(f, path, &ref, &nd, shape, err, sizeof err) == 0, "%s", err);
    int64_t nref = shape[0] * (nd > 1 ? shape[1] : 1);
    ck_assert_int_eq(nref, (P * dim + cc->stride - 1) / cc->stride);
    snprintf(path, sizeof path, "/%s/%s/pos", cc->name, name);
    ck_assert_msg(gt_h5_read_i32(f, path, &rpos, &nd, shape, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(shape[0] * shape[1], P * 2);
    for (int64_t i = 0; i < P * 2; i++)
        ck_assert_msg(pos[i] == rpos[i], "%s %s: position %lld: %d, KerasHub %d", cc->name, name,
                      (long long)i, pos[i], rpos[i]);
    snprintf(path, sizeof path, "/%s/%s/hw", cc->name, name);
    ck_assert_msg(gt_h5_read_i32(f, path, &hw, &nd, shape, err, sizeof err) == 0, "%s", err);
    int th, tw;
    gt_image img;
    ck_assert_msg(gt_image_load(file, &img, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_image4_target(c, img.height, img.width, &th, &tw, err, sizeof err), 0);
    ck_assert_msg(th == hw[0] && tw == hw[1], "%s %s: %dx%d, KerasHub %dx%d", cc->name, name, th,
                  tw, hw[0], hw[1]);
    ck_assert_int_eq(n_real, (int64_t)(th / c->patch) * (tw / c->patch));
    double worst = 0;
    for (int64_t i = 0; i < nref; i++) {
        double d = fabs((double)got[i * cc->stride] - ref[i]);
        if (!(d <= worst)) worst = d;
    }
    gt_image_free(&img);
    free(got), free(pos), free(ref), free(rpos), free(hw);
    return worst;
}

START_TEST(converter_matches_kerashub) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    int compared = 0;
    for (int k = 0; k < 3; k++) {
        conv_case cc = cases(k);
        double worst_cfg = 0;
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            double w = compare(f, &cc, names[i]);
            if (w < 0) continue;
            compared++;
            /* the issue asks for one 8-bit level (1/255); float32 rounding is all that is left */
            ck_assert_msg(w <= 1e-4, "%s %s: off by %g",
                          cc.name, names[i], w);
            if (w > worst_cfg) worst_cfg = w;
        }
        printf("image4 %s: worst |ours - KerasHub| %.3g\n", cc.name, worst_cfg);
    }
    ck_assert_int_eq(compared, 12);
    gt_h5_close(f);
}
END_TEST

START_TEST(rejects_bad_input) {
    char err[512];
    gt_image4_cfg c = gt_image4_cfg_gemma4();
    int64_t P = gt_image4_max_patches(&c);
    ck_assert_int_eq(P, 2520);
    ck_assert_int_eq(gt_image4_patch_dim(&c), 768);
    float *patches = malloc(sizeof(float) * (size_t)(P * 768));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)P * 2);
    ck_assert_int_eq(gt_image4_load(IMG_DIR "missing.png", &c, patches, pos, NULL, err, sizeof err),
                     -1);
    ck_assert_msg(strstr(err, "missing.png") != NULL, "%s", err);

    /* a 16000 x 1 strip keeps its 48-pixel minimum height and grows ~100000 wide: refused */
    int th, tw;
    ck_assert_int_eq(gt_image4_target(&c, 1, 16000, &th, &tw, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "aspect ratio") != NULL, "%s", err);
    ck_assert_int_eq(gt_image4_target(&c, 0, 10, &th, &tw, err, sizeof err), -1);
    gt_image4_cfg bad = c;
    bad.patch = 0;
    ck_assert_int_eq(gt_image4_target(&bad, 10, 10, &th, &tw, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "patch 0") != NULL, "%s", err);
    /* a tiny image grows to the smallest grid, one pooled cell */
    ck_assert_int_eq(gt_image4_target(&c, 1, 1, &th, &tw, err, sizeof err), 0);
    ck_assert_int_eq(th, 48 * 16);
    ck_assert_int_eq(tw, 48 * 16);
    free(patches), free(pos);
}
END_TEST

int main(void) {
    Suite *s = suite_create("image4");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, converter_matches_kerashub);
    tcase_add_test(tc, rejects_bad_input);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
