/* gemma4_mm.c: Gemma 4 decoder with images (contract in gemma4_mm.h). */
#include "models/gemma4_mm.h"

#include <stdlib.h>
#include <string.h>

#include "data/placeholder.h"
#include "models/vision.h"
#include "util/err.h"

/* The slots of token in flat order (NULL: never a slot); their count must equal want. */
static int32_t *slots(gt_ctx *ctx, const gt_gemma_batch *b, int32_t token, int64_t want,
                      const char *kind, uint8_t **mask_out, int64_t *n_out) {
    int64_t BT = b->batch * b->seq, n = 0;
    int32_t *pos = gt_alloc(ctx, (size_t)(BT + 1) * sizeof *pos);
    uint8_t *mask = gt_alloc(ctx, (size_t)BT);
    if (!pos || !mask) return NULL;
    for (int64_t i = 0; i < BT; i++) {
        mask[i] = token >= 0 && b->token_ids[i] == token;
        if (mask[i]) pos[n++] = (int32_t)i;
    }
    if (want >= 0 && n != want)
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 media: %lld %s-token slots (id %d) for %lld "
                       "%s soft tokens", (long long)n, kind, token, (long long)want, kind);
    *mask_out = mask;
    *n_out = n;
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

/* The clips' encoder output [n * T4, D] and, in *order, where each output row goes in the soft
 * rows after `first`: valid steps in turn from first, the others past first + n_slots (dropped). */
static gt_tensor *encode_audio(gt_ctx *ctx, const gt_audio_enc *a, const gt_gemma4_clips *c,
                               int64_t first, int64_t n_slots, int32_t **order) {
    int64_t sh[3] = {c->n, c->T, a->cfg.input_feat_size};
    gt_tensor *mel = gt_empty(ctx, 3, sh);
    if (!mel) return NULL;
    for (int64_t i = 0; i < mel->size; i++) mel->data[i] = (gt_real)c->mel[i];
    const uint8_t *ov = NULL;
    gt_tensor *e = gt_audio_enc_forward(ctx, a, mel, c->valid, &ov);
    if (!e) return NULL;
    int64_t rows = e->shape[0] * e->shape[1], nv = 0, flat[2] = {rows, e->shape[2]};
    int32_t *o = gt_alloc(ctx, (size_t)rows * sizeof *o);
    if (!o) return NULL;
    for (int64_t r = 0; r < rows; r++) nv += ov[r] != 0;
    if (nv != n_slots)
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 audio: %lld audio-token slots for %lld audio "
                       "soft tokens (valid encoder steps of %lld clips)", (long long)n_slots,
                       (long long)nv, (long long)c->n);
    for (int64_t r = 0, v = 0, d = 0; r < rows; r++)
        o[r] = (int32_t)(ov[r] ? first + v++ : first + n_slots + d++);
    *order = o;
    return gt_reshape(ctx, e, 2, flat);
}

/* Images' tokens [nI, D] and the clips' [nA, D] into one [nI + nA, D] tensor of soft tokens. */
static gt_tensor *soft_rows(gt_ctx *ctx, const gt_gemma4_media *md, int64_t nI, int64_t nA,
                            int64_t D) {
    const gt_gemma4_images *im = md->images;
    const gt_gemma4_clips *cl = md->clips;
    int64_t rows = nI + nA;
    int32_t *order = NULL;
    gt_tensor *ea = NULL;
    if (cl && cl->n > 0) {
        if (!(ea = encode_audio(ctx, md->audio, cl, nI, nA, &order))) return NULL;
        rows = nI + ea->shape[0];
    }
    int64_t sh[2] = {rows, D};
    gt_tensor *s = gt_zeros(ctx, 2, sh);
    if (nI > 0) {
        int64_t flat[2] = {nI, D};
        gt_tensor *ei = gt_vision4_encode(ctx, md->vision, im->patches, im->pos, im->n, im->P);
        int32_t *idx = gt_alloc(ctx, (size_t)nI * sizeof *idx);
        if (!ei || !idx) return NULL;
        for (int64_t i = 0; i < nI; i++) idx[i] = (int32_t)i;
        s = gt_put_rows(ctx, s, gt_reshape(ctx, ei, 2, flat), idx, nI);
    }
    if (ea) s = gt_put_rows(ctx, s, ea, order, ea->shape[0]);
    return gt_slice_rows(ctx, s, 0, nI + nA);
}

/* The encoders fit the decoder: either absent or projecting into its width. */
static bool check_media(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md,
                        const gt_gemma_batch *b) {
    int64_t D = m->cfg.hidden_dim;
    if (b->soft_tokens || b->bidir_end || m->cfg.generation != 4)
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 media: needs a Gemma 4 model and a batch without "
                       "soft tokens of its own"), false;
    const gt_vision4 *v = md->vision;
    if (md->images && md->images->n > 0 && (!v || v->cfg.output_dim != D))
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 images: vision encoder output %lld != decoder "
                       "width %lld", v ? (long long)v->cfg.output_dim : -1LL, (long long)D), false;
    const gt_audio_enc *a = md->audio;
    if (md->clips && md->clips->n > 0 && (!a || a->cfg.output_dim != D))
        return gt_fail(ctx, GT_ERR_ARG, "gemma4 audio: audio encoder output %lld != decoder "
                       "width %lld", a ? (long long)a->cfg.output_dim : -1LL, (long long)D), false;
    return true;
}

gt_tensor *gt_gemma4_media_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md,
                                  const gt_gemma_batch *b) {
    if (!gt_ok(ctx) || !check_media(ctx, m, md, b)) return NULL;
    const gt_gemma4_images *im = md->images;
    int64_t ni = im ? im->n : 0, na = md->clips ? md->clips->n : 0, nI = 0, nA = 0;
    int64_t L = ni > 0 ? im->P / (md->vision->cfg.pool_size * md->vision->cfg.pool_size) : 0;
    uint8_t *mi = NULL, *ma = NULL;
    int32_t *pi = slots(ctx, b, md->image_token, ni * L, "image", &mi, &nI);
    if (!pi) return NULL;
    int32_t *pa = slots(ctx, b, md->audio_token, na > 0 ? -1 : 0, "audio", &ma, &nA);
    if (!pa) return NULL;
    gt_gemma_batch bb = *b;
    if (nI + nA == 0) return gt_gemma_hidden(ctx, m, &bb);
    int64_t BT = b->batch * b->seq;
    int32_t *ids = gt_alloc(ctx, (size_t)BT * sizeof *ids);
    int32_t *pos = gt_alloc(ctx, (size_t)(nI + nA) * sizeof *pos);
    if (!ids || !pos) return NULL;
    for (int64_t i = 0; i < BT; i++) ids[i] = mi[i] || ma[i] ? 0 : b->token_ids[i];
    memcpy(pos, pi, (size_t)nI * sizeof *pos);
    memcpy(pos + nI, pa, (size_t)nA * sizeof *pos);
    bb.token_ids = ids;
    if (md->vision_bidir && nI > 0 && !(bb.bidir_end = spans(ctx, m, b, mi))) return NULL;
    if (!(bb.soft_tokens = soft_rows(ctx, md, nI, nA, m->cfg.hidden_dim))) return NULL;
    bb.soft_pos = pos;
    bb.n_soft = nI + nA;
    return gt_gemma_hidden(ctx, m, &bb);
}

int gt_gemma4_media_rows(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md, const int32_t *ids,
                         int64_t n, gt_gemma4_rows *out) {
    gt_gemma_batch b = {.batch = 1, .seq = n, .token_ids = ids};
    if (!gt_ok(ctx) || !check_media(ctx, m, md, &b)) return -1;
    const gt_gemma4_images *im = md->images;
    int64_t ni = im ? im->n : 0, na = md->clips ? md->clips->n : 0, nI = 0, nA = 0;
    int64_t L = ni > 0 ? im->P / (md->vision->cfg.pool_size * md->vision->cfg.pool_size) : 0;
    uint8_t *mi = NULL, *ma = NULL;
    int32_t *pi = slots(ctx, &b, md->image_token, ni * L, "image", &mi, &nI);
    int32_t *pa = pi ? slots(ctx, &b, md->audio_token, na > 0 ? -1 : 0, "audio", &ma, &nA) : NULL;
    int32_t *zid = gt_alloc(ctx, (size_t)n * sizeof *zid);
    int32_t *pos = gt_alloc(ctx, (size_t)(nI + nA + 1) * sizeof *pos);
    uint8_t *open = gt_alloc(ctx, (size_t)(nI + nA + 1));
    if (!pa || !zid || !pos || !open) return -1;
    for (int64_t i = 0; i < n; i++) zid[i] = mi[i] || ma[i] ? 0 : ids[i];
    memcpy(pos, pi, (size_t)nI * sizeof *pos);
    memcpy(pos + nI, pa, (size_t)nA * sizeof *pos);
    memset(open, md->vision_bidir, (size_t)nI);
    memset(open + nI, 0, (size_t)nA);
    if (md->vision_bidir && nI > 0 && !spans(ctx, m, &b, mi)) return -1;
    bool grad = ctx->grad_enabled;
    ctx->grad_enabled = false; /* the encoders' outputs only feed the cache */
    gt_tensor *soft = nI + nA ? soft_rows(ctx, md, nI, nA, m->cfg.hidden_dim) : NULL;
    ctx->grad_enabled = grad;
    if (nI + nA && !soft) return -1;
    /* the cached step wants the rows in position order (images and clips may interleave) */
    int64_t k = nI + nA, D = m->cfg.hidden_dim;
    gt_real *rows = gt_alloc(ctx, (size_t)(k * D + 1) * sizeof *rows);
    int32_t *spos = gt_alloc(ctx, (size_t)(k + 1) * sizeof *spos), *inv = gt_alloc(ctx, (size_t)n * sizeof *inv);
    uint8_t *sopen = gt_alloc(ctx, (size_t)(k + 1));
    if (!rows || !spos || !inv || !sopen) return -1;
    for (int64_t i = 0; i < k; i++) inv[pos[i]] = (int32_t)i;
    for (int64_t t = 0, j = 0; t < n; t++) {
        if (!mi[t] && !ma[t]) continue;
        memcpy(rows + j * D, soft->data + (int64_t)inv[t] * D, (size_t)D * sizeof *rows);
        spos[j] = (int32_t)t;
        sopen[j++] = open[inv[t]];
    }
    *out = (gt_gemma4_rows){.ids = zid, .rows = rows, .pos = spos, .open = sopen, .n = k};
    return 0;
}

gt_tensor *gt_gemma4_media_prefill(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md,
                                   gt_gemma_cache *cache, const int32_t *ids, int64_t n) {
    gt_gemma4_rows r;
    if (gt_gemma4_media_rows(ctx, m, md, ids, n, &r)) return NULL;
    return gt_gemma_step_media(ctx, m, cache, r.ids, n, r.rows, r.pos, r.n, r.open);
}

gt_tensor *gt_gemma4_mm_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_vision4 *v,
                               bool vision_bidir, int32_t image_token, const gt_gemma_batch *b,
                               const gt_gemma4_images *imgs) {
    gt_gemma4_media md = {.vision = v, .vision_bidir = vision_bidir, .image_token = image_token,
                          .images = imgs, .audio_token = -1};
    return gt_gemma4_media_hidden(ctx, m, &md, b);
}

int gt_gemma4_expand_images(const char *prompt, int64_t n_tokens, char **out, char *err,
                            size_t errn) {
    return gt_placeholder_expand(prompt, GT_IMAGE4_PLACEHOLDER, GT_IMAGE4_START, GT_IMAGE4_END,
                                 n_tokens, "image prompt", "image", out, err, errn);
}
