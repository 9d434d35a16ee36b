/* logits.h: what the model-parity tests share (tests only): a model's logits, and their distance
 * from a reference file's.
 *
 * Both assert with Check on failure (call them inside a test). The returned array is the
 * caller's (free). */
#ifndef GT_TESTS_LOGITS_H
#define GT_TESTS_LOGITS_H

#include "models/gemma.h"

/* Logits [B, T, V] of m on ids (no tape). */
float *gt_test_logits(const gt_gemma *m, const int32_t *ids, int64_t B, int64_t T);
/* max |ours - ref| / max |ref| on an HDF5 file's /input_ids [B, T] and /logits [B, T, V]; asserts
 * max |ref| > min_ref (a reference of zeros would compare nothing). */
double gt_test_compare_ref(const gt_gemma *m, const char *ref, double min_ref);

#endif
