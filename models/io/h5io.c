#include "models/io/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/fsutil.h"
#include "util/half.h"
#include "util/err.h"

static void quiet(void) {
    static int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}


void gt_h5_process_init(void) { (void)H5dont_atexit(); }

static const char *fname(gt_h5 f) {
    static char buf[512];
    ssize_t n = H5Fget_name((hid_t)f, buf, sizeof buf);
    return n > 0 ? buf : "(hdf5)";
}

int gt_h5_open_read(const char *path, gt_h5 *out, char *err, size_t errn) {
    quiet();
    FILE *probe = fopen(path, "rb");
    if (!probe) return gt_err_open(err, errn, path, errno);
    fclose(probe);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return snprintf(err, errn, "%s: not a readable HDF5 file (truncated or foreign?)", path), -1;
    *out = (gt_h5)f;
    return 0;
}

void gt_h5_close(gt_h5 f) {
    if (f > 0) H5Fclose((hid_t)f);
}

int gt_h5_exists(gt_h5 f, const char *obj) {
    quiet();
    /* Check each prefix: H5Lexists fails on a missing intermediate group. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", obj);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists((hid_t)f, buf, H5P_DEFAULT) <= 0) return 0;
            if (!c) break;
            *p = c;
        }
    }
    return 1;
}

int64_t gt_h5_count(gt_h5 f, const char *group) {
    quiet();
    if (strcmp(group, "/") && !gt_h5_exists(f, group)) return -1;
    H5G_info_t info;
    if (H5Gget_info_by_name((hid_t)f, group, &info, H5P_DEFAULT) < 0) return -1;
    return (int64_t)info.nlinks;
}

static int read_ds(gt_h5 f, const char *path, hid_t memtype, size_t elsize, void **data, int *ndim,
                   int64_t shape[8], char *err, size_t errn) {
    quiet();
    *data = NULL;
    if (!gt_h5_exists(f, path)) return snprintf(err, errn, "%s: %s: no such dataset", fname(f), path), -1;
    hid_t ds = H5Dopen2((hid_t)f, path, H5P_DEFAULT);
    if (ds < 0) return snprintf(err, errn, "%s: %s: not a dataset", fname(f), path), -1;
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    int rc = -1;
    if (nd < 0 || nd > 8) {
        snprintf(err, errn, "%s: %s: unsupported rank %d", fname(f), path, nd);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < nd; i++) {
        shape[i] = (int64_t)dims[i];
        n *= (size_t)dims[i];
    }
    *ndim = nd;
    *data = malloc(n ? n * elsize : elsize);
    if (!*data) {
        snprintf(err, errn, "%s: %s: out of memory", fname(f), path);
        goto done;
    }
    hid_t ft = H5Dget_type(ds);
    bool bf16 = memtype == H5T_NATIVE_FLOAT && H5Tget_class(ft) == H5T_OPAQUE && H5Tget_size(ft) == 2;
    herr_t rd;
    if (bf16) { /* Keras' bfloat16: the upper half of a float32's bit pattern */
        uint16_t *raw = malloc(n ? n * 2 : 2);
        rd = raw ? H5Dread(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) : -1;
        for (size_t i = 0; rd >= 0 && i < n; i++) ((float *)*data)[i] = gt_bf16_to_f32(raw[i]);
        free(raw);
    } else {
        rd = H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data);
    }
    H5Tclose(ft);
    if (rd < 0) {
        snprintf(err, errn, "%s: %s: read failed (truncated file or incompatible type)", fname(f), path);
        free(*data);
        *data = NULL;
        goto done;
    }
    rc = 0;
done:
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

int gt_h5_read_f32(gt_h5 f, const char *path, float **data, int *ndim, int64_t shape[8],
                   char *err, size_t errn) {
    return read_ds(f, path, H5T_NATIVE_FLOAT, sizeof(float), (void **)data, ndim, shape, err, errn);
}

int gt_h5_read_i32(gt_h5 f, const char *path, int32_t **data, int *ndim, int64_t shape[8],
                   char *err, size_t errn) {
    return read_ds(f, path, H5T_NATIVE_INT32, sizeof(int32_t), (void **)data, ndim, shape, err, errn);
}

int gt_h5_attr_f64(gt_h5 f, const char *obj, const char *name, double *out, char *err, size_t errn) {
    quiet();
    if (H5Aexists_by_name((hid_t)f, obj, name, H5P_DEFAULT) <= 0)
        return snprintf(err, errn, "%s: %s: no attribute '%s'", fname(f), obj, name), -1;
    hid_t a = H5Aopen_by_name((hid_t)f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return snprintf(err, errn, "%s: %s: cannot open attribute '%s'", fname(f), obj, name), -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(t);
    int rc = -1;
    if (cls == H5T_INTEGER || cls == H5T_FLOAT || cls == H5T_ENUM) {
        rc = H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0 ? -1 : 0;
        if (rc) snprintf(err, errn, "%s: %s: attribute '%s' unreadable", fname(f), obj, name);
    } else {
        snprintf(err, errn, "%s: %s: attribute '%s' is not numeric", fname(f), obj, name);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* ---------------------------------------------------------------- writing */

int gt_h5_create(const char *path, gt_h5w *w, char *err, size_t errn) {
    quiet();
    memset(w, 0, sizeof *w);
    w->f = -1;
    if (strlen(path) >= sizeof w->path) return snprintf(err, errn, "%s: path too long", path), -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid());
    errno = 0;
    hid_t f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        int e = errno;
        unlink(w->tmp); /* created, then its first write failed (a full disk) */
        return snprintf(err, errn, "%s: cannot create %s: %s", path, w->tmp,
                        e ? strerror(e) : "directory missing or not writable?"), -1;
    }
    w->f = (gt_h5)f;
    return 0;
}

/* The file descriptor under f (the default sec2 driver's handle), or -1. */
static int vfd_fd(hid_t f) {
    hid_t fapl = H5Fget_access_plist(f);
    bool sec2 = fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2;
    if (fapl >= 0) H5Pclose(fapl);
    void *h = NULL;
    if (!sec2 || H5Fget_vfd_handle(f, H5P_DEFAULT, &h) < 0 || !h) return -1;
    return *(int *)h;
}

/* Every later write to f's file goes to an anonymous memory file instead (dup2 closes the real
 * file), so the close of a file whose writes failed has nothing left to fail on. */
static void detach_storage(hid_t f) {
    int fd = vfd_fd(f);
    if (fd < 0) return;
    int sink = memfd_create("gemmatrain-h5-discard", MFD_CLOEXEC);
    if (sink < 0) sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (sink < 0) return;
    dup2(sink, fd);
    close(sink);
}

/* HDF5 1.10 cannot recover from a failed flush or close (the ID stays, half torn down, and a
 * later close, HDF5's atexit one included, crashes on it). So the close of a complete file must
 * not fail: the space of everything allocated in it is reserved first (fallocate; the
 * close only writes metadata within that space, then trims the file to its end), and a full
 * disk shows there, while the file can still be closed without writing. */
int gt_h5_finish(gt_h5 f, bool keep) {
    quiet();
    if (f <= 0) return 0;
    int e = 0;
    if (keep) {
        hsize_t size = 0;
        int fd = vfd_fd((hid_t)f);
        /* KEEP_SIZE: the file's length stays HDF5's business (it trims it to its end at the close);
         * a file system without fallocate gets no reservation */
        if (fd >= 0 && H5Fget_filesize((hid_t)f, &size) >= 0 && size > 0 &&
            fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) && errno != EOPNOTSUPP && errno != ENOSYS)
            e = errno;
    }
    if (!keep || e) detach_storage((hid_t)f);
    errno = 0;
    if (H5Fclose((hid_t)f) < 0 && !e) e = errno ? errno : EIO;
    errno = e;
    return e ? -1 : 0;
}

void gt_h5_abort(gt_h5w *w) {
    if (w->f > 0) gt_h5_finish(w->f, false);
    w->f = -1;
    if (w->tmp[0]) unlink(w->tmp);
}

int gt_h5_commit(gt_h5w *w, char *err, size_t errn) {
    int rc = gt_h5_finish(w->f, true);
    w->f = -1;
    if (rc < 0) {
        int e = errno;
        unlink(w->tmp);
        return snprintf(err, errn, "%s: writing the HDF5 file failed: %s", w->path, strerror(e)), -1;
    }
    if (gt_fsync_path(w->tmp, false)) {
        int e = errno;
        unlink(w->tmp);
        return snprintf(err, errn, "%s: fsync failed: %s", w->tmp, strerror(e)), -1;
    }
    if (rename(w->tmp, w->path)) {
        int e = errno;
        unlink(w->tmp);
        return snprintf(err, errn, "%s: cannot rename the temporary file into place: %s", w->path, strerror(e)), -1;
    }
    gt_fsync_parent(w->path); /* best effort: some file systems refuse directory fsync */
    return 0;
}

static hid_t lcpl(void) {
    hid_t p = H5Pcreate(H5P_LINK_CREATE);
    if (p >= 0) H5Pset_create_intermediate_group(p, 1);
    return p;
}

int gt_h5_group(gt_h5 f, const char *path, char *err, size_t errn) {
    quiet();
    if (gt_h5_exists(f, path)) {
        hid_t g = H5Gopen2((hid_t)f, path, H5P_DEFAULT);
        if (g < 0) return snprintf(err, errn, "%s: %s: exists and is not a group", fname(f), path), -1;
        H5Gclose(g);
        return 0;
    }
    hid_t p = lcpl();
    hid_t g = H5Gcreate2((hid_t)f, path, p, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(p);
    if (g < 0) return snprintf(err, errn, "%s: %s: cannot create group", fname(f), path), -1;
    H5Gclose(g);
    return 0;
}

static int write_ds(gt_h5 f, const char *path, hid_t filetype, hid_t memtype, const void *data,
                    int ndim, const int64_t *shape, char *err, size_t errn) {
    quiet();
    if (ndim < 0 || ndim > 8) return snprintf(err, errn, "%s: %s: unsupported rank %d", fname(f), path, ndim), -1;
    hsize_t dims[8];
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return snprintf(err, errn, "%s: %s: negative dimension", fname(f), path), -1;
        dims[i] = (hsize_t)shape[i];
    }
    if (gt_h5_exists(f, path)) return snprintf(err, errn, "%s: %s: already exists", fname(f), path), -1;
    hid_t sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t p = lcpl();
    hid_t ds = H5Dcreate2((hid_t)f, path, filetype, sp, p, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(p);
    int rc = -1;
    errno = 0;
    if (ds < 0) snprintf(err, errn, "%s: %s: cannot create dataset", fname(f), path);
    else if (H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        int e = errno;
        snprintf(err, errn, "%s: %s: write failed: %s", fname(f), path, e ? strerror(e) : "disk full?");
    } else rc = 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

int gt_h5_write_f32(gt_h5 f, const char *path, const float *data, int ndim, const int64_t *shape,
                    char *err, size_t errn) {
    return write_ds(f, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, ndim, shape, err, errn);
}

int gt_h5_write_i32(gt_h5 f, const char *path, const int32_t *data, int ndim,
                    const int64_t *shape, char *err, size_t errn) {
    return write_ds(f, path, H5T_STD_I32LE, H5T_NATIVE_INT32, data, ndim, shape, err, errn);
}

int gt_h5_write_i64_scalar(gt_h5 f, const char *path, int64_t v, char *err, size_t errn) {
    return write_ds(f, path, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 0, NULL, err, errn);
}

static int set_attr(gt_h5 f, const char *obj, const char *name, hid_t filetype, hid_t memtype,
                    const void *v, char *err, size_t errn) {
    quiet();
    if (!gt_h5_exists(f, obj) && strcmp(obj, "/"))
        return snprintf(err, errn, "%s: %s: no such object for attribute '%s'", fname(f), obj, name), -1;
    if (H5Aexists_by_name((hid_t)f, obj, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name((hid_t)f, obj, name, H5P_DEFAULT);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name((hid_t)f, obj, name, filetype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = -1;
    if (a < 0) snprintf(err, errn, "%s: %s: cannot create attribute '%s'", fname(f), obj, name);
    else if (H5Awrite(a, memtype, v) < 0) snprintf(err, errn, "%s: %s: cannot write attribute '%s'", fname(f), obj, name);
    else rc = 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int gt_h5_set_attr_str(gt_h5 f, const char *obj, const char *name, const char *value, char *err,
                       size_t errn) {
    hid_t t = H5Tcopy(H5T_C_S1); /* h5py's str: variable length, UTF-8, NUL-terminated */
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    int rc = set_attr(f, obj, name, t, t, &value, err, errn);
    H5Tclose(t);
    return rc;
}

int gt_h5_set_attr_f64(gt_h5 f, const char *obj, const char *name, double v, char *err,
                       size_t errn) {
    return set_attr(f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err, errn);
}

int gt_h5_set_attr_i64(gt_h5 f, const char *obj, const char *name, int64_t v, char *err,
                       size_t errn) {
    return set_attr(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err, errn);
}

int gt_h5_attr_str(gt_h5 f, const char *obj, const char *name, char *buf, size_t bufn, char *err,
                   size_t errn) {
    quiet();
    if (H5Aexists_by_name((hid_t)f, obj, name, H5P_DEFAULT) <= 0)
        return snprintf(err, errn, "%s: %s: no attribute '%s'", fname(f), obj, name), -1;
    hid_t a = H5Aopen_by_name((hid_t)f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return snprintf(err, errn, "%s: %s: cannot open attribute '%s'", fname(f), obj, name), -1;
    hid_t t = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(t) != H5T_STRING) {
        snprintf(err, errn, "%s: %s: attribute '%s' is not a string", fname(f), obj, name);
    } else if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &s) >= 0 && s) {
            snprintf(buf, bufn, "%s", s);
            H5free_memory(s);
            rc = 0;
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        char *s = calloc(n + 1, 1);
        if (s && H5Aread(a, t, s) >= 0) {
            snprintf(buf, bufn, "%s", s);
            rc = 0;
        }
        free(s);
    }
    if (rc && H5Tget_class(t) == H5T_STRING)
        snprintf(err, errn, "%s: %s: attribute '%s' unreadable", fname(f), obj, name);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}
