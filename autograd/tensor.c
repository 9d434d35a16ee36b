#include "autograd/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t gt_shape_size(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > GT_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

int gt_tensor_wrap(gt_tensor *t, gt_real *data, gt_real *grad, int ndim, const int64_t *shape,
                   bool requires_grad) {
    int64_t n = gt_shape_size(ndim, shape);
    if (n < 0) return -1;
    memset(t, 0, sizeof *t);
    t->data = data;
    t->grad = grad;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->size = n;
    t->requires_grad = requires_grad;
    return 0;
}

gt_tensor *gt_tensor_new(int ndim, const int64_t *shape, bool requires_grad) {
    int64_t n = gt_shape_size(ndim, shape);
    if (n < 0) return NULL;
    gt_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    size_t bytes = (size_t)(n ? n : 1) * sizeof(gt_real);
    gt_real *data = calloc(1, bytes);
    gt_real *grad = requires_grad ? calloc(1, bytes) : NULL;
    if (!data || (requires_grad && !grad)) {
        free(data);
        free(grad);
        free(t);
        return NULL;
    }
    gt_tensor_wrap(t, data, grad, ndim, shape, requires_grad);
    t->owns_data = true;
    return t;
}

void gt_tensor_free(gt_tensor *t) {
    if (!t) return;
    if (t->owns_data) {
        free(t->data);
        free(t->grad);
    }
    free(t);
}

bool gt_shape_eq(const gt_tensor *a, const gt_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *gt_shape_str(const gt_tensor *t, char *buf, size_t n) {
    size_t off = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

int64_t gt_cols(const gt_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

int64_t gt_rows(const gt_tensor *t) {
    int64_t c = gt_cols(t);
    return c ? t->size / c : 0;
}

void gt_tensor_set_name(gt_tensor *t, const char *name) {
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}
