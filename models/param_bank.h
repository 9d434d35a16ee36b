/* param_bank.h: the walk-based parameter registry the encoders share.
 *
 * An encoder describes its parameters once, in a "walk" that calls gt_pbank_add for each
 * tensor in a fixed order. Run with all == NULL the walk only counts (elements, optionally
 * trainable only, and tensors); run with all pointing at an array sized from a counting pass,
 * it allocates each tensor (zeroed, named) and appends it to all[*n_all]. After the first
 * allocation failure, fail is set, err holds one line naming the owner and tensor, and later
 * adds return NULL. */
#ifndef GT_MODELS_PARAM_BANK_H
#define GT_MODELS_PARAM_BANK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/autograd.h"

typedef struct {
    gt_tensor **all;     /* NULL: count only */
    int *n_all;          /* tensors stored so far in all */
    bool trainable_only; /* count trainable elements only */
    int64_t count;       /* elements counted */
    int n_tensors;       /* tensors counted */
    int fail;            /* nonzero after an allocation failure */
    const char *owner;   /* e.g. "audio encoder", for messages */
    char *err;
    size_t errn;
} gt_pbank;

/* Counts one tensor of nd dims (shape[0..nd-1]) and, unless counting only, allocates it. */
gt_tensor *gt_pbank_add(gt_pbank *b, const char *name, int nd, const int64_t *shape,
                        bool trainable);

/* Allocates an array for n tensors (at least one slot); NULL when out of memory. */
gt_tensor **gt_pbank_alloc(int n);

/* Frees the n tensors of all and the array itself (all may be NULL). */
void gt_pbank_free(gt_tensor **all, int n);

/* The tensor named name among all[0..n-1], or NULL. */
gt_tensor *gt_pbank_find(gt_tensor *const *all, int n, const char *name);

#endif
