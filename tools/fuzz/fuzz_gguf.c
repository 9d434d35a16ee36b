/* fuzz_gguf.c: libFuzzer target for the GGUF reader (header, metadata, tensor directory), every
 * accessor and dequantiser on what it accepts, the Gemma mapping and the GGUF tokenizer.
 * Properties beyond "no crash, leak or UB": a refusal has a message naming the file.
 * seeds: tests/fixtures/tiny.gguf tools/fuzz/seeds/gguf
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/gemma_gguf.h"
#include "models/io/gguf.h"
#include "data/tokenizer.h"

static void use_metadata(gt_gguf *g) {
    char err[512];
    for (int64_t i = 0; i < gt_gguf_n_keys(g); i++) {
        const char *k = gt_gguf_key(g, i), *s;
        int64_t v;
        double f;
        uint64_t n;
        gt_gguf_vtype et;
        char **ss;
        float *fs;
        int32_t *is;
        if (gt_gguf_find_key(g, k) != i) abort(); /* keys are unique */
        gt_gguf_get_int(g, k, &v, err, sizeof err);
        gt_gguf_get_float(g, k, &f, err, sizeof err);
        if (gt_gguf_get_str(g, k, &s, &n, err, sizeof err) == 0 && n) {
            volatile char last = s[n - 1]; /* the whole string is readable */
            (void)last;
        }
        gt_gguf_get_array(g, k, &et, &n, err, sizeof err);
        if (gt_gguf_get_strings(g, k, &ss, &n, err, sizeof err) == 0) gt_gguf_free_strings(ss, n);
        if (gt_gguf_get_f32s(g, k, &fs, &n, err, sizeof err) == 0) free(fs);
        if (gt_gguf_get_i32s(g, k, &is, &n, err, sizeof err) == 0) free(is);
    }
}

static void use_tensors(gt_gguf *g) {
    char err[512];
    for (int64_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_gguf_tensor *t = gt_gguf_tensor_at(g, i);
        if (gt_gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
        if (t->n_elements > (1 << 20)) continue;
        float *out = malloc(sizeof(float) * (size_t)t->n_elements);
        if (!out) continue;
        gt_gguf_dequant(g, t, out, err, sizeof err);
        free(out);
    }
}

static void use_model(gt_gguf *g) {
    char err[512];
    gt_gemma *m = NULL;
    if (gt_gemma_from_gguf(g, false, &m, err, sizeof err) == 0) gt_gemma_free(m);
    gt_tokenizer *tok = NULL;
    if (gt_tok_from_gguf(g, &tok, err, sizeof err) == 0) {
        static const char text[] = "<bos>hello world\n\n<start_of_turn>user cat\xC3\xA9\xF0\x9F\x98\x80";
        gt_ids ids = {0};
        char *back = NULL;
        for (int special = 0; special < 2; special++) {
            ids.n = 0;
            if (gt_tok_encode(tok, text, sizeof text - 1, special, &ids, err, sizeof err) == 0 &&
                gt_tok_decode(tok, ids.ids, ids.n, special, &back, NULL, err, sizeof err) == 0)
                free(back);
        }
        gt_ids_free(&ids);
        gt_tok_free(tok);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gt_gguf *g;
    char err[512] = "";
    if (gt_gguf_open_buffer(data, size, "fuzz.gguf", &g, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz.gguf: ", 11) != 0 || strlen(err) < 16) abort(); /* a clear message */
        return 0;
    }
    use_metadata(g);
    use_tensors(g);
    use_model(g);
    gt_gguf_close(g);
    return 0;
}
