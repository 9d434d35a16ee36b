/* audio.h: Gemma 4's audio encoder (KerasHub 0.32 Gemma4AudioEncoder, the USM conformer of the
 * E2B/E4B presets) on the autograd engine, forward and backward.
 *
 * Log-mel features [B, T, mels] (data/audio.h) -> two 3x3 stride-2 conv blocks (conv, LayerNorm
 * over channels without bias, ReLU; padded time steps zeroed first) -> a linear projection to
 * the conformer width -> num_layers conformer blocks (half-step SiLU FFW, chunked local attention
 * with relative positions, GLU + causal depthwise conv, half-step FFW, RMS norm) -> a dense with
 * bias to output_proj_dims -> a scale-free RMS norm -> the projection into the text decoder's
 * width (KerasHub's audio soft-token embedder: output [B, ceil(T/4), output_dim]). The decoder
 * multiplies these by hidden_dim^-0.5 when it places them (not done here).
 *
 * Parameters use KerasHub's layouts (dense kernels [in, out], conv kernels [kt, kf, in, out],
 * the depthwise kernel [K, D]). The conformer's RMS-norm scales and the clipped denses' four
 * bounds (input min/max, output min/max) are non-trainable, as in KerasHub, and counted.
 * Errors: -1 with one line in err (config), or NULL with ctx's sticky error (forward). */
#ifndef GT_MODELS_AUDIO_H
#define GT_MODELS_AUDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/autograd.h"

typedef struct gt_audio_enc_config {
    int64_t input_feat_size;    /* mel bins, 128 */
    int64_t hidden;             /* conformer width, 1024 */
    int64_t num_heads;          /* 8 */
    int64_t num_layers;         /* 12 */
    int64_t chunk;              /* attention block, 12 */
    int64_t context_left;       /* 13: keys t - 11 .. t */
    int64_t context_right;      /* 0 */
    double logit_cap;           /* 50 */
    int64_t conv_kernel;        /* depthwise kernel, 5 */
    double residual_weight;     /* FFW half step, 0.5 */
    double gradient_clipping;   /* activation clip, 1e10 */
    int64_t sscp_channels[2];   /* 128, 32 */
    int64_t output_proj_dims;   /* 1536; 0: no intermediate projection */
    int64_t output_dim;         /* text hidden size */
    double norm_eps, sscp_norm_eps;
} gt_audio_enc_config;

/* KerasHub's (and HF Gemma4AudioConfig's) defaults with output_dim = text_hidden. */
void gt_audio_enc_defaults(gt_audio_enc_config *c, int64_t text_hidden);
/* The audio tower of a preset ("gemma4_2b", "gemma4_4b", their "instruct_" forms); -1 for a
 * preset without audio (err names it). */
int gt_audio_enc_preset(const char *name, gt_audio_enc_config *c, char *err, size_t errn);
int gt_audio_enc_validate(const gt_audio_enc_config *c, char *err, size_t errn);
/* Parameter count: all (KerasHub's count_params) or trainable only. */
int64_t gt_audio_enc_param_count(const gt_audio_enc_config *c, bool trainable_only);

typedef struct {
    gt_tensor *w;     /* [in, out] */
    gt_tensor *clip;  /* [4]: input min, max, output min, max; NULL: not clipped */
} gt_audio_dense;

typedef struct {
    gt_tensor *ffw_pre[2], *ffw_post[2];    /* [0] start, [1] end: frozen RMS scales */
    gt_audio_dense ffw1[2], ffw2[2];
    gt_tensor *attn_pre, *attn_post, *per_dim_scale, *pos_proj;
    gt_audio_dense q, k, v, o;
    gt_tensor *lconv_pre, *conv_norm, *dw;  /* dw [K, D] */
    gt_audio_dense lin_start, lin_end;
    gt_tensor *norm;
} gt_audio_layer;

typedef struct gt_audio_enc {
    gt_audio_enc_config cfg;
    gt_tensor *conv0, *norm0, *conv1, *norm1, *input_proj;
    gt_audio_layer *layers;
    gt_tensor *out_proj_w, *out_proj_b, *embed_proj;
    gt_tensor **all;  /* every parameter, named (e.g. "conformer_0.attn.q"), in a fixed order */
    int n_all;
} gt_audio_enc;

/* Zero-filled parameters (clip bounds +-65504, norm scales 1, as KerasHub initialises them). */
int gt_audio_enc_init(gt_audio_enc *m, const gt_audio_enc_config *c, char *err, size_t errn);
void gt_audio_enc_free(gt_audio_enc *m);
gt_tensor *gt_audio_enc_param(const gt_audio_enc *m, const char *name);

/* mel [B, T, input_feat_size]; valid [B * T] (1 = frame is audio, NULL = all). Returns
 * [B, T4, output_dim]; when out_valid is non-NULL, *out_valid gets the encoder's validity of the
 * T4 output steps (B * T4 bytes in ctx's arena). */
gt_tensor *gt_audio_enc_forward(gt_ctx *ctx, const gt_audio_enc *m, gt_tensor *mel,
                                const uint8_t *valid, const uint8_t **out_valid);

#endif
