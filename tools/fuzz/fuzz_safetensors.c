/* fuzz_safetensors.c: libFuzzer target for the safetensors reader (header length, JSON header,
 * dtype/shape/data_offsets validation, tiling of the data section) from memory, and every
 * accessor and fp32 conversion on what it accepts.
 * Properties beyond "no crash, leak or UB": a refusal is one line naming the file; an accepted
 * file's tensors lie inside the buffer, tile its data section, and are found by name.
 * seeds: tests/fixtures/hf/dtypes.safetensors tests/fixtures/hf/writer_f32.safetensors tests/fixtures/hf/writer_bf16.safetensors tools/fuzz/seeds/safetensors
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    gt_st *st;
    err[0] = 0;
    if (gt_st_open_buffer(data, size, "fuzz.safetensors", &st, err, sizeof err) != 0) {
        if (!strstr(err, "fuzz.safetensors") || strchr(err, '\n')) abort();
        return 0;
    }
    uint64_t covered = 0;
    for (int64_t i = 0; i < gt_st_n_tensors(st); i++) {
        const gt_st_tensor *t = gt_st_tensor_at(st, i);
        if (gt_st_find(st, t->name) != t) abort();
        if (t->data < data || t->data + t->n_bytes > data + size) abort();
        if ((uint64_t)t->n_elements * gt_st_dtype_size(t->dtype) != t->n_bytes) abort();
        covered += t->n_bytes;
        float *f = malloc((size_t)t->n_elements * sizeof *f + 1);
        if (!f) continue;
        if (gt_st_read_f32(t, f, err, sizeof err) != 0 && !strstr(err, t->name)) abort();
        free(f);
    }
    /* the tensors tile everything after the header */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | data[i];
    if (covered != size - 8 - hlen) abort();
    gt_st_metadata(st, "format");
    gt_st_close(st);
    return 0;
}
