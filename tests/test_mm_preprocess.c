/* Gemma 3 prompts with images against KerasHub's Gemma3CausalLMPreprocessor with the real
 * vocabulary (tests/fixtures/mm_preprocess.h5, tools/reference/make_mm_preprocess_fixture.py):
 * token ids, padding mask, labels, weights and the <img> vision mask; plus the marker count and
 * the error for a vocabulary without image markers; JSONL "images" records (paths relative to
 * the file, one per marker) and their file:line errors. Needs the real Gemma 3 270M GGUF (its
 * vocabulary) for the parity part; skips it without. */
#include <check.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/preprocess.h"
#include "models/io/h5io.h"
#include "tests/testdata.h"

#define FIX "tests/fixtures/mm_preprocess.h5"
#define S 40

static int32_t *read_i32(gt_h5 f, const char *path) {
    int32_t *d;
    int nd;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_i32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(shape[0], S);
    return d;
}

/* A string attribute of a group, read through HDF5's own API (h5io reads numbers only). */
static char *str_attr(gt_h5 f, const char *obj, const char *name) {
    hid_t a = H5Aopen_by_name((hid_t)f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0);
    hid_t t = H5Aget_type(a);
    char *s = NULL;
    ck_assert(H5Tis_variable_str(t) > 0);
    ck_assert(H5Aread(a, t, &s) >= 0);
    char *copy = strdup(s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    return copy;
}

START_TEST(matches_kerashub_with_the_real_vocabulary) {
    const char *gguf = gt_test_gemma3_270m_gguf("mm_preprocess parity");
    if (!gguf) return;
    gt_tokenizer *tok;
    char err[512];
    ck_assert_msg(gt_tok_load(gguf, &tok, err, sizeof err) == 0, "%s", err);
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(FIX, &f, err, sizeof err) == 0, "%s", err);
    gt_pp_cfg cfg = {.seq_len = S, .add_bos = true, .add_eos = true, .image_tokens = 3};
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char g[32], p[64];
        snprintf(g, sizeof g, "/case_%d", i);
        if (!gt_h5_exists(f, g)) break;
        gt_example ex = {.kind = GT_DS_PROMPT_RESPONSE};
        ex.prompt = str_attr(f, g, "prompt");
        ex.response = str_attr(f, g, "response");
        int32_t ids[S], labels[S];
        uint8_t mask[S], vision[S];
        float w[S];
        ck_assert_msg(gt_pp_example(tok, &cfg, &ex, ids, labels, mask, w, err, sizeof err) == 0, "%s", err);
        int64_t n_img = gt_pp_vision_mask(tok, ids, S, vision);
        ck_assert_int_eq(n_img, 3 * gt_pp_count_image_markers(ex.prompt));
        const char *keys[5] = {"token_ids", "padding_mask", "labels", "sample_weight", "vision_mask"};
        for (int k = 0; k < 5; k++) {
            snprintf(p, sizeof p, "%s/%s", g, keys[k]);
            int32_t *want = read_i32(f, p);
            for (int t = 0; t < S; t++) {
                int64_t got = k == 0 ? ids[t] : k == 1 ? mask[t] : k == 2 ? labels[t] : k == 3 ? (int64_t)w[t] : vision[t];
                ck_assert_msg(got == want[t], "case %d (%s) %s[%d] = %lld, KerasHub %d", i,
                              ex.prompt, keys[k], t, (long long)got, want[t]);
            }
            free(want);
        }
        free(ex.prompt);
        free(ex.response);
    }
    ck_assert_int_eq(cases, 5);
    gt_h5_close(f);
    gt_tok_free(tok);
}
END_TEST

START_TEST(markers_and_vocabulary_errors) {
    ck_assert_int_eq(gt_pp_count_image_markers("a <start_of_image> b <start_of_image>"), 2);
    ck_assert_int_eq(gt_pp_count_image_markers("<start_of_image<start_of_image>>"), 1);
    ck_assert_int_eq(gt_pp_count_image_markers("none"), 0);
    gt_tokenizer *tok;
    char err[512];
    /* Gemma 1's test vocabulary has no image markers */
    ck_assert_msg(gt_tok_load("tests/fixtures/spm/gemma_test_vocab.spm", &tok, err, sizeof err) == 0, "%s", err);
    gt_pp_cfg cfg = {.seq_len = 16, .add_bos = true, .add_eos = true, .image_tokens = 3};
    gt_example ex = {.kind = GT_DS_PROMPT_RESPONSE, .prompt = "the <start_of_image>", .response = "fox"};
    int32_t ids[16], labels[16];
    uint8_t mask[16];
    float w[16];
    ck_assert_int_eq(gt_pp_example(tok, &cfg, &ex, ids, labels, mask, w, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "no <start_of_image>, <img> or <end_of_image>"), "%s", err);
    cfg.image_tokens = 0; /* text only: the marker is text */
    ck_assert_int_eq(gt_pp_example(tok, &cfg, &ex, ids, labels, mask, w, err, sizeof err), 0);
    gt_tok_free(tok);
}
END_TEST

static char tmpdir[64];

static void write_text(const char *name, const char *text) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Opening a one-record JSONL fails with "FILE:1: " + want. */
static void expect_open_error(const char *line, const char *want) {
    char p[256], err[1024];
    write_text("bad.jsonl", line);
    snprintf(p, sizeof p, "%s/bad.jsonl", tmpdir);
    gt_dataset ds;
    ck_assert_int_eq(gt_dataset_open(p, GT_DS_AUTO, false, &ds, err, sizeof err), -1);
    char head[300];
    snprintf(head, sizeof head, "%s:1: ", p);
    ck_assert_msg(strstr(err, head) == err && strstr(err, want), "'%s' lacks '%s'", err, want);
}

START_TEST(jsonl_image_records) {
    write_text("a.png", "not really a png, but it opens");
    char sub[128];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    ck_assert_int_eq(mkdir(sub, 0777), 0);
    write_text("sub/b.png", "x");
    write_text("ok.jsonl",
               "{\"prompt\": \"<start_of_image> vs <start_of_image>\", \"response\": \"r\", "
               "\"images\": [\"a.png\", \"sub/b.png\"]}\n"
               "{\"messages\": [{\"role\": \"user\", \"content\": \"<start_of_image>?\"}, "
               "{\"role\": \"model\", \"content\": \"yes\"}], \"images\": [\"/dev/null\"]}\n"
               "{\"prompt\": \"text only\", \"response\": \"r\"}\n");
    char p[256], err[1024], want[256];
    snprintf(p, sizeof p, "%s/ok.jsonl", tmpdir);
    gt_dataset ds;
    ck_assert_msg(gt_dataset_open(p, GT_DS_AUTO, false, &ds, err, sizeof err) == 0, "%s", err);
    gt_example ex;
    ck_assert_msg(gt_dataset_read(&ds, 0, &ex, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ex.n_images, 2);
    snprintf(want, sizeof want, "%s/sub/b.png", tmpdir);
    ck_assert_str_eq(ex.images[1], want);
    gt_example_free(&ex);
    ck_assert_msg(gt_dataset_read(&ds, 1, &ex, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ex.n_images, 1);
    ck_assert_str_eq(ex.images[0], "/dev/null");
    gt_example_free(&ex);
    ck_assert_msg(gt_dataset_read(&ds, 2, &ex, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ex.n_images, 0);
    gt_example_free(&ex);
    gt_dataset_close(&ds);
    expect_open_error("{\"prompt\": \"<start_of_image>\", \"response\": \"r\", \"images\": []}\n",
                      "0 images for 1 <start_of_image> marker");
    expect_open_error("{\"prompt\": \"p\", \"response\": \"r\", \"images\": \"a.png\"}\n",
                      "\"images\" must be an array of paths");
    expect_open_error("{\"text\": \"<start_of_image>\", \"images\": [\"a.png\"]}\n",
                      "\"images\" needs a prompt or messages record");
    expect_open_error("{\"prompt\": \"<start_of_image>\", \"response\": \"r\", \"images\": [\"gone.png\"]}\n",
                      "images[0]: ");
}
END_TEST

int main(void) {
    gt_h5_process_init();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gt-mm-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    Suite *s = suite_create("mm_preprocess");
    TCase *tc = tcase_create("mm_preprocess");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_kerashub_with_the_real_vocabulary);
    tcase_add_test(tc, markers_and_vocabulary_errors);
    tcase_add_test(tc, jsonl_image_records);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 1;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
