/* safetensors.h: read and write Hugging Face safetensors files.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON (an object mapping tensor
 * names to {"dtype", "shape", "data_offsets": [begin, end]} plus an optional "__metadata__"
 * object of strings), then the data section; offsets are relative to its start.
 *
 * Reading: files are memory-mapped and the header is validated as the official library does
 * before anything is used: length within the file and at most 100 MB, JSON text starting with
 * '{', no duplicate keys, known dtype, non-negative integer shape (at most GT_ST_MAX_DIMS
 * dims, element count and byte size without overflow), end - begin equal to the byte size, and
 * the tensors tiling the data section exactly (sorted by offset: first at 0, no gap, no
 * overlap, last ending at the end of the file). Any failure is one line naming the file and,
 * where there is one, the tensor. A sharded checkpoint opens through its
 * model.safetensors.index.json: every shard listed in weight_map is opened, each mapped name must
 * be in the shard it names, and a name may appear in only one shard. Tensor data pointers point
 * into the mappings (not necessarily aligned) and live until gt_st_close.
 * Conversion to fp32: F32, F16, BF16 and F64; other known dtypes can be listed but not read.
 *
 * Writing: fp32 arrays are stored as F32 or BF16 (round to nearest even, as torch does), in
 * name order (the official library's order for one dtype), "__metadata__" first, the JSON
 * compact and padded with spaces to a multiple of 8 bytes. The file is written beside the target,
 * fsync'ed and renamed over it (then the directory is fsync'ed), so a failure never leaves half
 * a file under the final name. */
#ifndef GT_SAFETENSORS_H
#define GT_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GT_ST_MAX_DIMS 8
#define GT_ST_MAX_HEADER 100000000u

typedef enum {
    GT_ST_BOOL, GT_ST_U8, GT_ST_I8, GT_ST_F8_E4M3, GT_ST_F8_E5M2, GT_ST_I16, GT_ST_U16, GT_ST_F16,
    GT_ST_BF16, GT_ST_I32, GT_ST_U32, GT_ST_F32, GT_ST_I64, GT_ST_U64, GT_ST_F64, GT_ST_N_DTYPES
} gt_st_dtype;

typedef struct gt_st_tensor {
    const char *name;
    gt_st_dtype dtype;
    int ndim;
    int64_t shape[GT_ST_MAX_DIMS];
    int64_t n_elements;
    uint64_t n_bytes;
    const uint8_t *data; /* into the mapping; may be unaligned */
    const char *file;    /* the file holding it */
} gt_st_tensor;

typedef struct gt_st gt_st;

/* path: a .safetensors file, a model.safetensors.index.json, or a directory holding one of
 * these (the index is preferred). */
int gt_st_open(const char *path, gt_st **out, char *err, size_t errn);
/* Parse one file image from a caller-owned buffer (tests, fuzzing); the buffer must outlive the
 * handle. name is used in messages. */
int gt_st_open_buffer(const uint8_t *buf, size_t len, const char *name, gt_st **out, char *err,
                      size_t errn);
void gt_st_close(gt_st *st);

int64_t gt_st_n_tensors(const gt_st *st);
const gt_st_tensor *gt_st_tensor_at(const gt_st *st, int64_t i); /* in name order */
const gt_st_tensor *gt_st_find(const gt_st *st, const char *name);  /* or NULL */
/* "__metadata__" value of the first file (for a sharded set: the first shard), or NULL. */
const char *gt_st_metadata(const gt_st *st, const char *key);

const char *gt_st_dtype_name(gt_st_dtype d);
size_t gt_st_dtype_size(gt_st_dtype d);
/* Convert a tensor to fp32 into dst (n_elements floats). Fails naming the tensor for dtypes
 * other than F32, F16, BF16, F64. */
int gt_st_read_f32(const gt_st_tensor *t, float *dst, char *err, size_t errn);

typedef struct gt_st_entry {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[GT_ST_MAX_DIMS];
} gt_st_entry;

/* Write n tensors as dtype (GT_ST_F32 or GT_ST_BF16). meta: NULL or a NULL-terminated list of
 * key, value strings for "__metadata__" (e.g. {"format", "pt", NULL}). Names must be unique and
 * not "__metadata__". */
int gt_st_write(const char *path, const gt_st_entry *entries, size_t n, gt_st_dtype dtype,
                const char *const *meta, char *err, size_t errn);

#endif
