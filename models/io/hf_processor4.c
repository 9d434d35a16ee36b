/* hf_processor4.c: Gemma 4 converter settings from HF processor files (contract in
 * hf_processor4.h). */
#include "models/io/hf_processor4.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/err.h"

typedef struct {
    json_t *o;
    const char *file, *sect; /* sect: "image_processor." etc., or "" for a flat file */
    char *err;
    size_t errn;
} pcfg;

static json_t *need(const pcfg *p, const char *key) {
    json_t *x = json_object_get(p->o, key);
    if (!x) gt_errf(p->err, p->errn, "%s: key \"%s%s\" is missing", p->file, p->sect, key);
    return x;
}

/* A number in [lo, hi]; an integer when integral. */
static int num(const pcfg *p, const char *key, double lo, double hi, bool integral, double *v) {
    json_t *x = need(p, key);
    if (!x) return -1;
    if (!json_is_number(x) || (integral && !json_is_integer(x)))
        return gt_errf(p->err, p->errn, "%s: \"%s%s\" must be %s", p->file, p->sect, key,
                       integral ? "an integer" : "a number");
    *v = json_number_value(x);
    if (!(*v >= lo && *v <= hi))
        return gt_errf(p->err, p->errn, "%s: \"%s%s\" is %g, outside [%g, %g]", p->file, p->sect, key, *v, lo, hi);
    return 0;
}

static int flag(const pcfg *p, const char *key, bool *v) {
    json_t *x = need(p, key);
    if (!x) return -1;
    if (!json_is_boolean(x)) return gt_errf(p->err, p->errn, "%s: \"%s%s\" must be true or false", p->file, p->sect, key);
    *v = json_is_true(x);
    return 0;
}

/* A list of three numbers (image_mean / image_std). */
static int triple(const pcfg *p, const char *key, double v[3]) {
    json_t *x = need(p, key);
    if (!x) return -1;
    for (size_t i = 0; json_is_array(x) && json_array_size(x) == 3 && i < 3; i++)
        v[i] = json_number_value(json_array_get(x, i));
    if (!json_is_array(x) || json_array_size(x) != 3 || !json_is_number(json_array_get(x, 0)) ||
        !json_is_number(json_array_get(x, 1)) || !json_is_number(json_array_get(x, 2)))
        return gt_errf(p->err, p->errn, "%s: \"%s%s\" must be a list of 3 numbers", p->file, p->sect, key);
    return 0;
}

static int image(const pcfg *p, gt_image4_cfg *c) {
    bool resize = true, rescale = false, normalize = false;
    double ms = 0, r = 1, mean[3] = {0, 0, 0}, sd[3] = {1, 1, 1};
    if (flag(p, "do_resize", &resize) || flag(p, "do_rescale", &rescale) || flag(p, "do_normalize", &normalize) ||
        num(p, "max_soft_tokens", 1, 1 << 20, true, &ms))
        return -1;
    if (!resize)
        return gt_errf(p->err, p->errn, "%s: \"%sdo_resize\" false is not supported (Gemma 4's converter always "
                       "resizes)", p->file, p->sect);
    if (rescale && num(p, "rescale_factor", 1e-12, 1e12, false, &r)) return -1;
    if (normalize && (triple(p, "image_mean", mean) || triple(p, "image_std", sd))) return -1;
    for (int k = 0; k < 3; k++)
        if (!(sd[k] != 0))
            return gt_errf(p->err, p->errn, "%s: \"%simage_std\" holds 0", p->file, p->sect);
    c->max_soft_tokens = (int)ms;
    for (int k = 0; k < 3; k++) c->scale[k] = (float)(r / sd[k]), c->offset[k] = (float)(-mean[k] / sd[k]);
    return 0;
}

/* What the KerasHub features cannot do: refused, naming the key (absent keys are defaults). */
static int audio_unsupported(const pcfg *p) {
    static const char *const nulls[] = {"per_bin_mean", "per_bin_stddev"};
    for (int k = 0; k < 2; k++) {
        json_t *x = json_object_get(p->o, nulls[k]);
        if (x && !json_is_null(x))
            return gt_errf(p->err, p->errn, "%s: \"%s%s\" is not supported (must be null)", p->file, p->sect, nulls[k]);
    }
    static const struct { const char *key; double want; } zero[] = {
        {"preemphasis", 0}, {"dither", 0}, {"input_scale_factor", 1}};
    for (size_t k = 0; k < sizeof zero / sizeof zero[0]; k++) {
        json_t *x = json_object_get(p->o, zero[k].key);
        if (x && (!json_is_number(x) || json_number_value(x) != zero[k].want))
            return gt_errf(p->err, p->errn, "%s: \"%s%s\" must be %g (the only value supported)", p->file, p->sect,
                           zero[k].key, zero[k].want);
    }
    if (json_is_true(json_object_get(p->o, "fft_overdrive")))
        return gt_errf(p->err, p->errn, "%s: \"%sfft_overdrive\" true is not supported", p->file, p->sect);
    return 0;
}

static int audio(const pcfg *p, gt_audio_cfg *c) {
    double nm = 0, nf = 0, st = 0, fl = 0, sr = 0, lo = 0, hi = 0, floor = 0;
    if (num(p, "feature_size", 1, 4096, true, &nm) || num(p, "fft_length", 2, 1 << 16, true, &nf) ||
        num(p, "hop_length", 1, 1 << 16, true, &st) || num(p, "frame_length", 1, 1 << 16, true, &fl) ||
        num(p, "sampling_rate", 1, 1e7, true, &sr) || num(p, "min_frequency", 0, 1e7, false, &lo) ||
        num(p, "max_frequency", 0, 1e7, false, &hi) || num(p, "mel_floor", 0, 1e6, false, &floor) ||
        audio_unsupported(p))
        return -1;
    c->num_mels = (int)nm, c->num_fft_bins = (int)nf, c->stride = (int)st, c->frame_length = (int)fl;
    c->sampling_rate = (int)sr, c->min_frequency = lo, c->max_frequency = hi, c->mel_floor = floor;
    return 0;
}

static json_t *open_json(const char *path, bool *absent, char *err, size_t errn) {
    struct stat sb;
    *absent = stat(path, &sb) != 0;
    if (*absent) return NULL;
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) gt_errf(err, errn, "%s: line %d: %s", path, je.line, gt_err_printable(je.text));
    else if (!json_is_object(j)) {
        json_decref(j);
        j = NULL;
        gt_errf(err, errn, "%s: not a JSON object", path);
    }
    return j;
}

int gt_hf_processor4_load(const char *dir, gt_image4_cfg *ic, bool *has_i, gt_audio_cfg *ac,
                          bool *has_a, char *err, size_t errn) {
    *has_i = *has_a = false;
    char path[4200];
    bool absent;
    snprintf(path, sizeof path, "%s/processor_config.json", dir);
    json_t *j = open_json(path, &absent, err, errn);
    if (absent) {
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        j = open_json(path, &absent, err, errn);
    }
    if (absent) return 0;
    if (!j) return -1;
    bool nested = strstr(path, "/processor_config.json") != NULL;
    json_t *io = nested ? json_object_get(j, "image_processor") : json_object_get(j, "feature_extractor_type") ? NULL : j;
    json_t *ao = nested ? json_object_get(j, "feature_extractor") : json_object_get(j, "feature_extractor_type") ? j : NULL;
    int rc = 0;
    pcfg pi = {io, path, nested ? "image_processor." : "", err, errn};
    pcfg pa = {ao, path, nested ? "feature_extractor." : "", err, errn};
    if (ic && io) rc = !json_is_object(io) ? gt_errf(err, errn, "%s: \"image_processor\" is not an object", path)
                                           : image(&pi, ic);
    if (!rc && ic && io) *has_i = true;
    if (!rc && ac && ao) rc = !json_is_object(ao) ? gt_errf(err, errn, "%s: \"feature_extractor\" is not an object", path)
                                                  : audio(&pa, ac);
    if (!rc && ac && ao) *has_a = true;
    json_decref(j);
    return rc;
}
