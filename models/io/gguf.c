#include "models/io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/quant.h"
#include "util/half.h"
#include "util/err.h"

#define MAX_KEYS (1 << 20)
#define MAX_TENSORS (1 << 20)

typedef struct {
    const char *key;          /* NUL-terminated copy (points into the file until then) */
    uint64_t klen;
    uint32_t type;
    const uint8_t *val;       /* value bytes in the buffer */
    uint32_t elem;            /* arrays: element type */
    uint64_t count;           /* arrays: element count */
} kv_entry;

struct gt_gguf {
    char name[256];
    const uint8_t *buf;
    size_t len;
    bool mapped;
    uint32_t version;
    kv_entry *kv;
    int64_t n_kv;
    int64_t *by_key;          /* kv indices sorted by key (find_key); NULL while parsing */
    gt_gguf_tensor *tensors;
    int64_t n_tensors;
    char *strings;            /* storage of the key and tensor-name copies */
};

/* ---------------------------------------------------------------- bounds-checked reader */

typedef struct {
    const uint8_t *p, *end;
    const char *field;        /* what is being read, for messages */
} cursor;

static bool take(cursor *c, size_t n, const uint8_t **out) {
    if ((size_t)(c->end - c->p) < n) return false;
    *out = c->p;
    c->p += n;
    return true;
}

static bool rd_u32(cursor *c, uint32_t *v) {
    const uint8_t *p;
    if (!take(c, 4, &p)) return false;
    memcpy(v, p, 4);
    return true;
}

static bool rd_u64(cursor *c, uint64_t *v) {
    const uint8_t *p;
    if (!take(c, 8, &p)) return false;
    memcpy(v, p, 8);
    return true;
}

static bool rd_str(cursor *c, const uint8_t **s, uint64_t *len) {
    if (!rd_u64(c, len)) return false;
    if (*len > (uint64_t)(c->end - c->p)) return false;
    return take(c, (size_t)*len, s);
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GT_GGUF_UINT8: case GT_GGUF_INT8: case GT_GGUF_BOOL: return 1;
    case GT_GGUF_UINT16: case GT_GGUF_INT16: return 2;
    case GT_GGUF_UINT32: case GT_GGUF_INT32: case GT_GGUF_FLOAT32: return 4;
    case GT_GGUF_UINT64: case GT_GGUF_INT64: case GT_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Skip one value of type t (not an array), checking bounds. */
static bool skip_value(cursor *c, uint32_t t) {
    const uint8_t *p;
    if (t == GT_GGUF_STRING) {
        uint64_t len;
        return rd_str(c, &p, &len);
    }
    size_t sz = scalar_size(t);
    return sz && take(c, sz, &p);
}

/* ---------------------------------------------------------------- ggml types */

typedef struct {
    const char *name;
    int block;        /* elements per block */
    int bytes;        /* bytes per block */
} type_info;

static const type_info *type_of(uint32_t t) {
    static const type_info f32 = {"F32", 1, 4}, f16 = {"F16", 1, 2}, bf16 = {"BF16", 1, 2},
                           q4_0 = {"Q4_0", 32, 18}, q4_1 = {"Q4_1", 32, 20}, q5_0 = {"Q5_0", 32, 22},
                           q5_1 = {"Q5_1", 32, 24}, q8_0 = {"Q8_0", 32, 34}, q2_k = {"Q2_K", 256, 84},
                           q3_k = {"Q3_K", 256, 110}, q4_k = {"Q4_K", 256, 144},
                           q5_k = {"Q5_K", 256, 176}, q6_k = {"Q6_K", 256, 210},
                           q8_k = {"Q8_K", 256, 292}, f64 = {"F64", 1, 8};
    switch (t) {
    case 0: return &f32;
    case 1: return &f16;
    case 2: return &q4_0;
    case 3: return &q4_1;
    case 6: return &q5_0;
    case 7: return &q5_1;
    case 8: return &q8_0;
    case 10: return &q2_k;
    case 11: return &q3_k;
    case 12: return &q4_k;
    case 13: return &q5_k;
    case 14: return &q6_k;
    case 15: return &q8_k;
    case 28: return &f64;
    case 30: return &bf16;
    default: return NULL;
    }
}

const char *gt_gguf_type_name(uint32_t type) {
    const type_info *ti = type_of(type);
    return ti ? ti->name : "unknown";
}

/* ---------------------------------------------------------------- parse */

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sets *dup to the first name that occurs twice among n records (a const char * at byte `at`
 * of each), or NULL. -1 when out of memory. */
static int first_duplicate(const void *recs, size_t n, size_t stride, size_t at, const char **dup) {
    *dup = NULL;
    if (n < 2) return 0;
    const char **names = malloc(n * sizeof *names);
    if (!names) return -1;
    for (size_t i = 0; i < n; i++) memcpy(&names[i], (const char *)recs + i * stride + at, sizeof *names);
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n && !*dup; i++)
        if (!strcmp(names[i - 1], names[i])) *dup = names[i];
    free(names);
    return 0;
}

/* The parse, in passes over the buffer: header; metadata entries (bounds and types); the tensor
 * directory (bounds); then, with the string store sized, the keys and names copied and the
 * directory decoded; last the data offsets checked against the file. Each stage returns -1 with
 * a message naming the file and the entry. */
typedef struct {
    gt_gguf *g;
    cursor c;
    const char *name;
    uint64_t n_tensors;
    size_t str_bytes; /* bytes the key and name copies need */
    char *sp;         /* next free byte of g->strings */
    char *err;
    size_t errn;
} parser;

#define FAIL(...) return snprintf(P->err, P->errn, __VA_ARGS__), -1
#define SHORT(n) (int)((n) > 200 ? 200 : (n)) /* names quoted in messages are cut at 200 bytes */

static int parse_header(parser *P, uint64_t *n_kv) {
    gt_gguf *g = P->g;
    const char *name = P->name;
    uint32_t magic;
    if (!rd_u32(&P->c, &magic)) FAIL("%s: too short for a GGUF header", name);
    if (memcmp(g->buf, "GGUF", 4) != 0) FAIL("%s: not a GGUF file (bad magic)", name);
    if (!rd_u32(&P->c, &g->version)) FAIL("%s: truncated header (version)", name);
    if (g->version < 2 || g->version > 3)
        FAIL("%s: GGUF version %u is not supported (2 or 3)%s", name, g->version,
             g->version >> 24 && !(g->version & 0xFFFFFF) ? ": a big-endian file" : "");
    if (!rd_u64(&P->c, &P->n_tensors) || !rd_u64(&P->c, n_kv)) FAIL("%s: truncated header (counts)", name);
    if (P->n_tensors > MAX_TENSORS)
        FAIL("%s: tensor count %llu is implausible", name, (unsigned long long)P->n_tensors);
    if (*n_kv > MAX_KEYS) FAIL("%s: metadata count %llu is implausible", name, (unsigned long long)*n_kv);
    /* every key and name costs at least 8 bytes in the file: a cheap sanity bound */
    if ((*n_kv + P->n_tensors) * 8 > g->len)
        FAIL("%s: counts (%llu keys, %llu tensors) exceed the file size", name, (unsigned long long)*n_kv,
             (unsigned long long)P->n_tensors);
    g->kv = calloc((size_t)(*n_kv ? *n_kv : 1), sizeof *g->kv);
    g->tensors = calloc((size_t)(P->n_tensors ? P->n_tensors : 1), sizeof *g->tensors);
    if (!g->kv || !g->tensors) FAIL("%s: out of memory", name);
    return 0;
}

/* An array value: its header, then its elements skipped with bounds checks. */
static int scan_array(parser *P, kv_entry *e, const uint8_t *k, uint64_t klen) {
    cursor *c = &P->c;
    const char *name = P->name;
    if (!rd_u32(c, &e->elem) || !rd_u64(c, &e->count))
        FAIL("%s: metadata '%.*s': truncated array header", name, SHORT(klen), k);
    e->val = c->p;
    if (e->elem == GT_GGUF_ARRAY || (e->elem != GT_GGUF_STRING && !scalar_size(e->elem)))
        FAIL("%s: metadata '%.*s': unsupported array element type %u", name, SHORT(klen), k, e->elem);
    if (e->elem != GT_GGUF_STRING) {
        size_t sz = scalar_size(e->elem);
        if (e->count > (uint64_t)(c->end - c->p) / sz)
            FAIL("%s: metadata '%.*s': array of %llu runs past the end of the file", name, SHORT(klen), k,
                 (unsigned long long)e->count);
        c->p += e->count * sz;
        return 0;
    }
    if (e->count > (uint64_t)(c->end - c->p) / 8)
        FAIL("%s: metadata '%.*s': array of %llu strings runs past the end of the file", name, SHORT(klen), k,
             (unsigned long long)e->count);
    for (uint64_t j = 0; j < e->count; j++)
        if (!skip_value(c, GT_GGUF_STRING))
            FAIL("%s: metadata '%.*s': string %llu runs past the end of the file", name, SHORT(klen), k,
                 (unsigned long long)j);
    return 0;
}

static int scan_metadata(parser *P, uint64_t n_kv) {
    cursor *c = &P->c;
    const char *name = P->name;
    for (uint64_t i = 0; i < n_kv; i++) {
        const uint8_t *k;
        uint64_t klen;
        uint32_t t;
        if (!rd_str(c, &k, &klen)) FAIL("%s: metadata entry %llu: truncated key", name, (unsigned long long)i);
        if (!rd_u32(c, &t)) FAIL("%s: metadata '%.*s': truncated type", name, SHORT(klen), k);
        kv_entry *e = &P->g->kv[i];
        e->key = (const char *)k; /* fixed up to a copy by copy_keys */
        e->type = t;
        e->val = c->p;
        P->str_bytes += klen + 1;
        if (t == GT_GGUF_ARRAY) {
            if (scan_array(P, e, k, klen)) return -1;
        } else if (t != GT_GGUF_STRING && !scalar_size(t)) {
            FAIL("%s: metadata '%.*s': unknown value type %u", name, SHORT(klen), k, t);
        } else if (!skip_value(c, t)) {
            FAIL("%s: metadata '%.*s': truncated value (runs past the end of the file)", name, SHORT(klen), k);
        }
        e->klen = klen;
    }
    P->g->n_kv = (int64_t)n_kv;
    return 0;
}

static int scan_tensor_dir(parser *P) {
    cursor *c = &P->c;
    const char *name = P->name;
    for (uint64_t i = 0; i < P->n_tensors; i++) {
        const uint8_t *s, *p;
        uint64_t slen;
        uint32_t nd;
        if (!rd_str(c, &s, &slen)) FAIL("%s: tensor %llu: truncated name", name, (unsigned long long)i);
        if (!rd_u32(c, &nd)) FAIL("%s: tensor '%.*s': truncated dimension count", name, SHORT(slen), s);
        if (nd < 1 || nd > 4) FAIL("%s: tensor '%.*s': %u dimensions (1 to 4 supported)", name, SHORT(slen), s, nd);
        if (!take(c, 8 * (size_t)nd + 4 + 8, &p))
            FAIL("%s: tensor '%.*s': truncated directory entry", name, SHORT(slen), s);
        P->str_bytes += slen + 1;
    }
    return 0;
}

static int copy_keys(parser *P) {
    gt_gguf *g = P->g;
    g->strings = malloc(P->str_bytes ? P->str_bytes : 1);
    if (!g->strings) FAIL("%s: out of memory", P->name);
    P->sp = g->strings;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const uint8_t *k = (const uint8_t *)g->kv[i].key;
        uint64_t klen = g->kv[i].klen;
        memcpy(P->sp, k, (size_t)klen);
        P->sp[klen] = 0;
        if (strlen(P->sp) != klen) FAIL("%s: metadata key %lld contains a NUL byte", P->name, (long long)i);
        g->kv[i].key = P->sp;
        P->sp += klen + 1;
    }
    return 0;
}

static int read_alignment(parser *P, uint64_t *align) {
    *align = 32;
    if (gt_gguf_find_key(P->g, "general.alignment") < 0) return 0;
    char e2[256];
    int64_t a;
    if (gt_gguf_get_int(P->g, "general.alignment", &a, e2, sizeof e2) != 0 || a < 1 || a > (1 << 20) || (a & (a - 1)))
        FAIL("%s: general.alignment must be a power of two", P->name);
    *align = (uint64_t)a;
    return 0;
}

/* One directory entry, already bounds-checked by scan_tensor_dir. */
static int read_tensor_entry(parser *P, uint64_t i, gt_gguf_tensor *t) {
    cursor *c = &P->c;
    const char *name = P->name;
    const uint8_t *s = NULL;
    uint64_t slen = 0;
    uint32_t nd = 0;
    rd_str(c, &s, &slen);
    rd_u32(c, &nd);
    memcpy(P->sp, s, (size_t)slen);
    P->sp[slen] = 0;
    t->name = P->sp;
    P->sp += slen + 1;
    if (strlen(t->name) != slen) FAIL("%s: tensor %llu: name contains a NUL byte", name, (unsigned long long)i);
    t->ndim = (int)nd;
    int64_t n = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v = 0;
        rd_u64(c, &v);
        if (v == 0 || v > (uint64_t)INT64_MAX / (uint64_t)n)
            FAIL("%s: tensor '%s': dimension %u (%llu) is zero or overflows", name, t->name, d, (unsigned long long)v);
        t->dims[d] = (int64_t)v;
        n *= (int64_t)v;
    }
    t->n_elements = n;
    rd_u32(c, &t->type);
    rd_u64(c, &t->offset);
    const type_info *ti = type_of(t->type);
    if (!ti) FAIL("%s: tensor '%s': unknown ggml type %u", name, t->name, t->type);
    if (t->dims[0] % ti->block)
        FAIL("%s: tensor '%s': first dimension %lld is not a multiple of the %s block (%d)", name, t->name,
             (long long)t->dims[0], ti->name, ti->block);
    /* the byte size must not wrap: no tensor can be larger than the file */
    if ((uint64_t)(n / ti->block) > P->g->len / (uint64_t)ti->bytes)
        FAIL("%s: tensor '%s': %lld elements of %s exceed the file size (%zu bytes)", name, t->name, (long long)n,
             ti->name, P->g->len);
    t->n_bytes = (uint64_t)(n / ti->block) * (uint64_t)ti->bytes;
    return 0;
}

static const kv_entry *sort_kv; /* qsort has no context argument; parsing is single-threaded */
static int cmp_kv_index(const void *a, const void *b) {
    return strcmp(sort_kv[*(const int64_t *)a].key, sort_kv[*(const int64_t *)b].key);
}

/* Lookups return the first match, so a repeated key or tensor name would hide data. The keys'
 * sorted order is kept: gt_gguf_find_key (every getter) then searches instead of scanning. */
static int check_duplicates(parser *P) {
    gt_gguf *g = P->g;
    const char *dup;
    g->by_key = malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *g->by_key);
    if (!g->by_key) FAIL("%s: out of memory", P->name);
    for (int64_t i = 0; i < g->n_kv; i++) g->by_key[i] = i;
    sort_kv = g->kv;
    qsort(g->by_key, (size_t)g->n_kv, sizeof *g->by_key, cmp_kv_index);
    for (int64_t i = 1; i < g->n_kv; i++)
        if (!strcmp(g->kv[g->by_key[i - 1]].key, g->kv[g->by_key[i]].key))
            FAIL("%s: metadata key '%.200s' appears more than once", P->name, g->kv[g->by_key[i]].key);
    if (first_duplicate(g->tensors, (size_t)P->n_tensors, sizeof *g->tensors, offsetof(gt_gguf_tensor, name), &dup))
        FAIL("%s: out of memory", P->name);
    if (dup) FAIL("%s: tensor name '%.200s' appears more than once", P->name, dup);
    return 0;
}

/* Tensor data starts at the first aligned offset after the directory. */
static int place_data(parser *P, uint64_t align) {
    gt_gguf *g = P->g;
    size_t len = g->len;
    size_t header_end = (size_t)(P->c.p - g->buf);
    size_t data_start = (size_t)((header_end + align - 1) / align * align);
    if (P->n_tensors && data_start > len) FAIL("%s: truncated before the tensor data", P->name);
    for (uint64_t i = 0; i < P->n_tensors; i++) {
        gt_gguf_tensor *t = &g->tensors[i];
        if (t->offset % align)
            FAIL("%s: tensor '%s': offset %llu is not aligned to %llu", P->name, t->name,
                 (unsigned long long)t->offset, (unsigned long long)align);
        if (t->offset > len - data_start || t->n_bytes > len - data_start - t->offset)
            FAIL("%s: tensor '%s': data (%llu bytes at data offset %llu) runs past the end of the file (%zu bytes)",
                 P->name, t->name, (unsigned long long)t->n_bytes, (unsigned long long)t->offset, len);
        t->data = g->buf + data_start + t->offset;
    }
    g->n_tensors = (int64_t)P->n_tensors;
    return 0;
}

#undef FAIL
#undef SHORT

int gt_gguf_open_buffer(const uint8_t *buf, size_t len, const char *name, gt_gguf **out,
                        char *err, size_t errn) {
    *out = NULL;
    gt_gguf *g = calloc(1, sizeof *g);
    if (!g) return snprintf(err, errn, "%s: out of memory", name), -1;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->buf = buf;
    g->len = len;
    parser P = {.g = g, .c = {buf, buf + len, "header"}, .name = name, .err = err, .errn = errn};
    uint64_t n_kv, align;
    const uint8_t *tensor_dir = NULL;
    int rc = parse_header(&P, &n_kv) || scan_metadata(&P, n_kv);
    if (!rc) {
        tensor_dir = P.c.p;
        rc = scan_tensor_dir(&P) || copy_keys(&P) || read_alignment(&P, &align);
    }
    if (!rc) {
        P.c.p = tensor_dir;
        for (uint64_t i = 0; i < P.n_tensors && !rc; i++) rc = read_tensor_entry(&P, i, &g->tensors[i]);
    }
    if (!rc) rc = check_duplicates(&P) || place_data(&P, align);
    if (rc) {
        gt_gguf_close(g);
        return -1;
    }
    *out = g;
    return 0;
}

#define MAX_PARTS 64

/* Opens a regular, non-empty file read-only; -1 with a message. */
static int open_part(const char *path, int *fd, size_t *size, char *err, size_t errn) {
    *size = 0;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return gt_err_open(err, errn, path, errno);
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
        close(*fd);
        return snprintf(err, errn, "%s: empty, unreadable or not a regular file", path), -1;
    }
    *size = (size_t)st.st_size;
    return 0;
}

/* Places the n parts back to back in one read-only range of *total bytes. Parts whose offsets
 * are page multiples (every part but the last a whole number of pages, as the PyPI chunks are)
 * are mapped into a reserved range, so nothing is copied; otherwise they are read into memory. */
static void *map_parts(const int *fd, const size_t *size, int n, size_t total) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (n == 1) {
        void *m = mmap(NULL, total, PROT_READ, MAP_PRIVATE, fd[0], 0);
        return m == MAP_FAILED ? NULL : m;
    }
    bool aligned = true;
    for (int i = 0; i + 1 < n; i++) aligned = aligned && size[i] % page == 0;
    uint8_t *m = mmap(NULL, total, aligned ? PROT_NONE : PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    size_t off = 0;
    bool ok = true;
    for (int i = 0; ok && i < n; off += size[i++]) {
        if (aligned) {
            ok = mmap(m + off, size[i], PROT_READ, MAP_PRIVATE | MAP_FIXED, fd[i], 0) != MAP_FAILED;
            continue;
        }
        for (size_t got = 0; ok && got < size[i];) {
            ssize_t r = pread(fd[i], m + off + got, size[i] - got, (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            ok = r > 0; /* 0: the part shrank since fstat */
            if (ok) got += (size_t)r;
        }
    }
    if (ok && !aligned) ok = mprotect(m, total, PROT_READ) == 0;
    if (!ok) {
        munmap(m, total);
        return NULL;
    }
    return m;
}

int gt_gguf_open_parts(const char *const *paths, int n, gt_gguf **out, char *err, size_t errn) {
    *out = NULL;
    if (n < 1 || n > MAX_PARTS)
        return snprintf(err, errn, "gguf: %d parts given (1 to %d supported)", n, MAX_PARTS), -1;
    int fd[MAX_PARTS];
    size_t size[MAX_PARTS], total = 0;
    for (int i = 0; i < n; i++) {
        if (open_part(paths[i], &fd[i], &size[i], err, errn)) {
            while (i--) close(fd[i]);
            return -1;
        }
        total += size[i];
    }
    void *m = map_parts(fd, size, n, total);
    int saved = errno;
    for (int i = 0; i < n; i++) close(fd[i]);
    if (!m) return snprintf(err, errn, "%s: cannot map %zu bytes: %s", paths[0], total, strerror(saved)), -1;
    char name[256];
    if (n == 1) snprintf(name, sizeof name, "%s", paths[0]);
    else snprintf(name, sizeof name, "%s (+%d parts)", paths[0], n - 1);
    if (gt_gguf_open_buffer(m, total, name, out, err, errn) != 0) {
        munmap(m, total);
        return -1;
    }
    (*out)->mapped = true;
    return 0;
}

int gt_gguf_open(const char *path, gt_gguf **out, char *err, size_t errn) {
    *out = NULL;
    if (!strchr(path, ',') || access(path, F_OK) == 0) return gt_gguf_open_parts(&path, 1, out, err, errn);
    /* no file of that name: a list of parts */
    char *list = strdup(path);
    if (!list) return snprintf(err, errn, "%s: out of memory", path), -1;
    const char *parts[MAX_PARTS];
    int n = 0;
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (n == MAX_PARTS) {
            free(list);
            return snprintf(err, errn, "%s: more than %d parts", path, MAX_PARTS), -1;
        }
        parts[n++] = p;
    }
    int rc = n ? gt_gguf_open_parts(parts, n, out, err, errn)
               : (snprintf(err, errn, "'%s': no file named", path), -1);
    free(list);
    return rc;
}

void gt_gguf_close(gt_gguf *g) {
    if (!g) return;
    if (g->mapped) munmap((void *)g->buf, g->len);
    free(g->kv);
    free(g->by_key);
    free(g->tensors);
    free(g->strings);
    free(g);
}

/* ---------------------------------------------------------------- metadata access */

uint32_t gt_gguf_version(const gt_gguf *g) { return g->version; }
int64_t gt_gguf_n_keys(const gt_gguf *g) { return g->n_kv; }
const char *gt_gguf_key(const gt_gguf *g, int64_t i) { return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL; }

int64_t gt_gguf_find_key(const gt_gguf *g, const char *key) {
    if (!g->by_key) { /* during the parse, before the keys are sorted */
        for (int64_t i = 0; i < g->n_kv; i++)
            if (!strcmp(g->kv[i].key, key)) return i;
        return -1;
    }
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv[g->by_key[mid]].key, key);
        if (!c) return g->by_key[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static const kv_entry *need(const gt_gguf *g, const char *key, char *err, size_t errn) {
    int64_t i = gt_gguf_find_key(g, key);
    if (i < 0) {
        snprintf(err, errn, "%s: metadata key '%s' is missing", g->name, key);
        return NULL;
    }
    return &g->kv[i];
}

static bool scalar_as_double(uint32_t t, const uint8_t *p, double *out, bool *is_int) {
    *is_int = true;
    switch (t) {
    case GT_GGUF_UINT8: *out = *p; return true;
    case GT_GGUF_BOOL: *out = *p != 0; return true;
    case GT_GGUF_INT8: *out = (int8_t)*p; return true;
    case GT_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GT_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case GT_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GT_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case GT_GGUF_UINT64: { uint64_t v; memcpy(&v, p, 8); *out = (double)v; return true; }
    case GT_GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *out = (double)v; return true; }
    case GT_GGUF_FLOAT32: { float v; memcpy(&v, p, 4); *out = v; *is_int = false; return true; }
    case GT_GGUF_FLOAT64: { double v; memcpy(&v, p, 8); *out = v; *is_int = false; return true; }
    default: return false;
    }
}

int gt_gguf_get_int(const gt_gguf *g, const char *key, int64_t *out, char *err, size_t errn) {
    const kv_entry *e = need(g, key, err, errn);
    if (!e) return -1;
    double v;
    bool is_int;
    if (!scalar_as_double(e->type, e->val, &v, &is_int) || !is_int)
        return snprintf(err, errn, "%s: metadata '%s' is not an integer (type %u)", g->name, key, e->type), -1;
    if (e->type == GT_GGUF_UINT64 || e->type == GT_GGUF_INT64) memcpy(out, e->val, 8);
    else *out = (int64_t)v;
    return 0;
}

int gt_gguf_get_float(const gt_gguf *g, const char *key, double *out, char *err, size_t errn) {
    const kv_entry *e = need(g, key, err, errn);
    if (!e) return -1;
    bool is_int;
    if (!scalar_as_double(e->type, e->val, out, &is_int))
        return snprintf(err, errn, "%s: metadata '%s' is not a number (type %u)", g->name, key, e->type), -1;
    return 0;
}

int gt_gguf_get_str(const gt_gguf *g, const char *key, const char **s, uint64_t *len, char *err,
                    size_t errn) {
    const kv_entry *e = need(g, key, err, errn);
    if (!e) return -1;
    if (e->type != GT_GGUF_STRING)
        return snprintf(err, errn, "%s: metadata '%s' is not a string (type %u)", g->name, key, e->type), -1;
    memcpy(len, e->val, 8);
    *s = (const char *)e->val + 8;
    return 0;
}

int gt_gguf_get_array(const gt_gguf *g, const char *key, gt_gguf_vtype *elem, uint64_t *n,
                      char *err, size_t errn) {
    const kv_entry *e = need(g, key, err, errn);
    if (!e) return -1;
    if (e->type != GT_GGUF_ARRAY)
        return snprintf(err, errn, "%s: metadata '%s' is not an array (type %u)", g->name, key, e->type), -1;
    *elem = (gt_gguf_vtype)e->elem;
    *n = e->count;
    return 0;
}

void gt_gguf_free_strings(char **s, uint64_t n) {
    if (!s) return;
    for (uint64_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

int gt_gguf_get_strings(const gt_gguf *g, const char *key, char ***out, uint64_t *n, char *err,
                        size_t errn) {
    gt_gguf_vtype t;
    if (gt_gguf_get_array(g, key, &t, n, err, errn)) return -1;
    if (t != GT_GGUF_STRING)
        return snprintf(err, errn, "%s: metadata '%s' is not an array of strings", g->name, key), -1;
    const kv_entry *e = &g->kv[gt_gguf_find_key(g, key)];
    char **s = calloc((size_t)(*n ? *n : 1), sizeof *s);
    if (!s) return snprintf(err, errn, "%s: out of memory", g->name), -1;
    const uint8_t *p = e->val;
    for (uint64_t i = 0; i < *n; i++) {
        uint64_t len;
        memcpy(&len, p, 8); /* bounds were checked at open */
        s[i] = malloc((size_t)len + 1);
        if (!s[i]) {
            gt_gguf_free_strings(s, i);
            return snprintf(err, errn, "%s: out of memory", g->name), -1;
        }
        memcpy(s[i], p + 8, (size_t)len);
        s[i][len] = 0;
        p += 8 + len;
    }
    *out = s;
    return 0;
}

static int get_numbers(const gt_gguf *g, const char *key, void **out, uint64_t *n, bool as_int,
                       char *err, size_t errn) {
    gt_gguf_vtype t;
    if (gt_gguf_get_array(g, key, &t, n, err, errn)) return -1;
    size_t sz = scalar_size(t);
    if (!sz) return snprintf(err, errn, "%s: metadata '%s' is not a numeric array", g->name, key), -1;
    const kv_entry *e = &g->kv[gt_gguf_find_key(g, key)];
    void *buf = malloc((size_t)(*n ? *n : 1) * 4);
    if (!buf) return snprintf(err, errn, "%s: out of memory", g->name), -1;
    for (uint64_t i = 0; i < *n; i++) {
        double v = 0;
        bool is_int;
        scalar_as_double(t, e->val + i * sz, &v, &is_int);
        if (as_int && !(v >= INT32_MIN && v <= INT32_MAX && v == floor(v))) {
            free(buf);
            return snprintf(err, errn, "%s: metadata '%s'[%llu] = %g is not an int32", g->name, key,
                            (unsigned long long)i, v), -1;
        }
        if (as_int) ((int32_t *)buf)[i] = (int32_t)v;
        else ((float *)buf)[i] = (float)v;
    }
    *out = buf;
    return 0;
}

int gt_gguf_get_f32s(const gt_gguf *g, const char *key, float **out, uint64_t *n, char *err,
                     size_t errn) {
    return get_numbers(g, key, (void **)out, n, false, err, errn);
}

int gt_gguf_get_i32s(const gt_gguf *g, const char *key, int32_t **out, uint64_t *n, char *err,
                     size_t errn) {
    return get_numbers(g, key, (void **)out, n, true, err, errn);
}

/* ---------------------------------------------------------------- tensors */

int64_t gt_gguf_n_tensors(const gt_gguf *g) { return g->n_tensors; }

const gt_gguf_tensor *gt_gguf_tensor_at(const gt_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gt_gguf_tensor *gt_gguf_find_tensor(const gt_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static float rd_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return gt_f16_to_f32(h);
}

/* K-quant 6-bit scale and min of sub-block j from the 12 packed bytes */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_0: d, 16 bytes; low nibbles first half, high nibbles second, offset 8 */
static void deq_q4_0(const uint8_t *b, float *y) {
    float d = rd_half(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0xF) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

/* Q4_1: d, m, 16 bytes */
static void deq_q4_1(const uint8_t *b, float *y) {
    float d = rd_half(b), m = rd_half(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 0xF) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

/* Q5_1: d, m, qh[4], qs[16] (Q5_0 is in autograd/quant.c) */
static void deq_q5_1(const uint8_t *b, float *y) {
    float d = rd_half(b), m = rd_half(b + 2);
    const uint8_t *qhp = b + 4, *qs = qhp + 4;
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0xF) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = d * (float)x0 + m;
        y[j + 16] = d * (float)x1 + m;
    }
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin */
static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = rd_half(b + 80), dmin = rd_half(b + 82);
    /* each 32-byte half of qs holds 128 values as four 2-bit planes; 16 values per scale */
    for (int half = 0, is = 0; half < 2; half++, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int k = 0; k < 2; k++, is++) {
                float dl = d * (float)(sc[is] & 0xF), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * k + l] >> shift) & 3) - ml;
            }
}

/* Q3_K: hmask[32], qs[64], scales[12] (sixteen 6-bit, offset 32), d */
static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *ps = b + 96;
    float d = rd_half(b + 108);
    float dl[16];
    for (int i = 0; i < 16; i++) { /* low nibbles in bytes 0..7, high 2-bit pairs in 8..11 */
        int lo = (i < 8 ? ps[i] : ps[i - 8] >> 4) & 0xF, hi = (ps[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        dl[i] = d * (float)((lo | hi << 4) - 32);
    }
    /* the mask bit of plane p (0..7 over the whole block) adds 4 when set: a clear one subtracts */
    for (int half = 0, is = 0, bit = 0; half < 2; half++, q += 32)
        for (int shift = 0; shift < 8; shift += 2, bit++)
            for (int k = 0; k < 2; k++, is++)
                for (int l = 0; l < 16; l++) {
                    int i = 16 * k + l, v = ((q[i] >> shift) & 3) - ((hm[i] >> bit) & 1 ? 0 : 4);
                    *y++ = dl[is] * (float)v;
                }
}

/* Q5_K: d, dmin, scales[12], qh[32], qs[128] */
static void deq_q5_k(const uint8_t *b, float *y) {
    float d = rd_half(b), dmin = rd_half(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *q = b + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
        uint8_t s1, m1, s2, m2;
        scale_min_k4(is, sc, &s1, &m1);
        scale_min_k4(is + 1, sc, &s2, &m2);
        float d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2;
        for (int l = 0; l < 32; l++) {
            y[j + l] = d1 * (float)((q[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - mm1;
            y[j + 32 + l] = d2 * (float)((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - mm2;
        }
    }
}

static void deq_block(uint32_t type, const uint8_t *b, float *y) {
    switch (type) {
    case 6: case 8: case 12: case 14: gt_qt_block_f32(type, b, y); break; /* the kept types */
    case 2: deq_q4_0(b, y); break;
    case 3: deq_q4_1(b, y); break;
    case 7: deq_q5_1(b, y); break;
    case 10: deq_q2_k(b, y); break;
    case 11: deq_q3_k(b, y); break;
    case 13: deq_q5_k(b, y); break;
    }
}

int gt_gguf_dequant(const gt_gguf *g, const gt_gguf_tensor *t, float *out, char *err, size_t errn) {
    const type_info *ti = type_of(t->type);
    switch (t->type) {
    case 0:
        memcpy(out, t->data, (size_t)t->n_elements * 4);
        return 0;
    case 1:
        for (int64_t i = 0; i < t->n_elements; i++) out[i] = rd_half(t->data + 2 * i);
        return 0;
    case 30:
        for (int64_t i = 0; i < t->n_elements; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            out[i] = gt_bf16_to_f32(h);
        }
        return 0;
    case 28:
        for (int64_t i = 0; i < t->n_elements; i++) {
            double v;
            memcpy(&v, t->data + 8 * i, 8);
            out[i] = (float)v;
        }
        return 0;
    case 2: case 3: case 6: case 7: case 8: case 10: case 11: case 12: case 13: case 14: {
        int64_t nb = t->n_elements / ti->block;
#pragma omp parallel for schedule(static) if (nb > 4096)
        for (int64_t i = 0; i < nb; i++) deq_block(t->type, t->data + i * ti->bytes, out + i * ti->block);
        return 0;
    }
    default:
        return snprintf(err, errn, "%s: tensor '%s': dequantising %s is not supported", g->name,
                        t->name, ti ? ti->name : "this type"), -1;
    }
}

int gt_gguf_sniff(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f && strchr(path, ',')) {
        char first[1024];
        snprintf(first, sizeof first, "%.*s", (int)strcspn(path, ","), path);
        f = fopen(first, "rb");
    }
    if (!f) return -1;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}
