/* report.c: progress, summaries and JSON lines of train and eval jobs (train/report.h). */
#include "train/report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fsutil.h"

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
 * rounded exactly. 0, or -1 with errno set when the line did not reach the stream (flush: the
 * file). */
static int put_json(FILE *f, json_t *o, bool flush) {
    if (!o) return errno = ENOMEM, -1;
    errno = 0;
    int bad = json_dumpf(o, f, JSON_REAL_PRECISION(15)) || fputc('\n', f) == EOF || (flush && fflush(f)) || ferror(f);
    json_decref(o);
    if (bad && !errno) errno = EIO;
    return bad ? -1 : 0;
}

/* The lines of path up to step `upto` (a resumed run's checkpoint) rewritten in place,
 * atomically; the later ones (and a torn last line) were an earlier invocation's steps after its
 * last checkpoint, which the resumed run logs again. No file: nothing to do. */
static int keep_metrics_upto(const char *path, int64_t upto, char *err, size_t errn) {
    FILE *in = fopen(path, "r");
    if (!in) return errno == ENOENT ? 0 : (snprintf(err, errn, "logging.metrics: %s: %s", path, strerror(errno)), -1);
    gt_atomic w;
    char e[1024];
    if (gt_atomic_open(path, &w, e, sizeof e)) {
        fclose(in);
        return snprintf(err, errn, "logging.metrics: %s", e), -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)n, 0, &je), *st = o ? json_object_get(o, "step") : NULL;
        bool keep = st && json_is_integer(st) && json_integer_value(st) <= upto && line[n - 1] == '\n';
        json_decref(o);
        if (keep) fwrite(line, 1, (size_t)n, w.f);
    }
    free(line);
    int bad = ferror(in);
    fclose(in);
    if (bad) {
        gt_atomic_abort(&w);
        return snprintf(err, errn, "logging.metrics: %s: read failed", path), -1;
    }
    if (gt_atomic_commit(&w, e, sizeof e)) return snprintf(err, errn, "logging.metrics: %s", e), -1;
    return 0;
}

int gt_report_open_metrics(const char *path, int64_t resumed_at, FILE **f, char *err, size_t errn) {
    *f = NULL;
    if (resumed_at > 0 && keep_metrics_upto(path, resumed_at, err, errn)) return -1;
    *f = fopen(path, resumed_at > 0 ? "a" : "w");
    if (!*f) return snprintf(err, errn, "logging.metrics: %s: cannot write: %s", path, strerror(errno)), -1;
    return 0;
}

int gt_report_close(FILE *f, const char *what, const char *path, char *err, size_t errn) {
    errno = 0;
    int bad = fflush(f) || ferror(f) || fsync(fileno(f));
    int e = errno ? errno : EIO;
    if (fclose(f) && !bad) bad = 1, e = errno ? errno : EIO;
    if (bad) return snprintf(err, errn, "%s: %s: write failed: %s", what, path, strerror(e)), -1;
    return 0;
}

static void fmt_eta(double s, char *out, size_t n) {
    if (!(s >= 0) || s > 1e7) snprintf(out, n, "?");
    else if (s >= 3600) snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

void gt_report_start(gt_report *p, const gt_config *c, const gt_dist *dist, FILE *metrics, int64_t first,
                       int64_t end, int64_t total, int64_t tokens) {
    bool lead = dist->rank == 0;
    *p = (gt_report){
        .lead = lead,
        .tty = lead && (c->logging.progress == GT_PROGRESS_BAR ||
                        (c->logging.progress == GT_PROGRESS_AUTO && isatty(2))),
        .metrics = metrics, .every = c->logging.every_steps,
        .first = first, .end = end, .total = total, .tokens0 = tokens,
        .t0 = gt_now(), .reduce0 = dist->reduce_s, .dist = dist,
    };
}

/* decimals for a tokens/s figure: three significant digits below 100 (a 12B model's 0.45, not 0) */
static int tps_digits(double tps) { return tps >= 100 ? 0 : tps >= 10 ? 1 : tps >= 1 ? 2 : 3; }

int gt_report_step(const gt_report *p, int64_t step, double lr, const gt_step_result *res, int64_t tokens) {
    int64_t done = step + 1;
    if (!p->lead || (done % p->every != 0 && done != p->end)) return 0;
    double el = gt_now() - p->t0, tps = (double)(tokens - p->tokens0) / el;
    char eta[32];
    fmt_eta(el / (double)(done - p->first) * (double)(p->end - done), eta, sizeof eta);
    if (p->tty) {
        int w = 24, filled = (int)(done * w / p->total);
        fprintf(stderr, "\r[%.*s%*s] step %lld/%lld loss %.4f lr %.2e gnorm %.3f %.*f tok/s eta %s   ",
                filled, "########################", w - filled, "", (long long)done, (long long)p->total,
                res->loss, lr, res->grad_norm, tps_digits(tps), tps, eta);
    } else {
        fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e gnorm %.3f %.*f tok/s eta %s%s\n", (long long)done,
                (long long)p->total, res->loss, lr, res->grad_norm, tps_digits(tps), tps, eta,
                res->skipped ? " (skipped: non-finite)" : "");
    }
    if (!p->metrics) return 0;
    return put_json(p->metrics,
                    json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:b}", "step", (json_int_t)done, "loss",
                              jnum(res->loss, "%.9g"), "lr", jnum(lr, "%.6g"), "grad_norm", jnum(res->grad_norm, "%.6f"),
                              "weighted_tokens", jcount(res->weight_sum), "tokens_per_s", jnum(tps, "%.1f"), "skipped",
                              (int)res->skipped),
                    true);
}

void gt_report_break(const gt_report *p) {
    if (p->tty) fputc('\n', stderr);
}

double gt_report_end(const gt_report *p, int64_t step, bool stopped) {
    gt_report_break(p);
    double took = gt_now() - p->t0;
    if (!p->lead) return took;
    fprintf(stderr, "%s after %lld steps, %.2f s/step", stopped ? "interrupted" : step < p->total ? "stopped" : "done",
            (long long)step, step > p->first ? took / (double)(step - p->first) : 0.0);
    if (p->dist->world > 1)
        fprintf(stderr, ", %.1f%% of it in gradient allreduce",
                took > 0 ? 100 * (p->dist->reduce_s - p->reduce0) / took : 0.0);
    fputc('\n', stderr);
    return took;
}

int gt_report_eval(const char *label, double wce, double w, int64_t examples, FILE *metrics, int64_t step) {
    double loss = w > 0 ? wce / w : 0;
    fprintf(stderr, "%s: loss %.4f, perplexity %.3f over %.0f weighted tokens in %lld examples\n", label, loss,
            exp(loss), w, (long long)examples);
    if (!metrics) return 0;
    return put_json(metrics,
                    json_pack("{s:I, s:o, s:o, s:o}", "step", (json_int_t)step, "eval_loss", jnum(loss, "%.6f"),
                              "eval_perplexity", jnum(exp(loss), "%.4f"), "eval_tokens", jcount(w)),
                    true);
}

int gt_report_eval_json(FILE *f, double wce, double w, int64_t examples) {
    double loss = w > 0 ? wce / w : 0;
    return put_json(f,
                    json_pack("{s:o, s:o, s:o, s:I}", "loss", jnum(loss, "%.6f"), "perplexity", jnum(exp(loss), "%.4f"),
                              "tokens", jcount(w), "examples", (json_int_t)examples),
                    true);
}

int gt_report_example(FILE *f, int64_t line, double loss, double tokens) {
    return put_json(f,
                    json_pack("{s:I, s:o, s:o}", "line", (json_int_t)line, "loss", jnum(loss, "%.6f"), "tokens",
                              jcount(tokens)),
                    false);
}
