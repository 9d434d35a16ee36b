/* score_json.h: reading the JSON line of `gemmatrain generate --score --logits` back in the tests
 * that compare it with a direct forward pass (test_gemma4_generate, test_hf_gemma4_mm). Fails the
 * running Check test when the line is missing or its token ids differ. */
#ifndef GT_TESTS_SCORE_JSON_H
#define GT_TESTS_SCORE_JSON_H

#include <stdint.h>

#include "autograd/tensor.h"

/* out's {"tokens":[...],"logits":[[...],...]} has exactly the token ids ids[0..n); returns the
 * largest |CLI logit - z| over its [n, V] logits, and *mx (when not NULL) z's largest |logit|. */
double gt_test_score_diff(const char *out, const int32_t *ids, int64_t n, const gt_tensor *z, int64_t V, double *mx);

#endif
