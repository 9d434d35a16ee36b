/* step.h: one optimisation step over a global batch given as micro-batches.
 *
 * Each micro-batch runs forward, the fused LM-head loss and backward of the loss SUM
 * sum(w*ce), so gradients accumulate as sums. Only when every micro-batch (and, with MPI, every
 * rank, through the reduce hook) has been seen is the total normaliser known:
 *   tokens: sum(w) over the whole global batch (default; the mean over weighted tokens),
 *   keras:  global batch size x padded length (KerasHub's sum_over_batch_size),
 * and the gradients are divided once. So 4 micro-batches of 1 equal 1 batch of 4 exactly in
 * exact arithmetic, however unevenly their response tokens are spread. Then: non-finite check,
 * global-norm clipping, the optimizer update.
 * Ownership: micro-batches, results and the optimizer are the caller's; step tensors live in ctx
 * until gt_ctx_reset. Errors: -1 with a one-line message (a failed op; a non-finite loss or
 * gradient unless skip_nonfinite); the weights are updated only when the whole step succeeded. */
#ifndef GT_STEP_H
#define GT_STEP_H

#include "models/gemma.h"
#include "train/optim.h"

typedef enum { GT_NORM_TOKENS, GT_NORM_KERAS } gt_loss_norm;

typedef struct gt_micro_batch {
    gt_gemma_batch in;       /* B x T token ids (+ optional positions, padding, segments) */
    const int32_t *labels;   /* B*T next-token labels (anything where weight == 0) */
    const gt_real *weights;  /* B*T sample weights */
    int64_t first_row;       /* index of row 0 in the global batch (positions LoRA dropout masks) */
    /* Gemma 3 with images (NULL encoder: text only): row r's n_images[r] images are pixels +
     * r * image_slots * (image_size^2 * 3); vision_mask [B, T] marks their placeholders, in
     * order. The encoder runs on them and its rows replace those embeddings. */
    const struct gt_vision *encoder;
    const float *pixels;
    const int32_t *n_images;
    int64_t image_slots;
    const uint8_t *vision_mask;
    /* Gemma 4 with media (NULL: none): the micro-batch is the job's rows media4_row0.. of
     * train/media4_rows.h; vision_mask then marks every media slot (image or audio). */
    const struct gt_m4rows *media4;
    int64_t media4_row0;
} gt_micro_batch;

/* Sums every rank must add up before the update: the gradient slices and the two scalars. A NULL
 * hook means one process. Returns 0 or -1 with a message. */
typedef int (*gt_reduce_fn)(void *user, const gt_param_slice *p, int n, double *scalars,
                            int n_scalars, char *err, size_t errn);

typedef struct gt_step_cfg {
    gt_loss_norm norm;
    int64_t chunk_rows;      /* LM-head chunk (memory: chunk_rows x vocab floats) */
    double clip_norm;        /* 0 = off */
    bool skip_nonfinite;     /* false: a non-finite loss or gradient is an error */
    gt_reduce_fn reduce;
    void *reduce_user;
    /* Optional, with reduce (same user): during the last micro-batch's backward, called with
     * slice index i >= 0 as soon as no remaining backward op can add to slice i's gradient (so
     * its reduction can start while backward goes on), and with i = -1 after every backward op
     * (to let started reductions progress). reduce is still called at the end for the rest. */
    void (*ready)(void *user, const gt_param_slice *p, int n, int i);
    /* Optional, with reduce (same user): applies the update in place of gt_optim_step (a sharded
     * update, gt_dist_sharded_update); 0 or -1 with a message. */
    int (*update)(void *user, gt_optim *opt, double lr, char *err, size_t errn);
    gt_lora *lora;           /* the model's adapters, or NULL: their dropout masks are placed at
                                each micro-batch's first_row so they do not depend on the split */
} gt_step_cfg;

typedef struct gt_step_result {
    double loss;             /* normalised loss of the global batch */
    double weight_sum;       /* sum of weights over the global batch */
    double grad_norm;        /* before clipping */
    int64_t tokens;          /* B x T over the global batch (all ranks) */
    bool skipped;            /* non-finite and skip_nonfinite: no update was made */
} gt_step_result;

/* Zero grads, run the micro-batches, normalise, clip, update with lr. The model's trainable
 * tensors (LoRA adapters or the full model) must be exactly the optimizer's slices. */
int gt_step_run(gt_ctx *ctx, const gt_gemma *m, gt_optim *opt, const gt_step_cfg *cfg,
                const gt_micro_batch *mb, int n_micro, int64_t global_batch_rows, double lr,
                gt_step_result *res, char *err, size_t errn);

/* Evaluation: weighted CE sum and weight sum of a batch, no tape. row_ce optional (B*T). The
 * model is causal, so it runs on the columns up to the batch's last weighted label only. */
int gt_step_eval(gt_ctx *ctx, const gt_gemma *m, const gt_micro_batch *mb, int64_t chunk_rows,
                 double *wce_sum, double *w_sum, gt_real *row_ce, char *err, size_t errn);

#endif
