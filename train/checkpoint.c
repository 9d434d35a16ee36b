#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/io/h5io.h"
#include "util/fsutil.h"

#ifdef GT_REAL_DOUBLE
#define H5_REAL H5T_NATIVE_DOUBLE
#else
#define H5_REAL H5T_NATIVE_FLOAT
#endif

/* ---- seal: a checksum ahead of the HDF5 data ---------------------------------------------
 * libhdf5 crashes on some corrupted files instead of failing (a division by zero for a zero chunk
 * dimension, a NULL copy after a failed huge allocation, reads past freed memory: found by
 * fuzz_checkpoint, shown with libhdf5 alone). So a checkpoint is written with a 512-byte HDF5 user
 * block (libhdf5 skips it), and once the file is complete its first bytes get a magic, the file
 * size and a 64-bit hash of everything after the block. A reader checks them before libhdf5 sees
 * the file: a flipped bit, a truncated or extended file is refused by name. Files without the
 * magic (written before the seal) are read as before. */

#define SEAL_BLOCK 512
static const char seal_magic[8] = {'G', 'T', 'C', 'K', 'S', 'U', 'M', '1'};

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Running hash state: 4 lanes over 32-byte stripes (the rounds of xxHash64's design) */
typedef struct {
    uint64_t lane[4], len;
} seal_hash;
#define SEAL_P1 0x9E3779B185EBCA87ull
#define SEAL_P2 0xC2B2AE3D27D4EB4Full

static void seal_init(seal_hash *h) {
    for (int i = 0; i < 4; i++) h->lane[i] = SEAL_P1 * (uint64_t)(i + 1);
    h->len = 0;
}

/* n a multiple of 32 except on the last call */
static void seal_update(seal_hash *h, const unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * l, 8);
            h->lane[l] = rotl64(h->lane[l] + w * SEAL_P2, 31) * SEAL_P1;
        }
    for (; i < n; i++) h->lane[i % 4] = rotl64(h->lane[i % 4] ^ (p[i] * SEAL_P1), 11) * SEAL_P2;
    h->len += n;
}

static uint64_t seal_final(const seal_hash *h) {
    uint64_t x = h->len * SEAL_P1;
    for (int l = 0; l < 4; l++) x = rotl64(x ^ h->lane[l], 27) * SEAL_P1 + SEAL_P2;
    x ^= x >> 33, x *= SEAL_P2, x ^= x >> 29, x *= SEAL_P1, x ^= x >> 32;
    return x;
}

/* Hash of fd's bytes [SEAL_BLOCK, size); 0 on success, else -1 with errno set */
static int seal_hash_fd(int fd, uint64_t size, uint64_t *out) {
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) return errno = ENOMEM, -1;
    seal_hash h;
    seal_init(&h);
    for (uint64_t off = SEAL_BLOCK; off < size;) {
        size_t want = size - off < BUF ? (size_t)(size - off) : BUF;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got <= 0) {
            if (got == 0) errno = EIO; /* the file shrank under us */
            free(buf);
            return -1;
        }
        seal_update(&h, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    *out = seal_final(&h);
    return 0;
}

/* Writes the seal into the user block of the finished file tmp. */
static int seal_write(const char *tmp) {
    int fd = open(tmp, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    uint64_t hash = 0;
    int rc = fstat(fd, &sb) || seal_hash_fd(fd, (uint64_t)sb.st_size, &hash) ? -1 : 0;
    if (!rc) {
        unsigned char head[24];
        uint64_t size = (uint64_t)sb.st_size;
        memcpy(head, seal_magic, 8);
        memcpy(head + 8, &size, 8);
        memcpy(head + 16, &hash, 8);
        if (pwrite(fd, head, sizeof head, 0) != (ssize_t)sizeof head) rc = -1;
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* 0 when path carries a good seal or none (an unsealed file); -1 with a message otherwise */
static int seal_check(const char *path, char *err, size_t errn) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return snprintf(err, errn, "%s: %s", path, strerror(errno)), -1;
    unsigned char head[24];
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) == 0 && pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
        !memcmp(head, seal_magic, 8)) {
        uint64_t size, want, got;
        memcpy(&size, head + 8, 8);
        memcpy(&want, head + 16, 8);
        rc = -1;
        if (size != (uint64_t)sb.st_size)
            snprintf(err, errn, "%s: checkpoint is %llu bytes, it was written as %llu (truncated or appended to)",
                     path, (unsigned long long)sb.st_size, (unsigned long long)size);
        else if (seal_hash_fd(fd, size, &got))
            snprintf(err, errn, "%s: read error: %s", path, strerror(errno));
        else if (got != want)
            snprintf(err, errn, "%s: checkpoint is corrupted (its checksum does not match its contents)", path);
        else
            rc = 0;
    }
    close(fd);
    return rc;
}

bool gt_ckpt_sniff(const char *path) {
    static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t got = fread(b, 1, 8, f);
    fclose(f);
    return got == 8 && (!memcmp(b, seal_magic, 8) || !memcmp(b, hdf5, 8));
}

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct writer {
    hid_t f, lcpl;
    const char *path;
    char *err;
    size_t errn;
    int failed;
} writer;

/* errno is cleared before each write, so a set one is the write's own (ENOSPC, EFBIG, EIO). */
static int wfail(writer *w, const char *obj, const char *what) {
    int e = errno;
    if (!w->failed)
        snprintf(w->err, w->errn, "%s: %s: cannot write %s%s%s", w->path, obj, what, e ? ": " : "", e ? strerror(e) : "");
    w->failed = 1;
    return -1;
}

static void attr_i64(writer *w, const char *obj, const char *name, int64_t v) {
    if (w->failed) return;
    errno = 0;
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(w->f, obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0) wfail(w, obj, name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
}

static void attr_f64(writer *w, const char *obj, const char *name, double v) {
    if (w->failed) return;
    errno = 0;
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(w->f, obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &v) < 0) wfail(w, obj, name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
}

static hid_t str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len ? len : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    return t;
}

static void attr_str(writer *w, const char *obj, const char *name, const char *v) {
    if (w->failed) return;
    errno = 0;
    hid_t t = str_type(strlen(v)), s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(w->f, obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, t, v) < 0) wfail(w, obj, name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void group(writer *w, const char *obj) {
    if (w->failed) return;
    errno = 0;
    hid_t g = H5Gcreate2(w->f, obj, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) wfail(w, obj, "group");
    else H5Gclose(g);
}

static void dataset_real(writer *w, const char *obj, const gt_real *v, int64_t n) {
    if (w->failed) return;
    errno = 0;
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(w->f, obj, H5T_IEEE_F32LE, s, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || (n > 0 && H5Dwrite(d, H5_REAL, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)) wfail(w, obj, "dataset");
    if (d >= 0) H5Dclose(d);
    H5Sclose(s);
}

static void dataset_str(writer *w, const char *obj, const char *v) {
    if (w->failed) return;
    errno = 0;
    hid_t t = str_type(strlen(v)), s = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(w->f, obj, t, s, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) wfail(w, obj, "dataset");
    if (d >= 0) H5Dclose(d);
    H5Sclose(s);
    H5Tclose(t);
}

static void targets_str(const gt_lora *l, char *out, size_t n) {
    out[0] = 0;
    if (!l) return;
    for (int t = 0; t < GT_LORA_NTARGETS; t++)
        if (l->targets & (1u << t)) {
            size_t len = strlen(out);
            snprintf(out + len, n - len, "%s%s", len ? "," : "", gt_lora_target_name((gt_lora_target)t));
        }
}

static int fault_at(int64_t step) {
    const char *s = getenv("GT_FAULT_INJECT");
    return s && !strncmp(s, "ckpt_kill:", 10) && atoll(s + 10) == step;
}

int gt_ckpt_save(const char *path, const char *config_yaml, const gt_ckpt_model *model,
                 const gt_param_slice *p, int n, const gt_optim *opt, const gt_ckpt_state *st,
                 char *err, size_t errn) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char dir[1024], tmp[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%ld", dir, base, (long)getpid());
    writer w = {.path = path, .err = err, .errn = errn};
    errno = 0;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_userblock(fcpl, SEAL_BLOCK); /* room for the seal (seal_write) */
    w.f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (w.f < 0) {
        int e = errno;
        unlink(tmp); /* created, then its first write failed (a full disk) */
        return snprintf(err, errn, "%s: cannot create %s: %s", path, tmp, strerror(e)), -1;
    }
    w.lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(w.lcpl, 1);

    attr_str(&w, "/", "format", GT_CKPT_FORMAT);
    attr_i64(&w, "/", "format_version", GT_CKPT_VERSION);
    attr_i64(&w, "/", "step", st->step);
    dataset_str(&w, "/config", config_yaml ? config_yaml : "");
    const gt_gemma_config *mc = model->cfg;
    group(&w, "/model");
    attr_i64(&w, "/model", "generation", mc->generation);
    attr_i64(&w, "/model", "vocab_size", mc->vocab_size);
    attr_i64(&w, "/model", "num_layers", mc->num_layers);
    attr_i64(&w, "/model", "hidden_dim", mc->hidden_dim);
    attr_i64(&w, "/model", "intermediate_dim", mc->intermediate_dim);
    attr_i64(&w, "/model", "num_query_heads", mc->num_query_heads);
    attr_i64(&w, "/model", "num_key_value_heads", mc->num_kv_heads);
    attr_i64(&w, "/model", "head_dim", mc->head_dim);
    char targets[256];
    targets_str(model->lora, targets, sizeof targets);
    group(&w, "/lora");
    attr_i64(&w, "/lora", "enabled", model->lora != NULL);
    attr_i64(&w, "/lora", "rank", model->lora ? model->lora->rank : 0);
    attr_f64(&w, "/lora", "alpha", model->lora ? model->lora->alpha : 0);
    attr_str(&w, "/lora", "targets", targets);
    char obj[300];
    for (int i = 0; i < n; i++) {
        snprintf(obj, sizeof obj, "/params/%s", p[i].name);
        dataset_real(&w, obj, p[i].data, p[i].size);
    }
    if (!w.failed && fault_at(st->step)) { /* test hook: die with the file half written */
        H5Fflush(w.f, H5F_SCOPE_GLOBAL);
        raise(SIGKILL);
    }
    group(&w, "/optimizer");
    attr_str(&w, "/optimizer", "name", model->optimizer);
    attr_i64(&w, "/optimizer", "iterations", gt_optim_get_step(opt));
    for (int i = 0; i < gt_optim_state_count(opt); i++) {
        gt_optim_state_array a;
        gt_optim_state_get(opt, i, &a);
        snprintf(obj, sizeof obj, "/optimizer/%s/%s", a.param, a.kind);
        dataset_real(&w, obj, a.data, a.size);
    }
    group(&w, "/state");
    attr_i64(&w, "/state", "step", st->step);
    attr_i64(&w, "/state", "data_epoch", st->data_epoch);
    attr_i64(&w, "/state", "data_next", st->data_next);
    attr_i64(&w, "/state", "tokens", st->tokens);
    attr_f64(&w, "/state", "elapsed_s", st->elapsed_s);
    attr_i64(&w, "/state", "world", st->world);
    group(&w, "/rng");
    attr_i64(&w, "/rng", "train_seed", st->train_seed);
    attr_i64(&w, "/rng", "shuffle_seed", st->shuffle_seed);
    attr_i64(&w, "/rng", "lora_seed", st->lora_seed);
    H5Pclose(w.lcpl);
    /* closed exactly once, failed or not (a failed H5Fclose would crash HDF5's atexit cleanup) */
    errno = 0;
    if (gt_h5_finish(w.f, !w.failed) && !w.failed) {
        int e = errno;
        snprintf(err, errn, "%s: cannot flush and close the file%s%s", w.path, e ? ": " : "", e ? strerror(e) : "");
        w.failed = 1;
    }
    if (!w.failed && seal_write(tmp))
        snprintf(err, errn, "%s: cannot write its checksum: %s", tmp, strerror(errno)), w.failed = 1;
    if (!w.failed && gt_fsync_path(tmp, false))
        snprintf(err, errn, "%s: fsync: %s", tmp, strerror(errno)), w.failed = 1;
    if (!w.failed && rename(tmp, path))
        snprintf(err, errn, "%s: cannot rename to %s: %s", tmp, path, strerror(errno)), w.failed = 1;
    if (w.failed) {
        unlink(tmp);
        return -1;
    }
    gt_fsync_path(dir, true); /* make the rename itself durable */
    return 0;
}

/* ---- reading ---------------------------------------------------------------------------- */

typedef struct reader {
    hid_t f;
    uint64_t size; /* of the file: no string of ours is longer */
    const char *path;
    char *err;
    size_t errn;
} reader;

static bool exists(reader *r, const char *obj) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", obj);
    for (char *q = buf + 1;; q++)
        if (*q == '/' || *q == 0) {
            char c = *q;
            *q = 0;
            if (H5Lexists(r->f, buf, H5P_DEFAULT) <= 0) return false;
            if (!c) return true;
            *q = c;
        }
}

/* The attribute or dataset o holds exactly one value: reads below go into one value's room
 * (a hostile file's 40-element /config overflowed the string buffer). */
static bool one_value(hid_t o, bool is_ds) {
    hid_t sp = is_ds ? H5Dget_space(o) : H5Aget_space(o);
    if (sp < 0) return false;
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    return n == 1;
}

static int rattr_i64(reader *r, const char *obj, const char *name, int64_t *v) {
    hid_t a = exists(r, obj) ? H5Aopen_by_name(r->f, obj, name, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = a >= 0 && one_value(a, false) && H5Aread(a, H5T_NATIVE_INT64, v) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (rc) snprintf(r->err, r->errn, "%s: missing or unreadable attribute %s@%s", r->path, obj, name);
    return rc;
}

static int rattr_f64(reader *r, const char *obj, const char *name, double *v) {
    hid_t a = exists(r, obj) ? H5Aopen_by_name(r->f, obj, name, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = a >= 0 && one_value(a, false) && H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (rc) snprintf(r->err, r->errn, "%s: missing or unreadable attribute %s@%s", r->path, obj, name);
    return rc;
}

/* String attribute or scalar string dataset (is_ds), malloc'ed. */
static char *rstr(reader *r, const char *obj, const char *name, bool is_ds) {
    hid_t o = -1;
    if (exists(r, obj)) o = is_ds ? H5Dopen2(r->f, obj, H5P_DEFAULT) : H5Aopen_by_name(r->f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    char *s = NULL;
    if (o >= 0) {
        hid_t t = is_ds ? H5Dget_type(o) : H5Aget_type(o);
        if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && one_value(o, is_ds) &&
            H5Tget_size(t) <= r->size) {
            size_t len = H5Tget_size(t);
            hid_t mt = str_type(len);
            s = calloc(len + 1, 1);
            if (s && (is_ds ? H5Dread(o, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) : H5Aread(o, mt, s)) < 0) {
                free(s);
                s = NULL;
            }
            H5Tclose(mt);
        }
        if (t >= 0) H5Tclose(t);
        is_ds ? H5Dclose(o) : H5Aclose(o);
    }
    if (!s) snprintf(r->err, r->errn, "%s: missing or unreadable %s%s%s", r->path, obj, is_ds ? "" : "@", is_ds ? "" : name);
    return s;
}

/* Elements of 1-D dataset obj, or -1 with a message. */
static int64_t ds_size(reader *r, const char *obj) {
    hid_t d = exists(r, obj) ? H5Dopen2(r->f, obj, H5P_DEFAULT) : -1;
    if (d < 0) return snprintf(r->err, r->errn, "%s: missing dataset %s", r->path, obj), -1;
    hid_t s = H5Dget_space(d);
    hsize_t dims[8];
    int nd = s >= 0 ? H5Sget_simple_extent_dims(s, dims, NULL) : -1;
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    if (nd != 1) return snprintf(r->err, r->errn, "%s: %s is not a 1-D dataset", r->path, obj), -1;
    return (int64_t)dims[0];
}

static int rdata(reader *r, const char *obj, gt_real *out) {
    hid_t d = H5Dopen2(r->f, obj, H5P_DEFAULT);
    int rc = d >= 0 && H5Dread(d, H5_REAL, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0 ? 0 : -1;
    if (d >= 0) H5Dclose(d);
    if (rc) snprintf(r->err, r->errn, "%s: %s: unreadable data (truncated file?)", r->path, obj);
    return rc;
}

/* Reads all n values of dataset obj into scratch (piece values), a piece at a time, and drops them.
 * gt_ckpt_load does this for every array before it writes any: an array libhdf5 cannot read (a
 * corrupted chunk or heap; fuzz_checkpoint found files whose first arrays read and a later one
 * failed) then fails the load with nothing overwritten, at the cost of reading the arrays twice. */
static int rdata_probe(reader *r, const char *obj, int64_t n, gt_real *scratch, int64_t piece) {
    hid_t d = H5Dopen2(r->f, obj, H5P_DEFAULT), fs = d >= 0 ? H5Dget_space(d) : -1;
    int rc = fs >= 0 && (n <= piece || H5Sget_simple_extent_ndims(fs) == 1) ? 0 : -1;
    if (!rc && n <= piece) rc = H5Dread(d, H5_REAL, H5S_ALL, H5S_ALL, H5P_DEFAULT, scratch) >= 0 ? 0 : -1;
    for (int64_t off = 0; !rc && n > piece && off < n; off += piece) {
        hsize_t start = (hsize_t)off, count = (hsize_t)(n - off < piece ? n - off : piece);
        hid_t ms = H5Screate_simple(1, &count, NULL);
        if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dread(d, H5_REAL, ms, fs, H5P_DEFAULT, scratch) < 0)
            rc = -1;
        if (ms >= 0) H5Sclose(ms);
    }
    if (fs >= 0) H5Sclose(fs);
    if (d >= 0) H5Dclose(d);
    if (rc) snprintf(r->err, r->errn, "%s: %s: unreadable data (truncated file?)", r->path, obj);
    return rc;
}

/* rdata_probe over every array gt_ckpt_load will read */
static int probe_all(reader *r, const gt_param_slice *p, int n, const gt_optim *opt) {
    const int64_t piece = (int64_t)1 << 20;
    gt_real *scratch = malloc((size_t)piece * sizeof *scratch);
    if (!scratch) return snprintf(r->err, r->errn, "%s: out of memory", r->path), -1;
    char obj[300];
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        snprintf(obj, sizeof obj, "/params/%s", p[i].name);
        rc = rdata_probe(r, obj, p[i].size, scratch, piece);
    }
    for (int i = 0; !rc && i < gt_optim_state_count(opt); i++) {
        gt_optim_state_array a;
        gt_optim_state_get(opt, i, &a);
        snprintf(obj, sizeof obj, "/optimizer/%s/%s", a.param, a.kind);
        rc = rdata_probe(r, obj, a.size, scratch, piece);
    }
    free(scratch);
    return rc;
}

static int check_i64(reader *r, const char *obj, const char *name, int64_t want, const char *what) {
    int64_t v;
    if (rattr_i64(r, obj, name, &v)) return -1;
    if (v != want)
        return snprintf(r->err, r->errn, "%s: written for %s %s %lld, this run has %lld", r->path, what, name,
                        (long long)v, (long long)want), -1;
    return 0;
}

static int verify(reader *r, const gt_ckpt_model *model, const gt_param_slice *p, int n, const gt_optim *opt) {
    char *fmt = rstr(r, "/", "format", false);
    if (!fmt || strcmp(fmt, GT_CKPT_FORMAT)) {
        free(fmt);
        return snprintf(r->err, r->errn, "%s: not a gemmatrain checkpoint (no format attribute '%s')", r->path,
                        GT_CKPT_FORMAT), -1;
    }
    free(fmt);
    int64_t ver;
    if (rattr_i64(r, "/", "format_version", &ver)) return -1;
    if (ver != GT_CKPT_VERSION)
        return snprintf(r->err, r->errn, "%s: checkpoint format version %lld, this build reads %d", r->path,
                        (long long)ver, GT_CKPT_VERSION), -1;
    const gt_gemma_config *mc = model->cfg;
    if (check_i64(r, "/model", "generation", mc->generation, "model") ||
        check_i64(r, "/model", "vocab_size", mc->vocab_size, "model") ||
        check_i64(r, "/model", "num_layers", mc->num_layers, "model") ||
        check_i64(r, "/model", "hidden_dim", mc->hidden_dim, "model") ||
        check_i64(r, "/model", "intermediate_dim", mc->intermediate_dim, "model") ||
        check_i64(r, "/model", "num_query_heads", mc->num_query_heads, "model") ||
        check_i64(r, "/model", "num_key_value_heads", mc->num_kv_heads, "model") ||
        check_i64(r, "/model", "head_dim", mc->head_dim, "model"))
        return -1;
    int64_t enabled;
    if (rattr_i64(r, "/lora", "enabled", &enabled)) return -1;
    if (enabled != (model->lora != NULL))
        return snprintf(r->err, r->errn, "%s: written by a %s run, this run is %s", r->path,
                        enabled ? "LoRA" : "full fine-tuning", model->lora ? "LoRA" : "full fine-tuning"), -1;
    if (model->lora) {
        if (check_i64(r, "/lora", "rank", model->lora->rank, "lora")) return -1;
        double alpha;
        if (rattr_f64(r, "/lora", "alpha", &alpha)) return -1;
        if (alpha != model->lora->alpha)
            return snprintf(r->err, r->errn, "%s: written for lora alpha %g, this run has %g", r->path, alpha,
                            model->lora->alpha), -1;
        char want[256];
        targets_str(model->lora, want, sizeof want);
        char *got = rstr(r, "/lora", "targets", false);
        if (!got) return -1;
        int same = !strcmp(got, want);
        if (!same) snprintf(r->err, r->errn, "%s: written for lora targets %s, this run has %s", r->path, got, want);
        free(got);
        if (!same) return -1;
    }
    char *oname = rstr(r, "/optimizer", "name", false);
    if (!oname) return -1;
    int same = !strcmp(oname, model->optimizer);
    if (!same) snprintf(r->err, r->errn, "%s: written with optimizer %s, this run uses %s", r->path, oname, model->optimizer);
    free(oname);
    if (!same) return -1;
    char obj[300];
    for (int i = 0; i < n; i++) {
        snprintf(obj, sizeof obj, "/params/%s", p[i].name);
        int64_t sz = ds_size(r, obj);
        if (sz < 0) return -1;
        if (sz != p[i].size)
            return snprintf(r->err, r->errn, "%s: %s has %lld values, this run's has %lld", r->path, obj,
                            (long long)sz, (long long)p[i].size), -1;
    }
    for (int i = 0; i < gt_optim_state_count(opt); i++) {
        gt_optim_state_array a;
        gt_optim_state_get(opt, i, &a);
        snprintf(obj, sizeof obj, "/optimizer/%s/%s", a.param, a.kind);
        int64_t sz = ds_size(r, obj);
        if (sz < 0) return -1;
        if (sz != a.size)
            return snprintf(r->err, r->errn, "%s: %s has %lld values, this run's has %lld", r->path, obj,
                            (long long)sz, (long long)a.size), -1;
    }
    return 0;
}

int gt_ckpt_load(const char *path, const gt_ckpt_model *model, const gt_param_slice *p, int n,
                 gt_optim *opt, gt_ckpt_state *st, char **config_yaml, char *err, size_t errn) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (config_yaml) *config_yaml = NULL;
    struct stat sb;
    if (stat(path, &sb)) return snprintf(err, errn, "%s: %s", path, strerror(errno)), -1;
    reader r = {.size = (uint64_t)sb.st_size, .path = path, .err = err, .errn = errn};
    if (seal_check(path, err, errn)) return -1;
    r.f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r.f < 0) return snprintf(err, errn, "%s: not a readable HDF5 file (truncated or foreign?)", path), -1;
    int rc = -1;
    gt_ckpt_state s = {0};
    char obj[300];
    if (verify(&r, model, p, n, opt)) goto done;
    int64_t iters;
    if (rattr_i64(&r, "/state", "step", &s.step) || rattr_i64(&r, "/state", "data_epoch", &s.data_epoch) ||
        rattr_i64(&r, "/state", "data_next", &s.data_next) || rattr_i64(&r, "/state", "tokens", &s.tokens) ||
        rattr_f64(&r, "/state", "elapsed_s", &s.elapsed_s) || rattr_i64(&r, "/state", "world", &s.world) ||
        rattr_i64(&r, "/rng", "train_seed", &s.train_seed) || rattr_i64(&r, "/rng", "shuffle_seed", &s.shuffle_seed) ||
        rattr_i64(&r, "/rng", "lora_seed", &s.lora_seed) || rattr_i64(&r, "/optimizer", "iterations", &iters))
        goto done;
    if (iters < 0) {
        snprintf(err, errn, "%s: /optimizer@iterations is negative", path);
        goto done;
    }
    char *yaml = rstr(&r, "/config", NULL, true);
    if (!yaml) goto done;
    if (probe_all(&r, p, n, opt)) goto fail_yaml; /* every array readable before any is written */
    for (int i = 0; i < n; i++) {
        snprintf(obj, sizeof obj, "/params/%s", p[i].name);
        if (rdata(&r, obj, p[i].data)) goto fail_yaml;
    }
    for (int i = 0; i < gt_optim_state_count(opt); i++) {
        gt_optim_state_array a;
        gt_optim_state_get(opt, i, &a);
        snprintf(obj, sizeof obj, "/optimizer/%s/%s", a.param, a.kind);
        if (rdata(&r, obj, a.data)) goto fail_yaml;
    }
    gt_optim_set_step(opt, iters);
    *st = s;
    if (config_yaml) *config_yaml = yaml, yaml = NULL;
    rc = 0;
fail_yaml:
    free(yaml);
done:
    H5Fclose(r.f);
    return rc;
}

int gt_ckpt_read_config(const char *path, char **config_yaml, char *err, size_t errn) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    *config_yaml = NULL;
    struct stat sb;
    if (stat(path, &sb)) return snprintf(err, errn, "%s: %s", path, strerror(errno)), -1;
    reader r = {.size = (uint64_t)sb.st_size, .path = path, .err = err, .errn = errn};
    if (seal_check(path, err, errn)) return -1;
    r.f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r.f < 0) return snprintf(err, errn, "%s: not a readable HDF5 file (truncated or foreign?)", path), -1;
    char *fmt = rstr(&r, "/", "format", false);
    if (!fmt || strcmp(fmt, GT_CKPT_FORMAT))
        snprintf(err, errn, "%s: not a gemmatrain checkpoint (no format attribute '%s')", path, GT_CKPT_FORMAT);
    else
        *config_yaml = rstr(&r, "/config", NULL, true);
    free(fmt);
    H5Fclose(r.f);
    return *config_yaml ? 0 : -1;
}

/* ---- directory ---------------------------------------------------------------------------- */

void gt_ckpt_path(const char *dir, int64_t step, char *out, size_t n) {
    snprintf(out, n, "%s/ckpt-%08lld.h5", dir, (long long)step);
}

/* Step of a complete checkpoint's file name, or -1. */
static int64_t name_step(const char *name) {
    long long s;
    int used = 0;
    if (sscanf(name, "ckpt-%lld.h5%n", &s, &used) == 1 && name[used] == 0 && s >= 0 && strlen(name) >= 15) return s;
    return -1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Steps of the complete checkpoints in dir, sorted ascending (malloc'ed), or -1. */
static int list_steps(const char *dir, int64_t **steps, int *count, bool remove_tmp, char *err, size_t errn) {
    *steps = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : (snprintf(err, errn, "%s: %s", dir, strerror(errno)), -1);
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (remove_tmp && !strncmp(e->d_name, ".ckpt-", 6) && strstr(e->d_name, ".tmp-")) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p); /* a write that never finished (the writer died) */
            continue;
        }
        int64_t s = name_step(e->d_name);
        if (s < 0) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *grown = realloc(*steps, sizeof **steps * (size_t)cap);
            if (!grown) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                return snprintf(err, errn, "out of memory"), -1;
            }
            *steps = grown;
        }
        (*steps)[(*count)++] = s;
    }
    closedir(d);
    if (*count) qsort(*steps, (size_t)*count, sizeof **steps, cmp_i64);
    return 0;
}

int gt_ckpt_list(const char *dir, int64_t **steps, int *count, char *err, size_t errn) {
    return list_steps(dir, steps, count, false, err, errn);
}

int gt_ckpt_latest(const char *dir, char *out, size_t n, int64_t *step, char *err, size_t errn) {
    int64_t *steps;
    int count;
    if (list_steps(dir, &steps, &count, false, err, errn)) return -1;
    if (!count) return free(steps), 1;
    *step = steps[count - 1];
    gt_ckpt_path(dir, *step, out, n);
    free(steps);
    return 0;
}

int gt_ckpt_prune(const char *dir, int keep, char *err, size_t errn) {
    int64_t *steps;
    int count;
    if (list_steps(dir, &steps, &count, true, err, errn)) return -1;
    for (int i = 0; i < count - keep; i++) {
        char p[1024];
        gt_ckpt_path(dir, steps[i], p, sizeof p);
        if (unlink(p) && errno != ENOENT) {
            snprintf(err, errn, "%s: cannot remove: %s", p, strerror(errno));
            free(steps);
            return -1;
        }
    }
    free(steps);
    return 0;
}

typedef struct {
    hid_t other;
    int n, differ;
    char *first;
    size_t firstn;
    bool failed;
} cmp_ctx;

static herr_t cmp_obj(hid_t loc, const char *name, const H5O_info_t *info, void *user) {
    cmp_ctx *c = user;
    if (info->type != H5O_TYPE_DATASET || (strncmp(name, "params/", 7) && strncmp(name, "optimizer/", 10))) return 0;
    c->n++;
    hid_t a = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t b = H5Lexists(c->other, name, H5P_DEFAULT) > 0 ? H5Dopen2(c->other, name, H5P_DEFAULT) : H5I_INVALID_HID;
    bool same = false;
    if (a >= 0 && b >= 0) {
        hid_t sa = H5Dget_space(a), sb = H5Dget_space(b);
        hssize_t na = H5Sget_simple_extent_npoints(sa), nb = H5Sget_simple_extent_npoints(sb);
        H5Sclose(sa), H5Sclose(sb);
        float *x = na == nb && na >= 0 ? malloc(sizeof(float) * (size_t)(na + 1)) : NULL;
        float *y = x ? malloc(sizeof(float) * (size_t)(na + 1)) : NULL;
        if (y && H5Dread(a, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0 &&
            H5Dread(b, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0)
            same = !memcmp(x, y, sizeof(float) * (size_t)na);
        free(x);
        free(y);
    }
    if (a >= 0) H5Dclose(a);
    if (b >= 0) H5Dclose(b);
    if (!same && !c->differ++ && c->first) snprintf(c->first, c->firstn, "%s", name);
    return 0;
}

int gt_ckpt_compare(const char *pa, const char *pb, int *n, int *differ, char *first, size_t firstn, char *err,
                    size_t errn) {
    *n = *differ = 0;
    if (first && firstn) first[0] = 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (seal_check(pa, err, errn) || seal_check(pb, err, errn)) return -1;
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0) return snprintf(err, errn, "%s: cannot open as HDF5", pa), -1;
    hid_t b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (b < 0) {
        H5Fclose(a);
        return snprintf(err, errn, "%s: cannot open as HDF5", pb), -1;
    }
    cmp_ctx c = {.other = b, .first = first, .firstn = firstn};
    herr_t rc = H5Ovisit2(a, H5_INDEX_NAME, H5_ITER_INC, cmp_obj, &c, H5O_INFO_BASIC);
    H5Fclose(a);
    H5Fclose(b);
    if (rc < 0) return snprintf(err, errn, "%s: cannot walk its objects", pa), -1;
    *n = c.n, *differ = c.differ;
    return 0;
}
