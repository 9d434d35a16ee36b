/* h5fixture.c: HDF5 golden-fixture readers for tests (contract in h5fixture.h). */
#include "tests/h5fixture.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

double gt_fix_attr(gt_h5 f, const char *name) {
    double v;
    char err[512];
    ck_assert_msg(gt_h5_attr_f64(f, "/config", name, &v, err, sizeof err) == 0, "%s: %s", name, err);
    return v;
}

double gt_fix_attr_or(gt_h5 f, const char *name, double dflt) {
    double v;
    char err[512];
    return gt_h5_attr_f64(f, "/config", name, &v, err, sizeof err) == 0 ? v : dflt;
}

float *gt_fix_f32(gt_h5 f, const char *path, int64_t expect) {
    float *d;
    int nd;
    int64_t shape[8], n = 1;
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(expect < 0 || n == expect, "%s: %lld values, want %lld", path, (long long)n,
                  (long long)expect);
    return d;
}

int32_t *gt_fix_i32(gt_h5 f, const char *path) {
    int32_t *d;
    int nd;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_i32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    return d;
}

void gt_fix_load(gt_h5 f, const char *prefix, gt_tensor *const *all, int n) {
    for (int i = 0; i < n; i++) {
        char path[200];
        snprintf(path, sizeof path, "%s%s", prefix, all[i]->name);
        float *d = gt_fix_f32(f, path, all[i]->size);
        for (int64_t j = 0; j < all[i]->size; j++) all[i]->data[j] = d[j];
        free(d);
    }
}

double gt_fix_max_diff(const gt_tensor *y, const float *ref, int64_t from, int64_t to) {
    double w = 0;
    for (int64_t i = from; i < to; i++) w = fmax(w, fabs(y->data[i] - ref[i]));
    return w;
}

double gt_fix_grad_err(gt_h5 f, const char *path, const gt_tensor *t) {
    char p[200];
    snprintf(p, sizeof p, "/expected/grads/%s", path);
    float *g = gt_fix_f32(f, p, t->size);
    double gm = 0, e = 0;
    for (int64_t j = 0; j < t->size; j++) gm = fmax(gm, fabs(g[j]));
    ck_assert_msg(gm > 0, "%s: the reference gradient is zero", path);
    ck_assert_msg(t->grad, "%s: no gradient", path);
    for (int64_t j = 0; j < t->size; j++) e = fmax(e, fabs(t->grad[j] - g[j]));
    free(g);
    return e / gm;
}

double gt_fix_grad_worst(gt_h5 f, gt_tensor *const *all, int n, const char **worst_name) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (!all[i]->requires_grad) {
            ck_assert_ptr_null(all[i]->grad);
            continue;
        }
        double e = gt_fix_grad_err(f, all[i]->name, all[i]);
        if (e > worst) {
            worst = e;
            *worst_name = all[i]->name;
        }
    }
    return worst;
}
