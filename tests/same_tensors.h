/* same_tensors.h: round-trip checks the export tests share; each fails the running Check test
 * with the first tensor that differs. */
#ifndef GT_TESTS_SAME_TENSORS_H
#define GT_TESTS_SAME_TENSORS_H

#include "autograd/tensor.h"

/* Every tensor of ref_dir's safetensors is in dir's with the same name, shape and f32 values,
 * and the two hold as many tensors. */
void gt_test_same_st(const char *ref_dir, const char *dir);

/* x[i] and y[i] hold the same values, bit for bit, for i < n. */
void gt_test_same_params(gt_tensor *const *x, gt_tensor *const *y, int n);

#endif
