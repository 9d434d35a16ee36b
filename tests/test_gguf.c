/* GGUF reader: metadata of every type, dequantisation of every supported ggml type against the
 * gguf package's own dequantize (tools/reference/make_gguf_fixtures.py), and corrupt files. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gguf.h"
#include "models/h5io.h"

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    ck_assert(fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

START_TEST(metadata_of_every_type) {
    gt_gguf *g;
    char err[512];
    ck_assert_msg(gt_gguf_open("tests/fixtures/tiny.gguf", &g, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_gguf_version(g), 3);
    int64_t v;
    double f;
    struct { const char *k; int64_t want; } ints[] = {
        {"t.u8", 200}, {"t.i8", -100}, {"t.u16", 60000}, {"t.i16", -30000},
        {"t.u32", 4000000000LL}, {"t.i32", -2000000000LL}, {"t.u64", 1LL << 40},
        {"t.i64", -(1LL << 40)}, {"t.bool", 1}, {"gemma3.block_count", 2}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        ck_assert_msg(gt_gguf_get_int(g, ints[i].k, &v, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(v, ints[i].want);
    }
    ck_assert(gt_gguf_get_float(g, "t.f32", &f, err, sizeof err) == 0 && f == 0.15625);
    ck_assert(gt_gguf_get_float(g, "t.f64", &f, err, sizeof err) == 0 && f == 2.718281828459045);
    const char *s;
    uint64_t len;
    ck_assert(gt_gguf_get_str(g, "t.str", &s, &len, err, sizeof err) == 0);
    ck_assert(len == strlen("héllo ▁world") && !memcmp(s, "héllo ▁world", len));
    int32_t *ia;
    float *fa;
    char **sa;
    uint64_t n;
    ck_assert(gt_gguf_get_i32s(g, "t.arr_i32", &ia, &n, err, sizeof err) == 0);
    ck_assert(n == 3 && ia[0] == 1 && ia[1] == -2 && ia[2] == 3);
    ck_assert(gt_gguf_get_f32s(g, "t.arr_f32", &fa, &n, err, sizeof err) == 0);
    ck_assert(n == 2 && fa[0] == 0.5f && fa[1] == -1.25f);
    ck_assert(gt_gguf_get_strings(g, "t.arr_str", &sa, &n, err, sizeof err) == 0);
    ck_assert(n == 3 && !strcmp(sa[0], "<bos>") && !strcmp(sa[1], "") && !strcmp(sa[2], "▁the"));
    free(ia);
    free(fa);
    gt_gguf_free_strings(sa, n);
    /* wrong type and missing keys name the key */
    ck_assert_int_ne(gt_gguf_get_int(g, "t.str", &v, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "t.str") && strstr(err, "integer"), "%s", err);
    ck_assert_int_ne(gt_gguf_get_str(g, "no.such.key", &s, &len, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "no.such.key") && strstr(err, "missing"), "%s", err);
    gt_gguf_close(g);
}
END_TEST

START_TEST(dequantisation_matches_the_gguf_package) {
    gt_gguf *g;
    gt_h5 h;
    char err[512];
    ck_assert(gt_gguf_open("tests/fixtures/tiny.gguf", &g, err, sizeof err) == 0);
    ck_assert(gt_h5_open_read("tests/fixtures/tiny_gguf_expected.h5", &h, err, sizeof err) == 0);
    const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const gt_gguf_tensor *t = gt_gguf_find_tensor(g, names[i]);
        ck_assert_msg(t != NULL, "%s missing", names[i]);
        ck_assert_int_eq(t->ndim, 2);
        ck_assert(t->dims[0] == 512 && t->dims[1] == 2);
        float *got = malloc(sizeof(float) * (size_t)t->n_elements), *want;
        ck_assert_msg(gt_gguf_dequant(g, t, got, err, sizeof err) == 0, "%s", err);
        int nd;
        int64_t shape[8];
        char path[32];
        snprintf(path, sizeof path, "/%s", names[i]);
        ck_assert(gt_h5_read_f32(h, path, &want, &nd, shape, err, sizeof err) == 0);
        for (int64_t j = 0; j < t->n_elements; j++)
            ck_assert_msg(got[j] == want[j] || fabsf(got[j] - want[j]) <= 1e-6f * fabsf(want[j]),
                          "%s[%lld]: %.9g vs %.9g", names[i], (long long)j, got[j], want[j]);
        free(got);
        free(want);
    }
    gt_h5_close(h);
    gt_gguf_close(g);
}
END_TEST

START_TEST(truncated_and_corrupt_files_are_refused) {
    size_t len;
    uint8_t *b = slurp("tests/fixtures/tiny.gguf", &len);
    char err[512];
    gt_gguf *g;
    int refused = 0;
    for (size_t cut = 0; cut < len; cut += (cut < 2048 ? 7 : 389)) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b, cut);
        if (gt_gguf_open_buffer(copy, cut, "cut.gguf", &g, err, sizeof err) == 0) {
            gt_gguf_close(g); /* only possible if no tensor data is needed: never for this file */
            free(copy);
            ck_abort_msg("a file cut at %zu of %zu bytes was accepted", cut, len);
        }
        ck_assert_msg(strstr(err, "cut.gguf"), "message lacks the file name: %s", err);
        refused++;
        free(copy);
    }
    ck_assert_int_gt(refused, 100);
    /* byte flips in the header: refused or parsed, never a crash (ASan watches) */
    for (size_t pos = 0; pos < 1200 && pos < len; pos += 3) {
        uint8_t *copy = malloc(len);
        memcpy(copy, b, len);
        copy[pos] ^= 0xA5;
        if (gt_gguf_open_buffer(copy, len, "flip.gguf", &g, err, sizeof err) == 0) {
            for (int64_t i = 0; i < gt_gguf_n_tensors(g); i++) {
                const gt_gguf_tensor *t = gt_gguf_tensor_at(g, i);
                float *out = malloc(sizeof(float) * (size_t)t->n_elements);
                if (out) gt_gguf_dequant(g, t, out, err, sizeof err);
                free(out);
            }
            gt_gguf_close(g);
        }
        free(copy);
    }
    memcpy(b, "GGUX", 4);
    ck_assert_int_ne(gt_gguf_open_buffer(b, len, "bad.gguf", &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "magic"), "%s", err);
    memcpy(b, "GGUF", 4);
    b[4] = 9;
    ck_assert_int_ne(gt_gguf_open_buffer(b, len, "bad.gguf", &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "version 9"), "%s", err);
    free(b);
    ck_assert_int_ne(gt_gguf_open("tests/fixtures/no-such.gguf", &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "no-such.gguf"), "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, metadata_of_every_type);
    tcase_add_test(tc, dequantisation_matches_the_gguf_package);
    tcase_add_test(tc, truncated_and_corrupt_files_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
