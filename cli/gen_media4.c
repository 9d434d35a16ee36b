/* gen_media4.c: Gemma 4 media for generate (contract in gen_media4.h). */
#include "cli/gen_media4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/towers4_src.h"
#include "models/io/hf_processor4.h"
#include "models/io/keras_converters4.h"
#include "util/err.h"

/* The converters' settings: an HF directory's processor_config.json / preprocessor_config.json
 * (models/io/hf_processor4.h) or a preset's preprocessor.json when there is one, else KerasHub's
 * defaults fitted to the towers. */
static int converters(gt_gen4 *x, const char *dir, char *err, size_t errn) {
    x->icfg = gt_image4_cfg_gemma4();
    gt_audio_cfg_default(&x->acfg);
    if (x->has_v) x->icfg.patch = (int)x->v.cfg.patch_size, x->icfg.pool = (int)x->v.cfg.pool_size;
    if (x->has_a) x->acfg.num_mels = (int)x->a.cfg.input_feat_size;
    bool hi, ha;
    if (gt_hf_processor4_load(dir, x->has_v ? &x->icfg : NULL, &hi, x->has_a ? &x->acfg : NULL, &ha, err, errn))
        return -1;
    if (hi || ha) return 0;
    return gt_keras_converters4_load(dir, &x->icfg, &x->acfg, err, errn);
}

/* The towers wanted (vision when images, audio when clips) from a preset or an HF directory. */
static int towers(gt_gen4 *x, const char *dir, bool want_v, bool want_a, char *err, size_t errn) {
    if (cli_towers4_load(dir, want_v ? &x->v : NULL, &x->has_v, want_a ? &x->a : NULL, &x->has_a, err, errn))
        return -1;
    if (want_v && !x->has_v)
        return gt_errf(err, errn, "--image: %s has no Gemma 4 vision encoder (a KerasHub preset or Hugging Face "
                       "directory with one)", dir);
    if (want_a && !x->has_a)
        return gt_errf(err, errn, "--audio: %s has no Gemma 4 audio encoder (E2B/E4B have one)", dir);
    return 0;
}

static int load_images(gt_gen4 *x, const char *const *images, int n, char *err, size_t errn) {
    if (gt_image4_validate(&x->icfg, err, errn)) return -1;
    int64_t P = gt_image4_max_patches(&x->icfg), pd = gt_image4_patch_dim(&x->icfg);
    x->patches = malloc(sizeof(float) * (size_t)(n * P * pd));
    x->pos = malloc(sizeof(int32_t) * (size_t)(n * P * 2));
    if (!x->patches || !x->pos) return gt_errf(err, errn, "--image: out of memory");
    for (int i = 0; i < n; i++) {
        char e[1024];
        if (gt_image4_load(images[i], &x->icfg, x->patches + i * P * pd, x->pos + i * P * 2, NULL, e, sizeof e))
            return gt_errf(err, errn, "--image: %s", e);
    }
    x->im = (gt_gemma4_images){x->patches, x->pos, n, P};
    return 0;
}

/* One clip's features (all F frames) into *mel; its token and valid-frame counts. */
static int clip_features(const gt_gen4 *x, const char *path, float **mel, int64_t *tokens, int64_t *nv, char *err,
                         size_t errn) {
    float *wav = NULL;
    int64_t ns = 0, F = gt_audio_num_frames(&x->acfg), M = x->acfg.num_mels;
    char e[1024];
    if (gt_audio_read_wav(path, x->acfg.sampling_rate, &wav, &ns, NULL, e, sizeof e))
        return gt_errf(err, errn, "--audio: %s", e);
    *mel = malloc(sizeof(float) * (size_t)(F * M));
    int rc = !*mel ? gt_errf(err, errn, "--audio: out of memory") : gt_audio_features(&x->acfg, wav, ns, *mel, e, sizeof e);
    if (*mel && rc) gt_errf(err, errn, "--audio: %s: %s", path, e);
    *tokens = gt_audio_num_tokens(&x->acfg, ns), *nv = gt_audio_valid_frames(&x->acfg, ns);
    free(wav);
    return rc ? -1 : 0;
}

/* The clips, each cut to T = the largest 4 x token count frames (KerasHub clips the mel to the
 * placeholders; a shorter clip's extra frames are masked, which leaves its valid steps as they
 * are), in one [n, T, mels] block with their frame masks. */
static int load_clips(gt_gen4 *x, const char *const *paths, int n, char *err, size_t errn) {
    if (n < 1 || n > GT_GEN4_MAX_CLIPS) return gt_errf(err, errn, "--audio: 1 to %d clips", GT_GEN4_MAX_CLIPS);
    if (gt_audio_cfg_validate(&x->acfg, err, errn)) return -1;
    int64_t F = gt_audio_num_frames(&x->acfg), M = x->acfg.num_mels, T = 1, nv[GT_GEN4_MAX_CLIPS];
    float *all[GT_GEN4_MAX_CLIPS] = {0};
    int rc = 0;
    for (int c = 0; c < n && !rc; c++) {
        rc = clip_features(x, paths[c], &all[c], &x->clip_tokens[c], &nv[c], err, errn);
        if (!rc && 4 * x->clip_tokens[c] > T) T = 4 * x->clip_tokens[c] < F ? 4 * x->clip_tokens[c] : F;
    }
    size_t nT = (size_t)n * (size_t)(T > 0 ? T : 1);
    x->mel = rc ? NULL : malloc(sizeof(float) * nT * (size_t)M);
    x->valid = rc ? NULL : malloc(nT);
    if (!rc && (!x->mel || !x->valid)) rc = gt_errf(err, errn, "--audio: out of memory");
    for (int c = 0; c < n && !rc; c++) { /* the first T frames of each, row-major: a prefix */
        memcpy(x->mel + c * T * M, all[c], sizeof(float) * (size_t)(T * M));
        for (int64_t t = 0; t < T; t++) x->valid[c * T + t] = t < nv[c];
    }
    for (int c = 0; c < n; c++) free(all[c]);
    if (rc) return -1;
    x->cl = (gt_gemma4_clips){x->mel, x->valid, n, T};
    return 0;
}

int gt_gen4_load(gt_gen4 *x, const char *dir, const gt_tokenizer *tok, const char *const *images,
                 int n_images, const char *const *clips, int n_clips, char *err, size_t errn) {
    memset(x, 0, sizeof *x);
    if (n_images > GT_GEN4_MAX_IMAGES) return gt_errf(err, errn, "--image: at most %d images", GT_GEN4_MAX_IMAGES);
    if (n_clips > GT_GEN4_MAX_CLIPS)
        return gt_errf(err, errn, "--audio: at most %d clips per prompt", GT_GEN4_MAX_CLIPS);
    if (towers(x, dir, n_images > 0, n_clips > 0, err, errn)) return -1;
    x->has_v = x->has_v && n_images > 0, x->has_a = x->has_a && n_clips > 0;
    if (converters(x, dir, err, errn)) return -1;
    x->md = (gt_gemma4_media){.vision_bidir = cli_towers4_vision_bidir(dir), .image_token = -1, .audio_token = -1};
    if (n_images) {
        if ((x->md.image_token = gt_tok_piece_id(tok, GT_IMAGE4_PLACEHOLDER)) < 0)
            return gt_errf(err, errn, "--image: the tokenizer has no %s piece", GT_IMAGE4_PLACEHOLDER);
        if (load_images(x, images, n_images, err, errn)) return -1;
        x->md.vision = &x->v, x->md.images = &x->im;
    }
    if (n_clips) {
        if ((x->md.audio_token = gt_tok_piece_id(tok, GT_AUDIO_PLACEHOLDER)) < 0)
            return gt_errf(err, errn, "--audio: the tokenizer has no %s piece", GT_AUDIO_PLACEHOLDER);
        if (load_clips(x, clips, n_clips, err, errn)) return -1;
        x->md.audio = &x->a, x->md.clips = &x->cl;
    }
    return 0;
}

static int count(const char *s, const char *ph) {
    int n = 0;
    for (const char *p = strstr(s, ph); p; p = strstr(p + strlen(ph), ph)) n++;
    return n;
}

/* start, n x slot, end as ids; -1 naming a piece the tokenizer lacks. */
static int push_span(const gt_tokenizer *tok, const char *start, const char *slot, const char *end, int64_t n,
                     gt_ids *ids, char *err, size_t errn) {
    int32_t s = gt_tok_piece_id(tok, start), p = gt_tok_piece_id(tok, slot), e = gt_tok_piece_id(tok, end);
    if (s < 0 || p < 0 || e < 0) return gt_errf(err, errn, "the tokenizer lacks %s, %s or %s", start, slot, end);
    int rc = gt_ids_push(ids, s);
    for (int64_t i = 0; i < n; i++) rc |= gt_ids_push(ids, p);
    rc |= gt_ids_push(ids, e);
    return rc ? gt_errf(err, errn, "out of memory") : 0;
}

int gt_gen4_encode(const gt_gen4 *x, const gt_tokenizer *tok, const char *prompt, gt_ids *ids, char *err,
                   size_t errn) {
    int ni = count(prompt, GT_IMAGE4_PLACEHOLDER), na = count(prompt, GT_AUDIO_PLACEHOLDER);
    if (ni != x->im.n)
        return gt_errf(err, errn, "--image: PROMPT has %d %s marker%s for %lld image%s", ni, GT_IMAGE4_PLACEHOLDER,
                       ni == 1 ? "" : "s", (long long)x->im.n, x->im.n == 1 ? "" : "s");
    if (na != x->cl.n)
        return gt_errf(err, errn, "--audio: PROMPT has %d %s marker%s for %lld clip%s", na, GT_AUDIO_PLACEHOLDER,
                       na == 1 ? "" : "s", (long long)x->cl.n, x->cl.n == 1 ? "" : "s");
    const char *p = prompt;
    int clip = 0;
    while (*p) {
        const char *im = strstr(p, GT_IMAGE4_PLACEHOLDER), *au = strstr(p, GT_AUDIO_PLACEHOLDER);
        const char *at = !im ? au : !au ? im : im < au ? im : au;
        size_t len = at ? (size_t)(at - p) : strlen(p);
        if (len && gt_tok_encode(tok, p, len, false, ids, err, errn)) return -1;
        if (!at) break;
        int rc = at == im ? push_span(tok, GT_IMAGE4_START, GT_IMAGE4_PLACEHOLDER, GT_IMAGE4_END,
                                      x->icfg.max_soft_tokens, ids, err, errn)
                          : push_span(tok, GT_AUDIO_START, GT_AUDIO_PLACEHOLDER, GT_AUDIO_END, x->clip_tokens[clip++], ids,
                                      err, errn);
        if (rc) return -1;
        p = at + strlen(at == im ? GT_IMAGE4_PLACEHOLDER : GT_AUDIO_PLACEHOLDER);
    }
    return 0;
}

void gt_gen4_free(gt_gen4 *x) {
    if (x->has_v) gt_vision4_free(&x->v);
    if (x->has_a) gt_audio_enc_free(&x->a);
    free(x->patches), free(x->pos), free(x->mel), free(x->valid);
    memset(x, 0, sizeof *x);
}
