#include "models/io/gemma4_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma_fields.h"
#include "models/gemma_params.h"
#include "util/err.h"

#define A "gemma4."

static int get_int(const gt_gguf *g, const char *key, bool required, int64_t *out, char *err, size_t errn) {
    if (gt_gguf_find_key(g, key) < 0) return required ? gt_errf(err, errn, "metadata '%s' is missing", key) : 1;
    return gt_gguf_get_int(g, key, out, err, errn);
}

static int get_num(const gt_gguf *g, const char *key, double *out, char *err, size_t errn) {
    if (gt_gguf_find_key(g, key) < 0) return 1;
    return gt_gguf_get_float(g, key, out, err, errn);
}

/* A per-layer key: one value for every layer, or an array of one per layer. */
static int per_layer(const gt_gguf *g, const char *key, int64_t L, int32_t *out, char *err, size_t errn) {
    gt_gguf_vtype t;
    uint64_t n;
    if (gt_gguf_find_key(g, key) < 0) return gt_errf(err, errn, "metadata '%s' is missing", key);
    if (gt_gguf_get_array(g, key, &t, &n, err, errn) == 0) {
        int32_t *v;
        if ((int64_t)n != L) return gt_errf(err, errn, "metadata '%s': %llu values for %lld layers", key, (unsigned long long)n, (long long)L);
        if (gt_gguf_get_i32s(g, key, &v, &n, err, errn)) return -1;
        memcpy(out, v, sizeof(int32_t) * (size_t)L);
        free(v);
        return 0;
    }
    int64_t x;
    if (gt_gguf_get_int(g, key, &x, err, errn)) return -1;
    for (int64_t i = 0; i < L; i++) out[i] = (int32_t)x;
    return 0;
}

/* The layer pattern from the per-layer local flags: P = first global + 1, every layer checked. */
static int pattern(const int32_t *local, int64_t L, gt_gemma_config *c, char *err, size_t errn) {
    int64_t first = -1;
    for (int64_t i = 0; i < L && first < 0; i++)
        if (!local[i]) first = i;
    c->sliding_pattern = first < 0 ? 0 : (int)(first + 1);
    if (first < 0) return gt_errf(err, errn, "metadata '" A "attention.sliding_window_pattern': every layer local (not supported)");
    for (int64_t i = 0; i < L; i++)
        if ((local[i] != 0) != gt_gemma_layer_is_local(c, i))
            return gt_errf(err, errn, "metadata '" A "attention.sliding_window_pattern': layer %lld breaks the pattern of "
                           "one global layer every %d (not supported)", (long long)i, c->sliding_pattern);
    if (c->sliding_pattern == 1) c->sliding_window = 0; /* all global: no local layers */
    return 0;
}

/* Per-layer MLP widths and kv heads into the config's uniform values + Gemma 4 flags. */
static int widths(const gt_gguf *g, const int32_t *ff, const int32_t *kv, int64_t L, gt_gemma_config *c,
                  char *err, size_t errn) {
    int64_t S = c->num_kv_shared_layers, lg = -1, ll = -1;
    c->intermediate_dim = ff[0];
    c->double_wide_mlp = S > 0 && ff[L - 1] == 2 * ff[0];
    for (int64_t i = 0; i < L; i++) {
        int64_t want = (i >= L - S && c->double_wide_mlp) ? 2 * ff[0] : ff[0];
        if (ff[i] != want)
            return gt_errf(err, errn, "metadata '" A "feed_forward_length': layer %lld has %d, expected %lld", (long long)i, ff[i],
                           (long long)want);
        if (gt_gemma_layer_is_local(c, i)) ll = ll < 0 ? i : ll;
        else lg = lg < 0 ? i : lg;
    }
    c->num_kv_heads = kv[ll >= 0 ? ll : lg];
    char n[64];
    snprintf(n, sizeof n, "blk.%lld.attn_v.weight", (long long)lg);
    if (lg >= 0 && !gt_gguf_find_tensor(g, n)) c->num_global_kv_heads = kv[lg]; /* k = v */
    for (int64_t i = 0; i < L; i++)
        if (kv[i] != gt_gemma_layer_kv_heads(c, i))
            return gt_errf(err, errn, "metadata '" A "attention.head_count_kv': layer %lld has %d, expected %lld (a global "
                           "kv head count of its own needs k = v, no attn_v)", (long long)i, kv[i],
                           (long long)gt_gemma_layer_kv_heads(c, i));
    return 0;
}

/* Rotated share of global heads from rope_freqs.weight (absent: all dims rotate). */
static int partial_rope(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn) {
    const gt_gguf_tensor *t = gt_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return 0;
    int64_t hg = c->global_head_dim ? c->global_head_dim : c->head_dim;
    if (t->ndim != 1 || t->dims[0] != hg / 2)
        return gt_errf(err, errn, "tensor 'rope_freqs.weight': %lld values, expected %lld (key_length / 2)", (long long)t->dims[0],
                       (long long)(hg / 2));
    float *f = malloc(sizeof(float) * (size_t)t->dims[0]);
    if (!f) return gt_errf(err, errn, "out of memory");
    if (gt_gguf_dequant(g, t, f, err, errn)) return free(f), -1;
    int64_t rot = 0, bad = -1;
    while (rot < t->dims[0] && f[rot] == 1.0f) rot++;
    for (int64_t i = rot; i < t->dims[0] && bad < 0; i++)
        if (f[i] < 1e29f) bad = i;
    double v = bad >= 0 ? (double)f[bad] : 0;
    free(f);
    if (bad >= 0)
        return gt_errf(err, errn, "tensor 'rope_freqs.weight': value %lld is %g (only 1, then 1e30, is supported)",
                       (long long)bad, v);
    c->rope_global_partial = (double)(2 * rot) / (double)hg;
    return 0;
}

static int scalars(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn) {
    int64_t hg = 0, v;
    int rc;
    if (get_int(g, A "block_count", true, &c->num_layers, err, errn) ||
        get_int(g, A "embedding_length", true, &c->hidden_dim, err, errn) ||
        get_int(g, A "attention.head_count", true, &c->num_query_heads, err, errn) ||
        get_int(g, A "attention.key_length", true, &hg, err, errn))
        return -1;
    if ((rc = get_int(g, A "attention.key_length_swa", false, &c->head_dim, err, errn)) < 0) return -1;
    if (rc) c->head_dim = hg;
    c->global_head_dim = hg != c->head_dim ? hg : 0;
    struct { const char *k; int64_t *dst; } ints[] = {
        {A "context_length", &c->max_seq_len}, {A "attention.sliding_window", &c->sliding_window},
        {A "attention.shared_kv_layers", &c->num_kv_shared_layers},
        {A "embedding_length_per_layer_input", &c->per_layer_input_dim}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if ((rc = get_int(g, ints[i].k, false, &v, err, errn)) < 0) return -1;
        if (!rc) *ints[i].dst = v;
    }
    struct { const char *k; double *dst; } nums[] = {
        {A "attention.layer_norm_rms_epsilon", &c->rms_eps}, {A "rope.freq_base", &c->rope_global_base},
        {A "rope.freq_base_swa", &c->rope_local_base}, {A "final_logit_softcapping", &c->final_logit_softcap},
        {A "rope.scaling.factor", &c->rope_global_scale}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        double x;
        if ((rc = get_num(g, nums[i].k, &x, err, errn)) < 0) return -1;
        if (!rc) *nums[i].dst = x;
    }
    if (c->num_layers < 1 || c->num_layers > 4096) return gt_errf(err, errn, "metadata '" A "block_count': %lld layers", (long long)c->num_layers);
    return 0;
}

/* MoE when layer 0 has a router: the field table's expert keys (required then), checked against
 * layer 0's expert tensors so that metadata alone cannot size the model. */
static int moe_config(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn) {
    if (!gt_gguf_find_tensor(g, "blk.0.ffn_gate_inp.weight")) return 0;
    c->moe = true;
    size_t nf;
    const gt_gemma_field *f = gt_gemma_fields(&nf);
    char k[96];
    for (size_t i = 0; i < nf; i++) {
        if (!f[i].gguf || !(f[i].gguf_gens & GT_G(4))) continue;
        int64_t v;
        snprintf(k, sizeof k, A "%s", f[i].gguf);
        if (get_int(g, k, true, &v, err, errn)) return -1;
        if (v < 1 || v > (1 << 20)) return gt_errf(err, errn, "metadata '%s': %lld is out of range", k, (long long)v);
        gt_gemma_field_set(c, &f[i], (double)v);
    }
    const gt_gguf_tensor *t = gt_gguf_find_tensor(g, "blk.0.ffn_gate_up_exps.weight");
    int64_t F = 2 * c->expert_dim;
    if (!t) /* llama.cpp also takes separate ffn_gate_exps / ffn_up_exps, which its converter no longer writes */
        return gt_errf(err, errn, "tensor 'blk.0.ffn_gate_up_exps.weight' is missing (the model has a router; "
                       "separate gate/up expert banks are not read)");
    if (t->ndim != 3 || t->dims[0] != c->hidden_dim || t->dims[1] != F || t->dims[2] != c->num_experts)
        return gt_errf(err, errn, "tensor '%s': shape [%lld, %lld, %lld] (innermost first), expected [%lld, %lld, %lld] "
                       "from embedding_length, expert_feed_forward_length and expert_count", t->name,
                       (long long)t->dims[0], (long long)(t->ndim > 1 ? t->dims[1] : 0),
                       (long long)(t->ndim > 2 ? t->dims[2] : 0), (long long)c->hidden_dim, (long long)F,
                       (long long)c->num_experts);
    return 0;
}

int gt_gemma4_config_from_gguf(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn) {
    gt_gemma_config_defaults(c, 4);
    snprintf(c->name, sizeof c->name, "gguf:gemma4");
    if (scalars(g, c, err, errn)) return -1;
    int64_t L = c->num_layers;
    int32_t *local = malloc(sizeof(int32_t) * (size_t)L * 3), *ff = local + L, *kv = ff + L;
    if (!local) return gt_errf(err, errn, "out of memory");
    int rc = per_layer(g, A "attention.sliding_window_pattern", L, local, err, errn) || pattern(local, L, c, err, errn) ||
             per_layer(g, A "feed_forward_length", L, ff, err, errn) ||
             per_layer(g, A "attention.head_count_kv", L, kv, err, errn) || widths(g, ff, kv, L, c, err, errn) ||
             partial_rope(g, c, err, errn);
    free(local);
    if (rc) return -1;
    if (moe_config(g, c, err, errn)) return -1;
    const gt_gguf_tensor *emb = gt_gguf_find_tensor(g, "token_embd.weight"), *ple = gt_gguf_find_tensor(g, "per_layer_token_embd.weight");
    if (!emb || emb->ndim != 2) return gt_errf(err, errn, "tensor 'token_embd.weight' is missing or not 2-D");
    c->vocab_size = emb->dims[1];
    if (c->per_layer_input_dim > 0) {
        if (!ple || ple->ndim != 2) return gt_errf(err, errn, "tensor 'per_layer_token_embd.weight' is missing or not 2-D");
        c->per_layer_vocab_size = ple->dims[1] != c->vocab_size ? ple->dims[1] : 0;
    }
    err[0] = 0;
    return gt_gemma_config_validate(c, err, errn);
}

/* ---- MoE expert tensors ---- */

/* Tensor `name` must have GGUF dims {a, b, e} (innermost first). */
static const gt_gguf_tensor *dims3(const gt_gguf *g, const char *name, int64_t a, int64_t b, int64_t e, char *err,
                                   size_t errn) {
    const gt_gguf_tensor *t = gt_gguf_find_tensor(g, name);
    if (!t) return gt_errf(err, errn, "tensor '%s' is missing", name), NULL;
    if (t->ndim != 3 || t->dims[0] != a || t->dims[1] != b || t->dims[2] != e)
        return gt_errf(err, errn, "tensor '%s': shape [%lld, %lld, %lld] (innermost first), expected [%lld, %lld, %lld]",
                       name, (long long)t->dims[0], (long long)(t->ndim > 1 ? t->dims[1] : 0),
                       (long long)(t->ndim > 2 ? t->dims[2] : 0), (long long)a, (long long)b, (long long)e), NULL;
    return t;
}

int gt_gemma4_gguf_load_expert(const gt_gguf *g, const gt_gemma *m, int64_t layer, gt_tensor *dst, char *err,
                               size_t errn) {
    const gt_gemma_layer *ly = &m->layers[layer];
    int64_t E = m->cfg.num_experts, F = m->cfg.expert_dim, D = m->cfg.hidden_dim;
    char n[96];
    const gt_gguf_tensor *t;
    if (dst == ly->expert_down) { /* [E, D, F]: our [E*D, F] as it is */
        snprintf(n, sizeof n, "blk.%lld.ffn_down_exps.weight", (long long)layer);
        return (t = dims3(g, n, F, D, E, err, errn)) ? gt_gguf_dequant(g, t, dst->data, err, errn) : -1;
    }
    bool up = dst == ly->expert_up;
    snprintf(n, sizeof n, "blk.%lld.ffn_gate_up_exps.weight", (long long)layer);
    if (!(t = dims3(g, n, D, 2 * F, E, err, errn))) return -1;
    float *all = malloc(sizeof(float) * (size_t)(E * 2 * F * D));
    if (!all) return gt_errf(err, errn, "%s: out of memory", n);
    int rc = gt_gguf_dequant(g, t, all, err, errn);
    for (int64_t e = 0; e < E && !rc; e++) /* per expert: F gate rows, then F up rows */
        memcpy(dst->data + e * F * D, all + (e * 2 + up) * F * D, sizeof(float) * (size_t)(F * D));
    free(all);
    return rc;
}

/* ---- export ---- */

int gt_gemma4_gguf_check(const gt_gemma_config *c, char *err, size_t errn) {
    int64_t L = c->num_layers, S = c->num_kv_shared_layers;
    bool local_shared = false;
    for (int64_t i = L - S; i < L; i++) local_shared |= gt_gemma_layer_is_local(c, i);
    const char *bad = c->attn_logit_softcap > 0 ? "attention soft-cap (llama.cpp's gemma4 has none)"
                      : c->rope_global_scale != 1.0 || c->rope_local_scale != 1.0
                          ? "RoPE scaling factors (llama.cpp's gemma4 reads none per layer type)"
                      : c->per_layer_input_dim > 0 && c->per_layer_vocab_size > 0 && c->per_layer_vocab_size != c->vocab_size
                          ? "per_layer_vocab_size (llama.cpp's PLE table has the model's vocabulary)"
                      : S > 0 && (L - S < 1 || gt_gemma_layer_is_local(c, L - S - 1) ||
                                  (local_shared && (L - S < 2 || !gt_gemma_layer_is_local(c, L - S - 2))))
                          ? "num_kv_shared_layers (llama.cpp shares the k, v of layers L-S-1 (global) and L-S-2 (local))"
                          : NULL;
    return bad ? gt_errf(err, errn, "GGUF export: this Gemma 4 model's %s cannot be expressed for llama.cpp", bad) : 0;
}

/* A per-layer array when layers differ, else one value (as the converter writes them). */
static int per_layer_u32(gt_ggufw *w, const char *key, const gt_gemma_config *c, int64_t (*fn)(const gt_gemma_config *, int64_t)) {
    int64_t L = c->num_layers;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)L);
    if (!v) return -1;
    bool same = true;
    int32_t first = (int32_t)fn(c, 0);
    for (int64_t i = 0; i < L; i++) same &= (v[i] = (int32_t)fn(c, i)) == first;
    int rc = same ? gt_ggufw_u32(w, key, (uint32_t)first) : gt_ggufw_i32_array(w, key, v, (uint64_t)L);
    free(v);
    return rc;
}

static int64_t local_flag(const gt_gemma_config *c, int64_t i) { return gt_gemma_layer_is_local(c, i); }

static int sliding_flags(gt_ggufw *w, const gt_gemma_config *c) {
    int64_t L = c->num_layers;
    bool *b = malloc(sizeof(bool) * (size_t)L);
    if (!b) return -1;
    for (int64_t i = 0; i < L; i++) b[i] = local_flag(c, i);
    int rc = gt_ggufw_bool_array(w, A "attention.sliding_window_pattern", b, (uint64_t)L);
    free(b);
    return rc;
}

int gt_gemma4_gguf_hparams(gt_ggufw *w, const gt_gemma_config *c) {
    int64_t hg = c->global_head_dim ? c->global_head_dim : c->head_dim;
    int rc = gt_ggufw_u32(w, A "context_length", (uint32_t)c->max_seq_len) ||
             gt_ggufw_u32(w, A "embedding_length", (uint32_t)c->hidden_dim) ||
             gt_ggufw_u32(w, A "block_count", (uint32_t)c->num_layers) ||
             per_layer_u32(w, A "feed_forward_length", c, gt_gemma_layer_ffw_dim) ||
             gt_ggufw_u32(w, A "attention.head_count", (uint32_t)c->num_query_heads) ||
             per_layer_u32(w, A "attention.head_count_kv", c, gt_gemma_layer_kv_heads) ||
             gt_ggufw_f32(w, A "attention.layer_norm_rms_epsilon", (float)c->rms_eps) ||
             gt_ggufw_u32(w, A "attention.key_length", (uint32_t)hg) ||
             gt_ggufw_u32(w, A "attention.value_length", (uint32_t)hg) ||
             gt_ggufw_u32(w, A "attention.key_length_swa", (uint32_t)c->head_dim) ||
             gt_ggufw_u32(w, A "attention.value_length_swa", (uint32_t)c->head_dim) ||
             gt_ggufw_u32(w, A "rope.dimension_count", (uint32_t)hg) || /* rope_freqs picks the rotated pairs */
             gt_ggufw_u32(w, A "rope.dimension_count_swa", (uint32_t)c->head_dim) ||
             gt_ggufw_f32(w, A "rope.freq_base", (float)c->rope_global_base) ||
             gt_ggufw_f32(w, A "rope.freq_base_swa", (float)c->rope_local_base) ||
             gt_ggufw_u32(w, A "attention.sliding_window", (uint32_t)c->sliding_window) || sliding_flags(w, c) ||
             gt_ggufw_u32(w, A "attention.shared_kv_layers", (uint32_t)c->num_kv_shared_layers) ||
             gt_ggufw_u32(w, A "embedding_length_per_layer_input", (uint32_t)c->per_layer_input_dim);
    if (!rc && c->final_logit_softcap > 0) rc = gt_ggufw_f32(w, A "final_logit_softcapping", (float)c->final_logit_softcap);
    size_t nf;
    const gt_gemma_field *f = gt_gemma_fields(&nf);
    char k[96];
    for (size_t i = 0; i < nf && !rc && c->moe; i++) /* the expert keys: MoE models only (llama.cpp checks) */
        if (f[i].gguf && (f[i].gguf_gens & GT_G(4)))
            snprintf(k, sizeof k, A "%s", f[i].gguf), rc = gt_ggufw_u32(w, k, (uint32_t)gt_gemma_field_get(c, &f[i]));
    return rc;
}

int gt_gemma4_gguf_layout(const gt_gemma *m, const gt_gemma_param *p, const float **data, float **owned, int *ndim,
                          int64_t shape[3]) {
    const gt_gemma_layer *ly = p->layer >= 0 ? &m->layers[p->layer] : NULL;
    int64_t E = m->cfg.num_experts, F = m->cfg.expert_dim, D = m->cfg.hidden_dim;
    *data = p->t->data, *owned = NULL, *ndim = p->t->ndim;
    for (int i = 0; i < p->t->ndim; i++) shape[i] = p->t->shape[i];
    if (p->t->ndim == 0) *ndim = 1, shape[0] = 1; /* layer scalar: [1] */
    if (!ly || p->row->keras_layout != GT_KERAS_EXPERTS) return 0;
    if (p->t == ly->expert_up) return 1;
    *ndim = 3, shape[0] = E;
    if (p->t == ly->expert_down) return shape[1] = D, shape[2] = F, 0;
    shape[1] = 2 * F, shape[2] = D; /* gate_up: per expert F gate rows, then F up rows */
    float *gu = malloc(sizeof(float) * (size_t)(E * 2 * F * D));
    if (!gu) return -1;
    for (int64_t e = 0; e < E; e++) {
        memcpy(gu + e * 2 * F * D, ly->expert_gate->data + e * F * D, sizeof(float) * (size_t)(F * D));
        memcpy(gu + (e * 2 + 1) * F * D, ly->expert_up->data + e * F * D, sizeof(float) * (size_t)(F * D));
    }
    *data = *owned = gu;
    return 0;
}

int gt_gemma4_gguf_rope_freqs(gt_ggufw *w, const gt_gemma_config *c, float **owned, char *err, size_t errn) {
    int64_t hg = c->global_head_dim ? c->global_head_dim : c->head_dim, n = hg / 2;
    int64_t rot = gt_gemma_layer_rotary_dims(c, c->sliding_pattern > 0 ? c->sliding_pattern - 1 : 0) / 2;
    float *f = *owned = malloc(sizeof(float) * (size_t)n);
    if (!f) return gt_errf(err, errn, "out of memory");
    for (int64_t i = 0; i < n; i++) f[i] = i < rot ? 1.0f : 1e30f; /* 1e30: that pair does not turn */
    return gt_ggufw_tensor(w, "rope_freqs.weight", f, 1, &n, GT_GGML_F32, err, errn);
}
