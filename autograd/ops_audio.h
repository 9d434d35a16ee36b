/* ops_audio.h: the ops of Gemma 4's audio encoder (USM conformer, KerasHub Gemma4AudioEncoder):
 * activations (ReLU, SiLU, softplus, clamp), GLU, LayerNorm without bias, a 2-D convolution over
 * channels-last maps with a per-time-step validity mask, a causal depthwise 1-D convolution, and
 * chunked local self-attention with a relative-position term and a logit soft-cap.
 * Contract (tape.h): every op returns a new step tensor in ctx's arena, or NULL with ctx's sticky
 * error set (message names the op and the shapes); inputs are never modified. */
#ifndef GT_OPS_AUDIO_H
#define GT_OPS_AUDIO_H

#include "autograd/tape.h"

gt_tensor *gt_relu(gt_ctx *ctx, gt_tensor *x);
/* x * sigmoid(x) */
gt_tensor *gt_silu(gt_ctx *ctx, gt_tensor *x);
/* log(1 + exp(x)) */
gt_tensor *gt_softplus(gt_ctx *ctx, gt_tensor *x);
/* min(max(x, lo), hi); the gradient passes where lo <= x <= hi (as jnp.clip's). */
gt_tensor *gt_clamp(gt_ctx *ctx, gt_tensor *x, double lo, double hi);
/* Gated linear unit over the last axis 2D: a * sigmoid(b), a = x[..., :D], b = x[..., D:]. */
gt_tensor *gt_glu(gt_ctx *ctx, gt_tensor *x);
/* (x - mean) / sqrt(var + eps) * gamma over the last axis; gamma [D]. */
gt_tensor *gt_layernorm_nobias(gt_ctx *ctx, gt_tensor *x, gt_tensor *gamma, double eps);

typedef struct gt_conv2d_cfg {
    int stride_t, stride_f;
    int pad_t0, pad_t1, pad_f0, pad_f1; /* zero padding before/after on each axis */
} gt_conv2d_cfg;

/* Cross-correlation, no bias: x [B, T, F, Ci], w [kt, kf, Ci, Co] (Keras Conv2D kernel layout)
 * -> [B, To, Fo, Co], To = (T + pad_t0 + pad_t1 - kt) / stride_t + 1 (Fo alike). Input time
 * steps with valid[b * T + t] == 0 read as zero (valid may be NULL: all valid). */
gt_tensor *gt_conv2d_nhwc(gt_ctx *ctx, gt_tensor *x, gt_tensor *w, const gt_conv2d_cfg *cfg,
                          const uint8_t *valid);

/* Causal depthwise convolution: x [B, T, D], w [K, D]:
 * y[b, t, d] = sum_k w[k, d] x[b, t - K + 1 + k, d] (x before t = 0 is zero). */
gt_tensor *gt_dwconv1d_causal(gt_ctx *ctx, gt_tensor *x, gt_tensor *w);

typedef struct gt_local_attn_cfg {
    int chunk;        /* W: query block size */
    int max_past;     /* context_left - 1 */
    int max_future;   /* context_right */
    double cap;       /* logits -> cap tanh(logits / cap) */
} gt_local_attn_cfg;

/* Chunked local attention as KerasHub's Gemma4AudioAttention computes it. q, k, v [B, T, N, H]
 * (already scaled), rel [max_past + max_future + 1, N, H] (projected sinusoids of relative
 * positions max_past, max_past - 1, ..., -max_future). Query t attends keys s with
 * t - max_past < s <= t and valid[b * T + s] (valid NULL: all valid), logit
 * q_t . (k_s + rel[max_past - (t - s)]), soft-capped. A query with no such key gets KerasHub's
 * masked-softmax result: the mean of v over its block's C = W + max_past + max_future context
 * slots (s = (t / W) W - max_past + c; zero outside [0, T)). Output [B, T, N, H]. */
gt_tensor *gt_local_attn(gt_ctx *ctx, gt_tensor *q, gt_tensor *k, gt_tensor *v, gt_tensor *rel,
                         const uint8_t *valid, const gt_local_attn_cfg *cfg);

#endif
