/* gemma_params.h: the one table of Gemma's parameters, walked by the model and every format.
 *
 * A row per tensor kind (per-layer or global): our name (KerasHub's variable path), where it
 * sits in gt_gemma / gt_gemma_layer, its shape rule, the presence rule from the config, and its
 * name and layout in each file format (KerasHub model.weights.h5, Hugging Face safetensors,
 * GGUF). Rows are in storage order: the model allocates its parameters in this order
 * (gt_gemma_create), each gt_gemma_param points back at its row and layer, and the loaders and
 * savers walk m->params. Adding a tensor is one row here (plus its field in gemma.h and its use
 * in the forward).
 *
 * Pure functions of the config; nothing allocates. Name builders write a NUL-terminated string
 * and return -1 only when the format has no name for the row (the caller reports it). */
#ifndef GT_GEMMA_PARAMS_H
#define GT_GEMMA_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/gemma_config.h"

/* Our layout is HF's (out, in); KerasHub's einsum kernels differ. */
typedef enum {
    GT_KERAS_SAME,      /* same shape and order */
    GT_KERAS_HEADS_IN,  /* ours [G*H, D] <-> Keras (G, D, H): query, key, value */
    GT_KERAS_HEADS_OUT, /* ours [D, N*H] <-> Keras (N, H, D): attention_output */
    GT_KERAS_T,         /* ours [C, R] <-> Keras (R, C): dense kernels */
    GT_KERAS_EXPERTS,   /* ours [E*O, X] <-> Keras (E, X, O): MoE expert kernels (per expert T) */
} gt_keras_layout;

/* Symbolic dimensions of a shape rule, resolved per layer (Gemma 4 layers differ). */
typedef enum {
    GT_DIM_NONE = 0, /* rank ends here */
    GT_DIM_V,        /* vocab_size */
    GT_DIM_VP,       /* PLE table rows: per_layer_vocab_size or vocab_size */
    GT_DIM_D,        /* hidden_dim */
    GT_DIM_NH,       /* query heads x the layer's head dim */
    GT_DIM_KH,       /* the layer's kv heads x its head dim */
    GT_DIM_H,        /* the layer's head dim */
    GT_DIM_F,        /* the layer's MLP branch width */
    GT_DIM_P,        /* per_layer_input_dim */
    GT_DIM_LP,       /* num_layers x per_layer_input_dim */
    GT_DIM_E,        /* num_experts */
    GT_DIM_EF,       /* num_experts x expert_dim */
    GT_DIM_ED,       /* num_experts x hidden_dim */
    GT_DIM_FE,       /* expert_dim */
} gt_param_dim;

/* When a row exists, from the config (and the layer for per-layer rows). */
typedef enum {
    GT_WHEN_ALWAYS,
    GT_WHEN_PLE,       /* per_layer_input_dim > 0 */
    GT_WHEN_OWN_KV,    /* the layer computes its own k, v (not kv-shared) */
    GT_WHEN_OWN_V,     /* ... and v is not k (Gemma 4 k = v global layers) */
    GT_WHEN_QK_NORM,   /* use_qk_norm */
    GT_WHEN_K_NORM,    /* use_qk_norm on a layer with its own k */
    GT_WHEN_POST_ATTN, /* use_post_attention_norm */
    GT_WHEN_POST_FFW,  /* use_post_ffw_norm */
    GT_WHEN_GEN4,      /* generation 4 */
    GT_WHEN_MOE,       /* Gemma 4 enable_moe_block */
} gt_param_when;

typedef struct gt_gemma_param_row {
    const char *name;       /* our name; per-layer rows under "decoder_block_<i>/" */
    bool per_layer;
    bool frozen;            /* never trainable (Gemma 4 layer_scalar) */
    size_t slot;            /* offsetof the gt_tensor * in gt_gemma_layer (per-layer) or gt_gemma */
    gt_param_dim dims[2];   /* shape rule; rank 0 for a scalar */
    gt_param_when when;
    int lora;               /* gt_lora_target of a kernel, or -1 */
    /* KerasHub model.weights.h5: per-layer rows under layers/<block class>[_i]/<keras>, globals
     * at layers/<keras>[_k] (k counts the earlier present globals of that class); "" = the
     * block's own vars. The layer name (vars' "name" attribute) is the parent of the variable
     * in our name. */
    const char *keras;
    gt_keras_layout keras_layout;
    /* rank in Keras' _flatten_layers order inside a block (Gemma 1-3, Gemma 4): .lora.h5 indices
     * (gt_gemma_keras_index); the attention layer itself ranks GT_KERAS_ATTENTION_RANK */
    int8_t keras_flat[2];
    const char *hf;         /* under the text model's prefix; per-layer rows under "layers.<i>." */
    const char *hf_g1;      /* Gemma 1's name where it differs, else NULL */
    const char *gguf;       /* llama.cpp's name, per-layer under "blk.<i>."; NULL: none */
    bool gguf_add_one;      /* llama.cpp stores this norm as 1 + w (Gemma 1-3) */
} gt_gemma_param_row;

#define GT_KERAS_ATTENTION_RANK 50

extern const gt_gemma_param_row gt_gemma_param_rows[];
extern const int gt_gemma_n_param_rows;

bool gt_gemma_param_present(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer);
/* Our shape (row-major) into shape[2]; returns the rank (0-2). */
int gt_gemma_param_shape(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                         int64_t shape[2]);
/* Every present (row, layer) in storage order: globals before the blocks, the blocks, the
 * final norm. fn's nonzero return stops the walk and is returned. */
typedef int (*gt_gemma_param_fn)(const gt_gemma_param_row *r, int64_t layer, void *ctx);
int gt_gemma_param_walk(const gt_gemma_config *c, gt_gemma_param_fn fn, void *ctx);

/* Our name ("decoder_block_3/attention/query/kernel"). */
void gt_gemma_param_name(const gt_gemma_param_row *r, int64_t layer, char *buf, size_t n);
/* HF name with the text model's prefix pre ("model."); -1 when HF has none. */
int gt_gemma_param_hf_name(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                           const char *pre, char *buf, size_t n);
/* GGUF name ("blk.3.attn_q.weight"); -1 when GGUF has none. */
int gt_gemma_param_gguf_name(const gt_gemma_param_row *r, int64_t layer, char *buf, size_t n);
/* KerasHub: decoder block `layer`'s folder under layers/ ("gemma3_decoder_block_3"). */
void gt_gemma_keras_block_dir(const gt_gemma_config *c, int64_t layer, char *buf, size_t n);
/* KerasHub: the vars group ("layers/gemma_decoder_block_3/attention/query_dense/vars") and the
 * Keras shape of a tensor of our shape (ours, rank nd); returns the Keras rank. */
void gt_gemma_param_keras_group(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                                char *buf, size_t n);
/* Index of row r of block `layer` among the backbone's layers with weights in Keras'
 * _flatten_layers order (what .lora.h5 files are keyed by); -1 when the layer lacks r. */
int64_t gt_gemma_keras_index(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer);
/* Index of the variable inside its Keras layer's vars group (".../vars/<i>"): its place among
 * the present rows with the same Keras layer (the MoE expert bank holds four). */
int gt_gemma_param_keras_var(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer);
int gt_gemma_param_keras_shape(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                               int nd, const int64_t *ours, int64_t ks[3]);

#endif
