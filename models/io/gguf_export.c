#include "models/io/gguf_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma_fields.h"
#include "models/gemma_params.h"
#include "models/io/gemma4_gguf.h"
#include "models/io/gguf_writer.h"
#include "util/err.h"

_Static_assert(sizeof(gt_real) == sizeof(float), "GGUF export is built against the fp32 engine");

/* What llama.cpp's Gemma graphs assume and no metadata key can change. */
static int check_expressible(const gt_gemma_config *c, char *err, size_t errn) {
    if (c->generation == 4) return gt_gemma4_gguf_check(c, err, errn);
    const char *bad = c->generation < 1 || c->generation > 3 ? "generation (GGUF export: Gemma 1-4)"
                      : !c->norm_add_one                    ? "norm_add_one"
                      : fabs(gt_gemma_query_scale(c) * sqrt((double)c->head_dim) - 1) > 1e-12
                          ? "query scaling (llama.cpp uses head_dim^-1/2 but for the 27B models)"
                      : c->generation == 3 && (c->sliding_pattern != 6 || c->rope_local_base != 10000.0 ||
                                               c->rope_local_scale != 1.0 || !c->use_qk_norm)
                          ? "sliding pattern, local RoPE or q/k norm (llama.cpp's gemma3: pattern 6, base 10000)"
                      : c->generation == 2 && (c->sliding_pattern != 2 || c->rope_local_base != c->rope_global_base)
                          ? "sliding pattern or local RoPE base (llama.cpp's gemma2: pattern 2, one base)"
                      : c->generation != 2 && (c->attn_logit_softcap > 0 || c->final_logit_softcap > 0)
                          ? "logit soft-caps (llama.cpp applies them to gemma2 only)"
                          : NULL;
    return bad ? gt_errf(err, errn, "GGUF export: this model's %s cannot be expressed for llama.cpp", bad) : 0;
}

static const char *arch(int generation) {
    return generation == 1 ? "gemma" : generation == 2 ? "gemma2" : generation == 3 ? "gemma3" : "gemma4";
}

static int hparams(gt_ggufw *w, const gt_gemma_config *c, uint32_t type, const char *name) {
    const char *a = arch(c->generation);
    char k[96];
    uint32_t ftype = type == GT_GGML_F32 ? 0 : type == GT_GGML_F16 ? 1 : type == GT_GGML_Q8_0 ? 7 : 32;
    int rc = gt_ggufw_str(w, "general.architecture", a) || gt_ggufw_str(w, "general.type", "model") ||
             gt_ggufw_str(w, "general.name", name ? name : c->name) || gt_ggufw_u32(w, "general.quantization_version", 2) ||
             gt_ggufw_u32(w, "general.file_type", ftype);
    if (c->generation == 4) return rc || gt_gemma4_gguf_hparams(w, c);
    /* the config-field table's GGUF keys (models/gemma_fields.h), then what llama.cpp wants beside */
    size_t nf;
    const gt_gemma_field *f = gt_gemma_fields(&nf);
    for (size_t i = 0; i < nf && !rc; i++) {
        if (!f[i].gguf || !(f[i].gguf_gens & GT_G(c->generation))) continue;
        double v = gt_gemma_field_get(c, &f[i]);
        if (f[i].type == GT_FIELD_NUM && v == 0) continue;          /* a soft-cap of 0: none */
        if ((f[i].gguf_flags & GT_FF_POSITIVE) && v == 1.0) continue; /* a factor of 1: no scaling */
        snprintf(k, sizeof k, "%s.%s", a, f[i].gguf);
        rc = f[i].type == GT_FIELD_INT ? gt_ggufw_u32(w, k, (uint32_t)v) : gt_ggufw_f32(w, k, (float)v);
    }
    snprintf(k, sizeof k, "%s.attention.value_length", a);
    rc = rc || gt_ggufw_u32(w, k, (uint32_t)c->head_dim);
    if (c->rope_global_scale != 1.0) rc = rc || (snprintf(k, sizeof k, "%s.rope.scaling.type", a), gt_ggufw_str(w, k, "linear"));
    return rc;
}

/* llama.cpp's converter spells USER_DEFINED pieces with spaces where SentencePiece has U+2581
 * (tok_gguf.c reads them back) */
static char *gguf_spelling(const char *p, int type) {
    size_t n = strlen(p), k = 0;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (type == GT_PIECE_USER_DEFINED && !strncmp(p + i, "\xE2\x96\x81", 3)) s[k++] = ' ', i += 2;
        else s[k++] = p[i];
    }
    s[k] = 0;
    return s;
}

static int vocabulary(gt_ggufw *w, const gt_tokenizer *tok) {
    int32_t n = gt_tok_vocab_size(tok);
    char **pieces = calloc((size_t)n, sizeof *pieces);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    int rc = -1;
    if (pieces && scores && types) {
        rc = 0;
        for (int32_t i = 0; i < n && !rc; i++) {
            types[i] = gt_tok_piece_type(tok, i);
            scores[i] = gt_tok_piece_score(tok, i);
            rc = !(pieces[i] = gguf_spelling(gt_tok_piece(tok, i), types[i]));
        }
    }
    rc = rc || gt_ggufw_str(w, "tokenizer.ggml.model", "llama") || gt_ggufw_str(w, "tokenizer.ggml.pre", "default") ||
         gt_ggufw_str_array(w, "tokenizer.ggml.tokens", (const char *const *)pieces, (uint64_t)n) ||
         gt_ggufw_f32_array(w, "tokenizer.ggml.scores", scores, (uint64_t)n) ||
         gt_ggufw_i32_array(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    if (!rc && gt_tok_bos(tok) >= 0) rc = gt_ggufw_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)gt_tok_bos(tok));
    if (!rc && gt_tok_eos(tok) >= 0) rc = gt_ggufw_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)gt_tok_eos(tok));
    if (!rc && gt_tok_unk(tok) >= 0) rc = gt_ggufw_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)gt_tok_unk(tok));
    if (!rc && gt_tok_pad(tok) >= 0) rc = gt_ggufw_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)gt_tok_pad(tok));
    rc = rc || gt_ggufw_bool(w, "tokenizer.ggml.add_bos_token", true) ||
         gt_ggufw_bool(w, "tokenizer.ggml.add_sep_token", false) ||
         gt_ggufw_bool(w, "tokenizer.ggml.add_eos_token", false) ||
         gt_ggufw_bool(w, "tokenizer.ggml.add_space_prefix", false);
    for (int32_t i = 0; pieces && i < n; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return rc;
}

/* One parameter under its GGUF name: Gemma 1-3 norms as 1 + w, Gemma 4's own layouts (experts,
 * layer scalars); a buffer made for it goes to *owned, kept until the write. */
static int write_param(gt_ggufw *w, const gt_gemma *m, const gt_gemma_param *p, uint32_t type, float **owned,
                       const char *path, char *err, size_t errn) {
    char gname[128];
    if (gt_gemma_param_gguf_name(p->row, p->layer, gname, sizeof gname))
        return gt_errf(err, errn, "%s: %s has no GGUF name", path, p->name);
    const float *data = p->t->data;
    int ndim = p->t->ndim, rc = 0;
    int64_t shape[3] = {0};
    for (int k = 0; k < ndim; k++) shape[k] = p->t->shape[k];
    if (m->cfg.generation == 4) rc = gt_gemma4_gguf_layout(m, p, &data, owned, &ndim, shape);
    else if (p->row->gguf_add_one) { /* llama.cpp multiplies by the stored weight: 1 + w */
        if ((*owned = malloc((size_t)p->t->size * sizeof(float))))
            for (int64_t j = 0; j < p->t->size; j++) (*owned)[j] = 1.0f + p->t->data[j];
        data = *owned, rc = *owned ? 0 : -1;
    }
    if (rc) return rc > 0 ? 0 : gt_errf(err, errn, "%s: out of memory", path); /* 1: written with another */
    uint32_t tt = ndim < 2 ? GT_GGML_F32 : type == GT_GGML_Q8_0 && shape[ndim - 1] % 32 ? GT_GGML_F16 : type;
    return gt_ggufw_tensor(w, gname, data, ndim, shape, tt, err, errn);
}

int gt_gguf_export_model(const gt_gemma *m, const gt_tokenizer *tok, const char *path, uint32_t type,
                         const char *name, char *err, size_t errn) {
    const gt_gemma_config *c = &m->cfg;
    if (check_expressible(c, err, errn)) return -1;
    if (m->frozen_dtype != GT_FROZEN_FP32)
        return gt_errf(err, errn, "%s: the model is stored as %s: widen it first (gt_gemma_set_frozen_dtype)", path, gt_frozen_dtype_names[m->frozen_dtype]);
    if (gt_tok_vocab_size(tok) > c->vocab_size)
        return gt_errf(err, errn, "%s: the tokenizer has %d pieces, the model %lld rows", path, gt_tok_vocab_size(tok),
                       (long long)c->vocab_size);
    gt_ggufw *w = gt_ggufw_new();
    float **owned = calloc((size_t)m->n_params + 1, sizeof *owned); /* per tensor, + Gemma 4's rope_freqs */
    int rc = -1;
    if (!w || !owned || hparams(w, c, type, name) || vocabulary(w, tok)) {
        gt_errf(err, errn, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < m->n_params; i++)
        if (write_param(w, m, &m->params[i], type, &owned[i], path, err, errn)) goto done;
    if (c->generation == 4 && gt_gemma4_gguf_rope_freqs(w, c, &owned[m->n_params], err, errn)) goto done;
    rc = gt_ggufw_write(w, path, err, errn);
done:
    for (int i = 0; owned && i <= m->n_params; i++) free(owned[i]);
    free(owned);
    gt_ggufw_free(w);
    return rc;
}

int gt_gguf_export_lora(const gt_lora *l, const gt_gemma_config *c, const char *path, char *err, size_t errn) {
    if (check_expressible(c, err, errn)) return -1;
    gt_ggufw *w = gt_ggufw_new();
    int64_t cap = 2 * l->num_layers * GT_LORA_NTARGETS, n = 0;
    float **bufs = calloc((size_t)cap, sizeof *bufs);
    int rc = -1;
    const char *a = arch(c->generation);
    if (!w || !bufs || gt_ggufw_str(w, "general.architecture", a) || gt_ggufw_str(w, "general.type", "adapter") ||
        gt_ggufw_str(w, "adapter.type", "lora") || gt_ggufw_f32(w, "adapter.lora.alpha", 0.0f)) {
        gt_errf(err, errn, "%s: out of memory", path);
        goto done;
    }
    double s = l->alpha / (double)l->rank;
    for (int64_t i = 0; i < l->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            const gt_lora_adapter *ad = gt_lora_get(l, i, (gt_lora_target)t);
            if (!ad) continue;
            const gt_gemma_param_row *row = NULL;
            for (int k = 0; k < gt_gemma_n_param_rows && !row; k++)
                if (gt_gemma_param_rows[k].per_layer && gt_gemma_param_rows[k].lora == t) row = &gt_gemma_param_rows[k];
            char base[128], name[160];
            if (!row || gt_gemma_param_gguf_name(row, i, base, sizeof base)) {
                gt_errf(err, errn, "%s: adapter %s has no GGUF tensor", path, ad->name);
                goto done;
            }
            int64_t r = l->rank, G = ad->groups, R = G * r, in = ad->in, out = ad->out;
            float *A = malloc((size_t)(R * in) * sizeof *A), *B = malloc((size_t)(G * out * R) * sizeof *B);
            bufs[n++] = A, bufs[n++] = B;
            if (!A || !B) {
                gt_errf(err, errn, "%s: out of memory", path);
                goto done;
            }
            gt_lora_standard_ab(l, ad, s, A, B); /* the scale folded into B */
            int64_t sa[2] = {R, in}, sb[2] = {G * out, R};
            snprintf(name, sizeof name, "%s.lora_a", base);
            if (gt_ggufw_tensor(w, name, A, 2, sa, GT_GGML_F32, err, errn)) goto done;
            snprintf(name, sizeof name, "%s.lora_b", base);
            if (gt_ggufw_tensor(w, name, B, 2, sb, GT_GGML_F32, err, errn)) goto done;
        }
    rc = gt_ggufw_write(w, path, err, errn);
done:
    for (int64_t k = 0; bufs && k < n; k++) free(bufs[k]);
    free(bufs);
    gt_ggufw_free(w);
    return rc;
}
