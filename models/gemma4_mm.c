/* gemma4_mm.c: Gemma 4 decoder with images (contract in gemma4_mm.h). */
#include "models/gemma4_mm.h"

#include <stdlib.h>
#include <string.h>

#include "data/placeholder.h"
#include "models/vision.h"
#include "util/err.h"

/* The placeholder slots in flat order; their count must equal the images' tokens. */
static int32_t *slots(gt_ctx *ctx, const gt_gemma_batch *b, int32_t image_token, int64_t want,
                      uint8_t **mask_out) {
    int64_t BT = b->batch * b->seq, n = 0;
    int32_t *pos = gt_alloc(ctx, (size_t)(BT + 1) * sizeof *pos);
    uint8_t *mask = gt_alloc(ctx, (size_t)BT);
    if (!pos || !mask) return NULL;
    for (int64_t i = 0; i < BT; i++) {
        mask[i] = b->token_ids[i] == image_token;
        if (mask[i]) pos[n++] = (int32_t)i;
    }
    if (n != want)
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 images: %lld image-token slots (id %d) for %lld "
                       "image soft tokens", (long long)n, image_token, (long long)want);
    *mask_out = mask;
    return pos;
}

/* KerasHub's image spans (local layers); a span wider than the sliding window is refused. */
static int32_t *spans(gt_ctx *ctx, const gt_gemma *m, const gt_gemma_batch *b, const uint8_t *mask) {
    int64_t BT = b->batch * b->seq, W = m->cfg.sliding_window;
    int32_t *end = gt_alloc(ctx, (size_t)BT * sizeof *end);
    if (!end) return NULL;
    gt_vision_span_ends(mask, b->batch, b->seq, end);
    for (int64_t i = 0; i < BT; i++) {
        int64_t t = i % b->seq;
        if (end[i] && (t == 0 || !mask[i - 1]) && W > 0 && end[i] - t > W)
            return gt_fail(ctx, GT_ERR_ARG, "gemma4 images: row %lld has an image span of %lld "
                           "tokens at %lld, wider than the sliding window %lld",
                           (long long)(i / b->seq), (long long)(end[i] - t), (long long)t, (long long)W);
    }
    return end;
}

gt_tensor *gt_gemma4_mm_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_vision4 *v,
                               bool vision_bidir, int32_t image_token, const gt_gemma_batch *b,
                               const gt_gemma4_images *imgs) {
    if (!gt_ok(ctx)) return NULL;
    if (b->soft_tokens || b->bidir_end || m->cfg.generation != 4)
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 images: needs a Gemma 4 model and a batch without "
                       "soft tokens of its own");
    int64_t n = imgs ? imgs->n : 0, D = m->cfg.hidden_dim;
    if (n > 0 && (!v || v->cfg.output_dim != D))
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 images: vision encoder output %lld != decoder "
                       "width %lld", v ? (long long)v->cfg.output_dim : -1LL, (long long)D);
    int64_t L = n > 0 ? imgs->P / (v->cfg.pool_size * v->cfg.pool_size) : 0;
    uint8_t *mask = NULL;
    int32_t *pos = slots(ctx, b, image_token, n * L, &mask);
    if (!pos) return NULL;
    gt_gemma_batch bb = *b;
    if (n == 0) return gt_gemma_hidden(ctx, m, &bb);
    int64_t BT = b->batch * b->seq, flat[2] = {n * L, D};
    int32_t *ids = gt_alloc(ctx, (size_t)BT * sizeof *ids);
    if (!ids) return NULL;
    for (int64_t i = 0; i < BT; i++) ids[i] = mask[i] ? 0 : b->token_ids[i];
    bb.token_ids = ids;
    if (vision_bidir && !(bb.bidir_end = spans(ctx, m, b, mask))) return NULL;
    gt_tensor *e = gt_vision4_encode(ctx, v, imgs->patches, imgs->pos, n, imgs->P);
    if (!e) return NULL;
    bb.soft_tokens = gt_reshape(ctx, e, 2, flat);
    bb.soft_pos = pos;
    bb.n_soft = n * L;
    return gt_gemma_hidden(ctx, m, &bb);
}

int gt_gemma4_expand_images(const char *prompt, int64_t n_tokens, char **out, char *err,
                            size_t errn) {
    return gt_placeholder_expand(prompt, GT_IMAGE4_PLACEHOLDER, GT_IMAGE4_START, GT_IMAGE4_END,
                                 n_tokens, "image prompt", "image", out, err, errn);
}
