/* enospc_shim.so: a full disk on demand (issue 13's ENOSPC campaign), loaded with LD_PRELOAD.
 *
 * Counts every write-side operation on a file under GT_ENOSPC_DIR (write, pwrite, writev,
 * fallocate, fsync, fdatasync, and the close of a file open for writing; stdio streams opened
 * with fopen/fdopen for writing are wrapped so that each buffer flush is one counted write, since
 * glibc's stdio reaches the kernel without going through an interposable write()) and makes the
 * GT_ENOSPC_AT-th one (1-based) fail with ENOSPC, and every later one too, as a full disk would
 * (GT_ENOSPC_ONCE=1: only that one). GT_ENOSPC_LOG=FILE appends "N op path" per counted
 * operation: the campaign's list of write sites. Without GT_ENOSPC_DIR nothing is changed.
 * A failed close still closes the descriptor (Linux semantics). Not part of the library. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *g_dir;
static long g_at = -1;
static int g_once;
static long g_count;
static int g_ready;

static void shim_init(void) {
    if (g_ready) return;
    g_ready = 1;
    g_dir = getenv("GT_ENOSPC_DIR");
    if (g_dir && !*g_dir) g_dir = NULL;
    const char *at = getenv("GT_ENOSPC_AT");
    g_at = at && *at ? atol(at) : -1;
    const char *once = getenv("GT_ENOSPC_ONCE");
    g_once = once && !strcmp(once, "1");
}

/* the next definition of name (libc's), looked up once */
#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

/* The file behind fd when it lies under GT_ENOSPC_DIR (written into path), else 0. */
static int watched(int fd, char *path, size_t n) {
    shim_init();
    if (!g_dir || fd < 0) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t got = readlink(link, path, n - 1);
    if (got <= 0) return 0;
    path[got] = 0;
    size_t dl = strlen(g_dir);
    return !strncmp(path, g_dir, dl) && (path[dl] == '/' || path[dl] == 0);
}

/* Counts one operation on path; 1 when it is to fail (errno is then ENOSPC). */
static int counted(const char *op, const char *path) {
    long n = __atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST);
    const char *log = getenv("GT_ENOSPC_LOG");
    if (log && *log) {
        REAL(write);
        REAL(open);
        REAL(close);
        int fd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char line[4200];
            int len = snprintf(line, sizeof line, "%ld %s %s\n", n, op, path);
            if (len > 0 && real_write(fd, line, (size_t)len) < 0) { /* best effort */ }
            real_close(fd);
        }
    }
    if (g_at > 0 && (n == g_at || (!g_once && n > g_at))) {
        errno = ENOSPC;
        return 1;
    }
    return 0;
}

static int fails(const char *op, int fd) {
    char path[4096];
    return watched(fd, path, sizeof path) && counted(op, path);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    return fails("write", fd) ? -1 : real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    return fails("pwrite", fd) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64);
    return fails("pwrite", fd) ? -1 : real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev);
    return fails("writev", fd) ? -1 : real_writev(fd, iov, cnt);
}

int fsync(int fd) {
    REAL(fsync);
    return fails("fsync", fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    return fails("fdatasync", fd) ? -1 : real_fdatasync(fd);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
    REAL(fallocate);
    return fails("fallocate", fd) ? -1 : real_fallocate(fd, mode, off, len);
}

int posix_fallocate(int fd, off_t off, off_t len) {
    REAL(posix_fallocate);
    return fails("fallocate", fd) ? ENOSPC : real_posix_fallocate(fd, off, len);
}

static int open_for_writing(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
}

int close(int fd) {
    REAL(close);
    char path[4096];
    int fail = watched(fd, path, sizeof path) && open_for_writing(fd) && counted("close", path);
    int rc = real_close(fd);
    return fail ? (errno = ENOSPC, -1) : rc;
}

/* ---- stdio: a stream for writing becomes a cookie stream whose flushes are counted writes */

typedef struct {
    int fd;
    FILE *real; /* the fopen'ed stream that owns fd, or NULL (fdopen: fd is ours) */
    FILE *self; /* the cookie stream handed out */
    char path[4096];
} cookie;

/* The wrapped streams (a process has a few open at a time): fileno() answers for them. */
static cookie *g_streams[256];

static ssize_t ck_read(void *c, char *buf, size_t n) { return read(((cookie *)c)->fd, buf, n); }

static ssize_t ck_write(void *c, const char *buf, size_t n) {
    cookie *k = c;
    REAL(write);
    /* fopencookie(3): 0 on error, never negative (glibc's fwrite miscounts a -1 and overruns) */
    if (counted("write", k->path)) return 0;
    size_t done = 0;
    while (done < n) {
        ssize_t w = real_write(k->fd, buf + done, n - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    return (ssize_t)done;
}

static int ck_seek(void *c, off64_t *pos, int whence) {
    off64_t r = lseek64(((cookie *)c)->fd, *pos, whence);
    if (r < 0) return -1;
    *pos = r;
    return 0;
}

static int ck_close(void *c) {
    cookie *k = c;
    REAL(fclose);
    REAL(close);
    for (int i = 0; i < 256; i++)
        if (g_streams[i] == k) g_streams[i] = NULL;
    int fail = counted("close", k->path);
    int rc = k->real ? real_fclose(k->real) : real_close(k->fd);
    free(k);
    return fail ? (errno = ENOSPC, EOF) : rc;
}

/* A cookie stream over fd when its file is watched (and a registry slot is free), else NULL. */
static FILE *wrap(FILE *real, int fd, const char *mode) {
    cookie *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->fd = fd;
    k->real = real;
    int slot = -1;
    for (int i = 0; i < 256 && slot < 0; i++)
        if (!g_streams[i]) slot = i;
    cookie_io_functions_t io = {ck_read, ck_write, ck_seek, ck_close};
    if (slot < 0 || !watched(fd, k->path, sizeof k->path) || !(k->self = fopencookie(k, mode, io))) {
        free(k);
        return NULL;
    }
    g_streams[slot] = k;
    return k->self;
}

FILE *fopen(const char *path, const char *mode) {
    REAL(fopen);
    REAL(fileno);
    FILE *f = real_fopen(path, mode);
    if (!f || !strpbrk(mode, "wa+")) return f;
    FILE *w = wrap(f, real_fileno(f), mode);
    return w ? w : f;
}

FILE *fopen64(const char *path, const char *mode) { return fopen(path, mode); }

FILE *fdopen(int fd, const char *mode) {
    REAL(fdopen);
    FILE *w = strpbrk(mode, "wa+") ? wrap(NULL, fd, mode) : NULL;
    return w ? w : real_fdopen(fd, mode);
}

int fileno(FILE *f) {
    REAL(fileno);
    for (int i = 0; i < 256; i++)
        if (g_streams[i] && g_streams[i]->self == f) return g_streams[i]->fd;
    return real_fileno(f);
}
