#include "models/io/gemma_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "autograd/qdot.h"
#include "autograd/quant.h"
#include "models/gemma_fields.h"
#include "models/gemma_params.h"
#include "models/io/gemma4_gguf.h"
#include "util/err.h"

/* The table's GGUF keys ("<arch>.<key>"): required ones must be present, optional ones are taken
 * when present (GT_FF_POSITIVE: when > 0 too). */
static int read_fields(const gt_gguf *g, const char *arch, int gen, gt_gemma_config *c, char *err, size_t errn) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    char key[96];
    for (size_t i = 0; i < n; i++) {
        const gt_gemma_field *r = &f[i];
        if (!r->gguf || !(r->gguf_gens & GT_G(gen))) continue;
        snprintf(key, sizeof key, "%s.%s", arch, r->gguf);
        int64_t v;
        double x;
        int rc = r->type == GT_FIELD_INT ? gt_gguf_get_int(g, key, &v, err, errn) : gt_gguf_get_float(g, key, &x, err, errn);
        if (rc && (r->gguf_flags & GT_FF_REQUIRED)) return -1;
        if (rc) continue;
        if (r->type == GT_FIELD_INT) x = (double)v;
        if (!(r->gguf_flags & GT_FF_POSITIVE) || x > 0) gt_gemma_field_set(c, r, x);
    }
    return 0;
}

int gt_gemma_config_from_gguf(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn) {
    const char *arch;
    uint64_t alen;
    if (gt_gguf_get_str(g, "general.architecture", &arch, &alen, err, errn)) return -1;
    char a[32];
    snprintf(a, sizeof a, "%.*s", (int)(alen < 31 ? alen : 31), arch);
    int gen = !strcmp(a, "gemma") ? 1 : !strcmp(a, "gemma2") ? 2 : !strcmp(a, "gemma3") ? 3 : 0;
    if (!strcmp(a, "gemma4")) return gt_gemma4_config_from_gguf(g, c, err, errn);
    if (!gen)
        return snprintf(err, errn, "general.architecture '%s' is not a supported Gemma (gemma, gemma2, gemma3, gemma4)", a), -1;
    gt_gemma_config_defaults(c, gen);
    snprintf(c->name, sizeof c->name, "gguf:%s", a);
    c->head_dim = -1; /* not given */
    if (read_fields(g, a, gen, c, err, errn)) return -1;
    /* no key_length: hidden / heads (0 is refused by the validation below) */
    if (c->head_dim < 0) c->head_dim = c->num_query_heads > 0 ? c->hidden_dim / c->num_query_heads : 0;
    if (gen < 3) c->rope_local_base = c->rope_global_base; /* one rope.freq_base for all layers */
    const gt_gguf_tensor *emb = gt_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2) return snprintf(err, errn, "tensor 'token_embd.weight' is missing or not 2-D"), -1;
    c->vocab_size = emb->dims[1];
    err[0] = 0;
    return gt_gemma_config_validate(c, err, errn);
}

/* GGUF tensor `name`, checked against dst's row-major shape (GGUF dims are innermost first:
 * reversed, they must equal it); NULL with a message naming both. */
static const gt_gguf_tensor *find_fitting(const gt_gguf *g, const char *name, const gt_tensor *dst, char *err,
                                          size_t errn) {
    const gt_gguf_tensor *t = gt_gguf_find_tensor(g, name);
    if (!t) return snprintf(err, errn, "tensor '%s' is missing (needed for %s)", name, dst->name), NULL;
    bool ok = t->ndim == dst->ndim;
    for (int i = 0; ok && i < t->ndim; i++) ok = t->dims[t->ndim - 1 - i] == dst->shape[i];
    if (dst->ndim == 0) ok = t->n_elements == 1; /* a scalar is stored as [1] */
    if (!ok) {
        char want[64];
        return snprintf(err, errn, "tensor '%s': shape [%lld%s%lld] (innermost first), expected %s for %s",
                        name, (long long)t->dims[0], t->ndim > 1 ? ", " : "",
                        (long long)(t->ndim > 1 ? t->dims[1] : 0),
                        gt_shape_str(dst, want, sizeof want), dst->name), NULL;
    }
    return t;
}

/* This tensor's file pages are not read again: reclaim them, so the load's peak is the weights
 * rather than weights plus file. PAGEOUT never changes contents (a caller's buffer from
 * gt_gguf_open_buffer stays intact); best effort, old kernels ignore it. */
static void page_out(const gt_gguf_tensor *t) {
#ifdef MADV_PAGEOUT
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data, b = a + t->n_bytes;
    if (pg > 0) {
        a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
        b &= ~((uintptr_t)pg - 1);
        if (b > a) madvise((void *)a, b - a, MADV_PAGEOUT);
    }
#else
    (void)t;
#endif
}

/* Dequantise GGUF tensor `name` into dst (expected row-major shape rows x cols; 1-D: cols). */
static int load(const gt_gguf *g, const char *name, gt_tensor *dst, bool norm, char *err, size_t errn) {
    const gt_gguf_tensor *t = find_fitting(g, name, dst, err, errn);
    if (!t) return -1;
    if (gt_gguf_dequant(g, t, dst->data, err, errn)) return -1;
    page_out(t);
    if (norm) /* llama.cpp stores RMSNorm weights as 1 + w */
        for (int64_t i = 0; i < dst->size; i++) dst->data[i] -= 1.0f;
    return 0;
}

/* GGUF matrix `name` into a stored (bf16 / q8_0 / q4_k) matrix dst of m: blocks of the type dst
 * keeps (Q8_0; under q4_k also Q4_K, Q6_K, Q5_0) copied as they are; any other type dequantised
 * a slice of rows at a time into the model's staging buffer and rounded or quantised from there,
 * so no fp32 copy of the tensor is ever whole. */
static int load_stored(const gt_gguf *g, const char *name, gt_gemma *m, gt_tensor *dst, char *err, size_t errn) {
    const gt_gguf_tensor *t = find_fitting(g, name, dst, err, errn);
    if (!t) return -1;
    enum { GGML_Q5_0 = 6, GGML_Q8_0 = 8 };
    int64_t rows = dst->shape[0], cols = dst->shape[1];
    uint32_t kept = gt_wfmt_qtype(m->mats[dst - m->tensors].fmt);
    if (kept && t->type == kept && (int64_t)t->n_bytes == gt_qt_bytes(kept, dst->size)) {
        gt_gemma_store_blocks(m, dst, kept, t->data);
        page_out(t);
        return 0;
    }
    if (t->type == GGML_Q5_0 && m->frozen_dtype == GT_FROZEN_Q8_0 && (int64_t)t->n_bytes == dst->size / 32 * 22) {
        uint8_t *q8 = malloc((size_t)gt_q8_bytes(dst->size)); /* exact: Q5_0 values are Q8_0 values */
        if (!q8) return snprintf(err, errn, "%s: out of memory", name), -1;
        gt_qdot_q5_0_to_q8_0(t->data, q8, dst->size / 32);
        gt_gemma_store_q8(m, dst, q8);
        free(q8);
        page_out(t);
        return 0;
    }
    /* GGUF rows are whole blocks of their type, so a slice of rows is a tensor of its own */
    uint64_t row_bytes = t->n_bytes / (uint64_t)rows;
    int64_t rb = m->mats[dst - m->tensors].stage_n / cols;
    for (int64_t r0 = 0; r0 < rows; r0 += rb) {
        int64_t nr = rows - r0 < rb ? rows - r0 : rb;
        gt_gguf_tensor part = *t;
        part.dims[1] = nr;
        part.n_elements = nr * cols;
        part.n_bytes = (uint64_t)nr * row_bytes;
        part.data = t->data + (uint64_t)r0 * row_bytes;
        if (gt_gguf_dequant(g, &part, m->stage, err, errn)) return -1;
        if (gt_gemma_store_rows(m, dst, r0, nr, m->stage))
            return snprintf(err, errn, "tensor '%s': cannot store %s blocks as %s", name,
                            gt_qt_name(t->type), gt_qt_name(kept)), -1;
    }
    page_out(t);
    return 0;
}

/* The tensors that size each layer, checked before the model is allocated: metadata alone could
 * ask for any amount of memory, while tensors present in the file bound the model by its size. */
static int check_sizes(const gt_gguf *g, const gt_gemma_config *c, char *err, size_t errn) {
    const gt_gguf_tensor *emb = gt_gguf_find_tensor(g, "token_embd.weight");
    if (emb->dims[0] != c->hidden_dim)
        return snprintf(err, errn, "tensor 'token_embd.weight': width %lld, expected embedding_length %lld",
                        (long long)emb->dims[0], (long long)c->hidden_dim), -1;
    if (c->num_query_heads > INT64_MAX / c->head_dim)
        return snprintf(err, errn, "attention.head_count x key_length overflows"), -1;
    struct { const char *suffix; int64_t rows; const char *what; } need[] = {
        {"attn_q", 0, "head_count x key_length"},
        {"ffn_gate", 0, "feed_forward_length"},
    };
    char n[96];
    for (int64_t i = 0; i < c->num_layers; i++)
        for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) {
            /* per layer: Gemma 4's global layers and kv-shared layers differ */
            need[k].rows = k ? gt_gemma_layer_ffw_dim(c, i) : c->num_query_heads * gt_gemma_layer_head_dim(c, i);
            snprintf(n, sizeof n, "blk.%lld.%s.weight", (long long)i, need[k].suffix);
            const gt_gguf_tensor *t = gt_gguf_find_tensor(g, n);
            if (!t) return snprintf(err, errn, "tensor '%s' is missing (block_count %lld)", n, (long long)c->num_layers), -1;
            if (t->ndim != 2 || t->dims[0] != c->hidden_dim || t->dims[1] != need[k].rows)
                return snprintf(err, errn, "tensor '%s': shape [%lld, %lld] (innermost first), expected [%lld, %lld] "
                                "from embedding_length and %s", n, (long long)t->dims[0],
                                (long long)(t->ndim > 1 ? t->dims[1] : 0), (long long)c->hidden_dim,
                                (long long)need[k].rows, need[k].what), -1;
        }
    return 0;
}

/* q4_k: a matrix keeps its GGUF block type where that is one the ops decode */
static uint32_t gguf_qtype(const gt_gemma *m, int p, void *arg) {
    char n[96];
    if (gt_gemma_param_gguf_name(m->params[p].row, m->params[p].layer, n, sizeof n)) return 0;
    const gt_gguf_tensor *t = gt_gguf_find_tensor(arg, n);
    return t && gt_qt_block(t->type) && (int64_t)t->n_bytes == gt_qt_bytes(t->type, m->params[p].t->size) ? t->type : 0;
}

static int from_gguf(const gt_gguf *g, bool trainable, gt_frozen_dtype dt, gt_gemma **out, char *err,
                     size_t errn) {
    *out = NULL;
    gt_gemma_config c;
    if (gt_gemma_config_from_gguf(g, &c, err, errn)) return -1;
    if (check_sizes(g, &c, err, errn)) return -1;
    gt_gemma *m;
    if (dt == GT_FROZEN_FP32 ? gt_gemma_create(&c, trainable, &m, err, errn)
                             : gt_gemma_create_frozen_as(&c, dt, gguf_qtype, (void *)g, &m, err, errn))
        return -1;
    char n[96];
    int rc = 0;
    for (int k = 0; k < m->n_params && !rc; k++) {
        const gt_gemma_param *p = &m->params[k];
        if (gt_gemma_param_gguf_name(p->row, p->layer, n, sizeof n))
            rc = gt_errf(err, errn, "%s has no GGUF name", p->name);
        else if (p->row->keras_layout == GT_KERAS_EXPERTS) /* 3-D banks, gate and up fused */
            rc = gt_gemma4_gguf_load_expert(g, m, p->layer, p->t, err, errn);
        else if (p->t->data)
            rc = load(g, n, p->t, p->row->gguf_add_one && c.generation <= 3, err, errn);
        else
            rc = load_stored(g, n, m, p->t, err, errn);
    }
    if (rc) {
        gt_gemma_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int gt_gemma_from_gguf(const gt_gguf *g, bool trainable, gt_gemma **out, char *err, size_t errn) {
    return from_gguf(g, trainable, GT_FROZEN_FP32, out, err, errn);
}

int gt_gemma_from_gguf_frozen(const gt_gguf *g, gt_frozen_dtype dt, gt_gemma **out, char *err, size_t errn) {
    return from_gguf(g, false, dt, out, err, errn);
}
