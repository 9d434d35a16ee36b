/* gemma.h: Gemma decoder parameters and the training/scoring forward pass on the engine.
 *
 * Parameters live in one allocation (and, when trainable, one gradient allocation of the same
 * layout), described by a table of named tensors. Names are KerasHub's variable paths
 * ("decoder_block_3/attention/query/kernel"), but linear kernels are stored in the
 * (out, in) layout of Hugging Face and GGUF so every projection is one GEMM against a transposed
 * weight: query [N*H, D], key/value [K*H, D], attention_output [D, N*H], ffw_gating and
 * ffw_gating_2 [F, D], ffw_linear [D, F]; token_embedding [V, D]; norm scales [D] or [H] hold w
 * as KerasHub stores it (the model applies 1 + w for Gemma 1-3). Import/export code permutes to
 * and from KerasHub's einsum layouts. Gemma 4 layers differ in shape (global layers: global head
 * dim and kv heads; kv-shared layers: no key/value, maybe a 2F MLP), see gemma_config.h; its
 * PLE kernels are stored (out, in) too: per_layer_model_projection [L*P, D],
 * per_layer_input_gate [P, D], per_layer_up_proj [D, P]. LoRA adapters for Gemma 4 come from
 * gt_lora_create_for (per-layer shapes; none on absent kernels).
 *
 * The forward builds on a gt_ctx tape, so backward comes from the engine; frozen parameters
 * (trainable == false) cost no gradient work.
 *
 * Frozen storage (gt_gemma_set_frozen_dtype, LoRA's base model only): GT_FROZEN_BF16 rounds every
 * matrix (embedding, kernels) to bfloat16 once and frees the fp32 copy, halving the weights'
 * memory; the ops expand them a block at a time and all arithmetic stays fp32 (the result equals
 * an fp32 model holding the rounded values). Then a matrix's tensor has data == NULL (read its
 * values with gt_gemma_param_values), m->data holds only the vectors (norm scales, still fp32),
 * and one model must not run two forwards at the same time (the ops share one staging buffer).
 * GT_FROZEN_Q8_0 is the same with GGUF Q8_0 blocks (autograd/quant.h: 8.5 bits a value, every
 * matrix width a multiple of 32) at m->dataq instead of bf16 at m->data16: QLoRA-style training
 * on the dequantised values, fp32 arithmetic. With int8_matvec set (generate sets it), a forward
 * without a tape over one row (a decode step, the LM head of a step) multiplies Q8_0 matrices
 * with int8 dot products instead, its activation row quantised to 8 bits (autograd/qdot.h;
 * GT_QDOT_KERNEL=off keeps fp32 there).
 * gt_gemma_create_frozen builds a model straight in
 * a storage type (no fp32 matrices ever), which loaders then fill a tensor, or a few rows, at a
 * time (gt_gemma_store_rows, gt_gemma_store_q8).
 * GT_FROZEN_Q4_K keeps a GGUF's blocks in their own type where it is Q4_K, Q6_K, Q5_0 or Q8_0
 * (gt_gemma_create_frozen_as picks a matrix's type; gt_gemma_store_blocks copies them): a Q4_K_M
 * file stays as it is, ~4.5-6.5 bits a weight. Every other matrix (another GGUF type, presets,
 * random init, conversion) is quantised to Q4_K (4.5 bits, gt_q4k_quantize: ggml's reference
 * quantiser) where its width is a multiple of 256, else to Q8_0. */
#ifndef GT_GEMMA_H
#define GT_GEMMA_H

#include "autograd/autograd.h"
#include "models/gemma_config.h"
#include "models/lora.h"

typedef struct gt_gemma_layer {
    gt_tensor *pre_attn_norm, *post_attn_norm, *pre_ffw_norm, *post_ffw_norm; /* NULL if absent */
    gt_tensor *query, *key, *value, *attn_out;
    gt_tensor *query_norm, *key_norm;                                          /* Gemma 3 */
    gt_tensor *gate, *up, *down;
    /* Gemma 4: key/value are NULL on kv-shared layers, value (and the value norm's absence of
     * weights) also on k = v global layers; layer_scalar is a non-trainable scalar (no gradient);
     * ple_* exist with per-layer embeddings: gate [P, D], up [D, P], norm [D]. */
    gt_tensor *layer_scalar, *ple_gate, *ple_up, *ple_norm;
    /* Gemma 4 MoE (cfg.moe): norms [D], router_scale [D], router [E, D], expert_gate/up [E*F, D],
     * expert_down [E*D, F], expert_scale [E] (F = expert_dim) */
    gt_tensor *moe_post_dense_norm, *moe_pre_norm, *moe_post_norm, *router_scale, *router;
    gt_tensor *expert_gate, *expert_up, *expert_down, *expert_scale;
} gt_gemma_layer;

struct gt_gemma_param_row;

typedef struct gt_gemma_param {
    char name[96];
    gt_tensor *t;
    const struct gt_gemma_param_row *row; /* its row of the parameter table (gemma_params.h) */
    int64_t layer;                        /* decoder block, or -1 for a global tensor */
} gt_gemma_param;

typedef enum { GT_FROZEN_FP32 = 0, GT_FROZEN_BF16 = 1, GT_FROZEN_Q8_0 = 2, GT_FROZEN_Q4_K = 3 } gt_frozen_dtype;

typedef struct gt_gemma {
    gt_gemma_config cfg;
    gt_real *data;            /* all parameters, in table order */
    gt_real *grad;            /* same layout, or NULL when frozen */
    int64_t n_values;         /* elements in data */
    gt_gemma_param *params;   /* table, n_params entries */
    gt_tensor *tensors;       /* storage of the table's tensor structs */
    int n_params;
    gt_tensor *embedding;     /* [V, D] (tied LM head) */
    gt_tensor *final_norm;    /* [D] */
    gt_gemma_layer *layers;   /* cfg.num_layers */
    const gt_lora *lora;      /* adapters applied in the forward, or NULL; borrowed, not owned */
    gt_frozen_dtype frozen_dtype;
    uint16_t *data16;         /* bf16: the matrices' values, table order; else NULL */
    uint8_t *dataq;           /* q8_0, q4_k: the matrices' blocks, table order; else NULL */
    gt_bf16_mat *mats;        /* bf16, q8_0: one per table entry (none for vectors); else NULL */
    gt_real *stage;           /* bf16, q8_0: staging the ops share */
    bool compute_bf16;        /* bf16 arithmetic in the frozen products (gt_gemma_set_compute_bf16) */
    bool int8_matvec;         /* one-row forwards without a tape on Q8_0 matrices use int8 dot products
                                 (generate --weights auto|q8_0); false: the dequantised values, exactly */
    /* Gemma 4 per-layer embeddings (NULL without): table [Vp, L*P], projection [L*P, D], norm [P] */
    gt_tensor *ple_embedding, *ple_projection, *ple_norm;
    /* Gemma 4 MoE: when set (caller-owned, [L, B*T, k]), each forward writes every block's chosen
     * experts per token, best first (tests, routing statistics); else NULL */
    int32_t *moe_routes;
} gt_gemma;

/* Allocate a zero-initialised model. trainable: every parameter requires a gradient (full
 * fine-tuning); otherwise the model is frozen (inference, LoRA). Free with gt_gemma_free. */
int gt_gemma_create(const gt_gemma_config *cfg, bool trainable, gt_gemma **out, char *err,
                    size_t errn);
void gt_gemma_free(gt_gemma *m);
/* Parameter by name, or NULL. */
gt_tensor *gt_gemma_find(const gt_gemma *m, const char *name);
/* Random init for tests and from-scratch runs: kernels and embeddings N(0, std) (one
 * counter-based stream in table order, autograd/normal.h), norm scales N(0, std) around KerasHub's
 * zero init (Gemma 4: 1 + N(0, std) around its ones init, layer_scalar 1). Deterministic per seed,
 * whatever the storage or thread count; stored matrices are drawn and quantised a row block at a
 * time. */
void gt_gemma_init_random(gt_gemma *m, uint64_t seed, double std);
void gt_gemma_zero_grad(gt_gemma *m);

/* The names in enum order, NULL-ended (also the config's model.frozen_dtype values). */
extern const char *const gt_frozen_dtype_names[];
/* "fp32" / "bf16" / "q8_0" / "q4_k" -> dtype; -1 if unknown. */
int gt_frozen_dtype_from_name(const char *name);
/* Store a frozen model's matrices as dt (see the top). Converts in place, releasing the fp32
 * pages as it goes, so the peak stays near the fp32 size. -1 with a message for a trainable
 * model or a second conversion; GT_FROZEN_FP32 on an fp32 model is a no-op, on a bf16 one it
 * widens the stored (rounded) values back into one fp32 allocation: the writers of presets and
 * HF directories read parameters as fp32 (m->data). */
int gt_gemma_set_frozen_dtype(gt_gemma *m, gt_frozen_dtype dt, char *err, size_t errn);
/* A frozen, zero-valued model whose matrices are stored as dt from the start (GT_FROZEN_FP32:
 * gt_gemma_create(cfg, false)); only the vectors are fp32. Same refusals as the conversion. */
int gt_gemma_create_frozen(const gt_gemma_config *cfg, gt_frozen_dtype dt, gt_gemma **out, char *err,
                           size_t errn);
/* The block type (ggml id, autograd/quant.h) parameter p of m is to keep under GT_FROZEN_Q4_K, or
 * 0 for the default; called once per matrix before any storage exists. */
typedef uint32_t (*gt_gemma_qtype_fn)(const gt_gemma *m, int p, void *arg);
/* gt_gemma_create_frozen where, for GT_FROZEN_Q4_K, pick chooses each matrix's block type (0 or
 * a type whose block does not divide the width: the default, Q4_K or Q8_0 as above). */
int gt_gemma_create_frozen_as(const gt_gemma_config *cfg, gt_frozen_dtype dt, gt_gemma_qtype_fn pick, void *arg,
                              gt_gemma **out, char *err, size_t errn);
/* Bytes of the stored matrices (bf16 or blocks); 0 for an fp32 model. */
int64_t gt_gemma_stored_bytes(const gt_gemma *m);
/* Rows [r0, r0 + nr) of parameter t from vals (nr * cols values), rounded or quantised to its
 * storage (a vector: r0 = 0, nr = 1, its size values; Q4_K: r0 * cols a multiple of 256). Not
 * for a matrix kept as Q6_K or Q5_0 (only gt_gemma_store_blocks fills those): -1 there, else 0. */
int gt_gemma_store_rows(gt_gemma *m, gt_tensor *t, int64_t r0, int64_t nr, const gt_real *vals);
/* A q8_0 model's matrix t from Q8_0 blocks as GGUF stores them (gt_q8_bytes(t->size) bytes):
 * copied, not requantised. -1 unless t is a matrix of a q8_0 model. */
int gt_gemma_store_q8(gt_gemma *m, gt_tensor *t, const uint8_t *blocks);
/* The same for any kept type: -1 unless t is stored as `type`. */
int gt_gemma_store_blocks(gt_gemma *m, gt_tensor *t, uint32_t type, const uint8_t *blocks);
/* Arithmetic of the frozen-weight products (model.compute_dtype): false: fp32 (as the storage
 * expands to); true: bfloat16 -- each frozen linear (q, k, v, o, gate, up, down) and the tied LM
 * head round their activations (hidden rows, output gradients, the LM head's softmax terms) to
 * bf16 and multiply with fp32 accumulation on the CPU's bf16 kernel, forward and input gradient
 * (ops_bf16.h: compute_bf16; where the CPU has no bf16 kernel, or GT_BF16_KERNEL=off, or a
 * matrix's shape is not a multiple of 32, that product stays fp32). Adapters, norms, attention,
 * softmax, the loss and the optimizer stay fp32. Needs bf16 storage
 * (gt_gemma_set_frozen_dtype first): -1 with a message on an fp32 model when on is true.
 * Widening back to fp32 storage turns it off. */
int gt_gemma_set_compute_bf16(gt_gemma *m, bool on, char *err, size_t errn);
/* The fp32 values of parameter t (t->size values) into out, whatever the storage. */
void gt_gemma_param_values(const gt_gemma *m, const gt_tensor *t, gt_real *out);
/* Fold adapters into the kernels, W += (alpha/rank) A B (gt_lora_merge), so inference runs at
 * the base model's cost with the adapted model's numbers. l must fit m (gt_lora_create_for or
 * gt_keras_lora_open with m's config); m must not point at l (m->lora) or the adapters would
 * apply twice. -1 with a message for bf16 / q8_0 storage (the sum would be rounded) or a mismatch. */
int gt_gemma_merge_lora(gt_gemma *m, const gt_lora *l, char *err, size_t errn);

/* One batch of B sequences of T tokens. Arrays are B*T, row-major by sequence; optional ones may
 * be NULL: positions default to 0..T-1 per row, padding_mask to all ones, segment_ids to one
 * segment per row. The padding mask applies to keys (KerasHub semantics). */
typedef struct gt_gemma_batch {
    int64_t batch, seq;
    const int32_t *token_ids;
    const int32_t *positions;
    const uint8_t *padding_mask;
    const int32_t *segment_ids;
    /* Gemma 3 with images: row i of soft_tokens [n_soft, D] (the vision encoder's output,
     * unscaled) replaces the embedding at flat position soft_pos[i] (b*T + t); bidir_end [B, T]
     * (gt_attn_cfg.bidir_end) lets an image's tokens see each other. NULL / 0: text only. */
    gt_tensor *soft_tokens;
    const int32_t *soft_pos;
    int64_t n_soft;
    const int32_t *bidir_end;
} gt_gemma_batch;

/* Final-normalised hidden states [B, T, D]; NULL on error (ctx->err). */
gt_tensor *gt_gemma_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_gemma_batch *b);
/* The fused chunked LM-head loss (gt_lm_head_loss) against the model's tied embedding, whatever
 * its storage. */
gt_tensor *gt_gemma_lm_loss(gt_ctx *ctx, const gt_gemma *m, gt_tensor *hidden, const int32_t *labels,
                            const gt_real *weights, int64_t chunk_rows, double *weight_sum,
                            gt_real *row_ce);
/* Logits of the tied head with the final soft-cap: hidden [..., D] -> [..., V]. The full
 * vocabulary is materialised: for training use the chunked loss instead. */
gt_tensor *gt_gemma_logits(gt_ctx *ctx, const gt_gemma *m, gt_tensor *hidden);

/* Key/value cache for incremental decoding of one sequence (B = 1): rotated keys and values of
 * every layer, [L][max_len][K*H] each (Gemma 4: only layers with their own k, v, each
 * [max_len][K_i*H_i]; kv-shared layers read their source's rows). len = positions filled. */
typedef struct gt_gemma_cache {
    gt_real *k, *v;
    int64_t max_len, len;
} gt_gemma_cache;

int gt_gemma_cache_init(gt_gemma_cache *cache, const gt_gemma *m, int64_t max_len, char *err,
                        size_t errn);
void gt_gemma_cache_free(gt_gemma_cache *cache);
/* dst (initialised for the same model and max_len) becomes a copy of src: beam search. */
void gt_gemma_cache_copy(gt_gemma_cache *dst, const gt_gemma_cache *src, const gt_gemma *m);
/* Feed n tokens at positions cache->len.. (a prompt, then one token at a time); returns the
 * logits [1, V] of the last one and advances cache->len. Records nothing on the tape. */
gt_tensor *gt_gemma_step(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache,
                         const int32_t *ids, int64_t n);
/* The same with images in these tokens: row i of soft (n_soft x hidden_dim values, the vision
 * encoder's output) replaces the embedding of new token soft_pos[i] (ascending), and each run of
 * consecutive positions sees itself both ways (as gt_gemma_batch.bidir_end). */
gt_tensor *gt_gemma_step_soft(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids,
                              int64_t n, const gt_real *soft, const int32_t *soft_pos, int64_t n_soft);
/* The same where only soft rows with open[i] != 0 form bidirectional runs (Gemma 4: images with
 * vision_bidir; audio never); open NULL: all, as gt_gemma_step_soft. */
gt_tensor *gt_gemma_step_media(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids,
                               int64_t n, const gt_real *soft, const int32_t *soft_pos, int64_t n_soft,
                               const uint8_t *open);
/* gt_gemma_step with a choice of outputs: *logits (when logits is not NULL) the last token's
 * [1, V]; *hidden (when not NULL) the final-normalised hidden states [n, D] of the fed tokens
 * (KerasHub's call_with_cache hidden_states, what ContrastiveSampler compares). Without logits
 * the LM head is skipped. 0, or -1 with ctx->err set. */
int gt_gemma_step_hidden(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids,
                         int64_t n, gt_tensor **logits, gt_tensor **hidden);

#endif
