/* optim.h: AdamW / Adam / SGD with Keras 3 semantics, LR schedules, global-norm clipping.
 *
 * The optimizer updates a list of parameter slices {name, data, grad, size, decay} owned by the
 * caller (LoRA adapters, or every model weight); the list is copied, the names and buffers are
 * not, so they must outlive the optimizer. Names must be unique (state is found by name).
 * The optimizer owns its state in ONE allocation (`state`): Adam's first moments of every slice
 * in list order, then the second moments (`m` and `v` point into it); SGD with momentum keeps one
 * velocity array; plain SGD keeps none. Checkpoints see it as named arrays through
 * gt_optim_state_get (Keras' names "momentum" / "velocity", in Keras' optimizer-variable order)
 * plus the step counter; restoring both makes the next update bit-identical.
 *
 * AdamW step, t = step + 1 (Keras optimizers/adam.py + base_optimizer.py):
 *   decoupled decay first, for decay slices:  w -= lr * wd * w
 *   m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2)
 *   w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
 * Adam: the same with wd = 0 (cfg.weight_decay is ignored). SGD (Keras): with momentum mu,
 * vel = mu * vel - lr * g; w += vel; without: w -= lr * g; decoupled decay as above when wd > 0.
 * The per-step scalars (lr * wd, the bias-corrected step size) are computed in double, then
 * rounded once to gt_real; the element update is one fused pass in gt_real. The update is split
 * over OpenMP threads by value ranges of the whole list (one parallel region per step), and its
 * result does not depend on the thread count.
 *
 * Errors: gt_optim_init validates the config and the list and returns -1 with a one-line message;
 * the other functions cannot fail (out-of-range indexes return -1 / NULL as documented). */
#ifndef GT_OPTIM_H
#define GT_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/real.h"

typedef struct gt_param_slice {
    const char *name;
    gt_real *data, *grad;
    int64_t size;
    bool decay;
} gt_param_slice;

typedef enum { GT_OPT_ADAMW, GT_OPT_ADAM, GT_OPT_SGD } gt_opt_kind;

typedef struct gt_optim_cfg {
    gt_opt_kind kind;
    double beta_1, beta_2, epsilon;   /* Keras defaults 0.9, 0.999, 1e-7; each beta in [0, 1) */
    double weight_decay;              /* AdamW default 0.004 in Keras; configs usually set 0.01 */
    double momentum;                  /* SGD, in [0, 1] (Keras' range) */
} gt_optim_cfg;

typedef struct gt_optim {
    gt_optim_cfg cfg;
    gt_param_slice *params;
    int n_params;
    int64_t n_values;     /* sum of the slice sizes */
    int64_t *offset;      /* n_params + 1 entries: slice i covers [offset[i], offset[i+1]) */
    int n_kinds;          /* state arrays per slice: 2 (Adam m, v), 1 (SGD momentum) or 0 */
    gt_real *state;       /* n_kinds * n_values values, zero-initialised; NULL when n_kinds = 0 */
    gt_real *m, *v;       /* m: Adam first moments / SGD velocity; v: Adam second moments */
    int64_t step;         /* updates applied so far */
} gt_optim;

void gt_optim_cfg_defaults(gt_optim_cfg *c, gt_opt_kind kind);
/* Copies the slice list (not the data). Returns 0 or -1 with a message. */
int gt_optim_init(gt_optim *o, const gt_optim_cfg *cfg, const gt_param_slice *params, int n,
                  char *err, size_t errn);
void gt_optim_free(gt_optim *o);
/* One update with learning rate lr, using the slices' current gradients; then step++. */
void gt_optim_step(gt_optim *o, double lr);
/* The same update applied to values [lo, hi) of the list only (flat index: the slices in order),
 * then step++. Processes that each update their own share and exchange the values (gt_dist's
 * sharded update) end with exactly what gt_optim_step gives; the state outside [lo, hi) is left
 * as it was (stale until gathered). */
void gt_optim_step_range(gt_optim *o, double lr, int64_t lo, int64_t hi);

/* Named state arrays for checkpoints. Index i in [0, gt_optim_state_count): slice i / n_kinds,
 * kind i % n_kinds, i.e. Keras' order (per variable: momentum, then velocity). */
typedef struct gt_optim_state_array {
    const char *param;    /* the slice's name */
    const char *kind;     /* "momentum" or "velocity" */
    gt_real *data;        /* size values inside o->state (read or overwrite in place) */
    int64_t size;
} gt_optim_state_array;

int gt_optim_state_count(const gt_optim *o);
/* Fills *out; returns 0, or -1 when i is out of range. */
int gt_optim_state_get(const gt_optim *o, int i, gt_optim_state_array *out);
/* Index of the array of slice `param` and `kind`, or -1. */
int gt_optim_state_find(const gt_optim *o, const char *param, const char *kind);
int64_t gt_optim_get_step(const gt_optim *o);
/* Sets the number of updates already applied (restore); -1 if step < 0. */
int gt_optim_set_step(gt_optim *o, int64_t step);

/* true when name contains any of the patterns as a plain substring (Keras'
 * exclude_from_weight_decay(var_names=...) uses re.search; the names used for it, "bias" and
 * "scale", have no regex metacharacters). Empty or NULL patterns match nothing. */
bool gt_optim_name_excluded(const char *name, const char *const *patterns, int n_patterns);

typedef enum { GT_SCHED_CONSTANT, GT_SCHED_LINEAR, GT_SCHED_COSINE } gt_sched_kind;

typedef struct gt_schedule {
    gt_sched_kind kind;
    double lr;             /* peak learning rate */
    double min_lr;         /* floor of the decay */
    int64_t warmup_steps;  /* linear warmup: lr * (step + 1) / warmup for step < warmup */
    int64_t total_steps;   /* decay runs from warmup_steps to total_steps */
} gt_schedule;

/* Learning rate of update number step (0-based; negative steps count as 0).
 * Warmup (step < warmup_steps): lr * (step + 1) / warmup_steps, so the first update already
 * moves (lr / warmup) and update warmup-1 uses the full lr.
 * After it, with p = (step - warmup) / (total - warmup) clamped to [0, 1] (p = 1 when
 * total <= warmup): constant lr; linear lr - (lr - min) p; cosine min + (lr - min)(1 + cos(pi p))/2.
 * p reaches 1 at step = total_steps, one past the last update of a total_steps-long run (Keras'
 * and Hugging Face's convention: the last update uses a rate just above min_lr). */
double gt_schedule_lr(const gt_schedule *s, int64_t step);

/* Global L2 norm of all gradients, accumulated in double over fixed blocks summed in a fixed
 * order, so the result does not depend on the thread count. NaN/Inf if any gradient is. */
double gt_grad_norm(const gt_param_slice *p, int n);
/* Multiply every gradient by s (rounded once to gt_real). */
void gt_grad_scale(const gt_param_slice *p, int n, double s);
/* Global-norm clipping: gradients are multiplied by max_norm / max(norm, max_norm), i.e. left
 * untouched when norm <= max_norm, when max_norm <= 0 (off) or when norm is not finite (the
 * caller checks finiteness first). Returns the norm before clipping. */
double gt_grad_clip(const gt_param_slice *p, int n, double max_norm);
/* First non-finite gradient in list order: returns the slice index and fills *index with the
 * element index, or returns -1 if all are finite. */
int gt_grad_find_nonfinite(const gt_param_slice *p, int n, int64_t *index);
/* 0 if every gradient is finite, else -1 with "non-finite gradient: NAME[INDEX] = VALUE". */
int gt_grad_check_finite(const gt_param_slice *p, int n, char *err, size_t errn);

#endif
