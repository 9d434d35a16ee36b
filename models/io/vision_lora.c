/* vision_lora.c: the encoder's adapters in a Keras .lora.h5 (models/io/vision_lora.h). */
#include "models/io/vision_lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int64_t gt_vision_keras_lora_shift(const gt_vision_config *vc) { return 9 + 10 * vc->num_layers; }

int64_t gt_vision_keras_lora_index(const gt_vision_config *vc, int64_t layer, int k) {
    int64_t block = 6 + (vc->num_layers - 1 - layer) * 10; /* blocks last to first after index 5 */
    return block + 9 - k;                                  /* query_proj last of the block's ten */
}

int gt_vision_lora_write(gt_h5 f, const char *path, const gt_vision *v, char *err, size_t errn) {
    if (!v || !v->n_lora) return 0;
    int64_t maxn = 0;
    for (int64_t i = 0; i < v->n_lora; i++) maxn = v->lora[i]->size > maxn ? v->lora[i]->size : maxn;
    float *buf = malloc(sizeof(float) * (size_t)maxn);
    if (!buf) return gt_errf(err, errn, "%s: out of memory", path);
    int rc = 0;
    for (int64_t li = 0; li < v->cfg.num_layers && !rc; li++)
        for (int k = 0; k < 4 && !rc; k++) {
            const gt_tensor *a = v->layers[li].lora_a[k], *b = v->layers[li].lora_b[k];
            if (!a) continue;
            char p[128];
            int64_t idx = gt_vision_keras_lora_index(&v->cfg, li, k);
            for (int64_t e = 0; e < a->size; e++) buf[e] = (float)a->data[e];
            snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_a", (long long)idx);
            rc = gt_h5_write_f32(f, p, buf, 2, a->shape, err, errn);
            for (int64_t e = 0; e < b->size && !rc; e++)
                buf[e] = v->lora_scale == 1.0 ? (float)b->data[e] : (float)(b->data[e] * v->lora_scale);
            snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_b", (long long)idx);
            if (!rc) rc = gt_h5_write_f32(f, p, buf, 2, b->shape, err, errn);
        }
    free(buf);
    return rc;
}

/* One kernel of the file into t (shape checked); scale divides (B) or is 1 (A). */
static int read_kernel(gt_h5 f, const char *path, const char *p, gt_tensor *t, double scale, char *err,
                       size_t errn) {
    float *d = NULL;
    int nd;
    int64_t sh[8];
    if (gt_h5_read_f32(f, p, &d, &nd, sh, err, errn)) return -1;
    int rc = 0;
    if (nd != 2 || sh[0] != t->shape[0] || sh[1] != t->shape[1])
        rc = gt_errf(err, errn, "%s: %s (%s): expected shape [%lld,%lld]", path, p, t->name, (long long)t->shape[0],
                     (long long)t->shape[1]);
    for (int64_t e = 0; e < t->size && !rc; e++) t->data[e] = (gt_real)(scale == 1.0 ? d[e] : d[e] / scale);
    free(d);
    return rc;
}

int gt_vision_lora_read(gt_h5 f, const char *path, gt_vision *v, int64_t rank, int64_t *found, char *err,
                        size_t errn) {
    *found = 0;
    char p[128];
    for (int64_t li = 0; li < v->cfg.num_layers; li++)
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "/lora/%lld", (long long)gt_vision_keras_lora_index(&v->cfg, li, k));
            *found += gt_h5_exists(f, p);
        }
    if (!*found) return 0;
    if (!v->n_lora && gt_vision_lora_create(v, rank, (double)rank, 0, err, errn)) return -1;
    if (v->layers[0].lora_a[0]->shape[1] != rank)
        return gt_errf(err, errn, "%s: LoRA rank %lld in the file, the vision encoder's adapters have %lld", path,
                       (long long)rank, (long long)v->layers[0].lora_a[0]->shape[1]);
    for (int64_t li = 0; li < v->cfg.num_layers; li++)
        for (int k = 0; k < 4; k++) {
            gt_vision_layer *ly = &v->layers[li];
            int64_t idx = gt_vision_keras_lora_index(&v->cfg, li, k);
            snprintf(p, sizeof p, "/lora/%lld", (long long)idx);
            if (!gt_h5_exists(f, p)) { /* KerasHub's default: query_proj and value_proj only */
                memset(ly->lora_b[k]->data, 0, sizeof(gt_real) * (size_t)ly->lora_b[k]->size);
                continue;
            }
            snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_a", (long long)idx);
            if (read_kernel(f, path, p, ly->lora_a[k], 1.0, err, errn)) return -1;
            snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_b", (long long)idx);
            if (read_kernel(f, path, p, ly->lora_b[k], v->lora_scale, err, errn)) return -1;
        }
    return 0;
}
