#include "models/io/peft.h"

#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/gemma_params.h"
#include "models/io/keras_lora.h"
#include "models/io/safetensors.h"
#include "util/err.h"
#include "util/fsutil.h"

_Static_assert(sizeof(gt_real) == sizeof(float), "PEFT files are read and written from the fp32 engine");

#define PEFT_PREFIX "base_model.model."

/* The HF module of target t in block `layer` ("model.layers.3.self_attn.q_proj"), or -1 when the
 * layer has no such kernel. */
static int module_name(const gt_gemma_config *c, int64_t layer, gt_lora_target t, const char *pre, char *buf,
                       size_t n) {
    for (int k = 0; k < gt_gemma_n_param_rows; k++) {
        const gt_gemma_param_row *r = &gt_gemma_param_rows[k];
        if (!r->per_layer || r->lora != (int)t || !gt_gemma_param_present(r, c, layer)) continue;
        if (gt_gemma_param_hf_name(r, c, layer, pre, buf, n)) return -1;
        char *dot = strrchr(buf, '.'); /* drop ".weight" */
        if (dot) *dot = 0;
        return 0;
    }
    return -1;
}

/* "model.layers.0.q_proj" as a Python regex that matches only itself */
static void regex_escape(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 2 < n; s++) {
        if (strchr(".^$*+?()[]{}|\\", *s)) out[k++] = '\\';
        out[k++] = *s;
    }
    out[k] = 0;
}

/* o as indented JSON (and a newline) to dir/name, atomically. */
static int write_json(const char *dir, const char *name, json_t *o, char *err, size_t errn) {
    char *path = gt_path_join(dir, name), *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    char *line = text ? realloc(text, strlen(text) + 2) : NULL;
    int rc;
    if (!path || !line) {
        free(text);
        rc = gt_errf(err, errn, "%s/%s: out of memory", dir, name);
    } else {
        strcat(line, "\n");
        rc = gt_write_file_atomic(path, line, strlen(line), err, errn);
        free(line);
    }
    free(path);
    return rc;
}

static int write_config(const char *dir, const gt_lora *l, const gt_gemma_config *c, const char *base,
                        char *err, size_t errn) {
    json_t *o = json_object(), *targets = json_array(), *ranks = json_object(), *alphas = json_object();
    int rc = -1;
    if (!o || !targets || !ranks || !alphas) {
        gt_errf(err, errn, "%s: out of memory", dir);
        goto done;
    }
    for (int t = 0; t < GT_LORA_NTARGETS; t++) {
        bool any = false;
        for (int64_t i = 0; i < l->num_layers; i++) {
            const gt_lora_adapter *ad = gt_lora_get(l, i, (gt_lora_target)t);
            char mod[256], key[512];
            if (!ad || module_name(c, i, (gt_lora_target)t, "model.", mod, sizeof mod)) continue;
            if (!any) json_array_append_new(targets, json_string(strrchr(mod, '.') + 1));
            any = true;
            if (ad->groups == 1) continue;
            regex_escape(mod, key, sizeof key);
            json_object_set_new(ranks, key, json_integer(ad->groups * l->rank));
            json_object_set_new(alphas, key, json_real(l->alpha * (double)ad->groups));
        }
    }
    json_object_set_new(o, "peft_type", json_string("LORA"));
    json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(o, "base_model_name_or_path", base ? json_string(base) : json_null());
    json_object_set_new(o, "r", json_integer(l->rank));
    json_object_set_new(o, "lora_alpha", json_real(l->alpha));
    json_object_set_new(o, "rank_pattern", ranks);
    json_object_set_new(o, "alpha_pattern", alphas);
    ranks = alphas = NULL;
    json_object_set_new(o, "target_modules", targets);
    targets = NULL;
    json_object_set_new(o, "lora_dropout", json_real(l->dropout));
    json_object_set_new(o, "bias", json_string("none"));
    json_object_set_new(o, "fan_in_fan_out", json_false());
    json_object_set_new(o, "use_rslora", json_false());
    json_object_set_new(o, "use_dora", json_false());
    json_object_set_new(o, "modules_to_save", json_null());
    json_object_set_new(o, "inference_mode", json_true());
    rc = write_json(dir, "adapter_config.json", o, err, errn);
done:
    json_decref(o);
    json_decref(targets);
    json_decref(ranks);
    json_decref(alphas);
    return rc;
}

int gt_peft_save(const char *dir, const gt_lora *l, const gt_gemma_config *c, const char *base, char *err,
                 size_t errn) {
    if (gt_mkdir_p(dir, err, errn)) return -1;
    int64_t cap = l->num_layers * GT_LORA_NTARGETS, n = 0;
    gt_st_entry *e = calloc((size_t)(2 * cap), sizeof *e);
    char (*names)[320] = calloc((size_t)(2 * cap), sizeof *names);
    int rc = -1;
    if (!e || !names) {
        gt_errf(err, errn, "%s: out of memory", dir);
        goto done;
    }
    for (int64_t i = 0; i < l->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            const gt_lora_adapter *ad = gt_lora_get(l, i, (gt_lora_target)t);
            char mod[256];
            if (!ad) continue;
            if (module_name(c, i, (gt_lora_target)t, "model.", mod, sizeof mod)) {
                gt_errf(err, errn, "%s: adapter %s has no Hugging Face module", dir, ad->name);
                goto done;
            }
            int64_t R = ad->groups * l->rank;
            float *A = malloc((size_t)(R * ad->in) * sizeof *A);
            float *B = malloc((size_t)(ad->groups * ad->out * R) * sizeof *B);
            e[n] = (gt_st_entry){names[n], A, 2, {R, ad->in}};
            e[n + 1] = (gt_st_entry){names[n + 1], B, 2, {ad->groups * ad->out, R}};
            snprintf(names[n], sizeof names[n], PEFT_PREFIX "%s.lora_A.weight", mod);
            snprintf(names[n + 1], sizeof names[n + 1], PEFT_PREFIX "%s.lora_B.weight", mod);
            n += 2;
            if (!A || !B) {
                gt_errf(err, errn, "%s: out of memory", dir);
                goto done;
            }
            gt_lora_standard_ab(l, ad, 1.0, A, B);
        }
    if (!n) {
        gt_errf(err, errn, "%s: no adapters to write", dir);
        goto done;
    }
    char *path = gt_path_join(dir, "adapter_model.safetensors");
    static const char *const meta[] = {"format", "pt", NULL};
    rc = path ? gt_st_write(path, e, (size_t)n, GT_ST_F32, meta, err, errn) : gt_errf(err, errn, "out of memory");
    free(path);
    if (!rc) rc = write_config(dir, l, c, base, err, errn);
done:
    for (int64_t k = 0; e && k < n; k++) free((void *)e[k].data);
    free(e);
    free(names);
    return rc;
}

bool gt_peft_detect(const char *path) {
    struct stat st;
    char *p = gt_path_join(path, "adapter_config.json");
    bool yes = p && !stat(path, &st) && S_ISDIR(st.st_mode) && !stat(p, &st);
    free(p);
    return yes;
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    const char *file;
    double alpha;      /* lora_alpha */
    json_t *alphas;    /* alpha_pattern */
    bool rslora;
    char *err;
    size_t errn;
} peft_cfg;

static int read_config(const char *dir, json_t **root, peft_cfg *p, char *err, size_t errn) {
    json_error_t je;
    *root = json_load_file(p->file, 0, &je);
    if (!*root) return gt_errf(err, errn, "%s: line %d: %s", p->file, je.line, gt_err_printable(je.text));
    json_t *o = *root;
    const char *type = json_string_value(json_object_get(o, "peft_type"));
    if (!type || strcmp(type, "LORA"))
        return gt_errf(err, errn, "%s: peft_type '%s' is not supported (LORA)", p->file, type ? type : "?");
    json_t *a = json_object_get(o, "lora_alpha"), *b = json_object_get(o, "bias");
    if (!json_is_number(a)) return gt_errf(err, errn, "%s: \"lora_alpha\" must be a number", p->file);
    p->alpha = json_number_value(a);
    if (json_is_true(json_object_get(o, "use_dora")))
        return gt_errf(err, errn, "%s: use_dora: DoRA adapters are not supported", p->file);
    if (json_is_true(json_object_get(o, "fan_in_fan_out")))
        return gt_errf(err, errn, "%s: fan_in_fan_out: true is not supported", p->file);
    if (b && !json_is_null(b) && (!json_is_string(b) || strcmp(json_string_value(b), "none")))
        return gt_errf(err, errn, "%s: bias must be \"none\" (LoRA biases are not supported)", p->file);
    json_t *m = json_object_get(o, "modules_to_save");
    if (m && !json_is_null(m) && !(json_is_array(m) && !json_array_size(m)))
        return gt_errf(err, errn, "%s: modules_to_save: fully trained modules are not supported", p->file);
    p->rslora = json_is_true(json_object_get(o, "use_rslora"));
    p->alphas = json_object_get(o, "alpha_pattern");
    (void)dir;
    return 0;
}

/* lora_alpha of module mod: the first alpha_pattern key k with (.*\.)?(k)$ matching, as PEFT. */
static int module_alpha(const peft_cfg *p, const char *mod, double *alpha) {
    *alpha = p->alpha;
    const char *key;
    json_t *v;
    json_object_foreach(p->alphas, key, v) {
        size_t n = strlen(key) + 16;
        char *re = malloc(n);
        if (!re) return gt_errf(p->err, p->errn, "%s: out of memory", p->file);
        snprintf(re, n, "^(.*\\.)?(%s)$", key);
        regex_t rx;
        int bad = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
        free(re);
        if (bad) return gt_errf(p->err, p->errn, "%s: alpha_pattern key '%s' is not a regular expression", p->file, key);
        bool hit = regexec(&rx, mod, 0, NULL, 0) == 0;
        regfree(&rx);
        if (!hit) continue;
        if (!json_is_number(v)) return gt_errf(p->err, p->errn, "%s: alpha_pattern '%s' must be a number", p->file, key);
        *alpha = json_number_value(v);
        return 0;
    }
    return 0;
}

typedef struct {
    const gt_st_tensor *a, *b;
    double scale;
} module_ab;

/* Finds every module's A and B; sets *rank (max G * r_m) and the targets. */
static int scan_modules(gt_st *st, const gt_gemma_config *c, const char *pre, const peft_cfg *p, module_ab *mods,
                        int64_t *rank, unsigned *targets, int *found) {
    *rank = 0, *targets = 0, *found = 0;
    for (int64_t i = 0; i < c->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            char mod[256], name[320];
            module_ab *m = &mods[i * GT_LORA_NTARGETS + t];
            if (module_name(c, i, (gt_lora_target)t, pre, mod, sizeof mod)) continue;
            snprintf(name, sizeof name, PEFT_PREFIX "%s.lora_A.weight", mod);
            m->a = gt_st_find(st, name);
            snprintf(name, sizeof name, PEFT_PREFIX "%s.lora_B.weight", mod);
            m->b = gt_st_find(st, name);
            if (!m->a && !m->b) continue;
            if (!m->a || !m->b)
                return gt_errf(p->err, p->errn, "%s: %s has only one of lora_A and lora_B", p->file, mod);
            if (m->a->ndim != 2 || m->b->ndim != 2 || m->b->shape[1] != m->a->shape[0])
                return gt_errf(p->err, p->errn, "%s: %s: lora_A %lldx%lld and lora_B %lldx%lld do not fit", p->file,
                               mod, (long long)m->a->shape[0], (long long)m->a->shape[1], (long long)m->b->shape[0],
                               (long long)m->b->shape[1]);
            double alpha, r = (double)m->a->shape[0];
            if (module_alpha(p, mod, &alpha)) return -1;
            m->scale = alpha / (p->rslora ? sqrt(r) : r);
            (*found)++;
            *targets |= 1u << t;
            int64_t G = t == GT_LORA_QUERY ? c->num_query_heads : t == GT_LORA_KEY || t == GT_LORA_VALUE
                                                                     ? gt_gemma_layer_kv_heads(c, i) : 1;
            if (G * m->a->shape[0] > *rank) *rank = G * m->a->shape[0];
        }
    return 0;
}

/* Our adapter from PEFT's A [r, in] and B [G*out, r]: head group g keeps A's block g. */
static int from_peft(const peft_cfg *p, const module_ab *m, gt_lora_adapter *ad, int64_t R) {
    int64_t r = m->a->shape[0], G = ad->groups, in = ad->in, out = ad->out;
    if (m->a->shape[1] != in || m->b->shape[0] != G * out || G * r > R)
        return gt_errf(p->err, p->errn, "%s: %s: lora_A %lldx%lld / lora_B %lldx%lld do not fit the model's %lld -> %lld",
                       p->file, ad->name, (long long)m->a->shape[0], (long long)m->a->shape[1],
                       (long long)m->b->shape[0], (long long)m->b->shape[1], (long long)in, (long long)(G * out));
    float *A = malloc((size_t)(r * in) * sizeof *A), *B = malloc((size_t)(G * out * r) * sizeof *B);
    int rc = -1;
    if (!A || !B) gt_errf(p->err, p->errn, "%s: out of memory", p->file);
    else if (!gt_st_read_f32(m->a, A, p->err, p->errn) && !gt_st_read_f32(m->b, B, p->err, p->errn)) {
        memset(ad->a.data, 0, (size_t)ad->a.size * sizeof(gt_real));
        memset(ad->b.data, 0, (size_t)ad->b.size * sizeof(gt_real));
        for (int64_t g = 0; g < G; g++)
            for (int64_t j = 0; j < r; j++) {
                int64_t q = g * r + j; /* our rank index for (group g, PEFT rank j) */
                for (int64_t i = 0; i < in; i++) ad->a.data[i * G * R + g * R + q] = A[j * in + i];
                for (int64_t o = 0; o < out; o++) ad->b.data[q * out + o] = (gt_real)(m->scale * B[(g * out + o) * r + j]);
            }
        rc = 0;
    }
    free(A);
    free(B);
    return rc;
}

int gt_peft_open(const char *dir, const gt_gemma_config *c, gt_lora **out, char *err, size_t errn) {
    *out = NULL;
    char *cfg_path = gt_path_join(dir, "adapter_config.json"), *st_path = gt_path_join(dir, "adapter_model.safetensors");
    module_ab *mods = calloc((size_t)(c->num_layers * GT_LORA_NTARGETS), sizeof *mods);
    json_t *root = NULL;
    gt_st *st = NULL;
    gt_lora *l = NULL;
    int rc = -1;
    peft_cfg p = {.file = cfg_path, .err = err, .errn = errn};
    if (!cfg_path || !st_path || !mods) {
        gt_errf(err, errn, "%s: out of memory", dir);
        goto done;
    }
    if (read_config(dir, &root, &p, err, errn) || gt_st_open(st_path, &st, err, errn)) goto done;
    int64_t R;
    unsigned targets;
    int found;
    static const char *const prefixes[] = {"model.", "model.language_model."};
    for (int k = 0; k < 2; k++) {
        if (scan_modules(st, c, prefixes[k], &p, mods, &R, &targets, &found)) goto done;
        if (found) break;
    }
    if (!found || found * 2 != gt_st_n_tensors(st)) {
        gt_errf(err, errn, "%s: %s", st_path, found ? "tensors for modules this model does not have (or not LoRA A/B)"
                                                     : "no LoRA tensors for this model's attention or MLP modules");
        goto done;
    }
    if (gt_lora_create_for(c, R, (double)R, targets, 0, &l, err, errn)) goto done;
    for (int64_t i = 0; i < c->num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            const module_ab *m = &mods[i * GT_LORA_NTARGETS + t];
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(l, i, (gt_lora_target)t);
            if (!ad) continue;
            if (!m->a) { /* PEFT adapts this module on some layers only: zero here */
                memset(ad->a.data, 0, (size_t)ad->a.size * sizeof(gt_real));
                memset(ad->b.data, 0, (size_t)ad->b.size * sizeof(gt_real));
            } else if (from_peft(&p, m, ad, R)) {
                goto done;
            }
        }
    *out = l;
    l = NULL;
    rc = 0;
done:
    gt_lora_free(l);
    gt_st_close(st);
    json_decref(root);
    free(mods);
    free(cfg_path);
    free(st_path);
    return rc;
}

int gt_adapters_open(const char *path, const gt_gemma_config *cfg, gt_lora **out, char *err, size_t errn) {
    if (gt_peft_detect(path)) return gt_peft_open(path, cfg, out, err, errn);
    return gt_keras_lora_open(path, cfg, out, err, errn);
}
