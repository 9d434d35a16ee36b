/* h5fixture.h: reading the HDF5 golden fixtures (the .h5 files under tests/fixtures) in Check
 * tests.
 *
 * Every reader fails the running test (ck_assert) with a message naming the path or key when
 * the fixture lacks it or it has the wrong size; arrays it returns are malloc'd, the caller
 * frees them. Comparisons are in double, absolute, over max |a - b|. */
#ifndef GT_TESTS_H5FIXTURE_H
#define GT_TESTS_H5FIXTURE_H

#include <stdint.h>

#include "autograd/autograd.h"
#include "models/io/h5io.h"

/* Attribute name of /config (required) */
double gt_fix_attr(gt_h5 f, const char *name);
/* Attribute name of /config, or dflt when absent */
double gt_fix_attr_or(gt_h5 f, const char *name, double dflt);
/* The f32 dataset at path; expect >= 0: its element count must equal expect. */
float *gt_fix_f32(gt_h5 f, const char *path, int64_t expect);
/* The i32 dataset at path. */
int32_t *gt_fix_i32(gt_h5 f, const char *path);

/* Fills each of all[0..n-1] from the dataset <prefix><its name> (e.g. "/weights/"). */
void gt_fix_load(gt_h5 f, const char *prefix, gt_tensor *const *all, int n);

/* max |y[i] - ref[i]| over i in [from, to). */
double gt_fix_max_diff(const gt_tensor *y, const float *ref, int64_t from, int64_t to);

/* t's gradient against /expected/grads/<path>: max |error| over the reference's largest. The
 * reference must be nonzero and t must have a gradient. */
double gt_fix_grad_err(gt_h5 f, const char *path, const gt_tensor *t);

/* Worst gt_fix_grad_err over the trainable tensors of all[0..n-1] (each looked up by its name),
 * naming the worst in *worst_name; frozen tensors must have no gradient. */
double gt_fix_grad_worst(gt_h5 f, gt_tensor *const *all, int n, const char **worst_name);

#endif
