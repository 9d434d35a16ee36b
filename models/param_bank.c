/* param_bank.c: shared encoder parameter registry (contract in param_bank.h). */
#include "models/param_bank.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

gt_tensor *gt_pbank_add(gt_pbank *b, const char *name, int nd, const int64_t *shape,
                        bool trainable) {
    int64_t n = gt_shape_size(nd, shape);
    if (trainable || !b->trainable_only) b->count += n;
    b->n_tensors++;
    if (!b->all || b->fail) return NULL;
    gt_tensor *t = gt_tensor_new(nd, shape, trainable);
    if (!t) {
        b->fail = gt_errf(b->err, b->errn, "%s: cannot allocate %s", b->owner, name);
        return NULL;
    }
    gt_tensor_set_name(t, name);
    b->all[(*b->n_all)++] = t;
    return t;
}

gt_tensor **gt_pbank_alloc(int n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(gt_tensor *)); }

void gt_pbank_free(gt_tensor **all, int n) {
    for (int i = 0; all && i < n; i++) gt_tensor_free(all[i]);
    free(all);
}

gt_tensor *gt_pbank_find(gt_tensor *const *all, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}
