#include "models/gemma.h"

#include <math.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/normal.h"
#include "autograd/qdot.h"
#include "autograd/quant.h"
#include "models/gemma_params.h"
#include "util/hugepage.h"

/* ---------------------------------------------------------------- parameter table */

/* Parameters in the table's order (gemma_params.h): one walk counts them, the next places them. */
typedef struct {
    gt_gemma *m;
    bool trainable;
    bool no_mats; /* matrices get no fp32 values (stored another way: gt_gemma_create_frozen) */
    int n;
    int64_t total, fp32; /* all values; those in m->data */
} create_ctx;

static int count_param(const gt_gemma_param_row *r, int64_t layer, void *p) {
    create_ctx *x = p;
    int64_t shape[2];
    int nd = gt_gemma_param_shape(r, &x->m->cfg, layer, shape);
    x->total += gt_shape_size(nd, shape);
    if (!(x->no_mats && nd == 2)) x->fp32 += gt_shape_size(nd, shape);
    x->n++;
    return 0;
}

static int place_param(const gt_gemma_param_row *r, int64_t layer, void *p) {
    create_ctx *x = p;
    gt_gemma *m = x->m;
    int64_t shape[2];
    int nd = gt_gemma_param_shape(r, &m->cfg, layer, shape);
    gt_tensor *t = &m->tensors[x->n];
    gt_gemma_param *e = &m->params[x->n++];
    bool train = x->trainable && !r->frozen, none = x->no_mats && nd == 2;
    gt_tensor_wrap(t, none ? NULL : m->data + x->fp32, train ? m->grad + x->fp32 : NULL, nd, shape, train);
    gt_gemma_param_name(r, layer, e->name, sizeof e->name);
    gt_tensor_set_name(t, e->name);
    e->t = t;
    e->row = r;
    e->layer = layer;
    char *base = r->per_layer ? (char *)&m->layers[layer] : (char *)m;
    *(gt_tensor **)(base + r->slot) = t;
    x->total += t->size;
    if (!none) x->fp32 += t->size;
    return 0;
}

/* The table and the fp32 values (all, or only the vectors when no_mats). */
static int create(const gt_gemma_config *cfg, bool trainable, bool no_mats, gt_gemma **out, char *err,
                  size_t errn) {
    *out = NULL;
    if (gt_gemma_config_validate(cfg, err, errn) != 0) return -1;
    gt_gemma *m = calloc(1, sizeof *m);
    if (!m) return snprintf(err, errn, "out of memory"), -1;
    m->cfg = *cfg;
    create_ctx x = {m, trainable, no_mats, 0, 0, 0};
    gt_gemma_param_walk(cfg, count_param, &x);
    int64_t total = x.total, n32 = x.fp32 ? x.fp32 : 1;
    m->n_values = total;
    m->n_params = x.n;
    m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
    m->params = calloc((size_t)x.n, sizeof *m->params);
    m->tensors = calloc((size_t)x.n, sizeof *m->tensors);
    m->data = calloc((size_t)n32, sizeof(gt_real));
    if (trainable) m->grad = calloc((size_t)n32, sizeof(gt_real));
    if (!m->layers || !m->params || !m->tensors || !m->data || (trainable && !m->grad)) {
        gt_gemma_free(m);
        return snprintf(err, errn, "out of memory allocating %lld parameters (%.1f MB)",
                        (long long)total, (double)n32 * sizeof(gt_real) / 1e6), -1;
    }
    x.n = 0, x.total = 0, x.fp32 = 0;
    gt_gemma_param_walk(cfg, place_param, &x);
    *out = m;
    return 0;
}

int gt_gemma_create(const gt_gemma_config *cfg, bool trainable, gt_gemma **out, char *err,
                    size_t errn) {
    return create(cfg, trainable, false, out, err, errn);
}

void gt_gemma_free(gt_gemma *m) {
    if (!m) return;
    free(m->data16);
    free(m->dataq);
    free(m->mats);
    free(m->stage);
    free(m->tensors);
    free(m->params);
    free(m->layers);
    free(m->data);
    free(m->grad);
    free(m);
}

gt_tensor *gt_gemma_find(const gt_gemma *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return m->params[i].t;
    return NULL;
}

void gt_gemma_init_random(gt_gemma *m, uint64_t seed, double std) {
    /* one counter-based stream (autograd/normal.h) over the parameters in table order, whatever
     * the storage: stored matrices draw a staging buffer of rows at a time, rounded or quantised
     * as they go, so no fp32 copy of a matrix exists */
    uint64_t at = 0;
    for (int p = 0; p < m->n_params; p++) {
        gt_tensor *t = m->params[p].t;
        if (t->data) {
            gt_normal_fill(seed, at, std, t->data, t->size);
            at += (uint64_t)t->size;
            continue;
        }
        int64_t cols = t->shape[1], rb = m->mats[p].stage_n / cols;
        for (int64_t r0 = 0; r0 < t->shape[0]; r0 += rb) {
            int64_t nr = t->shape[0] - r0 < rb ? t->shape[0] - r0 : rb;
            gt_normal_fill(seed, at, std, m->stage, nr * cols);
            at += (uint64_t)(nr * cols);
            gt_gemma_store_rows(m, t, r0, nr, m->stage);
        }
    }
    if (m->cfg.generation != 4) return;
    /* Gemma 4 norms multiply by w itself (KerasHub init: ones), and layer_scalar is frozen at 1 */
    for (int i = 0; i < m->n_params; i++) {
        gt_tensor *t = m->params[i].t;
        size_t len = strlen(m->params[i].name);
        if (len > 5 && !strcmp(m->params[i].name + len - 5, "scale")) /* norms, MoE per-dim/expert scales */
            for (int64_t j = 0; j < t->size; j++) t->data[j] += 1;
        else if (t->ndim == 0) t->data[0] = 1;
    }
}

const char *const gt_frozen_dtype_names[] = {[GT_FROZEN_FP32] = "fp32", [GT_FROZEN_BF16] = "bf16",
                                             [GT_FROZEN_Q8_0] = "q8_0", [GT_FROZEN_Q4_K] = "q4_k", NULL};

int gt_frozen_dtype_from_name(const char *name) {
    for (int i = 0; gt_frozen_dtype_names[i]; i++)
        if (!strcmp(name, gt_frozen_dtype_names[i])) return i;
    return -1;
}

/* Give back the whole pages inside [p, p + bytes) of a buffer that will be freed anyway. */
static void release_pages(void *p, size_t bytes) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~((uintptr_t)pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED); /* best effort: the peak, not the result */
}

/* Zeroes p[0, n) without touching its whole pages (dropped: they read back as zeros), so a large
 * store is committed only as it is written, as calloc would; memset where that fails. */
static void zero_lazily(void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t s = (uintptr_t)p, a = s + n, b = s + n;
    if (pg > 0) a = (s + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1), b = (s + n) & ~((uintptr_t)pg - 1);
    if (b <= a || madvise((void *)a, b - a, MADV_DONTNEED)) {
        memset(p, 0, n);
        return;
    }
    memset(p, 0, a - s);
    memset((void *)b, 0, s + n - b);
}

/* bf16 / q8_0 storage back to one fp32 allocation in table order (exact: the stored values
 * widen without rounding). */
static int widen_to_fp32(gt_gemma *m, char *err, size_t errn) {
    gt_real *all = malloc((size_t)m->n_values * sizeof(gt_real));
    if (!all) return snprintf(err, errn, "model: out of memory widening %.1f MB of %s weights to fp32",
                              (double)m->n_values * 4 / 1e6, gt_frozen_dtype_names[m->frozen_dtype]), -1;
    int64_t off = 0;
    for (int p = 0; p < m->n_params; p++) {
        gt_tensor *t = m->params[p].t;
        gt_gemma_param_values(m, t, all + off);
        t->data = all + off;
        off += t->size;
    }
    free(m->data);
    free(m->data16);
    free(m->dataq);
    free(m->mats);
    free(m->stage);
    m->data = all;
    m->data16 = NULL, m->dataq = NULL, m->mats = NULL, m->stage = NULL;
    m->frozen_dtype = GT_FROZEN_FP32;
    m->compute_bf16 = false;
    return 0;
}

int gt_gemma_set_compute_bf16(gt_gemma *m, bool on, char *err, size_t errn) {
    if (on && (m->frozen_dtype == GT_FROZEN_FP32 || !m->mats))
        return snprintf(err, errn, "model.compute_dtype: bfloat16 arithmetic needs the frozen weights stored as "
                        "bf16, q8_0 or q4_k (model.frozen_dtype, LoRA)"), -1;
    m->compute_bf16 = on;
    if (m->mats)
        for (int p = 0; p < m->n_params; p++) m->mats[p].compute_bf16 = on;
    return 0;
}

/* Whether m may take storage dt (not fp32): frozen, Q8_0 rows in whole blocks. */
static int check_frozen(const gt_gemma *m, gt_frozen_dtype dt, char *err, size_t errn) {
    if (dt != GT_FROZEN_BF16 && dt != GT_FROZEN_Q8_0 && dt != GT_FROZEN_Q4_K)
        return snprintf(err, errn, "model.frozen_dtype: unknown storage %d", (int)dt), -1;
    const char *name = gt_frozen_dtype_names[dt];
    if (m->grad)
        return snprintf(err, errn, "model.frozen_dtype: %s storage is for frozen weights (LoRA), "
                        "not full fine-tuning", name), -1;
    if (m->frozen_dtype != GT_FROZEN_FP32)
        return snprintf(err, errn, "model.frozen_dtype: the model is %s already",
                        gt_frozen_dtype_names[m->frozen_dtype]), -1;
    for (int p = 0; p < m->n_params && dt != GT_FROZEN_BF16; p++) {
        const gt_tensor *t = m->params[p].t;
        if (t->ndim == 2 && t->shape[1] % GT_Q8_BLOCK)
            return snprintf(err, errn, "model.frozen_dtype: %s needs matrix widths that are multiples of %d: "
                            "%s is [%lld, %lld]", name, GT_Q8_BLOCK, m->params[p].name, (long long)t->shape[0],
                            (long long)t->shape[1]), -1;
    }
    return 0;
}

/* The block type matrix p keeps under dt: q8_0: Q8_0; q4_k: what pick names if it fits, else
 * Q4_K where the width is whole 256-blocks, else Q8_0. */
static uint32_t qtype_for(const gt_gemma *m, int p, gt_frozen_dtype dt, gt_gemma_qtype_fn pick, void *arg) {
    if (dt != GT_FROZEN_Q4_K) return GT_QT_Q8_0;
    int64_t cols = m->params[p].t->shape[1];
    uint32_t qt = pick ? pick(m, p, arg) : 0;
    if (gt_qt_block(qt) && cols % gt_qt_block(qt) == 0) return qt;
    return cols % gt_qt_block(GT_QT_Q4_K) == 0 ? GT_QT_Q4_K : GT_QT_Q8_0;
}

/* Zeroed storage of dt for every matrix, the shared staging buffer and the ops' views (mats).
 * The tensors keep their data pointers: the caller moves or drops the fp32 values. */
static int alloc_frozen(gt_gemma *m, gt_frozen_dtype dt, gt_gemma_qtype_fn pick, void *arg, char *err, size_t errn) {
    int64_t bytes = 0, stage = 1024 * m->cfg.hidden_dim;
    m->mats = calloc((size_t)m->n_params, sizeof *m->mats);
    if (!m->mats) return snprintf(err, errn, "model.frozen_dtype: out of memory"), -1;
    for (int p = 0; p < m->n_params; p++) {
        gt_tensor *t = m->params[p].t;
        if (t->ndim != 2) continue;
        gt_bf16_mat *w = &m->mats[p];
        *w = (gt_bf16_mat){NULL, t->shape[0], t->shape[1], NULL, 0, m->compute_bf16, GT_WFMT_BF16, NULL};
        if (dt != GT_FROZEN_BF16) w->fmt = gt_wfmt_of_qtype(qtype_for(m, p, dt, pick, arg));
        bytes += dt == GT_FROZEN_BF16 ? 2 * t->size : gt_qt_bytes(gt_wfmt_qtype(w->fmt), t->size);
        if (t != m->embedding && t->size > stage) stage = t->size;
    }
    /* 64-byte aligned: the bf16 kernels' tile rows are cache lines (split over two: half speed) */
    size_t sbytes = ((size_t)bytes + 64) & ~(size_t)63;
    void *store = aligned_alloc(64, sbytes);
    if (store) zero_lazily(store, sbytes);
    if (store) gt_hugepage_advise(store, sbytes); /* the GEMMs stream it every step */
    m->stage = aligned_alloc(64, ((size_t)stage * sizeof(gt_real) + 63) & ~(size_t)63);
    if (!store || !m->stage) {
        free(store);
        free(m->mats);
        free(m->stage);
        m->mats = NULL, m->stage = NULL;
        return snprintf(err, errn, "model.frozen_dtype: out of memory for %.1f MB of %s weights",
                        (double)bytes / 1e6, gt_frozen_dtype_names[dt]), -1;
    }
    int64_t off = 0;
    for (int p = 0; p < m->n_params; p++) {
        gt_tensor *t = m->params[p].t;
        if (t->ndim != 2) continue;
        gt_bf16_mat *w = &m->mats[p];
        w->stage = m->stage, w->stage_n = stage;
        if (w->fmt != GT_WFMT_BF16) {
            w->q8 = (uint8_t *)store + off;
            off += gt_qt_bytes(gt_wfmt_qtype(w->fmt), t->size);
        } else {
            w->data = (uint16_t *)((uint8_t *)store + off);
            off += 2 * t->size;
        }
    }
    if (dt != GT_FROZEN_BF16) m->dataq = store;
    else m->data16 = store;
    m->frozen_dtype = dt;
    return 0;
}

int64_t gt_gemma_stored_bytes(const gt_gemma *m) {
    int64_t bytes = 0;
    for (int p = 0; m->mats && p < m->n_params; p++) {
        const gt_bf16_mat *w = &m->mats[p];
        if (gt_frozen_present(w))
            bytes += w->fmt == GT_WFMT_BF16 ? 2 * w->rows * w->cols : gt_qt_bytes(gt_wfmt_qtype(w->fmt), w->rows * w->cols);
    }
    return bytes;
}

int gt_gemma_create_frozen_as(const gt_gemma_config *cfg, gt_frozen_dtype dt, gt_gemma_qtype_fn pick, void *arg,
                              gt_gemma **out, char *err, size_t errn) {
    if (dt == GT_FROZEN_FP32) return gt_gemma_create(cfg, false, out, err, errn);
    gt_gemma *m;
    if (create(cfg, false, true, &m, err, errn)) return -1;
    if (check_frozen(m, dt, err, errn) || alloc_frozen(m, dt, pick, arg, err, errn)) {
        gt_gemma_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int gt_gemma_create_frozen(const gt_gemma_config *cfg, gt_frozen_dtype dt, gt_gemma **out, char *err,
                           size_t errn) {
    return gt_gemma_create_frozen_as(cfg, dt, NULL, NULL, out, err, errn);
}

int gt_gemma_store_rows(gt_gemma *m, gt_tensor *t, int64_t r0, int64_t nr, const gt_real *vals) {
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->size, off = r0 * cols, n = nr * cols;
    if (t->data) {
        memcpy(t->data + off, vals, (size_t)n * sizeof(gt_real));
        return 0;
    }
    const gt_bf16_mat *w = &m->mats[t - m->tensors];
    if (w->fmt == GT_WFMT_Q8_0) gt_q8_quantize(vals, (uint8_t *)w->q8 + gt_q8_bytes(off), n);
    else if (w->fmt == GT_WFMT_Q4_K) gt_q4k_quantize(vals, (uint8_t *)w->q8 + gt_qt_bytes(GT_QT_Q4_K, off), n);
    else if (w->fmt == GT_WFMT_BF16) gt_to_bf16_n(vals, (uint16_t *)w->data + off, n);
    else return -1; /* Q6_K, Q5_0: kept as a GGUF gives them, no quantiser here */
    return 0;
}

int gt_gemma_store_blocks(gt_gemma *m, gt_tensor *t, uint32_t type, const uint8_t *blocks) {
    if (t->data || !m->mats || gt_wfmt_qtype(m->mats[t - m->tensors].fmt) != type) return -1;
    memcpy((uint8_t *)m->mats[t - m->tensors].q8, blocks, (size_t)gt_qt_bytes(type, t->size));
    return 0;
}

int gt_gemma_store_q8(gt_gemma *m, gt_tensor *t, const uint8_t *blocks) {
    return gt_gemma_store_blocks(m, t, GT_QT_Q8_0, blocks);
}

int gt_gemma_set_frozen_dtype(gt_gemma *m, gt_frozen_dtype dt, char *err, size_t errn) {
    if (dt == GT_FROZEN_FP32) return m->frozen_dtype != GT_FROZEN_FP32 ? widen_to_fp32(m, err, errn) : 0;
    if (check_frozen(m, dt, err, errn)) return -1;
    int64_t nvec = 0;
    for (int p = 0; p < m->n_params; p++)
        if (m->params[p].t->ndim != 2) nvec += m->params[p].t->size;
    gt_real *vec = malloc((size_t)(nvec ? nvec : 1) * sizeof(gt_real));
    if (!vec) return snprintf(err, errn, "model.frozen_dtype: out of memory"), -1;
    if (alloc_frozen(m, dt, NULL, NULL, err, errn)) return free(vec), -1;
    int64_t ov = 0;
    const int64_t piece = (int64_t)1 << 20; /* a multiple of the Q8_0 block */
    for (int p = 0; p < m->n_params; p++) {
        gt_tensor *t = m->params[p].t;
        gt_real *src = t->data;
        if (t->ndim != 2) {
            memcpy(vec + ov, src, (size_t)t->size * sizeof(gt_real));
            t->data = vec + ov;
            ov += t->size;
            continue;
        }
        t->data = NULL; /* gt_gemma_store_rows writes the stored form now */
        int64_t cols = t->shape[1], rows = piece / cols > 0 ? piece / cols : 1;
        for (int64_t r0 = 0; r0 < t->shape[0]; r0 += rows) {
            int64_t nr = t->shape[0] - r0 < rows ? t->shape[0] - r0 : rows;
            gt_gemma_store_rows(m, t, r0, nr, src + r0 * cols);
            release_pages(src + r0 * cols, (size_t)(nr * cols) * sizeof(gt_real));
        }
    }
    free(m->data);
    m->data = vec;
    return 0;
}

void gt_gemma_param_values(const gt_gemma *m, const gt_tensor *t, gt_real *out) {
    if (t->data) memcpy(out, t->data, (size_t)t->size * sizeof(gt_real));
    else gt_frozen_rows(&m->mats[t - m->tensors], 0, t->shape[0], out);
}

/* The kernel an adapter target adapts (NULL where a Gemma 4 layer has none). */
static gt_tensor *lora_kernel(const gt_gemma_layer *ly, gt_lora_target t) {
    switch (t) {
    case GT_LORA_QUERY: return ly->query;
    case GT_LORA_KEY: return ly->key;
    case GT_LORA_VALUE: return ly->value;
    case GT_LORA_ATTN_OUT: return ly->attn_out;
    case GT_LORA_GATE: return ly->gate;
    case GT_LORA_UP: return ly->up;
    case GT_LORA_DOWN: return ly->down;
    default: return NULL;
    }
}

int gt_gemma_merge_lora(gt_gemma *m, const gt_lora *l, char *err, size_t errn) {
    if (m->frozen_dtype != GT_FROZEN_FP32)
        return snprintf(err, errn, "cannot merge LoRA into %s-stored weights (the sum would be rounded)",
                        gt_frozen_dtype_names[m->frozen_dtype]), -1;
    if (m->lora == l) return snprintf(err, errn, "the adapters are attached to the model (m->lora): merging "
                                      "would apply them twice"), -1;
    if (l->num_layers != m->cfg.num_layers)
        return snprintf(err, errn, "adapters for %lld layers, model has %lld", (long long)l->num_layers,
                        (long long)m->cfg.num_layers), -1;
    /* check everything first: a refused merge leaves the model as it was */
    for (int pass = 0; pass < 2; pass++)
        for (int64_t i = 0; i < l->num_layers; i++)
            for (int t = 0; t < GT_LORA_NTARGETS; t++) {
                const gt_lora_adapter *ad = gt_lora_get(l, i, (gt_lora_target)t);
                if (!ad) continue;
                gt_tensor *w = lora_kernel(&m->layers[i], (gt_lora_target)t);
                if (!w || w->size != ad->groups * ad->out * ad->in)
                    return snprintf(err, errn, "adapter %s does not fit the model's kernel", ad->name), -1;
                if (pass) gt_lora_merge(l, ad, w);
            }
    return 0;
}

/* The stored (bf16 / q8_0) form of a parameter, or NULL when it is fp32. */
static const gt_bf16_mat *bf16_of(const gt_gemma *m, const gt_tensor *w) {
    if (!m->mats || w < m->tensors || w >= m->tensors + m->n_params) return NULL;
    const gt_bf16_mat *b = &m->mats[w - m->tensors];
    return gt_frozen_present(b) ? b : NULL;
}

void gt_gemma_zero_grad(gt_gemma *m) {
    if (m->grad) memset(m->grad, 0, (size_t)m->n_values * sizeof(gt_real));
}

/* ---------------------------------------------------------------- forward */

static gt_tensor *norm(gt_ctx *ctx, const gt_gemma *m, gt_tensor *x, gt_tensor *w) {
    return gt_rmsnorm(ctx, x, w, m->cfg.rms_eps, m->cfg.norm_add_one);
}

/* x [B,T,D] @ W^T with W [out, in] -> [B,T,out]. With m->int8_matvec, a single row without a tape
 * on a Q8_0 matrix (a decode step) goes through the int8 dot products: the step reads each weight once, so the
 * 8-bit read is what sets its speed (autograd/qdot.h). */
static gt_tensor *linear(gt_ctx *ctx, const gt_gemma *m, gt_tensor *x, gt_tensor *w) {
    const gt_bf16_mat *b = bf16_of(m, w);
    if (m->int8_matvec && b && b->fmt == GT_WFMT_Q8_0 && !b->compute_bf16 && !ctx->grad_enabled && x && gt_rows(x) == 1 &&
        gt_qdot_kernel() != GT_QDOT_OFF)
        return gt_qdot_linear(ctx, x, b->q8, b->rows, b->cols);
    return b ? gt_bf16_linear(ctx, x, b) : gt_matmul(ctx, x, w, false, true);
}

/* linear + the layer's LoRA adapter for that target, if any. A scope: the adapter's
 * intermediates (and the base projection, once added) die here unless a backward reads them. */
static gt_tensor *proj(gt_ctx *ctx, const gt_gemma *m, int64_t layer, gt_lora_target t,
                       gt_tensor *x, gt_tensor *w) {
    gt_scope s = gt_scope_begin(ctx);
    gt_tensor *y = linear(ctx, m, x, w);
    const gt_lora_adapter *ad = gt_lora_get(m->lora, layer, t);
    if (ad) y = gt_lora_apply(ctx, m->lora, ad, x, y);
    return gt_scope_end(ctx, s, &y, 1);
}

static gt_tensor *heads(gt_ctx *ctx, gt_tensor *x, int64_t b, int64_t t, int64_t n, int64_t h) {
    int64_t shape[4] = {b, t, n, h};
    return gt_reshape(ctx, x, 4, shape);
}

/* Offset of layer i's rows in the kv cache: only layers with their own k, v store any (Gemma 4's
 * kv-shared layers read their source's), each max_len rows of its own width (kv heads x head
 * dim, which differ between local and global layers in Gemma 4). */
static int64_t cache_offset(const gt_gemma_config *c, int64_t layer, int64_t max_len) {
    int64_t off = 0;
    for (int64_t j = 0; j < layer; j++)
        if (gt_gemma_kv_source(c, j) < 0)
            off += max_len * gt_gemma_layer_kv_heads(c, j) * gt_gemma_layer_head_dim(c, j);
    return off;
}

/* Gemma 4 normalises the values by their RMS, without a scale (KerasHub Gemma4TextAttention). */
static bool value_norm(const gt_gemma_config *c) { return c->generation == 4; }

/* Writes the T new rows of k, v at cache position pos0 and turns k, v into views of the whole
 * cached pos0 + T rows, which attention then reads. */
static int cache_kv(gt_ctx *ctx, const gt_gemma_config *c, int64_t i, gt_gemma_cache *cache, int64_t pos0,
                    int64_t T, int64_t K, int64_t H, gt_tensor **k, gt_tensor **v) {
    int64_t row = K * H, S = pos0 + T, off = cache_offset(c, i, cache->max_len);
    gt_real *ck = cache->k + off, *cv = cache->v + off;
    memcpy(ck + pos0 * row, (*k)->data, (size_t)(T * row) * sizeof(gt_real));
    memcpy(cv + pos0 * row, (*v)->data, (size_t)(T * row) * sizeof(gt_real));
    int64_t shape[4] = {1, S, K, H};
    *k = gt_alloc(ctx, sizeof **k);
    *v = gt_alloc(ctx, sizeof **v);
    if (!*k || !*v) return -1;
    gt_tensor_wrap(*k, ck, NULL, 4, shape, false);
    gt_tensor_wrap(*v, cv, NULL, 4, shape, false);
    return 0;
}

/* The inputs of one block beyond the residual stream. */
typedef struct {
    int64_t B, T;
    const int32_t *pos;
    const uint8_t *key_mask;
    const int32_t *segment_ids;
    const int32_t *bidir_end; /* image spans (gt_attn_cfg.bidir_end), or NULL */
    gt_tensor **kv_k, **kv_v; /* every earlier layer's attention k, v (after norm and RoPE), for
                                 the layers that share them (Gemma 4) */
    gt_gemma_cache *cache;    /* inference only (B = 1, no tape), or NULL */
    int64_t pos0;             /* with a cache: the T tokens follow pos0 cached ones */
} block_in;

/* The attention half of decoder block i: x + [post-norm](out(attention(q, k, v))). Every layer
 * shape and flag comes from the config: per-layer head dims and kv heads, q/k norms, RoPE on a
 * part of the head, k = v layers, kv-shared layers, value norm (Gemma 4). A scope: only the
 * residual stream leaves, and k, v when a later layer shares them. */
static gt_tensor *attention_half(gt_ctx *ctx, const gt_gemma *m, int64_t i, gt_tensor *x, const block_in *in) {
    const gt_gemma_config *c = &m->cfg;
    const gt_gemma_layer *ly = &m->layers[i];
    int64_t B = in->B, T = in->T, N = c->num_query_heads;
    int64_t H = gt_gemma_layer_head_dim(c, i), K = gt_gemma_layer_kv_heads(c, i);
    bool local = gt_gemma_layer_is_local(c, i);
    gt_rope_cfg rope = {local ? c->rope_local_base : c->rope_global_base,
                        local ? c->rope_local_scale : c->rope_global_scale, gt_gemma_layer_rotary_dims(c, i)};
    gt_attn_cfg attn = {.scale = gt_gemma_query_scale(c),
                        .softcap = c->attn_logit_softcap,
                        .window = local ? c->sliding_window : 0,
                        .causal = true,
                        .q_offset = in->cache ? in->pos0 : 0,
                        .key_mask = in->key_mask,
                        .segment_ids = in->segment_ids,
                        /* Gemma 4 opens image spans on local layers only (KerasHub blk:437-447) */
                        .bidir_end = c->generation == 4 && !local ? NULL : in->bidir_end,
                        .bf16 = m->compute_bf16};
    gt_scope half = gt_scope_begin(ctx);
    gt_tensor *h = norm(ctx, m, x, ly->pre_attn_norm);
    gt_tensor *q = heads(ctx, proj(ctx, m, i, GT_LORA_QUERY, h, ly->query), B, T, N, H);
    int64_t src = gt_gemma_kv_source(c, i);
    gt_tensor *k = src >= 0 ? in->kv_k[src] : heads(ctx, proj(ctx, m, i, GT_LORA_KEY, h, ly->key), B, T, K, H);
    gt_tensor *v = src >= 0                       ? in->kv_v[src]
                   : gt_gemma_layer_k_eq_v(c, i) ? k /* the raw key projection */
                                                 : heads(ctx, proj(ctx, m, i, GT_LORA_VALUE, h, ly->value), B, T, K, H);
    gt_scope qk = gt_scope_begin(ctx); /* the norms' outputs die once rotated */
    if (c->use_qk_norm) q = norm(ctx, m, q, ly->query_norm);
    q = gt_rope(ctx, q, in->pos, &rope);
    if (src < 0) {
        if (value_norm(c)) v = gt_rmsnorm(ctx, v, NULL, c->rms_eps, false);
        if (c->use_qk_norm) k = norm(ctx, m, k, ly->key_norm);
        k = gt_rope(ctx, k, in->pos, &rope);
    }
    gt_tensor *rotated[3] = {q, src < 0 ? k : NULL, src < 0 ? v : NULL};
    gt_scope_end(ctx, qk, rotated, 3);
    if (src < 0 && in->cache && gt_ok(ctx) && cache_kv(ctx, c, i, in->cache, in->pos0, T, K, H, &k, &v))
        return NULL;
    in->kv_k[i] = k;
    in->kv_v[i] = v;
    gt_tensor *a = gt_attention(ctx, q, k, v, &attn);
    int64_t flat[3] = {B, T, N * H};
    a = proj(ctx, m, i, GT_LORA_ATTN_OUT, gt_reshape(ctx, a, 3, flat), ly->attn_out);
    if (ly->post_attn_norm) a = norm(ctx, m, a, ly->post_attn_norm);
    x = gt_add(ctx, x, a);
    bool shared = false;
    for (int64_t j = i + 1; j < c->num_layers; j++) shared = shared || gt_gemma_kv_source(c, j) == i;
    gt_tensor *keep[3] = {x, shared ? k : NULL, shared ? v : NULL};
    return gt_scope_end(ctx, half, keep, 3);
}

/* Gemma 4's expert branch (KerasHub Gemma4Router + Gemma4MoEBlock): the router reads the raw
 * residual stream x, softmax((vnorm(x) * per_dim_scale / sqrt(D)) Wr) -> top-k renormalised, times
 * per_expert_scale; the chosen experts run on pre_ffw_norm_moe(x), one GEMM per expert over its
 * tokens; the weighted sum gets its own post-norm. Records the choices in m->moe_routes if set. */
static gt_tensor *moe_branch(gt_ctx *ctx, const gt_gemma *m, int64_t i, gt_tensor *x) {
    const gt_gemma_config *c = &m->cfg;
    const gt_gemma_layer *ly = &m->layers[i];
    int64_t D = c->hidden_dim, n = x->size / D, flat[2] = {n, D};
    gt_tensor *xf = gt_reshape(ctx, x, 2, flat);
    gt_tensor *r = gt_scale(ctx, gt_rmsnorm(ctx, xf, ly->router_scale, c->rms_eps, false), 1.0 / sqrt((double)D));
    const gt_moe_plan *plan = NULL;
    gt_tensor *w = gt_moe_route(ctx, linear(ctx, m, r, ly->router), ly->expert_scale, c->experts_per_token, &plan);
    gt_tensor *h = norm(ctx, m, xf, ly->moe_pre_norm);
    gt_tensor *y = plan ? gt_moe_down(ctx, gt_moe_up(ctx, h, ly->expert_gate, ly->expert_up, plan), ly->expert_down,
                                      w, plan)
                        : NULL;
    if (y && m->moe_routes)
        memcpy(m->moe_routes + i * n * c->experts_per_token, plan->idx,
               (size_t)(n * c->experts_per_token) * sizeof *plan->idx);
    return norm(ctx, m, gt_reshape(ctx, y, x->ndim, x->shape), ly->moe_post_norm);
}

/* The feed-forward half: x + [post-norm](down(gelu(gate) * up)), then Gemma 4's per-layer input
 * (pli [B, T, P], or NULL) and layer scale. A scope: only the residual stream leaves. */
static gt_tensor *ffw_half(gt_ctx *ctx, const gt_gemma *m, int64_t i, gt_tensor *x, gt_tensor *pli) {
    const gt_gemma_layer *ly = &m->layers[i];
    gt_scope half = gt_scope_begin(ctx);
    gt_tensor *h = norm(ctx, m, x, ly->pre_ffw_norm);
    /* where the gate product runs in bf16, geglu keeps bf16 copies of its inputs for backward */
    const gt_bf16_mat *bg = bf16_of(m, ly->gate);
    gt_tensor *(*geglu)(gt_ctx *, gt_tensor *, gt_tensor *) =
        bg && gt_bf16_linear_uses_bf16(bg) ? gt_geglu_bf16 : gt_geglu;
    gt_tensor *f = geglu(ctx, proj(ctx, m, i, GT_LORA_GATE, h, ly->gate), proj(ctx, m, i, GT_LORA_UP, h, ly->up));
    f = proj(ctx, m, i, GT_LORA_DOWN, f, ly->down);
    if (ly->router) f = gt_add(ctx, norm(ctx, m, f, ly->moe_post_dense_norm), moe_branch(ctx, m, i, x));
    if (ly->post_ffw_norm) f = norm(ctx, m, f, ly->post_ffw_norm);
    x = gt_add(ctx, x, f);
    if (pli) {
        gt_tensor *g = gt_mul(ctx, gt_gelu(ctx, linear(ctx, m, x, ly->ple_gate)), pli);
        x = gt_add(ctx, x, norm(ctx, m, linear(ctx, m, g, ly->ple_up), ly->ple_norm));
    }
    /* layer_scalar is a frozen checkpoint constant: a plain scale, no gradient */
    if (ly->layer_scalar) x = gt_ok(ctx) ? gt_scale(ctx, x, (double)ly->layer_scalar->data[0]) : NULL;
    return gt_scope_end(ctx, half, &x, 1);
}

/* Per-layer inputs of Gemma 4 (KerasHub Gemma4Backbone): with h0 = E[tok] sqrt(D),
 * pli_i = (RMSNorm(h0 Wp_i / sqrt(D)) + Ep[tok]_i sqrt(P)) / sqrt(2), slice i of width P.
 * Returns [L, B*T*P] (row i = layer i) or NULL. */
static gt_tensor *per_layer_inputs(gt_ctx *ctx, const gt_gemma *m, gt_tensor *h0,
                                   const int32_t *ids, int64_t B, int64_t T) {
    const gt_gemma_config *c = &m->cfg;
    int64_t L = c->num_layers, P = c->per_layer_input_dim, D = c->hidden_dim;
    const gt_bf16_mat *e16 = bf16_of(m, m->ple_embedding);
    gt_tensor *e = e16 ? gt_bf16_embedding(ctx, e16, ids, B * T) : gt_embedding(ctx, m->ple_embedding, ids, B * T);
    e = gt_scale(ctx, e, sqrt((double)P));
    gt_tensor *pr = gt_scale(ctx, linear(ctx, m, h0, m->ple_projection), 1.0 / sqrt((double)D));
    int64_t split[3] = {B * T, L, P};
    pr = gt_rmsnorm(ctx, gt_reshape(ctx, pr, 3, split), m->ple_norm, c->rms_eps, false);
    gt_tensor *sum = gt_scale(ctx, gt_add(ctx, pr, gt_reshape(ctx, e, 3, split)), 1.0 / sqrt(2.0));
    int64_t rows[2] = {L, B * T * P};
    return gt_reshape(ctx, gt_transpose(ctx, sum, 0, 1), 2, rows);
}

/* The decoder blocks over embeddings x (not yet final-normalised). With a cache (B = 1, no tape)
 * the T tokens sit at positions pos0.. after the cached ones. */
static gt_tensor *blocks(gt_ctx *ctx, const gt_gemma *m, const gt_gemma_batch *b, gt_tensor *x,
                         const int32_t *pos, gt_gemma_cache *cache, int64_t pos0) {
    int64_t B = b->batch, T = b->seq, L = m->cfg.num_layers, P = m->cfg.per_layer_input_dim;
    gt_tensor **kv = gt_alloc(ctx, (size_t)(2 * L) * sizeof *kv);
    if (!kv) return NULL;
    block_in in = {B, T, pos, b->padding_mask, b->segment_ids, b->bidir_end, kv, kv + L, cache, pos0};
    gt_tensor *pl = P > 0 ? per_layer_inputs(ctx, m, x, b->token_ids, B, T) : NULL;
    for (int64_t i = 0; i < L && gt_ok(ctx); i++) {
        gt_tensor *pli = NULL;
        if (pl) {
            int64_t sh[3] = {B, T, P};
            pli = gt_reshape(ctx, gt_slice_rows(ctx, pl, i, 1), 3, sh);
        }
        x = ffw_half(ctx, m, i, attention_half(ctx, m, i, x, &in), pli);
    }
    return x;
}

static gt_tensor *embed(gt_ctx *ctx, const gt_gemma *m, const int32_t *ids, int64_t B, int64_t T) {
    gt_scope s = gt_scope_begin(ctx); /* the unscaled lookup dies here */
    const gt_bf16_mat *e16 = bf16_of(m, m->embedding);
    gt_tensor *x = e16 ? gt_bf16_embedding(ctx, e16, ids, B * T) : gt_embedding(ctx, m->embedding, ids, B * T);
    int64_t sh[3] = {B, T, m->cfg.hidden_dim};
    gt_tensor *y = gt_scale(ctx, gt_reshape(ctx, x, 3, sh), sqrt((double)m->cfg.hidden_dim));
    return gt_scope_end(ctx, s, &y, 1);
}

gt_tensor *gt_gemma_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_gemma_batch *b) {
    if (!gt_ok(ctx)) return NULL;
    int64_t B = b->batch, T = b->seq;
    if (B < 1 || T < 1 || !b->token_ids)
        return gt_fail(ctx, GT_ERR_ARG, "gemma: batch needs token_ids and B, T >= 1 (got %lld x %lld)",
                       (long long)B, (long long)T);
    const int32_t *pos = b->positions;
    if (!pos) {
        int32_t *p = gt_alloc(ctx, (size_t)(B * T) * sizeof *p);
        if (!p) return NULL;
        for (int64_t i = 0; i < B * T; i++) p[i] = (int32_t)(i % T);
        pos = p;
    }
    gt_scope s = gt_scope_begin(ctx); /* only the final hidden states outlive the forward */
    gt_tensor *x = embed(ctx, m, b->token_ids, B, T);
    if (b->soft_tokens) { /* image embeddings at their placeholders (KerasHub: after the scaling) */
        int64_t flat[2] = {B * T, m->cfg.hidden_dim}, sh[3] = {B, T, m->cfg.hidden_dim};
        x = gt_reshape(ctx, gt_put_rows(ctx, gt_reshape(ctx, x, 2, flat), b->soft_tokens, b->soft_pos, b->n_soft), 3, sh);
    }
    x = norm(ctx, m, blocks(ctx, m, b, x, pos, NULL, 0), m->final_norm);
    return gt_scope_end(ctx, s, &x, 1);
}

int gt_gemma_cache_init(gt_gemma_cache *cache, const gt_gemma *m, int64_t max_len, char *err,
                        size_t errn) {
    memset(cache, 0, sizeof *cache);
    int64_t n = cache_offset(&m->cfg, m->cfg.num_layers, max_len);
    if (max_len < 1) return snprintf(err, errn, "kv cache: max_len must be >= 1"), -1;
    cache->k = malloc((size_t)n * sizeof(gt_real));
    cache->v = malloc((size_t)n * sizeof(gt_real));
    if (!cache->k || !cache->v) {
        gt_gemma_cache_free(cache);
        return snprintf(err, errn, "kv cache: out of memory for %lld positions (%.1f MB)",
                        (long long)max_len, 2.0 * (double)n * sizeof(gt_real) / 1e6), -1;
    }
    cache->max_len = max_len;
    return 0;
}

void gt_gemma_cache_copy(gt_gemma_cache *dst, const gt_gemma_cache *src, const gt_gemma *m) {
    size_t n = (size_t)cache_offset(&m->cfg, m->cfg.num_layers, src->max_len) * sizeof(gt_real);
    memcpy(dst->k, src->k, n);
    memcpy(dst->v, src->v, n);
    dst->len = src->len;
}

void gt_gemma_cache_free(gt_gemma_cache *cache) {
    free(cache->k);
    free(cache->v);
    memset(cache, 0, sizeof *cache);
}

/* With images: soft [n_soft, D] go to positions soft_pos of this step; their contiguous runs see
 * each other (bidir_end over every cached key, 0 before this step), except rows with open[i] == 0
 * (Gemma 4's audio, causal; open NULL: every row is open). */
static gt_tensor *put_soft(gt_ctx *ctx, const gt_gemma *m, gt_tensor *x, int64_t pos0, int64_t n,
                           const gt_real *soft, const int32_t *soft_pos, int64_t n_soft,
                           const uint8_t *open, int32_t **bidir_end) {
    int64_t D = m->cfg.hidden_dim, flat[2] = {n, D}, sh[2] = {n_soft, D}, x3[3] = {1, n, D};
    int32_t *end = gt_alloc(ctx, (size_t)(pos0 + n) * sizeof *end);
    if (!end) return NULL;
    memset(end, 0, (size_t)(pos0 + n) * sizeof *end);
    for (int64_t i = n_soft - 1, run_end = 0; i >= 0; i--) {
        if (soft_pos[i] < 0 || soft_pos[i] >= n)
            return gt_fail(ctx, GT_ERR_ARG, "gemma: image token position %d outside the %lld new tokens",
                           soft_pos[i], (long long)n);
        if (open && !open[i]) continue;
        if (i == n_soft - 1 || soft_pos[i + 1] != soft_pos[i] + 1 || (open && !open[i + 1]))
            run_end = pos0 + soft_pos[i] + 1;
        end[pos0 + soft_pos[i]] = (int32_t)run_end;
    }
    *bidir_end = end;
    gt_tensor *src = gt_from_data(ctx, soft, 2, sh, false);
    return gt_reshape(ctx, gt_put_rows(ctx, gt_reshape(ctx, x, 2, flat), src, soft_pos, n_soft), 3, x3);
}

gt_tensor *gt_gemma_step(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache,
                         const int32_t *ids, int64_t n) {
    gt_tensor *z = NULL;
    return gt_gemma_step_hidden(ctx, m, cache, ids, n, &z, NULL) ? NULL : z;
}

static int step_core(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids, int64_t n,
                     const gt_real *soft, const int32_t *soft_pos, int64_t n_soft, const uint8_t *open,
                     gt_tensor **logits, gt_tensor **hidden);

gt_tensor *gt_gemma_step_soft(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids,
                              int64_t n, const gt_real *soft, const int32_t *soft_pos, int64_t n_soft) {
    gt_tensor *z = NULL;
    return step_core(ctx, m, cache, ids, n, soft, soft_pos, n_soft, NULL, &z, NULL) ? NULL : z;
}

gt_tensor *gt_gemma_step_media(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids,
                               int64_t n, const gt_real *soft, const int32_t *soft_pos, int64_t n_soft,
                               const uint8_t *open) {
    gt_tensor *z = NULL;
    return step_core(ctx, m, cache, ids, n, soft, soft_pos, n_soft, open, &z, NULL) ? NULL : z;
}

int gt_gemma_step_hidden(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids,
                         int64_t n, gt_tensor **logits, gt_tensor **hidden) {
    return step_core(ctx, m, cache, ids, n, NULL, NULL, 0, NULL, logits, hidden);
}

/* One cached step: the new tokens' embeddings (with image rows put in place), every block, then
 * the outputs asked for. */
static int step_core(gt_ctx *ctx, const gt_gemma *m, gt_gemma_cache *cache, const int32_t *ids, int64_t n,
                     const gt_real *soft, const int32_t *soft_pos, int64_t n_soft, const uint8_t *open,
                     gt_tensor **logits, gt_tensor **hidden) {
    if (logits) *logits = NULL;
    if (hidden) *hidden = NULL;
    if (!gt_ok(ctx)) return -1;
    int64_t pos0 = cache->len;
    if (n < 1 || pos0 + n > cache->max_len)
        return gt_fail(ctx, GT_ERR_ARG, "gemma: %lld new tokens at position %lld exceed the cache "
                       "length %lld", (long long)n, (long long)pos0, (long long)cache->max_len), -1;
    int32_t *pos = gt_alloc(ctx, (size_t)n * sizeof *pos);
    if (!pos) return -1;
    for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(pos0 + i);
    bool grad = ctx->grad_enabled;
    ctx->grad_enabled = false; /* the cache holds plain values: no tape through it */
    gt_scope s = gt_scope_begin(ctx); /* only the logits (and hidden states) outlive the step */
    gt_tensor *x = embed(ctx, m, ids, 1, n);
    int64_t flat[2] = {n, m->cfg.hidden_dim};
    gt_gemma_batch b = {.batch = 1, .seq = n, .token_ids = ids};
    int32_t *bidir_end = NULL;
    if (n_soft > 0) x = put_soft(ctx, m, x, pos0, n, soft, soft_pos, n_soft, open, &bidir_end);
    b.bidir_end = bidir_end;
    x = blocks(ctx, m, &b, x, pos, cache, pos0);
    gt_tensor *keep[2] = {NULL, NULL}; /* logits, hidden */
    if (hidden) { /* every fed position's normalised state; the logits of the last */
        keep[1] = norm(ctx, m, gt_reshape(ctx, x, 2, flat), m->final_norm);
        if (logits) keep[0] = gt_gemma_logits(ctx, m, gt_slice_rows(ctx, keep[1], n - 1, 1));
    } else if (logits) { /* only the last position's hidden state is needed to sample the next token */
        x = gt_slice_rows(ctx, gt_reshape(ctx, x, 2, flat), n - 1, 1);
        keep[0] = gt_gemma_logits(ctx, m, norm(ctx, m, x, m->final_norm));
    }
    gt_tensor *k2[2] = {keep[0] ? keep[0] : keep[1], keep[0] ? keep[1] : NULL};
    gt_scope_end(ctx, s, k2, k2[1] ? 2 : 1);
    ctx->grad_enabled = grad;
    if (!gt_ok(ctx) || !k2[0]) return -1;
    cache->len = pos0 + n;
    if (logits) *logits = keep[0];
    if (hidden) *hidden = keep[1];
    return 0;
}

gt_tensor *gt_gemma_lm_loss(gt_ctx *ctx, const gt_gemma *m, gt_tensor *hidden, const int32_t *labels,
                            const gt_real *weights, int64_t chunk_rows, double *weight_sum,
                            gt_real *row_ce) {
    const gt_bf16_mat *e16 = bf16_of(m, m->embedding);
    double cap = m->cfg.final_logit_softcap;
    if (e16)
        return gt_lm_head_loss_bf16(ctx, hidden, e16, cap, labels, weights, chunk_rows, weight_sum,
                                    row_ce);
    return gt_lm_head_loss(ctx, hidden, m->embedding, cap, labels, weights, chunk_rows, weight_sum,
                           row_ce);
}

gt_tensor *gt_gemma_logits(gt_ctx *ctx, const gt_gemma *m, gt_tensor *hidden) {
    gt_tensor *z = linear(ctx, m, hidden, m->embedding);
    if (m->cfg.final_logit_softcap > 0) z = gt_softcap(ctx, z, m->cfg.final_logit_softcap);
    return z;
}
