/* lora.h: LoRA adapters on Gemma's projections, parameterised exactly as Keras' enable_lora.
 *
 * Keras (EinsumDense.enable_lora): for a kernel of shape (..., out) the adapter is
 * A: kernel.shape[:-1] + (r,), B: (r, out), effective kernel W + (alpha / r) * (A @ B) with the
 * product batched over A's leading axes; A ~ He-uniform(fan_in = prod(kernel.shape[:-1])), B = 0,
 * so step 0 equals the base model. For Gemma's attention kernels that means:
 *   query  (N, D, H): A (N, D, r) per head, B (r, H) shared;   key/value (K, D, H): likewise
 *   attention_output (N, H, D): A (N, H, r), B (r, D)
 *   ffw_gating / ffw_gating_2 (D, F): A (D, r), B (r, F);       ffw_linear (F, D): A (F, r), B (r, D)
 * Storage: B is stored as Keras stores it. A is stored as one matrix A' [in, G*r] so that the
 * adapter is two GEMMs, y += s * reshape(x @ A', [rows*G, r]) @ B, with G = N (query), K (key,
 * value) or 1; A'[d, g*r + j] = A[g, d, j]. gt_lora_get_keras_a / set_keras_a convert.
 *
 * All adapters of a model live in one allocation (values) and one gradient allocation. */
#ifndef GT_LORA_H
#define GT_LORA_H

#include "autograd/autograd.h"

typedef enum {
    GT_LORA_QUERY, GT_LORA_KEY, GT_LORA_VALUE, GT_LORA_ATTN_OUT,
    GT_LORA_GATE, GT_LORA_UP, GT_LORA_DOWN, GT_LORA_NTARGETS
} gt_lora_target;

typedef struct gt_lora_adapter {
    gt_tensor a;        /* A' [in, groups * rank] */
    gt_tensor b;        /* B [rank, out_per_group] */
    int64_t groups;     /* G */
    int64_t in, out;    /* the base kernel maps in -> groups * out (per row) */
    char name[96];      /* KerasHub layer path, e.g. decoder_block_0/attention/query */
} gt_lora_adapter;

typedef struct gt_lora {
    int64_t rank;
    double alpha;            /* scale = alpha / rank */
    unsigned targets;        /* bit mask of 1u << gt_lora_target */
    int64_t num_layers;
    gt_lora_adapter *adapters;         /* num_layers * GT_LORA_NTARGETS, unused slots zeroed */
    gt_real *data, *grad;              /* all A then B values, and their gradients */
    int64_t n_values;
    double dropout;          /* PEFT-style dropout on the adapter input, training only (0 = off) */
    uint64_t dropout_seed;   /* advanced by the trainer each step; mixed with layer and target */
    int64_t dropout_token0;  /* global index of the batch's first token: masks are drawn per global
                                token, so micro-batching and ranks do not change them */
    int64_t dropout_row_tokens, dropout_row_stride; /* a batch cut short: rows of this many tokens,
                                this many apart in the global numbering (0: rows not cut) */
} gt_lora;

/* Target names as in configs and KerasHub layer names: "query", "key", "value",
 * "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear". -1 if unknown. */
/* KerasHub's layer names, in enum order, NULL-ended (also the config's lora.targets values) */
extern const char *const gt_lora_target_names[GT_LORA_NTARGETS + 1];
int gt_lora_target_from_name(const char *name);
const char *gt_lora_target_name(gt_lora_target t);

/* Shape facts of a model the adapters attach to. */
typedef struct gt_lora_dims {
    int64_t num_layers, hidden_dim, intermediate_dim, num_query_heads, num_kv_heads, head_dim;
} gt_lora_dims;

/* Allocate adapters for targets; A He-uniform from seed (splitmix64 stream), B zero. */
int gt_lora_create(const gt_lora_dims *dims, int64_t rank, double alpha, unsigned targets,
                   uint64_t seed, gt_lora **out, char *err, size_t errn);
/* The same for the model of cfg, any generation: Gemma 4 layers differ (global head dim and kv
 * heads, 2F MLPs on kv-shared layers) and lack some kernels (no key/value on kv-shared layers,
 * no value on k = v layers): those get no adapter and gt_lora_get gives NULL. */
struct gt_gemma_config;
int gt_lora_create_for(const struct gt_gemma_config *cfg, int64_t rank, double alpha, unsigned targets,
                       uint64_t seed, gt_lora **out, char *err, size_t errn);
void gt_lora_free(gt_lora *l);
/* Adapter of a layer and target, or NULL when that target (or, Gemma 4, that layer's kernel)
 * has none. */
const gt_lora_adapter *gt_lora_get(const gt_lora *l, int64_t layer, gt_lora_target t);
void gt_lora_zero_grad(gt_lora *l);

/* y + (alpha/rank) * LoRA(dropout(x)): x [..., in], y [..., groups*out]. Dropout applies only
 * while the tape records (training), never in inference. Returns y itself when ad is NULL. */
gt_tensor *gt_lora_apply(gt_ctx *ctx, const gt_lora *l, const gt_lora_adapter *ad, gt_tensor *x,
                         gt_tensor *y);

/* Keras-layout A (kernel.shape[:-1] + (r,), row-major, groups*in*r values) to and from ours. */
void gt_lora_get_keras_a(const gt_lora_adapter *ad, gt_real *out);
void gt_lora_set_keras_a(gt_lora_adapter *ad, const gt_real *in);

/* W += (alpha/rank) * delta for one adapter, W in the model's (out, in) layout
 * [groups*out, in] (all targets but attention_output) or, for attention_output, [out, in]
 * where in = N*H. */
void gt_lora_merge(const gt_lora *l, const gt_lora_adapter *ad, gt_tensor *w);

/* The adapter as a standard LoRA (PEFT, llama.cpp): delta W = B A with A [G*r, in] (A'^T) and
 * B [G*out, G*r] block-diagonal (head group g's block is scale * B^T), exact for Keras' per-head
 * A and shared B. A and B are the caller's (G*r*in and G*out*G*r values). */
void gt_lora_standard_ab(const gt_lora *l, const gt_lora_adapter *ad, double scale, gt_real *A, gt_real *B);

#endif
