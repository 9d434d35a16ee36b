/* towers4_src.c: Gemma 4 towers of a model path (contract in towers4_src.h). */
#include "cli/towers4_src.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "models/io/hf_audio.h"
#include "models/io/hf_vision4.h"
#include "models/io/keras_preset.h"
#include "models/io/towers4_keras.h"

int cli_towers4_load(const char *path, gt_vision4 *v, bool *has_v, gt_audio_enc *a, bool *has_a,
                     char *err, size_t errn) {
    *has_v = *has_a = false;
    char cfg[4200];
    struct stat sb;
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    if (stat(cfg, &sb)) return 0; /* a GGUF file: the decoder only */
    if (gt_keras_preset_detect(path)) return gt_towers4_keras_load(path, v, has_v, a, has_a, err, errn);
    char e[1024]; /* a config without vision_config / audio_config: no such tower */
    if (v && !gt_hf_vision4_config(path, &v->cfg, e, sizeof e)) {
        if (gt_hf_vision4_load(path, v, err, errn)) return -1;
        *has_v = true;
    }
    if (a && !gt_hf_audio_config(path, &a->cfg, e, sizeof e)) {
        if (gt_hf_audio_load(path, a, err, errn)) {
            if (*has_v) gt_vision4_free(v), *has_v = false;
            return -1;
        }
        *has_a = true;
    }
    return 0;
}

bool cli_towers4_vision_bidir(const char *path) {
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    json_t *j = json_load_file(cfg, 0, NULL);
    json_t *c = json_object_get(j, "config"), *t = json_object_get(j, "text_config");
    json_t *hf = json_object_get(t, "use_bidirectional_attention");
    bool b = json_is_true(json_object_get(c, "use_vision_bidirectional_attention")) ||
             (json_is_string(hf) && !strcmp(json_string_value(hf), "vision"));
    json_decref(j);
    return b;
}
