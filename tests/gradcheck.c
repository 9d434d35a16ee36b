#include "tests/gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double gc_rand(unsigned *state) {
    /* xorshift32: portable, deterministic across libcs */
    unsigned x = *state ? *state : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (double)(x >> 8) / 16777216.0;
}

void gc_fill_uniform(gt_tensor *t, unsigned *state, double lo, double hi) {
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (gt_real)(lo + (hi - lo) * gc_rand(state));
}

static double eval_loss(gc_forward_fn fn, void *user, gt_tensor **inputs, const double *r,
                        int64_t *out_size, char *err, size_t errn) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 20);
    ctx.grad_enabled = false;
    gt_tensor *out = fn(&ctx, inputs, user);
    double l = NAN;
    if (out && gt_ok(&ctx)) {
        l = 0;
        for (int64_t i = 0; i < out->size; i++) l += (double)out->data[i] * r[i];
        *out_size = out->size;
    } else {
        snprintf(err, errn, "forward failed: %s", ctx.err);
    }
    gt_ctx_free(&ctx);
    return l;
}

int gc_check(gc_forward_fn fn, void *user, gt_tensor **inputs, int n_inputs,
             const gc_opts *opts, gc_result *res) {
#ifdef GT_REAL_DOUBLE
    double h = opts && opts->h > 0 ? opts->h : 1e-6;
    double tol = opts && opts->tol > 0 ? opts->tol : 1e-7;
#else
    double h = opts && opts->h > 0 ? opts->h : 1e-2;
    double tol = opts && opts->tol > 0 ? opts->tol : 1e-2;
#endif
    int max_elems = opts ? opts->max_elems : 0;
    unsigned seed = opts && opts->seed ? opts->seed : 12345u;
    memset(res, 0, sizeof *res);
    res->worst_input = -1;

    /* Analytic pass. */
    gt_ctx ctx;
    gt_ctx_init(&ctx, 1 << 20);
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i]->grad) memset(inputs[i]->grad, 0, (size_t)inputs[i]->size * sizeof(gt_real));
    gt_tensor *out = fn(&ctx, inputs, user);
    if (!out || !gt_ok(&ctx)) {
        snprintf(res->msg, sizeof res->msg, "forward failed: %s", ctx.err);
        gt_ctx_free(&ctx);
        return 0;
    }
    int64_t n_out = out->size;
    double *r = malloc((size_t)(n_out ? n_out : 1) * sizeof *r);
    gt_real *seedv = malloc((size_t)(n_out ? n_out : 1) * sizeof *seedv);
    for (int64_t i = 0; i < n_out; i++) {
        r[i] = 2 * gc_rand(&seed) - 1;
        seedv[i] = (gt_real)r[i];
    }
    if (gt_backward_seed(&ctx, out, seedv) != GT_OK) {
        snprintf(res->msg, sizeof res->msg, "backward failed: %s", ctx.err);
        gt_ctx_free(&ctx);
        free(r);
        free(seedv);
        return 0;
    }
    gt_ctx_free(&ctx);

    int ok = 1;
    for (int t = 0; t < n_inputs && ok; t++) {
        gt_tensor *x = inputs[t];
        if (!x->requires_grad) continue;
        if (!x->grad) {
            snprintf(res->msg, sizeof res->msg, "input %d: no gradient buffer", t);
            ok = 0;
            break;
        }
        int64_t n = x->size, step = 1;
        if (max_elems > 0 && n > max_elems) step = (n + max_elems - 1) / max_elems;
        int64_t cnt = (n + step - 1) / step;
        double *fd = malloc((size_t)(cnt ? cnt : 1) * sizeof *fd);
        double fdmax = 0, amax = 0;
        for (int64_t c = 0; c < cnt; c++) {
            int64_t i = c * step;
            gt_real keep = x->data[i];
            x->data[i] = (gt_real)(keep + h);
            double hp = (double)x->data[i] - (double)keep;
            int64_t sz = 0;
            double lp = eval_loss(fn, user, inputs, r, &sz, res->msg, sizeof res->msg);
            x->data[i] = (gt_real)(keep - h);
            double hm = (double)keep - (double)x->data[i];
            double lm = eval_loss(fn, user, inputs, r, &sz, res->msg, sizeof res->msg);
            x->data[i] = keep;
            fd[c] = (lp - lm) / (hp + hm);
            if (fabs(fd[c]) > fdmax) fdmax = fabs(fd[c]);
            if (fabs((double)x->grad[i]) > amax) amax = fabs((double)x->grad[i]);
        }
        if (fdmax == 0 && amax == 0) {
            snprintf(res->msg, sizeof res->msg,
                     "input %d: analytic and numeric gradients are all zero (vacuous check)", t);
            ok = 0;
        }
        double floor = 1e-3 * fdmax;
        for (int64_t c = 0; c < cnt && ok; c++) {
            int64_t i = c * step;
            double a = (double)x->grad[i];
            double den = fabs(a) + fabs(fd[c]);
            if (den < floor) den = floor;
            double err = den > 0 ? fabs(a - fd[c]) / den : 0;
            if (!(err <= res->max_err) || res->worst_input < 0) {
                res->max_err = err;
                res->worst_input = t;
                res->worst_index = (long long)i;
                res->analytic = a;
                res->numeric = fd[c];
            }
        }
        free(fd);
    }
    if (ok && !(res->max_err <= tol)) {
        snprintf(res->msg, sizeof res->msg,
                 "input %d element %lld: analytic %.10g vs numeric %.10g (error %.3g > %.3g)",
                 res->worst_input, res->worst_index, res->analytic, res->numeric, res->max_err, tol);
        ok = 0;
    }
    free(r);
    free(seedv);
    return ok;
}
