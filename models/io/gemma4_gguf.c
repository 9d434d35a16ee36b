#include "models/io/gemma4_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
