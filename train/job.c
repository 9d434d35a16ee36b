/* job.c: a job's model, trainables and batch rows (train/job.h). */
#include "train/job.h"

#include "models/gemma_fields.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/blas.h"
#include "models/io/keras_lora.h"
#include "models/io/peft.h"
#include "train/loader.h"
#include "util/fsutil.h"

void gt_job_free(gt_job *j) {
    free(j->slices);
    free(j->ids);
    free(j->labels);
    free(j->mask);
    free(j->weights);
    free(j->positions);
    free(j->segments);
    free(j->eval_keys);
    free(j->eval_lines);
    if (j->has_carry) gt_example_free(&j->carry);
    gt_vrows_free(&j->vis);
    gt_m4rows_free(&j->m4);
    gt_lora_free(j->lora);
    gt_tok_free(j->tok);
    gt_gemma_free(j->model);
    memset(j, 0, sizeof *j);
}

/* model.vision_* over the preset's encoder shapes; a new encoder projects to the decoder's width. */
static void vision_overrides(const gt_config *c, gt_gemma_config *mc) {
    gt_vision_config *v = &mc->vision;
#define VOVR(key) if (c->model.vision.key) v->key = c->model.vision.key
    VOVR(image_size);
    VOVR(patch_size);
    VOVR(num_layers);
    VOVR(hidden_dim);
    VOVR(num_heads);
    VOVR(intermediate_dim);
    VOVR(pool_size);
#undef VOVR
    if (v->num_layers <= 0) return;
    v->output_dim = mc->hidden_dim;
    if (v->layer_norm_epsilon <= 0) v->layer_norm_epsilon = 1e-6;
}

int gt_job_build_model(gt_job *j, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    bool full = c->train.full_finetune;
    /* LoRA with a stored base: build it in its storage type, never as fp32 matrices */
    gt_frozen_dtype dt = c->lora.enabled && !full ? c->model.frozen_dtype : GT_FROZEN_FP32;
    if (c->model.weights[0]) {
        gt_tokenizer **tok = c->tokenizer[0] ? NULL : &j->tok;
        if (dt == GT_FROZEN_FP32 ? gt_load_model(c->model.weights, full, &j->model, tok, err, errn)
                                 : gt_load_model_frozen(c->model.weights, dt, &j->model, tok, err, errn))
            return -1;
    } else {
        gt_gemma_config mc;
        if (c->model.preset[0]) {
            if (gt_gemma_preset(c->model.preset, &mc, err, errn)) return -1;
        } else {
            gt_gemma_config_defaults(&mc, (int)c->model.generation);
        }
        if (c->model.generation && c->model.generation != mc.generation) gt_gemma_config_defaults(&mc, (int)c->model.generation);
#define OVR(field, key) if (c->model.key) mc.field = c->model.key
        OVR(vocab_size, vocab_size);
        OVR(num_layers, num_layers);
        OVR(hidden_dim, hidden_dim);
        OVR(intermediate_dim, intermediate_dim);
        OVR(num_query_heads, num_query_heads);
        OVR(num_kv_heads, num_key_value_heads);
        OVR(head_dim, head_dim);
#undef OVR
        if (c->model.sliding_window_size >= 0) mc.sliding_window = c->model.sliding_window_size;
        size_t nf;
        const gt_gemma_field *fl = gt_gemma_fields(&nf);
        for (size_t i = 0; i < nf && i < GT_CFG_ARCH; i++)
            if (c->model.architecture_set[i]) gt_gemma_field_set(&mc, &fl[i], c->model.architecture[i]);
        if (mc.sliding_window == 0) mc.sliding_pattern = 0;
        if (c->model.attention_logit_soft_cap >= 0) mc.attn_logit_softcap = c->model.attention_logit_soft_cap;
        if (c->model.final_logit_soft_cap >= 0) mc.final_logit_softcap = c->model.final_logit_soft_cap;
        if (mc.generation != 4) vision_overrides(c, &mc); /* Gemma 4's towers: train/media4_rows */
        char e[512];
        if (full ? gt_gemma_create(&mc, true, &j->model, e, sizeof e) : gt_gemma_create_frozen(&mc, dt, &j->model, e, sizeof e))
            return snprintf(err, errn, "model: %s", e), -1;
        gt_gemma_init_random(j->model, (uint64_t)c->model.init_seed, c->model.init_std);
    }
    if (j->model->cfg.generation == 4 ? gt_m4rows_build(&j->m4, j->model, c, err, errn)
                                      : gt_vrows_build(&j->vis, j->model, c, err, errn))
        return -1;
    if (c->tokenizer[0] && gt_tok_load(c->tokenizer, &j->tok, err, errn)) return -1;
    if (!j->tok) return snprintf(err, errn, "tokenizer: required (the model file has none)"), -1;
    /* HF's Gemma 3 tokenizer.json lists 262145 pieces (an image token past the text vocabulary);
     * tolerate a few such extras: text never encodes to them, and the embedding op names any id
     * out of range. */
    if (gt_tok_vocab_size(j->tok) > j->model->cfg.vocab_size + 64)
        return snprintf(err, errn, "tokenizer has %d pieces but the model's vocabulary is %lld",
                        gt_tok_vocab_size(j->tok), (long long)j->model->cfg.vocab_size), -1;
    return 0;
}

/* The encoder whose adapters share the decoder's .lora.h5 (a Gemma3Backbone's), or NULL. */
static gt_vision *mm_encoder(const gt_job *j) { return j->model->cfg.generation == 3 ? j->vis.enc : NULL; }

static bool excluded(const gt_config *c, const char *name) {
    const char *pats[GT_CFG_LIST];
    for (int i = 0; i < c->optimizer.n_exclude; i++) pats[i] = c->optimizer.exclude_from_weight_decay[i];
    return gt_optim_name_excluded(name, pats, c->optimizer.n_exclude);
}

/* The vision encoder's trainable tensors (model.vision_train) after the decoder's. */
static int add_vision_slices(gt_job *j, char *err, size_t errn) {
    gt_tensor *const *t;
    int64_t n = gt_vrows_trainables(&j->vis, &t);
    if (j->m4.n_train) t = j->m4.train_t, n = j->m4.n_train;
    if (!n) return 0;
    gt_param_slice *p = realloc(j->slices, sizeof *p * (size_t)(j->n_slices + n));
    if (!p) return snprintf(err, errn, "out of memory"), -1;
    j->slices = p;
    for (int64_t i = 0; i < n; i++)
        p[j->n_slices++] = (gt_param_slice){t[i]->name, t[i]->data, t[i]->grad, t[i]->size, !excluded(j->cfg, t[i]->name)};
    return 0;
}

int gt_job_build_trainables(gt_job *j, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    gt_gemma *m = j->model;
    if (c->lora.enabled) {
        if (!j->lora) { /* else opened from lora.weights already (open_adapters) */
            unsigned targets = 0;
            for (int i = 0; i < c->lora.n_targets; i++) targets |= 1u << c->lora.targets[i];
            double alpha = c->lora.alpha > 0 ? c->lora.alpha : (double)c->lora.rank;
            if (gt_lora_create_for(&m->cfg, c->lora.rank, alpha, targets, (uint64_t)c->lora.seed, &j->lora, err, errn))
                return -1;
            if (c->lora.weights[0] && gt_peft_detect(c->lora.weights))
                return snprintf(err, errn, "lora.weights: %s is a PEFT adapter: eval, generate and export read it; "
                                "training from it is not supported yet (start from a Keras .lora.h5)", c->lora.weights), -1;
            if (c->lora.weights[0] && gt_keras_lora_load_mm(c->lora.weights, j->lora, &m->cfg, mm_encoder(j), err, errn))
                return -1;
        }
        m->lora = j->lora;
        j->lora->dropout = c->lora.dropout;
        if (m->frozen_dtype != c->model.frozen_dtype && gt_gemma_set_frozen_dtype(m, c->model.frozen_dtype, err, errn))
            return -1;
        if (gt_gemma_set_compute_bf16(m, c->model.compute_dtype == GT_COMPUTE_BFLOAT16, err, errn)) return -1;
        j->slices = calloc((size_t)(2 * m->cfg.num_layers * GT_LORA_NTARGETS), sizeof *j->slices);
        if (!j->slices) return snprintf(err, errn, "out of memory"), -1;
        for (int64_t i = 0; i < m->cfg.num_layers; i++)
            for (int t = 0; t < GT_LORA_NTARGETS; t++) {
                gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(j->lora, i, (gt_lora_target)t);
                if (!ad) continue;
                j->slices[j->n_slices++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, !excluded(c, ad->a.name)};
                j->slices[j->n_slices++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, !excluded(c, ad->b.name)};
            }
    } else {
        j->slices = calloc((size_t)m->n_params, sizeof *j->slices);
        if (!j->slices) return snprintf(err, errn, "out of memory"), -1;
        for (int i = 0; i < m->n_params; i++) {
            gt_tensor *t = m->params[i].t;
            if (!t->requires_grad) continue; /* frozen constants (Gemma 4 layer_scalar) */
            j->slices[j->n_slices++] = (gt_param_slice){m->params[i].name, t->data, t->grad, t->size, !excluded(c, m->params[i].name)};
        }
    }
    return add_vision_slices(j, err, errn);
}

int gt_job_alloc_rows(gt_job *j, int64_t rows, char *err, size_t errn) {
    j->rows = rows;
    j->S = j->cfg->data.sequence_length;
    size_t n = (size_t)(rows * j->S);
    j->ids = malloc(n * sizeof *j->ids);
    j->labels = malloc(n * sizeof *j->labels);
    j->mask = malloc(n);
    j->weights = malloc(n * sizeof *j->weights);
    if (j->cfg->data.packing) {
        j->positions = malloc(n * sizeof *j->positions);
        j->segments = malloc(n * sizeof *j->segments);
        if (!j->positions || !j->segments) return snprintf(err, errn, "out of memory for %zu tokens", n), -1;
    }
    if (!j->ids || !j->labels || !j->mask || !j->weights) return snprintf(err, errn, "out of memory for %zu tokens", n), -1;
    if (gt_vrows_alloc(&j->vis, rows, j->S, j->cfg->data.max_images_per_prompt, err, errn) ||
        gt_m4rows_alloc(&j->m4, j->tok, rows, j->S, j->cfg->data.max_images_per_prompt,
                        j->cfg->data.max_audio_per_prompt, err, errn))
        return -1;
    j->pp = (gt_pp_cfg){.seq_len = j->S, .add_bos = j->cfg->data.add_start_token, .add_eos = j->cfg->data.add_end_token,
                        .template_ = j->cfg->data.template_, .chat_default = GT_TEMPLATE_GEMMA_CHAT};
    /* chat records and template auto follow the model's generation */
    if (j->model && j->model->cfg.generation == 4) j->pp.chat_default = GT_TEMPLATE_GEMMA4_CHAT;
    j->pp.image_tokens = j->vis.tokens;
    return 0;
}

/* Fill row r of the batch from example ex. */
int gt_job_fill_row(gt_job *j, const char *file, int64_t r, const gt_example *ex, char *err, size_t errn) {
    int64_t o = r * j->S;
    char e[512];
    if (j->m4.on) { /* Gemma 4: the clips' token counts shape the prompt */
        int rc = gt_m4rows_prepare(&j->m4, r, ex, &j->pp, e, sizeof e) ||
                 gt_pp_example(j->tok, &j->pp, ex, j->ids + o, j->labels + o, j->mask + o, j->weights + o, e, sizeof e) ||
                 gt_m4rows_check(&j->m4, r, ex, j->ids + o, e, sizeof e);
        j->pp.image4_tokens = 0, j->pp.audio_tokens = NULL, j->pp.n_audio = 0;
        return rc ? snprintf(err, errn, "%s:%lld: %s", file, (long long)ex->line, e), -1 : 0;
    }
    if (gt_pp_example(j->tok, &j->pp, ex, j->ids + o, j->labels + o, j->mask + o, j->weights + o, e, sizeof e))
        return snprintf(err, errn, "%s:%lld: %s", file, (long long)ex->line, e), -1;
    if (gt_vrows_fill(&j->vis, j->tok, r, ex, j->ids + o, e, sizeof e))
        return snprintf(err, errn, "%s:%lld: %s", file, (long long)ex->line, e), -1;
    return 0;
}

void gt_job_attach_images(const gt_job *j, int64_t first_row, gt_micro_batch *mb) {
    if (j->m4.on) { /* media slots in vision_mask too: a batch cut keeps whole spans */
        if (!j->m4.has_v && !j->m4.has_a) return; /* a text-only Gemma 4 */
        mb->media4 = &j->m4;
        mb->media4_row0 = first_row;
        mb->vision_mask = j->m4.mask + first_row * j->S;
        return;
    }
    if (!j->vis.enc) return;
    mb->encoder = j->vis.enc;
    mb->pixels = j->vis.pixels + first_row * j->vis.slots * j->vis.per;
    mb->n_images = j->vis.count + first_row;
    mb->image_slots = j->vis.slots;
    mb->vision_mask = j->vis.mask + first_row * j->S;
}

/* Packing: fill row r with whole examples from the dataset (the one that does not fit is kept for
 * the next row). */
int gt_job_fill_packed_row(gt_job *j, gt_dataset *ds, int64_t r, char *err, size_t errn) {
    int64_t o = r * j->S;
    gt_pp_row row = {j->ids + o, j->labels + o, j->positions + o, j->segments + o, j->mask + o, j->weights + o, 0, 0};
    gt_pp_row_clear(&j->pp, gt_tok_pad(j->tok), &row);
    for (;;) {
        if (!j->has_carry) {
            j->carry_epoch = ds->epoch;
            j->carry_next = ds->next;
            if (gt_dataset_next(ds, &j->carry, NULL, err, errn)) return -1;
            j->has_carry = true;
        }
        char e[512];
        if (j->carry.n_images || j->carry.n_audio)
            return snprintf(err, errn, "%s:%lld: data.packing does not take records with %s yet", ds->path,
                            (long long)j->carry.line, j->carry.n_images ? "images" : "audio"), -1;
        int rc = gt_pp_pack_append(j->tok, &j->pp, &j->carry, &row, e, sizeof e);
        if (rc < 0) return snprintf(err, errn, "%s:%lld: %s", ds->path, (long long)j->carry.line, e), -1;
        if (rc == 1) return 0; /* row full: the carried example opens the next one */
        gt_example_free(&j->carry);
        j->has_carry = false;
    }
}

void gt_job_init(gt_job *j, const gt_config *c, gt_dist *dist) {
    memset(j, 0, sizeof *j);
    j->cfg = c;
    j->dist = dist;
    int threads = (int)c->train.threads;
    if (!threads && dist->world > 1 && !getenv("GT_THREADS")) threads = gt_dist_default_threads(dist);
    gt_threads_set(threads);
}

/* The effective config to stderr and, when save_config, output_dir/config.yaml (rank 0). */
int gt_job_announce(gt_job *j, bool save_config, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    const gt_dist *dist = j->dist;
    if (dist->rank == 0) {
        fprintf(stderr, "--- effective config ---\n");
        gt_config_write(c, stderr);
        fprintf(stderr, "---\n");
        if (dist->world > 1)
            fprintf(stderr, "data parallel: %d ranks x %d threads\n", dist->world, gt_threads());
    }
    if (save_config && c->output_dir[0] && dist->rank == 0) {
        char p[GT_CFG_STR + 32], e[1024];
        if (gt_mkdir_p(c->output_dir, e, sizeof e)) return snprintf(err, errn, "output_dir: %s", e), -1;
        snprintf(p, sizeof p, "%s/config.yaml", c->output_dir);
        gt_atomic w;
        if (gt_atomic_open(p, &w, e, sizeof e)) return snprintf(err, errn, "output_dir: %s", e), -1;
        gt_config_write(c, w.f);
        if (gt_atomic_commit(&w, e, sizeof e)) return snprintf(err, errn, "output_dir: %s", e), -1;
    }
    return 0;
}

int gt_job_setup(gt_job *j, const gt_config *c, gt_dist *dist, int64_t rows, char *err, size_t errn) {
    gt_job_init(j, c, dist);
    if (gt_job_announce(j, true, err, errn) || gt_job_build_model(j, err, errn) || gt_job_build_trainables(j, err, errn) ||
        gt_job_alloc_rows(j, rows, err, errn))
        return -1;
    return 0;
}

/* eval --lora: the adapters of lora.weights with the file's rank and targets (c's lora.rank and
 * lora.targets describe fresh adapters; here there are none to create), which c, the effective
 * config, then shows. The whole file is checked against the model before anything is printed. */
int gt_job_open_adapters(gt_job *j, gt_config *c, char *err, size_t errn) {
    if (!c->lora.enabled || !c->lora.weights[0]) return 0;
    if (gt_peft_detect(c->lora.weights) ? gt_adapters_open(c->lora.weights, &j->model->cfg, &j->lora, err, errn)
                                        : gt_keras_lora_open_mm(c->lora.weights, &j->model->cfg, mm_encoder(j), &j->lora, err, errn))
        return -1;
    c->lora.rank = j->lora->rank;
    c->lora.alpha = j->lora->alpha; /* = rank: Keras files hold B already scaled */
    memset(c->lora.targets, 0, sizeof c->lora.targets);
    c->lora.n_targets = 0;
    for (int t = 0; t < GT_LORA_NTARGETS; t++)
        if (j->lora->targets & 1u << t) c->lora.targets[c->lora.n_targets++] = (gt_lora_target)t;
    return 0;
}
