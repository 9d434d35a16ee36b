/* same_tensors.c: shared round-trip checks (contract in same_tensors.h). */
#include "tests/same_tensors.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/safetensors.h"

void gt_test_same_st(const char *ref_dir, const char *dir) {
    char err[512];
    gt_st *a, *b;
    ck_assert_msg(!gt_st_open(ref_dir, &a, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_st_open(dir, &b, err, sizeof err), "%s", err);
    ck_assert_int_eq(gt_st_n_tensors(a), gt_st_n_tensors(b));
    for (int64_t i = 0; i < gt_st_n_tensors(a); i++) {
        const gt_st_tensor *x = gt_st_tensor_at(a, i), *y = gt_st_find(b, x->name);
        ck_assert_msg(y, "%s missing from our file", x->name);
        ck_assert_msg(x->ndim == y->ndim, "%s: rank %d, ours %d", x->name, x->ndim, y->ndim);
        for (int d = 0; d < x->ndim; d++) ck_assert_int_eq(x->shape[d], y->shape[d]);
        float *u = malloc(sizeof(float) * (size_t)x->n_elements + 1);
        float *v = malloc(sizeof(float) * (size_t)x->n_elements + 1);
        ck_assert_msg(!gt_st_read_f32(x, u, err, sizeof err) && !gt_st_read_f32(y, v, err, sizeof err),
                      "%s", err);
        ck_assert_msg(!memcmp(u, v, sizeof(float) * (size_t)x->n_elements), "%s differs", x->name);
        free(u), free(v);
    }
    gt_st_close(a), gt_st_close(b);
}

void gt_test_same_params(gt_tensor *const *x, gt_tensor *const *y, int n) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(!memcmp(x[i]->data, y[i]->data, sizeof(gt_real) * (size_t)x[i]->size),
                      "%s differs after the round trip", x[i]->name);
}
