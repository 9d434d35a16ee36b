/* vision4.h: Gemma 4's vision encoder (KerasHub 0.32 Gemma4VisionEncoder), forward and backward.
 *
 * Patches [N, P, 3 p p] with pixels in [0, 1] and their (x, y) grid positions -> 2 (v - 0.5) ->
 * a bias-free projection to the width + the sum of two learned position tables (x and y rows)
 * -> num_layers Gemma-4-style blocks (RMS norms with plain scales before and after attention and
 * FFW; q/k RMS-normed and rotated with 2-D rotary embeddings: the first half of each head by x,
 * the second by y; v scale-free RMS-normed; bidirectional attention with scale 1 and grouped
 * key/value heads; GeGLU FFW; every dense optionally clipped) -> average pooling of each
 * pool x pool cell of positions (times sqrt(width)) -> scale-free RMS norm -> a bias-free
 * projection to output_dim (the decoder width). Output [N, L, output_dim], L = P / pool^2.
 * Padding patches (position (-1, -1), KerasHub's converter pads every image to max patches) are
 * masked as keys and pooled with weight 0, so real patches never see them (an image's first patch
 * must be real: a query with no real key would have no defined output).
 *
 * Dense kernels use [in, out]; attention kernels are stored [D, heads * head_dim] (query, key,
 * value) and [heads * head_dim, D] (output); the position tables [2, S, D]. Clip bounds (input
 * min, max, output min, max per dense, fp16 range initially) are frozen, as in KerasHub, and
 * counted. Errors: -1 with one line in err (config), or NULL with ctx's sticky error (forward). */
#ifndef GT_MODELS_VISION4_H
#define GT_MODELS_VISION4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/autograd.h"

typedef struct gt_vision4_config {
    int64_t image_size, patch_size, pool_size;
    int64_t hidden, intermediate, num_layers, num_heads, num_kv_heads, head_dim;
    int64_t pos_table;        /* entries per position table (position_embedding_size) */
    int64_t output_dim;       /* text hidden size */
    double rope_base;         /* 100 */
    double eps;               /* 1e-6 */
    bool clipped;             /* use_clipped_linears */
} gt_vision4_config;

/* HF Gemma4VisionConfig's defaults as KerasHub's converter maps them (image 896 -> 280 tokens). */
void gt_vision4_defaults(gt_vision4_config *c, int64_t text_hidden);
/* The vision tower of gemma4_2b / gemma4_4b (and their gemma4_instruct_ forms); -1 naming any
 * other preset (the 26B/31B towers' shapes are not in this table). */
int gt_vision4_preset(const char *name, gt_vision4_config *c, char *err, size_t errn);
int gt_vision4_validate(const gt_vision4_config *c, char *err, size_t errn);
/* KerasHub's count_params (all) or trainable only. */
int64_t gt_vision4_param_count(const gt_vision4_config *c, bool trainable_only);

typedef struct {
    gt_tensor *w;     /* [in, out] */
    gt_tensor *clip;  /* [4] or NULL when not clipped */
} gt_vision4_dense;

typedef struct {
    gt_tensor *pre_attn, *q_norm, *k_norm, *post_attn, *pre_ffw, *post_ffw;
    gt_vision4_dense q, k, v, o, gate, up, down;
} gt_vision4_layer;

typedef struct gt_vision4 {
    gt_vision4_config cfg;
    gt_tensor *patch_proj, *pos, *proj;
    gt_vision4_layer *layers;
    gt_tensor **all;  /* every parameter, named (e.g. "block_0.q"), in a fixed order */
    int n_all;
} gt_vision4;

/* Zero weights, norm scales 1, clip bounds +-65504 (KerasHub's initial values). */
int gt_vision4_init(gt_vision4 *m, const gt_vision4_config *c, char *err, size_t errn);
void gt_vision4_free(gt_vision4 *m);
gt_tensor *gt_vision4_param(const gt_vision4 *m, const char *name);

/* patches: n * P * 3p^2 floats; pos: n * P * 2 (x, y) in [0, pos_table) or (-1, -1) for padding
 * (pooled cells without real patches are zero). The pooled grid width
 * is (max x + 1) / pool over the batch, as KerasHub derives it. Returns [n, P / pool^2, out]. */
gt_tensor *gt_vision4_encode(gt_ctx *ctx, const gt_vision4 *m, const float *patches,
                             const int32_t *pos, int64_t n, int64_t P);

#endif
