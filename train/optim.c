#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

void gt_optim_cfg_defaults(gt_optim_cfg *c, gt_opt_kind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->beta_1 = 0.9;
    c->beta_2 = 0.999;
    c->epsilon = 1e-7;
    c->weight_decay = kind == GT_OPT_ADAMW ? 0.004 : 0.0;
}

int gt_optim_init(gt_optim *o, const gt_optim_cfg *cfg, const gt_param_slice *params, int n,
                  char *err, size_t errn) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    if (cfg->kind != GT_OPT_SGD && !(cfg->epsilon > 0))
        return snprintf(err, errn, "optimizer.epsilon: must be > 0"), -1;
    if (cfg->weight_decay < 0) return snprintf(err, errn, "optimizer.weight_decay: must be >= 0"), -1;
    o->params = malloc((size_t)(n ? n : 1) * sizeof *o->params);
    if (!o->params) return snprintf(err, errn, "optimizer: out of memory"), -1;
    memcpy(o->params, params, (size_t)n * sizeof *params);
    o->n_params = n;
    for (int i = 0; i < n; i++) o->n_values += params[i].size;
    size_t bytes = (size_t)(o->n_values ? o->n_values : 1) * sizeof(gt_real);
    o->m = calloc(1, bytes);
    o->v = cfg->kind == GT_OPT_SGD ? NULL : calloc(1, bytes);
    if (!o->m || (cfg->kind != GT_OPT_SGD && !o->v)) {
        gt_optim_free(o);
        return snprintf(err, errn, "optimizer: out of memory for %lld state values",
                        (long long)o->n_values), -1;
    }
    return 0;
}

void gt_optim_free(gt_optim *o) {
    free(o->params);
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void gt_optim_step(gt_optim *o, double lr) {
    const gt_optim_cfg *c = &o->cfg;
    double t = (double)(o->step + 1);
    double wd = c->kind == GT_OPT_ADAM ? 0.0 : c->weight_decay;
    gt_real decay = (gt_real)(lr * wd);
    /* Keras: alpha = lr * sqrt(1 - b2^t) / (1 - b1^t), all in the variable dtype */
    gt_real alpha = (gt_real)(lr * sqrt(1 - pow(c->beta_2, t)) / (1 - pow(c->beta_1, t)));
    gt_real b1c = (gt_real)(1 - c->beta_1), b2c = (gt_real)(1 - c->beta_2);
    gt_real eps = (gt_real)c->epsilon, mu = (gt_real)c->momentum, lrr = (gt_real)lr;
    int64_t off = 0;
    for (int i = 0; i < o->n_params; i++) {
        const gt_param_slice *p = &o->params[i];
        gt_real *w = p->data, *g = p->grad, *m = o->m + off, *v = o->v ? o->v + off : NULL;
        int64_t n = p->size;
        bool dec = p->decay && wd > 0;
        if (c->kind == GT_OPT_SGD) {
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t j = 0; j < n; j++) {
                if (dec) w[j] -= decay * w[j];
                if (mu > 0) {
                    m[j] = mu * m[j] - lrr * g[j];
                    w[j] += m[j];
                } else {
                    w[j] -= lrr * g[j];
                }
            }
        } else {
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t j = 0; j < n; j++) {
                if (dec) w[j] -= decay * w[j];
                m[j] += (g[j] - m[j]) * b1c;
                v[j] += (g[j] * g[j] - v[j]) * b2c;
                w[j] -= alpha * m[j] / (sqrt(v[j]) + eps);
            }
        }
        off += n;
    }
    o->step++;
}

bool gt_optim_name_excluded(const char *name, const char *const *patterns, int n_patterns) {
    for (int i = 0; i < n_patterns; i++)
        if (patterns[i] && *patterns[i] && strstr(name, patterns[i])) return true;
    return false;
}

double gt_schedule_lr(const gt_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    double span = (double)(s->total_steps - s->warmup_steps);
    double p = span > 0 ? (double)(step - s->warmup_steps) / span : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    switch (s->kind) {
    case GT_SCHED_LINEAR: return s->lr - (s->lr - s->min_lr) * p;
    case GT_SCHED_COSINE: return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1 + cos(M_PI * p));
    default: return s->lr;
    }
}

double gt_grad_norm(const gt_param_slice *p, int n) {
    double acc = 0;
    for (int i = 0; i < n; i++) {
        const gt_real *g = p[i].grad;
        double part = 0;
#pragma omp parallel for schedule(static) reduction(+ : part) if (p[i].size > 65536)
        for (int64_t j = 0; j < p[i].size; j++) part += (double)g[j] * g[j];
        acc += part;
    }
    return sqrt(acc);
}

void gt_grad_scale(const gt_param_slice *p, int n, double s) {
    gt_real f = (gt_real)s;
    for (int i = 0; i < n; i++) {
        gt_real *g = p[i].grad;
#pragma omp parallel for schedule(static) if (p[i].size > 65536)
        for (int64_t j = 0; j < p[i].size; j++) g[j] *= f;
    }
}

double gt_grad_clip(const gt_param_slice *p, int n, double max_norm) {
    double norm = gt_grad_norm(p, n);
    if (max_norm > 0 && norm > max_norm) gt_grad_scale(p, n, max_norm / norm);
    return norm;
}

int gt_grad_find_nonfinite(const gt_param_slice *p, int n, int64_t *index) {
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < p[i].size; j++)
            if (!isfinite(p[i].grad[j])) {
                *index = j;
                return i;
            }
    return -1;
}
