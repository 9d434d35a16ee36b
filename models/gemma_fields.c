#include "models/gemma_fields.h"

#include <limits.h>
#include <string.h>

#define F(m, t) #m, offsetof(gt_gemma_config, m), sizeof(((gt_gemma_config *)0)->m), GT_FIELD_##t
#define REQ GT_FF_REQUIRED
#define NZ GT_FF_NULL_ZERO

/* Sources: KerasHub gemma_backbone.py, gemma3_backbone.py, gemma4_backbone.py (get_config);
 * transformers configuration_gemma{,2,3,4}.py class defaults (5.x; the same in 4.x); llama.cpp's
 * GGUF keys for gemma, gemma2, gemma3. Per row:
 *   field, type | KerasHub key, classes, flags, default | HF key, classes, nested, flags,
 *   defaults by generation {-, 1, 2, 3, 4} | GGUF key, generations, flags */
static const gt_gemma_field fields[] = {
    {F(vocab_size, INT), "vocabulary_size", GT_G1234, REQ, 0,
     "vocab_size", GT_G1234, 0, 0, {0, 256000, 256000, 262208, 262144}, NULL, 0, 0},
    {F(num_layers, INT), "num_layers", GT_G1234, REQ, 0,
     "num_hidden_layers", GT_G1234, 0, 0, {0, 28, 26, 26, 30}, "block_count", GT_G123, REQ},
    {F(hidden_dim, INT), "hidden_dim", GT_G1234, REQ, 0,
     "hidden_size", GT_G1234, 0, 0, {0, 3072, 2304, 2304, 2304}, "embedding_length", GT_G123, REQ},
    {F(intermediate_dim, INT), "intermediate_dim", GT_G1234, REQ | GT_FF_TWICE12, 0,
     "intermediate_size", GT_G1234, 0, 0, {0, 24576, 9216, 9216, 9216}, "feed_forward_length", GT_G123, REQ},
    {F(num_query_heads, INT), "num_query_heads", GT_G1234, REQ, 0,
     "num_attention_heads", GT_G1234, 0, 0, {0, 16, 8, 8, 8}, "attention.head_count", GT_G123, REQ},
    {F(num_kv_heads, INT), "num_key_value_heads", GT_G1234, REQ, 0,
     "num_key_value_heads", GT_G1234, 0, 0, {0, 16, 4, 4, 4}, "attention.head_count_kv", GT_G123, REQ},
    /* HF 1-3: null means hidden_size / heads; GGUF: absent means the same (special cases) */
    {F(head_dim, INT), "head_dim", GT_G1234, REQ, 0,
     "head_dim", GT_G1234, 0, 0, {0, 256, 256, 256, 256}, "attention.key_length", GT_G123, 0},
    {F(max_seq_len, INT), NULL, 0, 0, 0,
     "max_position_embeddings", GT_G1234, 0, 0, {0, 8192, 8192, 131072, 131072}, "context_length", GT_G123, REQ},
    {F(rms_eps, NUM), "layer_norm_epsilon", GT_G1234, 0, 1e-6,
     "rms_norm_eps", GT_G1234, 0, 0, {0, 1e-6, 1e-6, 1e-6, 1e-6}, "attention.layer_norm_rms_epsilon", GT_G123, 0},
    {F(use_post_attention_norm, BOOL), "use_post_attention_norm", GT_G123, 0, 0, NULL, 0, 0, 0, {0}, NULL, 0, 0},
    {F(use_post_ffw_norm, BOOL), "use_post_ffw_norm", GT_G123, 0, 0, NULL, 0, 0, 0, {0}, NULL, 0, 0},
    {F(use_qk_norm, BOOL), "use_query_key_norm", GT_G(3), 0, 1, NULL, 0, 0, 0, {0}, NULL, 0, 0},
    {F(attn_logit_softcap, NUM), "attention_logit_soft_cap", GT_G1234, NZ, 0,
     "attn_logit_softcapping", GT_G(2) | GT_G(3), 0, NZ, {0, 0, 50, 0, 0}, "attn_logit_softcapping", GT_G123, 0},
    {F(final_logit_softcap, NUM), "final_logit_soft_cap", GT_G1234, NZ, 0,
     "final_logit_softcapping", GT_G(2) | GT_G(3) | GT_G(4), 0, NZ, {0, 0, 30, 0, 0}, "final_logit_softcapping",
     GT_G123, 0},
    /* KerasHub 1-3: only with use_sliding_window_attention; HF: kept only with sliding layers */
    {F(sliding_window, INT), "sliding_window_size", GT_G(4), 0, 512,
     "sliding_window", GT_G(2) | GT_G(3) | GT_G(4), 0, NZ, {0, 0, 4096, 4096, 512}, "attention.sliding_window",
     GT_G(2) | GT_G(3), 0},
    /* HF: the class's layer_types default (gen 3 also reads sliding_window_pattern) */
    {F(sliding_pattern, INT), "sliding_window_pattern", GT_G(4), 0, 6,
     "sliding_window_pattern", GT_G(2) | GT_G(3) | GT_G(4), GT_G(2) | GT_G(3) | GT_G(4), 0, {0, 0, 2, 6, 6},
     NULL, 0, 0},
    /* HF 4: rope_parameters.sliding_attention / full_attention */
    {F(rope_local_base, NUM), "local_rope_wavelength", GT_G(4), 0, 10000.0,
     "rope_local_base_freq", GT_G(3) | GT_G(4), GT_G(4), 0, {0, 0, 0, 10000.0, 10000.0}, NULL, 0, 0},
    {F(rope_global_base, NUM), "global_rope_wavelength", GT_G(4), 0, 1000000.0,
     "rope_theta", GT_G1234, GT_G(4), 0, {0, 10000.0, 10000.0, 1000000.0, 1000000.0}, "rope.freq_base", GT_G123, 0},
    {F(rope_local_scale, NUM), "local_rope_scaling_factor", GT_G(3) | GT_G(4), 0, 1, NULL, 0, 0, 0, {0}, NULL, 0, 0},
    {F(rope_global_scale, NUM), "global_rope_scaling_factor", GT_G(3) | GT_G(4), 0, 1, NULL, 0, 0, 0, {0},
     "rope.scaling.factor", GT_G123, GT_FF_POSITIVE},
    /* HF 2-3: query_pre_attn_scalar (head_dim or hidden_size / heads) */
    {F(query_head_dim_normalize, BOOL), "query_head_dim_normalize", GT_G123, 0, 1,
     "query_pre_attn_scalar", GT_G(2) | GT_G(3), GT_G(2) | GT_G(3), 0, {0, 0, 256, 256, 0}, NULL, 0, 0},
    /* HF 4: per_layer_config of the full-attention layers, or these keys */
    {F(global_head_dim, INT), "global_head_dim", GT_G(4), NZ, 0,
     "global_head_dim", GT_G(4), GT_G(4), 0, {0, 0, 0, 0, 512}, NULL, 0, 0},
    {F(num_global_kv_heads, INT), "num_global_key_value_heads", GT_G(4), NZ, 0,
     "num_global_key_value_heads", GT_G(4), GT_G(4), 0, {0}, NULL, 0, 0},
    {F(rope_global_partial, NUM), "global_rope_partial_rotary_factor", GT_G(4), 0, 1,
     "partial_rotary_factor", GT_G(4), GT_G(4), 0, {0, 0, 0, 0, 0.25}, NULL, 0, 0},
    {F(num_kv_shared_layers, INT), "num_kv_shared_layers", GT_G(4), 0, 0,
     "num_kv_shared_layers", GT_G(4), 0, 0, {0}, NULL, 0, 0},
    {F(double_wide_mlp, BOOL), "use_double_wide_mlp", GT_G(4), 0, 0,
     "use_double_wide_mlp", GT_G(4), 0, 0, {0}, NULL, 0, 0},
    {F(per_layer_input_dim, INT), "hidden_size_per_layer_input", GT_G(4), 0, 0,
     "hidden_size_per_layer_input", GT_G(4), 0, 0, {0, 0, 0, 0, 256}, NULL, 0, 0},
    {F(per_layer_vocab_size, INT), "vocab_size_per_layer_input", GT_G(4), NZ, 0,
     "vocab_size_per_layer_input", GT_G(4), 0, 0, {0, 0, 0, 0, 262144}, NULL, 0, 0},
    /* Gemma 4 MoE: KerasHub Gemma4Backbone, transformers Gemma4TextConfig, llama.cpp expert keys */
    {F(moe, BOOL), "enable_moe_block", GT_G(4), 0, 0, "enable_moe_block", GT_G(4), 0, 0, {0}, NULL, 0, 0},
    {F(num_experts, INT), "num_experts", GT_G(4), NZ, 0,
     "num_experts", GT_G(4), 0, NZ, {0}, "expert_count", GT_G(4), GT_FF_POSITIVE},
    {F(expert_dim, INT), "expert_intermediate_dim", GT_G(4), NZ, 0,
     "moe_intermediate_size", GT_G(4), 0, NZ, {0}, "expert_feed_forward_length", GT_G(4), GT_FF_POSITIVE},
    {F(experts_per_token, INT), "num_experts_per_token", GT_G(4), 0, 8,
     "top_k_experts", GT_G(4), 0, 0, {0, 0, 0, 0, 8}, "expert_used_count", GT_G(4), GT_FF_POSITIVE},
};

const gt_gemma_field *gt_gemma_fields(size_t *n) {
    *n = sizeof fields / sizeof fields[0];
    return fields;
}

const gt_gemma_field *gt_gemma_field_keras(const char *key, int gen) {
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i].keras && (fields[i].keras_gens & GT_G(gen)) && !strcmp(fields[i].keras, key)) return &fields[i];
    return NULL;
}

double gt_gemma_field_get(const gt_gemma_config *c, const gt_gemma_field *f) {
    const char *p = (const char *)c + f->off;
    switch (f->type) {
    case GT_FIELD_INT: return f->size == sizeof(int) ? *(const int *)p : (double)*(const int64_t *)p;
    case GT_FIELD_NUM: return *(const double *)p;
    case GT_FIELD_BOOL: return *(const bool *)p;
    }
    return 0;
}

void gt_gemma_field_set(gt_gemma_config *c, const gt_gemma_field *f, double v) {
    char *p = (char *)c + f->off;
    switch (f->type) {
    case GT_FIELD_INT:
        /* saturate: a value past the type's range (a hostile file) must not convert out of range
         * (UB); the config's validation then refuses it */
        if (v != v) v = 0;
        if (f->size == sizeof(int)) *(int *)p = v >= INT_MAX ? INT_MAX : v <= INT_MIN ? INT_MIN : (int)v;
        else *(int64_t *)p = v >= 0x1p63 ? INT64_MAX : v <= -0x1p63 ? INT64_MIN : (int64_t)v;
        break;
    case GT_FIELD_NUM: *(double *)p = v; break;
    case GT_FIELD_BOOL: *(bool *)p = v != 0; break;
    }
}
