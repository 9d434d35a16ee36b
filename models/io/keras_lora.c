#include "models/io/keras_lora.h"

#include "models/io/vision_lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma_params.h"
#include "models/io/h5io.h"

/* The kernel's row of the parameter table knows its place in Keras' layer order
 * (gt_gemma_keras_index; orders in keras_lora.h). */
int64_t gt_keras_lora_index(const gt_gemma_config *c, int64_t layer, gt_lora_target t) {
    for (int k = 0; k < gt_gemma_n_param_rows; k++)
        if (gt_gemma_param_rows[k].lora == (int)t) return gt_gemma_keras_index(&gt_gemma_param_rows[k], c, layer);
    return -1;
}

/* Keras' A shape of an adapter: (G, in, r) for the per-head kernels, (N, H, r) for the output
 * projection, (in, r) for the MLP. */
static int a_shape(const gt_gemma_config *c, const gt_lora_adapter *ad, gt_lora_target t,
                   int64_t r, int64_t shape[3]) {
    if (t == GT_LORA_QUERY || t == GT_LORA_KEY || t == GT_LORA_VALUE) {
        shape[0] = ad->groups, shape[1] = ad->in, shape[2] = r;
        return 3;
    }
    if (t == GT_LORA_ATTN_OUT) {
        shape[0] = c->num_query_heads, shape[1] = ad->in / c->num_query_heads, shape[2] = r;
        return 3;
    }
    shape[0] = ad->in, shape[1] = r;
    return 2;
}

int gt_keras_lora_save(const char *path, const gt_lora *l, const gt_gemma_config *cfg, char *err,
                       size_t errn) {
    return gt_keras_lora_save_mm(path, l, cfg, NULL, err, errn);
}

/* The decoder's indices move past a multimodal backbone's encoder layers. */
static int64_t shift_of(const gt_vision *v) { return v ? gt_vision_keras_lora_shift(&v->cfg) : 0; }

int gt_keras_lora_save_mm(const char *path, const gt_lora *l, const gt_gemma_config *cfg, const gt_vision *v,
                          char *err, size_t errn) {
    gt_h5w w;
    if (gt_h5_create(path, &w, err, errn)) return -1;
    float *buf = NULL;
    size_t cap = 0;
    int rc = gt_h5_group(w.f, "/lora/vars", err, errn);
    rc = rc ? rc : gt_h5_write_i64_scalar(w.f, "/lora/vars/rank", l->rank, err, errn);
    double scale = l->alpha / (double)l->rank;
    for (int64_t i = 0; i < l->num_layers && !rc; i++)
        for (int t = 0; t < GT_LORA_NTARGETS && !rc; t++) {
            const gt_lora_adapter *ad = gt_lora_get(l, i, (gt_lora_target)t);
            if (!ad) continue;
            size_t need = (size_t)(ad->a.size > ad->b.size ? ad->a.size : ad->b.size);
            if (need > cap) {
                float *nb = realloc(buf, need * sizeof *buf);
                if (!nb) {
                    rc = -1;
                    snprintf(err, errn, "%s: out of memory", path);
                    break;
                }
                buf = nb, cap = need;
            }
            char p[128];
            int64_t idx = gt_keras_lora_index(cfg, i, (gt_lora_target)t) + shift_of(v), sa[3];
            int na = a_shape(cfg, ad, (gt_lora_target)t, l->rank, sa);
            if (sizeof(gt_real) == sizeof(float)) {
                gt_lora_get_keras_a(ad, (gt_real *)buf);
            } else {
                gt_real *tmp = malloc((size_t)ad->a.size * sizeof *tmp);
                if (!tmp) {
                    snprintf(err, errn, "%s: out of memory", path);
                    rc = -1;
                    break;
                }
                gt_lora_get_keras_a(ad, tmp);
                for (int64_t e = 0; e < ad->a.size; e++) buf[e] = (float)tmp[e];
                free(tmp);
            }
            snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_a", (long long)idx);
            rc = gt_h5_write_f32(w.f, p, buf, na, sa, err, errn);
            if (rc) break;
            for (int64_t e = 0; e < ad->b.size; e++)
                buf[e] = scale == 1.0 ? (float)ad->b.data[e] : (float)(ad->b.data[e] * scale);
            snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_b", (long long)idx);
            rc = gt_h5_write_f32(w.f, p, buf, 2, ad->b.shape, err, errn);
        }
    free(buf);
    if (!rc) rc = gt_vision_lora_write(w.f, path, v, err, errn);
    if (rc) {
        gt_h5_abort(&w);
        return -1;
    }
    return gt_h5_commit(&w, err, errn);
}

static int read_rank(gt_h5 f, const char *path, int64_t *rank, char *err, size_t errn) {
    int32_t *v = NULL;
    int nd;
    int64_t sh[8];
    if (gt_h5_read_i32(f, "/lora/vars/rank", &v, &nd, sh, err, errn)) return -1;
    int ok = nd == 0 || (nd == 1 && sh[0] == 1);
    *rank = v[0];
    free(v);
    if (!ok || *rank < 1)
        return snprintf(err, errn, "%s: /lora/vars/rank: expected a positive integer scalar", path), -1;
    return 0;
}

static const char *dims_str(int nd, const int64_t *sh, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)sh[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static int load_adapter(gt_h5 f, const char *path, const gt_lora *l, gt_lora_adapter *ad,
                        gt_lora_target t, int64_t idx, const gt_gemma_config *cfg, char *err,
                        size_t errn) {
    char p[128];
    float *a = NULL, *b = NULL;
    int nd, rc = -1;
    int64_t sh[8], want[3];
    int nw = a_shape(cfg, ad, t, l->rank, want);
    snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_a", (long long)idx);
    if (gt_h5_read_f32(f, p, &a, &nd, sh, err, errn)) goto done;
    bool ok = nd == nw;
    for (int i = 0; ok && i < nd; i++) ok = sh[i] == want[i];
    if (!ok) {
        char got[96], exp[96];
        snprintf(err, errn, "%s: %s (%s): shape %s, expected %s (rank %lld)", path, p, ad->name,
                 dims_str(nd, sh, got, sizeof got), dims_str(nw, want, exp, sizeof exp), (long long)l->rank);
        goto done;
    }
    snprintf(p, sizeof p, "/lora/%lld/vars/lora_kernel_b", (long long)idx);
    if (gt_h5_read_f32(f, p, &b, &nd, sh, err, errn)) goto done;
    if (nd != 2 || sh[0] != ad->b.shape[0] || sh[1] != ad->b.shape[1]) {
        char got[96], exp[96];
        snprintf(err, errn, "%s: %s (%s): shape %s, expected %s", path, p, ad->name,
                 dims_str(nd, sh, got, sizeof got), dims_str(2, ad->b.shape, exp, sizeof exp));
        goto done;
    }
    if (sizeof(gt_real) == sizeof(float)) {
        gt_lora_set_keras_a(ad, (const gt_real *)a);
    } else {
        gt_real *tmp = malloc((size_t)ad->a.size * sizeof *tmp);
        if (!tmp) {
            snprintf(err, errn, "%s: out of memory", path);
            goto done;
        }
        for (int64_t e = 0; e < ad->a.size; e++) tmp[e] = a[e];
        gt_lora_set_keras_a(ad, tmp);
        free(tmp);
    }
    double scale = l->alpha / (double)l->rank;
    for (int64_t e = 0; e < ad->b.size; e++)
        ad->b.data[e] = scale == 1.0 ? (gt_real)b[e] : (gt_real)(b[e] / scale);
    rc = 0;
done:
    free(a);
    free(b);
    return rc;
}

int gt_keras_lora_load(const char *path, gt_lora *l, const gt_gemma_config *cfg, char *err,
                       size_t errn) {
    return gt_keras_lora_load_mm(path, l, cfg, NULL, err, errn);
}

int gt_keras_lora_load_mm(const char *path, gt_lora *l, const gt_gemma_config *cfg, gt_vision *v, char *err,
                          size_t errn) {
    gt_h5 f;
    if (gt_h5_open_read(path, &f, err, errn)) return -1;
    int64_t rank, venc = 0;
    int rc = -1, found = 0;
    if (read_rank(f, path, &rank, err, errn)) goto done;
    if (v && gt_vision_lora_read(f, path, v, rank, &venc, err, errn)) goto done;
    if (rank != l->rank) {
        snprintf(err, errn, "%s: LoRA rank %lld in the file, %lld configured (lora.rank)", path,
                 (long long)rank, (long long)l->rank);
        goto done;
    }
    if (l->num_layers != cfg->num_layers) {
        snprintf(err, errn, "%s: adapters for %lld layers, model has %lld", path,
                 (long long)l->num_layers, (long long)cfg->num_layers);
        goto done;
    }
    for (int64_t i = 0; i < cfg->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            int64_t idx = gt_keras_lora_index(cfg, i, (gt_lora_target)t) + shift_of(v);
            char g[64];
            snprintf(g, sizeof g, "/lora/%lld", (long long)idx);
            bool in_file = gt_h5_exists(f, g);
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(l, i, (gt_lora_target)t);
            if (!ad && in_file) {
                snprintf(err, errn, "%s: has an adapter for decoder_block_%lld %s (index %lld) but "
                         "lora.targets does not include '%s'", path, (long long)i,
                         gt_lora_target_name((gt_lora_target)t), (long long)idx,
                         gt_lora_target_name((gt_lora_target)t));
                goto done;
            }
            if (!ad) continue;
            if (!in_file) {
                snprintf(err, errn, "%s: no adapter for %s (Keras layer index %lld)", path, ad->name,
                         (long long)idx);
                goto done;
            }
            if (load_adapter(f, path, l, ad, (gt_lora_target)t, idx, cfg, err, errn)) goto done;
            found++;
        }
    /* members of /lora: "vars" and one group per adapter; anything else is a layer we do not
     * know (a norm, a file for another architecture) */
    int64_t n = gt_h5_count(f, "/lora");
    if (n != found + venc + 1) {
        snprintf(err, errn, "%s: %lld adapter groups, %lld match this model's layers (a file for "
                 "another architecture%s?)", path, (long long)(n - 1), (long long)(found + venc),
                 v ? "" : ", or with a vision encoder's adapters");
        goto done;
    }
    rc = 0;
done:
    gt_h5_close(f);
    return rc;
}

int gt_keras_lora_open(const char *path, const gt_gemma_config *cfg, gt_lora **out, char *err,
                       size_t errn) {
    return gt_keras_lora_open_mm(path, cfg, NULL, out, err, errn);
}

int gt_keras_lora_open_mm(const char *path, const gt_gemma_config *cfg, gt_vision *v, gt_lora **out, char *err,
                          size_t errn) {
    *out = NULL;
    gt_h5 f;
    if (gt_h5_open_read(path, &f, err, errn)) return -1;
    int64_t rank;
    unsigned targets = 0;
    int rc = read_rank(f, path, &rank, err, errn);
    for (int t = 0; t < GT_LORA_NTARGETS && !rc; t++) {
        char g[64];
        snprintf(g, sizeof g, "/lora/%lld", (long long)(gt_keras_lora_index(cfg, 0, (gt_lora_target)t) + shift_of(v)));
        if (gt_h5_exists(f, g)) targets |= 1u << t;
    }
    gt_h5_close(f);
    if (rc) return -1;
    if (!targets)
        return snprintf(err, errn, "%s: no adapter for any target of decoder_block_0 (a file for "
                        "another architecture?)", path), -1;
    gt_lora *l;
    char e[512];
    if (gt_lora_create_for(cfg, rank, (double)rank, targets, 0, &l, e, sizeof e))
        return snprintf(err, errn, "%s: %s", path, e), -1;
    if (gt_keras_lora_load_mm(path, l, cfg, v, err, errn)) {
        gt_lora_free(l);
        return -1;
    }
    *out = l;
    return 0;
}
