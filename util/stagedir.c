#include "util/stagedir.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/err.h"
#include "util/fsutil.h"

int gt_stage_open(const char *path, gt_stage *s, char *err, size_t errn) {
    s->path = path;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* "out/" stages as "out.tmp.XXXXXX" */
    s->dir = malloc(n + 12);
    if (!s->dir) return gt_errf(err, errn, "%s: out of memory", path);
    memcpy(s->dir, path, n);
    memcpy(s->dir + n, ".tmp.XXXXXX", 12);
    if (!mkdtemp(s->dir)) {
        int e = errno;
        free(s->dir);
        s->dir = NULL;
        return gt_errf(err, errn, "%s: cannot create a temporary directory beside it: %s", path, strerror(e));
    }
    chmod(s->dir, 0755); /* mkdtemp makes 0700; exports are meant to be shared */
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

void gt_stage_abort(gt_stage *s) {
    if (s->dir) rm_tree(s->dir);
    free(s->dir);
    s->dir = NULL;
}

int gt_stage_commit(gt_stage *s, char *err, size_t errn) {
    struct stat sb;
    int rc = 0;
    if (lstat(s->path, &sb) == 0) { /* replacing: swap, then the old tree goes with the stage */
        if (renameat2(AT_FDCWD, s->dir, AT_FDCWD, s->path, RENAME_EXCHANGE) == 0) {
            gt_stage_abort(s);
            gt_fsync_parent(s->path);
            return 0;
        }
        rm_tree(s->path); /* a file system without exchange: not atomic, but never half-written */
    }
    if (rename(s->dir, s->path)) {
        int e = errno;
        rc = gt_errf(err, errn, "%s: cannot move the finished directory into place: %s", s->path, strerror(e));
        gt_stage_abort(s);
        return rc;
    }
    free(s->dir);
    s->dir = NULL;
    gt_fsync_parent(s->path);
    return 0;
}

void gt_stage_msg(const gt_stage *s, char *msg, size_t n) {
    if (!s->dir || !msg) return;
    size_t dl = strlen(s->dir), pl = strlen(s->path);
    for (char *hit = strstr(msg, s->dir); hit; hit = strstr(hit + pl, s->dir)) {
        size_t tail = strlen(hit + dl);
        if ((size_t)(hit - msg) + pl + tail + 1 > n) break;
        memmove(hit + pl, hit + dl, tail + 1);
        memcpy(hit, s->path, pl);
    }
}
