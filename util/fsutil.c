#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

char *gt_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int gt_mkdir_p(const char *path, char *err, size_t errn) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return gt_errf(err, errn, "%s: path too long", path);
    if (!buf[0]) return gt_errf(err, errn, "empty directory path");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return gt_errf(err, errn, "%s: cannot create directory: %s", buf, strerror(errno));
            struct stat st;
            if (stat(buf, &st) || !S_ISDIR(st.st_mode))
                return gt_errf(err, errn, "%s: exists and is not a directory", buf);
            if (!c) break;
            *p = c;
        }
    }
    return 0;
}

int gt_mkdir_parents(const char *path, char *err, size_t errn) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return 0;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return gt_errf(err, errn, "%s: out of memory", path);
    int rc = gt_mkdir_p(dir, err, errn);
    free(dir);
    return rc;
}

int gt_fsync_path(const char *path, bool dir) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

void gt_fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (dir) {
        gt_fsync_path(dir, true);
        free(dir);
    }
}

int gt_atomic_open(const char *path, gt_atomic *w, char *err, size_t errn) {
    w->path = path;
    w->f = NULL;
    size_t n = strlen(path);
    w->tmp = malloc(n + 12);
    if (!w->tmp) return gt_errf(err, errn, "%s: out of memory", path);
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(w->tmp);
    if (fd < 0) {
        int e = errno;
        free(w->tmp);
        w->tmp = NULL;
        return gt_errf(err, errn, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; models, configs and plots are meant to be shared */
    if (!(w->f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(w->tmp);
        free(w->tmp);
        w->tmp = NULL;
        return gt_errf(err, errn, "%s: %s", path, strerror(e));
    }
    return 0;
}

void gt_atomic_abort(gt_atomic *w) {
    if (w->f) fclose(w->f);
    if (w->tmp) {
        unlink(w->tmp);
        free(w->tmp);
    }
    w->f = NULL;
    w->tmp = NULL;
}

int gt_atomic_commit(gt_atomic *w, char *err, size_t errn) {
    int e = 0;
    errno = 0;
    if (fflush(w->f) || ferror(w->f) || fsync(fileno(w->f))) e = errno ? errno : EIO; /* ferror: an earlier write */
    if (fclose(w->f) && !e) e = errno;
    w->f = NULL;
    if (e) {
        gt_atomic_abort(w);
        return gt_errf(err, errn, "%s: write failed: %s", w->path, strerror(e));
    }
    if (rename(w->tmp, w->path)) {
        e = errno;
        gt_atomic_abort(w);
        return gt_errf(err, errn, "%s: cannot rename the temporary file into place: %s", w->path, strerror(e));
    }
    free(w->tmp);
    w->tmp = NULL;
    gt_fsync_parent(w->path); /* make the rename itself durable */
    return 0;
}

int gt_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errn) {
    gt_atomic w;
    if (gt_atomic_open(path, &w, err, errn)) return -1;
    if (fwrite(data, 1, len, w.f) != len) {
        int e = errno;
        gt_atomic_abort(&w);
        return gt_errf(err, errn, "%s: write failed: %s", path, strerror(e));
    }
    return gt_atomic_commit(&w, err, errn);
}
