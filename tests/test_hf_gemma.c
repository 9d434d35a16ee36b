/* Hugging Face import/export (models/io/safetensors.h, models/io/hf_gemma.h) against transformers
 * fixtures (tools/reference/make_hf_fixtures.py):
 *   - import: tiny Gemma 1/2/3 (and Gemma 3 multimodal's text part) saved by save_pretrained,
 *     our logits vs transformers' (fp32, eager);
 *   - export -> import in C is bit-identical (F32) or exactly the BF16 rounding (BF16);
 *   - export: models made here from a seed, written by gt_hf_gemma_save, loaded by transformers
 *     (fixture export_<name>_ref.h5), logits compared; the exported tokenizer's ids likewise;
 *   - the safetensors reader's dtype conversions and the writer's bytes vs the official library;
 *   - malformed files, configs and checkpoints: one clear error, no crash (run under ASan).
 * GT_HF_EXPORT_TO=dir keeps the exports there (input for make_hf_fixtures.py --check-export). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "models/io/h5io.h"
#include "tests/logits.h"
#include "models/io/hf_gemma.h"
#include "models/io/safetensors.h"
#include "util/half.h"
#include "tests/cli_run.h"

#define FIX "tests/fixtures/hf"

static char g_tmp[256];
static char g_err[1024];

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_tmp, name); }

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f, "cannot write %s", path);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    ck_assert(p && fread(p, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* ---------------------------------------------------------------- import */

static void check_import(const char *name, int gen, int64_t pattern, bool qhdn) {
    char dir[256], ref[256];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    snprintf(ref, sizeof ref, FIX "/%s_ref.h5", name);
    gt_gemma *m;
    ck_assert_msg(gt_hf_gemma_load(dir, false, &m, g_err, sizeof g_err) == 0, "%s: %s", name, g_err);
    ck_assert_int_eq(m->cfg.generation, gen);
    ck_assert_int_eq(m->cfg.sliding_pattern, pattern);
    ck_assert_int_eq(m->cfg.query_head_dim_normalize, qhdn);
    double e = gt_test_compare_ref(m, ref, 1);
    printf("import %-10s logits err %.2e x max|logit|\n", name, e);
    ck_assert_msg(e <= 1e-4, "%s: logits error %.3g x max", name, e);
    gt_gemma_free(m);
}

START_TEST(import_gemma1) { check_import("gemma1", 1, 0, true); }
END_TEST
START_TEST(import_gemma2_sharded) { check_import("gemma2", 2, 2, false); }
END_TEST
START_TEST(import_gemma3) {
    check_import("gemma3", 3, 3, true);
    gt_gemma_config c;
    ck_assert_int_eq(gt_hf_gemma_config(FIX "/gemma3", &c, NULL, 0, g_err, sizeof g_err), 0);
    ck_assert(c.rope_global_base == 100000.0 && c.rope_local_base == 10000.0);
    ck_assert(c.rope_global_scale == 2.0 && c.rope_local_scale == 1.0);
    ck_assert_int_eq(c.sliding_window, 4);
}
END_TEST
START_TEST(import_gemma3_multimodal_text) { check_import("gemma3_mm", 3, 3, true); }
END_TEST

/* The same multimodal checkpoint under the newer prefix (model.language_model., vision tower
 * under model.), and a Gemma 1 checkpoint that stores lm_head as a copy of the embedding. */
static void rename_weights(const char *src, const char *dst, const char *from, const char *to, const char *vision,
                           const char *copy_to_head) {
    gt_st *st;
    ck_assert_msg(gt_st_open(src, &st, g_err, sizeof g_err) == 0, "%s", g_err);
    int64_t n = gt_st_n_tensors(st);
    gt_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    char (*names)[160] = calloc((size_t)n + 1, sizeof *names);
    float **bufs = calloc((size_t)n + 1, sizeof *bufs);
    int k = 0;
    for (int64_t i = 0; i < n; i++, k++) {
        const gt_st_tensor *t = gt_st_tensor_at(st, i);
        size_t fl = strlen(from);
        if (!strncmp(t->name, from, fl)) snprintf(names[k], sizeof names[k], "%s%s", to, t->name + fl);
        else if (vision && strncmp(t->name, "lm_head", 7)) snprintf(names[k], sizeof names[k], "%s%s", vision, t->name);
        else snprintf(names[k], sizeof names[k], "%s", t->name);
        bufs[k] = malloc((size_t)(t->n_elements + 1) * sizeof(float));
        ck_assert(gt_st_read_f32(t, bufs[k], g_err, sizeof g_err) == 0);
        e[k] = (gt_st_entry){.name = names[k], .data = bufs[k], .ndim = t->ndim};
        for (int d = 0; d < t->ndim; d++) e[k].shape[d] = t->shape[d];
        if (copy_to_head && !strcmp(t->name, copy_to_head)) {
            k++;
            e[k] = e[k - 1];
            e[k].name = "lm_head.weight";
        }
    }
    ck_assert_msg(gt_st_write(dst, e, (size_t)k, GT_ST_F32, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    for (int i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(names);
    free(e);
    gt_st_close(st);
}

START_TEST(import_variants) {
    char dir[300], p[400], cmd[1000];
    tmp_path(dir, sizeof dir, "mm_new_prefix");
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp " FIX "/gemma3_mm/config.json %s/", dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    /* language_model.model.X -> model.language_model.X; vision_tower.* -> model.vision_tower.* */
    rename_weights(FIX "/gemma3_mm/model.safetensors", p, "language_model.model.", "model.language_model.", "model.",
                   NULL);
    gt_gemma *m;
    ck_assert_msg(gt_hf_gemma_load(dir, false, &m, g_err, sizeof g_err) == 0, "%s", g_err);
    double e = gt_test_compare_ref(m, FIX "/gemma3_mm_ref.h5", 1);
    ck_assert_msg(e <= 1e-4, "new prefix: %.3g", e);
    gt_gemma_free(m);

    tmp_path(dir, sizeof dir, "g1_head");
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp " FIX "/gemma1/config.json %s/", dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    rename_weights(FIX "/gemma1/model.safetensors", p, "model.", "model.", NULL, "model.embed_tokens.weight");
    ck_assert_msg(gt_hf_gemma_load(dir, true, &m, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_ptr_nonnull(m->grad);
    e = gt_test_compare_ref(m, FIX "/gemma1_ref.h5", 1);
    ck_assert_msg(e <= 1e-4, "lm_head copy: %.3g", e);
    gt_gemma_free(m);
}
END_TEST

/* ---------------------------------------------------------------- round trip */

static void roundtrip(const char *name) {
    char dir[256], out[256];
    snprintf(dir, sizeof dir, FIX "/%s", name);
    gt_gemma *a, *b, *c;
    ck_assert_msg(gt_hf_gemma_load(dir, false, &a, g_err, sizeof g_err) == 0, "%s", g_err);
    snprintf(out, sizeof out, "%s/rt_%s", g_tmp, name);
    ck_assert_msg(gt_hf_gemma_save(a, out, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_msg(gt_hf_gemma_load(out, false, &b, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_int_eq(a->n_values, b->n_values);
    ck_assert_msg(!memcmp(a->data, b->data, (size_t)a->n_values * sizeof(float)), "%s: F32 round trip differs", name);
    /* the config survives (the name records the class) */
    gt_gemma_config ca = a->cfg, cb = b->cfg;
    memset(ca.name, 0, sizeof ca.name);
    memset(cb.name, 0, sizeof cb.name);
    ck_assert_msg(!memcmp(&ca, &cb, sizeof ca), "%s: config changed in the round trip", name);
    /* saving again over the same directory gives the same bytes */
    char w1[300], w2[300];
    snprintf(w1, sizeof w1, "%s/model.safetensors", out);
    size_t n1, n2;
    uint8_t *b1 = read_file(w1, &n1);
    ck_assert_msg(gt_hf_gemma_save(b, out, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    uint8_t *b2 = read_file(w1, &n2);
    ck_assert(n1 == n2 && !memcmp(b1, b2, n1));
    free(b1);
    free(b2);
    /* BF16: exactly the rounded values */
    snprintf(out, sizeof out, "%s/rt16_%s", g_tmp, name);
    gt_hf_save_opts o = {.bf16 = true};
    ck_assert_msg(gt_hf_gemma_save(a, out, &o, g_err, sizeof g_err) == 0, "%s", g_err);
    snprintf(w2, sizeof w2, "%s/model.safetensors", out);
    struct stat s16, s32;
    ck_assert(stat(w1, &s32) == 0 && stat(w2, &s16) == 0 && s16.st_size < s32.st_size * 6 / 10);
    ck_assert_msg(gt_hf_gemma_load(out, false, &c, g_err, sizeof g_err) == 0, "%s", g_err);
    for (int64_t i = 0; i < a->n_values; i++)
        ck_assert_msg(c->data[i] == gt_bf16_to_f32(gt_f32_to_bf16(a->data[i])), "%s: bf16 value %lld",
                      name, (long long)i);
    gt_gemma_free(a);
    gt_gemma_free(b);
    gt_gemma_free(c);
}

START_TEST(roundtrip_all) {
    roundtrip("gemma1");
    roundtrip("gemma2");
    roundtrip("gemma3");
    roundtrip("gemma3_mm");
    roundtrip("gemma4"); /* Gemma 4 export: per_layer_config, proportional RoPE, [1] layer scalars */
}
END_TEST

/* ---------------------------------------------------------------- export vs transformers */

/* A tiny tokenizer.json (BPE with byte fallback, Gemma's special pieces) for the export test. */
static const char *tiny_tokenizer_json(void);

typedef struct {
    const char *name;
    int gen;
    int64_t L, D, F, N, K, H, window;
    int pattern;
    bool qhdn, bf16, tokenizer;
    double gbase, lbase, gscale, acap, fcap;
    /* Gemma 4 only */
    int64_t gh, gkv, shared, ple;
    bool dw;
    double partial, lscale;
} export_case;

static const export_case export_cases[] = {
    {"gemma1", 1, 2, 24, 32, 2, 1, 16, 0, 0, true, false, false, 10000, 10000, 1, 0, 0, 0, 0, 0, 0, false, 1, 1},
    {"gemma2", 2, 3, 32, 24, 4, 2, 12, 3, 2, false, false, false, 10000, 10000, 1, 4.0, 6.0, 0, 0, 0, 0, false, 1, 1},
    {"gemma3", 3, 5, 24, 32, 2, 1, 8, 4, 4, true, false, true, 1e6, 1e4, 4.0, 0, 0, 0, 0, 0, 0, false, 1, 1},
    {"gemma3_bf16", 3, 3, 24, 32, 4, 2, 8, 3, 6, true, true, false, 1e6, 1e4, 1.0, 0, 0, 0, 0, 0, 0, false, 1, 1},
    /* Gemma 4: global head dim 16 without k = v, one kv-shared layer, partial RoPE 0.5 on base
     * 5e5, linear RoPE x2 on sliding layers; then k = v, PLE, double-wide MLP, two shared layers,
     * proportional factor 4, final soft-cap */
    {"gemma4", 4, 4, 24, 32, 2, 1, 8, 3, 2, true, false, false, 5e5, 1e4, 1.0, 0, 0, 16, 0, 1, 0, false, 0.5, 2.0},
    {"gemma4_ple", 4, 6, 24, 16, 4, 2, 8, 4, 3, true, false, false, 1e6, 1e4, 4.0, 0, 6.0, 16, 1, 2, 4, true, 0.25, 1.0},
};

static gt_gemma *make_model(const export_case *x) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, x->gen);
    c.vocab_size = 96;
    c.num_layers = x->L;
    c.hidden_dim = x->D;
    c.intermediate_dim = x->F;
    c.num_query_heads = x->N;
    c.num_kv_heads = x->K;
    c.head_dim = x->H;
    c.sliding_window = x->window;
    c.sliding_pattern = x->pattern;
    c.query_head_dim_normalize = x->qhdn;
    c.kerashub_query_scaling = false;
    c.rope_global_base = x->gbase;
    c.rope_local_base = x->lbase;
    c.rope_global_scale = x->gscale;
    c.attn_logit_softcap = x->acap;
    c.final_logit_softcap = x->fcap;
    c.max_seq_len = 64;
    if (x->gen == 4) {
        c.global_head_dim = x->gh;
        c.num_global_kv_heads = x->gkv;
        c.num_kv_shared_layers = x->shared;
        c.per_layer_input_dim = x->ple;
        c.per_layer_vocab_size = x->ple ? c.vocab_size : 0;
        c.double_wide_mlp = x->dw;
        c.rope_global_partial = x->partial;
        c.rope_local_scale = x->lscale;
    }
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&c, false, &m, g_err, sizeof g_err) == 0, "%s", g_err);
    /* our own stream, so the fixture does not depend on gt_gemma_init_random's recipe:
     * Irwin-Hall(4) on a 64-bit LCG, std 0.3 */
    uint64_t st = 1000 + (uint64_t)x->gen;
    for (int64_t i = 0; i < m->n_values; i++) {
        double u = 0;
        for (int k = 0; k < 4; k++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            u += (double)(st >> 11) / 9007199254740992.0;
        }
        m->data[i] = (float)((u - 2.0) * sqrt(3.0) * 0.3);
    }
    return m;
}

START_TEST(export_matches_transformers) {
    const char *keep = getenv("GT_HF_EXPORT_TO");
    char tokpath[300];
    tmp_path(tokpath, sizeof tokpath, "tiny_tokenizer.json");
    const char *tj = tiny_tokenizer_json();
    write_file(tokpath, tj, strlen(tj));
    for (size_t k = 0; k < sizeof export_cases / sizeof export_cases[0]; k++) {
        const export_case *x = &export_cases[k];
        gt_gemma *m = make_model(x), *back;
        char dir[300], ref[300];
        if (keep) {
            mkdir(keep, 0755);
            snprintf(dir, sizeof dir, "%s/%s", keep, x->name);
        } else {
            snprintf(dir, sizeof dir, "%s/export_%s", g_tmp, x->name);
        }
        gt_hf_save_opts o = {.bf16 = x->bf16, .tokenizer = x->tokenizer ? tokpath : NULL};
        ck_assert_msg(gt_hf_gemma_save(m, dir, &o, g_err, sizeof g_err) == 0, "%s: %s", x->name, g_err);
        ck_assert_msg(gt_hf_gemma_load(dir, false, &back, g_err, sizeof g_err) == 0, "%s: %s", x->name, g_err);
        if (keep) {
            printf("exported %s\n", dir);
        } else {
            /* transformers must reproduce the model we exported (not our reading of our own
             * files, which could share a mistake with the writer); bf16: its rounded weights */
            if (x->bf16)
                for (int64_t i = 0; i < m->n_values; i++) m->data[i] = gt_bf16_to_f32(gt_f32_to_bf16(m->data[i]));
            ck_assert(!memcmp(m->data, back->data, (size_t)m->n_values * sizeof(float)));
            ck_assert(m->cfg.sliding_pattern == back->cfg.sliding_pattern &&
                      gt_gemma_query_scale(&m->cfg) == gt_gemma_query_scale(&back->cfg));
            snprintf(ref, sizeof ref, FIX "/export_%s_ref.h5", x->name);
            double e = gt_test_compare_ref(m, ref, 1);
            printf("export %-11s transformers on our files: logits err %.2e x max|logit|\n", x->name, e);
            ck_assert_msg(e <= 1e-4, "%s: transformers' logits on our export differ by %.3g x max", x->name, e);
            if (x->tokenizer) {
                gt_tokenizer *tok;
                ck_assert_msg(gt_tok_load(tokpath, &tok, g_err, sizeof g_err) == 0, "%s", g_err);
                gt_h5 f;
                ck_assert(gt_h5_open_read(ref, &f, g_err, sizeof g_err) == 0);
                static const char *texts[] = {"Hello world", "  two  spaces\nand a newline",
                                              "<start_of_turn>user\nhi<end_of_turn>", "déjà vu 123"};
                for (int t = 0; t < 4; t++) {
                    char p[64];
                    snprintf(p, sizeof p, "/tokenizer/%d", t);
                    int32_t *want;
                    int nd;
                    int64_t sh[8];
                    ck_assert_msg(gt_h5_read_i32(f, p, &want, &nd, sh, g_err, sizeof g_err) == 0, "%s", g_err);
                    gt_ids ids = {0};
                    ck_assert(gt_ids_push(&ids, gt_tok_bos(tok)) == 0); /* HF adds <bos> */
                    ck_assert(gt_tok_encode(tok, texts[t], strlen(texts[t]), true, &ids, g_err, sizeof g_err) == 0);
                    ck_assert_msg((int64_t)ids.n == sh[0] && !memcmp(ids.ids, want, ids.n * sizeof *want),
                                  "tokenizer text %d: %zu ids vs transformers' %lld", t, ids.n, (long long)sh[0]);
                    gt_ids_free(&ids);
                    free(want);
                }
                gt_h5_close(f);
                gt_tok_free(tok);
            }
        }
        gt_gemma_free(m);
        gt_gemma_free(back);
    }
}
END_TEST

/* The tokenizer travels: a tokenizer.json with its tokenizer_config.json beside it is copied
 * byte for byte; a SentencePiece model becomes tokenizer.model plus a generated config. */
START_TEST(tokenizer_files) {
    char src[300], p[400], dir[300];
    tmp_path(src, sizeof src, "toksrc");
    mkdir(src, 0755);
    snprintf(p, sizeof p, "%s/tokenizer.json", src);
    write_file(p, tiny_tokenizer_json(), strlen(tiny_tokenizer_json()));
    const char *tc = "{\"tokenizer_class\": \"GemmaTokenizer\", \"chat_template\": \"{{ bos_token }}\"}\n";
    char tcp[400];
    snprintf(tcp, sizeof tcp, "%s/tokenizer_config.json", src);
    write_file(tcp, tc, strlen(tc));
    gt_gemma *m = make_model(&export_cases[0]);
    gt_hf_save_opts o = {.tokenizer = p};
    tmp_path(dir, sizeof dir, "tokjson");
    ck_assert_msg(gt_hf_gemma_save(m, dir, &o, g_err, sizeof g_err) == 0, "%s", g_err);
    char q[400];
    size_t n1, n2;
    snprintf(q, sizeof q, "%s/tokenizer.json", dir);
    uint8_t *a = read_file(q, &n1);
    ck_assert(n1 == strlen(tiny_tokenizer_json()) && !memcmp(a, tiny_tokenizer_json(), n1));
    free(a);
    snprintf(q, sizeof q, "%s/tokenizer_config.json", dir);
    a = read_file(q, &n2);
    ck_assert(n2 == strlen(tc) && !memcmp(a, tc, n2));
    free(a);

    /* .spm -> tokenizer.model, generated tokenizer_config.json, same encoding after reload */
    gt_tokenizer *tok, *back;
    ck_assert_msg(gt_tok_load(p, &tok, g_err, sizeof g_err) == 0, "%s", g_err);
    char spm[400];
    tmp_path(spm, sizeof spm, "tiny.spm");
    ck_assert_msg(gt_tok_save_spm(tok, spm, g_err, sizeof g_err) == 0, "%s", g_err);
    o.tokenizer = spm;
    tmp_path(dir, sizeof dir, "tokspm");
    ck_assert_msg(gt_hf_gemma_save(m, dir, &o, g_err, sizeof g_err) == 0, "%s", g_err);
    snprintf(q, sizeof q, "%s/tokenizer.model", dir);
    ck_assert_msg(gt_tok_load(q, &back, g_err, sizeof g_err) == 0, "%s", g_err);
    const char *text = "Hello world";
    gt_ids x = {0}, y = {0};
    ck_assert(gt_tok_encode(tok, text, strlen(text), false, &x, g_err, sizeof g_err) == 0);
    ck_assert(gt_tok_encode(back, text, strlen(text), false, &y, g_err, sizeof g_err) == 0);
    ck_assert(x.n == y.n && x.n > 0 && !memcmp(x.ids, y.ids, x.n * sizeof *x.ids));
    snprintf(q, sizeof q, "%s/tokenizer_config.json", dir);
    char *cfg = (char *)read_file(q, &n1);
    cfg[n1] = 0;
    ck_assert_msg(strstr(cfg, "\"tokenizer_class\": \"GemmaTokenizer\"") && strstr(cfg, "\"bos_token\": \"<bos>\"") &&
                  strstr(cfg, "\"eos_token\": \"<eos>\""), "%s", cfg);
    free(cfg);
    snprintf(q, sizeof q, "%s/generation_config.json", dir);
    cfg = (char *)read_file(q, &n1);
    cfg[n1] = 0;
    ck_assert_msg(strstr(cfg, "\"eos_token_id\": [\n    1,\n    5\n  ]"), "%s", cfg); /* <eos>, <end_of_turn> */
    free(cfg);
    gt_ids_free(&x);
    gt_ids_free(&y);
    gt_tok_free(tok);
    gt_tok_free(back);
    /* a tokenizer that does not load is refused before anything is written */
    snprintf(q, sizeof q, "%s/broken.json", src);
    write_file(q, "{\"model\": 7}", 12);
    o.tokenizer = q;
    tmp_path(dir, sizeof dir, "tokbad");
    ck_assert_int_eq(gt_hf_gemma_save(m, dir, &o, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "broken.json"), "%s", g_err);
    ck_assert_int_ne(access(dir, F_OK), 0);
    gt_gemma_free(m);
}
END_TEST

/* ---------------------------------------------------------------- safetensors reader/writer */

START_TEST(dtypes_convert_like_torch) {
    gt_st *st;
    ck_assert_msg(gt_st_open(FIX "/dtypes.safetensors", &st, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_str_eq(gt_st_metadata(st, "note"), "dtypes");
    ck_assert_ptr_null(gt_st_metadata(st, "nope"));
    gt_h5 f;
    ck_assert(gt_h5_open_read(FIX "/dtypes_ref.h5", &f, g_err, sizeof g_err) == 0);
    static const char *names[] = {"f32", "f16", "bf16", "f64", "empty", "scalar"};
    for (int k = 0; k < 6; k++) {
        const gt_st_tensor *t = gt_st_find(st, names[k]);
        ck_assert_msg(t, "%s missing", names[k]);
        float *want;
        int nd;
        int64_t sh[8];
        char p[32];
        snprintf(p, sizeof p, "/%s", names[k]);
        ck_assert_msg(gt_h5_read_f32(f, p, &want, &nd, sh, g_err, sizeof g_err) == 0, "%s", g_err);
        ck_assert_int_eq(t->n_elements, sh[0]);
        float *got = malloc((size_t)(t->n_elements + 1) * sizeof *got);
        ck_assert_msg(gt_st_read_f32(t, got, g_err, sizeof g_err) == 0, "%s", g_err);
        for (int64_t i = 0; i < t->n_elements; i++)
            ck_assert_msg(isnan(want[i]) ? isnan(got[i]) : !memcmp(&got[i], &want[i], 4), "%s[%lld]: %g vs %g",
                          names[k], (long long)i, got[i], want[i]);
        free(got);
        free(want);
    }
    gt_h5_close(f);
    const gt_st_tensor *s = gt_st_find(st, "scalar"), *e = gt_st_find(st, "empty"), *i64 = gt_st_find(st, "i64");
    ck_assert_int_eq(s->ndim, 0);
    ck_assert_int_eq(s->n_elements, 1);
    ck_assert_int_eq(e->ndim, 2);
    ck_assert_int_eq(e->n_elements, 0);
    ck_assert_int_eq(i64->dtype, GT_ST_I64);
    float dummy[6];
    ck_assert_int_eq(gt_st_read_f32(i64, dummy, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "'i64'") && strstr(g_err, "I64"), "%s", g_err);
    gt_st_close(st);
    /* every f16 bit pattern against a direct formula */
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e5 = (h >> 10) & 31, man = h & 1023;
        double v = e5 == 0 ? ldexp(man, -24) : e5 == 31 ? (man ? NAN : INFINITY) : ldexp(1024 + man, (int)e5 - 25);
        if (h & 0x8000) v = -v;
        float g = gt_f16_to_f32((uint16_t)h);
        ck_assert_msg(isnan(v) ? isnan(g) : g == (float)v && !signbit(g) == !signbit(v), "f16 %04x", h);
    }
}
END_TEST

static void check_writer_bytes(const char *ref, gt_st_dtype dt) {
    gt_st *st;
    ck_assert_msg(gt_st_open(FIX "/writer_f32.safetensors", &st, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_st_entry e[3];
    float vals[3][8];
    for (int i = 0; i < 3; i++) {
        /* reversed, to show the writer sorts by name */
        const gt_st_tensor *t = gt_st_tensor_at(st, 2 - i);
        e[i].name = t->name;
        e[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
        ck_assert(gt_st_read_f32(t, vals[i], g_err, sizeof g_err) == 0);
        e[i].data = vals[i];
    }
    char out[300];
    tmp_path(out, sizeof out, "writer.safetensors");
    static const char *const meta[] = {"format", "pt", NULL};
    ck_assert_msg(gt_st_write(out, e, 3, dt, meta, g_err, sizeof g_err) == 0, "%s", g_err);
    size_t na, nb;
    uint8_t *a = read_file(out, &na), *b = read_file(ref, &nb);
    ck_assert_msg(na == nb && !memcmp(a, b, na), "%s: our bytes differ from the safetensors library's", ref);
    free(a);
    free(b);
    gt_st_close(st);
}

START_TEST(writer_matches_official_bytes) {
    check_writer_bytes(FIX "/writer_f32.safetensors", GT_ST_F32);
    check_writer_bytes(FIX "/writer_bf16.safetensors", GT_ST_BF16);
    /* NaN stays NaN in bf16; duplicate names and other dtypes are refused; no temp file left */
    float nan_ = NAN;
    ck_assert(isnan(gt_bf16_to_f32(gt_f32_to_bf16(nan_))));
    char out[300];
    tmp_path(out, sizeof out, "dup.safetensors");
    float v[2] = {1, 2};
    gt_st_entry e[2] = {{"x", v, 1, {1}}, {"x", v + 1, 1, {1}}};
    ck_assert_int_eq(gt_st_write(out, e, 2, GT_ST_F32, NULL, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "'x'"), "%s", g_err);
    ck_assert_int_eq(gt_st_write(out, e, 1, GT_ST_F16, NULL, g_err, sizeof g_err), -1);
    ck_assert_int_ne(access(out, F_OK), 0);
    ck_assert_int_eq(gt_st_write("/nonexistent-dir/x.safetensors", e, 1, GT_ST_F32, NULL, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "/nonexistent-dir/x.safetensors"), "%s", g_err);
    /* zero tensors: a valid 8-byte-aligned empty file */
    ck_assert(gt_st_write(out, e, 0, GT_ST_F32, NULL, g_err, sizeof g_err) == 0);
    gt_st *st;
    ck_assert_msg(gt_st_open(out, &st, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_int_eq(gt_st_n_tensors(st), 0);
    gt_st_close(st);
}
END_TEST

/* A file image: 8-byte length + header + data bytes. */
static uint8_t *image(const char *hdr, size_t data_len, size_t *len) {
    size_t h = strlen(hdr);
    *len = 8 + h + data_len;
    uint8_t *p = calloc(1, *len);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(p + 8, hdr, h);
    return p;
}

static void expect_bad(const char *hdr, size_t data_len, const char *needle1, const char *needle2) {
    size_t len;
    uint8_t *p = image(hdr, data_len, &len);
    gt_st *st = (gt_st *)1;
    g_err[0] = 0;
    int rc = gt_st_open_buffer(p, len, "bad.safetensors", &st, g_err, sizeof g_err);
    ck_assert_msg(rc == -1 && st == NULL, "accepted: %s", hdr);
    ck_assert_msg(strstr(g_err, "bad.safetensors") && strstr(g_err, needle1) && (!needle2 || strstr(g_err, needle2)),
                  "header %s: message '%s' lacks '%s'", hdr, g_err, needle1);
    ck_assert_msg(!strchr(g_err, '\n'), "multi-line message: %s", g_err);
    free(p);
}

START_TEST(malformed_headers) {
    const char *T = "\"dtype\":\"F32\",\"shape\":[2]";
    char h[512];
    /* a good one first */
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[8,16]}}", T, T);
    size_t len;
    uint8_t *p = image(h, 16, &len);
    gt_st *st;
    ck_assert_msg(gt_st_open_buffer(p, len, "ok", &st, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert_int_eq(gt_st_n_tensors(st), 2);
    gt_st_close(st);
    /* short file, truncated header, huge length */
    ck_assert_int_eq(gt_st_open_buffer(p, 5, "bad.safetensors", &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "shorter than"), "%s", g_err);
    ck_assert_int_eq(gt_st_open_buffer(p, 20, "bad.safetensors", &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "truncated"), "%s", g_err);
    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x10};
    ck_assert_int_eq(gt_st_open_buffer(huge, 16, "bad.safetensors", &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "limit"), "%s", g_err);
    /* the data section one byte short: the last tensor runs past it */
    ck_assert_int_eq(gt_st_open_buffer(p, len - 1, "bad.safetensors", &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "'b'") && strstr(g_err, "truncated"), "%s", g_err);
    free(p);

    expect_bad("[1,2]", 0, "'{'", NULL);
    expect_bad("{\"a\":", 0, "JSON", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", 4, "JSON", NULL);
    snprintf(h, sizeof h, "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    expect_bad(h, 8, "'w'", "unknown dtype");
    expect_bad("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'w'", "dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "'w'", "shape");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "'w'", "shape");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'w'", "shape");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "'w'",
               "overflow");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "'w'", "2 entries");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "'w'", "end before");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "'w'", "needs 8");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[100,108]}}", 8, "'w'", "run past");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[4,12]}}", T, T);
    expect_bad(h, 12, "'b'", "overlap tensor 'a'");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[12,20]}}", T, T);
    expect_bad(h, 20, "'b'", "gap");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]}}", T);
    expect_bad(h, 12, "cover 8 bytes of the 12", NULL);
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", NULL);
    expect_bad("{\"w\":7}", 0, "'w'", "not an object");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,0]}}", 0, "'w'", "shape");
    /* header padded with spaces (as the official writer does) is fine */
    size_t l2;
    uint8_t *q = image("{\"x\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}     ", 2, &l2);
    ck_assert_msg(gt_st_open_buffer(q, l2, "pad", &st, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_st_close(st);
    free(q);
}
END_TEST

START_TEST(truncated_and_sharded_files) {
    /* a real file cut short */
    size_t n;
    uint8_t *b = read_file(FIX "/gemma1/model.safetensors", &n);
    char path[300];
    tmp_path(path, sizeof path, "cut.safetensors");
    write_file(path, b, n - 100);
    gt_st *st;
    ck_assert_int_eq(gt_st_open(path, &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, path) && strstr(g_err, "tensor '") && strstr(g_err, "truncated"), "%s", g_err);
    write_file(path, b, 100);
    ck_assert_int_eq(gt_st_open(path, &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, path) && strstr(g_err, "truncated"), "%s", g_err);
    free(b);
    ck_assert_int_eq(gt_st_open(FIX "/missing.safetensors", &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "missing.safetensors"), "%s", g_err);

    /* the sharded fixture opens as a whole ... */
    ck_assert_msg(gt_st_open(FIX "/gemma2", &st, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert(gt_st_find(st, "model.layers.3.mlp.down_proj.weight"));
    gt_st_close(st);
    /* ... and a broken index says which tensor or shard */
    char dir[300], idx[400], cmd[1200];
    tmp_path(dir, sizeof dir, "shards");
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r " FIX "/gemma2 %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    write_file(idx, "{\"weight_map\":{\"model.norm.weight\":\"model-00009-of-00004.safetensors\"}}",
               strlen("{\"weight_map\":{\"model.norm.weight\":\"model-00009-of-00004.safetensors\"}}"));
    ck_assert_int_eq(gt_st_open(dir, &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "model-00009-of-00004.safetensors"), "%s", g_err);
    const char *wrong = "{\"weight_map\":{\"model.norm.weight\":\"model-00001-of-00004.safetensors\","
                        "\"model.nope\":\"model-00001-of-00004.safetensors\"}}";
    write_file(idx, wrong, strlen(wrong));
    ck_assert_int_eq(gt_st_open(dir, &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "'model.nope'") || strstr(g_err, "'model.norm.weight'"), "%s", g_err);
    const char *twice = "{\"weight_map\":{\"a\":\"model-00001-of-00004.safetensors\",\"b\":"
                        "\"model-00001-of-00004.safetensors\",\"c\":\"../x.safetensors\"}}";
    write_file(idx, twice, strlen(twice));
    ck_assert_int_eq(gt_st_open(dir, &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "'c'"), "%s", g_err);
    /* one tensor in two shards */
    snprintf(cmd, sizeof cmd, "cp %s/model-00001-of-00004.safetensors %s/dup.safetensors", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    const char *dup = "{\"weight_map\":{\"model.embed_tokens.weight\":\"model-00001-of-00004.safetensors\","
                      "\"x\":\"dup.safetensors\"}}";
    write_file(idx, dup, strlen(dup));
    ck_assert_int_eq(gt_st_open(dir, &st, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "'model.embed_tokens.weight'") && strstr(g_err, "both"), "%s", g_err);
}
END_TEST

/* ---------------------------------------------------------------- HF-level errors */

/* dir/config.json = text; weights: the gemma1 fixture with a hook to change the tensor list */
static void make_dir(const char *name, const char *config, char *dir, size_t n) {
    tmp_path(dir, n, name);
    mkdir(dir, 0755);
    char p[400];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, config, strlen(config));
}

static char *fixture_config(const char *name, const char *from, const char *to) {
    char p[256];
    snprintf(p, sizeof p, FIX "/%s/config.json", name);
    size_t n;
    char *s = (char *)read_file(p, &n);
    s[n] = 0;
    if (from) {
        char *at = strstr(s, from);
        ck_assert_msg(at, "'%s' not in %s", from, p);
        size_t a = strlen(from), b = strlen(to);
        char *r = malloc(n - a + b + 1);
        memcpy(r, s, (size_t)(at - s));
        memcpy(r + (at - s), to, b);
        strcpy(r + (at - s) + b, at + a);
        free(s);
        s = r;
    }
    return s;
}

/* Write the gemma1 fixture's tensors into dir, dropping `drop`, reshaping `reshape` to [1, n],
 * adding `extra` (copy of the final norm) and replacing lm_head with a perturbed copy if asked. */
static void write_weights(const char *dir, const char *drop, const char *reshape, const char *extra, bool bad_head) {
    gt_st *st;
    ck_assert(gt_st_open(FIX "/gemma1/model.safetensors", &st, g_err, sizeof g_err) == 0);
    int64_t n = gt_st_n_tensors(st);
    gt_st_entry *e = calloc((size_t)n + 2, sizeof *e);
    float **bufs = calloc((size_t)n + 2, sizeof *bufs);
    int k = 0;
    for (int64_t i = 0; i < n; i++) {
        const gt_st_tensor *t = gt_st_tensor_at(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        bufs[k] = malloc((size_t)t->n_elements * sizeof(float));
        ck_assert(gt_st_read_f32(t, bufs[k], g_err, sizeof g_err) == 0);
        e[k] = (gt_st_entry){.name = t->name, .data = bufs[k], .ndim = t->ndim};
        for (int d = 0; d < t->ndim; d++) e[k].shape[d] = t->shape[d];
        if (reshape && !strcmp(t->name, reshape)) {
            e[k].ndim = 2;
            e[k].shape[0] = 1;
            e[k].shape[1] = t->n_elements;
        }
        if (bad_head && !strcmp(t->name, "model.embed_tokens.weight")) {
            k++;
            bufs[k] = malloc((size_t)t->n_elements * sizeof(float));
            memcpy(bufs[k], bufs[k - 1], (size_t)t->n_elements * sizeof(float));
            bufs[k][t->n_elements - 1] += 1;
            e[k] = e[k - 1];
            e[k].name = "lm_head.weight";
            e[k].data = bufs[k];
        }
        if (extra && !strcmp(t->name, "model.norm.weight")) {
            k++;
            e[k] = e[k - 1];
            e[k].name = extra;
            bufs[k] = NULL;
        }
        k++;
    }
    char p[400];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert_msg(gt_st_write(p, e, (size_t)k, GT_ST_F32, NULL, g_err, sizeof g_err) == 0, "%s", g_err);
    for (int i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(e);
    gt_st_close(st);
}

static void expect_load_error(const char *dir, const char *needle1, const char *needle2) {
    gt_gemma *m = (gt_gemma *)1;
    g_err[0] = 0;
    ck_assert_int_eq(gt_hf_gemma_load(dir, false, &m, g_err, sizeof g_err), -1);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(g_err, needle1) && (!needle2 || strstr(g_err, needle2)), "message '%s' lacks '%s'", g_err,
                  needle1);
    ck_assert_msg(!strchr(g_err, '\n'), "multi-line message: %s", g_err);
}

START_TEST(checkpoint_errors) {
    char dir[300];
    char *cfg = fixture_config("gemma1", NULL, NULL);
    char *llama = fixture_config("gemma1", "GemmaForCausalLM", "LlamaForCausalLM");
    make_dir("arch", llama, dir, sizeof dir);
    write_weights(dir, NULL, NULL, NULL, false);
    expect_load_error(dir, "LlamaForCausalLM", "not supported");

    make_dir("missing", cfg, dir, sizeof dir);
    write_weights(dir, "model.layers.1.self_attn.k_proj.weight", NULL, NULL, false);
    expect_load_error(dir, "'model.layers.1.self_attn.k_proj.weight'", "missing");

    make_dir("shape", cfg, dir, sizeof dir);
    write_weights(dir, NULL, "model.layers.2.mlp.down_proj.weight", NULL, false);
    expect_load_error(dir, "'model.layers.2.mlp.down_proj.weight'", "[1,1536], expected [32,48]");

    make_dir("extra", cfg, dir, sizeof dir);
    write_weights(dir, NULL, NULL, "model.layers.0.self_attn.q_proj.bias", false);
    expect_load_error(dir, "'model.layers.0.self_attn.q_proj.bias'", "unexpected");

    make_dir("head", cfg, dir, sizeof dir);
    write_weights(dir, NULL, NULL, NULL, true);
    expect_load_error(dir, "'lm_head.weight'", "untied");

    make_dir("vocab", cfg, dir, sizeof dir);
    write_weights(dir, NULL, "model.embed_tokens.weight", NULL, false);
    expect_load_error(dir, "'model.embed_tokens.weight'", "expected [160,32]");

    make_dir("noweights", cfg, dir, sizeof dir);
    expect_load_error(dir, "model.safetensors", NULL);

    make_dir("nocfg", "", dir, sizeof dir);
    char p[400];
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    expect_load_error(dir, "config.json", NULL);
    free(cfg);
    free(llama);

    /* config values the model cannot express */
    static const struct {
        const char *fixture, *from, *to, *needle;
    } bad[] = {
        {"gemma2", "\"query_pre_attn_scalar\": 12", "\"query_pre_attn_scalar\": 10", "query_pre_attn_scalar"},
        {"gemma3", "\"full_attention\"\n  ]", "\"sliding_attention\"\n  ]", "layer_types"},
        {"gemma3", "\"rope_type\": \"linear\"", "\"rope_type\": \"yarn\"", "yarn"},
        {"gemma2", "\"attention_bias\": false", "\"attention_bias\": true", "attention_bias"},
        {"gemma2", "\"hidden_activation\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"relu\"", "relu"},
        {"gemma1", "\"hidden_size\": 32", "\"hidden_size\": \"32\"", "hidden_size"},
        {"gemma1", "\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"gelu\", \"hidden_activation\": \"silu\"",
         "silu"},
        {"gemma3", "\"layer_types\": [", "\"layer_types\": [\"full_attention\",", "layer_types"},
        {"gemma3_mm", "\"text_config\": {", "\"text_config\": [{", "config.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *c = fixture_config(bad[i].fixture, bad[i].from, bad[i].to);
        char name[32];
        snprintf(name, sizeof name, "cfg%zu", i);
        make_dir(name, c, dir, sizeof dir);
        gt_gemma_config gc;
        ck_assert_int_eq(gt_hf_gemma_config(dir, &gc, NULL, 0, g_err, sizeof g_err), -1);
        ck_assert_msg(strstr(g_err, bad[i].needle) && strstr(g_err, "config.json"), "case %zu: '%s'", i, g_err);
        free(c);
    }

    /* export refuses what HF Gemma 1 cannot say */
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 1);
    c.vocab_size = 8, c.num_layers = 1, c.hidden_dim = 4, c.intermediate_dim = 4;
    c.num_query_heads = c.num_kv_heads = 1, c.head_dim = 2;
    c.final_logit_softcap = 30;
    gt_gemma *m;
    ck_assert(gt_gemma_create(&c, false, &m, g_err, sizeof g_err) == 0);
    tmp_path(dir, sizeof dir, "g1cap");
    ck_assert_int_eq(gt_hf_gemma_save(m, dir, NULL, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "soft-caps"), "%s", g_err);
    gt_gemma_free(m);
    /* a tokenizer whose special ids do not fit the embedding */
    c.final_logit_softcap = 0;
    c.vocab_size = 4; /* <end_of_turn> is 5 */
    ck_assert(gt_gemma_create(&c, false, &m, g_err, sizeof g_err) == 0);
    char tokpath[300];
    tmp_path(tokpath, sizeof tokpath, "tok_small.json");
    write_file(tokpath, tiny_tokenizer_json(), strlen(tiny_tokenizer_json()));
    gt_hf_save_opts o = {.tokenizer = tokpath};
    tmp_path(dir, sizeof dir, "g1tok");
    ck_assert_int_eq(gt_hf_gemma_save(m, dir, &o, g_err, sizeof g_err), -1);
    ck_assert_msg(strstr(g_err, "tok_small.json") && strstr(g_err, "vocab_size 4"), "%s", g_err);
    gt_gemma_free(m);
}
END_TEST

/* transformers 4.x configs as Google published them (diffs for Gemma 3 text_config) */
START_TEST(legacy_configs) {
    char dir[300];
    gt_gemma_config c;
    char arch[64];
    const char *g3_4b =
        "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"model_type\": \"gemma3\","
        " \"text_config\": {\"hidden_size\": 2560, \"intermediate_size\": 10240, \"model_type\": \"gemma3_text\","
        " \"num_hidden_layers\": 34, \"rope_scaling\": {\"factor\": 8.0, \"rope_type\": \"linear\"},"
        " \"sliding_window\": 1024}, \"vision_config\": {\"model_type\": \"siglip_vision_model\"}}";
    make_dir("g3_4b", g3_4b, dir, sizeof dir);
    ck_assert_msg(gt_hf_gemma_config(dir, &c, arch, sizeof arch, g_err, sizeof g_err) == 0, "%s", g_err);
    gt_gemma_config p;
    ck_assert(gt_gemma_preset("gemma3_4b_text", &p, g_err, sizeof g_err) == 0);
    ck_assert_str_eq(arch, "Gemma3ForConditionalGeneration");
    ck_assert_int_eq(c.vocab_size, 262208); /* HF's multimodal table (KerasHub's text preset: 262144) */
    ck_assert(c.num_layers == p.num_layers && c.hidden_dim == p.hidden_dim && c.intermediate_dim == p.intermediate_dim);
    ck_assert(c.num_query_heads == p.num_query_heads && c.num_kv_heads == p.num_kv_heads && c.head_dim == p.head_dim);
    ck_assert(c.sliding_window == 1024 && c.sliding_pattern == 6 && c.rope_global_scale == 8.0 && c.rope_local_scale == 1.0);
    ck_assert(c.rope_global_base == 1e6 && c.rope_local_base == 1e4 && c.query_head_dim_normalize);
    for (int64_t i = 0; i < c.num_layers; i++) ck_assert(gt_gemma_layer_is_local(&c, i) == gt_gemma_layer_is_local(&p, i));

    const char *g2_27b =
        "{\"architectures\": [\"Gemma2ForCausalLM\"], \"attn_logit_softcapping\": 50.0, \"cache_implementation\": "
        "\"hybrid\", \"final_logit_softcapping\": 30.0, \"head_dim\": 128, \"hidden_act\": \"gelu_pytorch_tanh\", "
        "\"hidden_activation\": \"gelu_pytorch_tanh\", \"hidden_size\": 4608, \"intermediate_size\": 36864, "
        "\"max_position_embeddings\": 8192, \"model_type\": \"gemma2\", \"num_attention_heads\": 32, "
        "\"num_hidden_layers\": 46, \"num_key_value_heads\": 16, \"query_pre_attn_scalar\": 144, "
        "\"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"sliding_window\": 4096, \"vocab_size\": 256000}";
    make_dir("g2_27b", g2_27b, dir, sizeof dir);
    ck_assert_msg(gt_hf_gemma_config(dir, &c, NULL, 0, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert(gt_gemma_preset("gemma2_27b_en", &p, g_err, sizeof g_err) == 0);
    ck_assert(!c.query_head_dim_normalize && !c.kerashub_query_scaling);
    ck_assert(fabs(gt_gemma_query_scale(&c) - 1 / 12.0) < 1e-15);
    ck_assert(c.num_layers == 46 && c.sliding_pattern == 2 && c.sliding_window == 4096);
    ck_assert(c.attn_logit_softcap == 50 && c.final_logit_softcap == 30);
    ck_assert_int_eq(gt_gemma_param_count(&c), gt_gemma_param_count(&p));

    const char *g1_2b =
        "{\"architectures\": [\"GemmaForCausalLM\"], \"bos_token_id\": 2, \"eos_token_id\": 1, \"head_dim\": 256, "
        "\"hidden_act\": \"gelu\", \"hidden_size\": 2048, \"intermediate_size\": 16384, "
        "\"max_position_embeddings\": 8192, \"model_type\": \"gemma\", \"num_attention_heads\": 8, "
        "\"num_hidden_layers\": 18, \"num_key_value_heads\": 1, \"pad_token_id\": 0, \"rms_norm_eps\": 1e-06, "
        "\"rope_scaling\": null, \"rope_theta\": 10000.0, \"torch_dtype\": \"bfloat16\", \"vocab_size\": 256000}";
    make_dir("g1_2b", g1_2b, dir, sizeof dir);
    ck_assert_msg(gt_hf_gemma_config(dir, &c, NULL, 0, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert(gt_gemma_preset("gemma_2b_en", &p, g_err, sizeof g_err) == 0);
    ck_assert_int_eq(gt_gemma_param_count(&c), gt_gemma_param_count(&p));
    ck_assert(c.sliding_pattern == 0 && c.final_logit_softcap == 0 && c.generation == 1);

    /* Gemma 3 1B as a text model: 4.x keys with rope_local_base_freq and sliding_window_pattern */
    const char *g3_1b =
        "{\"architectures\": [\"Gemma3ForCausalLM\"], \"model_type\": \"gemma3_text\", \"head_dim\": 256, "
        "\"hidden_size\": 1152, \"intermediate_size\": 6912, \"num_attention_heads\": 4, \"num_hidden_layers\": 26, "
        "\"num_key_value_heads\": 1, \"query_pre_attn_scalar\": 256, \"rope_local_base_freq\": 10000, "
        "\"rope_scaling\": null, \"rope_theta\": 1000000, \"sliding_window\": 512, \"sliding_window_pattern\": 6, "
        "\"vocab_size\": 262144, \"max_position_embeddings\": 32768}";
    make_dir("g3_1b", g3_1b, dir, sizeof dir);
    ck_assert_msg(gt_hf_gemma_config(dir, &c, NULL, 0, g_err, sizeof g_err) == 0, "%s", g_err);
    ck_assert(gt_gemma_preset("gemma3_1b", &p, g_err, sizeof g_err) == 0);
    ck_assert_int_eq(gt_gemma_param_count(&c), gt_gemma_param_count(&p));
    ck_assert(c.sliding_pattern == 6 && c.sliding_window == 512 && c.rope_global_base == 1e6);
}
END_TEST

static const char *tiny_tokenizer_json(void) {
    return "{\"version\": \"1.0\", \"added_tokens\": ["
           "{\"id\": 0, \"content\": \"<pad>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},"
           "{\"id\": 1, \"content\": \"<eos>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},"
           "{\"id\": 2, \"content\": \"<bos>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},"
           "{\"id\": 3, \"content\": \"<unk>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},"
           "{\"id\": 4, \"content\": \"<start_of_turn>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true},"
           "{\"id\": 5, \"content\": \"<end_of_turn>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}],"
           "\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"},"
           "\"pre_tokenizer\": null, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
           "{\"id\": \"<bos>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], "
           "\"special_tokens\": {\"<bos>\": {\"id\": \"<bos>\", \"ids\": [2], \"tokens\": [\"<bos>\"]}}},"
           "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},"
           "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", \"continuing_subword_prefix\": null,"
           " \"end_of_word_suffix\": null, \"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,"
           " \"vocab\": {\"<pad>\": 0, \"<eos>\": 1, \"<bos>\": 2, \"<unk>\": 3, \"<start_of_turn>\": 4, \"<end_of_turn>\": 5,"
           " \"\\n\": 6, \"\\u2581\": 7, \"H\": 8, \"e\": 9, \"l\": 10, \"o\": 11, \"w\": 12, \"r\": 13, \"d\": 14,"
           " \"t\": 15, \"s\": 16, \"p\": 17, \"a\": 18, \"c\": 19, \"n\": 20, \"u\": 21, \"i\": 22, \"h\": 23, \"v\": 24, \"1\": 25,"
           " \"2\": 26, \"3\": 27, \"j\": 28, \"ll\": 29, \"llo\": 30, \"\\u2581w\": 31, \"or\": 32, \"\\u2581wor\": 33, \"He\": 34,"
           " \"Hello\": 35, \"<0xC3>\": 36, \"<0xA0>\": 37, \"<0xA9>\": 38, \"\\u2581s\": 39, \"pa\": 40, \"ce\": 41, \"\\u2581\\u2581\": 42},"
           " \"merges\": [\"l l\", \"ll o\", \"\\u2581 w\", \"o r\", \"\\u2581w or\", \"H e\", \"He llo\", \"\\u2581 s\", \"p a\", \"c e\", \"\\u2581 \\u2581\"]}}";
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_hf_XXXXXX");
    if (!mkdtemp(g_tmp)) return EXIT_FAILURE;
    Suite *s = suite_create("hf_gemma");
    TCase *tc = tcase_create("hf");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, import_gemma1);
    tcase_add_test(tc, import_gemma2_sharded);
    tcase_add_test(tc, import_gemma3);
    tcase_add_test(tc, import_gemma3_multimodal_text);
    tcase_add_test(tc, import_variants);
    tcase_add_test(tc, roundtrip_all);
    tcase_add_test(tc, export_matches_transformers);
    tcase_add_test(tc, tokenizer_files);
    tcase_add_test(tc, dtypes_convert_like_torch);
    tcase_add_test(tc, writer_matches_official_bytes);
    tcase_add_test(tc, malformed_headers);
    tcase_add_test(tc, truncated_and_sharded_files);
    tcase_add_test(tc, checkpoint_errors);
    tcase_add_test(tc, legacy_configs);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    gt_test_rmtree(g_tmp);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
