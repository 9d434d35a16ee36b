/* tape.h: the step context: arena, tape, and a sticky error.
 *
 * Ops (ops_*.h) take a gt_ctx and return a new step tensor, or NULL on error. Errors are
 * sticky: the first failure (bad shape, bad argument, out of memory) stores a status and a
 * one-line message naming the op and the shapes; later ops see it and return NULL at once, so
 * a model can be written as straight-line code and checked once at the end. Nothing aborts.
 *
 * Recording: when grad is enabled and any input requires a gradient, the op's output requires
 * one too and a node (op, inputs, output, saved state) is appended to the tape. gt_backward
 * walks the tape in reverse; each node adds its output gradient's contribution into the
 * gradients of those inputs that require one, and skips the rest (frozen weights cost nothing).
 * Gradients accumulate (+=), so several backward passes sum, as accumulation needs.
 *
 * Gradient lifetime: during backward, the gradient of an op's output (a non-leaf tensor, as
 * PyTorch calls it) is released as soon as the node that produced it has run, and its memory is
 * reused for later gradients: after gt_backward only leaves (parameters, inputs made with
 * gt_from_data, ...) hold gradients; a non-leaf's grad is NULL.
 *
 * Activation lifetime: the tape, not the model, decides when a step tensor's data is released.
 * Two facts decide it, each stated where it is known:
 *  - which values a backward reads: each op declares it when it records its node (the `reads`
 *    mask of gt_record, computed next to the op's backward from which inputs need a gradient),
 *    and the backward reads them only through gt_saved_data, which fails (GT_ERR_STATE) for a
 *    value not declared or already released. Each declared read counts as a reader of the value's
 *    root tensor until that node's backward has run (or been skipped);
 *  - when the forward is done with a tensor: model code brackets a piece of forward in
 *    gt_scope_begin / gt_scope_end and names the tensors that leave it (its outputs); every other
 *    step tensor made inside is then done in the forward. An op given a done tensor as input
 *    fails (GT_ERR_STATE): a scope that let a tensor escape unnamed is caught at once.
 * A step tensor's data is released (for reuse by later tensors and gradients) as soon as both
 * hold: its scope has ended and no recorded backward still has to read it; so at scope end when
 * no backward reads it (inference: always), else during gt_backward right after its last
 * reader ran. Tensors made outside any scope live until gt_ctx_reset. In sanitizer builds the
 * released memory is poisoned, so a read past these rules is reported where it happens. */
#ifndef GT_TAPE_H
#define GT_TAPE_H

#include <stdio.h>

#include "autograd/arena.h"
#include "autograd/tensor.h"

enum {
    GT_OK = 0,
    GT_ERR_SHAPE = 1,   /* operands' shapes do not fit the op */
    GT_ERR_ARG = 2,     /* bad non-shape argument (NULL input, out-of-range index) */
    GT_ERR_NOMEM = 3,   /* allocation failed */
    GT_ERR_STATE = 4,   /* misuse: backward on a non-scalar, twice, ... */
};

#define GT_NODE_MAX_IN 4

typedef struct gt_ctx gt_ctx;
typedef struct gt_node gt_node;
typedef void (*gt_backward_fn)(gt_ctx *ctx, gt_node *node);

struct gt_node {
    gt_node *prev;
    const char *op;
    gt_backward_fn backward;
    gt_tensor *out;
    gt_tensor *in[GT_NODE_MAX_IN];
    int n_in;
    void *saved;              /* op-specific state, in the arena */
    unsigned reads;           /* GT_READ_IN(i) | GT_READ_OUT: values its backward reads */
};

/* Bits of a node's `reads` mask. */
#define GT_READ_IN(i) (1u << (i))
#define GT_READ_OUT (1u << GT_NODE_MAX_IN)
/* gt_saved_data's index for the node's output. */
#define GT_OUT (-1)

struct gt_ctx {
    gt_arena arena;
    gt_node *tape;            /* last recorded node */
    int64_t n_nodes;
    bool grad_enabled;        /* false: inference, nothing is recorded */
    void *free_grads;         /* released arena memory that gt_grad reuses (see gt_release) */
    gt_tensor *live;          /* forward-live step tensors, newest first (scopes cut it back) */
    int status;
    char err[512];
    /* Optional: called after each node is visited by backward (also when it had no gradient to
     * pass on), in backward order; lets a caller act on gradients as soon as they are final
     * (data-parallel reductions overlapping the rest of backward). */
    void (*on_node)(void *user, const gt_node *node);
    void *on_node_user;
};

void gt_ctx_init(gt_ctx *ctx, size_t arena_block_bytes);
void gt_ctx_free(gt_ctx *ctx);
/* Drop the tape and every step tensor; clears the error. */
void gt_ctx_reset(gt_ctx *ctx);

static inline bool gt_ok(const gt_ctx *ctx) { return ctx->status == GT_OK; }
/* Record the first error (printf-style message) and return NULL. */
void *gt_fail(gt_ctx *ctx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Arena memory; sets GT_ERR_NOMEM and returns NULL on failure. */
void *gt_alloc(gt_ctx *ctx, size_t bytes);

/* Step tensor, data uninitialised (gt_zeros: zeroed), requires_grad false. */
gt_tensor *gt_empty(gt_ctx *ctx, int ndim, const int64_t *shape);
gt_tensor *gt_zeros(gt_ctx *ctx, int ndim, const int64_t *shape);
/* Step tensor holding a copy of data (shape given); requires_grad as given. */
gt_tensor *gt_from_data(gt_ctx *ctx, const gt_real *data, int ndim, const int64_t *shape,
                        bool requires_grad);

/* Views (no copy, no tape entry; gradient flows straight into the root). */
gt_tensor *gt_reshape(gt_ctx *ctx, gt_tensor *x, int ndim, const int64_t *shape);
/* Rows [start, start+count) of axis 0. */
gt_tensor *gt_slice_rows(gt_ctx *ctx, gt_tensor *x, int64_t start, int64_t count);

/* A piece of forward whose intermediate tensors die at its end (see "Activation lifetime"). */
typedef struct {
    gt_tensor *mark; /* ctx->live at begin */
} gt_scope;

gt_scope gt_scope_begin(gt_ctx *ctx);
/* End s: the step tensors made since gt_scope_begin(s), except keep[0..n_keep) (or their roots,
 * for views; NULL entries are skipped), are done in the forward, released now when no recorded
 * backward reads them. The kept ones belong to the enclosing scope. Scopes nest; end the inner
 * one first. Returns keep[0] (NULL when n_keep is 0). */
gt_tensor *gt_scope_end(gt_ctx *ctx, gt_scope s, gt_tensor *const *keep, int n_keep);

/* For op implementations. gt_op_out: an output tensor whose requires_grad is true iff grad is
 * enabled and any of the n inputs requires one; fails (NULL, error set) when an input is done in
 * the forward (its scope ended). gt_record: append a node when out requires a gradient; reads:
 * GT_READ_IN(i) for each input whose values the backward reads, GT_READ_OUT for the output's
 * (declare exactly what gt_saved_data will be asked for). Returns false on allocation failure
 * (error set). */
gt_tensor *gt_op_out(gt_ctx *ctx, int ndim, const int64_t *shape, gt_tensor *const *in, int n);
bool gt_record(gt_ctx *ctx, const char *op, gt_backward_fn fn, gt_tensor *out,
               gt_tensor *const *in, int n_in, void *saved, unsigned reads);
/* In a backward: the data of input i (GT_OUT: the output) of node. NULL with GT_ERR_STATE set
 * when node did not declare that read or the data was released: a lifetime bug, never garbage. */
const gt_real *gt_saved_data(gt_ctx *ctx, const gt_node *node, int i);
/* Gradient storage of t, allocated zeroed in the arena on first use (views resolve to their
 * root), from released memory when a piece fits. NULL on allocation failure (error set). */
gt_real *gt_grad(gt_ctx *ctx, gt_tensor *t);
/* gt_grad for a backward that stores every one of t's t->size gradient values: when the
 * gradient is allocated by this call it is not zeroed and *fresh is true, and the caller must then
 * write (=, not +=) all of them; otherwise *fresh is false and the caller adds as usual. Saves
 * zeroing a buffer that is overwritten at once. Views cover their root whole or are zeroed. */
gt_real *gt_grad_w(gt_ctx *ctx, gt_tensor *t, bool *fresh);
/* Hand an arena allocation of `bytes` (gt_alloc'ed, in this step) back for reuse by gradients
 * and step tensors' data; the caller must not touch it afterwards. For an op's scratch that its
 * backward no longer needs (step tensors' data is the tape's to release, see above). */
void gt_release(gt_ctx *ctx, void *p, size_t bytes);
/* True when an input needs a gradient from this node. */
static inline bool gt_needs_grad(const gt_tensor *t) { return t && t->requires_grad; }

/* Seed d(loss)/d(loss) = 1 for a one-element loss and run the tape in reverse.
 * Returns ctx->status. The tape is consumed (a second call is an error until reset). */
int gt_backward(gt_ctx *ctx, gt_tensor *loss);
/* Same, but seeds d(L)/d(out) = seed (out->size values) for a tensor of any shape. */
int gt_backward_seed(gt_ctx *ctx, gt_tensor *out, const gt_real *seed);

/* Development aid, on with GT_OP_PROFILE=1 (otherwise both do nothing): wall time per op name,
 * forward (the time from the previous gt_record, or from gt_op_profile_mark, to this op's
 * gt_record) and backward (its backward function). Report prints the totals times scale (e.g.
 * 1 / steps; 0: prints nothing) and clears them. Single-threaded callers only. */
void gt_op_profile_mark(void);
/* Turns it on (1) or off (0) from code, clearing what was gathered; -1: back to GT_OP_PROFILE. */
void gt_op_profile_set(int on);
void gt_op_profile_report(FILE *f, double scale);

/* Helper for messages: shape string in a rotating static buffer (4 slots; not thread-safe). */
const char *gt_shp(const gt_tensor *t);

#endif
