/* Tokenizer benchmark: load time of a tokenizer file and single-threaded encoding throughput
 * over the prompt and response texts of a JSONL file.
 * usage: tokenize [TOKENIZER [JSONL [REPEATS]]]
 *   TOKENIZER  tokenizer.json, .spm or a GGUF model file (its tokenizer.ggml.* vocabulary);
 *              default tests/fixtures/gemma3-tokenizer-8k.json (8192 pieces cut from the real
 *              Gemma 3 tokenizer.json; give the real one for the full-vocabulary load time)
 *   JSONL      default datasets/debian-packages/train.jsonl
 * (paths relative to the repository root)
 * Prints one line `RESULT load_s=... mb_s=... bytes=... tokens=... texts=...` for
 * bench/tokenize.sh. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "train/loader.h"
#include "util/clock.h"

typedef struct { char **s; size_t *n; size_t count, cap, bytes; } texts;

static int add_text(texts *t, json_t *v) {
    if (!json_is_string(v)) return 0;
    if (t->count == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 1024;
        char **ns = realloc(t->s, nc * sizeof *ns);
        if (!ns) return -1;
        t->s = ns;
        size_t *nn = realloc(t->n, nc * sizeof *nn);
        if (!nn) return -1;
        t->n = nn, t->cap = nc;
    }
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (!s) return -1;
    memcpy(s, json_string_value(v), n + 1);
    t->s[t->count] = s, t->n[t->count++] = n, t->bytes += n;
    return 0;
}

int main(int argc, char **argv) {
    const char *tp = argc > 1 ? argv[1] : "tests/fixtures/gemma3-tokenizer-8k.json";
    const char *dp = argc > 2 ? argv[2] : "datasets/debian-packages/train.jsonl";
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    if (repeats < 1) repeats = 1;

    char err[512];
    gt_tokenizer *tok = NULL;
    double load_s = 1e30;
    for (int r = 0; r < 3; r++) { /* best of 3: the machine is shared */
        gt_tok_free(tok);
        double t0 = gt_now();
        if (gt_tok_load(tp, &tok, err, sizeof err)) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
        double dt = gt_now() - t0;
        if (dt < load_s) load_s = dt;
    }

    FILE *f = fopen(dp, "r");
    if (!f) {
        fprintf(stderr, "bench: cannot open %s\n", dp);
        gt_tok_free(tok);
        return 1;
    }
    texts tx = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, 0, &je);
        if (!o) continue;
        if (add_text(&tx, json_object_get(o, "prompt")) || add_text(&tx, json_object_get(o, "response"))) {
            fprintf(stderr, "bench: out of memory\n");
            return 1;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);

    gt_ids ids = {0};
    size_t tokens = 0;
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        tokens = 0;
        double t1 = gt_now();
        for (size_t i = 0; i < tx.count; i++) {
            ids.n = 0;
            if (gt_tok_encode(tok, tx.s[i], tx.n[i], true, &ids, err, sizeof err)) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            tokens += ids.n;
        }
        double dt = gt_now() - t1;
        if (dt < best) best = dt;
    }
    double mbs = (double)tx.bytes / 1e6 / best;
    printf("gemmatrain C: load %.3f s (best of 3), encode %.2f MB/s (%zu texts, %zu bytes, %zu tokens, best "
           "of %d)\n",
           load_s, mbs, tx.count, tx.bytes, tokens, repeats);
    printf("RESULT load_s=%.4f mb_s=%.3f bytes=%zu tokens=%zu texts=%zu\n", load_s, mbs, tx.bytes, tokens,
           tx.count);
    gt_ids_free(&ids);
    for (size_t i = 0; i < tx.count; i++) free(tx.s[i]);
    free(tx.s);
    free(tx.n);
    gt_tok_free(tok);
    return 0;
}
