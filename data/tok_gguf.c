/* tok_gguf.c: the vocabulary of a llama.cpp GGUF file (tokenizer.ggml.* metadata) as a
 * gt_tokenizer, without reading any weights.
 *
 * Contract: as tokenizer.h; the container itself is read by models/io/gguf.h (the one piece of
 * models/ that data/ uses; it depends only on util/). The pieces go to gt_tok_from_pieces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "models/io/gguf.h"
#include "util/err.h"

/* llama.cpp's converter writes Gemma's whitespace-run pieces (USER_DEFINED "\u2581\u2581" ...
 * in the SentencePiece model) with plain spaces. Spell them back with U+2581, as SentencePiece
 * does, so that a .spm written from this vocabulary matches them in real SentencePiece too
 * (tok_set_spm_text_rules lets the encoder match them on raw spaces either way). A respelling
 * that would collide with another piece is left alone. */
static int respell_spaces(char **pieces, const int32_t *types, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (types[i] != GT_PIECE_USER_DEFINED || !strchr(pieces[i], ' ')) continue;
        size_t l = strlen(pieces[i]), spaces = 0;
        for (size_t j = 0; j < l; j++) spaces += pieces[i][j] == ' ';
        char *r = malloc(l + 2 * spaces + 1);
        if (!r) return -1;
        size_t k = 0;
        for (size_t j = 0; j < l; j++) {
            if (pieces[i][j] == ' ') memcpy(r + k, "\xE2\x96\x81", 3), k += 3;
            else r[k++] = pieces[i][j];
        }
        r[k] = 0;
        bool taken = false;
        for (uint64_t j = 0; j < n && !taken; j++) taken = strlen(pieces[j]) == k && !memcmp(pieces[j], r, k);
        if (taken) {
            free(r);
            continue;
        }
        free(pieces[i]);
        pieces[i] = r;
    }
    return 0;
}

int gt_tok_from_gguf(const gt_gguf *g, gt_tokenizer **tok, char *err, size_t errn) {
    *tok = NULL;
    char **pieces = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    uint64_t n = 0, ns = 0, nt = 0;
    int rc = -1;
    /* Gemma 1-3 GGUFs carry SentencePiece ("llama"); llama.cpp writes Gemma 4's BPE vocabulary as
     * "gemma4", whose merges this reader does not apply: refuse rather than tokenize wrongly */
    const char *model = NULL;
    uint64_t model_len = 0;
    char e0[256];
    if (gt_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len, e0, sizeof e0) == 0 &&
        !(model_len == 5 && !memcmp(model, "llama", 5)))
        return snprintf(err, errn, "tokenizer.ggml.model is \"%.*s\": only SentencePiece (\"llama\") vocabularies "
                        "are read from GGUF; give the tokenizer key (a tokenizer.json or .spm)",
                        (int)(model_len > 64 ? 64 : model_len), model), -1;
    if (gt_gguf_get_strings(g, "tokenizer.ggml.tokens", &pieces, &n, err, errn)) goto done;
    if (gt_gguf_get_f32s(g, "tokenizer.ggml.scores", &scores, &ns, err, errn)) goto done;
    if (gt_gguf_get_i32s(g, "tokenizer.ggml.token_type", &types, &nt, err, errn)) goto done;
    if (ns != n || nt != n || n > INT32_MAX) {
        snprintf(err, errn, "tokenizer.ggml.*: %llu tokens, %llu scores, %llu types differ",
                 (unsigned long long)n, (unsigned long long)ns, (unsigned long long)nt);
        goto done;
    }
    /* llama.cpp types Gemma's <unk> CONTROL; tokenizer.json (and SentencePiece, hence a preset's
     * vocabulary.spm) has it UNKNOWN: follow them when the file names its unknown token */
    int64_t unk = -1;
    char e1[256];
    if (gt_gguf_get_int(g, "tokenizer.ggml.unknown_token_id", &unk, e1, sizeof e1) == 0 && unk >= 0 &&
        (uint64_t)unk < n) {
        bool any = false;
        for (uint64_t i = 0; i < n && !any; i++) any = types[i] == GT_PIECE_UNKNOWN;
        if (!any) types[unk] = GT_PIECE_UNKNOWN;
    }
    if (respell_spaces(pieces, types, n)) {
        snprintf(err, errn, "tokenizer.ggml.tokens: out of memory");
        goto done;
    }
    if (gt_tok_from_pieces((const char *const *)pieces, scores, types, (int32_t)n, tok, err, errn)) goto done;
    int64_t bos = 2, eos = 1, pad = 0;
    char e2[256];
    gt_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos, e2, sizeof e2);
    gt_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, e2, sizeof e2);
    gt_gguf_get_int(g, "tokenizer.ggml.padding_token_id", &pad, e2, sizeof e2);
    if (bos < -1 || bos > INT32_MAX || eos < -1 || eos > INT32_MAX || pad < -1 || pad > INT32_MAX) {
        snprintf(err, errn, "tokenizer.ggml: special token ids (bos %lld, eos %lld, pad %lld) out of range",
                 (long long)bos, (long long)eos, (long long)pad);
        gt_tok_free(*tok);
        *tok = NULL;
        goto done;
    }
    if (gt_tok_set_special(*tok, (int32_t)bos, (int32_t)eos, (int32_t)pad, err, errn)) {
        gt_tok_free(*tok);
        *tok = NULL;
        goto done;
    }
    rc = 0;
done:
    gt_gguf_free_strings(pieces, n);
    free(scores);
    free(types);
    return rc;
}

int gt_tok_load_gguf(const char *path, gt_tokenizer **out, char *err, size_t errn) {
    *out = NULL;
    gt_gguf *g;
    if (gt_gguf_open(path, &g, err, errn)) return -1;
    char e[1024];
    int rc = gt_tok_from_gguf(g, out, e, sizeof e);
    gt_gguf_close(g);
    if (rc) gt_errf(err, errn, "%s: %s", path, e);
    return rc;
}
