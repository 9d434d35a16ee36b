/* hf_tower4.c: Gemma 4 HF tower names and clip bounds (contract in hf_tower4.h). */
#include "models/io/hf_tower4.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"

const char *const GT_HF_T4_CLIP[4] = {"input_min", "input_max", "output_min", "output_max"};

bool gt_hf_t4_is_clip(const char *ours) {
    size_t n = strlen(ours);
    return n > 5 && strcmp(ours + n - 5, ".clip") == 0;
}

int gt_hf_t4_name(const gt_hf_t4_names *m, const char *ours, char *out, size_t n) {
    for (size_t i = 0; i < m->n_top; i++)
        if (strcmp(ours, m->top[i].ours) == 0) return snprintf(out, n, "%s", m->top[i].hf), 0;
    size_t pl = strlen(m->our_layer);
    int layer, used = 0;
    if (strncmp(ours, m->our_layer, pl) || sscanf(ours + pl, "%d.%n", &layer, &used) != 1 || !used) return -1;
    const char *rest = ours + pl + used;
    size_t rl = strlen(rest);
    bool clip = gt_hf_t4_is_clip(rest);
    for (size_t i = 0; i < m->n_layer; i++) {
        size_t ol = strlen(m->layer[i].ours);
        if (ol != (clip ? rl - 5 : rl) || strncmp(rest, m->layer[i].ours, ol)) continue;
        const char *hf = m->layer[i].hf;
        bool dense = !strstr(hf, "weight") && !strstr(hf, "per_dim");
        snprintf(out, n, "%s%d.%s%s", m->hf_layer, layer, hf, dense && !clip ? ".linear.weight" : "");
        return 0;
    }
    return -1;
}

int gt_hf_t4_load_clip(gt_st *st, gt_tensor *t, const char *hf, const char *dir, char *err, size_t errn) {
    for (int i = 0; i < 4; i++) {
        char full[300];
        snprintf(full, sizeof full, "%s.%s", hf, GT_HF_T4_CLIP[i]);
        const gt_st_tensor *s = gt_st_find(st, full);
        float v;
        if (!s || s->n_elements != 1) return gt_errf(err, errn, "%s: missing scalar %s", dir, full);
        if (gt_st_read_f32(s, &v, err, errn)) return -1;
        t->data[i] = v;
    }
    return 0;
}
