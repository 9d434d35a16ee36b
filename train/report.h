/* report.h: what a train or eval job tells its user (internal to train/).
 *
 * Owns the output formats: the progress of a training run on stderr (a bar redrawn in place on
 * a terminal, one plain line per logging.every_steps otherwise) and its closing summary, eval
 * results on stderr, and the JSON lines written with jansson: logging.metrics (one per logged
 * step and per eval), eval.per_example_output and the eval command's result on stdout. Numbers
 * are rounded to short, diffable forms; a non-finite one is null, so every line stays valid
 * JSON. Only rank 0 reports: a gt_report started with lead false prints nothing. Every JSON
 * line is checked: the functions that write one return 0, or -1 with errno set when it did not
 * reach its file (a full disk), and the caller names the file; closing is checked too. */
#ifndef GT_REPORT_H
#define GT_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "train/config.h"
#include "train/dist.h"
#include "train/step.h"
#include "util/clock.h" /* gt_now */

typedef struct gt_report {
    bool lead;               /* rank 0: the only one that prints */
    bool tty;                /* a redrawn bar (logging.progress, or auto and stderr a terminal) */
    FILE *metrics;           /* logging.metrics (not owned), or NULL */
    int64_t every;           /* logging.every_steps */
    int64_t first, end, total; /* steps: the run's first, where it stops, the schedule's total */
    int64_t tokens0;         /* tokens seen before `first` (a resumed run) */
    double t0, reduce0;      /* start time, and dist->reduce_s then */
    const gt_dist *dist;
} gt_report;

/* logging.metrics opened for writing: emptied for a fresh run (resumed_at 0); for a run resumed
 * at step N its lines of steps after N (an earlier invocation's, logged again now) are dropped
 * first, atomically, so no step repeats. 0 or -1 with a message. */
int gt_report_open_metrics(const char *path, int64_t resumed_at, FILE **f, char *err, size_t errn);
/* Flush, fsync and close a JSON lines file (f is closed in every case); 0, or -1 with
 * "WHAT: PATH: write failed: ..." in err. */
int gt_report_close(FILE *f, const char *what, const char *path, char *err, size_t errn);

/* Starts the clock for steps first..end-1 of total. */
void gt_report_start(gt_report *p, const gt_config *c, const gt_dist *dist, FILE *metrics, int64_t first,
                       int64_t end, int64_t total, int64_t tokens);
/* After step (0-based) with rate lr: the progress line and metrics line when due. tokens: the
 * running total. */
int gt_report_step(const gt_report *p, int64_t step, double lr, const gt_step_result *res, int64_t tokens);
/* Ends a redrawn bar's line before something else is printed. */
void gt_report_break(const gt_report *p);
/* The summary ("done after N steps, S s/step"), `step` the steps completed; returns the seconds
 * since gt_report_start. */
double gt_report_end(const gt_report *p, int64_t step, bool stopped);

/* An eval's loss (wce / w) and perplexity on stderr, and as a metrics line at step when metrics
 * is not NULL. */
int gt_report_eval(const char *label, double wce, double w, int64_t examples, FILE *metrics, int64_t step);
/* The eval command's result: one JSON line (loss, perplexity, tokens, examples). */
int gt_report_eval_json(FILE *f, double wce, double w, int64_t examples);
/* eval.per_example_output: one example's loss and weighted tokens, by its line number. */
int gt_report_example(FILE *f, int64_t line, double loss, double tokens);

#endif
