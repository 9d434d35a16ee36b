/* gemma_config.h: one configuration struct for the Gemma text decoders (generations 1-4) and the
 * table of KerasHub's named presets.
 *
 * Shapes follow KerasHub's backbones; `intermediate_dim` here is the width of ONE MLP branch
 * (KerasHub's Gemma 1/2 config stores twice that; Gemma 3 stores it as is). Facts and sources:
 * docs/reference/gemma-architecture.md.
 * Contract: plain values and pure functions (nothing allocates); gt_gemma_preset and
 * gt_gemma_config_validate return -1 with a one-line message naming the preset or field. */
#ifndef GT_GEMMA_CONFIG_H
#define GT_GEMMA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/vision_config.h"

typedef struct gt_gemma_config {
    char name[64];               /* preset name, or "custom" */
    int generation;              /* 1, 2, 3, 4 (Gemma 4: dense text decoder, docs/gemma4.md) */
    int64_t vocab_size;
    int64_t num_layers;
    int64_t hidden_dim;          /* D */
    int64_t intermediate_dim;    /* F, per MLP branch */
    int64_t num_query_heads;     /* N */
    int64_t num_kv_heads;        /* K */
    int64_t head_dim;            /* H */
    double rms_eps;
    bool norm_add_one;           /* RMSNorm scale is (1 + w) (Gemma 1-3); false: w (Gemma 4) */
    bool use_post_attention_norm;
    bool use_post_ffw_norm;
    bool use_qk_norm;            /* Gemma 3 */
    double attn_logit_softcap;   /* 0 = none */
    double final_logit_softcap;  /* 0 = none */
    int64_t sliding_window;      /* tokens incl. self; 0 = no local layers */
    int sliding_pattern;         /* P: layer i is local iff P > 0 and i % P < P - 1 (G2: 2, G3: 6) */
    double rope_local_base;      /* wavelength on local layers (and all layers when no pattern) */
    double rope_global_base;
    double rope_local_scale;     /* linear scaling factors: positions divided by these */
    double rope_global_scale;
    bool query_head_dim_normalize; /* true: q *= H^-1/2; false: q *= (D/N)^-1/2 (the 27B models) */
    bool kerashub_query_scaling; /* KerasHub always scales by H^-1/2 whatever the flag says
                                    (reference §1.1); true reproduces it (default) */
    int64_t max_seq_len;         /* context length of the preset (informational) */
    /* Gemma 4 only (zero / false / 1.0 for generations 1-3; validation rejects other values). */
    int64_t global_head_dim;     /* head dim of global layers; 0 = head_dim */
    int64_t num_global_kv_heads; /* > 0: global layers use this many kv heads AND share k = v
                                    (one key projection, no value kernel) */
    double rope_global_partial;  /* fraction of a global head's dims that rotate (0.25) */
    int64_t num_kv_shared_layers;/* the last S layers reuse k, v of the last earlier layer of the
                                    same type (no key/value kernels, no key_norm) */
    bool double_wide_mlp;        /* kv-shared layers use an MLP branch of 2F */
    int64_t per_layer_input_dim; /* P > 0: per-layer token embeddings (PLE); 0 = none */
    int64_t per_layer_vocab_size;/* rows of the PLE table; 0 = vocab_size */
    /* Gemma 4 Mixture-of-Experts (26B-A4B, docs/gemma4.md row 20): every block runs the dense MLP
     * and a routed bank of num_experts GeGLU experts (width expert_dim), experts_per_token each */
    bool moe;                    /* KerasHub enable_moe_block */
    int64_t num_experts;
    int64_t expert_dim;
    int64_t experts_per_token;   /* top-k (KerasHub default 8; read only with moe) */
    /* Gemma 3 multimodal presets (gemma3_4b, ...): the vision encoder's shapes; num_layers 0 =
     * text only. The decoder (models/gemma.h) does not use it yet. */
    gt_vision_config vision;
} gt_gemma_config;

/* Fill *cfg from a preset name ("gemma3_270m", "gemma2_instruct_2b_en", ...). Returns 0, or -1
 * with a message listing close names. */
int gt_gemma_preset(const char *name, gt_gemma_config *cfg, char *err, size_t errn);
/* NULL-terminated list of preset names. */
const char *const *gt_gemma_preset_names(void);

/* Defaults for a generation (norm form, soft-caps, pattern, RoPE bases); shapes left zero. */
void gt_gemma_config_defaults(gt_gemma_config *cfg, int generation);
/* Check shapes and flags for consistency; message names the first bad field. */
int gt_gemma_config_validate(const gt_gemma_config *cfg, char *err, size_t errn);

bool gt_gemma_layer_is_local(const gt_gemma_config *cfg, int64_t layer);
/* Per-layer shapes (differ between local and global layers only in Gemma 4). */
int64_t gt_gemma_layer_head_dim(const gt_gemma_config *cfg, int64_t layer);
int64_t gt_gemma_layer_kv_heads(const gt_gemma_config *cfg, int64_t layer);
int64_t gt_gemma_layer_ffw_dim(const gt_gemma_config *cfg, int64_t layer);
/* Gemma 4 global layers with num_global_kv_heads: v comes from the key projection. */
bool gt_gemma_layer_k_eq_v(const gt_gemma_config *cfg, int64_t layer);
/* Index of the earlier layer whose k, v this layer reuses, or -1 when it computes its own. */
int64_t gt_gemma_kv_source(const gt_gemma_config *cfg, int64_t layer);
/* Rotated dims of a layer's heads (gt_rope_cfg.rotary_dims): KerasHub's
 * max(2, even(floor(partial * H))) on Gemma 4 global layers, else the full head dim. */
int64_t gt_gemma_layer_rotary_dims(const gt_gemma_config *cfg, int64_t layer);
/* The multiplier applied to q before q.k (see kerashub_query_scaling); 1.0 for Gemma 4, whose
 * q/k norms replace the scaling. */
double gt_gemma_query_scale(const gt_gemma_config *cfg);
/* Number of parameters (KerasHub's count: tied embedding counted once) of the text decoder. */
int64_t gt_gemma_param_count(const gt_gemma_config *cfg);
/* The decoder's plus the vision encoder's, when the config has one (KerasHub's count for the
 * multimodal presets). */
int64_t gt_gemma_total_param_count(const gt_gemma_config *cfg);

#endif
