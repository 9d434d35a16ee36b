/* gguf_writer.h: write GGUF v3 files (llama.cpp's format; gguf.h reads them).
 *
 * Collect metadata and tensors, then gt_ggufw_write lays them out: header, metadata in the order
 * added, the tensor directory, padding to general.alignment (32), and each tensor's data at an
 * aligned offset. Tensors are fp32 arrays the caller keeps alive until the write, stored as
 * F32, F16, BF16 (round to nearest even) or Q8_0 (blocks of 32: scale max|x|/127 as F16, int8
 * round(x / scale) with halves away from zero: the ggml reference quantiser, bit for bit with
 * the gguf package). Shapes are given row-major, as everywhere in this project; the file lists
 * them innermost first. The file is written beside the target, fsync'ed and renamed over it.
 * Ownership: the writer copies keys, names and metadata values; gt_ggufw_free releases them.
 * Errors: -1 and one line naming the key, tensor or file. */
#ifndef GT_GGUF_WRITER_H
#define GT_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids of the storage types offered */
enum { GT_GGML_F32 = 0, GT_GGML_F16 = 1, GT_GGML_Q8_0 = 8, GT_GGML_BF16 = 30 };

typedef struct gt_ggufw gt_ggufw;

gt_ggufw *gt_ggufw_new(void); /* NULL when out of memory */
void gt_ggufw_free(gt_ggufw *w);

/* Metadata; each returns 0 or -1 (out of memory, or a key given twice). */
int gt_ggufw_str(gt_ggufw *w, const char *key, const char *value);
int gt_ggufw_u32(gt_ggufw *w, const char *key, uint32_t value);
int gt_ggufw_i32(gt_ggufw *w, const char *key, int32_t value);
int gt_ggufw_f32(gt_ggufw *w, const char *key, float value);
int gt_ggufw_bool(gt_ggufw *w, const char *key, bool value);
int gt_ggufw_str_array(gt_ggufw *w, const char *key, const char *const *values, uint64_t n);
int gt_ggufw_f32_array(gt_ggufw *w, const char *key, const float *values, uint64_t n);
int gt_ggufw_i32_array(gt_ggufw *w, const char *key, const int32_t *values, uint64_t n);
int gt_ggufw_bool_array(gt_ggufw *w, const char *key, const bool *values, uint64_t n);

/* A tensor of ndim (1-4) row-major dims, data borrowed until the write. Q8_0 needs the
 * innermost dimension to be a multiple of 32. */
int gt_ggufw_tensor(gt_ggufw *w, const char *name, const float *data, int ndim, const int64_t *shape,
                    uint32_t type, char *err, size_t errn);

int gt_ggufw_write(const gt_ggufw *w, const char *path, char *err, size_t errn);

/* The values a Q8_0 tensor of x holds (quantised as written here, then dequantised); n a
 * multiple of 32. */
void gt_ggml_q8_0_round(const float *x, float *y, int64_t n);

#endif
