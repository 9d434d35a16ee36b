/* data.template gemma4_chat against KerasHub's Gemma4CausalLMPreprocessor: the rows of
 * tests/fixtures/gemma4_chat/{pr,chat}.jsonl must equal expected.h5 token for token (ids, labels,
 * padding mask, weights), made by tools/reference/make_gemma4_chat_fixture.py with the test
 * tokenizer tests/fixtures/spm/gemma4_chat_vocab.spm (Gemma 4's special tokens at Gemma's ids). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "models/io/h5io.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/gemma4_chat/"
#define SPM "tests/fixtures/spm/gemma4_chat_vocab.spm"

/* Every example of file under cfg against group grp of expected.h5. */
static void compare(const char *file, const char *grp, const gt_pp_cfg *cfg0) {
    char err[512], path[128];
    gt_tokenizer *tok = NULL;
    ck_assert_msg(gt_tok_load(SPM, &tok, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_tok_piece_id(tok, "<|turn>"), 105);
    ck_assert_int_eq(gt_tok_piece_id(tok, "<turn|>"), 106);
    gt_h5 h;
    ck_assert_msg(gt_h5_open_read(FIX "expected.h5", &h, err, sizeof err) == 0, "%s", err);
    double sd;
    ck_assert(gt_h5_attr_f64(h, "/", "sequence_length", &sd, err, sizeof err) == 0);
    int64_t S = (int64_t)sd, shape[8];
    int nd;
    int32_t *want_ids, *want_mask, *want_labels;
    float *want_w;
    snprintf(path, sizeof path, "/%s/token_ids", grp);
    ck_assert_msg(gt_h5_read_i32(h, path, &want_ids, &nd, shape, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "/%s/padding_mask", grp);
    ck_assert(gt_h5_read_i32(h, path, &want_mask, &nd, shape, err, sizeof err) == 0);
    snprintf(path, sizeof path, "/%s/labels", grp);
    ck_assert(gt_h5_read_i32(h, path, &want_labels, &nd, shape, err, sizeof err) == 0);
    snprintf(path, sizeof path, "/%s/sample_weight", grp);
    ck_assert(gt_h5_read_f32(h, path, &want_w, &nd, shape, err, sizeof err) == 0);
    gt_h5_close(h);
    gt_pp_cfg cfg = *cfg0;
    cfg.seq_len = S;
    gt_dataset ds;
    ck_assert_msg(gt_dataset_open(file, GT_DS_AUTO, false, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, shape[0]);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)S), *labels = malloc(sizeof(int32_t) * (size_t)S);
    uint8_t *mask = malloc((size_t)S);
    gt_real *w = malloc(sizeof(gt_real) * (size_t)S);
    for (int64_t i = 0; i < ds.n; i++) {
        gt_example ex;
        ck_assert(gt_dataset_read(&ds, i, &ex, err, sizeof err) == 0);
        ck_assert_msg(gt_pp_example(tok, &cfg, &ex, ids, labels, mask, w, err, sizeof err) == 0, "%s", err);
        for (int64_t t = 0; t < S; t++) {
            int64_t k = i * S + t;
            ck_assert_msg(ids[t] == want_ids[k], "%s example %lld: token %lld is %d, KerasHub %d", grp, (long long)i,
                          (long long)t, ids[t], want_ids[k]);
            ck_assert_msg(labels[t] == want_labels[k], "%s %lld: label %lld", grp, (long long)i, (long long)t);
            ck_assert_msg(mask[t] == want_mask[k], "%s %lld: mask %lld", grp, (long long)i, (long long)t);
            ck_assert_msg((float)w[t] == want_w[k], "%s example %lld: weight %lld is %g, KerasHub %g", grp, (long long)i,
                          (long long)t, (double)w[t], (double)want_w[k]);
        }
        gt_example_free(&ex);
    }
    gt_dataset_close(&ds);
    free(ids), free(labels), free(mask), free(w);
    free(want_ids), free(want_mask), free(want_labels), free(want_w);
    gt_tok_free(tok);
}

START_TEST(prompt_response_matches_kerashub) {
    gt_pp_cfg c = {.add_bos = true, .add_eos = true, .template_ = GT_TEMPLATE_GEMMA4_CHAT};
    compare(FIX "pr.jsonl", "pr", &c);
    /* auto on a Gemma 4 model is the same template */
    c.template_ = GT_TEMPLATE_AUTO;
    c.chat_default = GT_TEMPLATE_GEMMA4_CHAT;
    compare(FIX "pr.jsonl", "pr", &c);
}
END_TEST

START_TEST(messages_match_kerashub) {
    /* chat records need no template key: the model generation picks the markers */
    gt_pp_cfg c = {.add_bos = true, .add_eos = true, .template_ = GT_TEMPLATE_NONE,
                   .chat_default = GT_TEMPLATE_GEMMA4_CHAT};
    compare(FIX "chat.jsonl", "chat", &c);
    c.template_ = GT_TEMPLATE_GEMMA4_CHAT;
    c.chat_default = GT_TEMPLATE_GEMMA_CHAT;
    compare(FIX "chat.jsonl", "chat", &c);
}
END_TEST

START_TEST(missing_markers_named) {
    /* a Gemma 1-3 style vocabulary has no <|turn>: one clear error, not silent plain text */
    char err[512];
    gt_tokenizer *tok = NULL;
    ck_assert(gt_tok_load("tests/fixtures/spm/gemma3_test_vocab.spm", &tok, err, sizeof err) == 0);
    gt_example ex = {.kind = GT_DS_PROMPT_RESPONSE, .prompt = "the", .response = "fox"};
    gt_pp_cfg c = {.seq_len = 16, .add_bos = true, .add_eos = true, .template_ = GT_TEMPLATE_GEMMA4_CHAT};
    int32_t ids[16], labels[16];
    uint8_t mask[16];
    gt_real w[16];
    ck_assert_int_ne(gt_pp_example(tok, &c, &ex, ids, labels, mask, w, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "gemma4_chat") && strstr(err, "<|turn>"), "%s", err);
    gt_tok_free(tok);
}
END_TEST

START_TEST(system_is_its_own_turn) {
    /* Gemma 4 writes system as a turn of its own, not inside the first user turn */
    char err[512];
    gt_tokenizer *tok = NULL;
    ck_assert(gt_tok_load(SPM, &tok, err, sizeof err) == 0);
    const char *roles[] = {"system", "user", "assistant"}, *contents[] = {"Be brief.", "Hi", "Hello!"};
    gt_example ex = {.kind = GT_DS_CHAT, .n_turns = 3, .roles = (char **)roles, .contents = (char **)contents};
    enum { S = 40 };
    gt_pp_cfg c = {.seq_len = S, .add_bos = true, .add_eos = true, .template_ = GT_TEMPLATE_GEMMA4_CHAT};
    int32_t ids[S], labels[S];
    uint8_t mask[S];
    gt_real w[S];
    ck_assert_msg(gt_pp_example(tok, &c, &ex, ids, labels, mask, w, err, sizeof err) == 0, "%s", err);
    int n = 0;
    while (n < S && mask[n]) n++;
    char *text;
    size_t len;
    ck_assert(gt_tok_decode(tok, ids, (size_t)n, false, &text, &len, err, sizeof err) == 0);
    ck_assert_str_eq(text, "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\nHello!<turn|><eos>");
    free(text);
    gt_tok_free(tok);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_chat");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, prompt_response_matches_kerashub);
    tcase_add_test(tc, messages_match_kerashub);
    tcase_add_test(tc, missing_markers_named);
    tcase_add_test(tc, system_is_its_own_turn);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
