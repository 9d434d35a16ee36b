#include "train/trainer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "models/keras_lora.h"
#include "models/keras_preset.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/loader.h"
#include "train/step.h"
#include "util/fsutil.h"

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* x as a JSON number with fmt's digits (the file stays short and diffable); a non-finite x (a
 * step skipped under train.on_nonfinite: skip) is null, which keeps the line valid JSON. */
static json_t *jnum(double x, const char *fmt) {
    if (!isfinite(x)) return json_null();
    char t[64];
    snprintf(t, sizeof t, fmt, x);
    return json_real(strtod(t, NULL));
}

/* A sum of token weights, whole in practice: an integer. */
static json_t *jcount(double x) {
    return isfinite(x) ? json_integer((json_int_t)llround(x)) : json_null();
}

/* One JSON line (keys in the order packed); o is consumed. 15 digits print every value jnum
 * rounded exactly. */
static void put_json(FILE *f, json_t *o, bool flush) {
    if (!o) return;
    json_dumpf(o, f, JSON_REAL_PRECISION(15));
    fputc('\n', f);
    if (flush) fflush(f);
    json_decref(o);
}

typedef struct job {
    const gt_config *cfg;
    gt_gemma *model;
    gt_lora *lora;
    gt_tokenizer *tok;
    gt_param_slice *slices;
    int n_slices;
    gt_pp_cfg pp;
    /* one global batch of rows */
    int64_t rows, S;
    int32_t *ids, *labels;
    uint8_t *mask;
    gt_real *weights;
    int32_t *positions, *segments; /* packing only */
    gt_example carry;              /* packing: the example that did not fit the last row */
    bool has_carry;
    int64_t carry_epoch, carry_next; /* the dataset position the carried example was read from */
    gt_dist *dist;                 /* this rank's place in the job (rank 0 of 1 without MPI) */
    bool sharded;                  /* the update is sharded over the ranks (gt_dist_shards) */
    struct eval_key *eval_keys;    /* eval examples by length (computed at the first eval) */
    int64_t *eval_lines;           /* their line numbers, in file order */
} job;

static void job_free(job *j) {
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
    gt_lora_free(j->lora);
    gt_tok_free(j->tok);
    gt_gemma_free(j->model);
    memset(j, 0, sizeof *j);
}

static int build_model(job *j, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    bool full = c->train.full_finetune;
    if (c->model.weights[0]) {
        if (gt_load_model(c->model.weights, full, &j->model, c->tokenizer[0] ? NULL : &j->tok, err, errn)) return -1;
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
        if (mc.sliding_window == 0) mc.sliding_pattern = 0;
        if (c->model.attention_logit_soft_cap >= 0) mc.attn_logit_softcap = c->model.attention_logit_soft_cap;
        if (c->model.final_logit_soft_cap >= 0) mc.final_logit_softcap = c->model.final_logit_soft_cap;
        char e[512];
        if (gt_gemma_create(&mc, full, &j->model, e, sizeof e)) return snprintf(err, errn, "model: %s", e), -1;
        gt_gemma_init_random(j->model, (uint64_t)c->model.init_seed, c->model.init_std);
    }
    if (c->tokenizer[0] && gt_load_tokenizer(c->tokenizer, &j->tok, err, errn)) return -1;
    if (!j->tok) return snprintf(err, errn, "tokenizer: required (the model file has none)"), -1;
    /* HF's Gemma 3 tokenizer.json lists 262145 pieces (an image token past the text vocabulary);
     * tolerate a few such extras: text never encodes to them, and the embedding op names any id
     * out of range. */
    if (gt_tok_vocab_size(j->tok) > j->model->cfg.vocab_size + 64)
        return snprintf(err, errn, "tokenizer has %d pieces but the model's vocabulary is %lld",
                        gt_tok_vocab_size(j->tok), (long long)j->model->cfg.vocab_size), -1;
    return 0;
}

static bool excluded(const gt_config *c, const char *name) {
    const char *pats[GT_CFG_LIST];
    for (int i = 0; i < c->optimizer.n_exclude; i++) pats[i] = c->optimizer.exclude_from_weight_decay[i];
    return gt_optim_name_excluded(name, pats, c->optimizer.n_exclude);
}

static int build_trainables(job *j, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    gt_gemma *m = j->model;
    if (c->lora.enabled) {
        if (!j->lora) { /* else opened from lora.weights already (open_adapters) */
            unsigned targets = 0;
            for (int i = 0; i < c->lora.n_targets; i++) targets |= 1u << c->lora.targets[i];
            double alpha = c->lora.alpha > 0 ? c->lora.alpha : (double)c->lora.rank;
            if (gt_lora_create_for(&m->cfg, c->lora.rank, alpha, targets, (uint64_t)c->lora.seed, &j->lora, err, errn))
                return -1;
            if (c->lora.weights[0] && gt_keras_lora_load(c->lora.weights, j->lora, &m->cfg, err, errn)) return -1;
        }
        m->lora = j->lora;
        j->lora->dropout = c->lora.dropout;
        if (gt_gemma_set_frozen_dtype(m, c->model.frozen_dtype, err, errn)) return -1;
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
    return 0;
}

static int alloc_rows(job *j, int64_t rows, char *err, size_t errn) {
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
    j->pp = (gt_pp_cfg){j->S, j->cfg->data.add_start_token, j->cfg->data.add_end_token, j->cfg->data.template_};
    return 0;
}

/* Fill row r of the batch from example ex. */
static int fill_row(job *j, int64_t r, const gt_example *ex, char *err, size_t errn) {
    int64_t o = r * j->S;
    char e[512];
    if (gt_pp_example(j->tok, &j->pp, ex, j->ids + o, j->labels + o, j->mask + o, j->weights + o, e, sizeof e))
        return snprintf(err, errn, "line %lld: %s", (long long)ex->line, e), -1;
    return 0;
}

/* Packing: fill row r with whole examples from the dataset (the one that does not fit is kept for
 * the next row). */
static int fill_packed_row(job *j, gt_dataset *ds, int64_t r, char *err, size_t errn) {
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
        int rc = gt_pp_pack_append(j->tok, &j->pp, &j->carry, &row, e, sizeof e);
        if (rc < 0) return snprintf(err, errn, "line %lld: %s", (long long)j->carry.line, e), -1;
        if (rc == 1) return 0; /* row full: the carried example opens the next one */
        gt_example_free(&j->carry);
        j->has_carry = false;
    }
}

typedef struct {
    double wce, w;
    int64_t examples;
} eval_result;

/* Orders examples by length, then index (qsort_r is not C11: the lengths travel in the keys). */
typedef struct eval_key {
    int64_t len, index;
} eval_key;

static int cmp_eval_key(const void *pa, const void *pb) {
    const eval_key *a = pa, *b = pb;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* j->eval_keys: the first n examples of ds by length (the last weighted label of each one's row),
 * and their line numbers; once per job, the eval set does not change. 0 or -1 with a message. */
static int eval_order(job *j, gt_dataset *ds, int64_t n, char *err, size_t errn) {
    eval_key *keys = malloc(sizeof *keys * (size_t)(n ? n : 1));
    int64_t *lines = malloc(sizeof *lines * (size_t)(n ? n : 1));
    if (!keys || !lines) return free(keys), free(lines), snprintf(err, errn, "out of memory"), -1;
    for (int64_t i = 0; i < n; i++) {
        gt_example ex;
        if (gt_dataset_read(ds, i, &ex, err, errn)) return free(keys), free(lines), -1;
        int frc = fill_row(j, 0, &ex, err, errn);
        lines[i] = ex.line;
        gt_example_free(&ex);
        if (frc) return free(keys), free(lines), -1;
        int64_t len = 0;
        for (int64_t t = 0; t < j->S; t++)
            if (j->weights[t] != 0) len = t + 1;
        keys[i] = (eval_key){len, i};
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_eval_key);
    j->eval_keys = keys;
    j->eval_lines = lines;
    return 0;
}

/* Examples go through in batches of similar length (each batch runs only up to its longest
 * example's last weighted label, gt_step_eval), so little of an eval is padding; the per-example
 * output keeps file order. */
static int evaluate(job *j, gt_dataset *ds, gt_ctx *ctx, FILE *per_example, eval_result *res, char *err, size_t errn) {
    memset(res, 0, sizeof *res);
    int64_t n = ds->n, limit = j->cfg->eval.max_examples;
    if (limit > 0 && limit < n) n = limit;
    gt_real *row_ce = malloc(sizeof(gt_real) * (size_t)(j->rows * j->S));
    double *ex_loss = per_example ? malloc(sizeof(double) * 2 * (size_t)(n ? n : 1)) : NULL;
    int rc = -1;
    if (!row_ce || (per_example && !ex_loss) || (!j->eval_keys && eval_order(j, ds, n, err, errn))) {
        if (!row_ce || (per_example && !ex_loss)) snprintf(err, errn, "out of memory");
        goto done;
    }
    const eval_key *keys = j->eval_keys;
    const int64_t *lines = j->eval_lines;
    int world = j->dist->world, rank = j->dist->rank;
    for (int64_t i0 = 0, k = 0; i0 < n; i0 += j->rows, k++) {
        if (k % world != rank) continue; /* ranks take eval batches in turn */
        int64_t b = n - i0 < j->rows ? n - i0 : j->rows;
        for (int64_t r = 0; r < b; r++) {
            gt_example ex;
            if (gt_dataset_read(ds, keys[i0 + r].index, &ex, err, errn)) goto done;
            int frc = fill_row(j, r, &ex, err, errn);
            gt_example_free(&ex);
            if (frc) goto done;
        }
        gt_micro_batch mb = {{.batch = b, .seq = j->S, .token_ids = j->ids, .padding_mask = j->mask}, j->labels, j->weights, 0};
        double wce, w;
        if (gt_step_eval(ctx, j->model, &mb, j->cfg->train.chunk_rows, &wce, &w, row_ce, err, errn)) goto done;
        res->wce += wce;
        res->w += w;
        if (per_example)
            for (int64_t r = 0; r < b; r++) {
                double sum = 0, ws = 0;
                for (int64_t t = 0; t < j->S; t++) {
                    sum += (double)j->weights[r * j->S + t] * row_ce[r * j->S + t];
                    ws += j->weights[r * j->S + t];
                }
                ex_loss[2 * keys[i0 + r].index] = ws > 0 ? sum / ws : 0.0;
                ex_loss[2 * keys[i0 + r].index + 1] = ws;
            }
    }
    if (per_example) /* one process (the eval command): every example is here */
        for (int64_t i = 0; i < n; i++)
            put_json(per_example,
                     json_pack("{s:I, s:o, s:o}", "line", (json_int_t)lines[i], "loss", jnum(ex_loss[2 * i], "%.6f"),
                               "tokens", jcount(ex_loss[2 * i + 1])),
                     false);
    res->examples = n;
    double sums[2] = {res->wce, res->w};
    if (gt_dist_sum_f64(j->dist, sums, 2, err, errn)) goto done;
    res->wce = sums[0];
    res->w = sums[1];
    rc = 0;
done:
    free(row_ce);
    free(ex_loss);
    return rc;
}

static void print_eval(const char *label, const eval_result *r, FILE *metrics, int64_t step) {
    double loss = r->w > 0 ? r->wce / r->w : 0;
    fprintf(stderr, "%s: loss %.4f, perplexity %.3f over %.0f weighted tokens in %lld examples\n", label,
            loss, exp(loss), r->w, (long long)r->examples);
    if (metrics)
        put_json(metrics,
                 json_pack("{s:I, s:o, s:o, s:o}", "step", (json_int_t)step, "eval_loss", jnum(loss, "%.6f"),
                           "eval_perplexity", jnum(exp(loss), "%.4f"), "eval_tokens", jcount(r->w)),
                 true);
}

static void job_init(job *j, const gt_config *c, gt_dist *dist) {
    memset(j, 0, sizeof *j);
    j->cfg = c;
    j->dist = dist;
    int threads = (int)c->train.threads;
    if (!threads && dist->world > 1 && !getenv("GT_THREADS")) threads = gt_dist_default_threads(dist);
    gt_threads_set(threads);
}

/* The effective config to stderr and output_dir/config.yaml (rank 0). */
static int announce(job *j, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    const gt_dist *dist = j->dist;
    if (dist->rank == 0) {
        fprintf(stderr, "--- effective config ---\n");
        gt_config_write(c, stderr);
        fprintf(stderr, "---\n");
        if (dist->world > 1)
            fprintf(stderr, "data parallel: %d ranks x %d threads\n", dist->world, gt_threads());
    }
    if (c->output_dir[0] && dist->rank == 0) {
        (void)gt_mkdir_p(c->output_dir, NULL, 0); /* a failure shows at the first write there */
        char p[GT_CFG_STR + 32];
        snprintf(p, sizeof p, "%s/config.yaml", c->output_dir);
        FILE *f = fopen(p, "w");
        if (!f) return snprintf(err, errn, "%s: cannot write: %s", p, strerror(errno)), -1;
        gt_config_write(c, f);
        fclose(f);
    }
    return 0;
}

static int setup(job *j, const gt_config *c, gt_dist *dist, int64_t rows, char *err, size_t errn) {
    job_init(j, c, dist);
    if (announce(j, err, errn) || build_model(j, err, errn) || build_trainables(j, err, errn) ||
        alloc_rows(j, rows, err, errn))
        return -1;
    return 0;
}

/* eval --lora: the adapters of lora.weights with the file's rank and targets (c's lora.rank and
 * lora.targets describe fresh adapters; here there are none to create), which c, the effective
 * config, then shows. The whole file is checked against the model before anything is printed. */
static int open_adapters(job *j, gt_config *c, char *err, size_t errn) {
    if (!c->lora.enabled || !c->lora.weights[0]) return 0;
    if (gt_keras_lora_open(c->lora.weights, &j->model->cfg, &j->lora, err, errn)) return -1;
    c->lora.rank = j->lora->rank;
    c->lora.alpha = j->lora->alpha; /* = rank: Keras files hold B already scaled */
    memset(c->lora.targets, 0, sizeof c->lora.targets);
    c->lora.n_targets = 0;
    for (int t = 0; t < GT_LORA_NTARGETS; t++)
        if (j->lora->targets & 1u << t) c->lora.targets[c->lora.n_targets++] = (gt_lora_target)t;
    return 0;
}

static void fmt_eta(double s, char *out, size_t n) {
    if (!(s >= 0) || s > 1e7) snprintf(out, n, "?");
    else if (s >= 3600) snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* Test hook: GT_FAULT_INJECT=rank_kill:R:S kills rank R (SIGKILL) as it starts step S. */
static void fault_rank_kill(int rank, int64_t step) {
    const char *s = getenv("GT_FAULT_INJECT");
    int r;
    long long at;
    if (s && sscanf(s, "rank_kill:%d:%lld", &r, &at) == 2 && r == rank && at == step) raise(SIGKILL);
}

/* Test hook: GT_FAULT_INJECT=nonfinite:S puts a NaN into the first value of every trainable slice
 * for step S only, as a diverging step would (train.on_nonfinite decides what follows). */
static bool fault_nonfinite(int64_t step) {
    const char *s = getenv("GT_FAULT_INJECT");
    long long at;
    return s && sscanf(s, "nonfinite:%lld", &at) == 1 && at == step;
}

static char *config_text(const gt_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    gt_config_write(c, f);
    fclose(f);
    return text;
}

/* FNV-1a of the effective config: every rank must run the same job. */
static uint64_t config_hash(const char *text) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h;
}

typedef struct run_state {
    gt_ckpt_model cm;
    gt_ckpt_state st;
    char *yaml;
} run_state;

/* Rank 0 writes the checkpoint of `step`; every rank learns whether it worked. */
static int save_checkpoint(job *j, gt_dataset *train, gt_optim *opt, run_state *rs, int64_t step,
                           int64_t tokens, double elapsed, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    int64_t ok = 1;
    /* a sharded update leaves each rank only its share of the optimizer state current */
    if (j->sharded && gt_dist_gather_state(j->dist, opt, err, errn)) return -1;
    if (j->dist->world > 1) { /* every rank must hold the same weights and data position */
        uint64_t h = 1469598103934665603ull;
        for (int i = 0; i < j->n_slices; i++) {
            const unsigned char *b = (const unsigned char *)j->slices[i].data;
            for (size_t k = 0; k < (size_t)j->slices[i].size * sizeof(gt_real); k++) h = (h ^ b[k]) * 1099511628211ull;
        }
        h ^= (uint64_t)train->epoch * 0x9E3779B97F4A7C15ull ^ (uint64_t)train->next;
        char what[96];
        snprintf(what, sizeof what, "the weights and data position at step %lld", (long long)step);
        if (gt_dist_check_same(j->dist, h, what, err, errn)) return -1;
    }
    if (j->dist->rank == 0) {
        rs->st.step = step;
        rs->st.data_epoch = j->has_carry ? j->carry_epoch : train->epoch;
        rs->st.data_next = j->has_carry ? j->carry_next : train->next;
        rs->st.tokens = tokens;
        rs->st.elapsed_s = elapsed;
        rs->st.world = j->dist->world;
        char path[GT_CFG_STR + 32];
        (void)gt_mkdir_p(c->checkpoint.dir, NULL, 0); /* a failure shows at the save */
        gt_ckpt_path(c->checkpoint.dir, step, path, sizeof path);
        ok = !gt_ckpt_save(path, rs->yaml, &rs->cm, j->slices, j->n_slices, opt, &rs->st, err, errn) &&
             !gt_ckpt_prune(c->checkpoint.dir, (int)c->checkpoint.keep, err, errn);
        if (ok) fprintf(stderr, "checkpoint: %s\n", path);
    }
    char e2[256];
    if (gt_dist_bcast_i64(j->dist, &ok, e2, sizeof e2)) return snprintf(err, errn, "%s", e2), -1;
    if (!ok && j->dist->rank != 0) snprintf(err, errn, "checkpoint: rank 0 could not write step %lld", (long long)step);
    return ok ? 0 : -1;
}

/* The trained result in output_dir: LoRA adapters as a Keras .lora.h5 (load_lora_weights, or
 * lora.weights for eval / export --merge-lora), or after full fine-tuning a KerasHub preset. */
static int save_outputs(job *j, int64_t step, double eval_loss, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    char path[GT_CFG_STR + 32], e[1024];
    if (j->lora) {
        snprintf(path, sizeof path, "%s/adapter.lora.h5", c->output_dir);
        if (gt_keras_lora_save(path, j->lora, &j->model->cfg, err, errn)) return -1;
    } else {
        snprintf(path, sizeof path, "%s/model", c->output_dir);
        gt_preset_save_opts o = {.sequence_length = c->data.sequence_length,
                                 .prov = {c->model.weights[0] ? c->model.weights : c->model.preset[0] ? c->model.preset : NULL,
                                          NULL, false, step, eval_loss}};
        if (gt_keras_preset_save(path, j->model, j->tok, &o, e, sizeof e)) {
            /* the weights are safe in the checkpoint; a model KerasHub cannot express is not fatal */
            fprintf(stderr, "output_dir: no KerasHub preset written: %s\n", e);
            return 0;
        }
    }
    fprintf(stderr, "wrote %s\n", path);
    return 0;
}

/* checkpoint.resume: none, latest, or a path. Returns the step to continue from (0: fresh). */
static int64_t resume(job *j, gt_dataset *train, gt_optim *opt, run_state *rs, int64_t *tokens, double *elapsed,
                      char *err, size_t errn) {
    const gt_config *c = j->cfg;
    char path[GT_CFG_STR + 32];
    switch (c->checkpoint.resume) {
    case GT_RESUME_NONE: return 0;
    case GT_RESUME_LATEST: {
        int64_t step;
        int rc = gt_ckpt_latest(c->checkpoint.dir, path, sizeof path, &step, err, errn);
        if (rc < 0) return -1;
        if (rc == 1) {
            if (j->dist->rank == 0)
                fprintf(stderr, "checkpoint.resume: no checkpoint in %s yet: starting at step 0\n", c->checkpoint.dir);
            return 0;
        }
        break;
    }
    case GT_RESUME_PATH: snprintf(path, sizeof path, "%s", c->checkpoint.resume_path); break;
    }
    gt_ckpt_state st;
    char *yaml = NULL;
    if (gt_ckpt_load(path, &rs->cm, j->slices, j->n_slices, opt, &st, &yaml, err, errn)) return -1;
    /* a changed config is allowed (a longer run, another lr) but said out loud */
    gt_config old;
    char e2[512];
    gt_config_defaults(&old);
    if (yaml && !gt_config_parse_text(yaml, strlen(yaml), path, &old, e2, sizeof e2)) {
        gt_config_resolve(&old);
        gt_config now_ = *c;
        old.checkpoint.resume = c->checkpoint.resume;
        memcpy(old.checkpoint.resume_path, c->checkpoint.resume_path, sizeof old.checkpoint.resume_path);
        old.train.stop_after_steps = now_.train.stop_after_steps;
        const char *d = gt_config_diff(&old, &now_);
        if (d && j->dist->rank == 0) fprintf(stderr, "resume: the config differs from the checkpoint's (first at '%s')\n", d);
    }
    free(yaml);
    if (gt_dataset_seek(train, st.data_epoch, st.data_next, err, errn)) return -1;
    *tokens = st.tokens;
    *elapsed = st.elapsed_s;
    if (j->dist->rank == 0)
        fprintf(stderr, "resumed from %s at step %lld (written by %lld rank%s)\n", path, (long long)st.step,
                (long long)st.world, st.world == 1 ? "" : "s");
    if (gt_dist_check_same(j->dist, (uint64_t)st.step, "the resumed step", err, errn)) return -1;
    return st.step;
}

int gt_train_restore(const gt_config *c, const char *ckpt, gt_gemma **model, gt_lora **lora,
                     gt_tokenizer **tok, int64_t *step, char *err, size_t errn) {
    job j;
    gt_dist solo = {.world = 1, .local_world = 1};
    gt_optim opt = {0};
    int rc = -1;
    memset(&j, 0, sizeof j);
    j.cfg = c;
    j.dist = &solo;
    *model = NULL;
    *lora = NULL;
    *tok = NULL;
    if (build_model(&j, err, errn) || build_trainables(&j, err, errn)) goto done;
    /* the optimizer only gives the checkpoint's state arrays a place to land */
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, c->optimizer.name);
    oc.momentum = c->optimizer.momentum;
    if (gt_optim_init(&opt, &oc, j.slices, j.n_slices, err, errn)) goto done;
    gt_ckpt_model cm = {&j.model->cfg, j.lora, gt_cfg_optimizer_names[c->optimizer.name]};
    gt_ckpt_state st;
    if (gt_ckpt_load(ckpt, &cm, j.slices, j.n_slices, &opt, &st, NULL, err, errn)) goto done;
    *model = j.model;
    *lora = j.lora;
    *tok = j.tok;
    *step = st.step;
    j.model = NULL;
    j.lora = NULL;
    j.tok = NULL;
    rc = 0;
done:
    gt_optim_free(&opt);
    job_free(&j);
    return rc;
}

int gt_train_job(const gt_config *c, gt_dist *dist, char *err, size_t errn) {
    job j;
    gt_dist solo = {.world = 1, .local_world = 1};
    if (!dist) dist = &solo;
    const int world = dist->world, rank = dist->rank;
    bool lead = rank == 0;
    int64_t mb = c->train.micro_batch_size ? c->train.micro_batch_size : c->train.batch_size;
    int64_t B = c->train.batch_size, L = B / world;
    if (mb == B) mb = L; /* the default micro-batch is the whole batch: each rank's share of it */
    int64_t n_micro = mb ? L / mb : 0;
    gt_dataset train = {0}, ev = {0};
    gt_optim opt = {0};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    FILE *metrics = NULL;
    run_state rs = {0};
    gt_micro_batch *mbs = NULL;
    struct sigaction sa = {0}, old;
    bool handler = false;
    int rc = -1;
    int64_t total = 0; /* optimizer steps: train.steps, or from train.epochs and the data's size */
    memset(&j, 0, sizeof j);
    if (!c->data.train[0]) {
        snprintf(err, errn, "data.train: required for training");
        goto done;
    }
    if (B % world || !mb || L % mb) {
        snprintf(err, errn, "train.batch_size (%lld) must split evenly over %d ranks into micro-batches of "
                 "train.micro_batch_size (%lld)", (long long)B, world, (long long)mb);
        goto done;
    }
    if (!(rs.yaml = config_text(c))) {
        snprintf(err, errn, "out of memory");
        goto done;
    }
    if (gt_dist_check_same(dist, config_hash(rs.yaml), "the effective config (give every rank the same config)", err, errn))
        goto done;
    if (setup(&j, c, dist, B, err, errn)) goto done;
    bool skip_bad = c->data.on_bad_line == GT_BAD_LINE_SKIP;
    if (gt_dataset_open(c->data.train, c->data.format, skip_bad, &train, err, errn)) goto done;
    /* every rank walks the same global order and trains on its own block of each global batch */
    if (gt_dataset_set_order(&train, (uint64_t)c->data.shuffle_seed, c->data.shuffle, 0, 1, err, errn)) goto done;
    if (c->data.eval[0] && gt_dataset_open(c->data.eval, c->data.format, skip_bad, &ev, err, errn)) goto done;
    if (train.skipped && lead) fprintf(stderr, "data.train: skipped %lld bad lines\n", (long long)train.skipped);
    total = gt_config_total_steps(c, train.n);
    if (total < 1) {
        snprintf(err, errn, "data.train: %s: no examples to train on", c->data.train);
        goto done;
    }
    if (c->schedule.warmup_steps > total) {
        snprintf(err, errn, "schedule.warmup_steps (%lld) exceeds the run's %lld steps "
                 "(train.epochs %lld x %lld examples / train.batch_size %lld)",
                 (long long)c->schedule.warmup_steps, (long long)total, (long long)c->train.epochs,
                 (long long)train.n, (long long)B);
        goto done;
    }
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, c->optimizer.name);
    oc.beta_1 = c->optimizer.beta_1;
    oc.beta_2 = c->optimizer.beta_2;
    oc.epsilon = c->optimizer.epsilon;
    oc.weight_decay = c->optimizer.weight_decay;
    oc.momentum = c->optimizer.momentum;
    if (gt_optim_init(&opt, &oc, j.slices, j.n_slices, err, errn)) goto done;
    gt_schedule sched = {c->schedule.name,
                         c->optimizer.learning_rate, c->schedule.min_learning_rate, c->schedule.warmup_steps,
                         total};
    j.sharded = gt_dist_shards(dist, &opt) && !getenv("GT_NO_SHARD");
    gt_step_cfg sc = {.norm = c->train.loss_normalization,
                      .chunk_rows = c->train.chunk_rows, .clip_norm = c->optimizer.clip_global_norm,
                      .skip_nonfinite = c->train.on_nonfinite == GT_NONFINITE_SKIP,
                      .reduce = world > 1 ? gt_dist_reduce_grads : NULL, .reduce_user = dist,
                      .ready = world > 1 && !getenv("GT_NO_OVERLAP") ? gt_dist_grad_ready : NULL,
                      .update = j.sharded ? gt_dist_sharded_update : NULL,
                      .lora = j.lora};
    if (j.sharded && lead)
        fprintf(stderr, "data parallel: optimizer update sharded over %d ranks\n", world);
    rs.cm = (gt_ckpt_model){&j.model->cfg, j.lora, gt_cfg_optimizer_names[c->optimizer.name]};
    rs.st = (gt_ckpt_state){.train_seed = c->train.seed, .shuffle_seed = c->data.shuffle_seed, .lora_seed = c->lora.seed};
    int64_t tokens = 0, step = 0;
    double elapsed0 = 0;
    step = resume(&j, &train, &opt, &rs, &tokens, &elapsed0, err, errn);
    if (step < 0) goto done;
    if (lead && c->logging.metrics[0] && !(metrics = fopen(c->logging.metrics, step ? "a" : "w"))) {
        snprintf(err, errn, "logging.metrics: %s: cannot write: %s", c->logging.metrics, strerror(errno));
        goto done;
    }
    if (lead)
        fprintf(stderr, "model %s: %lld parameters, %lld trainable (%s); %lld train examples\n", j.model->cfg.name,
                (long long)gt_gemma_param_count(&j.model->cfg), (long long)opt.n_values,
                c->lora.enabled ? "LoRA" : "full", (long long)train.n);
    eval_result er;
    if (ev.n && step == 0) {
        if (evaluate(&j, &ev, &ctx, NULL, &er, err, errn)) goto done;
        if (lead) print_eval("eval before training", &er, metrics, 0);
    }
    bool tty = lead && (c->logging.progress == GT_PROGRESS_BAR || (c->logging.progress == GT_PROGRESS_AUTO && isatty(2)));
    g_stop = 0;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    handler = true;
    mbs = calloc((size_t)n_micro, sizeof *mbs);
    if (!mbs) {
        snprintf(err, errn, "out of memory");
        goto done;
    }
    int64_t end = c->train.stop_after_steps > 0 && c->train.stop_after_steps < total ? c->train.stop_after_steps : total;
    int64_t first = step, own0 = rank * L;
    double t0 = now(), reduce0 = dist->reduce_s;
    int64_t tokens0 = tokens;
    bool stopped = false;
    for (; step < end; step++) {
        if (world > 1) { /* a stop seen by any rank stops them all at the same step */
            double flag = g_stop;
            if (gt_dist_sum_f64(dist, &flag, 1, err, errn)) goto done;
            g_stop = flag > 0;
        }
        if (g_stop) {
            stopped = true;
            break;
        }
        fault_rank_kill(rank, step + 1);
        for (int64_t r = 0; r < B; r++) {
            if (c->data.packing) { /* rows depend on each other: every rank packs the whole batch */
                if (fill_packed_row(&j, &train, r, err, errn)) goto done;
                continue;
            }
            if (r < own0 || r >= own0 + L) {
                gt_dataset_advance(&train);
                continue;
            }
            gt_example ex;
            if (gt_dataset_next(&train, &ex, NULL, err, errn)) goto done;
            int frc = fill_row(&j, r, &ex, err, errn);
            gt_example_free(&ex);
            if (frc) goto done;
        }
        for (int64_t k = 0; k < n_micro; k++) {
            int64_t o = (own0 + k * mb) * j.S;
            mbs[k] = (gt_micro_batch){{.batch = mb, .seq = j.S, .token_ids = j.ids + o, .padding_mask = j.mask + o,
                                       .positions = j.positions ? j.positions + o : NULL,
                                       .segment_ids = j.segments ? j.segments + o : NULL},
                                      j.labels + o, j.weights + o, own0 + k * mb};
        }
        double lr = gt_schedule_lr(&sched, step);
        if (j.lora) /* a fresh dropout mask every step, reproducible from the seed and the step */
            j.lora->dropout_seed = (uint64_t)c->lora.seed * 0xA0761D6478BD642Full + (uint64_t)step;
        gt_step_result res;
        gt_real *poisoned = fault_nonfinite(step + 1) ? malloc(sizeof *poisoned * (size_t)j.n_slices) : NULL;
        for (int i = 0; poisoned && i < j.n_slices; i++) poisoned[i] = j.slices[i].data[0], j.slices[i].data[0] = NAN;
        int src = gt_step_run(&ctx, j.model, &opt, &sc, mbs, (int)n_micro, B, lr, &res, err, errn);
        for (int i = 0; poisoned && i < j.n_slices; i++) j.slices[i].data[0] = poisoned[i];
        free(poisoned);
        if (src) {
            char e2[1024];
            snprintf(e2, sizeof e2, "step %lld: %s", (long long)step + 1, err);
            snprintf(err, errn, "%s", e2);
            goto done;
        }
        tokens += res.tokens;
        double el = now() - t0, tps = (double)(tokens - tokens0) / el;
        char eta[32];
        fmt_eta(el / (double)(step + 1 - first) * (double)(end - step - 1), eta, sizeof eta);
        if (lead && ((step + 1) % c->logging.every_steps == 0 || step + 1 == end)) {
            if (tty) {
                int w = 24, done_ = (int)((step + 1) * w / total);
                fprintf(stderr, "\r[%.*s%*s] step %lld/%lld loss %.4f lr %.2e gnorm %.3f %.0f tok/s eta %s   ",
                        done_, "########################", w - done_, "", (long long)step + 1,
                        (long long)total, res.loss, lr, res.grad_norm, tps, eta);
            } else {
                fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e gnorm %.3f %.0f tok/s eta %s%s\n",
                        (long long)step + 1, (long long)total, res.loss, lr, res.grad_norm, tps, eta,
                        res.skipped ? " (skipped: non-finite)" : "");
            }
            if (metrics)
                put_json(metrics,
                         json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:b}", "step", (json_int_t)step + 1, "loss",
                                   jnum(res.loss, "%.9g"), "lr", jnum(lr, "%.6g"), "grad_norm",
                                   jnum(res.grad_norm, "%.6f"), "weighted_tokens", jcount(res.weight_sum),
                                   "tokens_per_s", jnum(tps, "%.1f"), "skipped", (int)res.skipped),
                         true);
        }
        if (ev.n && c->eval.every_steps && (step + 1) % c->eval.every_steps == 0 && step + 1 < total) {
            if (tty) fputc('\n', stderr);
            if (evaluate(&j, &ev, &ctx, NULL, &er, err, errn)) goto done;
            if (lead) print_eval("eval", &er, metrics, step + 1);
        }
        if (c->checkpoint.dir[0] && c->checkpoint.every_steps && (step + 1) % c->checkpoint.every_steps == 0 &&
            step + 1 < end && save_checkpoint(&j, &train, &opt, &rs, step + 1, tokens, elapsed0 + now() - t0, err, errn))
            goto done;
    }
    if (tty) fputc('\n', stderr);
    double took = now() - t0;
    if (lead) {
        fprintf(stderr, "%s after %lld steps, %.2f s/step", stopped ? "interrupted" : step < total ? "stopped" : "done",
                (long long)step, step > first ? took / (double)(step - first) : 0.0);
        if (world > 1)
            fprintf(stderr, ", %.1f%% of it in gradient allreduce", took > 0 ? 100 * (dist->reduce_s - reduce0) / took : 0.0);
        fputc('\n', stderr);
    }
    if (c->checkpoint.dir[0] && step > first &&
        save_checkpoint(&j, &train, &opt, &rs, step, tokens, elapsed0 + took, err, errn))
        goto done;
    double final_eval = NAN;
    if (ev.n && step == total) {
        if (evaluate(&j, &ev, &ctx, NULL, &er, err, errn)) goto done;
        if (lead) print_eval("eval after training", &er, metrics, step);
        final_eval = er.w > 0 ? er.wce / er.w : NAN;
    }
    if (lead && c->output_dir[0] && step > first && save_outputs(&j, step, final_eval, err, errn)) goto done;
    rc = stopped ? 130 : 0;
done:
    if (handler) sigaction(SIGINT, &old, NULL);
    free(mbs);
    free(rs.yaml);
    if (metrics) fclose(metrics);
    gt_optim_free(&opt);
    if (train.f) gt_dataset_close(&train);
    if (ev.f) gt_dataset_close(&ev);
    gt_ctx_free(&ctx);
    job_free(&j);
    return rc;
}

int gt_eval_job(const gt_config *cfg, bool adapters_from_file, char *err, size_t errn) {
    job j;
    gt_config own = *cfg, *c = &own; /* the effective config (open_adapters fills in the file's LoRA) */
    gt_dist solo = {.world = 1, .local_world = 1};
    gt_dataset ev = {0};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    FILE *per = NULL;
    int rc = -1;
    const char *path = c->data.eval[0] ? c->data.eval : c->data.train;
    job_init(&j, c, &solo);
    if (build_model(&j, err, errn) || (adapters_from_file && open_adapters(&j, c, err, errn)) ||
        announce(&j, err, errn) || build_trainables(&j, err, errn) || alloc_rows(&j, c->eval.batch_size, err, errn))
        goto done;
    if (gt_dataset_open(path, c->data.format, c->data.on_bad_line == GT_BAD_LINE_SKIP, &ev, err, errn)) goto done;
    if (c->eval.per_example_output[0] && !(per = fopen(c->eval.per_example_output, "w"))) {
        snprintf(err, errn, "eval.per_example_output: %s: cannot write: %s", c->eval.per_example_output, strerror(errno));
        goto done;
    }
    eval_result er;
    if (evaluate(&j, &ev, &ctx, per, &er, err, errn)) goto done;
    print_eval(path, &er, NULL, 0);
    double loss = er.w > 0 ? er.wce / er.w : 0;
    put_json(stdout,
             json_pack("{s:o, s:o, s:o, s:I}", "loss", jnum(loss, "%.6f"), "perplexity", jnum(exp(loss), "%.4f"),
                       "tokens", jcount(er.w), "examples", (json_int_t)er.examples),
             true);
    rc = 0;
done:
    if (per) fclose(per);
    if (ev.f) gt_dataset_close(&ev);
    gt_ctx_free(&ctx);
    job_free(&j);
    return rc;
}
