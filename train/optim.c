#include "train/optim.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

/* Below this many values in total an update runs on one thread (fork/join costs more). */
#define OPT_PAR_MIN 32768
/* Threads' value ranges start on multiples of this (whole cache lines, aligned vector loops). */
#define OPT_GRAIN 64
/* Norm: fixed blocks, each summed by one thread, combined in block order. */
#define NORM_BLOCK 16384
#define NORM_GROUP 256
#define NORM_LANES 8

static const char *const kind_names[2] = {"momentum", "velocity"};

void gt_optim_cfg_defaults(gt_optim_cfg *c, gt_opt_kind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->beta_1 = 0.9;
    c->beta_2 = 0.999;
    c->epsilon = 1e-7;
    c->weight_decay = kind == GT_OPT_ADAMW ? 0.004 : 0.0;
}

static int check_cfg(const gt_optim_cfg *c, char *err, size_t errn) {
    if (c->kind != GT_OPT_ADAMW && c->kind != GT_OPT_ADAM && c->kind != GT_OPT_SGD)
        return snprintf(err, errn, "optimizer: unknown kind %d", (int)c->kind), -1;
    if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
        return snprintf(err, errn, "optimizer.weight_decay: %g, must be >= 0", c->weight_decay), -1;
    if (c->kind == GT_OPT_SGD) {
        if (!(c->momentum >= 0 && c->momentum <= 1))
            return snprintf(err, errn, "optimizer.momentum: %g, must be in [0, 1]", c->momentum), -1;
        return 0;
    }
    if (!(c->beta_1 >= 0 && c->beta_1 < 1))
        return snprintf(err, errn, "optimizer.beta_1: %g, must be in [0, 1)", c->beta_1), -1;
    if (!(c->beta_2 >= 0 && c->beta_2 < 1))
        return snprintf(err, errn, "optimizer.beta_2: %g, must be in [0, 1)", c->beta_2), -1;
    if (!(c->epsilon > 0 && isfinite(c->epsilon)))
        return snprintf(err, errn, "optimizer.epsilon: %g, must be > 0", c->epsilon), -1;
    return 0;
}

static int check_params(const gt_param_slice *p, int n, char *err, size_t errn) {
    if (n < 0 || (n > 0 && !p))
        return snprintf(err, errn, "optimizer: bad parameter list (%d slices)", n), -1;
    for (int i = 0; i < n; i++) {
        if (!p[i].name || !p[i].name[0])
            return snprintf(err, errn, "optimizer: parameter %d has no name", i), -1;
        if (p[i].size < 0)
            return snprintf(err, errn, "optimizer: %s: size %lld < 0", p[i].name, (long long)p[i].size), -1;
        if (p[i].size > 0 && (!p[i].data || !p[i].grad))
            return snprintf(err, errn, "optimizer: %s: %s buffer is NULL", p[i].name,
                            p[i].data ? "grad" : "data"), -1;
        for (int k = 0; k < i; k++)
            if (!strcmp(p[k].name, p[i].name))
                return snprintf(err, errn, "optimizer: parameter name %s appears twice (%d and %d)",
                                p[i].name, k, i), -1;
    }
    return 0;
}

int gt_optim_init(gt_optim *o, const gt_optim_cfg *cfg, const gt_param_slice *params, int n,
                  char *err, size_t errn) {
    memset(o, 0, sizeof *o);
    if (check_cfg(cfg, err, errn) || check_params(params, n, err, errn)) return -1;
    o->cfg = *cfg;
    o->n_kinds = cfg->kind == GT_OPT_SGD ? (cfg->momentum > 0 ? 1 : 0) : 2;
    o->params = malloc((size_t)(n ? n : 1) * sizeof *o->params);
    o->offset = malloc((size_t)(n + 1) * sizeof *o->offset);
    if (!o->params || !o->offset) {
        gt_optim_free(o);
        return snprintf(err, errn, "optimizer: out of memory for %d parameter slices", n), -1;
    }
    if (n) memcpy(o->params, params, (size_t)n * sizeof *params);
    o->n_params = n;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        o->offset[i] = total;
        if (params[i].size > (INT64_MAX / 4) / (int64_t)sizeof(gt_real) - total) {
            gt_optim_free(o);
            return snprintf(err, errn, "optimizer: %s: parameter count overflows", params[i].name), -1;
        }
        total += params[i].size;
    }
    o->offset[n] = total;
    o->n_values = total;
    if (o->n_kinds) {
        size_t count = (size_t)o->n_kinds * (size_t)total;
        o->state = calloc(count ? count : 1, sizeof(gt_real));
        if (!o->state) {
            gt_optim_free(o);
            return snprintf(err, errn, "optimizer: out of memory for %zu state values", count), -1;
        }
        o->m = o->state;
        o->v = o->n_kinds == 2 ? o->state + total : NULL;
    }
    return 0;
}

void gt_optim_free(gt_optim *o) {
    free(o->params);
    free(o->offset);
    free(o->state);
    memset(o, 0, sizeof *o);
}

/* Per-step scalars, computed in double and rounded once. */
typedef struct {
    gt_real decay;              /* lr * wd, 0 when no decay */
    gt_real alpha;              /* Adam: lr * sqrt(1 - b2^t) / (1 - b1^t) */
    gt_real b1c, b2c, eps;      /* 1 - b1, 1 - b2, epsilon */
    gt_real mu, lr;             /* SGD */
} step_scalars;

static void adam_kernel(gt_real *restrict w, const gt_real *restrict g, gt_real *restrict m,
                        gt_real *restrict v, int64_t n, const step_scalars *s, bool dec) {
    const gt_real decay = s->decay, alpha = s->alpha, b1c = s->b1c, b2c = s->b2c, eps = s->eps;
    if (dec) {
        for (int64_t j = 0; j < n; j++) {
            gt_real wj = w[j] - w[j] * decay, gj = g[j];
            gt_real mj = m[j] + (gj - m[j]) * b1c;
            gt_real vj = v[j] + (gj * gj - v[j]) * b2c;
            m[j] = mj;
            v[j] = vj;
            w[j] = wj - mj * alpha / (sqrt(vj) + eps);
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            gt_real gj = g[j];
            gt_real mj = m[j] + (gj - m[j]) * b1c;
            gt_real vj = v[j] + (gj * gj - v[j]) * b2c;
            m[j] = mj;
            v[j] = vj;
            w[j] -= mj * alpha / (sqrt(vj) + eps);
        }
    }
}

static void sgd_kernel(gt_real *restrict w, const gt_real *restrict g, gt_real *restrict m, int64_t n,
                       const step_scalars *s, bool dec) {
    const gt_real decay = dec ? s->decay : 0, mu = s->mu, lr = s->lr;
    if (m) {
        for (int64_t j = 0; j < n; j++) {
            gt_real wj = dec ? w[j] - w[j] * decay : w[j];
            gt_real mj = m[j] * mu - g[j] * lr;
            m[j] = mj;
            w[j] = wj + mj;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            gt_real wj = dec ? w[j] - w[j] * decay : w[j];
            w[j] = wj - g[j] * lr;
        }
    }
}

/* Updates the flat value range [lo, hi) of the list: the parts of the slices that overlap it. */
static void update_range(const gt_optim *o, const step_scalars *s, bool decay_on, int64_t lo, int64_t hi) {
    if (lo >= hi) return;
    int a = 0, b = o->n_params; /* first slice with offset[i + 1] > lo */
    while (a < b) {
        int mid = (a + b) / 2;
        if (o->offset[mid + 1] <= lo) a = mid + 1;
        else b = mid;
    }
    for (int i = a; i < o->n_params && o->offset[i] < hi; i++) {
        const gt_param_slice *p = &o->params[i];
        int64_t off = o->offset[i], from = (lo > off ? lo : off) - off;
        int64_t to = (hi < o->offset[i + 1] ? hi : o->offset[i + 1]) - off;
        if (to <= from) continue;
        bool dec = decay_on && p->decay;
        gt_real *w = p->data + from;
        const gt_real *g = p->grad + from;
        int64_t n = to - from;
        if (o->cfg.kind == GT_OPT_SGD)
            sgd_kernel(w, g, o->m ? o->m + off + from : NULL, n, s, dec);
        else
            adam_kernel(w, g, o->m + off + from, o->v + off + from, n, s, dec);
    }
}

void gt_optim_step(gt_optim *o, double lr) { gt_optim_step_range(o, lr, 0, o->n_values); }

void gt_optim_step_range(gt_optim *o, double lr, int64_t from, int64_t to) {
    const gt_optim_cfg *c = &o->cfg;
    double t = (double)(o->step + 1);
    double wd = c->kind == GT_OPT_ADAM ? 0.0 : c->weight_decay;
    step_scalars s = {
        .decay = (gt_real)(lr * wd),
        .alpha = (gt_real)(lr * sqrt(1 - pow(c->beta_2, t)) / (1 - pow(c->beta_1, t))),
        .b1c = (gt_real)(1 - c->beta_1),
        .b2c = (gt_real)(1 - c->beta_2),
        .eps = (gt_real)c->epsilon,
        .mu = (gt_real)c->momentum,
        .lr = (gt_real)lr,
    };
    bool decay_on = wd > 0;
    if (from < 0) from = 0;
    if (to > o->n_values) to = o->n_values;
    int64_t N = to > from ? to - from : 0;
#pragma omp parallel if (N >= OPT_PAR_MIN)
    {
        int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t chunk = (N + nt - 1) / nt;
        chunk = (chunk + OPT_GRAIN - 1) / OPT_GRAIN * OPT_GRAIN;
        int64_t lo = id * chunk < N ? id * chunk : N, hi = lo + chunk < N ? lo + chunk : N;
        update_range(o, &s, decay_on, from + lo, from + hi);
    }
    o->step++;
}

int gt_optim_state_count(const gt_optim *o) { return o->n_params * o->n_kinds; }

int gt_optim_state_get(const gt_optim *o, int i, gt_optim_state_array *out) {
    if (i < 0 || i >= gt_optim_state_count(o)) return -1;
    int slice = i / o->n_kinds, kind = i % o->n_kinds;
    out->param = o->params[slice].name;
    out->kind = kind_names[kind];
    out->data = (kind ? o->v : o->m) + o->offset[slice];
    out->size = o->params[slice].size;
    return 0;
}

int gt_optim_state_find(const gt_optim *o, const char *param, const char *kind) {
    for (int k = 0; k < o->n_kinds; k++) {
        if (strcmp(kind, kind_names[k])) continue;
        for (int i = 0; i < o->n_params; i++)
            if (!strcmp(o->params[i].name, param)) return i * o->n_kinds + k;
    }
    return -1;
}

int64_t gt_optim_get_step(const gt_optim *o) { return o->step; }

int gt_optim_set_step(gt_optim *o, int64_t step) {
    if (step < 0) return -1;
    o->step = step;
    return 0;
}

bool gt_optim_name_excluded(const char *name, const char *const *patterns, int n_patterns) {
    for (int i = 0; i < n_patterns; i++)
        if (patterns[i] && *patterns[i] && strstr(name, patterns[i])) return true;
    return false;
}

double gt_schedule_lr(const gt_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    int64_t warm = s->warmup_steps > 0 ? s->warmup_steps : 0;
    double span = (double)(s->total_steps - warm);
    double p = span > 0 ? (double)(step - warm) / span : 1.0;
    if (p > 1) p = 1;
    switch (s->kind) {
    case GT_SCHED_LINEAR: return s->lr - (s->lr - s->min_lr) * p;
    case GT_SCHED_COSINE: return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1 + cos(M_PI * p));
    default: return s->lr;
    }
}

/* Sum of squares of one block, in double, with NORM_LANES independent partial sums in a fixed
 * order (vectorisable, yet deterministic). */
static double block_sumsq(const gt_real *x, int64_t n) {
    double acc[NORM_LANES] = {0};
    int64_t j = 0;
    for (; j + NORM_LANES <= n; j += NORM_LANES)
        for (int k = 0; k < NORM_LANES; k++) acc[k] += (double)x[j + k] * (double)x[j + k];
    for (; j < n; j++) acc[0] += (double)x[j] * (double)x[j];
    double s = 0;
    for (int k = 0; k < NORM_LANES; k++) s += acc[k];
    return s;
}

static double sumsq(const gt_real *g, int64_t n) {
    double total = 0;
    for (int64_t base = 0; base < n; base += (int64_t)NORM_BLOCK * NORM_GROUP) {
        int64_t rem = n - base;
        int nb = (int)((rem + NORM_BLOCK - 1) / NORM_BLOCK);
        if (nb > NORM_GROUP) nb = NORM_GROUP;
        double part[NORM_GROUP];
#pragma omp parallel for schedule(static) if (nb > 1)
        for (int b = 0; b < nb; b++) {
            int64_t at = (int64_t)b * NORM_BLOCK, len = rem - at < NORM_BLOCK ? rem - at : NORM_BLOCK;
            part[b] = block_sumsq(g + base + at, len);
        }
        for (int b = 0; b < nb; b++) total += part[b];
    }
    return total;
}

double gt_grad_norm(const gt_param_slice *p, int n) {
    double acc = 0;
    for (int i = 0; i < n; i++) acc += sumsq(p[i].grad, p[i].size);
    return sqrt(acc);
}

void gt_grad_scale(const gt_param_slice *p, int n, double s) {
    gt_real f = (gt_real)s;
    for (int i = 0; i < n; i++) {
        gt_real *g = p[i].grad;
        int64_t len = p[i].size;
#pragma omp parallel for schedule(static) if (len >= OPT_PAR_MIN)
        for (int64_t j = 0; j < len; j++) g[j] *= f;
    }
}

double gt_grad_clip(const gt_param_slice *p, int n, double max_norm) {
    double norm = gt_grad_norm(p, n);
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) gt_grad_scale(p, n, max_norm / norm);
    return norm;
}

int gt_grad_find_nonfinite(const gt_param_slice *p, int n, int64_t *index) {
    for (int i = 0; i < n; i++) {
        const gt_real *g = p[i].grad;
        int64_t len = p[i].size;
        int bad = 0;
        /* x - x is 0 for finite x and NaN for Inf/NaN: a branch-free, vectorisable test */
#pragma omp parallel for schedule(static) reduction(| : bad) if (len >= OPT_PAR_MIN)
        for (int64_t j = 0; j < len; j++) bad |= (g[j] - g[j]) != 0;
        if (!bad) continue;
        for (int64_t j = 0; j < len; j++)
            if (!isfinite(g[j])) {
                *index = j;
                return i;
            }
    }
    return -1;
}

int gt_grad_check_finite(const gt_param_slice *p, int n, char *err, size_t errn) {
    int64_t at = 0;
    int i = gt_grad_find_nonfinite(p, n, &at);
    if (i < 0) return 0;
    snprintf(err, errn, "non-finite gradient: %s[%lld] = %g", p[i].name, (long long)at,
             (double)p[i].grad[at]);
    return -1;
}
