/* fsutil.h: directories, paths and crash-safe file replacement, written once.
 *
 *   gt_path_join(dir, name):  "dir/name" (no second '/' when dir ends in one), malloc'd; NULL when
 *                             out of memory. The caller frees it.
 *   gt_mkdir_p(path):         mkdir -p (mode 0777 less umask); 0 when path is a directory after.
 *   gt_mkdir_parents(path):   mkdir -p of path's directory part (nothing when it has none).
 *   gt_fsync_path(path, dir): open and fsync a file (dir: a directory); 0, or -1 with errno set.
 *   gt_fsync_parent(path):    fsync the directory holding path, best effort (some file systems
 *                             refuse a directory fsync): makes a rename into it durable.
 *
 * Atomic replacement: the new content goes to a temporary file beside the target
 * ("<path>.tmp.XXXXXX", mode 0644), and only a complete, fsync'ed file is renamed over it, then
 * the directory is fsync'ed. A crash or a failure at any point leaves the old file (or none) and
 * no temporary behind (a killed process may leave one).
 *   gt_atomic_open(path, &w):  w.f is the stream to write; path must outlive w
 *   gt_atomic_commit(&w):      flush, fsync, close, rename into place; on failure the temporary
 *                              is removed
 *   gt_atomic_abort(&w):       close and remove the temporary (safe after a failed open/commit)
 *   gt_write_file_atomic(path, data, len): all three for one buffer
 * Functions that take err, errn return 0 or -1 with one line in err (util/err.h); messages name
 * the target path ("<path>: cannot create a temporary file beside it: <strerror>", "<path>:
 * write failed: ...", "<path>: cannot rename the temporary file into place: ..."). */
#ifndef GT_UTIL_FSUTIL_H
#define GT_UTIL_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

char *gt_path_join(const char *dir, const char *name);
int gt_mkdir_p(const char *path, char *err, size_t errn);
int gt_mkdir_parents(const char *path, char *err, size_t errn);
int gt_fsync_path(const char *path, bool dir);
void gt_fsync_parent(const char *path);

typedef struct gt_atomic {
    FILE *f;          /* write here between open and commit */
    char *tmp;        /* the temporary file's name (owned) */
    const char *path; /* the target (borrowed) */
} gt_atomic;

int gt_atomic_open(const char *path, gt_atomic *w, char *err, size_t errn);
int gt_atomic_commit(gt_atomic *w, char *err, size_t errn);
void gt_atomic_abort(gt_atomic *w);
int gt_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errn);

#endif
