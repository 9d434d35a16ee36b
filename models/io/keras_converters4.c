/* keras_converters4.c: a preset's preprocessor.json converter settings (contract in
 * keras_converters4.h). */
#include "models/io/keras_converters4.h"

#include <jansson.h>
#include <stdio.h>

#include "util/err.h"

/* A number at o[key] into *v when present; -1 naming the file and key when not a number. */
static int num(json_t *o, const char *key, const char *file, double *v, char *err, size_t errn) {
    json_t *x = o ? json_object_get(o, key) : NULL;
    if (!x || json_is_null(x)) return 0;
    if (!json_is_number(x)) return gt_errf(err, errn, "%s: \"%s\" is not a number", file, key);
    *v = json_number_value(x);
    return 0;
}

/* An int field read through a double, so one reader serves int and double fields. */
static int inum(json_t *o, const char *key, const char *file, int *v, char *err, size_t errn) {
    double d = *v;
    if (num(o, key, file, &d, err, errn)) return -1;
    *v = (int)d;
    return 0;
}

int gt_keras_converters4_load(const char *dir, gt_image4_cfg *ic, gt_audio_cfg *ac, char *err, size_t errn) {
    char path[4200];
    snprintf(path, sizeof path, "%s/preprocessor.json", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    fclose(f);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return gt_errf(err, errn, "%s:%d: %s", path, je.line, je.text);
    json_t *c = json_object_get(j, "config");
    json_t *i = json_object_get(json_object_get(c, "image_converter"), "config");
    json_t *a = json_object_get(json_object_get(c, "audio_converter"), "config");
    int rc = inum(i, "patch_size", path, &ic->patch, err, errn) ||
             inum(i, "max_soft_tokens", path, &ic->max_soft_tokens, err, errn) ||
             inum(i, "pooling_kernel_size", path, &ic->pool, err, errn) ||
             inum(a, "num_mels", path, &ac->num_mels, err, errn) ||
             inum(a, "num_fft_bins", path, &ac->num_fft_bins, err, errn) ||
             inum(a, "stride", path, &ac->stride, err, errn) ||
             inum(a, "frame_length", path, &ac->frame_length, err, errn) ||
             inum(a, "sampling_rate", path, &ac->sampling_rate, err, errn) ||
             inum(a, "max_audio_length", path, &ac->max_audio_length, err, errn) ||
             num(a, "min_frequency", path, &ac->min_frequency, err, errn) ||
             num(a, "max_frequency", path, &ac->max_frequency, err, errn) ||
             num(a, "mel_floor", path, &ac->mel_floor, err, errn);
    json_decref(j);
    return rc ? -1 : 0;
}
