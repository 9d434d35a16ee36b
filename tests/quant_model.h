/* quant_model.h: what the frozen-storage tests (test_quant, test_quant_k, test_compute_bf16) share:
 * their tiny Gemma 3, a LoRA run on one fixed batch, and the comparisons of two runs' losses and
 * adapter gradients, and of two linears or LM heads on the same input. Every check fails the
 * running Check test, naming what differed. */
#ifndef GT_TESTS_QUANT_MODEL_H
#define GT_TESTS_QUANT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/bf16_gemm.h"
#include "models/gemma.h"

/* Tiny Gemma 3: vocabulary 512, 2 layers, 2 query heads and 1 kv head of 32, window 8. */
gt_gemma_config gt_test_tiny3_cfg(int64_t hidden_dim, int64_t intermediate_dim);

/* LoRA rank 4, alpha 8, seed 9 on query, value and down, AdamW (defaults) at lr for `steps` steps
 * of one fixed [2, 16] batch (ids below 512, labels below 64). b_nonzero fills B too, so that A's
 * gradient flows from the first step. losses[s]: each step's loss; grad0, when not NULL, the
 * first step's adapter gradients (at most cap of them; *ng their count). m->lora ends NULL. */
void gt_test_lora_run(gt_gemma *m, int steps, double lr, bool b_nonzero, double *losses, gt_real *grad0,
                      int64_t cap, int64_t *ng);

/* Every step within tol of ref relative (|got - ref| / ref); the worst such ratio. */
double gt_test_losses_near(const double *got, const double *ref, int n, double tol, const char *what);

/* The run learned: its last loss under 0.8 x its first. */
void gt_test_loss_fell(const double *losses, int n);

/* max |ref| above gmin, and max |got - ref| within tol of it. */
void gt_test_grads_near(const gt_real *got, const gt_real *ref, int64_t n, double gmin, double tol, const char *what);

/* The same input through two linears: w1 (a stored matrix), and w2 when not NULL, else x W^T with
 * W the fp32 [rows, cols] values wf; both backward from the output gradient g. */
typedef struct gt_test_pair {
    gt_ctx c1, c2;
    gt_tensor *x1, *x2, *y1, *y2;
} gt_test_pair;
void gt_test_linear_pair(gt_test_pair *p, const gt_bf16_mat *w1, const gt_bf16_mat *w2, const gt_real *wf,
                         const gt_real *x, int ndim, const int64_t *xs, const gt_real *g);

/* The fused LM-head loss of h [n, e1->cols] on the table e1, and on e2 when not NULL, else the
 * fp32 op on the [e1->rows, e1->cols] values ef; both backward. x1/x2: the two h, y1/y2: the two
 * losses, ce1/ce2: the rows' losses. */
void gt_test_lm_head_pair(gt_test_pair *p, const gt_bf16_mat *e1, const gt_bf16_mat *e2, const gt_real *ef,
                          const gt_real *h, int64_t n, double cap, const int32_t *labels, const gt_real *w,
                          int64_t block, gt_real *ce1, gt_real *ce2);

void gt_test_pair_free(gt_test_pair *p);

#endif
