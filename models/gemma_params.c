#include "models/gemma_params.h"

#include <stdio.h>
#include <string.h>

#include "models/gemma.h"

#define L_(f) offsetof(gt_gemma_layer, f)
#define M_(f) offsetof(gt_gemma, f)
#define NOLORA (-1)

/* Sources of the names: docs/reference/gemma-architecture.md (KerasHub §7, HF, GGUF §8). */
const gt_gemma_param_row gt_gemma_param_rows[] = {
    /* name, per_layer, frozen, slot, dims, when, lora, keras, layout, flatten rank, hf, hf_g1, gguf, +1 */
    {"token_embedding/embeddings", false, false, M_(embedding), {GT_DIM_V, GT_DIM_D}, GT_WHEN_ALWAYS, NOLORA,
     "reversible_embedding", GT_KERAS_SAME, {0, 0}, "embed_tokens.weight", NULL, "token_embd.weight", false},
    {"per_layer_token_embedding/embeddings", false, false, M_(ple_embedding), {GT_DIM_VP, GT_DIM_LP}, GT_WHEN_PLE,
     NOLORA, "embedding", GT_KERAS_SAME, {0, 0}, "embed_tokens_per_layer.weight", NULL, "per_layer_token_embd.weight", false},
    {"per_layer_model_projection/kernel", false, false, M_(ple_projection), {GT_DIM_LP, GT_DIM_D}, GT_WHEN_PLE,
     NOLORA, "dense", GT_KERAS_T, {0, 0}, "per_layer_model_projection.weight", NULL, "per_layer_model_proj.weight", false},
    {"per_layer_projection_norm/scale", false, false, M_(ple_norm), {GT_DIM_P}, GT_WHEN_PLE, NOLORA,
     "rms_normalization", GT_KERAS_SAME, {0, 0}, "per_layer_projection_norm.weight", NULL, "per_layer_proj_norm.weight", false},

    {"pre_attention_norm/scale", true, false, L_(pre_attn_norm), {GT_DIM_D}, GT_WHEN_ALWAYS, NOLORA,
     "pre_attention_norm", GT_KERAS_SAME, {61, 61}, "input_layernorm.weight", NULL, "attn_norm.weight", true},
    {"attention/query/kernel", true, false, L_(query), {GT_DIM_NH, GT_DIM_D}, GT_WHEN_ALWAYS, GT_LORA_QUERY,
     "attention/query_dense", GT_KERAS_HEADS_IN, {56, 56}, "self_attn.q_proj.weight", NULL, "attn_q.weight", false},
    {"attention/key/kernel", true, false, L_(key), {GT_DIM_KH, GT_DIM_D}, GT_WHEN_OWN_KV, GT_LORA_KEY,
     "attention/key_dense", GT_KERAS_HEADS_IN, {55, 55}, "self_attn.k_proj.weight", NULL, "attn_k.weight", false},
    {"attention/value/kernel", true, false, L_(value), {GT_DIM_KH, GT_DIM_D}, GT_WHEN_OWN_V, GT_LORA_VALUE,
     "attention/value_dense", GT_KERAS_HEADS_IN, {54, 54}, "self_attn.v_proj.weight", NULL, "attn_v.weight", false},
    {"attention/attention_output/kernel", true, false, L_(attn_out), {GT_DIM_D, GT_DIM_NH}, GT_WHEN_ALWAYS,
     GT_LORA_ATTN_OUT, "attention/output_dense", GT_KERAS_HEADS_OUT, {51, 51}, "self_attn.o_proj.weight", NULL,
     "attn_output.weight", false},
    {"attention/query_norm/scale", true, false, L_(query_norm), {GT_DIM_H}, GT_WHEN_QK_NORM, NOLORA,
     "attention/query_norm", GT_KERAS_SAME, {53, 52}, "self_attn.q_norm.weight", NULL, "attn_q_norm.weight", true},
    {"attention/key_norm/scale", true, false, L_(key_norm), {GT_DIM_H}, GT_WHEN_K_NORM, NOLORA,
     "attention/key_norm", GT_KERAS_SAME, {52, 53}, "self_attn.k_norm.weight", NULL, "attn_k_norm.weight", true},
    {"post_attention_norm/scale", true, false, L_(post_attn_norm), {GT_DIM_D}, GT_WHEN_POST_ATTN, NOLORA,
     "post_attention_norm", GT_KERAS_SAME, {60, 60}, "post_attention_layernorm.weight", NULL, "post_attention_norm.weight",
     true},
    /* HF Gemma 1 calls its pre-MLP norm post_attention_layernorm; GGUF calls it ffn_norm throughout */
    {"pre_ffw_norm/scale", true, false, L_(pre_ffw_norm), {GT_DIM_D}, GT_WHEN_ALWAYS, NOLORA, "pre_ffw_norm",
     GT_KERAS_SAME, {24, 24}, "pre_feedforward_layernorm.weight", "post_attention_layernorm.weight", "ffn_norm.weight", true},
    {"post_ffw_norm/scale", true, false, L_(post_ffw_norm), {GT_DIM_D}, GT_WHEN_POST_FFW, NOLORA, "post_ffw_norm",
     GT_KERAS_SAME, {23, 23}, "post_feedforward_layernorm.weight", NULL, "post_ffw_norm.weight", true},
    {"ffw_gating/kernel", true, false, L_(gate), {GT_DIM_F, GT_DIM_D}, GT_WHEN_ALWAYS, GT_LORA_GATE, "gating_ffw",
     GT_KERAS_T, {22, 22}, "mlp.gate_proj.weight", NULL, "ffn_gate.weight", false},
    {"ffw_gating_2/kernel", true, false, L_(up), {GT_DIM_F, GT_DIM_D}, GT_WHEN_ALWAYS, GT_LORA_UP, "gating_ffw_2",
     GT_KERAS_T, {21, 21}, "mlp.up_proj.weight", NULL, "ffn_up.weight", false},
    {"ffw_linear/kernel", true, false, L_(down), {GT_DIM_D, GT_DIM_F}, GT_WHEN_ALWAYS, GT_LORA_DOWN, "ffw_linear",
     GT_KERAS_T, {20, 20}, "mlp.down_proj.weight", NULL, "ffn_down.weight", false},
    /* Gemma 4 MoE (KerasHub gemma4_moe.py, HF Gemma4TextRouter / Gemma4TextExperts): the dense
     * branch's post-norm, the expert branch's pre/post norms, the router (per-dim scale, [E, D]
     * kernel), the expert bank in Keras' variable order (gate, up [E*F, D], down [E*D, F], scale
     * [E]). HF fuses gate and up into experts.gate_up_proj [E, 2F, D] (hf_gemma.c splits and joins
     * them; both rows name it) and stores down as [E, D, F]; llama.cpp's converter keeps both
     * layouts (ffn_gate_up_exps, ffn_down_exps: gemma4_gguf.c) and renames router.scale and
     * per_expert_scale to ffn_gate_inp.scale and ffn_down_exps.scale. */
    {"post_ffw_norm_dense/scale", true, false, L_(moe_post_dense_norm), {GT_DIM_D}, GT_WHEN_MOE, NOLORA,
     "post_ffw_norm_dense", GT_KERAS_SAME, {17, 17}, "post_feedforward_layernorm_1.weight", NULL, "post_ffw_norm_1.weight", false},
    {"pre_ffw_norm_moe/scale", true, false, L_(moe_pre_norm), {GT_DIM_D}, GT_WHEN_MOE, NOLORA,
     "pre_ffw_norm_moe", GT_KERAS_SAME, {18, 18}, "pre_feedforward_layernorm_2.weight", NULL, "pre_ffw_norm_2.weight", false},
    {"post_ffw_norm_moe_path/scale", true, false, L_(moe_post_norm), {GT_DIM_D}, GT_WHEN_MOE, NOLORA,
     "post_ffw_norm_moe_path", GT_KERAS_SAME, {16, 16}, "post_feedforward_layernorm_2.weight", NULL, "post_ffw_norm_2.weight", false},
    {"moe_router/per_dim_scale", true, false, L_(router_scale), {GT_DIM_D}, GT_WHEN_MOE, NOLORA, "moe_router",
     GT_KERAS_SAME, {14, 14}, "router.scale", NULL, "ffn_gate_inp.scale", false},
    {"moe_router/proj/kernel", true, false, L_(router), {GT_DIM_E, GT_DIM_D}, GT_WHEN_MOE, NOLORA, "moe_router/proj",
     GT_KERAS_T, {15, 15}, "router.proj.weight", NULL, "ffn_gate_inp.weight", false},
    {"moe_expert_bank/gate_proj", true, false, L_(expert_gate), {GT_DIM_EF, GT_DIM_D}, GT_WHEN_MOE, NOLORA,
     "moe_expert_bank", GT_KERAS_EXPERTS, {13, 13}, "experts.gate_up_proj", NULL, "ffn_gate_up_exps.weight", false},
    {"moe_expert_bank/up_proj", true, false, L_(expert_up), {GT_DIM_EF, GT_DIM_D}, GT_WHEN_MOE, NOLORA,
     "moe_expert_bank", GT_KERAS_EXPERTS, {13, 13}, "experts.gate_up_proj", NULL, "ffn_gate_up_exps.weight", false},
    {"moe_expert_bank/down_proj", true, false, L_(expert_down), {GT_DIM_ED, GT_DIM_FE}, GT_WHEN_MOE, NOLORA,
     "moe_expert_bank", GT_KERAS_EXPERTS, {13, 13}, "experts.down_proj", NULL, "ffn_down_exps.weight", false},
    {"moe_expert_bank/per_expert_scale", true, false, L_(expert_scale), {GT_DIM_E}, GT_WHEN_MOE, NOLORA,
     "moe_expert_bank", GT_KERAS_SAME, {13, 13}, "router.per_expert_scale", NULL, "ffn_down_exps.scale", false},
    /* Gemma 4 per-layer inputs: gate [P, D], up [D, P] ((out, in) as HF stores them), norm [D] */
    {"per_layer_input_gate/kernel", true, false, L_(ple_gate), {GT_DIM_P, GT_DIM_D}, GT_WHEN_PLE, NOLORA,
     "per_layer_input_gate", GT_KERAS_T, {12, 12}, "per_layer_input_gate.weight", NULL, "inp_gate.weight", false},
    {"per_layer_up_proj/kernel", true, false, L_(ple_up), {GT_DIM_D, GT_DIM_P}, GT_WHEN_PLE, NOLORA,
     "per_layer_up_proj", GT_KERAS_T, {11, 11}, "per_layer_projection.weight", NULL, "proj.weight", false},
    {"post_per_layer_input_norm/scale", true, false, L_(ple_norm), {GT_DIM_D}, GT_WHEN_PLE, NOLORA,
     "post_per_layer_input_norm", GT_KERAS_SAME, {10, 10}, "post_per_layer_input_norm.weight", NULL, "post_norm.weight", false},
    /* a scalar: HF stores it as [1]; Keras as the block's own variable */
    {"layer_scalar", true, true, L_(layer_scalar), {GT_DIM_NONE}, GT_WHEN_GEN4, NOLORA, "", GT_KERAS_SAME, {0, 0},
     "layer_scalar", NULL, "layer_output_scale.weight", false},

    {"final_normalization/scale", false, false, M_(final_norm), {GT_DIM_D}, GT_WHEN_ALWAYS, NOLORA,
     "rms_normalization", GT_KERAS_SAME, {0, 0}, "norm.weight", NULL, "output_norm.weight", true},
};

const int gt_gemma_n_param_rows = (int)(sizeof gt_gemma_param_rows / sizeof gt_gemma_param_rows[0]);

bool gt_gemma_param_present(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer) {
    bool own_kv = !r->per_layer || gt_gemma_kv_source(c, layer) < 0;
    switch (r->when) {
    case GT_WHEN_ALWAYS: return true;
    case GT_WHEN_PLE: return c->per_layer_input_dim > 0;
    case GT_WHEN_OWN_KV: return own_kv;
    case GT_WHEN_OWN_V: return own_kv && !gt_gemma_layer_k_eq_v(c, layer);
    case GT_WHEN_QK_NORM: return c->use_qk_norm;
    case GT_WHEN_K_NORM: return c->use_qk_norm && own_kv;
    case GT_WHEN_POST_ATTN: return c->use_post_attention_norm;
    case GT_WHEN_POST_FFW: return c->use_post_ffw_norm;
    case GT_WHEN_GEN4: return c->generation == 4;
    case GT_WHEN_MOE: return c->generation == 4 && c->moe;
    }
    return false;
}

static int64_t dim(const gt_gemma_config *c, int64_t layer, gt_param_dim d) {
    int64_t l = layer < 0 ? 0 : layer;
    switch (d) {
    case GT_DIM_NONE: return 0;
    case GT_DIM_V: return c->vocab_size;
    case GT_DIM_VP: return c->per_layer_vocab_size ? c->per_layer_vocab_size : c->vocab_size;
    case GT_DIM_D: return c->hidden_dim;
    case GT_DIM_NH: return c->num_query_heads * gt_gemma_layer_head_dim(c, l);
    case GT_DIM_KH: return gt_gemma_layer_kv_heads(c, l) * gt_gemma_layer_head_dim(c, l);
    case GT_DIM_H: return gt_gemma_layer_head_dim(c, l);
    case GT_DIM_F: return gt_gemma_layer_ffw_dim(c, l);
    case GT_DIM_P: return c->per_layer_input_dim;
    case GT_DIM_LP: return c->num_layers * c->per_layer_input_dim;
    case GT_DIM_E: return c->num_experts;
    case GT_DIM_EF: return c->num_experts * c->expert_dim;
    case GT_DIM_ED: return c->num_experts * c->hidden_dim;
    case GT_DIM_FE: return c->expert_dim;
    }
    return 0;
}

int gt_gemma_param_shape(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                         int64_t shape[2]) {
    int nd = 0;
    shape[0] = shape[1] = 0;
    for (; nd < 2 && r->dims[nd] != GT_DIM_NONE; nd++) shape[nd] = dim(c, layer, r->dims[nd]);
    return nd;
}

int gt_gemma_param_walk(const gt_gemma_config *c, gt_gemma_param_fn fn, void *ctx) {
    const gt_gemma_param_row *R = gt_gemma_param_rows;
    int n = gt_gemma_n_param_rows, first = 0, last = n;
    while (first < n && !R[first].per_layer) first++;
    while (last > first && !R[last - 1].per_layer) last--;
    int rc = 0;
    for (int k = 0; k < first && !rc; k++)
        if (gt_gemma_param_present(&R[k], c, -1)) rc = fn(&R[k], -1, ctx);
    for (int64_t i = 0; i < c->num_layers && !rc; i++)
        for (int k = first; k < last && !rc; k++)
            if (gt_gemma_param_present(&R[k], c, i)) rc = fn(&R[k], i, ctx);
    for (int k = last; k < n && !rc; k++)
        if (gt_gemma_param_present(&R[k], c, -1)) rc = fn(&R[k], -1, ctx);
    return rc;
}

void gt_gemma_param_name(const gt_gemma_param_row *r, int64_t layer, char *buf, size_t n) {
    if (r->per_layer) snprintf(buf, n, "decoder_block_%lld/%s", (long long)layer, r->name);
    else snprintf(buf, n, "%s", r->name);
}

int gt_gemma_param_hf_name(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                           const char *pre, char *buf, size_t n) {
    const char *hf = c->generation == 1 && r->hf_g1 ? r->hf_g1 : r->hf;
    if (!hf) return -1;
    if (r->per_layer) snprintf(buf, n, "%slayers.%lld.%s", pre, (long long)layer, hf);
    else snprintf(buf, n, "%s%s", pre, hf);
    return 0;
}

int gt_gemma_param_gguf_name(const gt_gemma_param_row *r, int64_t layer, char *buf, size_t n) {
    if (!r->gguf) return -1;
    if (r->per_layer) snprintf(buf, n, "blk.%lld.%s", (long long)layer, r->gguf);
    else snprintf(buf, n, "%s", r->gguf);
    return 0;
}

void gt_gemma_keras_block_dir(const gt_gemma_config *c, int64_t layer, char *buf, size_t n) {
    const char *cls = c->generation == 4   ? "gemma4_text_decoder_block"
                      : c->generation >= 3 ? "gemma3_decoder_block"
                                           : "gemma_decoder_block";
    if (layer == 0) snprintf(buf, n, "%s", cls);
    else snprintf(buf, n, "%s_%lld", cls, (long long)layer);
}

void gt_gemma_param_keras_group(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                                char *buf, size_t n) {
    if (r->per_layer) {
        char blk[64];
        gt_gemma_keras_block_dir(c, layer, blk, sizeof blk);
        snprintf(buf, n, "layers/%s%s%s/vars", blk, r->keras[0] ? "/" : "", r->keras);
        return;
    }
    /* Keras numbers same-class top-level layers in graph order (table order here) */
    int k = 0;
    for (const gt_gemma_param_row *p = gt_gemma_param_rows; p < r; p++)
        k += !p->per_layer && !strcmp(p->keras, r->keras) && gt_gemma_param_present(p, c, -1);
    if (k) snprintf(buf, n, "layers/%s_%d/vars", r->keras, k);
    else snprintf(buf, n, "layers/%s/vars", r->keras);
}

int gt_gemma_param_keras_shape(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer,
                               int nd, const int64_t *ours, int64_t ks[3]) {
    int64_t h = r->per_layer ? gt_gemma_layer_head_dim(c, layer) : c->head_dim;
    ks[0] = ks[1] = ks[2] = 0;
    switch (r->keras_layout) {
    case GT_KERAS_HEADS_IN:
        ks[0] = ours[0] / h, ks[1] = ours[1], ks[2] = h;
        return 3;
    case GT_KERAS_HEADS_OUT:
        ks[0] = ours[1] / h, ks[1] = h, ks[2] = ours[0];
        return 3;
    case GT_KERAS_T:
        ks[0] = ours[1], ks[1] = ours[0];
        return 2;
    case GT_KERAS_EXPERTS:
        ks[0] = c->num_experts, ks[1] = ours[1], ks[2] = ours[0] / c->num_experts;
        return 3;
    case GT_KERAS_SAME: break;
    }
    for (int i = 0; i < nd; i++) ks[i] = ours[i];
    return nd;
}

int64_t gt_gemma_keras_index(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer) {
    if (!r->per_layer || !gt_gemma_param_present(r, c, layer)) return -1;
    const gt_gemma_param_row *R = gt_gemma_param_rows;
    int g = c->generation == 4, rank = r->keras_flat[g];
    int64_t idx = 0;
    for (int k = 0; k < gt_gemma_n_param_rows && !R[k].per_layer; k++) idx += gt_gemma_param_present(&R[k], c, -1);
    /* each block: itself (its own variables, if any, are rows with keras ""), its attention
     * layer, and its sublayers; then r's place among this block's */
    for (int64_t j = 0; j <= layer; j++) {
        idx += 1 + (j < layer || rank > GT_KERAS_ATTENTION_RANK);
        for (int k = 0; k < gt_gemma_n_param_rows; k++)
            if (R[k].per_layer && R[k].keras[0] && gt_gemma_param_present(&R[k], c, j) &&
                gt_gemma_param_keras_var(&R[k], c, j) == 0 && (j < layer || R[k].keras_flat[g] < rank))
                idx++;
    }
    return idx;
}

int gt_gemma_param_keras_var(const gt_gemma_param_row *r, const gt_gemma_config *c, int64_t layer) {
    int v = 0;
    for (const gt_gemma_param_row *p = gt_gemma_param_rows; p < r; p++)
        v += p->per_layer == r->per_layer && !strcmp(p->keras, r->keras) && gt_gemma_param_present(p, c, layer);
    return r->per_layer ? v : 0;
}
