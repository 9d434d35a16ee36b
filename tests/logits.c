#include "tests/logits.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/h5io.h"

float *gt_test_logits(const gt_gemma *m, const int32_t *ids, int64_t B, int64_t T) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids};
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    ck_assert_int_eq(z->size, B * T * m->cfg.vocab_size);
    float *out = malloc((size_t)z->size * sizeof *out);
    ck_assert(out);
    memcpy(out, z->data, (size_t)z->size * sizeof *out);
    gt_ctx_free(&ctx);
    return out;
}

double gt_test_compare_ref(const gt_gemma *m, const char *ref, double min_ref) {
    char err[1024];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(ref, &f, err, sizeof err) == 0, "%s", err);
    int32_t *ids;
    float *want;
    int nd;
    int64_t shape[8];
    ck_assert_msg(gt_h5_read_i32(f, "/input_ids", &ids, &nd, shape, err, sizeof err) == 0, "%s", err);
    int64_t B = shape[0], T = shape[1];
    ck_assert_msg(gt_h5_read_f32(f, "/logits", &want, &nd, shape, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(shape[2], m->cfg.vocab_size);
    float *got = gt_test_logits(m, ids, B, T);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < B * T * m->cfg.vocab_size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)got[i] - want[i]));
    }
    free(got);
    free(want);
    free(ids);
    gt_h5_close(f);
    ck_assert(maxref > min_ref);
    return maxdiff / maxref;
}
