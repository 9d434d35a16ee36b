#include "models/io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fsutil.h"
#include "util/half.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[GT_ST_N_DTYPES] = {
    [GT_ST_BOOL] = {"BOOL", 1},       [GT_ST_U8] = {"U8", 1},   [GT_ST_I8] = {"I8", 1},
    [GT_ST_F8_E4M3] = {"F8_E4M3", 1}, [GT_ST_F8_E5M2] = {"F8_E5M2", 1},
    [GT_ST_I16] = {"I16", 2},         [GT_ST_U16] = {"U16", 2}, [GT_ST_F16] = {"F16", 2},
    [GT_ST_BF16] = {"BF16", 2},       [GT_ST_I32] = {"I32", 4}, [GT_ST_U32] = {"U32", 4},
    [GT_ST_F32] = {"F32", 4},         [GT_ST_I64] = {"I64", 8}, [GT_ST_U64] = {"U64", 8},
    [GT_ST_F64] = {"F64", 8},
};

const char *gt_st_dtype_name(gt_st_dtype d) { return d < GT_ST_N_DTYPES ? dtypes[d].name : "?"; }
size_t gt_st_dtype_size(gt_st_dtype d) { return d < GT_ST_N_DTYPES ? dtypes[d].size : 0; }

/* ---------------------------------------------------------------- handle */

typedef struct st_file {
    char *path;
    const uint8_t *buf;
    size_t len;
    bool mapped;
} st_file;

struct gt_st {
    st_file *files;
    int n_files;
    gt_st_tensor *tensors; /* sorted by name once complete */
    int64_t n, cap;
    char **meta; /* key, value pairs of the first file */
    int n_meta;
};

void gt_st_close(gt_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].mapped && st->files[i].len) munmap((void *)st->files[i].buf, st->files[i].len);
        free(st->files[i].path);
    }
    for (int64_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->files);
    free(st->tensors);
    free(st);
}

int64_t gt_st_n_tensors(const gt_st *st) { return st->n; }

const gt_st_tensor *gt_st_tensor_at(const gt_st *st, int64_t i) {
    return i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const gt_st_tensor *)a)->name, ((const gt_st_tensor *)b)->name);
}

const gt_st_tensor *gt_st_find(const gt_st *st, const char *name) {
    gt_st_tensor key = {.name = name};
    if (st->n == 0) return NULL;
    return bsearch(&key, st->tensors, (size_t)st->n, sizeof key, by_name);
}

const char *gt_st_metadata(const gt_st *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

/* ---------------------------------------------------------------- header parsing */

static int parse_dims(json_t *arr, const char *file, const char *name, const char *field,
                      int max, int64_t *out, int *n, char *err, size_t errn) {
    if (!json_is_array(arr))
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': \"%s\" is missing or not an array", file, name, field);
    size_t k = json_array_size(arr);
    if (k > (size_t)max)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': \"%s\" has %zu entries (at most %d)", file,
                    name, field, k, max);
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return gt_errf(err, errn, "safetensors: %s: tensor '%s': \"%s\"[%zu] is not a non-negative integer",
                        file, name, field, i);
        out[i] = (int64_t)json_integer_value(v);
    }
    *n = (int)k;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int64_t idx;
} span;

static int by_begin(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int push_tensor(gt_st *st, gt_st_tensor *t) {
    if (st->n == st->cap) {
        int64_t cap = st->cap ? 2 * st->cap : 64;
        gt_st_tensor *p = realloc(st->tensors, (size_t)cap * sizeof *p);
        if (!p) return -1;
        st->tensors = p;
        st->cap = cap;
    }
    st->tensors[st->n++] = *t;
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* The 8-byte length and the JSON header of file f. */
static json_t *read_header(const st_file *f, uint64_t *hlen_out, char *err, size_t errn) {
    const char *fn = f->path;
    if (f->len < 8)
        return gt_errf(err, errn, "safetensors: %s: file is %zu bytes, shorter than the 8-byte header length", fn,
                       f->len), NULL;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->buf[i];
    if (hlen > GT_ST_MAX_HEADER)
        return gt_errf(err, errn, "safetensors: %s: header length %llu is over the %u-byte limit (corrupt file?)", fn,
                       (unsigned long long)hlen, GT_ST_MAX_HEADER), NULL;
    if (hlen > f->len - 8)
        return gt_errf(err, errn, "safetensors: %s: header length %llu runs past the end of the %zu-byte file "
                       "(truncated?)", fn, (unsigned long long)hlen, f->len), NULL;
    const char *hdr = (const char *)f->buf + 8;
    if (hlen == 0 || hdr[0] != '{')
        return gt_errf(err, errn, "safetensors: %s: header does not start with '{'", fn), NULL;
    json_error_t je;
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gt_errf(err, errn, "safetensors: %s: header JSON invalid at byte %d: %s", fn, je.position,
                       gt_err_printable(je.text)), NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return gt_errf(err, errn, "safetensors: %s: header is not a JSON object", fn), NULL;
    }
    *hlen_out = hlen;
    return root;
}

/* "__metadata__": string values only; kept from the first file (shards repeat it). */
static int read_metadata(gt_st *st, int fi, json_t *val, const char *fn, char *err, size_t errn) {
    if (!json_is_object(val)) return gt_errf(err, errn, "safetensors: %s: \"__metadata__\" is not an object", fn);
    const char *mk;
    json_t *mv;
    json_object_foreach(val, mk, mv) {
        if (!json_is_string(mv))
            return gt_errf(err, errn, "safetensors: %s: \"__metadata__\".\"%s\" is not a string", fn, mk);
    }
    if (fi != 0) return 0;
    st->meta = calloc(2 * json_object_size(val) + 1, sizeof *st->meta);
    if (!st->meta) return gt_errf(err, errn, "safetensors: %s: out of memory", fn);
    json_object_foreach(val, mk, mv) {
        st->meta[2 * st->n_meta] = dup_str(mk);
        st->meta[2 * st->n_meta + 1] = dup_str(json_string_value(mv));
        st->n_meta++;
        if (!st->meta[2 * st->n_meta - 2] || !st->meta[2 * st->n_meta - 1])
            return gt_errf(err, errn, "safetensors: %s: out of memory", fn);
    }
    return 0;
}

/* One tensor entry: dtype, shape and data_offsets [b, e) checked against data_len bytes of data.
 * Fills t except name and data. */
static int read_entry(const char *fn, const char *key, json_t *val, uint64_t data_len, gt_st_tensor *t,
                      uint64_t *b, uint64_t *e, char *err, size_t errn) {
    if (!json_is_object(val)) return gt_errf(err, errn, "safetensors: %s: tensor '%s': entry is not an object", fn, key);
    json_t *dt = json_object_get(val, "dtype");
    if (!json_is_string(dt))
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': \"dtype\" is missing or not a string", fn, key);
    int d = 0;
    while (d < GT_ST_N_DTYPES && strcmp(dtypes[d].name, json_string_value(dt))) d++;
    if (d == GT_ST_N_DTYPES)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': unknown dtype \"%s\"", fn, key, json_string_value(dt));
    t->dtype = (gt_st_dtype)d;
    if (parse_dims(json_object_get(val, "shape"), fn, key, "shape", GT_ST_MAX_DIMS, t->shape, &t->ndim, err, errn))
        return -1;
    int64_t off[2];
    int noff;
    if (parse_dims(json_object_get(val, "data_offsets"), fn, key, "data_offsets", 2, off, &noff, err, errn)) return -1;
    if (noff != 2)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': \"data_offsets\" needs 2 entries, has %d", fn, key, noff);
    /* element count and byte size must not overflow */
    uint64_t ne = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t sz = (uint64_t)t->shape[i];
        if (sz && ne > (uint64_t)INT64_MAX / sz)
            return gt_errf(err, errn, "safetensors: %s: tensor '%s': shape overflows 64 bits", fn, key);
        ne *= sz;
    }
    uint64_t es = dtypes[d].size;
    if (ne > UINT64_MAX / es)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': byte size overflows 64 bits", fn, key);
    t->n_elements = (int64_t)ne;
    t->n_bytes = ne * es;
    *b = (uint64_t)off[0], *e = (uint64_t)off[1];
    if (*b > *e)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu] end before they begin", fn,
                       key, (unsigned long long)*b, (unsigned long long)*e);
    if (*e - *b != t->n_bytes)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s "
                       "of %lld elements needs %llu", fn, key, (unsigned long long)*b, (unsigned long long)*e,
                       (unsigned long long)(*e - *b), dtypes[d].name, (long long)ne, (unsigned long long)t->n_bytes);
    if (*e > data_len)
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu] run past the %llu-byte "
                       "data section (truncated file?)", fn, key, (unsigned long long)*b, (unsigned long long)*e,
                       (unsigned long long)data_len);
    return 0;
}

/* The tensors must tile the data section exactly: no overlap, no gap, nothing left over. */
static int check_tiling(const gt_st *st, span *spans, int64_t ns, uint64_t data_len, const char *fn, char *err,
                        size_t errn) {
    qsort(spans, (size_t)ns, sizeof *spans, by_begin);
    uint64_t at = 0;
    for (int64_t i = 0; i < ns; i++) {
        const char *name = st->tensors[spans[i].idx].name;
        if (spans[i].begin < at)
            return gt_errf(err, errn, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                           "ending at %llu", fn, name, (unsigned long long)spans[i].begin,
                           (unsigned long long)spans[i].end, st->tensors[spans[i - 1].idx].name,
                           (unsigned long long)at);
        if (spans[i].begin > at)
            return gt_errf(err, errn, "safetensors: %s: tensor '%s': data_offsets begin at %llu, leaving a gap after "
                           "byte %llu", fn, name, (unsigned long long)spans[i].begin, (unsigned long long)at);
        at = spans[i].end;
    }
    if (at != data_len)
        return gt_errf(err, errn, "safetensors: %s: the tensors cover %llu bytes of the %llu-byte data section", fn,
                       (unsigned long long)at, (unsigned long long)data_len);
    return 0;
}

/* Parse file f (already in st->files[fi]) and append its tensors to st. */
static int parse_file(gt_st *st, int fi, char *err, size_t errn) {
    const st_file *f = &st->files[fi];
    const char *fn = f->path;
    uint64_t hlen;
    json_t *root = read_header(f, &hlen, err, errn);
    if (!root) return -1;
    uint64_t data_len = f->len - 8 - hlen;
    size_t nt = json_object_size(root);
    span *spans = malloc((nt ? nt : 1) * sizeof *spans);
    int rc = spans ? 0 : gt_errf(err, errn, "safetensors: %s: out of memory", fn);
    int64_t ns = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (rc) break;
        if (!strcmp(key, "__metadata__")) {
            rc = read_metadata(st, fi, val, fn, err, errn);
            continue;
        }
        gt_st_tensor t = {0};
        uint64_t b = 0, e = 0;
        rc = read_entry(fn, key, val, data_len, &t, &b, &e, err, errn);
        if (rc) break;
        t.data = f->buf + 8 + hlen + b;
        t.file = f->path;
        t.name = dup_str(key);
        if (!t.name || push_tensor(st, &t)) {
            free((char *)t.name);
            rc = gt_errf(err, errn, "safetensors: %s: out of memory", fn);
            break;
        }
        spans[ns++] = (span){b, e, st->n - 1};
    }
    if (!rc) rc = check_tiling(st, spans, ns, data_len, fn, err, errn);
    free(spans);
    json_decref(root);
    return rc;
}

/* Sort by name; a name in two files (shards) is an error. */
static int finish(gt_st *st, char *err, size_t errn) {
    if (st->n > 1) qsort(st->tensors, (size_t)st->n, sizeof *st->tensors, by_name);
    for (int64_t i = 1; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
            return gt_errf(err, errn, "safetensors: tensor '%s' is in both %s and %s", st->tensors[i].name,
                        st->tensors[i - 1].file, st->tensors[i].file);
    return 0;
}

static gt_st *new_handle(int n_files) {
    gt_st *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->files = calloc((size_t)n_files, sizeof *st->files);
    if (!st->files) {
        free(st);
        return NULL;
    }
    return st;
}

int gt_st_open_buffer(const uint8_t *buf, size_t len, const char *name, gt_st **out, char *err,
                      size_t errn) {
    *out = NULL;
    gt_st *st = new_handle(1);
    if (!st || !(st->files[0].path = dup_str(name ? name : "<buffer>"))) {
        gt_st_close(st);
        return gt_errf(err, errn, "safetensors: out of memory");
    }
    st->n_files = 1;
    st->files[0].buf = buf;
    st->files[0].len = len;
    if (parse_file(st, 0, err, errn) || finish(st, err, errn)) {
        gt_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

static int map_file(st_file *f, char *err, size_t errn) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gt_errf(err, errn, "safetensors: %s: cannot open: %s", f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb)) {
        int e = errno;
        close(fd);
        return gt_errf(err, errn, "safetensors: %s: cannot stat: %s", f->path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return gt_errf(err, errn, "safetensors: %s: not a regular file", f->path);
    }
    f->len = (size_t)sb.st_size;
    if (f->len) {
        void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            f->len = 0;
            return gt_errf(err, errn, "safetensors: %s: cannot map: %s", f->path, strerror(e));
        }
        f->buf = p;
        f->mapped = true;
    }
    close(fd);
    return 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int open_index(const char *index, gt_st **out, char *err, size_t errn) {
    json_error_t je;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &je);
    if (!root) return gt_errf(err, errn, "safetensors: %s: line %d: %s", index, je.line, gt_err_printable(je.text));
    int rc = 0;
    gt_st *st = NULL;
    char *dir = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        rc = gt_errf(err, errn, "safetensors: %s: \"weight_map\" is missing or not an object", index);
        goto done;
    }
    /* distinct shard names, in first-seen order */
    size_t nw = json_object_size(wm);
    const char **shards = calloc(nw ? nw : 1, sizeof *shards);
    st = new_handle(nw ? (int)nw : 1);
    const char *slash = strrchr(index, '/');
    dir = slash ? strndup(index, (size_t)(slash - index)) : dup_str(".");
    if (!shards || !st || !dir) {
        free(shards);
        rc = gt_errf(err, errn, "safetensors: %s: out of memory", index);
        goto done;
    }
    int ns = 0;
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const char *s = json_string_value(val);
        if (!s || !*s || s[0] == '/' || strstr(s, "..")) {
            free(shards);
            rc = gt_errf(err, errn, "safetensors: %s: tensor '%s': shard \"%s\" is not a plain file name in this directory", index, key, s ? s : "(not a string)");
            goto done;
        }
        int k = 0;
        while (k < ns && strcmp(shards[k], s)) k++;
        if (k == ns) shards[ns++] = s;
    }
    for (int k = 0; k < ns && !rc; k++) {
        st_file *f = &st->files[k];
        if (!(f->path = gt_path_join(dir, shards[k]))) rc = gt_errf(err, errn, "safetensors: %s: out of memory", index);
        else {
            st->n_files = k + 1;
            rc = map_file(f, err, errn);
            if (!rc) rc = parse_file(st, k, err, errn);
        }
    }
    free(shards);
    if (!rc) rc = finish(st, err, errn);
    json_object_foreach(wm, key, val) {
        if (rc) break;
        const gt_st_tensor *t = gt_st_find(st, key);
        if (!t) rc = gt_errf(err, errn, "safetensors: %s: tensor '%s' is listed for %s but not in it", index, key,
                          json_string_value(val));
        else if (!ends_with(t->file, json_string_value(val)) || strlen(t->file) <= strlen(json_string_value(val)) ||
                 t->file[strlen(t->file) - strlen(json_string_value(val)) - 1] != '/')
            rc = gt_errf(err, errn, "safetensors: %s: tensor '%s' is listed for %s but found in %s", index, key,
                      json_string_value(val), t->file);
    }
done:
    free(dir);
    json_decref(root);
    if (rc) {
        gt_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

int gt_st_open(const char *path, gt_st **out, char *err, size_t errn) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb)) return gt_errf(err, errn, "safetensors: %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char *idx = gt_path_join(path, "model.safetensors.index.json");
        char *one = gt_path_join(path, "model.safetensors");
        int rc;
        if (!idx || !one) rc = gt_errf(err, errn, "safetensors: out of memory");
        else if (access(idx, F_OK) == 0) rc = open_index(idx, out, err, errn);
        else if (access(one, F_OK) == 0) rc = gt_st_open(one, out, err, errn);
        else rc = gt_errf(err, errn, "safetensors: %s: no model.safetensors.index.json or model.safetensors", path);
        free(idx);
        free(one);
        return rc;
    }
    if (ends_with(path, ".json")) return open_index(path, out, err, errn);
    gt_st *st = new_handle(1);
    if (!st || !(st->files[0].path = dup_str(path))) {
        gt_st_close(st);
        return gt_errf(err, errn, "safetensors: out of memory");
    }
    st->n_files = 1;
    if (map_file(&st->files[0], err, errn) || parse_file(st, 0, err, errn) || finish(st, err, errn)) {
        gt_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

int gt_st_read_f32(const gt_st_tensor *t, float *dst, char *err, size_t errn) {
    int64_t n = t->n_elements;
    const uint8_t *p = t->data;
    bool big = n > (1 << 16);
    switch (t->dtype) {
    case GT_ST_F32:
        memcpy(dst, p, (size_t)n * 4);
        return 0;
    case GT_ST_F16:
#pragma omp parallel for schedule(static) if (big)
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = gt_f16_to_f32(h);
        }
        return 0;
    case GT_ST_BF16:
#pragma omp parallel for schedule(static) if (big)
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = gt_bf16_to_f32(h);
        }
        return 0;
    case GT_ST_F64:
#pragma omp parallel for schedule(static) if (big)
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return gt_errf(err, errn, "safetensors: %s: tensor '%s': dtype %s cannot be read as fp32 (F32, F16, BF16, F64)",
                    t->file, t->name, dtypes[t->dtype].name);
    }
}

/* ---------------------------------------------------------------- writing */

static int by_entry_name(const void *a, const void *b) {
    const gt_st_entry *x = *(const gt_st_entry *const *)a, *y = *(const gt_st_entry *const *)b;
    return strcmp(x->name, y->name);
}

int gt_st_write(const char *path, const gt_st_entry *entries, size_t n, gt_st_dtype dtype,
                const char *const *meta, char *err, size_t errn) {
    if (dtype != GT_ST_F32 && dtype != GT_ST_BF16)
        return gt_errf(err, errn, "safetensors: %s: can write F32 or BF16, not %s", path, gt_st_dtype_name(dtype));
    const gt_st_entry **order = malloc((n ? n : 1) * sizeof *order);
    json_t *root = json_object();
    char *hdr = NULL;
    int rc = 0;
    if (!order || !root) {
        rc = gt_errf(err, errn, "safetensors: %s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) order[i] = &entries[i];
    qsort(order, n, sizeof *order, by_entry_name);
    if (meta && meta[0]) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m)) {
            rc = gt_errf(err, errn, "safetensors: %s: out of memory", path);
            goto done;
        }
        for (size_t i = 0; meta[i] && meta[i + 1]; i += 2)
            if (json_object_set_new(m, meta[i], json_string(meta[i + 1]))) {
                rc = gt_errf(err, errn, "safetensors: %s: metadata \"%s\": not valid UTF-8 or out of memory", path, meta[i]);
                goto done;
            }
    }
    size_t es = gt_st_dtype_size(dtype);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const gt_st_entry *e = order[i];
        if (i && !strcmp(e->name, order[i - 1]->name)) {
            rc = gt_errf(err, errn, "safetensors: %s: tensor '%s' given twice", path, e->name);
            goto done;
        }
        if (!strcmp(e->name, "__metadata__") || e->ndim < 0 || e->ndim > GT_ST_MAX_DIMS) {
            rc = gt_errf(err, errn, "safetensors: %s: tensor '%s': bad name or rank %d", path, e->name, e->ndim);
            goto done;
        }
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        uint64_t ne = 1;
        for (int d = 0; d < e->ndim; d++) {
            ne *= (uint64_t)e->shape[d];
            json_array_append_new(shape, json_integer(e->shape[d]));
        }
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + ne * es)));
        off += ne * es;
        if (!t || !shape || !offs || json_object_set_new(t, "dtype", json_string(gt_st_dtype_name(dtype))) ||
            json_object_set_new(t, "shape", shape) || json_object_set_new(t, "data_offsets", offs) ||
            json_array_size(shape) != (size_t)e->ndim || json_array_size(offs) != 2 ||
            json_object_set_new(root, e->name, t)) {
            rc = gt_errf(err, errn, "safetensors: %s: tensor '%s': name not valid UTF-8 or out of memory", path, e->name);
            goto done;
        }
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        rc = gt_errf(err, errn, "safetensors: %s: out of memory", path);
        goto done;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    if (padded > GT_ST_MAX_HEADER) {
        rc = gt_errf(err, errn, "safetensors: %s: header of %zu bytes over the %u-byte limit", path, padded, GT_ST_MAX_HEADER);
        goto done;
    }
    gt_atomic a;
    if (gt_atomic_open(path, &a, err, errn)) {
        rc = -1;
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, a.f) == 8 && fwrite(hdr, 1, hl, a.f) == hl;
    for (size_t i = hl; i < padded && ok; i++) ok = fputc(' ', a.f) != EOF;
    enum { CHUNK = 1 << 16 };
    uint16_t *buf = dtype == GT_ST_BF16 ? malloc(CHUNK * sizeof *buf) : NULL;
    if (dtype == GT_ST_BF16 && !buf) ok = false;
    for (size_t i = 0; i < n && ok; i++) {
        const gt_st_entry *e = order[i];
        int64_t ne = 1;
        for (int d = 0; d < e->ndim; d++) ne *= e->shape[d];
        if (dtype == GT_ST_F32) {
            ok = ne == 0 || fwrite(e->data, 4, (size_t)ne, a.f) == (size_t)ne;
            continue;
        }
        for (int64_t s = 0; s < ne && ok; s += CHUNK) {
            int64_t k = ne - s < CHUNK ? ne - s : CHUNK;
            for (int64_t j = 0; j < k; j++) buf[j] = gt_f32_to_bf16(e->data[s + j]);
            ok = fwrite(buf, 2, (size_t)k, a.f) == (size_t)k;
        }
    }
    free(buf);
    if (!ok) {
        int e = errno;
        gt_atomic_abort(&a);
        rc = gt_errf(err, errn, "safetensors: %s: write failed: %s", path, e ? strerror(e) : "out of memory");
        goto done;
    }
    if (gt_atomic_commit(&a, err, errn)) rc = -1;
done:
    free(hdr);
    free(order);
    json_decref(root);
    return rc;
}
