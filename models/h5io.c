#include "models/h5io.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(void) {
    static int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}


static const char *fname(gt_h5 f) {
    static char buf[512];
    ssize_t n = H5Fget_name((hid_t)f, buf, sizeof buf);
    return n > 0 ? buf : "(hdf5)";
}

int gt_h5_open_read(const char *path, gt_h5 *out, char *err, size_t errn) {
    quiet();
    FILE *probe = fopen(path, "rb");
    if (!probe) return snprintf(err, errn, "%s: cannot open", path), -1;
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
    if (H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
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
