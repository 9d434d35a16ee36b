/* h5io.h: small HDF5 helpers over the serial HDF5 library (fixtures, checkpoints, Keras weights).
 *
 * HDF5's own error printing is turned off; every failure returns -1 with a one-line message
 * naming the file and the object path. Read buffers are malloc'ed and owned by the caller. */
#ifndef GT_H5IO_H
#define GT_H5IO_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t gt_h5; /* hid_t of an open file */

int gt_h5_open_read(const char *path, gt_h5 *out, char *err, size_t errn);
void gt_h5_close(gt_h5 f);
int gt_h5_exists(gt_h5 f, const char *obj); /* 1 if the path exists, else 0 */

/* Dataset as float32 / int32 (converted by HDF5 from the stored type). *shape gets up to 8 dims,
 * *ndim the rank; *data is malloc'ed (caller frees). */
int gt_h5_read_f32(gt_h5 f, const char *path, float **data, int *ndim, int64_t shape[8],
                   char *err, size_t errn);
int gt_h5_read_i32(gt_h5 f, const char *path, int32_t **data, int *ndim, int64_t shape[8],
                   char *err, size_t errn);
/* Numeric attribute of an object as double; returns -1 if absent or not numeric. */
int gt_h5_attr_f64(gt_h5 f, const char *obj, const char *name, double *out, char *err, size_t errn);

#endif
