/* gradcheck.h: finite-difference gradient checks for engine ops (tests only).
 *
 * The forward under test is any function building a graph from persistent input tensors. The
 * checker forms L = sum(out * R) with a fixed random R, gets dL/dx by backward, and compares
 * with central differences (L(x+h) - L(x-h)) / 2h evaluated in double. Meant for the f64 build
 * (tests named *_f64.c), where agreement to 1e-7 is expected; it works in f32 with larger h and
 * a looser tolerance.
 *
 * Error per element: |a - fd| / max(|a| + |fd|, floor), floor = 1e-3 * max|fd| over the
 * tensor, so tiny gradients are judged against the tensor's scale. An input whose analytic and
 * numeric gradients are both identically zero fails (a vacuous check proves nothing). */
#ifndef GT_GRADCHECK_H
#define GT_GRADCHECK_H

#include <stdio.h>

#include "autograd/autograd.h"

typedef gt_tensor *(*gc_forward_fn)(gt_ctx *ctx, gt_tensor **inputs, void *user);

typedef struct gc_opts {
    double h;             /* finite-difference step (absolute); 0 -> 1e-6 (f64) or 1e-2 (f32) */
    double tol;           /* max allowed error; 0 -> 1e-7 (f64) or 1e-2 (f32) */
    int max_elems;        /* check at most this many elements per input (spread evenly); 0 = all */
    unsigned seed;        /* for R */
} gc_opts;

typedef struct gc_result {
    double max_err;       /* worst error over all checked inputs */
    int worst_input;
    long long worst_index;
    double analytic, numeric; /* at the worst element */
    char msg[256];        /* filled when the check fails */
} gc_result;

/* Returns 1 if every input with requires_grad passes, 0 otherwise (see res->msg). Inputs must be
 * persistent tensors (gt_tensor_new); their grad buffers are zeroed first. */
int gc_check(gc_forward_fn fn, void *user, gt_tensor **inputs, int n_inputs,
             const gc_opts *opts, gc_result *res);

/* Deterministic uniform fill in [lo, hi). */
void gc_fill_uniform(gt_tensor *t, unsigned *state, double lo, double hi);
double gc_rand(unsigned *state); /* uniform [0, 1) */

/* Largest |got - ref| over a loop, asserted once with ASSERT_WORST (a Check assertion per
 * element is slow). NaN sticks. */
typedef struct {
    double err;
    long long at;
} worst_t;

static inline void track(worst_t *w, long long at, double got, double ref) {
    double e = got > ref ? got - ref : ref - got;
    if (!(e <= w->err)) {
        w->err = e;
        w->at = at;
    }
}

/* for test files that include <check.h> */
#define ASSERT_WORST(w, tol, what) \
    ck_assert_msg((w).err <= (tol), "%s: error %.3g at %lld", (what), (w).err, (w).at)

#endif
