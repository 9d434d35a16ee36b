/* trainer.c: a training run's setup, step loop and teardown (train/trainer.h); checkpoints
 * (periodic, final, resume) and the test hooks of GT_FAULT_INJECT live here too. */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "autograd/bf16_gemm.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "train/checkpoint.h"
#include "train/eval.h"
#include "train/job.h"
#include "train/memcheck.h"
#include "train/report.h"
#include "train/step.h"
#include "util/fsutil.h"

/* The first stop signal (SIGINT or SIGTERM) seen by this process, 0 for none: the run finishes
 * its step, checkpoints and ends. A second one ends the process at once, by that signal; not
 * under mpirun (g_ranked), which may deliver one SIGTERM twice, and escalates by itself (a second
 * Ctrl-C, or SIGKILL odls_base_sigkill_timeout seconds after its SIGTERM). */
static volatile sig_atomic_t g_stop, g_ranked;
static void on_stop_signal(int sig) {
    if (g_stop && !g_ranked) {
        signal(sig, SIG_DFL);
        raise(sig); /* delivered when the handler returns */
        return;
    }
    if (!g_stop) g_stop = sig;
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

/* A metrics line that did not reach logging.metrics (errno set by the write). */
static int metrics_failed(const gt_config *c, char *err, size_t errn) {
    int e = errno;
    return snprintf(err, errn, "logging.metrics: %s: write failed: %s", c->logging.metrics, strerror(e)), -1;
}

typedef struct run_state {
    gt_ckpt_model cm;
    gt_ckpt_state st;
    char *yaml;
} run_state;

/* Everything one training run holds, from setup to teardown (run_free releases it). */
typedef struct run {
    const gt_config *c;
    gt_dist *dist;
    gt_job j;
    gt_dataset train, ev;
    gt_optim opt;
    gt_ctx ctx;
    gt_schedule sched;
    gt_step_cfg sc;
    run_state rs;
    gt_micro_batch *mbs;
    FILE *metrics;               /* logging.metrics (rank 0) */
    gt_report rep;
    int64_t B, L, mb, n_micro;   /* rows: the global batch, this rank's share, a micro-batch; micro-batches */
    int64_t total, end;          /* optimizer steps: the run's (schedule), where this invocation stops */
    int64_t step, first, tokens; /* the next step (0-based), this invocation's first, tokens trained on */
    double elapsed0;             /* seconds trained before a resume */
} run;


/* Rank 0 writes the checkpoint of `step`; every rank learns whether it worked. */
static int save_checkpoint(run *r, int64_t step, double elapsed, char *err, size_t errn) {
    const gt_config *c = r->c;
    gt_job *j = &r->j;
    gt_dataset *train = &r->train;
    gt_optim *opt = &r->opt;
    run_state *rs = &r->rs;
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
        rs->st.tokens = r->tokens;
        rs->st.elapsed_s = elapsed;
        rs->st.world = j->dist->world;
        char path[GT_CFG_STR + 32];
        (void)gt_mkdir_p(c->checkpoint.dir, NULL, 0); /* checked at the start; a failure shows at the save */
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
static int save_outputs(gt_job *j, int64_t step, double eval_loss, char *err, size_t errn) {
    const gt_config *c = j->cfg;
    char path[GT_CFG_STR + 32], e[1024];
    if (j->lora) {
        snprintf(path, sizeof path, "%s/adapter.lora.h5", c->output_dir);
        const gt_vision *enc = j->model->cfg.generation == 3 ? j->vis.enc : NULL; /* its adapters, its indices */
        if (gt_keras_lora_save_mm(path, j->lora, &j->model->cfg, enc, err, errn)) return -1;
    } else {
        snprintf(path, sizeof path, "%s/model", c->output_dir);
        gt_preset_save_opts o = {.sequence_length = c->data.sequence_length,
                                 .prov = {c->model.weights[0] ? c->model.weights : c->model.preset[0] ? c->model.preset : NULL,
                                          NULL, false, step, eval_loss},
                                 .vision = j->model->cfg.generation == 3 ? j->vis.enc : NULL};
        if (gt_keras_preset_save(path, j->model, j->tok, &o, e, sizeof e)) {
            /* the weights are safe in the checkpoint; a model KerasHub cannot express is not fatal */
            fprintf(stderr, "output_dir: no KerasHub preset written: %s\n", e);
            return 0;
        }
    }
    fprintf(stderr, "wrote %s\n", path);
    gt_tensor *const *vt;
    bool enc_in_file = j->lora && j->vis.enc && j->vis.enc->n_lora && j->model->cfg.generation == 3;
    if (j->vis.enc && (j->lora || j->model->cfg.generation != 3) && !enc_in_file) /* not silent: the file lacks it */
        fprintf(stderr, "note: %s holds no vision encoder%s\n", path,
                gt_vrows_trainables(&j->vis, &vt) ? " (its trained weights are in the checkpoints only)" : "");
    if (j->m4.has_v || j->m4.has_a)
        fprintf(stderr, "note: %s holds the decoder only, not the Gemma 4 %s tower%s%s\n", path,
                j->m4.has_v && j->m4.has_a ? "vision and audio" : j->m4.has_v ? "vision" : "audio",
                j->m4.has_v && j->m4.has_a ? "s" : "",
                j->m4.n_train ? " (the trained vision tower is in the checkpoints only)" : "");
    return 0;
}

/* Keys a resume may change freely: where things go, how often they are reported or saved, eval,
 * and settings that do not change the updates (threads, LM-head chunking, this invocation's end). */
static bool harmless_change(const char *key) {
    static const char *const prefixes[] = {"logging.", "eval.", "output", "checkpoint.", "data.eval",
                                           "train.stop_after_steps", "train.threads", "train.chunk_rows"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(key, prefixes[i], strlen(prefixes[i]))) return true;
    return false;
}

/* The effective config against the checkpoint's (yaml): a change that alters the run's
 * trajectory (learning rate, steps, schedule, data, model, seeds, ...) is refused naming every
 * such key, unless checkpoint.allow_changes lists it; accepted changes are said out loud (lead). */
static int check_resume_config(const gt_config *c, const char *yaml, const char *path, bool lead, char *err,
                               size_t errn) {
    gt_config old;
    char e2[512];
    gt_config_defaults(&old);
    if (gt_config_parse_text(yaml, strlen(yaml), path, &old, e2, sizeof e2))
        return snprintf(err, errn, "resume: the config stored in the checkpoint does not parse: %s", e2), -1;
    gt_config_resolve(&old);
    const char *keys[256];
    int n = gt_config_diff_all(&old, c, keys, 256);
    if (n > 256) n = 256;
    char refused[1024] = "", accepted[1024] = "";
    for (int i = 0; i < n; i++) {
        bool allowed = harmless_change(keys[i]);
        for (int k = 0; !allowed && k < c->checkpoint.n_allow_changes; k++)
            allowed = !strcmp(keys[i], c->checkpoint.allow_changes[k]);
        /* per-invocation keys are not worth a note */
        if (allowed && (!strcmp(keys[i], "checkpoint.resume") || !strcmp(keys[i], "checkpoint.allow_changes") ||
                        !strcmp(keys[i], "train.stop_after_steps") || !strcmp(keys[i], "output.overwrite")))
            continue;
        char *list = allowed ? accepted : refused;
        size_t len = strlen(list);
        snprintf(list + len, sizeof refused - len, "%s%s", len ? ", " : "", keys[i]);
    }
    if (refused[0])
        return snprintf(err, errn, "resume: %s: the config changes %s, which alter the run; list them in "
                        "checkpoint.allow_changes to accept (e.g. checkpoint.allow_changes=[train.steps])", path,
                        refused), -1;
    if (accepted[0] && lead) fprintf(stderr, "resume: config changes accepted: %s\n", accepted);
    return 0;
}

/* checkpoint.resume: latest. Loads the newest checkpoint of checkpoint.dir that loads; one that
 * does not (corrupted, truncated) is skipped with a warning, and once an older one has loaded the
 * newer failures are set aside as NAME.corrupt (by rank 0), so that pruning never keeps them in
 * place of good ones. A failure of every checkpoint (a model or adapter that no longer matches) is
 * the newest one's error, and nothing is renamed. 0 (path filled), 1: none yet, -1: error. */
static int load_latest(run *r, char *path, size_t pathn, gt_ckpt_state *st, char **yaml, char *err, size_t errn) {
    const gt_config *c = r->c;
    gt_job *j = &r->j;
    bool lead = j->dist->rank == 0;
    int64_t *steps;
    int count, at = -1;
    if (gt_ckpt_list(c->checkpoint.dir, &steps, &count, err, errn)) return -1;
    if (!count) return 1;
    char first[1024] = "";
    for (int i = count - 1; i >= 0 && at < 0; i--) {
        gt_ckpt_path(c->checkpoint.dir, steps[i], path, pathn);
        char e[1024];
        if (!gt_ckpt_load(path, &r->rs.cm, j->slices, j->n_slices, &r->opt, st, yaml, e, sizeof e)) {
            at = i;
            break;
        }
        if (!first[0]) snprintf(first, sizeof first, "%s", e);
        if (lead) fprintf(stderr, "checkpoint.resume: %s%s\n", e, i ? "; trying the one before" : "");
    }
    for (int i = at + 1; at >= 0 && lead && i < count; i++) {
        char bad[GT_CFG_STR + 32], aside[GT_CFG_STR + 48];
        gt_ckpt_path(c->checkpoint.dir, steps[i], bad, sizeof bad);
        snprintf(aside, sizeof aside, "%s.corrupt", bad);
        if (rename(bad, aside) == 0) fprintf(stderr, "checkpoint.resume: set aside as %s\n", aside);
        else fprintf(stderr, "checkpoint.resume: could not set %s aside: %s\n", bad, strerror(errno));
    }
    free(steps);
    if (at < 0) return snprintf(err, errn, "%s", first), -1;
    return 0;
}

/* checkpoint.resume: none, latest, or a path. Returns the step to continue from (0: fresh). */
static int64_t resume(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    gt_job *j = &r->j;
    run_state *rs = &r->rs;
    char path[GT_CFG_STR + 32];
    gt_ckpt_state st;
    char *yaml = NULL;
    switch (c->checkpoint.resume) {
    case GT_RESUME_NONE: return 0;
    case GT_RESUME_LATEST: {
        int rc = load_latest(r, path, sizeof path, &st, &yaml, err, errn);
        if (rc < 0) return -1;
        if (rc == 1) {
            if (j->dist->rank == 0)
                fprintf(stderr, "checkpoint.resume: no checkpoint in %s yet: starting at step 0\n", c->checkpoint.dir);
            return 0;
        }
        break;
    }
    case GT_RESUME_PATH:
        snprintf(path, sizeof path, "%s", c->checkpoint.resume_path);
        if (gt_ckpt_load(path, &rs->cm, j->slices, j->n_slices, &r->opt, &st, &yaml, err, errn)) return -1;
        break;
    }
    if (yaml && check_resume_config(c, yaml, path, j->dist->rank == 0, err, errn)) {
        free(yaml);
        return -1;
    }
    free(yaml);
    if (gt_dataset_seek(&r->train, st.data_epoch, st.data_next, err, errn)) return -1;
    r->tokens = st.tokens;
    r->elapsed0 = st.elapsed_s;
    if (j->dist->rank == 0)
        fprintf(stderr, "resumed from %s at step %lld (written by %lld rank%s)\n", path, (long long)st.step,
                (long long)st.world, st.world == 1 ? "" : "s");
    if (gt_dist_check_same(j->dist, (uint64_t)st.step, "the resumed step", err, errn)) return -1;
    return st.step;
}

int gt_train_restore(const gt_config *c, const char *ckpt, gt_gemma **model, gt_lora **lora,
                     gt_tokenizer **tok, int64_t *step, char *err, size_t errn) {
    return gt_train_restore_mm(c, ckpt, model, lora, NULL, tok, step, err, errn);
}

int gt_train_restore_mm(const gt_config *c, const char *ckpt, gt_gemma **model, gt_lora **lora, gt_vision **vision,
                        gt_tokenizer **tok, int64_t *step, char *err, size_t errn) {
    gt_job j;
    gt_dist solo = {.world = 1, .local_world = 1};
    gt_optim opt = {0};
    int rc = -1;
    memset(&j, 0, sizeof j);
    j.cfg = c;
    j.dist = &solo;
    *model = NULL;
    *lora = NULL;
    *tok = NULL;
    if (vision) *vision = NULL;
    if (gt_job_build_model(&j, err, errn) || gt_job_build_trainables(&j, err, errn)) goto done;
    /* the optimizer only gives the checkpoint's state arrays a place to land */
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, c->optimizer.name);
    oc.momentum = c->optimizer.momentum;
    if (gt_optim_init(&opt, &oc, j.slices, j.n_slices, err, errn)) goto done;
    gt_ckpt_model cm = {&j.model->cfg, j.lora, gt_cfg_optimizer_names[c->optimizer.name]};
    gt_ckpt_state st;
    if (gt_ckpt_load(ckpt, &cm, j.slices, j.n_slices, &opt, &st, NULL, err, errn)) goto done;
    if (j.vis.enc && !vision) /* not silent: what callers build from the result is text only */
        fprintf(stderr, "note: %s: the run's vision encoder stays behind: the decoder alone is restored\n", ckpt);
    if (vision) *vision = j.vis.enc, j.vis.enc = NULL;
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
    gt_job_free(&j);
    return rc;
}

static void run_init(run *r, const gt_config *c, gt_dist *dist) {
    memset(r, 0, sizeof *r);
    r->c = c;
    r->dist = dist;
    r->B = c->train.batch_size;
    r->L = r->B / dist->world;
    r->mb = c->train.micro_batch_size ? c->train.micro_batch_size : r->B;
    if (r->mb == r->B) r->mb = r->L; /* the default micro-batch is the whole batch: each rank's share of it */
    r->n_micro = r->mb ? r->L / r->mb : 0;
    gt_ctx_init(&r->ctx, 0);
}

static void run_free(run *r) {
    free(r->mbs);
    free(r->rs.yaml);
    if (r->metrics) fclose(r->metrics);
    gt_optim_free(&r->opt);
    if (r->train.f) gt_dataset_close(&r->train);
    if (r->ev.f) gt_dataset_close(&r->ev);
    gt_ctx_free(&r->ctx);
    gt_job_free(&r->j);
}

/* An output directory (key: its config key; empty: none) exists or is created, and takes a file:
 * found before step 1, not at the first save after the last step. */
static int check_dir(const char *key, const char *dir, char *err, size_t errn) {
    if (!dir[0]) return 0;
    char e[1024];
    if (gt_mkdir_p(dir, e, sizeof e)) return snprintf(err, errn, "%s: %s", key, e), -1;
    char *probe = gt_path_join(dir, ".gemmatrain-probe.XXXXXX");
    if (!probe) return snprintf(err, errn, "out of memory"), -1;
    int fd = mkstemp(probe);
    if (fd < 0) {
        int en = errno;
        free(probe);
        return snprintf(err, errn, "%s: %s: cannot write there: %s", key, dir, strerror(en)), -1;
    }
    close(fd);
    unlink(probe);
    free(probe);
    return 0;
}

/* A fresh run (nothing to resume) would replace an earlier run's trained result in output_dir
 * and its logging.metrics: refused, naming the file, unless output.overwrite. */
static int check_overwrite(const gt_config *c, char *err, size_t errn) {
    if (c->output.overwrite) return 0;
    bool resuming = c->checkpoint.resume == GT_RESUME_PATH;
    if (c->checkpoint.resume == GT_RESUME_LATEST && c->checkpoint.dir[0]) {
        char p[GT_CFG_STR + 32];
        int64_t step;
        resuming = gt_ckpt_latest(c->checkpoint.dir, p, sizeof p, &step, NULL, 0) == 0;
    }
    if (resuming) return 0; /* the run continues: its outputs are its own */
    struct stat sb;
    static const char *const results[] = {"adapter.lora.h5", "model"};
    for (int i = 0; c->output_dir[0] && i < 2; i++) {
        char *p = gt_path_join(c->output_dir, results[i]);
        if (!p) return snprintf(err, errn, "out of memory"), -1;
        bool there = stat(p, &sb) == 0;
        if (there)
            snprintf(err, errn, "output_dir: %s already holds a trained result: give --overwrite (output.overwrite: "
                     "true) to replace it, or another output_dir", p);
        free(p);
        if (there) return -1;
    }
    if (c->logging.metrics[0] && stat(c->logging.metrics, &sb) == 0 && sb.st_size > 0)
        return snprintf(err, errn, "logging.metrics: %s already holds a run's metrics: give --overwrite "
                        "(output.overwrite: true) to replace it, checkpoint.resume to continue that run, or "
                        "another path", c->logging.metrics), -1;
    return 0;
}

/* Bytes free for an unprivileged writer in dir, or -1 when unknown. Test hook:
 * GT_FAULT_INJECT=free_bytes:N reports N. */
static int64_t free_bytes(const char *dir) {
    const char *s = getenv("GT_FAULT_INJECT");
    long long n;
    if (s && sscanf(s, "free_bytes:%lld", &n) == 1) return n;
    struct statvfs v;
    if (statvfs(dir, &v)) return -1;
    return (int64_t)v.f_bavail * (int64_t)v.f_frsize;
}

/* One more checkpoint fits in checkpoint.dir (the previous ones are pruned only after it is
 * complete): its float32 arrays plus room for HDF5's metadata. */
static int check_checkpoint_room(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    if (!c->checkpoint.dir[0] || r->dist->rank != 0) return 0;
    int64_t need = (int64_t)strlen(r->rs.yaml) + (64 << 10), datasets = r->j.n_slices;
    for (int i = 0; i < r->j.n_slices; i++) need += 4 * r->j.slices[i].size;
    for (int i = 0; i < gt_optim_state_count(&r->opt); i++) {
        gt_optim_state_array a;
        gt_optim_state_get(&r->opt, i, &a);
        need += 4 * a.size;
        datasets++;
    }
    need += 2048 * datasets;
    int64_t have = free_bytes(c->checkpoint.dir);
    if (have >= 0 && have < need)
        return snprintf(err, errn, "checkpoint.dir: %s: %.1f MB free, a checkpoint needs about %.1f MB", c->checkpoint.dir,
                        (double)have / 1e6, (double)need / 1e6), -1;
    return 0;
}

/* The peak-memory estimate (train/memcheck.h), printed by rank 0; a run that would need more
 * than the machine (or its cgroup) has left is refused before step 1 unless
 * train.ignore_memory_check, rather than killed by the kernel without a word. */
static int check_memory(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    gt_mem_estimate e;
    gt_mem_estimate_run(r->j.model, r->opt.n_values, r->opt.n_kinds, r->mb, r->j.S, c->train.chunk_rows, &e);
    int64_t avail = gt_mem_available(), held = gt_mem_resident(), more = e.total > held ? e.total - held : 0;
    if (avail >= 0 && r->dist->local_world > 1) avail /= r->dist->local_world; /* the node's ranks share it */
    const double G = 1e9;
    if (r->dist->rank == 0) {
        fprintf(stderr, "memory: about %.2f GB at the peak (weights %.2f, gradients and optimizer state %.2f, "
                "activations %.2f)", (double)e.total / G, (double)e.weights / G, (double)e.trainable / G,
                (double)e.activations / G);
        if (avail >= 0) fprintf(stderr, "; %.2f GB more available%s", (double)avail / G, r->dist->world > 1 ? " per rank" : "");
        fputc('\n', stderr);
    }
    if (avail >= 0 && more > avail && !c->train.ignore_memory_check)
        return snprintf(err, errn, "memory: the run needs about %.2f GB more at its peak than the %.2f GB available "
                        "(activations of %lld rows x %lld tokens: %.2f GB); lower train.micro_batch_size or "
                        "data.sequence_length, or set train.ignore_memory_check: true", (double)more / G,
                        (double)avail / G, (long long)r->mb, (long long)r->j.S, (double)e.activations / G), -1;
    return 0;
}

/* The batch split, the effective config (the same on every rank), the job, the data and the
 * run's length. */
static int open_job(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    int world = r->dist->world;
    if (!c->data.train[0]) return snprintf(err, errn, "data.train: required for training"), -1;
    if (r->B % world || !r->mb || r->L % r->mb)
        return snprintf(err, errn, "train.batch_size (%lld) must split evenly over %d ranks into micro-batches of "
                        "train.micro_batch_size (%lld)", (long long)r->B, world, (long long)r->mb), -1;
    if (r->dist->rank == 0 &&
        (check_overwrite(c, err, errn) || check_dir("checkpoint.dir", c->checkpoint.dir, err, errn) ||
         check_dir("output_dir", c->output_dir, err, errn)))
        return -1;
    if (!(r->rs.yaml = config_text(c))) return snprintf(err, errn, "out of memory"), -1;
    if (gt_dist_check_same(r->dist, config_hash(r->rs.yaml), "the effective config (give every rank the same config)",
                           err, errn) ||
        gt_job_setup(&r->j, c, r->dist, r->B, err, errn))
        return -1;
    bool skip_bad = c->data.on_bad_line == GT_BAD_LINE_SKIP;
    if (gt_dataset_open(c->data.train, c->data.format, skip_bad, &r->train, err, errn)) return -1;
    /* every rank walks the same global order and trains on its own block of each global batch */
    if (gt_dataset_set_order(&r->train, (uint64_t)c->data.shuffle_seed, c->data.shuffle, 0, 1, err, errn)) return -1;
    if (c->data.eval[0] && gt_dataset_open(c->data.eval, c->data.format, skip_bad, &r->ev, err, errn)) return -1;
    if (r->train.skipped && r->dist->rank == 0)
        fprintf(stderr, "data.train: skipped %lld bad lines\n", (long long)r->train.skipped);
    r->total = gt_config_total_steps(c, r->train.n);
    if (r->total < 1) return snprintf(err, errn, "data.train: %s: no examples to train on", c->data.train), -1;
    if (c->schedule.warmup_steps > r->total)
        return snprintf(err, errn, "schedule.warmup_steps (%lld) exceeds the run's %lld steps "
                        "(train.epochs %lld x %lld examples / train.batch_size %lld)",
                        (long long)c->schedule.warmup_steps, (long long)r->total, (long long)c->train.epochs,
                        (long long)r->train.n, (long long)r->B), -1;
    return 0;
}

/* The optimizer, its schedule over the run's steps, and the step's settings: with MPI the
 * gradient reduction (overlapped with backward unless GT_NO_OVERLAP) and, where the optimizer
 * allows, an update sharded over the ranks (unless GT_NO_SHARD). */
static int init_update(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    gt_dist *dist = r->dist;
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, c->optimizer.name);
    oc.beta_1 = c->optimizer.beta_1;
    oc.beta_2 = c->optimizer.beta_2;
    oc.epsilon = c->optimizer.epsilon;
    oc.weight_decay = c->optimizer.weight_decay;
    oc.momentum = c->optimizer.momentum;
    if (gt_optim_init(&r->opt, &oc, r->j.slices, r->j.n_slices, err, errn)) return -1;
    r->sched = (gt_schedule){c->schedule.name, c->optimizer.learning_rate, c->schedule.min_learning_rate,
                             c->schedule.warmup_steps, r->total};
    r->j.sharded = gt_dist_shards(dist, &r->opt) && !getenv("GT_NO_SHARD");
    bool multi = dist->world > 1;
    r->sc = (gt_step_cfg){.norm = c->train.loss_normalization,
                          .chunk_rows = c->train.chunk_rows, .clip_norm = c->optimizer.clip_global_norm,
                          .skip_nonfinite = c->train.on_nonfinite == GT_NONFINITE_SKIP,
                          .reduce = multi ? gt_dist_reduce_grads : NULL, .reduce_user = dist,
                          .ready = multi && !getenv("GT_NO_OVERLAP") ? gt_dist_grad_ready : NULL,
                          .update = r->j.sharded ? gt_dist_sharded_update : NULL,
                          .lora = r->j.lora};
    if (r->j.sharded && dist->rank == 0)
        fprintf(stderr, "data parallel: optimizer update sharded over %d ranks\n", dist->world);
    return 0;
}

/* Where the run starts (checkpoint.resume), logging.metrics (continued after a resume), the
 * eval before training (a fresh run only), room for the micro-batches. */
static int start_run(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    bool lead = r->dist->rank == 0;
    r->rs.cm = (gt_ckpt_model){&r->j.model->cfg, r->j.lora, gt_cfg_optimizer_names[c->optimizer.name]};
    r->rs.st = (gt_ckpt_state){.train_seed = c->train.seed, .shuffle_seed = c->data.shuffle_seed,
                               .lora_seed = c->lora.seed};
    int64_t step = resume(r, err, errn);
    if (step < 0 || check_checkpoint_room(r, err, errn) || check_memory(r, err, errn)) return -1;
    r->step = r->first = step;
    if (lead && c->logging.metrics[0] && gt_report_open_metrics(c->logging.metrics, step, &r->metrics, err, errn))
        return -1;
    if (lead)
        fprintf(stderr, "model %s: %lld parameters, %lld trainable (%s%s%s); %lld train examples\n", r->j.model->cfg.name,
                (long long)gt_gemma_param_count(&r->j.model->cfg), (long long)r->opt.n_values,
                c->lora.enabled ? "LoRA" : "full", r->j.model->frozen_dtype ? ", base stored as " : "",
                r->j.model->frozen_dtype ? gt_frozen_dtype_names[r->j.model->frozen_dtype] : "", (long long)r->train.n);
    if (lead && c->model.compute_dtype == GT_COMPUTE_BFLOAT16) {
        gt_bf16_kernel k = gt_bf16_kernel_active();
        if (k != GT_BF16K_OFF) fprintf(stderr, "model.compute_dtype bfloat16: frozen products on the %s kernel\n", gt_bf16_kernel_name(k));
        else fprintf(stderr, "model.compute_dtype bfloat16: no bf16 kernel on this CPU (AMX, or AVX512-BF16 on AMD) or GT_BF16_KERNEL=off: fp32 arithmetic\n");
    }
    if (r->ev.n && step == 0) {
        gt_eval_result er;
        if (gt_job_evaluate(&r->j, &r->ev, &r->ctx, NULL, &er, err, errn)) return -1;
        if (lead && gt_report_eval("eval before training", er.wce, er.w, er.examples, r->metrics, 0))
            return metrics_failed(c, err, errn);
    }
    int64_t stop = c->train.stop_after_steps;
    r->end = stop > 0 && stop < r->total ? stop : r->total;
    if (!(r->mbs = calloc((size_t)r->n_micro, sizeof *r->mbs))) return snprintf(err, errn, "out of memory"), -1;
    return 0;
}

/* The next global batch: this rank's block of rows (the others are skipped in the data; packing
 * fills every row, as each row's contents depend on the previous ones), as micro-batches. */
static int load_batch(run *r, char *err, size_t errn) {
    gt_job *j = &r->j;
    int64_t own0 = r->dist->rank * r->L;
    for (int64_t row = 0; row < r->B; row++) {
        if (r->c->data.packing) {
            if (gt_job_fill_packed_row(j, &r->train, row, err, errn)) return -1;
            continue;
        }
        if (row < own0 || row >= own0 + r->L) {
            gt_dataset_advance(&r->train);
            continue;
        }
        gt_example ex;
        if (gt_dataset_next(&r->train, &ex, NULL, err, errn)) return -1;
        int frc = gt_job_fill_row(j, r->train.path, row, &ex, err, errn);
        gt_example_free(&ex);
        if (frc) return -1;
    }
    for (int64_t k = 0; k < r->n_micro; k++) {
        int64_t first_row = own0 + k * r->mb, o = first_row * j->S;
        r->mbs[k] = (gt_micro_batch){.in = {.batch = r->mb, .seq = j->S, .token_ids = j->ids + o, .padding_mask = j->mask + o,
                                            .positions = j->positions ? j->positions + o : NULL,
                                            .segment_ids = j->segments ? j->segments + o : NULL},
                                     .labels = j->labels + o, .weights = j->weights + o, .first_row = first_row};
        gt_job_attach_images(j, first_row, &r->mbs[k]);
    }
    return 0;
}

/* One optimizer step on the loaded batch (GT_FAULT_INJECT=nonfinite may poison it); errors name
 * the step. */
static int train_step(run *r, double lr, gt_step_result *res, char *err, size_t errn) {
    gt_job *j = &r->j;
    if (j->lora) /* a fresh dropout mask every step, reproducible from the seed and the step */
        j->lora->dropout_seed = (uint64_t)r->c->lora.seed * 0xA0761D6478BD642Full + (uint64_t)r->step;
    gt_real *poisoned = fault_nonfinite(r->step + 1) ? malloc(sizeof *poisoned * (size_t)j->n_slices) : NULL;
    for (int i = 0; poisoned && i < j->n_slices; i++) poisoned[i] = j->slices[i].data[0], j->slices[i].data[0] = NAN;
    int rc = gt_step_run(&r->ctx, j->model, &r->opt, &r->sc, r->mbs, (int)r->n_micro, r->B, lr, res, err, errn);
    for (int i = 0; poisoned && i < j->n_slices; i++) j->slices[i].data[0] = poisoned[i];
    free(poisoned);
    if (rc) {
        char e2[1024];
        snprintf(e2, sizeof e2, "step %lld: %s", (long long)r->step + 1, err);
        snprintf(err, errn, "%s", e2);
        return -1;
    }
    return 0;
}

/* A stop signal seen here or, with MPI, on any rank (so all stop at the same step): 1 stop, 0
 * go, -1 error. Every rank then holds the same g_stop: SIGTERM if any rank saw one, else SIGINT. */
static int stop_requested(gt_dist *dist, char *err, size_t errn) {
    if (dist->world > 1) {
        double flags[2] = {g_stop == SIGINT, g_stop == SIGTERM};
        if (gt_dist_sum_f64(dist, flags, 2, err, errn)) return -1;
        g_stop = flags[1] > 0 ? SIGTERM : flags[0] > 0 ? SIGINT : 0;
    }
    return g_stop ? 1 : 0;
}

/* After a step: an eval every eval.every_steps (not after the last step: the closing eval
 * follows) and a checkpoint every checkpoint.every_steps (the last one is written after the loop). */
static int between_steps(run *r, char *err, size_t errn) {
    const gt_config *c = r->c;
    int64_t done = r->step + 1;
    if (r->ev.n && c->eval.every_steps && done % c->eval.every_steps == 0 && done < r->total) {
        gt_report_break(&r->rep);
        gt_eval_result er;
        if (gt_job_evaluate(&r->j, &r->ev, &r->ctx, NULL, &er, err, errn)) return -1;
        if (r->dist->rank == 0 && gt_report_eval("eval", er.wce, er.w, er.examples, r->metrics, done))
            return metrics_failed(c, err, errn);
    }
    if (c->checkpoint.dir[0] && c->checkpoint.every_steps && done % c->checkpoint.every_steps == 0 && done < r->end)
        return save_checkpoint(r, done, r->elapsed0 + gt_now() - r->rep.t0, err, errn);
    return 0;
}

/* Steps r->step .. r->end - 1, or until a stop signal (*stopped). */
static int run_loop(run *r, bool *stopped, char *err, size_t errn) {
    gt_report_start(&r->rep, r->c, r->dist, r->metrics, r->first, r->end, r->total, r->tokens);
    for (; r->step < r->end; r->step++) {
        int stop = stop_requested(r->dist, err, errn);
        if (stop < 0) return -1;
        if (stop) {
            *stopped = true;
            return 0;
        }
        fault_rank_kill(r->dist->rank, r->step + 1);
        if (load_batch(r, err, errn)) return -1;
        double lr = gt_schedule_lr(&r->sched, r->step);
        gt_step_result res;
        if (train_step(r, lr, &res, err, errn)) return -1;
        r->tokens += res.tokens;
        if (gt_report_step(&r->rep, r->step, lr, &res, r->tokens)) return metrics_failed(r->c, err, errn);
        if (between_steps(r, err, errn)) return -1;
    }
    return 0;
}

/* The summary, the last checkpoint, the eval after a completed run and the outputs. */
static int run_finish(run *r, bool stopped, char *err, size_t errn) {
    const gt_config *c = r->c;
    bool lead = r->dist->rank == 0, trained = r->step > r->first;
    /* stopped by a signal: the checkpoint first, before any more output. Under mpirun the output
     * pipe may no longer be read as the job ends, and a write blocked on it must not cost the
     * checkpoint (mpirun's SIGKILL follows its SIGTERM by odls_base_sigkill_timeout seconds). */
    if (stopped && c->checkpoint.dir[0] && trained &&
        save_checkpoint(r, r->step, r->elapsed0 + gt_now() - r->rep.t0, err, errn))
        return -1;
    double took = gt_report_end(&r->rep, r->step, stopped);
    if (!stopped && c->checkpoint.dir[0] && trained && save_checkpoint(r, r->step, r->elapsed0 + took, err, errn))
        return -1;
    double final_eval = NAN;
    if (r->ev.n && r->step == r->total) {
        gt_eval_result er;
        if (gt_job_evaluate(&r->j, &r->ev, &r->ctx, NULL, &er, err, errn)) return -1;
        if (lead && gt_report_eval("eval after training", er.wce, er.w, er.examples, r->metrics, r->step))
            return metrics_failed(c, err, errn);
        final_eval = er.w > 0 ? er.wce / er.w : NAN;
    }
    if (lead && c->output_dir[0] && trained && save_outputs(&r->j, r->step, final_eval, err, errn)) return -1;
    if (r->metrics) { /* the last lines reach the disk, or the run fails saying so */
        FILE *m = r->metrics;
        r->metrics = NULL;
        if (gt_report_close(m, "logging.metrics", c->logging.metrics, err, errn)) return -1;
    }
    return 0;
}

int gt_train_job(const gt_config *c, gt_dist *dist, char *err, size_t errn) {
    gt_dist solo = {.world = 1, .local_world = 1};
    run r;
    run_init(&r, c, dist ? dist : &solo);
    int rc = -1;
    /* SIGINT and SIGTERM (Ctrl-C; mpirun, docker stop, timeout, Slurm) stop after the current step
     * (the checkpoint and outputs are still written); a second one ends the process at once */
    struct sigaction sa = {0}, old_int, old_term, old_pipe, ign = {0};
    g_stop = 0;
    g_ranked = r.dist->world > 1;
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* a closed stderr (mpirun tears down its output forwarding as it stops the job; `| head`)
     * must not kill the run between its last step and its checkpoint: a failed write is dropped */
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    if (!open_job(&r, err, errn) && !init_update(&r, err, errn) && !start_run(&r, err, errn)) {
        bool stopped = false;
        if (!run_loop(&r, &stopped, err, errn) && !run_finish(&r, stopped, err, errn))
            rc = stopped ? 128 + (g_stop == SIGTERM ? SIGTERM : SIGINT) : 0;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    run_free(&r);
    return rc;
}
