/* h5io.h: small HDF5 helpers over the serial HDF5 library (fixtures, checkpoints, Keras weights).
 *
 * HDF5's own error printing is turned off; every failure returns -1 with a one-line message
 * naming the file and the object path. Read buffers are malloc'ed and owned by the caller.
 *
 * Writing is atomic: gt_h5_create opens "<path>.tmp.<pid>" in the target's directory; the
 * write calls fill it; gt_h5_commit closes, fsyncs and renames it over <path> (then fsyncs the
 * directory), gt_h5_abort closes and removes it. A crash leaves either the old file or the new
 * one, never a half-written one. A write that fails (a full disk) is reported by the call that
 * made it or by gt_h5_commit, the file is closed exactly once and its temporary removed: HDF5
 * 1.10 leaves the ID of a failed H5Fclose half torn down, and its atexit cleanup then crashes
 * closing it again, so a close must not fail (gt_h5_finish). Files are written with libhdf5's default (oldest-format)
 * settings, contiguous datasets, as h5py writes them, so Keras and h5py read them. */
#ifndef GT_H5IO_H
#define GT_H5IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int64_t gt_h5; /* hid_t of an open file */

/* Call first in main, before any other HDF5 call: HDF5's atexit cleanup is not installed. Every
 * file this program writes is closed explicitly; the cleanup would only close again a file
 * whose close already failed (and crash doing so). */
void gt_h5_process_init(void);

int gt_h5_open_read(const char *path, gt_h5 *out, char *err, size_t errn);
void gt_h5_close(gt_h5 f);
int gt_h5_exists(gt_h5 f, const char *obj); /* 1 if the path exists, else 0 */

/* Dataset as float32 / int32 (converted by HDF5 from the stored type). *shape gets up to 8 dims,
 * *ndim the rank; *data is malloc'ed (caller frees). */
int gt_h5_read_f32(gt_h5 f, const char *path, float **data, int *ndim, int64_t shape[8],
                   char *err, size_t errn);
int gt_h5_read_i32(gt_h5 f, const char *path, int32_t **data, int *ndim, int64_t shape[8],
                   char *err, size_t errn);
/* Number of links (members) of a group; -1 if it is not one. */
int64_t gt_h5_count(gt_h5 f, const char *group);
/* Numeric attribute of an object as double; returns -1 if absent or not numeric. */
int gt_h5_attr_f64(gt_h5 f, const char *obj, const char *name, double *out, char *err, size_t errn);

/* Reads the 2-byte bfloat16 datasets Keras writes (H5T_OPAQUE + attribute dtype="bfloat16") as
 * float32 too. */

/* ---- writing */
typedef struct gt_h5w {
    gt_h5 f;          /* pass to the write calls */
    char path[4096];  /* final name */
    char tmp[4160];   /* temporary name, renamed on commit */
} gt_h5w;

int gt_h5_create(const char *path, gt_h5w *w, char *err, size_t errn);
/* Closes a file open for writing once, in every case; 0 when everything reached the file, else
 * -1 with errno set. keep: the file is wanted; its space is reserved before the close, so a full
 * disk fails here rather than inside the close. Not kept (or the reservation failed): the rest
 * of its writes go to an anonymous memory file, so the close itself cannot fail. */
int gt_h5_finish(gt_h5 f, bool keep);
int gt_h5_commit(gt_h5w *w, char *err, size_t errn); /* closes w->f in every case */
void gt_h5_abort(gt_h5w *w);
/* Group at path, creating missing parents; an existing group is fine. */
int gt_h5_group(gt_h5 f, const char *path, char *err, size_t errn);
/* Datasets (parents created as needed): float32 (IEEE LE) of any rank <= 8, int32 arrays, and
 * an int64 scalar (ndim 0). */
int gt_h5_write_f32(gt_h5 f, const char *path, const float *data, int ndim, const int64_t *shape,
                    char *err, size_t errn);
int gt_h5_write_i32(gt_h5 f, const char *path, const int32_t *data, int ndim,
                    const int64_t *shape, char *err, size_t errn);
int gt_h5_write_i64_scalar(gt_h5 f, const char *path, int64_t v, char *err, size_t errn);
/* Scalar attributes on an existing object: a variable-length UTF-8 string (h5py's str), a
 * double, an int64. An existing attribute of that name is replaced. */
int gt_h5_set_attr_str(gt_h5 f, const char *obj, const char *name, const char *value, char *err,
                       size_t errn);
int gt_h5_set_attr_f64(gt_h5 f, const char *obj, const char *name, double v, char *err,
                       size_t errn);
int gt_h5_set_attr_i64(gt_h5 f, const char *obj, const char *name, int64_t v, char *err,
                       size_t errn);
/* String attribute (fixed or variable length) into buf; -1 if absent or not a string. */
int gt_h5_attr_str(gt_h5 f, const char *obj, const char *name, char *buf, size_t bufn, char *err,
                   size_t errn);

#endif
