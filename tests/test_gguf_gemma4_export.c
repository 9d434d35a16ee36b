/* Gemma 4 in llama.cpp GGUF beyond the dense import (test_gguf_gemma4.c): the MoE block and the
 * export.
 * - tests/fixtures/gguf/gemma4_moe.gguf (tools/reference/make_gguf_gemma4_moe_fixture.py: the tiny
 *   transformers MoE model of tests/fixtures/hf/gemma4_moe as llama.cpp's converter writes it,
 *   fused ffn_gate_up_exps; llama.cpp runs it) gives transformers' logits within 1e-4 x max.
 * - Export (dense with PLE / kv sharing / k = v, and MoE) re-imported: every weight and config
 *   field bit-equal, and every tensor byte-equal to the converter-style fixture it came from.
 * - Gemma 4 LoRA GGUF: B @ A of every pair plus the base equals the merged kernel.
 * - Models llama.cpp cannot run as we do are refused, naming the field, and nothing is written. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logits.h"
#include "models/gemma_fields.h"
#include "models/gemma_params.h"
#include "models/lora.h"
#include "models/io/gemma4_gguf.h"
#include "models/io/gemma_gguf.h"
#include "models/io/gguf_export.h"
#include "models/io/gguf_writer.h"
#include "train/loader.h"

#define MOE "tests/fixtures/gguf/gemma4_moe"
#define DENSE "tests/fixtures/gguf/gemma4_tiny"

static char g_tmp[64], g_err[1024];

static gt_gemma *open_model(const char *path) {
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(path, &g, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_gemma *m;
    ck_assert_msg(gt_gemma_from_gguf(g, false, &m, g_err, sizeof g_err) == 0, "%s: %s", path, g_err);
    gt_gguf_close(g);
    return m;
}

START_TEST(moe_config_and_logits) {
    gt_gemma *m = open_model(MOE ".gguf");
    ck_assert(m->cfg.moe);
    ck_assert_int_eq(m->cfg.num_experts, 6);
    ck_assert_int_eq(m->cfg.expert_dim, 12);
    ck_assert_int_eq(m->cfg.experts_per_token, 2);
    ck_assert_int_eq(m->cfg.num_global_kv_heads, 1);
    double rel = gt_test_compare_ref(m, MOE "_ref.h5", 1.0);
    printf("gemma4 MoE GGUF vs transformers: max|diff| / max|logit| = %.2e\n", rel);
    ck_assert_msg(rel <= 1e-4, "relative error %.3g", rel);
    gt_gemma_free(m);
}
END_TEST

static void same_files_tensors(const char *a, const char *b) {
    gt_gguf *ga, *gb;
    ck_assert_msg(gt_gguf_open(a, &ga, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_msg(gt_gguf_open(b, &gb, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_int_eq(gt_gguf_n_tensors(ga), gt_gguf_n_tensors(gb));
    for (int64_t i = 0; i < gt_gguf_n_tensors(ga); i++) {
        const gt_gguf_tensor *x = gt_gguf_tensor_at(ga, i), *y = gt_gguf_find_tensor(gb, x->name);
        ck_assert_msg(y != NULL, "%s missing from the export", x->name);
        ck_assert_msg(x->ndim == y->ndim && x->type == y->type && x->n_bytes == y->n_bytes, "%s", x->name);
        ck_assert_msg(!memcmp(x->dims, y->dims, sizeof(int64_t) * (size_t)x->ndim), "%s dims", x->name);
        ck_assert_msg(!memcmp(x->data, y->data, x->n_bytes), "%s bytes differ", x->name);
    }
    gt_gguf_close(ga);
    gt_gguf_close(gb);
}

/* fixture -> our export -> our import: the same model, and the converter's tensors byte for byte */
START_TEST(export_round_trip) {
    const char *fix = _i ? MOE ".gguf" : DENSE ".gguf";
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert_msg(gt_load_model(fix, false, &m, &tok, g_err, sizeof g_err) == 0, "%s", g_err);
    char path[128];
    snprintf(path, sizeof path, "%s/rt%d.gguf", g_tmp, _i);
    ck_assert_msg(gt_gguf_export_model(m, tok, path, GT_GGML_F32, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_gemma *r = open_model(path);
    size_t nf;
    const gt_gemma_field *f = gt_gemma_fields(&nf);
    for (size_t k = 0; k < nf; k++)
        ck_assert_msg(gt_gemma_field_get(&m->cfg, &f[k]) == gt_gemma_field_get(&r->cfg, &f[k]), "%s: %g vs %g", f[k].name,
                      gt_gemma_field_get(&m->cfg, &f[k]), gt_gemma_field_get(&r->cfg, &f[k]));
    ck_assert_int_eq(m->cfg.vocab_size, r->cfg.vocab_size);
    ck_assert_int_eq(m->n_params, r->n_params);
    for (int k = 0; k < m->n_params; k++) {
        ck_assert_str_eq(m->params[k].name, r->params[k].name);
        ck_assert_msg(!memcmp(m->params[k].t->data, r->params[k].t->data, sizeof(float) * (size_t)m->params[k].t->size),
                      "%s differs", m->params[k].name);
    }
    same_files_tensors(fix, path);
    gt_gemma_free(r);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* Gemma 4 LoRA GGUF: per adapted kernel (none on kv-shared layers' k, v or k = v layers' v), B @ A
 * added to the base equals the merged model's kernel; architecture gemma4. */
START_TEST(lora_gguf_rebuilds_the_merged_kernels) {
    gt_gemma *m = open_model(DENSE ".gguf"), *merged = open_model(DENSE ".gguf");
    gt_lora *l;
    ck_assert(gt_lora_create_for(&m->cfg, 2, 6.0, (1u << GT_LORA_NTARGETS) - 1, 5, &l, g_err, sizeof g_err) == 0);
    for (int64_t i = 0; i < l->n_values; i++) l->data[i] = (gt_real)(0.03 * sin(0.11 * (double)i + 0.5));
    ck_assert(gt_gemma_merge_lora(merged, l, g_err, sizeof g_err) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/lora.gguf", g_tmp);
    ck_assert_msg(gt_gguf_export_lora(l, &m->cfg, path, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(path, &g, g_err, sizeof g_err) == 0, "%s", g_err);
    const char *s;
    uint64_t n;
    ck_assert(gt_gguf_get_str(g, "general.architecture", &s, &n, g_err, sizeof g_err) == 0 && !strncmp(s, "gemma4", n));
    int pairs = 0, adapters = 0;
    for (int64_t i = 0; i < l->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) adapters += gt_lora_get(l, i, (gt_lora_target)t) != NULL;
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
    ck_assert_int_eq(pairs, adapters);
    ck_assert_int_lt(adapters, 7 * (int)m->cfg.num_layers); /* some kernels are absent */
    gt_gguf_close(g);
    gt_lora_free(l);
    gt_gemma_free(m);
    gt_gemma_free(merged);
}
END_TEST

/* what llama.cpp's gemma4 graph would compute differently is refused by name, with no file left */
START_TEST(inexpressible_refused) {
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert_msg(gt_load_model(DENSE ".gguf", false, &m, &tok, g_err, sizeof g_err) == 0, "%s", g_err);
    char path[128];
    snprintf(path, sizeof path, "%s/bad.gguf", g_tmp);
    m->cfg.num_kv_shared_layers = 2; /* 9 layers of pattern 3: layer 6 (local) would be the last with k, v */
    ck_assert(gt_gguf_export_model(m, tok, path, GT_GGML_F32, NULL, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "num_kv_shared_layers"), "%s", g_err);
    m->cfg.num_kv_shared_layers = 3;
    m->cfg.attn_logit_softcap = 50;
    ck_assert(gt_gguf_export_model(m, tok, path, GT_GGML_F32, NULL, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "attention soft-cap"), "%s", g_err);
    m->cfg.attn_logit_softcap = 0;
    m->cfg.rope_global_scale = 8;
    ck_assert(gt_gguf_export_model(m, tok, path, GT_GGML_F32, NULL, g_err, sizeof g_err) != 0);
    ck_assert_msg(strstr(g_err, "RoPE scaling"), "%s", g_err);
    struct stat st;
    ck_assert(stat(path, &st) != 0);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* every Gemma 4 preset (E2B, E4B with kv sharing; 31B; 26B-A4B with MoE) is exportable */
START_TEST(presets_expressible) {
    const char *names[] = {"gemma4_2b", "gemma4_4b", "gemma4_31b", "gemma4_26b_a4b", "gemma4_instruct_26b_a4b"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        gt_gemma_config c;
        ck_assert_msg(gt_gemma_preset(names[i], &c, g_err, sizeof g_err) == 0, "%s", g_err);
        ck_assert_msg(gt_gemma4_gguf_check(&c, g_err, sizeof g_err) == 0, "%s: %s", names[i], g_err);
    }
}
END_TEST

/* an MoE file whose expert bank disagrees with expert_count names the tensor */
START_TEST(moe_bad_expert_count_named) {
    FILE *f = fopen(MOE ".gguf", "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t buf[1 << 19];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert(n > 0 && n < sizeof buf);
    const char *key = "gemma4.expert_count";
    uint8_t *k = memmem(buf, n, key, strlen(key));
    ck_assert_ptr_nonnull(k);
    uint8_t *at = k + strlen(key) + 4; /* after the value type; unaligned */
    uint32_t v;
    memcpy(&v, at, 4);
    ck_assert_int_eq(v, 6);
    v = 7;
    memcpy(at, &v, 4);
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open_buffer(buf, n, "bad.gguf", &g, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_gemma_config c;
    ck_assert_int_ne(gt_gemma_config_from_gguf(g, &c, g_err, sizeof g_err), 0);
    ck_assert_msg(strstr(g_err, "blk.0.ffn_gate_up_exps.weight") && strstr(g_err, "expert_count"), "%s", g_err);
    gt_gguf_close(g);
}
END_TEST

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_g4gguf_XXXXXX");
    if (!mkdtemp(g_tmp)) return perror("mkdtemp"), EXIT_FAILURE;
    Suite *s = suite_create("gguf_gemma4_export");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, moe_config_and_logits);
    tcase_add_loop_test(tc, export_round_trip, 0, 2);
    tcase_add_test(tc, lora_gguf_rebuilds_the_merged_kernels);
    tcase_add_test(tc, inexpressible_refused);
    tcase_add_test(tc, presets_expressible);
    tcase_add_test(tc, moe_bad_expert_count_named);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_tmp);
    return failed ? 1 : 0;
}
