#include "models/io/gguf_writer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/gguf.h"
#include "util/err.h"
#include "util/fsutil.h"
#include "util/half.h"

#define ALIGN 32

typedef struct {
    char *name;
    const float *data;
    int ndim;
    uint64_t dims[4]; /* innermost first */
    uint32_t type;
    uint64_t n, bytes, offset;
} wtensor;

struct gt_ggufw {
    uint8_t *kv; /* serialised metadata entries */
    size_t kv_len, kv_cap;
    char **keys;
    uint64_t n_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
};

gt_ggufw *gt_ggufw_new(void) { return calloc(1, sizeof(gt_ggufw)); }

void gt_ggufw_free(gt_ggufw *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->kv);
    free(w->t);
    free(w);
}

static int put(gt_ggufw *w, const void *p, size_t n) {
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? 2 * w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) return -1;
        w->kv = q, w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int put_u32(gt_ggufw *w, uint32_t v) { return put(w, &v, 4); }
static int put_u64(gt_ggufw *w, uint64_t v) { return put(w, &v, 8); }
static int put_str(gt_ggufw *w, const char *s) {
    uint64_t n = strlen(s);
    return put_u64(w, n) || put(w, s, n);
}

/* The key, once, and its type. */
static int key(gt_ggufw *w, const char *k, uint32_t type) {
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], k)) return -1;
    char **ks = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *ks);
    if (!ks) return -1;
    w->keys = ks;
    if (!(ks[w->n_kv] = strdup(k))) return -1;
    w->n_kv++;
    return put_str(w, k) || put_u32(w, type);
}

int gt_ggufw_str(gt_ggufw *w, const char *k, const char *v) { return key(w, k, GT_GGUF_STRING) || put_str(w, v); }
int gt_ggufw_u32(gt_ggufw *w, const char *k, uint32_t v) { return key(w, k, GT_GGUF_UINT32) || put_u32(w, v); }
int gt_ggufw_i32(gt_ggufw *w, const char *k, int32_t v) { return key(w, k, GT_GGUF_INT32) || put(w, &v, 4); }
int gt_ggufw_f32(gt_ggufw *w, const char *k, float v) { return key(w, k, GT_GGUF_FLOAT32) || put(w, &v, 4); }
int gt_ggufw_bool(gt_ggufw *w, const char *k, bool v) {
    uint8_t b = v;
    return key(w, k, GT_GGUF_BOOL) || put(w, &b, 1);
}

static int array(gt_ggufw *w, const char *k, uint32_t elem, uint64_t n) {
    return key(w, k, GT_GGUF_ARRAY) || put_u32(w, elem) || put_u64(w, n);
}

int gt_ggufw_str_array(gt_ggufw *w, const char *k, const char *const *v, uint64_t n) {
    if (array(w, k, GT_GGUF_STRING, n)) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (put_str(w, v[i])) return -1;
    return 0;
}

int gt_ggufw_f32_array(gt_ggufw *w, const char *k, const float *v, uint64_t n) {
    return array(w, k, GT_GGUF_FLOAT32, n) || put(w, v, (size_t)n * 4);
}

int gt_ggufw_i32_array(gt_ggufw *w, const char *k, const int32_t *v, uint64_t n) {
    return array(w, k, GT_GGUF_INT32, n) || put(w, v, (size_t)n * 4);
}

int gt_ggufw_bool_array(gt_ggufw *w, const char *k, const bool *v, uint64_t n) {
    if (array(w, k, GT_GGUF_BOOL, n)) return -1;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t b = v[i];
        if (put(w, &b, 1)) return -1;
    }
    return 0;
}

static uint64_t type_bytes(uint32_t type, uint64_t n) {
    switch (type) {
    case GT_GGML_F32: return 4 * n;
    case GT_GGML_F16:
    case GT_GGML_BF16: return 2 * n;
    case GT_GGML_Q8_0: return n / 32 * 34;
    default: return 0;
    }
}

int gt_ggufw_tensor(gt_ggufw *w, const char *name, const float *data, int ndim, const int64_t *shape, uint32_t type,
                    char *err, size_t errn) {
    if (ndim < 1 || ndim > 4) return gt_errf(err, errn, "gguf write: tensor '%s': %d dimensions (1-4)", name, ndim);
    if (!type_bytes(type, 32)) return gt_errf(err, errn, "gguf write: tensor '%s': type %u not offered", name, type);
    if (type == GT_GGML_Q8_0 && shape[ndim - 1] % 32)
        return gt_errf(err, errn, "gguf write: tensor '%s': Q8_0 needs rows of a multiple of 32 (%lld)", name,
                       (long long)shape[ndim - 1]);
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return gt_errf(err, errn, "gguf write: out of memory");
        w->t = t, w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->n = 1;
    for (int d = 0; d < ndim; d++) t->dims[d] = (uint64_t)shape[ndim - 1 - d], t->n *= (uint64_t)shape[d];
    t->data = data, t->ndim = ndim, t->type = type, t->bytes = type_bytes(type, t->n);
    if (!(t->name = strdup(name))) return gt_errf(err, errn, "gguf write: out of memory");
    w->n_t++;
    return 0;
}

/* The ggml reference quantiser (quantize_row_q8_0_ref). */
static void q8_0_block(const float *x, uint8_t *out) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = gt_f32_to_f16(d);
    memcpy(out, &h, 2);
    for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

void gt_ggml_q8_0_round(const float *x, float *y, int64_t n) {
    uint8_t b[34];
    for (int64_t i = 0; i + 32 <= n; i += 32) {
        q8_0_block(x + i, b);
        uint16_t h;
        memcpy(&h, b, 2);
        float d = gt_f16_to_f32(h);
        for (int j = 0; j < 32; j++) y[i + j] = d * (float)(int8_t)b[2 + j];
    }
}

/* One tensor's data, converted in chunks. */
static int write_data(FILE *f, const wtensor *t) {
    enum { CHUNK = 4096 }; /* values per chunk: a multiple of the Q8_0 block */
    uint8_t buf[CHUNK / 32 * 34 > CHUNK * 4 ? CHUNK / 32 * 34 : CHUNK * 4];
    for (uint64_t at = 0; at < t->n; at += CHUNK) {
        uint64_t n = t->n - at < CHUNK ? t->n - at : CHUNK;
        const float *x = t->data + at;
        size_t len = 0;
        switch (t->type) {
        case GT_GGML_F32: memcpy(buf, x, (len = (size_t)n * 4)); break;
        case GT_GGML_F16:
        case GT_GGML_BF16:
            for (uint64_t i = 0; i < n; i++) {
                uint16_t h = t->type == GT_GGML_F16 ? gt_f32_to_f16(x[i]) : gt_f32_to_bf16(x[i]);
                memcpy(buf + 2 * i, &h, 2);
            }
            len = (size_t)n * 2;
            break;
        case GT_GGML_Q8_0:
            for (uint64_t b = 0; b < n / 32; b++) q8_0_block(x + 32 * b, buf + 34 * b);
            len = (size_t)(n / 32) * 34;
            break;
        }
        if (fwrite(buf, 1, len, f) != len) return -1;
    }
    return 0;
}

static int pad(FILE *f, uint64_t *pos) {
    static const uint8_t zeros[ALIGN];
    uint64_t n = (ALIGN - *pos % ALIGN) % ALIGN;
    *pos += n;
    return fwrite(zeros, 1, (size_t)n, f) == n ? 0 : -1;
}

int gt_ggufw_write(const gt_ggufw *w, const char *path, char *err, size_t errn) {
    gt_atomic a;
    if (gt_atomic_open(path, &a, err, errn)) return -1;
    errno = 0;
    FILE *f = a.f;
    uint32_t version = 3;
    uint64_t n_t = w->n_t, n_kv = w->n_kv, pos = 0, off = 0;
    bool ok = fwrite("GGUF", 1, 4, f) == 4 && fwrite(&version, 4, 1, f) == 1 && fwrite(&n_t, 8, 1, f) == 1 &&
              fwrite(&n_kv, 8, 1, f) == 1 && fwrite(w->kv, 1, w->kv_len, f) == w->kv_len;
    pos = 24 + w->kv_len;
    for (uint64_t i = 0; ok && i < n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t nd = (uint32_t)t->ndim;
        ok = fwrite(&len, 8, 1, f) == 1 && fwrite(t->name, 1, len, f) == len && fwrite(&nd, 4, 1, f) == 1 &&
             fwrite(t->dims, 8, nd, f) == nd && fwrite(&t->type, 4, 1, f) == 1 && fwrite(&off, 8, 1, f) == 1;
        pos += 8 + len + 4 + 8 * nd + 4 + 8;
        off += (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    ok = ok && !pad(f, &pos);
    for (uint64_t i = 0; ok && i < n_t; i++) {
        ok = !write_data(f, &w->t[i]);
        pos += w->t[i].bytes;
        ok = ok && !pad(f, &pos);
    }
    if (!ok) { /* the stream's errno: ENOSPC, EFBIG, EIO... (stdio keeps it from the failed write) */
        int e = errno;
        gt_atomic_abort(&a);
        return gt_errf(err, errn, "%s: write failed: %s", path, e ? strerror(e) : "unknown error");
    }
    return gt_atomic_commit(&a, err, errn);
}
