/* KerasHub presets and Keras LoRA files (models/io/keras_preset.h, models/io/keras_lora.h) against
 * files keras_hub 0.32 wrote (tools/reference/make_preset_fixtures.py): import of each
 * generation's preset and LoRA file reproduces Keras' logits; export -> import is bit-identical;
 * a merged export scores like the unmerged model; keras_hub's logits of our own export
 * (ours_gemma2_keras.h5) match ours; corrupt inputs fail with one-line messages. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/io/h5io.h"
#include "models/io/hf_gemma.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "tests/gradcheck.h"
#include "tests/testdata.h"
#include "train/config.h"
#include "train/loader.h"
#include "train/trainer.h"

#define FIX "tests/fixtures/presets"
static const char *const GENS[3] = {"gemma1", "gemma2", "gemma3"};
static char g_tmp[256];

typedef struct {
    int32_t *ids, *mask32;
    uint8_t *mask;
    int64_t B, T;
    float *logits, *logits_lora, *logits_merged;
    int64_t n; /* B*T*V */
} ref;

static float *read_opt_f32(gt_h5 f, const char *path, int64_t *n) {
    if (!gt_h5_exists(f, path)) return NULL;
    float *d;
    int nd;
    int64_t sh[8];
    char err[512];
    ck_assert_msg(!gt_h5_read_f32(f, path, &d, &nd, sh, err, sizeof err), "%s", err);
    int64_t k = 1;
    for (int i = 0; i < nd; i++) k *= sh[i];
    if (n) *n = k;
    return d;
}

static void ref_load(const char *path, ref *r) {
    memset(r, 0, sizeof *r);
    gt_h5 f;
    char err[512];
    int nd;
    int64_t sh[8];
    ck_assert_msg(!gt_h5_open_read(path, &f, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_h5_read_i32(f, "/token_ids", &r->ids, &nd, sh, err, sizeof err), "%s", err);
    r->B = sh[0], r->T = sh[1];
    ck_assert_msg(!gt_h5_read_i32(f, "/padding_mask", &r->mask32, &nd, sh, err, sizeof err), "%s", err);
    r->mask = malloc((size_t)(r->B * r->T));
    for (int64_t i = 0; i < r->B * r->T; i++) r->mask[i] = (uint8_t)r->mask32[i];
    r->logits = read_opt_f32(f, "/logits", &r->n);
    r->logits_lora = read_opt_f32(f, "/logits_lora", NULL);
    r->logits_merged = read_opt_f32(f, "/logits_merged", NULL);
    gt_h5_close(f);
}

static void ref_free(ref *r) {
    free(r->ids);
    free(r->mask32);
    free(r->mask);
    free(r->logits);
    free(r->logits_lora);
    free(r->logits_merged);
}

/* logits [B*T*V] of m (with m->lora applied) into a malloc'ed copy */
static float *run(const gt_gemma *m, const ref *r) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b = {.batch = r->B, .seq = r->T, .token_ids = r->ids, .padding_mask = r->mask};
    gt_tensor *lg = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    ck_assert_int_eq(lg->size, r->B * r->T * m->cfg.vocab_size);
    float *out = malloc((size_t)lg->size * sizeof *out);
    for (int64_t i = 0; i < lg->size; i++) out[i] = (float)lg->data[i];
    gt_ctx_free(&ctx);
    return out;
}

/* max|a - b| / max|b| */
static double rel_err(const float *a, const float *b, int64_t n) {
    double mx = 0, d = 0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(b[i]));
        d = fmax(d, fabs((double)a[i] - b[i]));
        if (isnan(a[i])) d = INFINITY;
    }
    return mx > 0 ? d / mx : d;
}

static void path_of(char *buf, size_t n, const char *fmt, const char *a) { snprintf(buf, n, fmt, a); }

static gt_gemma *load_fixture(int g, gt_tokenizer **tok) {
    char dir[256], err[1024];
    path_of(dir, sizeof dir, FIX "/%s", GENS[g]);
    gt_gemma *m;
    ck_assert_msg(!gt_keras_preset_load(dir, false, &m, tok, err, sizeof err), "%s", err);
    return m;
}

/* ---------------------------------------------------------------- import */

START_TEST(import_matches_keras) {
    int g = _i;
    char p[256], err[1024];
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(g, &tok);
    ck_assert_int_eq(m->cfg.generation, g + 1);
    ref r;
    path_of(p, sizeof p, FIX "/%s.ref.h5", GENS[g]);
    ref_load(p, &r);
    float *lg = run(m, &r);
    double e = rel_err(lg, r.logits, r.n);
    printf("%s: preset import logits err %.2e x max|logit|\n", GENS[g], e);
    ck_assert_msg(e <= 1e-4, "%s: logits off by %.3g x max", GENS[g], e);

    /* the tokenizer from assets/tokenizer/vocabulary.spm encodes like Keras' */
    gt_h5 f;
    ck_assert(!gt_h5_open_read(p, &f, err, sizeof err));
    int32_t *want;
    int nd;
    int64_t sh[8];
    ck_assert_msg(!gt_h5_read_i32(f, "/text_ids", &want, &nd, sh, err, sizeof err), "%s", err);
    gt_h5_close(f);
    const char *text = "the cat in the hat\nthere";
    gt_ids ids = {0};
    ck_assert_msg(!gt_tok_encode(tok, text, strlen(text), false, &ids, err, sizeof err), "%s", err);
    ck_assert_int_eq((int64_t)ids.n, sh[0]);
    for (size_t i = 0; i < ids.n; i++) ck_assert_int_eq(ids.ids[i], want[i]);
    ck_assert_int_eq(gt_tok_bos(tok), 2);
    ck_assert_int_eq(gt_tok_eos(tok), 1);
    ck_assert_int_eq(gt_tok_pad(tok), 0);
    gt_ids_free(&ids);
    free(want);
    free(lg);
    ref_free(&r);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

START_TEST(lora_file_import_matches_keras) {
    int g = _i;
    char p[256], err[1024];
    gt_gemma *m = load_fixture(g, NULL);
    gt_lora *l;
    path_of(p, sizeof p, FIX "/%s.lora.h5", GENS[g]);
    ck_assert_msg(!gt_keras_lora_open(p, &m->cfg, &l, err, sizeof err), "%s", err);
    ck_assert_int_eq(l->rank, 2);
    /* Gemma 2's file has all seven targets, the others Keras' default query + value */
    unsigned want = g == 1 ? (1u << GT_LORA_NTARGETS) - 1 : (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE);
    ck_assert_uint_eq(l->targets, want);
    m->lora = l;
    ref r;
    path_of(p, sizeof p, FIX "/%s.ref.h5", GENS[g]);
    ref_load(p, &r);
    float *lg = run(m, &r);
    double e = rel_err(lg, r.logits_lora, r.n);
    printf("%s: LoRA file import logits err %.2e x max|logit|\n", GENS[g], e);
    ck_assert_msg(e <= 1e-4, "%s: LoRA logits off by %.3g x max", GENS[g], e);
    ck_assert_msg(rel_err(r.logits, r.logits_lora, r.n) > 1e-2, "adapters have no effect");
    free(lg);
    ref_free(&r);
    gt_lora_free(l);
    gt_gemma_free(m);
}
END_TEST

/* The index formula against the indices Keras wrote (the files' group names). */
START_TEST(lora_indices_match_keras_files) {
    int g = _i;
    char p[256], err[1024];
    gt_gemma_config c;
    path_of(p, sizeof p, FIX "/%s", GENS[g]);
    ck_assert_msg(!gt_keras_preset_config(p, &c, err, sizeof err), "%s", err);
    path_of(p, sizeof p, FIX "/%s.lora.h5", GENS[g]);
    gt_h5 f;
    ck_assert(!gt_h5_open_read(p, &f, err, sizeof err));
    int found = 0;
    unsigned targets = g == 1 ? (1u << GT_LORA_NTARGETS) - 1 : (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE);
    for (int64_t i = 0; i < c.num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            if (!(targets & (1u << t))) continue;
            char q[64];
            snprintf(q, sizeof q, "/lora/%lld/vars/lora_kernel_a", (long long)gt_keras_lora_index(&c, i, (gt_lora_target)t));
            ck_assert_msg(gt_h5_exists(f, q), "%s: no %s", p, q);
            found++;
        }
    ck_assert_int_eq(gt_h5_count(f, "/lora"), found + 1);
    gt_h5_close(f);
    /* spot values: Gemma 1 (P=11) value s+7 query s+9; Gemma 3 with post norms (P=15) value
     * s+10, query s+12; with QK-norm and no post norms P=13, value s+9, query s+11 */
    gt_gemma_config v = c;
    if (g == 0) {
        ck_assert_int_eq(gt_keras_lora_index(&c, 1, GT_LORA_VALUE), 12 + 7);
        ck_assert_int_eq(gt_keras_lora_index(&c, 1, GT_LORA_QUERY), 12 + 9);
    } else if (g == 2) {
        ck_assert_int_eq(gt_keras_lora_index(&c, 2, GT_LORA_VALUE), 31 + 10);
        v.use_post_attention_norm = v.use_post_ffw_norm = false;
        ck_assert_int_eq(gt_keras_lora_index(&v, 3, GT_LORA_VALUE), 1 + 13 * 3 + 9);
        ck_assert_int_eq(gt_keras_lora_index(&v, 3, GT_LORA_QUERY), 1 + 13 * 3 + 11);
    }
}
END_TEST

/* ---------------------------------------------------------------- export */

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        rm_tree(p);
    }
    closedir(d);
    rmdir(path);
}

static gt_preset_save_opts opts_for(gt_lora *l, bool merge) {
    gt_preset_save_opts o = {0};
    o.lora = l;
    o.merge_lora = merge;
    o.prov.base_model = "fixture";
    o.prov.lora = l;
    o.prov.steps = 3;
    o.prov.final_eval_loss = NAN;
    return o;
}

START_TEST(export_import_bit_identical) {
    int g = _i;
    char p[256], out[512], err[1024];
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(g, &tok);
    gt_lora *l;
    path_of(p, sizeof p, FIX "/%s.lora.h5", GENS[g]);
    ck_assert_msg(!gt_keras_lora_open(p, &m->cfg, &l, err, sizeof err), "%s", err);
    snprintf(out, sizeof out, "%s/rt_%s", g_tmp, GENS[g]);
    gt_preset_save_opts o = opts_for(l, false);
    ck_assert_msg(!gt_keras_preset_save(out, m, tok, &o, err, sizeof err), "%s", err);
    ck_assert_int_eq(gt_keras_preset_detect(out), 1);

    gt_gemma *m2;
    gt_tokenizer *tok2;
    ck_assert_msg(!gt_load_model(out, false, &m2, &tok2, err, sizeof err), "%s", err);
    ck_assert_int_eq(m2->cfg.generation, m->cfg.generation);
    ck_assert_int_eq(m2->n_values, m->n_values);
    ck_assert_msg(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data), "weights differ");
    ck_assert_int_eq(gt_tok_vocab_size(tok2), gt_tok_vocab_size(tok));
    for (int32_t i = 0; i < gt_tok_vocab_size(tok); i++) {
        ck_assert_str_eq(gt_tok_piece(tok2, i), gt_tok_piece(tok, i));
        ck_assert_int_eq(gt_tok_piece_type(tok2, i), gt_tok_piece_type(tok, i));
    }
    /* every architecture field survives */
    gt_gemma_config a = m->cfg, b = m2->cfg;
    memset(a.name, 0, sizeof a.name);
    memset(b.name, 0, sizeof b.name);
    ck_assert_msg(!memcmp(&a, &b, sizeof a), "config differs after the round trip");

    /* the adapters written beside the preset come back bit for bit */
    gt_lora *l2;
    snprintf(p, sizeof p, "%s/adapter.lora.h5", out);
    ck_assert_msg(!gt_keras_lora_open(p, &m2->cfg, &l2, err, sizeof err), "%s", err);
    ck_assert_int_eq(l2->n_values, l->n_values);
    ck_assert_uint_eq(l2->targets, l->targets);
    ck_assert_msg(!memcmp(l->data, l2->data, (size_t)l->n_values * sizeof *l->data), "adapters differ");

    ref r;
    path_of(p, sizeof p, FIX "/%s.ref.h5", GENS[g]);
    ref_load(p, &r);
    m->lora = l;
    m2->lora = l2;
    float *x = run(m, &r), *y = run(m2, &r);
    ck_assert_msg(!memcmp(x, y, (size_t)r.n * sizeof *x), "logits differ after the round trip");

    /* metadata.json carries the provenance */
    snprintf(p, sizeof p, "%s/metadata.json", out);
    FILE *f = fopen(p, "r");
    ck_assert(f);
    char buf[4096] = {0};
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    ck_assert(got > 0);
    ck_assert_msg(strstr(buf, "\"gemmatrain\"") && strstr(buf, "\"base_model\": \"fixture\"") &&
                  strstr(buf, "\"steps\": 3") && strstr(buf, "\"final_eval_loss\": null") &&
                  strstr(buf, "\"rank\": 2") && strstr(buf, "\"parameter_count\""), "%s", buf);
    free(x);
    free(y);
    ref_free(&r);
    gt_lora_free(l2);
    gt_lora_free(l);
    gt_tok_free(tok2);
    gt_tok_free(tok);
    gt_gemma_free(m2);
    gt_gemma_free(m);
    rm_tree(out);
}
END_TEST

START_TEST(merged_export_scores_like_unmerged) {
    int g = _i;
    char p[256], out[512], err[1024];
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(g, &tok);
    gt_lora *l;
    path_of(p, sizeof p, FIX "/%s.lora.h5", GENS[g]);
    ck_assert_msg(!gt_keras_lora_open(p, &m->cfg, &l, err, sizeof err), "%s", err);
    snprintf(out, sizeof out, "%s/merged_%s", g_tmp, GENS[g]);
    gt_preset_save_opts o = opts_for(l, true);
    ck_assert_msg(!gt_keras_preset_save(out, m, tok, &o, err, sizeof err), "%s", err);
    snprintf(p, sizeof p, "%s/adapter.lora.h5", out);
    ck_assert_msg(access(p, F_OK) != 0, "a merged export wrote adapter.lora.h5");
    gt_gemma *m2;
    ck_assert_msg(!gt_keras_preset_load(out, false, &m2, NULL, err, sizeof err), "%s", err);
    ref r;
    path_of(p, sizeof p, FIX "/%s.ref.h5", GENS[g]);
    ref_load(p, &r);
    m->lora = l;
    float *x = run(m, &r), *y = run(m2, &r);
    double e = rel_err(y, x, r.n);
    printf("%s: merged export vs adapters err %.2e x max|logit|\n", GENS[g], e);
    ck_assert_msg(e <= 1e-5, "%s: merged logits off by %.3g", GENS[g], e);
    /* and Keras' own LoRA logits */
    ck_assert_msg(rel_err(y, r.logits_lora, r.n) <= 1e-4, "merged vs Keras");
    /* the model in memory is untouched by merging on save */
    gt_gemma *m3 = load_fixture(g, NULL);
    ck_assert(!memcmp(m->data, m3->data, (size_t)m->n_values * sizeof *m->data));
    gt_gemma_free(m3);
    free(x);
    free(y);
    ref_free(&r);
    gt_lora_free(l);
    gt_tok_free(tok);
    gt_gemma_free(m2);
    gt_gemma_free(m);
    rm_tree(out);
}
END_TEST

/* keras_hub.models.CausalLM.from_preset on presets `gemmatrain export` wrote (base + adapter,
 * and merged) gave these logits; ours must agree. */
START_TEST(keras_hub_reads_our_export) {
    char err[1024];
    ref r;
    ref_load(FIX "/ours_gemma2_keras.h5", &r);
    ck_assert(r.logits && r.logits_lora && r.logits_merged);
    gt_h5 f;
    ck_assert(!gt_h5_open_read(FIX "/ours_gemma2_keras.h5", &f, err, sizeof err));
    char cls[64];
    ck_assert_msg(!gt_h5_attr_str(f, "/", "class_name", cls, sizeof cls, err, sizeof err), "%s", err);
    gt_h5_close(f);
    ck_assert_str_eq(cls, "GemmaCausalLM");
    gt_gemma *m = load_fixture(1, NULL);
    gt_lora *l;
    ck_assert_msg(!gt_keras_lora_open(FIX "/gemma2.lora.h5", &m->cfg, &l, err, sizeof err), "%s", err);
    float *base = run(m, &r);
    m->lora = l;
    float *lo = run(m, &r);
    double e1 = rel_err(base, r.logits, r.n), e2 = rel_err(lo, r.logits_lora, r.n),
           e3 = rel_err(lo, r.logits_merged, r.n);
    printf("keras_hub on our export: base %.2e, adapter %.2e, merged %.2e x max|logit|\n", e1, e2, e3);
    ck_assert_msg(e1 <= 1e-4 && e2 <= 1e-4 && e3 <= 1e-4, "keras_hub disagrees: %.3g %.3g %.3g", e1, e2, e3);
    free(base);
    free(lo);
    ref_free(&r);
    gt_lora_free(l);
    gt_gemma_free(m);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert((long)fread(b, 1, (size_t)len, f) == len);
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert(f);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* config.json with one substring replaced */
static void edit_config(const char *dir, const char *from, const char *to) {
    char p[600];
    size_t n;
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *s = slurp(p, &n);
    char *at = strstr(s, from);
    ck_assert_msg(at, "'%s' not in config.json", from);
    size_t a = (size_t)(at - s), fl = strlen(from), tl = strlen(to);
    char *o = malloc(n - fl + tl + 1);
    memcpy(o, s, a);
    memcpy(o + a, to, tl);
    memcpy(o + a + tl, at + fl, n - a - fl + 1);
    spit(p, o, n - fl + tl);
    free(o);
    free(s);
}

static void expect_load_error(const char *dir, const char *needle) {
    char err[1024] = {0};
    gt_gemma *m = (gt_gemma *)1;
    gt_tokenizer *tok = (gt_tokenizer *)1;
    int rc = gt_load_model(dir, false, &m, &tok, err, sizeof err);
    ck_assert_int_eq(rc, -1);
    ck_assert(m == NULL && tok == NULL);
    ck_assert_msg(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
    ck_assert_msg(!strchr(err, '\n'), "multi-line error: %s", err);
    printf("  expected error: %s\n", err);
}

START_TEST(corrupt_presets_fail_cleanly) {
    char dir[512], p[600], err[1024];
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(0, &tok);
    snprintf(dir, sizeof dir, "%s/bad", g_tmp);
    gt_preset_save_opts o = opts_for(NULL, false);
    size_t n;
    char *cfg_text;
#define FRESH()                                                                            \
    do {                                                                                   \
        rm_tree(dir);                                                                      \
        ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err); \
    } while (0)
    FRESH();
    snprintf(p, sizeof p, "%s/config.json", dir);
    cfg_text = slurp(p, &n);

    /* truncated weights */
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    char *w = slurp(p, &n);
    spit(p, w, n / 2);
    expect_load_error(dir, "model.weights.h5");
    spit(p, w, n);
    free(w);
    /* a tensor the config needs is missing: one more layer than the file has */
    edit_config(dir, "\"num_layers\": 2", "\"num_layers\": 3");
    expect_load_error(dir, "missing tensor layers/gemma_decoder_block_2/pre_attention_norm/vars/0");
    FRESH();
    /* wrong shape */
    edit_config(dir, "\"vocabulary_size\": 61", "\"vocabulary_size\": 62");
    expect_load_error(dir, "shape [61,32], expected [62,32]");
    FRESH();
    /* unknown class */
    edit_config(dir, "\"class_name\": \"GemmaBackbone\"", "\"class_name\": \"LlamaBackbone\"");
    expect_load_error(dir, "class_name 'LlamaBackbone' is not a supported backbone");
    FRESH();
    /* malformed JSON, and a missing required field */
    edit_config(dir, "\"num_layers\": 2,", "\"num_layers\": 2,,");
    expect_load_error(dir, "malformed JSON");
    FRESH();
    edit_config(dir, "\"head_dim\"", "\"head_dimension\"");
    expect_load_error(dir, "config.head_dim: missing");
    FRESH();
    /* an integer wider than the field (UBSan: a double-to-int conversion out of range, fuzz_config_json) */
    edit_config(dir, "\"class_name\": \"GemmaBackbone\"", "\"class_name\": \"Gemma4Backbone\"");
    edit_config(dir, "\"num_layers\": 2,", "\"num_layers\": 2, \"sliding_window_pattern\": 111111111111113,");
    expect_load_error(dir, "config.sliding_window_pattern 111111111111113 is out of range");
    FRESH();
    /* a layer count that fits the field but no model: refused, not walked (it spun for minutes) */
    edit_config(dir, "\"num_layers\": 2,", "\"num_layers\": 110000000000000,");
    expect_load_error(dir, "model.num_layers: must be in [1, 1024], got 110000000000000");
    FRESH();
    /* no weights, no config */
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    unlink(p);
    expect_load_error(dir, "no model.weights.h5");
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    expect_load_error(dir, "without config.json");
    /* missing vocabulary */
    FRESH();
    snprintf(p, sizeof p, "%s/assets/tokenizer/vocabulary.spm", dir);
    unlink(p);
    expect_load_error(dir, "vocabulary.spm");
    free(cfg_text);
    rm_tree(dir);
    gt_tok_free(tok);
    gt_gemma_free(m);
#undef FRESH
}
END_TEST

static void expect_lora_error(const char *path, const gt_gemma_config *c, gt_lora *into, const char *needle) {
    char err[1024] = {0};
    gt_lora *l = (gt_lora *)1;
    int rc = into ? gt_keras_lora_load(path, into, c, err, sizeof err) : gt_keras_lora_open(path, c, &l, err, sizeof err);
    ck_assert_int_eq(rc, -1);
    if (!into) ck_assert(l == NULL);
    ck_assert_msg(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
    ck_assert_msg(!strchr(err, '\n'), "multi-line error: %s", err);
    printf("  expected error: %s\n", err);
}

START_TEST(bad_lora_files_fail_cleanly) {
    char err[1024], p[512];
    gt_gemma_config c1, c3;
    ck_assert(!gt_keras_preset_config(FIX "/gemma1", &c1, err, sizeof err));
    ck_assert(!gt_keras_preset_config(FIX "/gemma3", &c3, err, sizeof err));
    /* a Gemma 2 (all targets) file against Gemma 1 and Gemma 3 layer lists */
    expect_lora_error(FIX "/gemma2.lora.h5", &c1, NULL, "gemma2.lora.h5");
    expect_lora_error(FIX "/gemma1.lora.h5", &c3, NULL, "gemma1.lora.h5");
    /* rank and targets must match the configured adapters */
    gt_lora_dims d = {c1.num_layers, c1.hidden_dim, c1.intermediate_dim, c1.num_query_heads, c1.num_kv_heads, c1.head_dim};
    gt_lora *l;
    ck_assert(!gt_lora_create(&d, 4, 4, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 1, &l, err, sizeof err));
    expect_lora_error(FIX "/gemma1.lora.h5", &c1, l, "LoRA rank 2 in the file, 4 configured");
    gt_lora_free(l);
    ck_assert(!gt_lora_create(&d, 2, 2, 1u << GT_LORA_QUERY, 1, &l, err, sizeof err));
    expect_lora_error(FIX "/gemma1.lora.h5", &c1, l, "lora.targets does not include 'value'");
    gt_lora_free(l);
    ck_assert(!gt_lora_create(&d, 2, 2, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE) | (1u << GT_LORA_KEY), 1, &l, err, sizeof err));
    expect_lora_error(FIX "/gemma1.lora.h5", &c1, l, "no adapter for decoder_block_0/attention/key");
    gt_lora_free(l);
    /* truncated and missing files */
    size_t n;
    char *s = slurp(FIX "/gemma1.lora.h5", &n);
    snprintf(p, sizeof p, "%s/cut.lora.h5", g_tmp);
    spit(p, s, n / 3);
    free(s);
    expect_lora_error(p, &c1, NULL, "cut.lora.h5");
    unlink(p);
    expect_lora_error(p, &c1, NULL, "cannot open");
}
END_TEST

START_TEST(lora_alpha_is_folded_into_b) {
    /* Keras' files have no alpha (scale 1): a save with alpha != rank stores s*B, and reading it
     * back into adapters with the same alpha restores B (to rounding). */
    char err[1024], p[512];
    gt_gemma *m = load_fixture(2, NULL);
    gt_lora_dims d = {m->cfg.num_layers, m->cfg.hidden_dim, m->cfg.intermediate_dim, m->cfg.num_query_heads,
                      m->cfg.num_kv_heads, m->cfg.head_dim};
    gt_lora *l, *l2, *l3;
    unsigned t = (1u << GT_LORA_QUERY) | (1u << GT_LORA_ATTN_OUT) | (1u << GT_LORA_DOWN);
    ck_assert(!gt_lora_create(&d, 3, 12, t, 7, &l, err, sizeof err));
    for (int64_t i = 0; i < l->n_values; i++) l->data[i] = (gt_real)sin((double)i);
    snprintf(p, sizeof p, "%s/alpha.lora.h5", g_tmp);
    ck_assert_msg(!gt_keras_lora_save(p, l, &m->cfg, err, sizeof err), "%s", err);
    ck_assert(!gt_lora_create(&d, 3, 12, t, 8, &l2, err, sizeof err));
    ck_assert_msg(!gt_keras_lora_load(p, l2, &m->cfg, err, sizeof err), "%s", err);
    worst_t w = {0, 0};
    for (int64_t i = 0; i < l->n_values; i++) track(&w, i, l2->data[i], l->data[i]);
    ASSERT_WORST(w, 1e-6, "alpha round trip");
    /* opened alone (scale 1), the model scores the same */
    ck_assert_msg(!gt_keras_lora_open(p, &m->cfg, &l3, err, sizeof err), "%s", err);
    ck_assert_uint_eq(l3->targets, t);
    ck_assert(l3->alpha == 3);
    ref r;
    ref_load(FIX "/gemma3.ref.h5", &r);
    m->lora = l;
    float *x = run(m, &r);
    m->lora = l3;
    float *y = run(m, &r);
    ck_assert_msg(rel_err(y, x, r.n) <= 1e-5, "alpha folding changes the logits");
    free(x);
    free(y);
    ref_free(&r);
    unlink(p);
    gt_lora_free(l);
    gt_lora_free(l2);
    gt_lora_free(l3);
    gt_gemma_free(m);
}
END_TEST

START_TEST(unrepresentable_configs_are_refused) {
    char err[1024];
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(0, &tok);
    gt_preset_save_opts o = opts_for(NULL, false);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/unrep", g_tmp);
    m->cfg.rope_global_base = 500000;
    ck_assert(gt_keras_preset_save(dir, m, tok, &o, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "RoPE wavelength"), "%s", err);
    m->cfg.rope_global_base = 10000;
    m->cfg.use_qk_norm = true;
    ck_assert(gt_keras_preset_save(dir, m, tok, &o, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "QK-norm"), "%s", err);
    rm_tree(dir);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* The real Gemma 3 270M (when present and GT_SLOW_TESTS=1): GGUF -> preset -> reload gives identical logits. */
START_TEST(real_270m_round_trip) {
    char dir[512], err[1024];
    const char *gguf = gt_test_gemma3_270m_gguf("real_270m_round_trip");
    if (!gguf) return;
    /* writes and reads 1 GB of fp32: ~20 s, so only on request */
    const char *slow = getenv("GT_SLOW_TESTS");
    if (!slow || strcmp(slow, "1")) {
        printf("real_270m_round_trip: set GT_SLOW_TESTS=1 to run (GGUF -> preset -> reload, ~20 s)\n");
        return;
    }
    gt_gemma *m, *m2;
    gt_tokenizer *tok, *tok2;
    ck_assert_msg(!gt_load_model(gguf, false, &m, &tok, err, sizeof err), "%s", err);
    snprintf(dir, sizeof dir, "%s/g270m", g_tmp);
    gt_preset_save_opts o = opts_for(NULL, false);
    ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_load_model(dir, false, &m2, &tok2, err, sizeof err), "%s", err);
    ck_assert(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data));
    ck_assert_int_eq(gt_tok_vocab_size(tok2), gt_tok_vocab_size(tok));
    int32_t ids[6] = {2, 818, 5279, 529, 7001, 563};
    uint8_t mask[6] = {1, 1, 1, 1, 1, 1};
    ref r = {.ids = ids, .mask = mask, .B = 1, .T = 6};
    float *x = run(m, &r), *y = run(m2, &r);
    ck_assert(!memcmp(x, y, (size_t)(6 * m->cfg.vocab_size) * sizeof *x));
    printf("real_270m_round_trip: GGUF -> preset -> reload identical (%lld values)\n", (long long)m->n_values);
    free(x);
    free(y);
    rm_tree(dir);
    gt_tok_free(tok);
    gt_tok_free(tok2);
    gt_gemma_free(m);
    gt_gemma_free(m2);
}
END_TEST


/* lora.weights: the eval job scores the adapters of a .lora.h5 file; the same adapters merged
 * into an exported preset (evaluated with fresh, zero-B adapters) give the same loss. */
static double eval_loss(const char *yaml, const char *out, char *err, size_t errn, int *rc) {
    gt_config c;
    gt_config_defaults(&c);
    ck_assert_msg(!gt_config_parse_text(yaml, strlen(yaml), "job.yaml", &c, err, errn), "%s", err);
    gt_config_resolve(&c);
    ck_assert_msg(!gt_config_check(&c, err, errn), "%s", err);
    *rc = gt_eval_job(&c, false, err, errn);
    if (*rc) return NAN;
    FILE *f = fopen(out, "r");
    ck_assert(f);
    double sum = 0, w = 0, loss, tokens;
    long long line;
    while (fscanf(f, " {\"line\": %lld, \"loss\": %lf, \"tokens\": %lf}", &line, &loss, &tokens) == 3) {
        sum += loss * tokens;
        w += tokens;
    }
    fclose(f);
    ck_assert(w > 0);
    return sum / w;
}

START_TEST(eval_job_uses_lora_weights) {
    char data[512], out[512], merged[512], yaml[4096], err[2048];
    snprintf(data, sizeof data, "%s/data.jsonl", g_tmp);
    snprintf(out, sizeof out, "%s/per.jsonl", g_tmp);
    snprintf(merged, sizeof merged, "%s/merged_eval", g_tmp);
    const char *jsonl = "{\"text\": \"the cat in the hat\"}\n{\"text\": \"there is the hat\"}\n";
    spit(data, jsonl, strlen(jsonl));
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(2, &tok);
    gt_lora *l;
    ck_assert_msg(!gt_keras_lora_open(FIX "/gemma3.lora.h5", &m->cfg, &l, err, sizeof err), "%s", err);
    gt_preset_save_opts o = opts_for(l, true);
    ck_assert_msg(!gt_keras_preset_save(merged, m, tok, &o, err, sizeof err), "%s", err);
    gt_lora_free(l);
    gt_tok_free(tok);
    gt_gemma_free(m);

    const char *fmt = "model: {weights: %s}\ndata: {train: %s, sequence_length: 16}\n"
                      "lora: {rank: %d, targets: [query, value]%s}\neval: {per_example_output: %s}\n";
    int rc;
    snprintf(yaml, sizeof yaml, fmt, FIX "/gemma3", data, 2, "", out);
    double base = eval_loss(yaml, out, err, sizeof err, &rc);
    ck_assert_msg(!rc, "%s", err);
    snprintf(yaml, sizeof yaml, fmt, FIX "/gemma3", data, 2, ", weights: " FIX "/gemma3.lora.h5", out);
    double with = eval_loss(yaml, out, err, sizeof err, &rc);
    ck_assert_msg(!rc, "%s", err);
    snprintf(yaml, sizeof yaml, fmt, merged, data, 2, "", out);
    double mrg = eval_loss(yaml, out, err, sizeof err, &rc);
    ck_assert_msg(!rc, "%s", err);
    printf("eval loss: base %.6f, lora.weights %.6f, merged preset %.6f\n", base, with, mrg);
    ck_assert_msg(fabs(with - base) > 1e-3, "lora.weights had no effect");
    ck_assert_msg(fabs(with - mrg) <= 1e-4 * fabs(with), "adapters %.7f vs merged %.7f", with, mrg);
    /* a rank the file does not have */
    snprintf(yaml, sizeof yaml, fmt, FIX "/gemma3", data, 4, ", weights: " FIX "/gemma3.lora.h5", out);
    eval_loss(yaml, out, err, sizeof err, &rc);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, "LoRA rank 2 in the file, 4 configured"), "%s", err);
    rm_tree(merged);
}
END_TEST


/* Kaggle's presets store bfloat16: a Keras bfloat16 backbone's weights file reads as the fp32
 * weights rounded to bfloat16 (round to nearest even), exactly. */
static float to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

START_TEST(bfloat16_weights_load) {
    char dir[512], p[600], err[1024];
    gt_tokenizer *tok;
    gt_gemma *m = load_fixture(0, &tok);
    snprintf(dir, sizeof dir, "%s/bf16", g_tmp);
    gt_preset_save_opts o = opts_for(NULL, false);
    ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err);
    size_t n;
    char *w = slurp(FIX "/gemma1_bf16.weights.h5", &n);
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    spit(p, w, n);
    free(w);
    gt_gemma *b;
    ck_assert_msg(!gt_keras_preset_load(dir, false, &b, NULL, err, sizeof err), "%s", err);
    int64_t changed = 0;
    for (int64_t i = 0; i < m->n_values; i++) {
        float want = to_bf16((float)m->data[i]);
        ck_assert_msg((float)b->data[i] == want, "value %lld: %g, expected %g", (long long)i, b->data[i], want);
        changed += want != (float)m->data[i];
    }
    ck_assert(changed > m->n_values / 2); /* the file really held rounded values */
    rm_tree(dir);
    gt_gemma_free(b);
    gt_gemma_free(m);
    gt_tok_free(tok);
}
END_TEST


/* gemmatrain export / convert as a subprocess (GT_BIN, set by tests/run.sh). */
static int cli(const char *args, char *out, size_t n) {
    const char *bin = getenv("GT_BIN");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin ? bin : "build/gemmatrain", args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(cli_export_and_convert) {
    char cfg[512], a[1536], out[8192], p[600], err[1024];
    snprintf(cfg, sizeof cfg, "%s/exp.yaml", g_tmp);
    const char *y = "model:\n  weights: " FIX "/gemma3\nlora:\n  weights: " FIX "/gemma3.lora.h5\n";
    spit(cfg, y, strlen(y));
    /* default: base preset + adapter.lora.h5, both loadable and equal to the inputs */
    snprintf(a, sizeof a, "export %s --out %s/cli_x --steps 12 --eval-loss 1.5", cfg, g_tmp);
    ck_assert_msg(cli(a, out, sizeof out) == 0, "%s", out);
    gt_gemma *m = load_fixture(2, NULL), *m2;
    snprintf(p, sizeof p, "%s/cli_x", g_tmp);
    ck_assert_msg(!gt_keras_preset_load(p, false, &m2, NULL, err, sizeof err), "%s", err);
    ck_assert(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data));
    gt_gemma_free(m2);
    snprintf(p, sizeof p, "%s/cli_x/metadata.json", g_tmp);
    size_t n;
    char *meta = slurp(p, &n);
    ck_assert_msg(strstr(meta, "\"steps\": 12") && strstr(meta, "\"final_eval_loss\": 1.5"), "%s", meta);
    free(meta);
    gt_lora *l, *l2;
    ck_assert(!gt_keras_lora_open(FIX "/gemma3.lora.h5", &m->cfg, &l, err, sizeof err));
    snprintf(p, sizeof p, "%s/cli_x/adapter.lora.h5", g_tmp);
    ck_assert_msg(!gt_keras_lora_open(p, &m->cfg, &l2, err, sizeof err), "%s", err);
    ck_assert(!memcmp(l->data, l2->data, (size_t)l->n_values * sizeof *l->data));
    gt_lora_free(l2);
    /* --lora-only */
    snprintf(a, sizeof a, "export %s --out %s/only.lora.h5 --lora-only", cfg, g_tmp);
    ck_assert_msg(cli(a, out, sizeof out) == 0, "%s", out);
    snprintf(p, sizeof p, "%s/only.lora.h5", g_tmp);
    ck_assert_msg(!gt_keras_lora_open(p, &m->cfg, &l2, err, sizeof err), "%s", err);
    ck_assert(!memcmp(l->data, l2->data, (size_t)l->n_values * sizeof *l->data));
    gt_lora_free(l2);
    gt_lora_free(l);
    /* convert: a preset in, a preset out, weights unchanged */
    snprintf(a, sizeof a, "convert %s/cli_x %s/cli_conv", g_tmp, g_tmp);
    ck_assert_msg(cli(a, out, sizeof out) == 0, "%s", out);
    snprintf(p, sizeof p, "%s/cli_conv", g_tmp);
    ck_assert_msg(!gt_keras_preset_load(p, false, &m2, NULL, err, sizeof err), "%s", err);
    ck_assert(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data));
    gt_gemma_free(m2);
    gt_gemma_free(m);
    /* usage and runtime errors */
    snprintf(a, sizeof a, "export %s", cfg);
    ck_assert_int_eq(cli(a, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--out PATH is required"), "%s", out);
    snprintf(a, sizeof a, "export %s --out %s/x.h5 --lora-only", cfg, g_tmp);
    ck_assert_int_eq(cli(a, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "must end in .lora.h5"), "%s", out);
    snprintf(a, sizeof a, "export %s --out %s/y --merge-lora lora.weights=", cfg, g_tmp);
    ck_assert_int_eq(cli(a, out, sizeof out), 2);
    ck_assert_msg(strstr(out, "--merge-lora needs adapters"), "%s", out);
    snprintf(a, sizeof a, "convert %s/nonexistent %s/z", g_tmp, g_tmp);
    ck_assert_int_eq(cli(a, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "nonexistent: cannot open"), "%s", out);
    ck_assert_int_eq(cli("convert onlyone", out, sizeof out), 2);
    snprintf(p, sizeof p, "%s/cli_x", g_tmp);
    rm_tree(p);
    snprintf(p, sizeof p, "%s/cli_conv", g_tmp);
    rm_tree(p);
}
END_TEST

/* Every named preset's architecture (shapes shrunk, every flag, pattern, window, RoPE and Gemma 4
 * feature kept) survives both config writers and readers, which walk models/gemma_fields.c: the
 * KerasHub preset exactly but for max_seq_len, which it does not store; the HF directory exactly but for the query-scaling pair, which HF
 * states as one scalar (compared through gt_gemma_query_scale). */
START_TEST(every_preset_config_round_trips) {
    char err[1024], dir[600];
    gt_tokenizer *tok;
    ck_assert_msg(!gt_tok_load_spm(FIX "/gemma1/assets/tokenizer/vocabulary.spm", &tok, err, sizeof err), "%s", err);
    int k = 0;
    for (const char *const *name = gt_gemma_preset_names(); *name; name++, k++) {
        gt_gemma_config c;
        ck_assert(!gt_gemma_preset(*name, &c, err, sizeof err));
        c.vocab_size = 64;
        c.hidden_dim = 2 * c.num_query_heads; /* D/N = 2 differs from H = 4 */
        c.intermediate_dim = 6;
        c.head_dim = 4;
        if (c.global_head_dim) c.global_head_dim = 8;
        if (c.per_layer_input_dim) c.per_layer_input_dim = 2, c.per_layer_vocab_size = 64;
        /* the vision encoder (gemma3_4b, ...) is not yet in either format: its decoder is */
        memset(&c.vision, 0, sizeof c.vision);
        gt_gemma *m, *back;
        ck_assert_msg(!gt_gemma_create(&c, false, &m, err, sizeof err), "%s: %s", *name, err);
        gt_preset_save_opts o = opts_for(NULL, false);
        snprintf(dir, sizeof dir, "%s/cfg_keras_%d", g_tmp, k);
        ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s: %s", *name, err);
        ck_assert_msg(!gt_keras_preset_load(dir, false, &back, NULL, err, sizeof err), "%s: %s", *name, err);
        gt_gemma_config a = m->cfg, b = back->cfg;
        memset(a.name, 0, sizeof a.name);
        memset(b.name, 0, sizeof b.name);
        b.max_seq_len = a.max_seq_len; /* no KerasHub backbone key: the generation's default */
        ck_assert_msg(!memcmp(&a, &b, sizeof a), "%s: KerasHub config round trip differs", *name);
        gt_gemma_free(back);
        rm_tree(dir);
        snprintf(dir, sizeof dir, "%s/cfg_hf_%d", g_tmp, k);
        ck_assert_msg(!gt_hf_gemma_save(m, dir, NULL, err, sizeof err), "%s: %s", *name, err);
        ck_assert_msg(!gt_hf_gemma_load(dir, false, &back, err, sizeof err), "%s: %s", *name, err);
        b = back->cfg;
        ck_assert_msg(gt_gemma_query_scale(&a) == gt_gemma_query_scale(&b), "%s: query scale", *name);
        memset(b.name, 0, sizeof b.name);
        b.query_head_dim_normalize = a.query_head_dim_normalize;
        b.kerashub_query_scaling = a.kerashub_query_scaling;
        ck_assert_msg(!memcmp(&a, &b, sizeof a), "%s: HF config round trip differs", *name);
        gt_gemma_free(back);
        gt_gemma_free(m);
        rm_tree(dir);
    }
    gt_tok_free(tok);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("keras_preset");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, import_matches_keras, 0, 3);
    tcase_add_loop_test(tc, lora_file_import_matches_keras, 0, 3);
    tcase_add_loop_test(tc, lora_indices_match_keras_files, 0, 3);
    tcase_add_loop_test(tc, export_import_bit_identical, 0, 3);
    tcase_add_loop_test(tc, merged_export_scores_like_unmerged, 0, 3);
    tcase_add_test(tc, keras_hub_reads_our_export);
    tcase_add_test(tc, corrupt_presets_fail_cleanly);
    tcase_add_test(tc, bad_lora_files_fail_cleanly);
    tcase_add_test(tc, lora_alpha_is_folded_into_b);
    tcase_add_test(tc, unrepresentable_configs_are_refused);
    tcase_add_test(tc, every_preset_config_round_trips);
    tcase_add_test(tc, eval_job_uses_lora_weights);
    tcase_add_test(tc, bfloat16_weights_load);
    tcase_add_test(tc, cli_export_and_convert);
    tcase_add_test(tc, real_270m_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_preset_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rm_tree(g_tmp);
    return failed ? 1 : 0;
}
