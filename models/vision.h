/* vision.h: Gemma 3's SigLIP vision encoder (KerasHub Gemma3VisionEncoder), forward and backward.
 *
 * Images [N, S, S, 3] (preprocessed, data/image.h) -> patch embedding (a stride-p p x p conv,
 * as a matmul over patches flattened in (row, column, channel) order) + bias + a learned
 * position embedding -> num_layers pre-norm ViT blocks (LayerNorm with bias; bidirectional
 * multi-head attention with biased q/k/v/out projections, scale head_dim^-0.5; LayerNorm; dense,
 * tanh-GELU, dense; both halves residual) -> final LayerNorm -> average pooling of the
 * (S/p) x (S/p) grid by pool -> Gemma RMSNorm (1 + scale) -> a bias-free projection to output_dim
 * (the decoder width). Output [N, (S/p/pool)^2, output_dim]. Every LayerNorm uses
 * layer_norm_epsilon (KerasHub's blocks use their default 1e-6, the same value in every preset).
 *
 * Parameters are named by their KerasHub variable paths (image_encoder/encoder_block_3/
 * mlp_dense_1/kernel, vision_output_encoder/vision_input_projection/kernel, ...); dense kernels
 * are stored (out, in) like the decoder's, the patch kernel [hidden, p*p*3].
 * Ownership: gt_vision_create allocates everything, gt_vision_free releases it. Errors: -1 and
 * one line (a config that does not fit: patch not dividing the image, heads not dividing the
 * width, ...; out of memory); the forward reports through ctx's sticky error. */
#ifndef GT_MODELS_VISION_H
#define GT_MODELS_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/autograd.h"
#include "models/vision_config.h"

typedef struct gt_vision_layer {
    gt_tensor *ln1_g, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    gt_tensor *ln2_g, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    gt_tensor *lora_a[4], *lora_b[4]; /* q, k, v, out adapters (gt_vision_lora_create); NULL: none */
} gt_vision_layer;

typedef struct gt_vision {
    gt_vision_config cfg;
    gt_tensor *patch_w, *patch_b, *pos;
    gt_vision_layer *layers;
    gt_tensor *post_g, *post_b, *soft_norm, *proj;
    gt_tensor **params; /* every tensor above, in storage order, named */
    int64_t n_params;
    gt_tensor **lora;   /* the adapters, A then B per projection (n_lora of them; owned) */
    int64_t n_lora;
    double lora_scale;  /* alpha / rank */
} gt_vision;

/* Zero-initialised parameters, LayerNorm gammas 1 (requires_grad = trainable). */
int gt_vision_create(const gt_vision_config *c, bool trainable, gt_vision **out, char *err,
                     size_t errn);
void gt_vision_free(gt_vision *v);
gt_tensor *gt_vision_find(const gt_vision *v, const char *name);

/* LoRA on every block's query, key, value and out projections: y += (alpha/rank) x A B, A
 * [in, rank] He-uniform from seed, B [rank, out] zero (so the encoder starts unchanged), both
 * trainable, named <kernel path without /kernel>/lora_kernel_a and _b. -1 with a message when
 * out of memory or called twice. */
int gt_vision_lora_create(gt_vision *v, int64_t rank, double alpha, uint64_t seed, char *err, size_t errn);

/* t (one of v's parameters) as floats into dst (t->size of them), with its LoRA adapter folded in
 * when it has one: W + (alpha/rank) (A B)^T in our (out, in) layout. The writers' one merge. */
void gt_vision_merged(const gt_vision *v, const gt_tensor *t, float *dst);

/* images: n * S * S * 3 floats, HWC per image. Returns [n, tokens, output_dim]. */
gt_tensor *gt_vision_encode(gt_ctx *ctx, const gt_vision *v, const float *images, int64_t n);

/* KerasHub's image spans for the decoder's attention: every maximal run of nonzero entries of
 * vision_mask [B, T] is one span; end[b*T + t] = the exclusive end of the run holding t, 0
 * outside any (gt_attn_cfg.bidir_end, gt_gemma_batch.bidir_end). */
void gt_vision_span_ends(const uint8_t *vision_mask, int64_t B, int64_t T, int32_t *end);

#endif
