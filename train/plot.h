/* plot.h: a training run's loss curves as SVG, behind `gemmatrain plot`.
 *
 * Input is the trainer's logging.metrics file (train/trainer.c): one JSON object a line, step
 * lines {"step", "loss", "lr", "grad_norm", ...} and eval lines {"step", "eval_loss", ...}. Three
 * series are read: "loss" (train), "eval_loss" and "lr", each keyed by "step". A resumed run
 * appends steps it had already logged, so each series keeps the last value a step got (file
 * order) and comes out sorted by step. The trainer prints a non-finite float as nan / inf, which
 * is not JSON: such bare words, and null, count as missing values; a step whose last value is
 * missing is left out of its series and counted. Blank lines and lines without any of the three
 * keys are ignored. Malformed JSON, a line that is not an object, a missing or non-integer
 * "step", or a value that is neither a number nor null is an error "FILE:LINE: reason".
 *
 * The SVG (hand-written, no dependencies): step on x, loss on the left y axis (train loss a
 * polyline id="train_loss", eval loss a polyline id="eval_loss" with circle markers in
 * g id="eval_loss_markers"), the learning rate dashed on its own right-hand axis (polyline
 * id="lr", axis g id="lr_axis"), round tick values, axis titles, a legend above the plot and an
 * optional title. It is written atomically: a temporary file beside the output, fsync, rename.
 *
 * Functions return 0, or -1 with a one-line message in err; they print nothing. */
#ifndef GT_PLOT_H
#define GT_PLOT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t step;
    double value;
} gt_plot_point;

typedef struct {
    gt_plot_point *pts; /* sorted by step, one per step, all finite */
    size_t n;
    int64_t skipped;    /* steps left out: last value nan / inf / null */
} gt_plot_series;

typedef struct {
    gt_plot_series loss, eval_loss, lr;
    int64_t repeated;   /* values replaced by a later line for the same step (resumed runs) */
} gt_plot_data;

/* Read a metrics file. Fails on the errors above, on a file that cannot be opened
 * ("FILE: cannot open: <strerror>"), and on one without a single loss or eval_loss point.
 * On success the caller frees *d with gt_plot_free; on failure *d holds nothing to free. */
int gt_plot_read(const char *path, gt_plot_data *d, char *err, size_t errn);
void gt_plot_free(gt_plot_data *d);

typedef struct {
    const char *title; /* NULL or "": none; any bytes (escaped, invalid UTF-8 replaced) */
} gt_plot_opts;

/* The SVG document of d in *svg (NUL-terminated, *n bytes without the NUL; caller frees). */
int gt_plot_svg(const gt_plot_data *d, const gt_plot_opts *o, char **svg, size_t *n, char *err, size_t errn);
/* gt_plot_svg written to path atomically; on failure path is untouched and no temporary file
 * is left behind. */
int gt_plot_write_svg(const gt_plot_data *d, const gt_plot_opts *o, const char *path, char *err, size_t errn);

#endif
