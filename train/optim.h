/* optim.h: AdamW / Adam / SGD with Keras 3 semantics, LR schedules, global-norm clipping.
 *
 * The optimizer updates a list of parameter slices {name, data, grad, size, decay} owned by the
 * caller (LoRA adapters, or every model weight) and owns its state (Adam m and v, or SGD
 * momentum) in one allocation in list order, exposed for checkpoints; restoring state and step
 * makes the next update bit-identical.
 *
 * AdamW step t = step + 1 (Keras optimizers/adam.py + base_optimizer.py):
 *   decoupled decay first, for decay slices:  w -= lr * wd * w
 *   m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2)
 *   w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
 * SGD (Keras): with momentum mu: vel = mu * vel - lr * g; w += vel; without: w -= lr * g;
 * decoupled decay as above when wd > 0. Per-step scalars are computed in double. */
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
    double beta_1, beta_2, epsilon;   /* Keras defaults 0.9, 0.999, 1e-7 */
    double weight_decay;              /* AdamW default 0.004 in Keras; configs usually set 0.01 */
    double momentum;                  /* SGD */
} gt_optim_cfg;

typedef struct gt_optim {
    gt_optim_cfg cfg;
    gt_param_slice *params;
    int n_params;
    int64_t n_values;
    gt_real *m, *v;       /* Adam moments (or SGD velocity in m); n_values each, list order */
    int64_t step;         /* updates applied so far */
} gt_optim;

void gt_optim_cfg_defaults(gt_optim_cfg *c, gt_opt_kind kind);
/* Copies the slice list (not the data). Returns 0 or -1 with a message. */
int gt_optim_init(gt_optim *o, const gt_optim_cfg *cfg, const gt_param_slice *params, int n,
                  char *err, size_t errn);
void gt_optim_free(gt_optim *o);
/* One update with learning rate lr, using the slices' current gradients. */
void gt_optim_step(gt_optim *o, double lr);

/* true when name contains any of the patterns (Keras exclude_from_weight_decay var_names). */
bool gt_optim_name_excluded(const char *name, const char *const *patterns, int n_patterns);

typedef enum { GT_SCHED_CONSTANT, GT_SCHED_LINEAR, GT_SCHED_COSINE } gt_sched_kind;

typedef struct gt_schedule {
    gt_sched_kind kind;
    double lr;             /* peak learning rate */
    double min_lr;         /* floor of the decay */
    int64_t warmup_steps;  /* linear warmup: lr * (step + 1) / warmup for step < warmup */
    int64_t total_steps;   /* decay runs from warmup_steps to total_steps */
} gt_schedule;

/* Learning rate for update number step (0-based). After warmup, with p = (step - warmup) /
 * max(1, total - warmup) clamped to [0, 1]: constant lr; linear lr - (lr - min) p;
 * cosine min + (lr - min) (1 + cos(pi p)) / 2. */
double gt_schedule_lr(const gt_schedule *s, int64_t step);

/* Global L2 norm of all gradients (accumulated in double). */
double gt_grad_norm(const gt_param_slice *p, int n);
/* Multiply every gradient by s. */
void gt_grad_scale(const gt_param_slice *p, int n, double s);
/* Clip to max_norm (no-op if max_norm <= 0 or below it); returns the norm before clipping. */
double gt_grad_clip(const gt_param_slice *p, int n, double max_norm);
/* First non-finite gradient: returns the slice index and fills *index, or -1 if all finite. */
int gt_grad_find_nonfinite(const gt_param_slice *p, int n, int64_t *index);

#endif
