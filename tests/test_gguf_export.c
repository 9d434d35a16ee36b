/* GGUF export (models/io/gguf_writer.h, models/io/gguf_export.h):
 *   - tensor bytes equal to the gguf package's for F32, F16, BF16 and Q8_0
 *     (tests/fixtures/gguf_export/ref.gguf, tools/reference/make_gguf_export_fixture.py);
 *   - a model exported and read back (gemma_gguf.h) gives the logits of the model with its
 *     matrices rounded to the storage type in memory (F32: the model's own), within the 1 + w
 *     norm rounding;
 *   - the vocabulary round-trips (ids of texts with whitespace runs);
 *   - a LoRA GGUF's A and B rebuild the merged kernels;
 *   - models llama.cpp cannot express are refused.
 * llama.cpp itself reading these files is checked by tools/reference/check_gguf_export.py. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/gemma_params.h"
#include "models/io/gemma_gguf.h"
#include "models/io/gguf.h"
#include "models/io/gguf_export.h"
#include "models/io/gguf_writer.h"
#include "models/io/keras_preset.h"
#include "train/loader.h"
#include "util/half.h"
#include "tests/cli_run.h"

static char g_tmp[256];
static char g_err[1024];

START_TEST(tensor_bytes_equal_the_gguf_package) {
    float x[4 * 96];
    for (int i = 0; i < 4 * 96; i++) x[i] = (float)(3 * sin(0.37 * i));
    for (int i = 32; i < 64; i++) x[96 + i] = 0.0f;
    for (int i = 0; i < 96; i++) x[2 * 96 + i] *= 30000.0f;
    gt_ggufw *w = gt_ggufw_new();
    int64_t shape[2] = {4, 96};
    static const struct { const char *name; uint32_t type; } t[] = {
        {"f32", GT_GGML_F32}, {"f16", GT_GGML_F16}, {"bf16", GT_GGML_BF16}, {"q8_0", GT_GGML_Q8_0}};
    for (int k = 0; k < 4; k++) ck_assert(gt_ggufw_tensor(w, t[k].name, x, 2, shape, t[k].type, g_err, sizeof g_err) == 0);
    ck_assert(gt_ggufw_str(w, "general.architecture", "gemma3") == 0);
    ck_assert(gt_ggufw_str(w, "general.architecture", "again") != 0); /* a key once */
    char path[300];
    snprintf(path, sizeof path, "%s/bytes.gguf", g_tmp);
    ck_assert_msg(gt_ggufw_write(w, path, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_ggufw_free(w);
    gt_gguf *ours, *ref;
    ck_assert_msg(gt_gguf_open(path, &ours, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_msg(gt_gguf_open("tests/fixtures/gguf_export/ref.gguf", &ref, g_err, sizeof g_err) == 0, "%s", g_err);
    for (int k = 0; k < 4; k++) {
        const gt_gguf_tensor *a = gt_gguf_find_tensor(ours, t[k].name), *b = gt_gguf_find_tensor(ref, t[k].name);
        ck_assert(a && b);
        ck_assert_uint_eq(a->type, b->type);
        ck_assert_int_eq(a->dims[0], 96);
        ck_assert_int_eq(a->dims[1], 4);
        ck_assert_uint_eq(a->n_bytes, b->n_bytes);
        ck_assert_msg(!memcmp(a->data, b->data, a->n_bytes), "%s: bytes differ from the gguf package's", t[k].name);
    }
    gt_gguf_close(ours);
    gt_gguf_close(ref);
}
END_TEST

static float *logits(const gt_gemma *m, const int32_t *ids, int64_t T) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b = {.batch = 1, .seq = T, .token_ids = ids};
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    ck_assert_msg(z, "%s", ctx.err);
    float *out = malloc((size_t)z->size * sizeof *out);
    memcpy(out, z->data, (size_t)z->size * sizeof *out);
    gt_ctx_free(&ctx);
    return out;
}

/* max |a - b| / max |a| */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double mx = 0, d = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(a[i])), d = fmax(d, fabs((double)a[i] - b[i]));
    return d / mx;
}

START_TEST(model_round_trips_through_gguf) {
    static const char *const presets[] = {"gemma1", "gemma2", "gemma3"};
    static const struct { uint32_t type; const char *name; double tol; } types[] = {
        {GT_GGML_F32, "f32", 1e-5}, {GT_GGML_F16, "f16", 5e-3}, {GT_GGML_BF16, "bf16", 5e-2}, {GT_GGML_Q8_0, "q8_0", 1e-1}};
    char dir[128];
    snprintf(dir, sizeof dir, "tests/fixtures/presets/%s", presets[_i]);
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert_msg(gt_keras_preset_load(dir, false, &m, &tok, g_err, sizeof g_err) == 0, "%s", g_err);
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = (int32_t)((i * 13 + 2) % m->cfg.vocab_size);
    float *want = logits(m, ids, 12);
    for (int k = 0; k < 4; k++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s_%s.gguf", g_tmp, presets[_i], types[k].name);
        ck_assert_msg(gt_gguf_export_model(m, tok, path, types[k].type, "test", g_err, sizeof g_err) == 0, "%s", g_err);
        gt_gemma *back;
        gt_tokenizer *tback;
        ck_assert_msg(gt_load_model(path, false, &back, &tback, g_err, sizeof g_err) == 0, "%s", g_err);
        ck_assert_int_eq(back->cfg.generation, m->cfg.generation);
        ck_assert_int_eq(back->cfg.num_layers, m->cfg.num_layers);
        ck_assert_int_eq(back->cfg.sliding_window, m->cfg.sliding_window);
        ck_assert(back->cfg.attn_logit_softcap == (double)(float)m->cfg.attn_logit_softcap);
        float *got = logits(back, ids, 12);
        double e = rel_diff(want, got, 12 * m->cfg.vocab_size);
        if (types[k].type != GT_GGML_F32) {
            /* exactly the model with its matrices rounded to that type (vectors stay F32) */
            gt_gemma *r;
            ck_assert(gt_keras_preset_load(dir, false, &r, NULL, g_err, sizeof g_err) == 0);
            for (int p = 0; p < r->n_params; p++) {
                gt_tensor *t = r->params[p].t;
                if (t->ndim < 2) continue;
                if (types[k].type == GT_GGML_Q8_0 && t->shape[1] % 32 == 0) {
                    gt_ggml_q8_0_round(t->data, t->data, t->size);
                    continue;
                }
                for (int64_t j = 0; j < t->size; j++)
                    t->data[j] = types[k].type != GT_GGML_BF16 ? gt_f16_to_f32(gt_f32_to_f16(t->data[j]))
                                                              : gt_bf16_to_f32(gt_f32_to_bf16(t->data[j]));
            }
            float *rounded = logits(r, ids, 12);
            double er = rel_diff(rounded, got, 12 * m->cfg.vocab_size);
            ck_assert_msg(er <= 1e-5, "%s %s: %g from the rounded model", presets[_i], types[k].name, er);
            free(rounded);
            gt_gemma_free(r);
        }
        printf("gguf %s %s: logits after export and import within %.2e x max\n", presets[_i], types[k].name, e);
        ck_assert_msg(e <= types[k].tol, "%s %s: %g", presets[_i], types[k].name, e);
        ck_assert_int_eq(gt_tok_vocab_size(tback), gt_tok_vocab_size(tok));
        for (int32_t i = 0; i < gt_tok_vocab_size(tok); i++) {
            ck_assert_str_eq(gt_tok_piece(tback, i), gt_tok_piece(tok, i));
            ck_assert_int_eq(gt_tok_piece_type(tback, i), gt_tok_piece_type(tok, i));
        }
        ck_assert_int_eq(gt_tok_bos(tback), gt_tok_bos(tok));
        ck_assert_int_eq(gt_tok_eos(tback), gt_tok_eos(tok));
        free(got);
        gt_tok_free(tback);
        gt_gemma_free(back);
    }
    free(want);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* B @ A of each pair in the LoRA GGUF, added to the base, equals the merged model. */
START_TEST(lora_gguf_rebuilds_the_merged_kernels) {
    gt_gemma *m, *merged;
    ck_assert_msg(gt_keras_preset_load("tests/fixtures/presets/gemma3", false, &m, NULL, g_err, sizeof g_err) == 0,
                  "%s", g_err);
    ck_assert(gt_keras_preset_load("tests/fixtures/presets/gemma3", false, &merged, NULL, g_err, sizeof g_err) == 0);
    gt_lora *l;
    ck_assert(gt_lora_create_for(&m->cfg, 2, 6.0, (1u << GT_LORA_NTARGETS) - 1, 5, &l, g_err, sizeof g_err) == 0);
    for (int64_t i = 0; i < l->n_values; i++) l->data[i] = (gt_real)(0.03 * sin(0.11 * (double)i + 0.5));
    ck_assert(gt_gemma_merge_lora(merged, l, g_err, sizeof g_err) == 0);
    char path[300];
    snprintf(path, sizeof path, "%s/lora.gguf", g_tmp);
    ck_assert_msg(gt_gguf_export_lora(l, &m->cfg, path, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(path, &g, g_err, sizeof g_err) == 0, "%s", g_err);
    const char *s;
    uint64_t n;
    ck_assert(gt_gguf_get_str(g, "general.type", &s, &n, g_err, sizeof g_err) == 0 && !strncmp(s, "adapter", n));
    int pairs = 0;
    for (int p = 0; p < m->n_params; p++) {
        char name[160], an[170], bn[170];
        if (gt_gemma_param_gguf_name(m->params[p].row, m->params[p].layer, name, sizeof name)) continue;
        snprintf(an, sizeof an, "%s.lora_a", name);
        snprintf(bn, sizeof bn, "%s.lora_b", name);
        const gt_gguf_tensor *A = gt_gguf_find_tensor(g, an), *B = gt_gguf_find_tensor(g, bn);
        if (!A && !B) continue;
        ck_assert(A && B);
        gt_tensor *w = m->params[p].t, *wm = gt_gemma_find(merged, m->params[p].name);
        int64_t R = A->dims[1], in = A->dims[0], out = B->dims[1];
        ck_assert_int_eq(B->dims[0], R);
        ck_assert_int_eq(out * in, w->size);
        const float *a = (const float *)A->data, *b = (const float *)B->data;
        for (int64_t o = 0; o < out; o++)
            for (int64_t x = 0; x < in; x++) {
                double d = 0;
                for (int64_t q = 0; q < R; q++) d += (double)b[o * R + q] * a[q * in + x];
                ck_assert_msg(fabs(w->data[o * in + x] + d - wm->data[o * in + x]) < 1e-5, "%s [%lld, %lld]", name,
                              (long long)o, (long long)x);
            }
        pairs++;
    }
    ck_assert_int_eq(pairs, 7 * (int)m->cfg.num_layers);
    gt_gguf_close(g);
    gt_lora_free(l);
    gt_gemma_free(m);
    gt_gemma_free(merged);
}
END_TEST

START_TEST(inexpressible_models_are_refused) {
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert(gt_keras_preset_load("tests/fixtures/presets/gemma3", false, &m, &tok, g_err, sizeof g_err) == 0);
    char path[300];
    snprintf(path, sizeof path, "%s/bad.gguf", g_tmp);
    m->cfg.sliding_pattern = 4;
    ck_assert(gt_gguf_export_model(m, tok, path, GT_GGML_F32, NULL, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "sliding pattern"), "%s", g_err);
    m->cfg.sliding_pattern = 6;
    m->cfg.generation = 5; /* Gemma 4: test_gguf_gemma4_export */
    ck_assert(gt_gguf_export_model(m, tok, path, GT_GGML_F32, NULL, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "generation"), "%s", g_err);
    struct stat st;
    ck_assert(stat(path, &st) != 0); /* nothing written */
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_gguf_export_XXXXXX");
    if (!mkdtemp(g_tmp)) return perror("mkdtemp"), EXIT_FAILURE;
    Suite *s = suite_create("gguf_export");
    TCase *tc = tcase_create("gguf_export");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tensor_bytes_equal_the_gguf_package);
    tcase_add_loop_test(tc, model_round_trips_through_gguf, 0, 3);
    tcase_add_test(tc, lora_gguf_rebuilds_the_merged_kernels);
    tcase_add_test(tc, inexpressible_models_are_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    gt_test_rmtree(g_tmp);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
