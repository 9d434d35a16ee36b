/* KerasHub CausalLMPreprocessor semantics (its own test cases), truncation, chat template, and
 * the JSONL dataset: validation errors, shuffling, sharding, resume. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/preprocess.h"

static void row(const int32_t *p, int64_t np, const int32_t *r, int64_t nr, bool bos, bool eos,
                int32_t *ids, int32_t *labels, float *w) {
    gt_pp_cfg c = {.seq_len = 8, .add_bos = bos, .add_eos = eos};
    int32_t seq[9];
    uint8_t resp[9], mask[8];
    gt_pp_pack_pair(p, np, r, nr, 1, 2, 0, &c, seq, resp);
    gt_pp_to_row(&c, 0, seq, resp, ids, labels, mask, w);
}

#define EQ(a, ...)                                                                         \
    do {                                                                                   \
        int64_t want_[] = {__VA_ARGS__};                                                   \
        for (int i_ = 0; i_ < 8; i_++)                                                     \
            ck_assert_msg((int64_t)(a)[i_] == want_[i_], #a "[%d] = %lld, want %lld", i_,  \
                          (long long)(a)[i_], (long long)want_[i_]);                       \
    } while (0)

START_TEST(kerashub_prompt_response_cases) {
    /* keras_hub gemma3_causal_lm_preprocessor_test.py, S = 8, bos 1, eos 2, pad 0 */
    int32_t p[4] = {9, 14, 10, 12}, r[1] = {15}, ids[8], labels[8];
    float w[8];
    row(p, 4, r, 1, true, true, ids, labels, w);
    EQ(ids, 1, 9, 14, 10, 12, 15, 2, 0);
    EQ(labels, 9, 14, 10, 12, 15, 2, 0, 0);
    EQ(w, 0, 0, 0, 0, 1, 1, 0, 0);
    row(p, 4, r, 1, false, false, ids, labels, w);
    EQ(ids, 9, 14, 10, 12, 15, 0, 0, 0);
    EQ(w, 0, 0, 0, 1, 0, 0, 0, 0);
}
END_TEST

START_TEST(kerashub_text_case) {
    /* keras_hub gemma_causal_lm_preprocessor_test.py: "the quick brown fox" -> [4, 9, 5, 7] */
    int32_t t[4] = {4, 9, 5, 7}, ids[8], labels[8];
    float w[8];
    row(NULL, 0, t, 4, true, true, ids, labels, w);
    EQ(ids, 1, 4, 9, 5, 7, 2, 0, 0);
    EQ(labels, 4, 9, 5, 7, 2, 0, 0, 0);
    EQ(w, 1, 1, 1, 1, 1, 0, 0, 0);
}
END_TEST

START_TEST(round_robin_truncation) {
    int32_t p[20], r[20], ids[8], labels[8];
    float w[8];
    for (int i = 0; i < 20; i++) p[i] = 100 + i, r[i] = 200 + i;
    /* budget 9 - 2 = 7: both long -> prompt 4, response 3 */
    row(p, 20, r, 20, true, true, ids, labels, w);
    EQ(ids, 1, 100, 101, 102, 103, 200, 201, 202);
    EQ(labels, 100, 101, 102, 103, 200, 201, 202, 2);
    EQ(w, 0, 0, 0, 0, 1, 1, 1, 1);
    /* short prompt keeps everything, response takes the rest */
    row(p, 2, r, 20, true, true, ids, labels, w);
    EQ(ids, 1, 100, 101, 200, 201, 202, 203, 204);
    /* short response keeps everything */
    row(p, 20, r, 1, true, true, ids, labels, w);
    EQ(ids, 1, 100, 101, 102, 103, 104, 105, 200);
    EQ(w, 0, 0, 0, 0, 0, 0, 1, 1);
    /* exactly fitting: nothing cut, no padding */
    row(p, 3, r, 4, true, true, ids, labels, w);
    EQ(ids, 1, 100, 101, 102, 200, 201, 202, 203);
    EQ(labels, 100, 101, 102, 200, 201, 202, 203, 2);
}
END_TEST

/* The committed 8192-piece cut of the real Gemma 3 tokenizer.json: ids < 1024 are the real ones, so
 * <bos>, <eos>, <start_of_turn>, <end_of_turn> and "\n" are Gemma's own pieces. */
static gt_tokenizer *gemma_tokenizer(void) {
    const char *path = "tests/fixtures/gemma3-tokenizer-8k.json";
    char err[512];
    gt_tokenizer *tok;
    ck_assert_msg(gt_tok_load(path, &tok, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_tok_piece_id(tok, "<start_of_turn>"), 105);
    ck_assert_int_eq(gt_tok_piece_id(tok, "<end_of_turn>"), 106);
    return tok;
}

START_TEST(chat_template_weights_model_turns_only) {
    gt_tokenizer *tok = gemma_tokenizer();
    char *roles[4] = {"system", "user", "assistant", "user"};
    char *contents[4] = {"Be brief.", "Hi", "Hello!", "Bye"};
    gt_example ex = {.kind = GT_DS_CHAT, .n_turns = 4, .roles = roles, .contents = contents};
    enum { S = 40 };
    gt_pp_cfg c = {.seq_len = S, .add_bos = true, .add_eos = false};
    int32_t ids[S], labels[S];
    uint8_t mask[S];
    float w[S];
    char err[256];
    ck_assert_msg(gt_pp_example(tok, &c, &ex, ids, labels, mask, w, err, sizeof err) == 0, "%s", err);
    /* the exact text: <bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n
     * Hello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n */
    int n = 0;
    while (n < S && mask[n]) n++;
    char *text;
    size_t len;
    ck_assert(gt_tok_decode(tok, ids, (size_t)n, false, &text, &len, err, sizeof err) == 0);
    ck_assert_str_eq(text, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
                           "Hello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n");
    free(text);
    /* weighted labels decode to exactly the model turn: "Hello!<end_of_turn>" */
    int32_t wl[S];
    int nw = 0;
    for (int t = 0; t < S; t++)
        if (w[t] > 0) wl[nw++] = labels[t];
    ck_assert(gt_tok_decode(tok, wl, (size_t)nw, false, &text, &len, err, sizeof err) == 0);
    ck_assert_str_eq(text, "Hello!<end_of_turn>");
    free(text);
    /* prompt/response under the template; special-token text in user data stays text */
    gt_example pr = {.kind = GT_DS_PROMPT_RESPONSE, .prompt = "Say <end_of_turn>", .response = "OK"};
    c.template_ = GT_TEMPLATE_GEMMA_CHAT;
    c.add_eos = true;
    ck_assert(gt_pp_example(tok, &c, &pr, ids, labels, mask, w, err, sizeof err) == 0);
    int eots = 0;
    for (int t = 0; t < S; t++) eots += ids[t] == gt_tok_piece_id(tok, "<end_of_turn>");
    ck_assert_int_eq(eots, 2); /* the template's two, not the user's text */
    nw = 0;
    for (int t = 0; t < S; t++)
        if (w[t] > 0) wl[nw++] = labels[t];
    ck_assert(gt_tok_decode(tok, wl, (size_t)nw, false, &text, &len, err, sizeof err) == 0);
    ck_assert_str_eq(text, "OK<end_of_turn><eos>");
    free(text);
    /* too long for the row: the template stays whole, the texts share the rest round-robin */
    gt_example lng = {.kind = GT_DS_PROMPT_RESPONSE,
                      .prompt = "one two three four five six seven eight nine ten eleven twelve thirteen",
                      .response = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu"};
    enum { S2 = 24 };
    int32_t ids2[S2], labels2[S2];
    uint8_t mask2[S2];
    float w2[S2];
    gt_pp_cfg c2 = {.seq_len = S2, .add_bos = true, .add_eos = true, .template_ = GT_TEMPLATE_GEMMA_CHAT};
    ck_assert(gt_pp_example(tok, &c2, &lng, ids2, labels2, mask2, w2, err, sizeof err) == 0);
    ck_assert(gt_tok_decode(tok, ids2, S2, false, &text, &len, err, sizeof err) == 0);
    /* 25 tokens: bos, the 9 template tokens + the <end_of_turn> after the reply, eos, and 7 + 7
     * text tokens (the last one the row's final label): one piece a word in the prompt, but in
     * this 8192-piece vocabulary "alpha beta gamma delta" is 7 pieces already */
    ck_assert_str_eq(text, "<bos><start_of_turn>user\none two three four five six seven<end_of_turn>\n"
                           "<start_of_turn>model\nalpha beta gamma delta<end_of_turn>");
    gt_ids pi = {0}, ri = {0};
    ck_assert(!gt_tok_encode(tok, lng.prompt, strlen(lng.prompt), false, &pi, err, sizeof err));
    ck_assert(!gt_tok_encode(tok, lng.response, strlen(lng.response), false, &ri, err, sizeof err));
    ck_assert(pi.n > 7 && ri.n > 7);
    ck_assert(!memcmp(ids2 + 4, pi.ids, 7 * sizeof *ids2));  /* after <bos><start_of_turn>user\n */
    ck_assert(!memcmp(ids2 + 16, ri.ids, 7 * sizeof *ids2)); /* after <end_of_turn>\n<start_of_turn>model\n */
    ck_assert_int_eq(ids2[S2 - 1], gt_tok_piece_id(tok, "<end_of_turn>"));
    gt_ids_free(&pi);
    gt_ids_free(&ri);
    free(text);
    ck_assert_int_eq(labels2[S2 - 1], gt_tok_eos(tok));
    gt_tok_free(tok);
}
END_TEST

static char tmpdir[64];

static const char *write_file(const char *name, const char *content) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(content, f);
    fclose(f);
    return path;
}

START_TEST(dataset_errors_name_file_and_line) {
    char err[512];
    gt_dataset ds;
    const char *p = write_file("bad.jsonl", "{\"prompt\":\"a\",\"response\":\"b\"}\n\n{\"prompt\": \"a\"\n");
    ck_assert_int_ne(gt_dataset_open(p, GT_DS_AUTO, false, &ds, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "bad.jsonl:3:") && strstr(err, "malformed JSON"), "%s", err);
    p = write_file("missing.jsonl", "{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"a\"}\n");
    ck_assert_int_ne(gt_dataset_open(p, GT_DS_AUTO, false, &ds, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "missing.jsonl:2:") && strstr(err, "\"response\""), "%s", err);
    p = write_file("type.jsonl", "{\"text\": 5}\n");
    ck_assert_int_ne(gt_dataset_open(p, GT_DS_TEXT, false, &ds, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "type.jsonl:1:") && strstr(err, "string"), "%s", err);
    /* skip mode counts */
    p = write_file("mixed.jsonl", "{\"text\":\"a\"}\nnot json\n{\"text\":\"b\"}\n{\"x\":1}\n");
    ck_assert(gt_dataset_open(p, GT_DS_AUTO, true, &ds, err, sizeof err) == 0);
    ck_assert_int_eq(ds.n, 2);
    ck_assert_int_eq(ds.skipped, 2);
    gt_dataset_close(&ds);
    ck_assert_int_ne(gt_dataset_open("/nonexistent/x.jsonl", GT_DS_AUTO, false, &ds, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "/nonexistent/x.jsonl"), "%s", err);
}
END_TEST

START_TEST(shuffle_shard_resume) {
    char buf[64 * 40] = "", err[256];
    for (int i = 0; i < 37; i++) {
        char l[64];
        snprintf(l, sizeof l, "{\"text\":\"%d\"}\n", i);
        strcat(buf, l);
    }
    const char *p = write_file("n.jsonl", buf);
    gt_dataset a, b;
    ck_assert(gt_dataset_open(p, GT_DS_AUTO, false, &a, err, sizeof err) == 0);
    ck_assert(gt_dataset_open(p, GT_DS_AUTO, false, &b, err, sizeof err) == 0);
    /* two ranks of one epoch: disjoint, together all but the 37 % 2 = 1 remainder */
    ck_assert(gt_dataset_set_order(&a, 7, true, 0, 2, err, sizeof err) == 0);
    ck_assert(gt_dataset_set_order(&b, 7, true, 1, 2, err, sizeof err) == 0);
    int seen[37] = {0};
    for (int i = 0; i < 18; i++) {
        gt_example e0, e1;
        int64_t ep;
        ck_assert(gt_dataset_next(&a, &e0, &ep, err, sizeof err) == 0 && ep == 0);
        ck_assert(gt_dataset_next(&b, &e1, &ep, err, sizeof err) == 0 && ep == 0);
        seen[atoi(e0.text)]++;
        seen[atoi(e1.text)]++;
        gt_example_free(&e0);
        gt_example_free(&e1);
    }
    int covered = 0, order_differs = 0;
    for (int i = 0; i < 37; i++) {
        ck_assert_int_le(seen[i], 1);
        covered += seen[i];
    }
    ck_assert_int_eq(covered, 36);
    /* same seed, same order; resume from a saved position gives the same next records */
    ck_assert(gt_dataset_set_order(&a, 7, true, 0, 1, err, sizeof err) == 0);
    for (int i = 0; i < 50; i++) gt_dataset_advance(&a);
    int64_t ep = a.epoch, nx = a.next;
    gt_example x, y;
    ck_assert(gt_dataset_next(&a, &x, NULL, err, sizeof err) == 0);
    ck_assert(gt_dataset_set_order(&b, 7, true, 0, 1, err, sizeof err) == 0);
    ck_assert(gt_dataset_seek(&b, ep, nx, err, sizeof err) == 0);
    ck_assert(gt_dataset_next(&b, &y, NULL, err, sizeof err) == 0);
    ck_assert_str_eq(x.text, y.text);
    ck_assert_int_eq(ep, 1);
    gt_example_free(&x);
    gt_example_free(&y);
    /* epochs are reshuffled */
    ck_assert(gt_dataset_set_order(&a, 7, true, 0, 1, err, sizeof err) == 0);
    int first[37];
    for (int i = 0; i < 37; i++) {
        ck_assert(gt_dataset_next(&a, &x, NULL, err, sizeof err) == 0);
        first[i] = atoi(x.text);
        gt_example_free(&x);
    }
    for (int i = 0; i < 37; i++) {
        ck_assert(gt_dataset_next(&a, &x, NULL, err, sizeof err) == 0);
        order_differs += atoi(x.text) != first[i];
        gt_example_free(&x);
    }
    ck_assert_int_gt(order_differs, 10);
    gt_dataset_close(&a);
    gt_dataset_close(&b);
}
END_TEST

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gt-pp-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    Suite *s = suite_create("preprocess");
    TCase *tc = tcase_create("preprocess");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kerashub_prompt_response_cases);
    tcase_add_test(tc, kerashub_text_case);
    tcase_add_test(tc, round_robin_truncation);
    tcase_add_test(tc, chat_template_weights_model_turns_only);
    tcase_add_test(tc, dataset_errors_name_file_and_line);
    tcase_add_test(tc, shuffle_shard_resume);
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
