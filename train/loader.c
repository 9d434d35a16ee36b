#include "train/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/io/gemma_gguf.h"
#include "models/io/hf_gemma.h"
#include "models/io/keras_preset.h"
#include "util/err.h"

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

static int load_model(const char *path, bool trainable, gt_frozen_dtype dt, gt_gemma **model, gt_tokenizer **tok,
                      char *err, size_t errn) {
    *model = NULL;
    if (tok) *tok = NULL;
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        if (gt_keras_preset_detect(path))
            return dt == GT_FROZEN_FP32 ? gt_keras_preset_load(path, trainable, model, tok, err, errn)
                                        : gt_keras_preset_load_frozen(path, dt, model, tok, err, errn);
        char cj[4200];
        snprintf(cj, sizeof cj, "%s/config.json", path);
        if (stat(cj, &st))
            return snprintf(err, errn, "%s: a directory without config.json (neither a KerasHub preset nor a "
                            "Hugging Face model)", path), -1;
        if (hf_dir(path)) return load_hf(path, trainable, model, tok, err, errn);
        /* a config.json that is neither: let the preset reader name the problem */
        return gt_keras_preset_load(path, trainable, model, tok, err, errn);
    }
    int kind = gt_gguf_sniff(path);
    if (kind < 0) return gt_err_open(err, errn, path, errno);
    if (!kind)
        return snprintf(err, errn, "%s: not a model file this build can read (a GGUF file, a "
                        "KerasHub preset directory or a Hugging Face directory)", path), -1;
    gt_gguf *g;
    if (gt_gguf_open(path, &g, err, errn)) return -1;
    char e[1024];
    int rc = dt == GT_FROZEN_FP32 ? gt_gemma_from_gguf(g, trainable, model, e, sizeof e)
                                  : gt_gemma_from_gguf_frozen(g, dt, model, e, sizeof e);
    if (rc == 0 && tok) rc = gt_tok_from_gguf(g, tok, e, sizeof e);
    gt_gguf_close(g);
    if (rc) {
        snprintf(err, errn, "%s: %s", path, e);
        gt_gemma_free(*model);
        *model = NULL;
        return -1;
    }
    return 0;
}

int gt_load_model(const char *path, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                  char *err, size_t errn) {
    return load_model(path, trainable, GT_FROZEN_FP32, model, tok, err, errn);
}

int gt_load_model_frozen(const char *path, gt_frozen_dtype dt, gt_gemma **model, gt_tokenizer **tok,
                         char *err, size_t errn) {
    if (load_model(path, false, dt, model, tok, err, errn)) return -1;
    if ((*model)->frozen_dtype == dt) return 0;
    /* HF directories load as fp32 first, then convert a tensor at a time */
    char e[512];
    if (!gt_gemma_set_frozen_dtype(*model, dt, e, sizeof e)) return 0;
    snprintf(err, errn, "%s: %s", path, e);
    gt_gemma_free(*model);
    *model = NULL;
    if (tok) {
        gt_tok_free(*tok);
        *tok = NULL;
    }
    return -1;
}
