/* tensor.h: dense row-major gt_real tensors (up to GT_MAX_DIMS axes).
 *
 * A tensor is a small struct pointing at storage it may or may not own:
 *  - persistent tensors (parameters, optimizer state) come from gt_tensor_new / gt_tensor_free,
 *    which own their data and, when requires_grad, a zeroed gradient buffer of the same size;
 *  - gt_tensor_wrap describes caller-owned memory (e.g. one slice of a parameter block);
 *  - step tensors (op outputs, views) live in a gt_ctx arena and die at gt_ctx_reset.
 * A view (reshape, slice of leading rows) aliases its root's data and gradient: writing a view's
 * gradient writes the root's, so views need no tape entry. Gradients of step tensors are
 * allocated lazily during backward; a tensor that never receives a gradient has grad == NULL.
 * A tensor with requires_grad == false (a frozen weight, an input) never gets a gradient and ops
 * skip the work of computing one.
 * Step tensors also carry the tape's lifetime bookkeeping (life, readers, next_step; see tape.h's
 * "Activation lifetime"); every other tensor is GT_LIFE_NONE and never released by a ctx. */
#ifndef GT_TENSOR_H
#define GT_TENSOR_H

#include "autograd/real.h"

#define GT_MAX_DIMS 5

/* Where a tensor's storage stands (tape.h, "Activation lifetime"). */
enum {
    GT_LIFE_NONE = 0,     /* not a step tensor (persistent, wrapped, a view): the ctx never frees it */
    GT_LIFE_LIVE = 1,     /* step tensor the forward may still read */
    GT_LIFE_DONE = 2,     /* forward done with it (scope ended); kept for a backward that reads it */
    GT_LIFE_RELEASED = 3, /* data handed back to the arena: reading it is a bug */
};

typedef struct gt_tensor {
    gt_real *data;
    gt_real *grad;            /* NULL until a gradient flows in (or owned, for persistent ones) */
    struct gt_tensor *root;   /* views: the tensor whose storage this aliases; else NULL */
    int64_t offset;           /* views: element offset into root's data and grad */
    int64_t shape[GT_MAX_DIMS];
    int64_t size;             /* product of shape */
    int ndim;
    bool requires_grad;
    bool owns_data;           /* gt_tensor_free releases data/grad */
    unsigned char life;       /* GT_LIFE_* */
    int32_t readers;          /* step tensors: recorded backwards that still have to read data */
    struct gt_tensor *next_step; /* step tensors: the ctx's list of those still forward-live */
    char name[96];            /* optional, for messages and checkpoints */
} gt_tensor;

/* Persistent tensor with zeroed data (and zeroed grad when requires_grad). NULL on bad shape
 * or allocation failure. Free with gt_tensor_free. */
gt_tensor *gt_tensor_new(int ndim, const int64_t *shape, bool requires_grad);
void gt_tensor_free(gt_tensor *t);

/* Fill *t to describe caller-owned data (and grad, may be NULL). Returns 0, or -1 on bad shape. */
int gt_tensor_wrap(gt_tensor *t, gt_real *data, gt_real *grad, int ndim, const int64_t *shape,
                   bool requires_grad);

/* Product of shape; -1 if a dimension is negative, ndim is out of range or it overflows. */
int64_t gt_shape_size(int ndim, const int64_t *shape);
bool gt_shape_eq(const gt_tensor *a, const gt_tensor *b);
/* "[2,3,4]" into buf (always NUL-terminated); returns buf. */
const char *gt_shape_str(const gt_tensor *t, char *buf, size_t n);
/* Size of the last axis and the product of the others. */
int64_t gt_rows(const gt_tensor *t);
int64_t gt_cols(const gt_tensor *t);

void gt_tensor_set_name(gt_tensor *t, const char *name);

#endif
