/* eval.c: batched, length-sorted evaluation and the eval job (train/eval.h). */
#include "train/eval.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "train/report.h"
#include "train/step.h"
#include "util/fsutil.h"

/* Orders examples by length, then index (qsort_r is not C11: the lengths travel in the keys). */
typedef struct gt_eval_key {
    int64_t len, index;
} eval_key;

static int cmp_eval_key(const void *pa, const void *pb) {
    const eval_key *a = pa, *b = pb;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* j->eval_keys: the first n examples of ds by length (the last weighted label of each one's row),
 * and their line numbers; once per job, the eval set does not change. 0 or -1 with a message. */
static int eval_order(gt_job *j, gt_dataset *ds, int64_t n, char *err, size_t errn) {
    eval_key *keys = malloc(sizeof *keys * (size_t)(n ? n : 1));
    int64_t *lines = malloc(sizeof *lines * (size_t)(n ? n : 1));
    if (!keys || !lines) return free(keys), free(lines), snprintf(err, errn, "out of memory"), -1;
    for (int64_t i = 0; i < n; i++) {
        gt_example ex;
        if (gt_dataset_read(ds, i, &ex, err, errn)) return free(keys), free(lines), -1;
        j->vis.no_pixels = j->m4.no_media = true; /* only the lengths count here: the batches decode the media */
        int frc = gt_job_fill_row(j, ds->path, 0, &ex, err, errn);
        j->vis.no_pixels = j->m4.no_media = false;
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
int gt_job_evaluate(gt_job *j, gt_dataset *ds, gt_ctx *ctx, FILE *per_example, gt_eval_result *res, char *err,
                    size_t errn) {
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
            int frc = gt_job_fill_row(j, ds->path, r, &ex, err, errn);
            gt_example_free(&ex);
            if (frc) goto done;
        }
        gt_micro_batch mb = {.in = {.batch = b, .seq = j->S, .token_ids = j->ids, .padding_mask = j->mask},
                             .labels = j->labels, .weights = j->weights};
        gt_job_attach_images(j, 0, &mb);
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
            if (gt_report_example(per_example, lines[i], ex_loss[2 * i], ex_loss[2 * i + 1])) {
                int e = errno;
                snprintf(err, errn, "eval.per_example_output: %s: write failed: %s", j->cfg->eval.per_example_output,
                         strerror(e));
                goto done;
            }
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

int gt_eval_job(const gt_config *cfg, bool adapters_from_file, char *err, size_t errn) {
    gt_job j;
    gt_config own = *cfg, *c = &own; /* the effective config (gt_job_open_adapters fills in the file's LoRA) */
    gt_dist solo = {.world = 1, .local_world = 1};
    gt_dataset ev = {0};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_atomic per = {0}; /* eval.per_example_output: in place only once complete */
    int rc = -1;
    const char *path = c->data.eval[0] ? c->data.eval : c->data.train;
    char e2[1024];
    gt_job_init(&j, c, &solo);
    /* the run's output_dir/config.yaml is the training run's: eval writes only its own files */
    if (gt_job_build_model(&j, err, errn) || (adapters_from_file && gt_job_open_adapters(&j, c, err, errn)) ||
        gt_job_announce(&j, false, err, errn) || gt_job_build_trainables(&j, err, errn) ||
        gt_job_alloc_rows(&j, c->eval.batch_size, err, errn))
        goto done;
    if (gt_dataset_open(path, c->data.format, c->data.on_bad_line == GT_BAD_LINE_SKIP, &ev, err, errn)) goto done;
    if (c->eval.per_example_output[0] && (gt_mkdir_parents(c->eval.per_example_output, e2, sizeof e2) ||
                                          gt_atomic_open(c->eval.per_example_output, &per, e2, sizeof e2))) {
        snprintf(err, errn, "eval.per_example_output: %s", e2);
        goto done;
    }
    gt_eval_result er;
    if (gt_job_evaluate(&j, &ev, &ctx, per.f, &er, err, errn)) goto done;
    if (per.f && gt_atomic_commit(&per, e2, sizeof e2)) {
        snprintf(err, errn, "eval.per_example_output: %s", e2);
        goto done;
    }
    gt_report_eval(path, er.wce, er.w, er.examples, NULL, 0);
    if (gt_report_eval_json(stdout, er.wce, er.w, er.examples)) {
        int e = errno;
        snprintf(err, errn, "stdout: write failed: %s", strerror(e));
        goto done;
    }
    rc = 0;
done:
    if (per.f || per.tmp) gt_atomic_abort(&per);
    if (ev.f) gt_dataset_close(&ev);
    gt_ctx_free(&ctx);
    gt_job_free(&j);
    return rc;
}
