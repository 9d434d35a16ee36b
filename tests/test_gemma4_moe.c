/* Gemma 4 Mixture-of-Experts (26B-A4B layout) against the KerasHub golden fixture
 * (tools/reference/make_gemma4_moe_fixture.py): the preset's config and parameter count, weights
 * imported from KerasHub's save_to_preset bit for bit, logits, loss, every gradient, each block's
 * router choices; export round trip; KV-cache decoding; bad MoE configs. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/gemma.h"
#include "models/io/h5io.h"
#include "models/io/hf_gemma.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "tests/cli_run.h"
#include "tests/check_main.h"

#define PRESET "tests/fixtures/presets/gemma4_moe"
#define FIXTURE "tests/fixtures/gemma4_moe.h5"

static float *read_f32(gt_h5 f, const char *path, int64_t expect_size) {
    float *d;
    int nd;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(expect_size < 0 || n == expect_size, "%s: %lld values, expected %lld", path, (long long)n,
                  (long long)expect_size);
    return d;
}

static gt_gemma *load(bool trainable) {
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(gt_keras_preset_load(PRESET, trainable, &m, NULL, err, sizeof err) == 0, "%s", err);
    return m;
}

START_TEST(config_and_param_count) {
    char err[1024];
    gt_gemma_config c;
    ck_assert_msg(gt_keras_preset_config(PRESET, &c, err, sizeof err) == 0, "%s", err);
    ck_assert(c.generation == 4 && c.moe && c.num_experts == 6 && c.expert_dim == 12 && c.experts_per_token == 2);
    ck_assert(c.intermediate_dim == 24 && c.num_global_kv_heads == 1 && c.sliding_pattern == 2);
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(FIXTURE, &f, err, sizeof err) == 0, "%s", err);
    double want;
    ck_assert(gt_h5_attr_f64(f, "/config", "kerashub_param_count", &want, err, sizeof err) == 0);
    ck_assert_int_eq(gt_gemma_param_count(&c), (int64_t)want);
    gt_gemma *m = load(false);
    ck_assert_int_eq(m->n_values, (int64_t)want);
    const gt_gemma_layer *ly = &m->layers[1];
    ck_assert(ly->router && ly->router->shape[0] == 6 && ly->router->shape[1] == 32);
    ck_assert(ly->expert_gate->shape[0] == 6 * 12 && ly->expert_down->shape[0] == 6 * 32 &&
              ly->expert_down->shape[1] == 12 && ly->expert_scale->size == 6 && ly->gate->shape[0] == 24);
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

typedef struct {
    int32_t *ids, *mask32, *labels;
    uint8_t *mask;
    float *weights;
    int64_t B, T;
} inputs;

static void read_inputs(gt_h5 f, inputs *in) {
    char err[512];
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/inputs/token_ids", &in->ids, &nd, shape, err, sizeof err) == 0);
    in->B = shape[0], in->T = shape[1];
    ck_assert(gt_h5_read_i32(f, "/inputs/padding_mask", &in->mask32, &nd, shape, err, sizeof err) == 0);
    ck_assert(gt_h5_read_i32(f, "/inputs/labels", &in->labels, &nd, shape, err, sizeof err) == 0);
    in->weights = read_f32(f, "/inputs/sample_weight", in->B * in->T);
    in->mask = malloc((size_t)(in->B * in->T));
    for (int64_t i = 0; i < in->B * in->T; i++) in->mask[i] = (uint8_t)in->mask32[i];
}

static void free_inputs(inputs *in) {
    free(in->ids);
    free(in->mask32);
    free(in->labels);
    free(in->weights);
    free(in->mask);
}

/* worst |ours - ref| / max|ref| of a tensor's gradient against the fixture's */
static double grad_err(gt_h5 f, const gt_gemma_param *p) {
    char path[160];
    snprintf(path, sizeof path, "/expected/grads/%s", p->name);
    float *g = read_f32(f, path, p->t->size);
    double gmax = 0, dmax = 0;
    for (int64_t j = 0; j < p->t->size; j++) {
        gmax = fmax(gmax, fabs(g[j]));
        dmax = fmax(dmax, fabs((double)p->t->grad[j] - g[j]));
    }
    free(g);
    ck_assert_msg(gmax > 0, "%s: zero reference gradient (test would be vacuous)", path);
    return dmax / gmax;
}

static void check_routes(gt_h5 f, const gt_gemma *m, int64_t n) {
    int64_t k = m->cfg.experts_per_token;
    for (int64_t i = 0; i < m->cfg.num_layers; i++) {
        char p[64], err[512];
        int32_t *want;
        int nd;
        int64_t shape[8];
        snprintf(p, sizeof p, "/expected/router/%lld", (long long)i);
        ck_assert_msg(gt_h5_read_i32(f, p, &want, &nd, shape, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(shape[0] * shape[1], n * k);
        for (int64_t j = 0; j < n * k; j++)
            ck_assert_msg(want[j] == m->moe_routes[i * n * k + j], "layer %lld token %lld: expert %d, KerasHub %d",
                          (long long)i, (long long)(j / k), m->moe_routes[i * n * k + j], want[j]);
        free(want);
    }
}

START_TEST(matches_kerashub) {
    char err[1024];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(FIXTURE, &f, err, sizeof err) == 0, "%s", err);
    gt_gemma *m = load(true);
    inputs in;
    read_inputs(f, &in);
    int64_t n = in.B * in.T, L = m->cfg.num_layers;
    m->moe_routes = calloc((size_t)(L * n * m->cfg.experts_per_token), sizeof *m->moe_routes);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = in.B, .seq = in.T, .token_ids = in.ids, .padding_mask = in.mask};
    gt_tensor *logits = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    double wsum = 0;
    gt_tensor *loss = gt_scale(&ctx, gt_cross_entropy(&ctx, logits, in.labels, in.weights, &wsum, NULL), 1.0 / (double)n);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    check_routes(f, m, n);

    float *want = read_f32(f, "/expected/logits", logits->size);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "logits max error %.3g vs max|logit| %.3g", maxdiff, maxref);
    float *want_loss = read_f32(f, "/expected/loss", 1);
    double rel = fabs(loss->data[0] - want_loss[0]) / fabs(want_loss[0]);
    ck_assert_msg(rel <= 1e-5, "loss %.9g vs %.9g (rel %.3g)", loss->data[0], want_loss[0], rel);

    ck_assert_int_eq(gt_backward(&ctx, loss), GT_OK);
    double worst = 0;
    const char *worst_name = "";
    int checked = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (!m->params[i].t->requires_grad) continue; /* layer_scalar */
        double e = grad_err(f, &m->params[i]);
        if (e > worst) worst = e, worst_name = m->params[i].name;
        checked++;
    }
    ck_assert_int_eq(checked, m->n_params - (int)L);
    ck_assert_msg(worst <= 1e-3, "gradient of %s off by %.3g (relative to its max)", worst_name, worst);
    printf("gemma4_moe.h5: logits err %.2e x max, loss rel %.2e, worst grad %.2e (%s), %d tensors, "
           "%lld x %lld router choices equal\n", maxdiff / maxref, rel, worst, worst_name, checked,
           (long long)L, (long long)(n * m->cfg.experts_per_token));
    free(want);
    free(want_loss);
    free_inputs(&in);
    free(m->moe_routes);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

/* Adapters that keras_hub's save_lora_weights wrote for the MoE backbone (its layer indices count
 * the expert bank, router and MoE norms): logits equal keras_hub's; the file round-trips. */
START_TEST(lora_matches_kerashub) {
    char err[1024];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(FIXTURE, &f, err, sizeof err) == 0, "%s", err);
    gt_gemma *m = load(false);
    gt_lora *l;
    ck_assert_msg(!gt_keras_lora_open(PRESET ".lora.h5", &m->cfg, &l, err, sizeof err), "%s", err);
    int n = 0;
    for (int64_t i = 0; i < m->cfg.num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) n += gt_lora_get(l, i, (gt_lora_target)t) != NULL;
    ck_assert_int_eq(n, 2 * 7 + 2 * 6); /* local layers: all seven; global (k = v): no value */
    inputs in;
    read_inputs(f, &in);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = in.B, .seq = in.T, .token_ids = in.ids, .padding_mask = in.mask};
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
    printf("gemma4 MoE LoRA vs keras_hub: %.2e x max|logit| (adapters move logits by %.2f)\n", maxdiff / maxref, moved);
    ck_assert(moved > 0.1);
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "LoRA logits off by %.3g x max", maxdiff / maxref);
    char dir[] = "/tmp/gt_g4moe_lora_XXXXXX", path[600];
    ck_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.lora.h5", dir);
    ck_assert_msg(!gt_keras_lora_save(path, l, &m->cfg, err, sizeof err), "%s", err);
    gt_lora *l2;
    ck_assert_msg(!gt_keras_lora_open(path, &m->cfg, &l2, err, sizeof err), "%s", err);
    for (int64_t i = 0; i < m->cfg.num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            const gt_lora_adapter *a = gt_lora_get(l, i, (gt_lora_target)t), *b = gt_lora_get(l2, i, (gt_lora_target)t);
            ck_assert(!a == !b);
            if (a) ck_assert(!memcmp(a->a.data, b->a.data, (size_t)a->a.size * sizeof(gt_real)) &&
                             !memcmp(a->b.data, b->b.data, (size_t)a->b.size * sizeof(gt_real)));
        }
    unlink(path);
    rmdir(dir);
    gt_lora_free(l2);
    m->lora = NULL;
    gt_lora_free(l);
    free(want);
    free(base);
    free_inputs(&in);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

/* KerasHub preset -> gemmatrain -> preset: the MoE config and every expert weight survive; and
 * keras_hub's logits on such an export (committed tests/fixtures/presets/ours_gemma4_moe_keras.h5,
 * make_gemma4_moe_fixture.py --check-export) agree with ours. */
START_TEST(preset_export_round_trip) {
    char err[1024], dir[] = "/tmp/gt_g4moe_XXXXXX", out[600], p[700];
    ck_assert(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/m", dir);
    gt_gemma *m = load(false);
    gt_tokenizer *tok; /* any 61-piece SentencePiece model will do: the Gemma 1 fixture's */
    ck_assert_msg(!gt_tok_load_spm("tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm", &tok, err,
                                   sizeof err), "%s", err);
    gt_preset_save_opts o = {.sequence_length = 16, .prov = {.steps = -1, .final_eval_loss = NAN}};
    ck_assert_msg(!gt_keras_preset_save(out, m, tok, &o, err, sizeof err), "%s", err);
    gt_tok_free(tok);
    gt_gemma *m2;
    ck_assert_msg(!gt_keras_preset_load(out, false, &m2, NULL, err, sizeof err), "%s", err);
    gt_gemma_config a = m->cfg, b = m2->cfg;
    memset(a.name, 0, sizeof a.name);
    memset(b.name, 0, sizeof b.name);
    ck_assert_msg(!memcmp(&a, &b, sizeof a), "config differs after the round trip");
    ck_assert_int_eq(m2->n_values, m->n_values);
    ck_assert_msg(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data), "weights differ");
    gt_gemma_free(m2);
    gt_h5 f, fk;
    ck_assert_msg(gt_h5_open_read(FIXTURE, &f, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_h5_open_read("tests/fixtures/presets/ours_gemma4_moe_keras.h5", &fk, err, sizeof err) == 0, "%s",
                  err);
    inputs in;
    read_inputs(f, &in);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = in.B, .seq = in.T, .token_ids = in.ids, .padding_mask = in.mask};
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    float *kl = read_f32(fk, "/logits", z->size);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < z->size; i++) {
        maxref = fmax(maxref, fabs(kl[i]));
        maxdiff = fmax(maxdiff, fabs((double)z->data[i] - kl[i]));
    }
    printf("keras_hub on our Gemma 4 MoE export: logits %.2e x max|logit|\n", maxdiff / maxref);
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "keras_hub disagrees with us: %.3g x max", maxdiff / maxref);
    free(kl);
    free_inputs(&in);
    gt_ctx_free(&ctx);
    gt_h5_close(fk);
    gt_h5_close(f);
    gt_gemma_free(m);
    const char *files[] = {"config.json", "model.weights.h5", "metadata.json", "task.json", "preprocessor.json",
                           "tokenizer.json", "assets/tokenizer/vocabulary.spm", "assets/tokenizer", "assets", "", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        if (unlink(p)) rmdir(p);
    }
    rmdir(dir);
}
END_TEST

/* Prompt, then one token at a time through the KV cache: the full forward's logits at every step
 * (the expert bank routes each new token on its own). */
START_TEST(incremental_decoding_matches_full_forward) {
    gt_gemma *m = load(false);
    int32_t ids[9] = {5, 17, 3, 44, 9, 9, 28, 60, 1};
    int64_t T = 9, V = m->cfg.vocab_size;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch b = {.batch = 1, .seq = T, .token_ids = ids};
    gt_tensor *full = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    gt_gemma_cache cache;
    char err[256];
    ck_assert(gt_gemma_cache_init(&cache, m, T, err, sizeof err) == 0);
    double worst = 0, maxref = 0;
    for (int64_t t = 3; t <= T; t++) {
        gt_tensor *z = t == 3 ? gt_gemma_step(&ctx, m, &cache, ids, 3) : gt_gemma_step(&ctx, m, &cache, ids + t - 1, 1);
        ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
        for (int64_t v = 0; v < V; v++) {
            double r = full->data[(t - 1) * V + v];
            maxref = fmax(maxref, fabs(r));
            worst = fmax(worst, fabs(z->data[v] - r));
        }
    }
    ck_assert_msg(worst <= 1e-5 * maxref, "cached decoding off by %.3g x max", worst / maxref);
    gt_gemma_cache_free(&cache);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
}
END_TEST

/* max |ours - ref| / max|ref| over the real (unpadded) rows: transformers computes padded rows too */
static double logits_err(const gt_tensor *z, const float *want, const uint8_t *mask, int64_t rows, int64_t V) {
    double maxref = 0, maxdiff = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (!mask[r]) continue;
        for (int64_t v = 0; v < V; v++) {
            maxref = fmax(maxref, fabs(want[r * V + v]));
            maxdiff = fmax(maxdiff, fabs((double)z->data[r * V + v] - want[r * V + v]));
        }
    }
    return maxdiff / maxref;
}

/* transformers' Gemma4ForCausalLM with enable_moe_block (tools/reference/
 * make_hf_gemma4_moe_fixture.py): import gives its logits; our HF export reloads with the same
 * config and bits, and transformers reading such an export (committed
 * tests/fixtures/hf/export_gemma4_moe_ref.h5, its --check-export) agrees with us. */
START_TEST(hf_transformers_import_and_export) {
    char err[1024];
    gt_gemma *m;
    ck_assert_msg(!gt_hf_gemma_load("tests/fixtures/hf/gemma4_moe", false, &m, err, sizeof err), "%s", err);
    ck_assert(m->cfg.moe && m->cfg.num_experts == 6 && m->cfg.expert_dim == 12 && m->cfg.experts_per_token == 2);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read("tests/fixtures/hf/gemma4_moe.ref.h5", &f, err, sizeof err), "%s", err);
    inputs in;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/token_ids", &in.ids, &nd, shape, err, sizeof err) == 0);
    in.B = shape[0], in.T = shape[1];
    ck_assert(gt_h5_read_i32(f, "/padding_mask", &in.mask32, &nd, shape, err, sizeof err) == 0);
    in.mask = malloc((size_t)(in.B * in.T));
    for (int64_t i = 0; i < in.B * in.T; i++) in.mask[i] = (uint8_t)in.mask32[i];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = in.B, .seq = in.T, .token_ids = in.ids, .padding_mask = in.mask};
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &batch));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    float *want = read_f32(f, "/logits", z->size);
    double e = logits_err(z, want, in.mask, in.B * in.T, m->cfg.vocab_size);
    ck_assert_msg(e <= 1e-4, "transformers disagrees: %.3g x max", e);
    gt_h5 fx;
    ck_assert_msg(!gt_h5_open_read("tests/fixtures/hf/export_gemma4_moe_ref.h5", &fx, err, sizeof err), "%s", err);
    float *exported = read_f32(fx, "/logits", z->size);
    double ex = logits_err(z, exported, in.mask, in.B * in.T, m->cfg.vocab_size);
    ck_assert_msg(ex <= 1e-4, "transformers on our export disagrees: %.3g x max", ex);
    printf("gemma4 MoE vs transformers: logits %.2e x max; transformers on our export %.2e x max\n", e, ex);

    char dir[] = "/tmp/gt_g4moe_hf_XXXXXX", p[600];
    ck_assert(mkdtemp(dir));
    ck_assert_msg(!gt_hf_gemma_save(m, dir, NULL, err, sizeof err), "%s", err);
    gt_gemma *m2;
    ck_assert_msg(!gt_hf_gemma_load(dir, false, &m2, err, sizeof err), "%s", err);
    gt_gemma_config a = m->cfg, b = m2->cfg;
    memset(a.name, 0, sizeof a.name);
    memset(b.name, 0, sizeof b.name);
    ck_assert_msg(!memcmp(&a, &b, sizeof a), "config differs after the HF round trip");
    ck_assert_msg(!memcmp(m->data, m2->data, (size_t)m->n_values * sizeof *m->data), "weights differ");
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors", "", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (unlink(p)) rmdir(p);
    }
    gt_gemma_free(m2);
    free(want);
    free(exported);
    free(in.ids);
    free(in.mask32);
    free(in.mask);
    gt_ctx_free(&ctx);
    gt_h5_close(fx);
    gt_h5_close(f);
    gt_gemma_free(m);
}
END_TEST

/* configs/tiny.yaml for data and training defaults, its custom model switched off */
#define BASE                                                                                        \
    "model.generation=0 model.vocab_size=0 model.num_layers=0 model.hidden_dim=0 "                  \
    "model.intermediate_dim=0 model.num_query_heads=0 model.num_key_value_heads=0 model.head_dim=0 " \
    "model.sliding_window_size=-1 tokenizer=tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm " \
    "data.train=tests/fixtures/debian-train-200.jsonl data.eval=tests/fixtures/debian-eval-50.jsonl " \
    "data.format=prompt_response data.sequence_length=16 train.batch_size=4 train.micro_batch_size=2 " \
    "train.chunk_rows=16 optimizer.learning_rate=0.01"

/* The CLI on the MoE preset: LoRA on attention lowers the eval loss and its adapter file reloads
 * with the trained loss; full fine-tuning (experts and routers trained) too, and the saved model
 * reloads with its loss. */
START_TEST(lora_and_full_finetune_lower_eval_loss) {
    static char out[1 << 16];
    char dir[64], args[2048];
    snprintf(dir, sizeof dir, "/tmp/gt-test-g4moe-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(args, sizeof args, "train configs/tiny.yaml " BASE " model.weights=" PRESET " train.steps=4 "
             "train.full_finetune=false lora.enabled=true lora.rank=2 lora.targets=[query,value] output_dir=%s/lora", dir);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "adapter.lora.h5"), "exit %d:\n%s", rc, out);
    double before = gt_test_loss_after(out, "eval before training"), trained = gt_test_loss_after(out, "eval after training");
    ck_assert_msg(trained < before, "LoRA training did not lower the eval loss: %.4f -> %.4f", before, trained);
    snprintf(args, sizeof args, "eval configs/tiny.yaml " BASE " model.weights=" PRESET " train.full_finetune=false "
             "lora.enabled=true lora.rank=2 lora.targets=[query,value] lora.weights=%s/lora/adapter.lora.h5", dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "{\"loss\": "), "exit %d:\n%s", rc, out);
    ck_assert_msg(fabs(atof(strstr(out, "{\"loss\": ") + 9) - trained) < 1e-4, "%s", out);
    printf("MoE LoRA: eval loss %.4f -> %.4f\n", before, trained);

    snprintf(args, sizeof args, "train configs/tiny.yaml " BASE " model.weights=" PRESET " train.steps=3 "
             "train.full_finetune=true lora.enabled=false output_dir=%s/full", dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "/model"), "exit %d:\n%s", rc, out);
    before = gt_test_loss_after(out, "eval before training"), trained = gt_test_loss_after(out, "eval after training");
    ck_assert_msg(trained < before, "full fine-tuning did not lower the eval loss: %.4f -> %.4f", before, trained);
    snprintf(args, sizeof args, "eval configs/tiny.yaml " BASE " model.weights=%s/full/model tokenizer= lora.enabled=false",
             dir);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0 && strstr(out, "{\"loss\": "), "exit %d:\n%s", rc, out);
    ck_assert_msg(fabs(atof(strstr(out, "{\"loss\": ") + 9) - trained) < 1e-4, "%s", out);
    printf("MoE full fine-tuning: eval loss %.4f -> %.4f\n", before, trained);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    ck_assert_int_eq(system(args), 0);
}
END_TEST

START_TEST(bad_moe_configs_name_the_field) {
    gt_gemma_config c;
    char err[512];
    ck_assert(gt_gemma_preset("gemma4_26b_a4b", &c, err, sizeof err) == 0);
    ck_assert(c.moe && c.num_experts == 128 && c.expert_dim == 704 && c.experts_per_token == 8);
    c.experts_per_token = 129;
    ck_assert_int_eq(gt_gemma_config_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "num_experts_per_token") != NULL, "%s", err);
    c.experts_per_token = 8, c.num_experts = 0;
    ck_assert_int_eq(gt_gemma_config_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "num_experts") != NULL, "%s", err);
    c.num_experts = 128, c.moe = false; /* expert sizes without the flag: refused, not run dense */
    ck_assert_int_eq(gt_gemma_config_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "enable_moe_block") != NULL, "%s", err);
    ck_assert(gt_gemma_preset("gemma3_1b", &c, err, sizeof err) == 0);
    c.moe = true;
    ck_assert_int_eq(gt_gemma_config_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "MoE") != NULL, "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_moe");
    TCase *tc = tcase_create("moe");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, config_and_param_count);
    tcase_add_test(tc, matches_kerashub);
    tcase_add_test(tc, lora_matches_kerashub);
    tcase_add_test(tc, preset_export_round_trip);
    tcase_add_test(tc, hf_transformers_import_and_export);
    tcase_add_test(tc, incremental_decoding_matches_full_forward);
    tcase_add_test(tc, bad_moe_configs_name_the_field);
    tcase_add_test(tc, lora_and_full_finetune_lower_eval_loss);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
