/* vision4.c: Gemma 4 vision encoder (contract in vision4.h). */
#include "models/vision4.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/param_bank.h"
#include "util/err.h"

#define CLIP_F16 65504.0 /* KerasHub's initial clip bounds (the fp16 range) */

void gt_vision4_defaults(gt_vision4_config *c, int64_t text_hidden) {
    *c = (gt_vision4_config){.image_size = 896, .patch_size = 16, .pool_size = 3, .hidden = 768,
                             .intermediate = 3072, .num_layers = 16, .num_heads = 12,
                             .num_kv_heads = 12, .head_dim = 64, .pos_table = 10240,
                             .output_dim = text_hidden, .rope_base = 100.0, .eps = 1e-6,
                             .clipped = true};
}

int gt_vision4_preset(const char *name, gt_vision4_config *c, char *err, size_t errn) {
    /* E2B and E4B share the tower; only the projection into the text width differs */
    if (!strcmp(name, "gemma4_2b") || !strcmp(name, "gemma4_instruct_2b")) gt_vision4_defaults(c, 1536);
    else if (!strcmp(name, "gemma4_4b") || !strcmp(name, "gemma4_instruct_4b")) gt_vision4_defaults(c, 2560);
    else
        return gt_errf(err, errn, "%s: no Gemma 4 vision tower known (known: gemma4_2b, gemma4_4b "
                       "and their gemma4_instruct_ forms)", name);
    return 0;
}

int gt_vision4_validate(const gt_vision4_config *c, char *err, size_t errn) {
    if (c->image_size < 1 || c->patch_size < 1 || c->pool_size < 1 || c->hidden < 1 ||
        c->intermediate < 1 || c->num_layers < 0 || c->num_heads < 1 || c->num_kv_heads < 1 ||
        c->head_dim < 1 || c->pos_table < 1 || c->output_dim < 1)
        return gt_errf(err, errn, "vision4 encoder: sizes must be positive");
    if (c->head_dim % 4)
        return gt_errf(err, errn, "vision4 encoder: head_dim %lld must be a multiple of 4 (two "
                       "rotary halves of even size)", (long long)c->head_dim);
    if (c->num_heads % c->num_kv_heads)
        return gt_errf(err, errn, "vision4 encoder: num_heads %lld not a multiple of "
                       "num_kv_heads %lld", (long long)c->num_heads, (long long)c->num_kv_heads);
    if (!(c->eps > 0) || !(c->rope_base > 0))
        return gt_errf(err, errn, "vision4 encoder: eps and rope_base must be positive");
    return 0;
}

/* ---------------------------------------------------------------- parameter walk */

typedef struct {
    gt_pbank b;
    gt_vision4 *m; /* NULL: count only */
} walk_t;

static gt_tensor *add(walk_t *w, const char *name, int nd, int64_t a, int64_t b, int64_t c,
                      bool trainable) {
    int64_t shape[3] = {a, b, c};
    return gt_pbank_add(&w->b, name, nd, shape, trainable);
}

static gt_tensor *norm(walk_t *w, const char *pfx, const char *what, int64_t d) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", pfx, what);
    gt_tensor *t = add(w, name, 1, d, 0, 0, true);
    for (int64_t i = 0; t && i < d; i++) t->data[i] = 1;
    return t;
}

static gt_vision4_dense dense(walk_t *w, const gt_vision4_config *c, const char *pfx,
                              const char *what, int64_t in, int64_t out) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", pfx, what);
    gt_vision4_dense dd = {add(w, name, 2, in, out, 0, true), NULL};
    if (!c->clipped) return dd;
    snprintf(name, sizeof name, "%s.%s.clip", pfx, what);
    dd.clip = add(w, name, 1, 4, 0, 0, false);
    if (dd.clip) {
        const double b[4] = {-CLIP_F16, CLIP_F16, -CLIP_F16, CLIP_F16};
        for (int i = 0; i < 4; i++) dd.clip->data[i] = (gt_real)b[i];
    }
    return dd;
}

static void walk_layer(walk_t *w, const gt_vision4_config *c, int i, gt_vision4_layer *L) {
    char p[32];
    snprintf(p, sizeof p, "block_%d", i);
    int64_t D = c->hidden, H = c->head_dim, F = c->intermediate;
    L->pre_attn = norm(w, p, "pre_attn_norm", D);
    L->q = dense(w, c, p, "q", D, c->num_heads * H);
    L->q_norm = norm(w, p, "q_norm", H);
    L->k = dense(w, c, p, "k", D, c->num_kv_heads * H);
    L->k_norm = norm(w, p, "k_norm", H);
    L->v = dense(w, c, p, "v", D, c->num_kv_heads * H);
    L->o = dense(w, c, p, "o", c->num_heads * H, D);
    L->post_attn = norm(w, p, "post_attn_norm", D);
    L->pre_ffw = norm(w, p, "pre_ffw_norm", D);
    L->gate = dense(w, c, p, "gate", D, F);
    L->up = dense(w, c, p, "up", D, F);
    L->down = dense(w, c, p, "down", F, D);
    L->post_ffw = norm(w, p, "post_ffw_norm", D);
}

static void walk(walk_t *w, const gt_vision4_config *c) {
    gt_vision4 *m = w->m, dummy;
    gt_vision4_layer dl;
    if (!m) m = &dummy;
    int64_t pp3 = 3 * c->patch_size * c->patch_size;
    m->patch_proj = add(w, "patch.proj", 2, pp3, c->hidden, 0, true);
    m->pos = add(w, "patch.pos", 3, 2, c->pos_table, c->hidden, true);
    for (int64_t i = 0; m->pos && i < m->pos->size; i++) m->pos->data[i] = 1; /* Keras: "ones" */
    for (int64_t i = 0; i < c->num_layers; i++)
        walk_layer(w, c, (int)i, w->m ? &m->layers[i] : &dl);
    m->proj = add(w, "projection", 2, c->hidden, c->output_dim, 0, true);
}

int64_t gt_vision4_param_count(const gt_vision4_config *c, bool trainable_only) {
    walk_t w = {.b = {.trainable_only = trainable_only}};
    walk(&w, c);
    return w.b.count;
}

int gt_vision4_init(gt_vision4 *m, const gt_vision4_config *c, char *err, size_t errn) {
    memset(m, 0, sizeof *m);
    if (gt_vision4_validate(c, err, errn)) return -1;
    walk_t cnt = {0};
    walk(&cnt, c);
    m->cfg = *c;
    m->all = gt_pbank_alloc(cnt.b.n_tensors);
    m->layers = calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *m->layers);
    if (!m->all || !m->layers) {
        gt_vision4_free(m);
        return gt_errf(err, errn, "vision4 encoder: out of memory");
    }
    walk_t w = {.b = {.all = m->all, .n_all = &m->n_all, .owner = "vision4 encoder", .err = err,
                      .errn = errn},
                .m = m};
    walk(&w, c);
    if (w.b.fail) {
        gt_vision4_free(m);
        return -1;
    }
    return 0;
}

void gt_vision4_free(gt_vision4 *m) {
    gt_pbank_free(m->all, m->n_all);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

gt_tensor *gt_vision4_param(const gt_vision4 *m, const char *name) {
    return gt_pbank_find(m->all, m->n_all, name);
}

/* ---------------------------------------------------------------- forward */

static gt_tensor *lin(gt_ctx *ctx, gt_tensor *x, const gt_vision4_dense *d) {
    if (!d->clip) return gt_matmul(ctx, x, d->w, false, false);
    const gt_real *b = d->clip->data;
    x = gt_clamp(ctx, x, b[0], b[1]);
    return gt_clamp(ctx, gt_matmul(ctx, x, d->w, false, false), b[2], b[3]);
}

/* 2-D rotary embedding of x [NP, heads, H]: half 0 of each head by x positions, half 1 by y,
 * each a NEOX rotation of size H/2. The halves become separate "batch rows" of gt_rope, whose
 * positions rp hold (x, y) per token. */
static gt_tensor *rope2d(gt_ctx *ctx, const gt_vision4_config *c, gt_tensor *x, int64_t NP,
                         int64_t heads, const int32_t *rp) {
    int64_t H = c->head_dim;
    int64_t s4[4] = {NP, heads, 2, H / 2}, r4[4] = {NP * 2, 1, heads, H / 2};
    int64_t b4[4] = {NP, 2, heads, H / 2}, o3[3] = {NP, heads, H};
    gt_tensor *t = gt_transpose(ctx, gt_reshape(ctx, x, 4, s4), 1, 2);
    gt_rope_cfg rc = {c->rope_base, 1.0, 0};
    t = gt_rope(ctx, gt_reshape(ctx, t, 4, r4), rp, &rc);
    return gt_reshape(ctx, gt_transpose(ctx, gt_reshape(ctx, t, 4, b4), 1, 2), 3, o3);
}

static gt_tensor *block(gt_ctx *ctx, const gt_vision4 *m, const gt_vision4_layer *L,
                        gt_tensor *x, int64_t n, int64_t P, const int32_t *rp, const uint8_t *real) {
    const gt_vision4_config *c = &m->cfg;
    int64_t NP = n * P, H = c->head_dim, N = c->num_heads, K = c->num_kv_heads;
    gt_scope s = gt_scope_begin(ctx);
    gt_tensor *h = gt_rmsnorm(ctx, x, L->pre_attn, c->eps, false);
    int64_t qs[3] = {NP, N, H}, ks[3] = {NP, K, H};
    gt_tensor *q = gt_rmsnorm(ctx, gt_reshape(ctx, lin(ctx, h, &L->q), 3, qs), L->q_norm, c->eps, false);
    gt_tensor *k = gt_rmsnorm(ctx, gt_reshape(ctx, lin(ctx, h, &L->k), 3, ks), L->k_norm, c->eps, false);
    gt_tensor *v = gt_rmsnorm(ctx, gt_reshape(ctx, lin(ctx, h, &L->v), 3, ks), NULL, c->eps, false);
    q = rope2d(ctx, c, q, NP, N, rp);
    k = rope2d(ctx, c, k, NP, K, rp);
    int64_t q4[4] = {n, P, N, H}, k4[4] = {n, P, K, H}, flat[3] = {n, P, N * H};
    gt_attn_cfg ac = {.scale = 1.0, .key_mask = real}; /* q, k RMS-normed: no 1/sqrt(H) */
    gt_tensor *a = gt_attention(ctx, gt_reshape(ctx, q, 4, q4), gt_reshape(ctx, k, 4, k4),
                                gt_reshape(ctx, v, 4, k4), &ac);
    a = lin(ctx, gt_reshape(ctx, a, 3, flat), &L->o);
    x = gt_add(ctx, x, gt_rmsnorm(ctx, a, L->post_attn, c->eps, false));
    h = gt_rmsnorm(ctx, x, L->pre_ffw, c->eps, false);
    h = lin(ctx, gt_geglu(ctx, lin(ctx, h, &L->gate), lin(ctx, h, &L->up)), &L->down);
    x = gt_add(ctx, x, gt_rmsnorm(ctx, h, L->post_ffw, c->eps, false));
    gt_tensor *keep[1] = {x};
    return gt_scope_end(ctx, s, keep, 1);
}

/* Patch embedding: proj(2 (v - 0.5)) + pos[0][x] + pos[1][y]. */
static gt_tensor *embed(gt_ctx *ctx, const gt_vision4 *m, const float *patches,
                        const int32_t *pos, int64_t n, int64_t P, int32_t *ids) {
    const gt_vision4_config *c = &m->cfg;
    int64_t pp3 = 3 * c->patch_size * c->patch_size, NP = n * P, D = c->hidden;
    int64_t ps[3] = {n, P, pp3}, ts[2] = {2 * c->pos_table, D}, xs[3] = {n, P, D};
    gt_tensor *px = gt_empty(ctx, 3, ps);
    if (!px) return NULL;
    for (int64_t i = 0; i < NP * pp3; i++) px->data[i] = (gt_real)(2.0 * ((double)patches[i] - 0.5));
    gt_tensor *table = gt_reshape(ctx, m->pos, 2, ts);
    /* padding patches (-1) read row 0: they only ever reach padding rows (masked keys, pooled
     * with weight 0), so their embedding is irrelevant, as KerasHub's zeroing of it is */
    for (int64_t i = 0; i < NP; i++) ids[i] = pos[2 * i] < 0 ? 0 : pos[2 * i];
    gt_tensor *ex = gt_embedding(ctx, table, ids, NP);
    for (int64_t i = 0; i < NP; i++) ids[i] = (int32_t)(c->pos_table + (pos[2 * i + 1] < 0 ? 0 : pos[2 * i + 1]));
    gt_tensor *ey = gt_embedding(ctx, table, ids, NP);
    gt_tensor *x = gt_matmul(ctx, px, m->patch_proj, false, false);
    return gt_add(ctx, x, gt_reshape(ctx, gt_add(ctx, ex, ey), 3, xs));
}

/* KerasHub's position pooling as a constant [n, L, P] matrix: patch (x, y) goes to cell
 * x / k + wp * (y / k) with weight sqrt(D) / k^2, wp = (max x + 1) / k over the batch. */
static gt_tensor *pool_matrix(gt_ctx *ctx, const gt_vision4_config *c, const int32_t *pos,
                              int64_t n, int64_t P, int64_t L) {
    int64_t k = c->pool_size, mx = 0, s[3] = {n, L, P};
    for (int64_t i = 0; i < n * P; i++) mx = pos[2 * i] > mx ? pos[2 * i] : mx;
    int64_t wp = (mx + 1) / k;
    gt_tensor *w = gt_zeros(ctx, 3, s);
    if (!w) return NULL;
    double wt = sqrt((double)c->hidden) / (double)(k * k);
    for (int64_t b = 0; b < n; b++)
        for (int64_t p = 0; p < P; p++) {
            const int32_t *xy = pos + 2 * (b * P + p);
            if (xy[0] < 0) continue; /* padding */
            int64_t cell = xy[0] / k + wp * (xy[1] / k);
            if (cell < L) w->data[(b * L + cell) * P + p] += (gt_real)wt; /* one_hot drops the rest */
        }
    return w;
}

static int check_inputs(gt_ctx *ctx, const gt_vision4_config *c, const int32_t *pos,
                        int64_t n, int64_t P) {
    if (n < 1 || P < c->pool_size * c->pool_size) {
        gt_fail(ctx, GT_ERR_SHAPE, "vision4 encode: %lld images of %lld patches (need >= 1 image "
                "and >= pool^2 = %lld patches)", (long long)n, (long long)P,
                (long long)(c->pool_size * c->pool_size));
        return -1;
    }
    for (int64_t b = 0; b < n; b++)
        for (int64_t p = 0; p < P; p++) {
            const int32_t *xy = pos + 2 * (b * P + p);
            bool pad = xy[0] == -1 && xy[1] == -1;
            bool ok = xy[0] >= 0 && xy[0] < c->pos_table && xy[1] >= 0 && xy[1] < c->pos_table;
            if (!pad && !ok) {
                gt_fail(ctx, GT_ERR_ARG, "vision4 encode: image %lld patch %lld has position "
                        "(%d, %d) outside [0, %lld) (padding is (-1, -1))", (long long)b,
                        (long long)p, xy[0], xy[1], (long long)c->pos_table);
                return -1;
            }
            if (p == 0 && pad) {
                gt_fail(ctx, GT_ERR_ARG, "vision4 encode: image %lld starts with a padding patch",
                        (long long)b);
                return -1;
            }
        }
    return 0;
}

gt_tensor *gt_vision4_encode(gt_ctx *ctx, const gt_vision4 *m, const float *patches,
                             const int32_t *pos, int64_t n, int64_t P) {
    const gt_vision4_config *c = &m->cfg;
    if (!gt_ok(ctx) || check_inputs(ctx, c, pos, n, P)) return NULL;
    int64_t NP = n * P, L = P / (c->pool_size * c->pool_size);
    int32_t *ids = gt_alloc(ctx, (size_t)NP * sizeof *ids);
    int32_t *rp = gt_alloc(ctx, (size_t)NP * 2 * sizeof *rp);
    uint8_t *real = gt_alloc(ctx, (size_t)NP);
    if (!ids || !rp || !real) return NULL;
    memcpy(rp, pos, (size_t)NP * 2 * sizeof *rp); /* (x, y) per token = rope rows 2t, 2t + 1 */
    for (int64_t i = 0; i < NP; i++) real[i] = pos[2 * i] >= 0;
    gt_tensor *x = embed(ctx, m, patches, pos, n, P, ids);
    for (int64_t i = 0; x && i < c->num_layers; i++) x = block(ctx, m, &m->layers[i], x, n, P, rp, real);
    gt_tensor *w = x ? pool_matrix(ctx, c, pos, n, P, L) : NULL;
    if (!w) return NULL;
    x = gt_rmsnorm(ctx, gt_matmul(ctx, w, x, false, false), NULL, c->eps, false);
    return gt_matmul(ctx, x, m->proj, false, false);
}
