/* Gemma 4 text decoder against the KerasHub golden fixture (tools/reference/make_gemma4_fixture.py):
 * logits, KerasHub-normalised weighted loss, the gradient of every trainable parameter, the
 * parameter count, and the per-layer structure (k = v globals, kv-shared layers, PLE). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/gemma.h"
#include "models/io/h5io.h"
#include <hdf5.h>

#include "models/io/hf_gemma.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "tests/check_main.h"

static double attr(gt_h5 f, const char *name, double dflt) {
    double v;
    char err[512];
    return gt_h5_attr_f64(f, "/config", name, &v, err, sizeof err) == 0 ? v : dflt;
}

/* KerasHub Gemma4Backbone config -> ours (what a preset importer does). */
static void load_config(gt_h5 f, gt_gemma_config *c) {
    gt_gemma_config_defaults(c, 4);
    c->vocab_size = (int64_t)attr(f, "vocabulary_size", 0);
    c->num_layers = (int64_t)attr(f, "num_layers", 0);
    c->hidden_dim = (int64_t)attr(f, "hidden_dim", 0);
    c->intermediate_dim = (int64_t)attr(f, "intermediate_dim", 0);
    c->num_query_heads = (int64_t)attr(f, "num_query_heads", 0);
    c->num_kv_heads = (int64_t)attr(f, "num_key_value_heads", 0);
    c->head_dim = (int64_t)attr(f, "head_dim", 0);
    c->global_head_dim = (int64_t)attr(f, "global_head_dim", 0);
    c->num_global_kv_heads = (int64_t)attr(f, "num_global_key_value_heads", 0);
    c->sliding_window = (int64_t)attr(f, "sliding_window_size", 512);
    c->sliding_pattern = (int)attr(f, "sliding_window_pattern", 6);
    c->attn_logit_softcap = attr(f, "attention_logit_soft_cap", 0);
    c->final_logit_softcap = attr(f, "final_logit_soft_cap", 0);
    c->rope_global_partial = attr(f, "global_rope_partial_rotary_factor", 1);
    c->rope_local_scale = attr(f, "local_rope_scaling_factor", 1);
    c->rope_global_scale = attr(f, "global_rope_scaling_factor", 1);
    c->num_kv_shared_layers = (int64_t)attr(f, "num_kv_shared_layers", 0);
    c->double_wide_mlp = attr(f, "use_double_wide_mlp", 0) != 0;
    c->per_layer_input_dim = (int64_t)attr(f, "hidden_size_per_layer_input", 0);
    c->per_layer_vocab_size = (int64_t)attr(f, "vocab_size_per_layer_input", 0);
}

static float *read_f32(gt_h5 f, const char *path, int64_t expect_size) {
    float *d;
    int nd;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(expect_size < 0 || n == expect_size, "%s: %lld values, expected %lld", path,
                  (long long)n, (long long)expect_size);
    return d;
}

static gt_h5 open_fixture(gt_gemma_config *cfg) {
    gt_h5 f;
    char err[1024];
    ck_assert_msg(gt_h5_open_read("tests/fixtures/gemma4.h5", &f, err, sizeof err) == 0, "%s", err);
    load_config(f, cfg);
    ck_assert_msg(gt_gemma_config_validate(cfg, err, sizeof err) == 0, "%s", err);
    return f;
}

START_TEST(structure_and_param_count) {
    gt_gemma_config c;
    gt_h5 f = open_fixture(&c);
    long long want = (long long)attr(f, "kerashub_param_count", -1);
    ck_assert_int_eq(gt_gemma_param_count(&c), want);
    char err[512];
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&c, true, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m->n_values, want);
    /* fixture: pattern 3 (2, 5 global), layers 5-7 share k/v with 2, 4, 4 */
    int64_t src[8] = {-1, -1, -1, -1, -1, 2, 4, 4};
    for (int64_t i = 0; i < 8; i++) {
        bool global = i % 3 == 2;
        ck_assert(gt_gemma_layer_is_local(&c, i) == !global);
        ck_assert_int_eq(gt_gemma_kv_source(&c, i), src[i]);
        ck_assert_int_eq(gt_gemma_layer_head_dim(&c, i), global ? 16 : 8);
        ck_assert_int_eq(gt_gemma_layer_rotary_dims(&c, i), global ? 4 : 8);
        ck_assert_int_eq(gt_gemma_layer_ffw_dim(&c, i), src[i] >= 0 ? 48 : 24);
        const gt_gemma_layer *ly = &m->layers[i];
        ck_assert(!ly->key == (src[i] >= 0));
        ck_assert(!ly->value == (src[i] >= 0 || global));
        ck_assert(ly->layer_scalar && !ly->layer_scalar->requires_grad);
        ck_assert(ly->ple_gate && ly->query->shape[0] == 4 * (global ? 16 : 8));
    }
    ck_assert(m->ple_embedding && m->ple_projection->shape[0] == 8 * 4);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

START_TEST(matches_kerashub) {
    gt_gemma_config cfg;
    gt_h5 f = open_fixture(&cfg);
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&cfg, true, &m, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = read_f32(f, p, m->params[i].t->size);
        memcpy(m->params[i].t->data, w, (size_t)m->params[i].t->size * sizeof(float));
        free(w);
    }
    int32_t *ids, *mask32, *labels;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/inputs/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t B = shape[0], T = shape[1];
    ck_assert(gt_h5_read_i32(f, "/inputs/padding_mask", &mask32, &nd, shape, err, sizeof err) == 0);
    ck_assert(gt_h5_read_i32(f, "/inputs/labels", &labels, &nd, shape, err, sizeof err) == 0);
    float *weights = read_f32(f, "/inputs/sample_weight", B * T);
    uint8_t *mask = malloc((size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];

    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = mask};
    gt_tensor *logits = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    double wsum = 0;
    gt_tensor *ce = gt_cross_entropy(&ctx, logits, labels, weights, &wsum, NULL);
    gt_tensor *loss = gt_scale(&ctx, ce, 1.0 / (double)(B * T));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);

    float *want = read_f32(f, "/expected/logits", B * T * cfg.vocab_size);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    ck_assert_msg(maxdiff <= 1e-5 * maxref, "logits max error %.3g vs max|logit| %.3g", maxdiff, maxref);
    float *want_loss = read_f32(f, "/expected/loss", 1);
    double rel = fabs(loss->data[0] - want_loss[0]) / fabs(want_loss[0]);
    ck_assert_msg(rel <= 1e-5, "loss %.9g vs %.9g (rel %.3g)", loss->data[0], want_loss[0], rel);

    ck_assert_int_eq(gt_backward(&ctx, loss), GT_OK);
    double worst = 0;
    const char *worst_name = "";
    int checked = 0;
    for (int i = 0; i < m->n_params; i++) {
        gt_tensor *t = m->params[i].t;
        if (!t->requires_grad) continue; /* layer_scalar: no gradient, none in the fixture */
        char p[160];
        snprintf(p, sizeof p, "/expected/grads/%s", m->params[i].name);
        float *g = read_f32(f, p, t->size);
        double gmax = 0, dmax = 0;
        for (int64_t j = 0; j < t->size; j++) {
            gmax = fmax(gmax, fabs(g[j]));
            dmax = fmax(dmax, fabs((double)t->grad[j] - g[j]));
        }
        ck_assert_msg(gmax > 0, "%s: zero reference gradient (test would be vacuous)", p);
        double e = dmax / gmax;
        if (e > worst) {
            worst = e;
            worst_name = m->params[i].name;
        }
        checked++;
        free(g);
    }
    ck_assert_int_eq(checked, m->n_params - (int)cfg.num_layers);
    ck_assert_msg(worst <= 1e-4, "gradient of %s off by %.3g (relative to its max)", worst_name, worst);
    printf("gemma4.h5: logits err %.2e x max, loss rel %.2e, worst grad %.2e (%s), %d tensors\n",
           maxdiff / maxref, rel, worst, worst_name, checked);
    free(want);
    free(want_loss);
    free(ids);
    free(mask32);
    free(labels);
    free(weights);
    free(mask);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

/* tests/fixtures/presets/gemma4: the fixture's backbone as KerasHub's save_to_preset wrote it. */
START_TEST(kerashub_preset_import) {
    gt_gemma_config want;
    gt_h5 f = open_fixture(&want);
    char err[1024];
    gt_gemma_config c;
    ck_assert_msg(gt_keras_preset_config("tests/fixtures/presets/gemma4", &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.generation, 4);
    ck_assert_int_eq(gt_gemma_param_count(&c), gt_gemma_param_count(&want));
    ck_assert(c.global_head_dim == 16 && c.num_global_kv_heads == 1 && c.num_kv_shared_layers == 3 &&
              c.double_wide_mlp && c.per_layer_input_dim == 4 && c.sliding_pattern == 3 && c.sliding_window == 3);
    ck_assert(c.rope_global_partial == 0.25 && c.rope_global_scale == 2 && c.rope_global_base == 1e6 &&
              c.rope_local_base == 1e4 && c.attn_logit_softcap == 5 && c.final_logit_softcap == 8);
    gt_gemma *m;
    ck_assert_msg(gt_keras_preset_load("tests/fixtures/presets/gemma4", false, &m, NULL, err, sizeof err) == 0,
                  "%s", err);
    /* every tensor, permuted from KerasHub's layout, equals the fixture's (our layout) bit for bit */
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = read_f32(f, p, m->params[i].t->size);
        ck_assert_msg(!memcmp(w, m->params[i].t->data, (size_t)m->params[i].t->size * sizeof(float)),
                      "%s differs after import", m->params[i].name);
        free(w);
    }
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

static const char *const EXPORT_FILES[] = {"config.json", "model.weights.h5", "metadata.json", "task.json",
                                           "preprocessor.json", "tokenizer.json",
                                           "assets/tokenizer/vocabulary.spm", NULL};

static void rm_export(const char *dir) {
    char p[600];
    for (int i = 0; EXPORT_FILES[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, EXPORT_FILES[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/assets/tokenizer", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/assets", dir);
    rmdir(p);
    rmdir(dir);
}

static bool file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

/* KerasHub preset -> gemmatrain -> preset: same config, same bits; the written files name
 * Gemma 4's classes. The committed tests/fixtures/presets/ours_gemma4_keras.h5 holds what
 * keras_hub computes on such an export (tools/reference/make_gemma4_fixture.py --check-export),
 * compared with our logits below. */
START_TEST(kerashub_preset_export) {
    char err[1024], dir[] = "/tmp/gt_gemma4_XXXXXX", out[600], p[700];
    ck_assert(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/ours4", dir);
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert_msg(!gt_keras_preset_load("tests/fixtures/presets/gemma4", false, &m, NULL, err, sizeof err), "%s", err);
    /* any 61-piece SentencePiece model will do: the Gemma 1 fixture's */
    ck_assert_msg(!gt_tok_load_spm("tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm", &tok, err,
                                   sizeof err), "%s", err);
    gt_preset_save_opts o = {.sequence_length = 16, .prov = {.steps = -1, .final_eval_loss = NAN}};
    ck_assert_msg(!gt_keras_preset_save(out, m, tok, &o, err, sizeof err), "%s", err);
    ck_assert_int_eq(gt_keras_preset_detect(out), 1);
    gt_gemma *m2;
    ck_assert_msg(!gt_keras_preset_load(out, false, &m2, NULL, err, sizeof err), "%s", err);
    gt_gemma_config a = m->cfg, b = m2->cfg;
    memset(a.name, 0, sizeof a.name);
    memset(b.name, 0, sizeof b.name);
    ck_assert_msg(!memcmp(&a, &b, sizeof a), "config differs after the round trip");
    ck_assert_int_eq(m2->n_values, m->n_values);
    ck_assert_msg(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data), "weights differ");
    snprintf(p, sizeof p, "%s/task.json", out);
    ck_assert(file_has(p, "\"Gemma4CausalLM\"") && file_has(p, "\"Gemma4CausalLMPreprocessor\"") &&
              file_has(p, "\"Gemma4Tokenizer\""));
    snprintf(p, sizeof p, "%s/config.json", out);
    ck_assert(file_has(p, "\"Gemma4Backbone\"") && file_has(p, "\"num_kv_shared_layers\": 3"));
    gt_gemma_free(m2);
    rm_export(out);
    rmdir(dir);

    /* keras_hub's logits on such an export agree with ours */
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read("tests/fixtures/presets/ours_gemma4_keras.h5", &f, err, sizeof err), "%s", err);
    char cls[64];
    ck_assert_msg(!gt_h5_attr_str(f, "/", "class_name", cls, sizeof cls, err, sizeof err), "%s", err);
    ck_assert_str_eq(cls, "Gemma4CausalLM");
    gt_h5 fx;
    gt_gemma_config fc;
    fx = open_fixture(&fc);
    int32_t *ids, *mask32;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(fx, "/inputs/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t B = shape[0], T = shape[1];
    ck_assert(gt_h5_read_i32(fx, "/inputs/padding_mask", &mask32, &nd, shape, err, sizeof err) == 0);
    uint8_t *mask = malloc((size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = mask};
    gt_tensor *logits = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    float *kl = read_f32(f, "/logits", logits->size);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(kl[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - kl[i]));
    }
    printf("keras_hub on our Gemma 4 export: logits %.2e x max|logit|\n", maxdiff / maxref);
    /* keras_hub ran eagerly here; its eager and jitted fp32 paths differ by ~5e-6 x max themselves */
    ck_assert_msg(maxdiff <= 2e-5 * maxref, "keras_hub disagrees with us: %.3g x max", maxdiff / maxref);
    free(kl);
    free(ids);
    free(mask32);
    free(mask);
    gt_ctx_free(&ctx);
    gt_h5_close(fx);
    gt_h5_close(f);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* The KV cache path (prompt, then one token at a time) gives the full forward's logits at every
 * position: sliding window 3 < 9 tokens, shared layers reading their source's cache, PLE. */
START_TEST(incremental_decoding_matches_full_forward) {
    gt_gemma_config cfg;
    gt_h5 f = open_fixture(&cfg);
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&cfg, false, &m, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = read_f32(f, p, m->params[i].t->size);
        memcpy(m->params[i].t->data, w, (size_t)m->params[i].t->size * sizeof(float));
        free(w);
    }
    int32_t *ids;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/inputs/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t T = shape[1], V = cfg.vocab_size;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = 1, .seq = T, .token_ids = ids}; /* row 0, unpadded */
    gt_tensor *full = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    gt_gemma_cache cache;
    ck_assert_msg(gt_gemma_cache_init(&cache, m, T, err, sizeof err) == 0, "%s", err);
    double worst = 0, maxref = 0;
    int64_t prompt = 4;
    for (int64_t t = prompt - 1; t < T; t++) {
        int64_t from = t == prompt - 1 ? 0 : t, n = t - from + 1;
        gt_tensor *z = gt_gemma_step(&ctx, m, &cache, ids + from, n);
        ck_assert_msg(z && gt_ok(&ctx), "%s", ctx.err);
        ck_assert_int_eq(cache.len, t + 1);
        for (int64_t v = 0; v < V; v++) {
            double want = full->data[t * V + v];
            maxref = fmax(maxref, fabs(want));
            worst = fmax(worst, fabs(z->data[v] - want));
        }
    }
    printf("gemma4 kv cache vs full forward: %.2e x max|logit|\n", worst / maxref);
    ck_assert_msg(worst <= 1e-5 * maxref, "cached decoding differs by %.3g x max", worst / maxref);
    /* a full cache refuses more tokens */
    ck_assert(gt_gemma_step(&ctx, m, &cache, ids, 1) == NULL && !gt_ok(&ctx));
    gt_gemma_cache_free(&cache);
    free(ids);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

/* LoRA on all seven targets (none on absent kernels) read from the adapter file keras_hub's
 * save_lora_weights wrote: logits equal keras_hub's; the file round-trips; merged weights score
 * like the adapters. */
START_TEST(lora_matches_kerashub) {
    gt_gemma_config cfg;
    gt_h5 f = open_fixture(&cfg);
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&cfg, false, &m, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = read_f32(f, p, m->params[i].t->size);
        memcpy(m->params[i].t->data, w, (size_t)m->params[i].t->size * sizeof(float));
        free(w);
    }
    gt_lora *l;
    ck_assert_msg(!gt_keras_lora_open("tests/fixtures/presets/gemma4.lora.h5", &cfg, &l, err, sizeof err), "%s", err);
    int n = 0;
    for (int64_t i = 0; i < cfg.num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) n += gt_lora_get(l, i, (gt_lora_target)t) != NULL;
    ck_assert_int_eq(n, 4 * 7 + 1 * 6 + 3 * 5); /* own k/v, k = v (no value), kv-shared (no key/value) */
    ck_assert(!gt_lora_get(l, 2, GT_LORA_VALUE) && !gt_lora_get(l, 6, GT_LORA_KEY));
    ck_assert_int_eq(gt_lora_get(l, 2, GT_LORA_QUERY)->b.shape[1], 16); /* global head dim */
    ck_assert_int_eq(gt_lora_get(l, 6, GT_LORA_DOWN)->in, 48);        /* double-wide MLP */

    int32_t *ids, *mask32;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/inputs/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t B = shape[0], T = shape[1];
    ck_assert(gt_h5_read_i32(f, "/inputs/padding_mask", &mask32, &nd, shape, err, sizeof err) == 0);
    uint8_t *mask = malloc((size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = mask};
    m->lora = l;
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    float *want = read_f32(f, "/expected/logits_lora", z->size), *base = read_f32(f, "/expected/logits", z->size);
    double maxref = 0, maxdiff = 0, moved = 0;
    for (int64_t i = 0; i < z->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)z->data[i] - want[i]));
        moved = fmax(moved, fabs((double)want[i] - base[i]));
    }
    printf("gemma4 LoRA vs keras_hub: %.2e x max|logit| (adapters move logits by %.2f)\n", maxdiff / maxref, moved);
    ck_assert(moved > 0.1);
    /* keras_hub ran eagerly (see kerashub_preset_export) */
    ck_assert_msg(maxdiff <= 2e-5 * maxref, "LoRA logits off by %.3g x max", maxdiff / maxref);

    /* save -> open gives the same adapters */
    char dir[] = "/tmp/gt_gemma4_lora_XXXXXX", path[600];
    ck_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.lora.h5", dir);
    ck_assert_msg(!gt_keras_lora_save(path, l, &cfg, err, sizeof err), "%s", err);
    gt_lora *l2;
    ck_assert_msg(!gt_keras_lora_open(path, &cfg, &l2, err, sizeof err), "%s", err);
    ck_assert_int_eq(l2->n_values, l->n_values);
    ck_assert_msg(!memcmp(l->data, l2->data, (size_t)l->n_values * sizeof *l->data), "adapters differ");
    unlink(path);
    rmdir(dir);

    /* merged into the kernels (preset export with merge), no adapters: the same logits */
    gt_tensor *zl = z;
    gt_gemma *mm;
    ck_assert_msg(gt_gemma_create(&cfg, false, &mm, err, sizeof err) == 0, "%s", err);
    memcpy(mm->data, m->data, (size_t)m->n_values * sizeof *m->data);
    for (int64_t i = 0; i < cfg.num_layers; i++) {
        gt_gemma_layer *ly = &mm->layers[i];
        gt_tensor *w[GT_LORA_NTARGETS] = {ly->query, ly->key, ly->value, ly->attn_out, ly->gate, ly->up, ly->down};
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            const gt_lora_adapter *ad = gt_lora_get(l, i, (gt_lora_target)t);
            ck_assert((ad != NULL) == (w[t] != NULL));
            if (ad) gt_lora_merge(l, ad, w[t]);
        }
    }
    gt_tensor *zm = gt_gemma_logits(&ctx, mm, gt_gemma_hidden(&ctx, mm, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double dm = 0;
    for (int64_t i = 0; i < zm->size; i++) dm = fmax(dm, fabs((double)zm->data[i] - zl->data[i]));
    ck_assert_msg(dm <= 1e-5 * maxref, "merged adapters differ by %.3g x max", dm / maxref);
    free(want);
    free(base);
    free(ids);
    free(mask32);
    free(mask);
    gt_ctx_free(&ctx);
    gt_lora_free(l2);
    gt_lora_free(l);
    gt_gemma_free(mm);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

/* An independent reference: transformers' Gemma4ForCausalLM (tools/reference/
 * make_hf_gemma4_fixture.py: 9 layers, no attention soft-cap, otherwise the features above),
 * read from its save_pretrained directory. */
START_TEST(hf_transformers_import_matches) {
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(!gt_hf_gemma_load("tests/fixtures/hf/gemma4", false, &m, err, sizeof err), "%s", err);
    const gt_gemma_config *c = &m->cfg;
    ck_assert(c->generation == 4 && c->num_layers == 9 && c->sliding_pattern == 3 && c->sliding_window == 3);
    ck_assert(c->global_head_dim == 16 && c->num_global_kv_heads == 1 && c->num_kv_shared_layers == 3 &&
              c->double_wide_mlp && c->per_layer_input_dim == 4 && c->per_layer_vocab_size == 61);
    ck_assert(c->rope_global_partial == 0.25 && c->rope_global_scale == 2 && c->rope_global_base == 1e6 &&
              c->rope_local_base == 1e4 && c->attn_logit_softcap == 0 && c->final_logit_softcap == 8);
    ck_assert_int_eq(gt_gemma_kv_source(c, 8), 5);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read("tests/fixtures/hf/gemma4.ref.h5", &f, err, sizeof err), "%s", err);
    int32_t *ids, *mask32;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t B = shape[0], T = shape[1];
    ck_assert(gt_h5_read_i32(f, "/padding_mask", &mask32, &nd, shape, err, sizeof err) == 0);
    uint8_t *mask = malloc((size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = mask};
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    float *want = read_f32(f, "/logits", z->size);
    /* transformers computes padded query rows too (we zero them, as KerasHub): compare real rows */
    double maxref = 0, maxdiff = 0;
    int64_t V = c->vocab_size;
    for (int64_t r = 0; r < B * T; r++) {
        if (!mask[r]) continue;
        for (int64_t v = 0; v < V; v++) {
            maxref = fmax(maxref, fabs(want[r * V + v]));
            maxdiff = fmax(maxdiff, fabs((double)z->data[r * V + v] - want[r * V + v]));
        }
    }
    printf("gemma4 vs transformers: logits %.2e x max|logit|\n", maxdiff / maxref);
    ck_assert_msg(maxdiff <= 1e-5 * maxref, "transformers disagrees: %.3g x max", maxdiff / maxref);
    free(want);
    free(ids);
    free(mask32);
    free(mask);
    gt_ctx_free(&ctx);
    gt_h5_close(f);
    gt_gemma_free(m);
}
END_TEST

/* Logits of m on gemma4.ref.h5's batch (B*T*V floats; caller frees), and the worst difference
 * from transformers' logits over real rows, relative to max|logit|. */
static float *hf_ref_logits(const gt_gemma *m, double *rel, int64_t *n) {
    char err[1024];
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read("tests/fixtures/hf/gemma4.ref.h5", &f, err, sizeof err), "%s", err);
    int32_t *ids, *mask32;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t B = shape[0], T = shape[1], V = m->cfg.vocab_size;
    ck_assert(gt_h5_read_i32(f, "/padding_mask", &mask32, &nd, shape, err, sizeof err) == 0);
    uint8_t *mask = malloc((size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = mask};
    gt_tensor *z = gt_gemma_logits(&ctx, (gt_gemma *)m, gt_gemma_hidden(&ctx, (gt_gemma *)m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    float *want = read_f32(f, "/logits", z->size), *got = malloc((size_t)z->size * sizeof *got);
    memcpy(got, z->data, (size_t)z->size * sizeof *got);
    *n = z->size;
    double maxref = 0, maxdiff = 0;
    for (int64_t r = 0; r < B * T; r++)
        for (int64_t v = 0; mask[r] && v < V; v++) {
            maxref = fmax(maxref, fabs(want[r * V + v]));
            maxdiff = fmax(maxdiff, fabs((double)got[r * V + v] - want[r * V + v]));
        }
    *rel = maxdiff / maxref;
    free(want);
    free(ids);
    free(mask32);
    free(mask);
    gt_ctx_free(&ctx);
    gt_h5_close(f);
    return got;
}

static void rm_hf_dir(const char *dir) {
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors"};
    char p[700];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* HF export of Gemma 4: transformers' fixture saved by gt_hf_gemma_save and loaded back is the
 * same model (every config field, every weight, the same logits). transformers itself reading
 * our exports: test_hf_gemma's export_matches_transformers. What transformers' Gemma 4 cannot
 * say is refused: a sliding last layer (the KerasHub fixture's), an attention soft-cap. */
START_TEST(hf_export_round_trip) {
    char err[1024], dir[] = "/tmp/gt_gemma4_hf_XXXXXX";
    ck_assert(mkdtemp(dir));
    gt_gemma *a, *b;
    ck_assert_msg(!gt_hf_gemma_load("tests/fixtures/hf/gemma4", false, &a, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_gemma_save(a, dir, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_gemma_load(dir, false, &b, err, sizeof err), "%s", err);
    gt_gemma_config ca = a->cfg, cb = b->cfg;
    memset(ca.name, 0, sizeof ca.name);
    memset(cb.name, 0, sizeof cb.name);
    ck_assert_msg(!memcmp(&ca, &cb, sizeof ca), "config changed in the HF round trip");
    ck_assert_int_eq(a->n_values, b->n_values);
    ck_assert(!memcmp(a->data, b->data, (size_t)a->n_values * sizeof *a->data));
    double ea, eb;
    int64_t na, nb;
    float *la = hf_ref_logits(a, &ea, &na), *lb = hf_ref_logits(b, &eb, &nb);
    ck_assert_msg(na == nb && !memcmp(la, lb, (size_t)na * sizeof *la), "logits differ after the HF round trip");
    ck_assert_msg(ea == eb && eb <= 1e-5, "re-imported export vs transformers: %.3g x max", eb);
    printf("gemma4 HF export re-imported vs transformers: logits %.2e x max|logit|\n", eb);
    free(la);
    free(lb);
    rm_hf_dir(dir);
    a->cfg.attn_logit_softcap = 5;
    ck_assert(mkdtemp(strcpy(dir, "/tmp/gt_gemma4_hf_XXXXXX")));
    ck_assert_int_eq(gt_hf_gemma_save(a, dir, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "soft-cap"), "%s", err);
    gt_gemma *k;
    ck_assert_msg(!gt_keras_preset_load("tests/fixtures/presets/gemma4", false, &k, NULL, err, sizeof err), "%s", err);
    ck_assert_int_eq(gt_hf_gemma_save(k, dir, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "last layer full attention"), "%s", err);
    rmdir(dir);
    gt_gemma_free(k);
    gt_gemma_free(a);
    gt_gemma_free(b);
}
END_TEST

static float to_bf16(float x) { /* round to nearest even, as Keras' cast */
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert_msg(a && b, "%s -> %s", from, to);
    char buf[1 << 15];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) ck_assert(fwrite(buf, 1, n, b) == n);
    fclose(a);
    fclose(b);
}

/* Kaggle presets are bfloat16: the same model saved by a bfloat16 Gemma4Backbone (2-byte opaque
 * datasets, the 0-d layer scalars included) loads as the fp32 values rounded to bfloat16. */
START_TEST(bfloat16_preset_loads) {
    char dir[] = "/tmp/gt_gemma4_bf16_XXXXXX", p[600], err[1024];
    ck_assert(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/config.json", dir);
    copy_file("tests/fixtures/presets/gemma4/config.json", p);
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    copy_file("tests/fixtures/presets/gemma4_bf16.weights.h5", p);
    gt_gemma *a, *b;
    ck_assert_msg(!gt_keras_preset_load("tests/fixtures/presets/gemma4", false, &a, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_keras_preset_load(dir, false, &b, NULL, err, sizeof err), "%s", err);
    int64_t changed = 0;
    for (int64_t i = 0; i < a->n_values; i++) {
        float want = to_bf16((float)a->data[i]);
        ck_assert_msg((float)b->data[i] == want, "value %lld: %g, expected %g", (long long)i, b->data[i], want);
        changed += want != (float)a->data[i];
    }
    ck_assert(changed > a->n_values / 2);
    for (int64_t i = 0; i < a->cfg.num_layers; i++)
        ck_assert(b->layers[i].layer_scalar->data[0] == to_bf16(a->layers[i].layer_scalar->data[0]));
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
    gt_gemma_free(a);
    gt_gemma_free(b);
}
END_TEST

/* Top-level layers are found by their Keras name, not by class numbering alone: the same preset
 * with the final norm and the PLE norm stored under other numbered names loads identically. */
START_TEST(top_level_layers_found_by_name) {
    char dir[] = "/tmp/gt_gemma4_names_XXXXXX", p[600], err[1024];
    ck_assert(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/config.json", dir);
    copy_file("tests/fixtures/presets/gemma4/config.json", p);
    snprintf(p, sizeof p, "%s/model.weights.h5", dir);
    copy_file("tests/fixtures/presets/gemma4/model.weights.h5", p);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    ck_assert(H5Lmove(f, "layers/rms_normalization", f, "layers/rms_normalization_7", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Lmove(f, "layers/rms_normalization_1", f, "layers/rms_normalization", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Lmove(f, "layers/dense", f, "layers/dense_2", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    gt_gemma *a, *b;
    ck_assert_msg(!gt_keras_preset_load("tests/fixtures/presets/gemma4", false, &a, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_keras_preset_load(dir, false, &b, NULL, err, sizeof err), "%s", err);
    ck_assert(!memcmp(a->data, b->data, (size_t)a->n_values * sizeof *a->data));
    gt_gemma_free(b);
    /* and a preset without the PLE projection names it */
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0 && H5Ldelete(f, "layers/dense_2", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    ck_assert(gt_keras_preset_load(dir, false, &b, NULL, err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "per_layer_model_projection"), "%s", err);
    printf("  expected error: %s\n", err);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
    gt_gemma_free(a);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_parity");
    TCase *tc = tcase_create("kerashub");
    tcase_add_test(tc, structure_and_param_count);
    tcase_add_test(tc, matches_kerashub);
    tcase_add_test(tc, incremental_decoding_matches_full_forward);
    tcase_add_test(tc, kerashub_preset_import);
    tcase_add_test(tc, kerashub_preset_export);
    tcase_add_test(tc, bfloat16_preset_loads);
    tcase_add_test(tc, top_level_layers_found_by_name);
    tcase_add_test(tc, lora_matches_kerashub);
    tcase_add_test(tc, hf_transformers_import_matches);
    tcase_add_test(tc, hf_export_round_trip);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
