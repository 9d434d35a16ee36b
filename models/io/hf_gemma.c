#include "models/io/hf_gemma.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/audio.h"
#include "data/tokenizer.h"
#include "models/gemma4_mm.h"
#include "models/gemma_fields.h"
#include "models/gemma_params.h"
#include "models/io/hf_towers4.h"
#include "models/io/safetensors.h"
#include "models/io/vision_hf.h"
#include "util/err.h"
#include "util/fsutil.h"

_Static_assert(sizeof(gt_real) == sizeof(float), "HF import/export is built against the fp32 engine");

/* ---------------------------------------------------------------- config.json */

/* Field names, keys and transformers' class defaults: models/gemma_fields.c. */

typedef struct {
    json_t *o;
    const char *file;
    char *err;
    size_t errn;
} jcfg;

/* Integer field; absent or null: dflt. */
static int j_int(jcfg *j, const char *key, int64_t dflt, int64_t *out) {
    json_t *v = json_object_get(j->o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15) {
        *out = (int64_t)json_real_value(v);
        return 0;
    }
    return gt_errf(j->err, j->errn, "%s: \"%s\" must be an integer", j->file, key);
}

/* Number field; absent: dflt; null: null_value. */
static int j_num(jcfg *j, const char *key, double dflt, double null_value, double *out) {
    json_t *v = json_object_get(j->o, key);
    if (!v) *out = dflt;
    else if (json_is_null(v)) *out = null_value;
    else if (json_is_number(v)) *out = json_number_value(v);
    else return gt_errf(j->err, j->errn, "%s: \"%s\" must be a number or null", j->file, key);
    return 0;
}

static int j_bool(jcfg *j, const char *key, bool dflt, bool *out) {
    json_t *v = json_object_get(j->o, key);
    if (!v || json_is_null(v)) *out = dflt;
    else if (json_is_boolean(v)) *out = json_is_true(v);
    else return gt_errf(j->err, j->errn, "%s: \"%s\" must be true, false or null", j->file, key);
    return 0;
}


/* transformers' class default of a field's HF key (gemma_fields.c) */
static double hf_default(size_t off, int gen) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++)
        if (f[i].off == off) return f[i].hf_dflt[gen];
    return 0;
}
#define HF_DEFAULT(member, gen) hf_default(offsetof(gt_gemma_config, member), gen)

/* The table's top-level keys of generation gen: absent gives the class default; null too, or 0
 * for numbers flagged GT_FF_NULL_ZERO. Nested keys are left to the functions below. */
static int read_fields(jcfg *j, int gen, gt_gemma_config *c) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++) {
        const gt_gemma_field *r = &f[i];
        if (!r->hf || !(r->hf_gens & GT_G(gen)) || (r->hf_nested & GT_G(gen))) continue;
        double d = r->hf_dflt[gen], v = d;
        int64_t x;
        bool b = false;
        if (r->type == GT_FIELD_INT) {
            if (j_int(j, r->hf, (int64_t)d, &x)) return -1;
            v = (double)x;
        } else if (r->type == GT_FIELD_NUM) {
            if (j_num(j, r->hf, d, (r->hf_flags & GT_FF_NULL_ZERO) ? 0 : d, &v)) return -1;
        } else {
            if (j_bool(j, r->hf, d != 0, &b)) return -1;
            v = b;
        }
        gt_gemma_field_set(c, r, v);
    }
    return 0;
}

/* One RoPE parameter set: {"rope_type": default|linear, "rope_theta", "factor"}. theta/scale keep
 * their values when the keys are absent. */
static int rope_set(jcfg *j, json_t *p, const char *where, double *theta, double *scale) {
    if (!p || json_is_null(p)) return 0;
    if (!json_is_object(p)) return gt_errf(j->err, j->errn, "%s: \"%s\" must be an object", j->file, where);
    json_t *type = json_object_get(p, "rope_type");
    if (!type) type = json_object_get(p, "type"); /* 4.x rope_scaling spelling */
    const char *t = type && json_is_string(type) ? json_string_value(type) : "default";
    if (type && !json_is_string(type) && !json_is_null(type))
        return gt_errf(j->err, j->errn, "%s: \"%s\".rope_type must be a string", j->file, where);
    json_t *th = json_object_get(p, "rope_theta");
    if (th && !json_is_null(th)) {
        if (!json_is_number(th) || !(json_number_value(th) > 0))
            return gt_errf(j->err, j->errn, "%s: \"%s\".rope_theta must be a positive number", j->file, where);
        *theta = json_number_value(th);
    }
    if (!strcmp(t, "default")) return 0;
    if (strcmp(t, "linear"))
        return gt_errf(j->err, j->errn, "%s: \"%s\": rope_type \"%s\" is not supported (default, linear)", j->file,
                    where, t);
    json_t *f = json_object_get(p, "factor");
    if (!json_is_number(f) || !(json_number_value(f) > 0))
        return gt_errf(j->err, j->errn, "%s: \"%s\": linear RoPE needs a positive \"factor\"", j->file, where);
    *scale = json_number_value(f);
    return 0;
}

/* Gemma 1-3: "head_dim": null means hidden_size / num_attention_heads in transformers. */
static int head_dim_null(jcfg *j, int gen, gt_gemma_config *c) {
    json_t *hd = json_object_get(j->o, "head_dim");
    if (gen == 4 || !hd || !json_is_null(hd)) return 0;
    if (c->num_query_heads < 1) return gt_errf(j->err, j->errn, "%s: num_attention_heads must be >= 1", j->file);
    c->head_dim = c->hidden_dim / c->num_query_heads;
    return 0;
}

/* What a config may ask that gt_gemma cannot do: biases, bidirectional attention, another
 * activation. transformers 5 reads Gemma 1's hidden_act (its legacy "gelu" meaning the tanh
 * approximation), 4.x its hidden_activation; the later classes read hidden_activation. */
static int refusals(jcfg *j, int gen) {
    bool bias = false, bidir = false;
    if (j_bool(j, "attention_bias", false, &bias)) return -1;
    if (bias) return gt_errf(j->err, j->errn, "%s: \"attention_bias\": true is not supported (Gemma has no biases)", j->file);
    json_t *bd = json_object_get(j->o, "use_bidirectional_attention");
    if (gen < 4 && j_bool(j, "use_bidirectional_attention", false, &bidir)) return -1;
    if (gen == 4) bidir = bd && json_is_string(bd) && !strcmp(json_string_value(bd), "all");
    if (bidir)
        return gt_errf(j->err, j->errn, "%s: \"use_bidirectional_attention\": %s is not supported (causal only)",
                       j->file, gen == 4 ? "\"all\"" : "true");
    static const char *const act_keys[2] = {"hidden_act", "hidden_activation"};
    for (int k = gen == 1 ? 0 : 1; k < 2; k++) {
        json_t *act = json_object_get(j->o, act_keys[k]);
        if (!act || json_is_null(act)) continue;
        const char *s = json_string_value(act);
        if (!s || (strcmp(s, "gelu_pytorch_tanh") && (gen == 4 || strcmp(s, "gelu_new")) &&
                   !(gen == 1 && !strcmp(s, "gelu"))))
            return gt_errf(j->err, j->errn, "%s: \"%s\" %s is not supported (gelu_pytorch_tanh)", j->file, act_keys[k],
                           s ? s : "(not a string)");
    }
    return 0;
}

/* Gemma 2-3: query_pre_attn_scalar is head_dim or hidden_size / heads. */
static int query_scaling(jcfg *j, int gen, gt_gemma_config *c) {
    int64_t qpas;
    if (j_int(j, "query_pre_attn_scalar", (int64_t)HF_DEFAULT(query_head_dim_normalize, gen), &qpas)) return -1;
    if (qpas == c->head_dim) c->query_head_dim_normalize = true;
    else if (qpas == c->hidden_dim / c->num_query_heads) c->query_head_dim_normalize = false;
    else
        return gt_errf(j->err, j->errn, "%s: \"query_pre_attn_scalar\" %lld is neither head_dim (%lld) nor hidden_size / "
                       "num_attention_heads (%lld): not supported", j->file, (long long)qpas, (long long)c->head_dim,
                       (long long)(c->hidden_dim / c->num_query_heads));
    return 0;
}

/* layer_types (or the class's default pattern: Gemma 3's sliding_window_pattern; Gemma 4 also
 * makes the last layer full) -> sliding_pattern P, the smallest (the class's own first) with
 * layer i sliding iff i % P < P - 1. Gemma 2-3 without sliding layers drop the window. */
static int layer_types(jcfg *j, int gen, gt_gemma_config *c) {
    int64_t L = c->num_layers, pat = (int64_t)HF_DEFAULT(sliding_pattern, gen), n_local = 0, found = 0;
    if (gen == 3 && (j_int(j, "sliding_window_pattern", pat, &pat) || j_int(j, "_sliding_window_pattern", pat, &pat)))
        return -1;
    bool *local = calloc((size_t)L, sizeof *local);
    if (!local) return gt_errf(j->err, j->errn, "%s: out of memory", j->file);
    json_t *lt = json_object_get(j->o, "layer_types");
    bool listed = lt && !json_is_null(lt);
    int rc = 0;
    if (listed && (!json_is_array(lt) || (int64_t)json_array_size(lt) != L))
        rc = gt_errf(j->err, j->errn, "%s: \"layer_types\" must list num_hidden_layers (%lld) entries", j->file, (long long)L);
    for (int64_t i = 0; i < L && !rc; i++) {
        const char *s = listed ? json_string_value(json_array_get(lt, (size_t)i)) : NULL;
        if (listed && (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention"))))
            rc = gt_errf(j->err, j->errn, "%s: \"layer_types\"[%lld] must be \"sliding_attention\" or \"full_attention\"",
                         j->file, (long long)i);
        local[i] = listed ? !strcmp(s ? s : "", "sliding_attention")
                          : pat > 0 && (i + 1) % pat != 0 && !(gen == 4 && i == L - 1);
        n_local += local[i];
    }
    if (!rc && gen < 4 && n_local > 0 && c->sliding_window < 1)
        rc = gt_errf(j->err, j->errn, "%s: sliding-attention layers need \"sliding_window\" >= 1", j->file);
    for (int64_t p = 1; !rc && p <= (gen == 4 ? L : L + 2) && !found && (gen == 4 || n_local > 0); p++) {
        int64_t cand = gen == 4 || p > 1 ? p : pat;
        if (cand < (gen == 4 ? 1 : 2)) continue;
        bool ok = true;
        for (int64_t i = 0; i < L && ok; i++) ok = local[i] == (i % cand < cand - 1);
        if (ok) found = cand;
    }
    free(local);
    if (rc) return -1;
    if (!found && (gen == 4 || n_local > 0))
        return gt_errf(j->err, j->errn, "%s: \"layer_types\" is not a repeating pattern of P-1 sliding layers and one "
                       "full layer: not supported", j->file);
    c->sliding_pattern = (int)found;
    if (!found) c->sliding_window = 0;
    return 0;
}

/* One full-attention layer's entry of Gemma 4's per_layer_config; sliding layers must have none. */
static int layer_override4(jcfg *j, json_t *plc, const gt_gemma_config *c, int64_t i, int64_t *h, int64_t *k) {
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)i);
    json_t *o = json_object_get(plc, key);
    if (i % c->sliding_pattern < c->sliding_pattern - 1) {
        if (o && json_object_size(o))
            return gt_errf(j->err, j->errn, "%s: \"per_layer_config\" overrides sliding layer %lld: not supported",
                           j->file, (long long)i);
        *h = *k = -1;
        return 0;
    }
    *h = c->head_dim, *k = c->num_kv_heads;
    jcfg lj = {o, j->file, j->err, j->errn};
    return o && (j_int(&lj, "head_dim", c->head_dim, h) || j_int(&lj, "num_key_value_heads", c->num_kv_heads, k)) ? -1 : 0;
}

/* Gemma 4's full-attention layers: head dim and kv heads from per_layer_config (what
 * save_pretrained writes) or global_head_dim / num_global_key_value_heads; with attention_k_eq_v
 * they have k = v. */
static int global_layers4(jcfg *j, gt_gemma_config *c) {
    int64_t gh, gk;
    bool keqv = false;
    if (j_int(j, "global_head_dim", (int64_t)HF_DEFAULT(global_head_dim, 4), &gh) ||
        j_int(j, "num_global_key_value_heads", (int64_t)HF_DEFAULT(num_global_kv_heads, 4), &gk) ||
        j_bool(j, "attention_k_eq_v", false, &keqv))
        return -1;
    int64_t ghd = gh, gkv = keqv ? gk : 0;
    json_t *plc = json_object_get(j->o, "per_layer_config");
    if (plc && !json_is_null(plc)) {
        if (!json_is_object(plc)) return gt_errf(j->err, j->errn, "%s: \"per_layer_config\" must be an object", j->file);
        bool first = true;
        for (int64_t i = 0; i < c->num_layers; i++) {
            int64_t h = -1, k = -1;
            if (layer_override4(j, plc, c, i, &h, &k)) return -1;
            if (h < 0) continue;
            if (!first && (h != ghd || k != gkv))
                return gt_errf(j->err, j->errn, "%s: \"per_layer_config\": full-attention layers differ in shape: not "
                               "supported", j->file);
            ghd = h, gkv = k, first = false;
        }
        if (!keqv && gkv != c->num_kv_heads)
            return gt_errf(j->err, j->errn, "%s: full-attention layers with their own kv head count need "
                           "attention_k_eq_v", j->file);
    } else if (keqv && !gkv) {
        gkv = c->num_kv_heads;
    }
    c->global_head_dim = ghd;
    c->num_global_kv_heads = keqv ? gkv : 0;
    return 0;
}

/* Gemma 1-3 RoPE: 4.x keys (rope_theta, rope_local_base_freq: read from the table; rope_scaling),
 * then rope_parameters (5.x), which wins where both are present, as in transformers. Gemma 3's
 * is per layer type; Gemma 1/2 have one set for all layers. */
static int rope3(jcfg *j, int gen, gt_gemma_config *c) {
    json_t *rp = json_object_get(j->o, "rope_parameters");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return gt_errf(j->err, j->errn, "%s: \"rope_parameters\" must be an object", j->file);
    if (rope_set(j, json_object_get(j->o, "rope_scaling"), "rope_scaling", &c->rope_global_base, &c->rope_global_scale))
        return -1;
    if (rp && !json_is_null(rp)) {
        if (gen < 3 ? rope_set(j, rp, "rope_parameters", &c->rope_global_base, &c->rope_global_scale)
                    : rope_set(j, json_object_get(rp, "full_attention"), "rope_parameters.full_attention",
                               &c->rope_global_base, &c->rope_global_scale) ||
                          rope_set(j, json_object_get(rp, "sliding_attention"), "rope_parameters.sliding_attention",
                                   &c->rope_local_base, &c->rope_local_scale))
            return -1;
    }
    if (gen < 3) c->rope_local_base = c->rope_global_base, c->rope_local_scale = c->rope_global_scale;
    if (!(c->rope_global_base > 0) || !(c->rope_local_base > 0))
        return gt_errf(j->err, j->errn, "%s: RoPE theta must be > 0", j->file);
    return 0;
}

/* Gemma 4 RoPE: rope_parameters.sliding_attention (default or linear) and .full_attention
 * (proportional: theta, partial_rotary_factor, factor; or default). */
static int rope4(jcfg *j, gt_gemma_config *c) {
    json_t *rp = json_object_get(j->o, "rope_parameters");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return gt_errf(j->err, j->errn, "%s: \"rope_parameters\" must be an object", j->file);
    c->rope_local_base = HF_DEFAULT(rope_local_base, 4), c->rope_global_base = HF_DEFAULT(rope_global_base, 4);
    c->rope_global_partial = HF_DEFAULT(rope_global_partial, 4);
    if (!rp || json_is_null(rp)) return 0;
    json_t *sl = json_object_get(rp, "sliding_attention"), *fu = json_object_get(rp, "full_attention");
    if (rope_set(j, sl, "rope_parameters.sliding_attention", &c->rope_local_base, &c->rope_local_scale)) return -1;
    if (!fu || json_is_null(fu)) return 0;
    if (!json_is_object(fu)) return gt_errf(j->err, j->errn, "%s: \"rope_parameters.full_attention\" must be an object", j->file);
    const char *t = json_string_value(json_object_get(fu, "rope_type"));
    jcfg fj = {fu, j->file, j->err, j->errn};
    if (j_num(&fj, "rope_theta", c->rope_global_base, c->rope_global_base, &c->rope_global_base)) return -1;
    if (t && !strcmp(t, "proportional"))
        return j_num(&fj, "partial_rotary_factor", 1.0, 1.0, &c->rope_global_partial) ||
                       j_num(&fj, "factor", 1.0, 1.0, &c->rope_global_scale) ? -1 : 0;
    if (t && strcmp(t, "default"))
        return gt_errf(j->err, j->errn, "%s: rope_parameters.full_attention: rope_type \"%s\" is not supported "
                       "(proportional, default)", j->file, t);
    c->rope_global_partial = 1.0;
    if (json_object_get(fu, "partial_rotary_factor"))
        return gt_errf(j->err, j->errn, "%s: default RoPE with partial_rotary_factor on full-attention layers is not "
                       "supported (proportional is)", j->file);
    return 0;
}

/* The text model's fields of a config (j->o) for generation gen: the table's plain keys, then the
 * special cases above. */
static int text_config(jcfg *jp, int gen, const char *a, gt_gemma_config *c, bool *tied, bool tie) {
    jcfg j = *jp;
    gt_gemma_config_defaults(c, gen);
    snprintf(c->name, sizeof c->name, "hf:%s", a);
    if (gen < 4) c->kerashub_query_scaling = false; /* HF scales by query_pre_attn_scalar as written */
    bool tie_text = true;
    if (read_fields(&j, gen, c) || head_dim_null(&j, gen, c) || refusals(&j, gen) ||
        j_bool(&j, "tie_word_embeddings", true, &tie_text))
        return -1;
    /* untied: accepted on load only when lm_head.weight is stored and equals the embedding */
    if (tied) *tied = tie && tie_text;
    if (c->num_query_heads < 1 || c->hidden_dim < 1 || c->head_dim < 1 || c->num_layers < 1 ||
        c->num_layers > 100000)
        return gt_errf(j.err, j.errn, "%s: hidden_size, num_attention_heads, head_dim and num_hidden_layers must be "
                       "positive (num_hidden_layers at most 100000)", j.file);
    if ((gen == 2 || gen == 3) && query_scaling(&j, gen, c)) return -1;
    if (gen >= 2 && layer_types(&j, gen, c)) return -1;
    if (gen == 4 && global_layers4(&j, c)) return -1;
    if (gen == 4 ? rope4(&j, c) : rope3(&j, gen, c)) return -1;
    if (gt_gemma_config_validate(c, j.err, j.errn)) {
        char m[512];
        snprintf(m, sizeof m, "%s", j.err);
        return gt_errf(j.err, j.errn, "%s: %s", j.file, m);
    }
    return 0;
}

/* config.json's class (architectures, else model_type) and its text model's config. */
static int config_from_json(json_t *root, const char *file, gt_gemma_config *c, char *arch, size_t archn,
                            int *is_multimodal, bool *tied, char *err, size_t errn) {
    if (!json_is_object(root)) return gt_errf(err, errn, "%s: not a JSON object", file);
    const char *a = NULL;
    json_t *archs = json_object_get(root, "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0) {
        if (json_array_size(archs) != 1 || !json_is_string(json_array_get(archs, 0)))
            return gt_errf(err, errn, "%s: \"architectures\" must list exactly one class name", file);
        a = json_string_value(json_array_get(archs, 0));
    }
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    static const struct {
        const char *arch, *model_type;
        int gen, mm;
    } known[] = {
        {"GemmaForCausalLM", "gemma", 1, 0},
        {"Gemma2ForCausalLM", "gemma2", 2, 0},
        {"Gemma3ForCausalLM", "gemma3_text", 3, 0},
        {"Gemma3ForConditionalGeneration", "gemma3", 3, 1},
        {"Gemma4ForCausalLM", "gemma4_text", 4, 0},
        {"Gemma4ForConditionalGeneration", "gemma4", 4, 1},
    };
    int gen = 0, mm = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (a ? !strcmp(a, known[i].arch) : (mt && !strcmp(mt, known[i].model_type))) {
            gen = known[i].gen;
            mm = known[i].mm;
            a = known[i].arch;
        }
    if (!gen)
        return gt_errf(err, errn, "%s: architecture '%s' is not supported (GemmaForCausalLM, Gemma2ForCausalLM, "
                    "Gemma3ForCausalLM, Gemma3ForConditionalGeneration, Gemma4ForCausalLM, "
                    "Gemma4ForConditionalGeneration)", file,
                    a ? a : mt ? mt : "(none: no \"architectures\" or \"model_type\")");
    if (arch) snprintf(arch, archn, "%s", a);
    if (is_multimodal) *is_multimodal = mm;
    jcfg j = {root, file, err, errn};
    char sub[600];
    bool tie = true;
    if (mm) {
        /* the text model lives in text_config, written as a diff against Gemma3TextConfig */
        json_t *tc = json_object_get(root, "text_config");
        if (tc && !json_is_object(tc)) return gt_errf(err, errn, "%s: \"text_config\" is not an object", file);
        if (j_bool(&j, "tie_word_embeddings", true, &tie)) return -1;
        snprintf(sub, sizeof sub, "%s: text_config", file);
        j.file = sub;
        if (!tc) { /* every field at its default */
            json_t *empty = json_object();
            if (!empty) return gt_errf(err, errn, "%s: out of memory", file);
            j.o = empty;
            int rc = text_config(&j, gen, a, c, tied, tie);
            json_decref(empty);
            return rc;
        }
        j.o = tc;
    }
    return text_config(&j, gen, a, c, tied, tie);
}

/* Gemma4TextConfig (transformers 5.x configuration_gemma4.py; its defaults where a key is
 * absent). Global layers take their head dim and kv heads from per_layer_config (what
 * save_pretrained writes) or global_head_dim / num_global_key_value_heads; with attention_k_eq_v
 * they have k = v. RoPE: sliding layers default (theta), full layers proportional (theta,
 * partial_rotary_factor, factor) or default. */

static int load_config_file(const char *path, json_t **root, char **file, char *err, size_t errn) {
    struct stat sb;
    *root = NULL;
    *file = (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) ? gt_path_join(path, "config.json") : strdup(path);
    if (!*file) return gt_errf(err, errn, "%s: out of memory", path);
    json_error_t je;
    *root = json_load_file(*file, JSON_REJECT_DUPLICATES, &je);
    if (!*root) {
        gt_errf(err, errn, "%s: line %d: %s", *file, je.line, gt_err_printable(je.text));
        free(*file);
        *file = NULL;
        return -1;
    }
    return 0;
}

int gt_hf_gemma_config(const char *path, gt_gemma_config *cfg, char *arch, size_t archn, char *err,
                       size_t errn) {
    json_t *root;
    char *file;
    if (load_config_file(path, &root, &file, err, errn)) return -1;
    int rc = config_from_json(root, file, cfg, arch, archn, NULL, NULL, err, errn);
    json_decref(root);
    free(file);
    return rc;
}

/* ---------------------------------------------------------------- weights */

typedef struct {
    const gt_st *st;
    const char *dir;
    char **used; /* HF names consumed */
    int n_used, cap_used;
} loader;

static int mark_used(loader *ld, const char *name) {
    if (ld->n_used == ld->cap_used) {
        int cap = ld->cap_used ? 2 * ld->cap_used : 256;
        char **p = realloc(ld->used, (size_t)cap * sizeof *p);
        if (!p) return -1;
        ld->used = p;
        ld->cap_used = cap;
    }
    if (!(ld->used[ld->n_used] = strdup(name))) return -1;
    ld->n_used++;
    return 0;
}

static int same_shape(const gt_st_tensor *t, const gt_tensor *dst) {
    if (t->ndim != dst->ndim) return 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != dst->shape[i]) return 0;
    return 1;
}

static void shape_str(const gt_st_tensor *t, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

static int load_one(loader *ld, const char *name, gt_tensor *dst, char *err, size_t errn) {
    const gt_st_tensor *t = gt_st_find(ld->st, name);
    if (!t) return gt_errf(err, errn, "hf: %s: tensor '%s' is missing (needed for %s)", ld->dir, name, dst->name);
    if (!same_shape(t, dst)) {
        char have[128], want[64];
        shape_str(t, have, sizeof have);
        return gt_errf(err, errn, "hf: %s: tensor '%s' has shape %s, expected %s for %s", t->file, name, have,
                    gt_shape_str(dst, want, sizeof want), dst->name);
    }
    if (gt_st_read_f32(t, dst->data, err, errn)) return -1;
    if (mark_used(ld, name)) return gt_errf(err, errn, "hf: out of memory");
    return 0;
}

/* A one-element tensor (Gemma 4's layer_scalar: HF [1], ours 0-d). */
static int load_scalar(loader *ld, const char *name, gt_tensor *dst, char *err, size_t errn) {
    const gt_st_tensor *t = gt_st_find(ld->st, name);
    if (!t) return gt_errf(err, errn, "hf: %s: tensor '%s' is missing (needed for %s)", ld->dir, name, dst->name);
    if (t->n_elements != 1) {
        char have[128];
        shape_str(t, have, sizeof have);
        return gt_errf(err, errn, "hf: %s: tensor '%s' has shape %s, expected one value for %s", t->file, name, have,
                    dst->name);
    }
    if (gt_st_read_f32(t, dst->data, err, errn)) return -1;
    if (mark_used(ld, name)) return gt_errf(err, errn, "hf: out of memory");
    return 0;
}

/* Gemma 4 expert kernels: HF experts.gate_up_proj [E, 2F, D] holds gate (rows :F of each expert)
 * and up (F:), ours [E*F, D] each; experts.down_proj [E, D, F] is ours [E*D, F] as is. */
static int load_expert(loader *ld, const char *name, gt_tensor *dst, bool up, int64_t E, char *err, size_t errn) {
    const gt_st_tensor *t = gt_st_find(ld->st, name);
    if (!t) return gt_errf(err, errn, "hf: %s: tensor '%s' is missing (needed for %s)", ld->dir, name, dst->name);
    bool fused = strstr(name, "gate_up_proj") != NULL;
    int64_t F = dst->shape[0] / E, in = dst->shape[1];
    if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != (fused ? 2 * F : dst->shape[0] / E) || t->shape[2] != in) {
        char have[128];
        shape_str(t, have, sizeof have);
        return gt_errf(err, errn, "hf: %s: tensor '%s' has shape %s, expected [%lld,%lld,%lld] for %s", t->file, name,
                       have, (long long)E, (long long)(fused ? 2 * F : F), (long long)in, dst->name);
    }
    if (!fused) return gt_st_read_f32(t, dst->data, err, errn) || mark_used(ld, name) ? -1 : 0;
    float *all = malloc((size_t)t->n_elements * sizeof *all);
    if (!all) return gt_errf(err, errn, "hf: out of memory reading '%s'", name);
    int rc = gt_st_read_f32(t, all, err, errn);
    for (int64_t e = 0; e < E && !rc; e++)
        memcpy(dst->data + e * F * in, all + (e * 2 * F + (up ? F : 0)) * in, (size_t)(F * in) * sizeof *all);
    free(all);
    return rc || mark_used(ld, name) ? -1 : 0;
}

/* lm_head.weight, when stored, must be the embedding (the head is tied in gt_gemma). */
static int check_head(loader *ld, const char *name, const gt_tensor *emb, char *err, size_t errn) {
    const gt_st_tensor *t = gt_st_find(ld->st, name);
    if (!t) return 0;
    if (!same_shape(t, emb)) {
        char have[128], want[64];
        shape_str(t, have, sizeof have);
        return gt_errf(err, errn, "hf: %s: tensor '%s' has shape %s, expected %s (tied to the embedding)", t->file,
                    name, have, gt_shape_str(emb, want, sizeof want));
    }
    enum { ROWS = 1024 };
    int64_t D = emb->shape[1];
    float *buf = malloc((size_t)(ROWS * D) * sizeof *buf);
    if (!buf) return gt_errf(err, errn, "hf: out of memory");
    int rc = 0;
    size_t es = gt_st_dtype_size(t->dtype);
    for (int64_t r = 0; r < emb->shape[0] && !rc; r += ROWS) {
        int64_t k = emb->shape[0] - r < ROWS ? emb->shape[0] - r : ROWS;
        gt_st_tensor part = *t;
        part.data = t->data + (size_t)(r * D) * es;
        part.n_elements = k * D;
        if (gt_st_read_f32(&part, buf, err, errn)) rc = -1;
        else if (memcmp(buf, emb->data + r * D, (size_t)(k * D) * sizeof *buf))
            rc = gt_errf(err, errn, "hf: %s: tensor '%s' differs from the embedding (row %lld onwards): an untied "
                      "LM head is not supported", t->file, name, (long long)r);
    }
    free(buf);
    if (!rc && mark_used(ld, name)) rc = gt_errf(err, errn, "hf: out of memory");
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool starts_with(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }
static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int gt_hf_gemma_load(const char *dir, bool trainable, gt_gemma **out, char *err, size_t errn) {
    *out = NULL;
    json_t *root;
    char *cfile;
    if (load_config_file(dir, &root, &cfile, err, errn)) return -1;
    gt_gemma_config c;
    char arch[64];
    int mm = 0;
    bool tied = true;
    int rc = config_from_json(root, cfile, &c, arch, sizeof arch, &mm, &tied, err, errn);
    json_decref(root);
    free(cfile);
    if (rc) return -1;
    gt_st *st;
    if (gt_st_open(dir, &st, err, errn)) return -1;
    gt_gemma *m = NULL;
    loader ld = {.st = st, .dir = dir};
    /* where the text model's tensors live */
    static const char *const prefixes_mm[] = {"model.language_model.", "language_model.model.", NULL};
    static const char *const prefixes_lm[] = {"model.", "", NULL};
    const char *const *cands = mm ? prefixes_mm : prefixes_lm;
    const char *pre = NULL;
    char n[256];
    for (int i = 0; cands[i] && !pre; i++) {
        snprintf(n, sizeof n, "%sembed_tokens.weight", cands[i]);
        if (gt_st_find(st, n)) pre = cands[i];
    }
    if (!pre) {
        gt_st_close(st);
        return gt_errf(err, errn, "hf: %s: tensor '%sembed_tokens.weight' is missing", dir, cands[0]);
    }
    /* the largest tensor and the usual mismatch (vocabulary): checked before allocating */
    const gt_st_tensor *emb = gt_st_find(st, n);
    if (emb->ndim != 2 || emb->shape[0] != c.vocab_size || emb->shape[1] != c.hidden_dim) {
        char have[128];
        shape_str(emb, have, sizeof have);
        gt_errf(err, errn, "hf: %s: tensor '%s' has shape %s, expected [%lld,%lld] (vocab_size, hidden_size)",
             emb->file, n, have, (long long)c.vocab_size, (long long)c.hidden_dim);
        gt_st_close(st); /* after the message: emb->file lives in st */
        return -1;
    }
    if (gt_gemma_create(&c, trainable, &m, err, errn)) {
        gt_st_close(st);
        return -1;
    }
    for (int k = 0; k < m->n_params && !rc; k++) {
        const gt_gemma_param *p = &m->params[k];
        if (gt_gemma_param_hf_name(p->row, &c, p->layer, pre, n, sizeof n))
            rc = gt_errf(err, errn, "hf: %s: %s has no Hugging Face name", dir, p->name);
        else if (p->t->ndim == 0) /* a scalar: HF stores [1] */
            rc = load_scalar(&ld, n, p->t, err, errn);
        else if (p->row->keras_layout == GT_KERAS_EXPERTS)
            rc = load_expert(&ld, n, p->t, p->t == m->layers[p->layer].expert_up, c.num_experts, err, errn);
        else
            rc = load_one(&ld, n, p->t, err, errn);
    }
    const char *head = mm && !gt_st_find(st, "lm_head.weight") ? "language_model.lm_head.weight" : "lm_head.weight";
    if (!rc) rc = check_head(&ld, head, m->embedding, err, errn);
    if (!rc && !tied && !gt_st_find(st, head))
        rc = gt_errf(err, errn, "hf: %s: tie_word_embeddings is false but tensor '%s' is missing", dir, head);
    if (rc) goto done;
    /* anything else under the text model's prefix is a part we would silently drop */
    if (ld.n_used > 1) qsort(ld.used, (size_t)ld.n_used, sizeof *ld.used, cmp_str);
    for (int64_t i = 0; i < gt_st_n_tensors(st) && !rc; i++) {
        const gt_st_tensor *t = gt_st_tensor_at(st, i);
        if (mm && !starts_with(t->name, pre)) continue; /* vision tower, projector */
        if (ends_with(t->name, "rotary_emb.inv_freq")) continue; /* a buffer some old exports kept */
        const char *key = t->name;
        if (!ld.n_used || !bsearch(&key, ld.used, (size_t)ld.n_used, sizeof *ld.used, cmp_str))
            rc = gt_errf(err, errn, "hf: %s: unexpected tensor '%s' (not part of a %s with this config.json)", t->file,
                      t->name, arch);
    }
done:
    for (int i = 0; i < ld.n_used; i++) free(ld.used[i]);
    free(ld.used);
    gt_st_close(st);
    if (rc) {
        gt_gemma_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

/* ---------------------------------------------------------------- save */

static const char *expressible4(const gt_gemma_config *c) {
    if (gt_gemma_layer_is_local(c, c->num_layers - 1))
        return "transformers makes the last layer full attention (this model's is sliding)";
    if (c->attn_logit_softcap > 0) return "Gemma4ForCausalLM has no attention-logit soft-cap";
    return NULL;
}

static int check_expressible(const gt_gemma_config *c, char *err, size_t errn) {
    const char *why = NULL;
    int g = c->generation;
    if (g < 1 || g > 4) why = "only generations 1-4 are supported";
    else if (g == 4) why = expressible4(c);
    else if (!c->norm_add_one) why = "HF Gemma 1-3 norms are 1 + w";
    else if (c->use_post_attention_norm != (g >= 2) || c->use_post_ffw_norm != (g >= 2))
        why = "post-attention / post-MLP norms are fixed by the generation in HF";
    else if (c->use_qk_norm != (g == 3)) why = "query/key norms are fixed by the generation in HF (Gemma 3 only)";
    else if (g == 1 && (c->attn_logit_softcap > 0 || c->final_logit_softcap > 0))
        why = "GemmaForCausalLM has no soft-caps";
    else if (g == 1 && c->sliding_pattern > 0 && c->sliding_window > 0)
        why = "GemmaForCausalLM has no sliding-window layers";
    else if (g == 1 && fabs(gt_gemma_query_scale(c) * sqrt((double)c->head_dim) - 1) > 1e-12)
        why = "GemmaForCausalLM always scales queries by head_dim^-1/2";
    else if (g <= 2 && (c->rope_local_base != c->rope_global_base || c->rope_local_scale != c->rope_global_scale))
        why = "Gemma 1/2 use one RoPE base and scale for all layers";
    if (why) return gt_errf(err, errn, "hf save: config '%s' cannot be written as an HF Gemma %d model: %s", c->name, g, why);
    return 0;
}

static json_t *rope_json(double theta, double scale) {
    json_t *o = json_object();
    json_object_set_new(o, "rope_theta", json_real(theta));
    json_object_set_new(o, "rope_type", json_string(scale == 1 ? "default" : "linear"));
    if (scale != 1) json_object_set_new(o, "factor", json_real(scale));
    return o;
}

/* The table's top-level keys of the model's generation. */
static void write_fields(json_t *o, const gt_gemma_config *c) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    int g = c->generation;
    for (size_t i = 0; i < n; i++) {
        const gt_gemma_field *r = &f[i];
        if (!r->hf || !(r->hf_gens & GT_G(g)) || (r->hf_nested & GT_G(g))) continue;
        double v = gt_gemma_field_get(c, r);
        bool null = (r->hf_flags & GT_FF_NULL_ZERO) && !(v > 0);
        json_object_set_new(o, r->hf, null ? json_null()
                                      : r->type == GT_FIELD_INT ? json_integer((json_int_t)v)
                                      : r->type == GT_FIELD_NUM ? json_real(v)
                                                                : json_boolean(v != 0));
    }
    if (c->max_seq_len <= 0) json_object_set_new(o, "max_position_embeddings", json_integer(8192));
    if (g == 4 && !c->per_layer_vocab_size && c->per_layer_input_dim > 0) /* 0 means vocab_size here */
        json_object_set_new(o, "vocab_size_per_layer_input", json_integer(c->vocab_size));
}

/* layer_types, and the window only where there are sliding layers (Gemma 2, 3) */
static void layer_types_json(json_t *o, const gt_gemma_config *c) {
    json_t *lt = json_array();
    for (int64_t i = 0; i < c->num_layers; i++)
        json_array_append_new(lt, json_string(gt_gemma_layer_is_local(c, i) ? "sliding_attention" : "full_attention"));
    json_object_set_new(o, "layer_types", lt);
    if (c->generation < 4 && !(c->sliding_pattern > 0 && c->sliding_window > 0))
        json_object_set_new(o, "sliding_window", json_null());
}

/* RoPE as each class reads it: Gemma 3 per layer type (plus the 4.x keys), Gemma 1/2 one set,
 * Gemma 4 per layer type with proportional RoPE on full-attention layers. */
static void rope_parameters_json(json_t *o, const gt_gemma_config *c) {
    int g = c->generation;
    json_t *rp = json_object();
    if (g >= 3) {
        json_t *full = rope_json(c->rope_global_base, c->rope_global_scale);
        if (g == 4) {
            json_object_set_new(full, "rope_type", json_string("proportional"));
            json_object_set_new(full, "partial_rotary_factor", json_real(c->rope_global_partial));
            if (c->rope_global_scale != 1) json_object_set_new(full, "factor", json_real(c->rope_global_scale));
        }
        json_object_set_new(rp, "full_attention", full);
        json_object_set_new(rp, "sliding_attention", rope_json(c->rope_local_base, c->rope_local_scale));
    } else {
        json_decref(rp);
        rp = rope_json(c->rope_global_base, c->rope_global_scale);
    }
    json_object_set_new(o, "rope_parameters", rp);
    if (g == 4) return;
    if (c->rope_global_scale != 1) { /* 4.x */
        json_t *rs = json_object();
        json_object_set_new(rs, "rope_type", json_string("linear"));
        json_object_set_new(rs, "factor", json_real(c->rope_global_scale));
        json_object_set_new(o, "rope_scaling", rs);
    } else if (g == 3) {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    if (g == 3 && c->sliding_pattern > 0) json_object_set_new(o, "sliding_window_pattern", json_integer(c->sliding_pattern));
}

/* Gemma 4's full-attention layers as save_pretrained writes them: per_layer_config overrides. */
static void global_layers4_json(json_t *o, const gt_gemma_config *c) {
    bool keqv = c->num_global_kv_heads > 0;
    json_t *plc = json_object();
    for (int64_t i = 0; i < c->num_layers; i++) {
        if (gt_gemma_layer_is_local(c, i)) continue;
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)i);
        json_t *l = json_object();
        json_object_set_new(l, "head_dim", json_integer(gt_gemma_layer_head_dim(c, i)));
        if (keqv) json_object_set_new(l, "num_key_value_heads", json_integer(c->num_global_kv_heads));
        json_object_set_new(plc, key, l);
    }
    json_object_set_new(o, "per_layer_config", plc);
    json_object_set_new(o, "attention_k_eq_v", json_boolean(keqv));
    json_object_set_new(o, "enable_moe_block", json_boolean(c->moe));
}

static json_t *config_json(const gt_gemma_config *c, bool bf16, int32_t bos, int32_t eos, int32_t pad) {
    static const char *const archs[5] = {NULL, "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
                                         "Gemma4ForCausalLM"};
    static const char *const types[5] = {NULL, "gemma", "gemma2", "gemma3_text", "gemma4_text"};
    int g = c->generation;
    json_t *o = json_object();
    json_t *a = json_array();
    json_array_append_new(a, json_string(archs[g]));
    json_object_set_new(o, "architectures", a);
    json_object_set_new(o, "model_type", json_string(types[g]));
    write_fields(o, c);
    json_object_set_new(o, g == 1 ? "hidden_act" : "hidden_activation", json_string("gelu_pytorch_tanh"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0));
    json_object_set_new(o, "tie_word_embeddings", json_true());
    json_object_set_new(o, "use_cache", json_true());
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "bos_token_id", bos >= 0 ? json_integer(bos) : json_null());
    json_object_set_new(o, "eos_token_id", eos >= 0 ? json_integer(eos) : json_null());
    json_object_set_new(o, "pad_token_id", pad >= 0 ? json_integer(pad) : json_null());
    json_object_set_new(o, "dtype", json_string(bf16 ? "bfloat16" : "float32"));
    json_object_set_new(o, "torch_dtype", json_string(bf16 ? "bfloat16" : "float32")); /* 4.x name */
    if (g == 2 || g == 3) {
        /* the scalar whose inverse square root gt_gemma_query_scale is */
        int64_t qpas = (c->query_head_dim_normalize || c->kerashub_query_scaling)
                           ? c->head_dim : c->hidden_dim / c->num_query_heads;
        json_object_set_new(o, "query_pre_attn_scalar", json_integer(qpas));
    }
    if (g >= 2) {
        layer_types_json(o, c);
        json_object_set_new(o, "use_bidirectional_attention", g == 4 ? json_null() : json_false());
    }
    if (g == 2) json_object_set_new(o, "cache_implementation", json_string("hybrid"));
    if (g == 4) global_layers4_json(o, c);
    rope_parameters_json(o, c);
    return o;
}


static int write_json(const char *dir, const char *name, json_t *o, char *err, size_t errn) {
    char *path = gt_path_join(dir, name);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    int rc = 0;
    if (!path || !text) rc = gt_errf(err, errn, "hf save: %s/%s: out of memory", dir, name);
    else {
        size_t len = strlen(text);
        char *t2 = realloc(text, len + 2);
        if (!t2) rc = gt_errf(err, errn, "hf save: %s: out of memory", path);
        else {
            text = t2;
            text[len] = '\n';
            text[len + 1] = 0;
            rc = gt_write_file_atomic(path, text, len + 1, err, errn);
        }
    }
    free(text);
    free(path);
    return rc;
}

static int read_whole(const char *path, char **buf, size_t *len, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) return gt_errf(err, errn, "hf save: %s: %s", path, strerror(errno));
    char *p = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *q = realloc(p, cap);
            if (!q) {
                free(p);
                fclose(f);
                return gt_errf(err, errn, "hf save: %s: out of memory", path);
            }
            p = q;
        }
        size_t k = fread(p + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(p);
        return gt_errf(err, errn, "hf save: %s: read error", path);
    }
    *buf = p;
    *len = n;
    return 0;
}

static int copy_file(const char *src, const char *dir, const char *name, char *err, size_t errn) {
    char *buf;
    size_t len;
    if (read_whole(src, &buf, &len, err, errn)) return -1;
    char *dst = gt_path_join(dir, name);
    int rc = dst ? gt_write_file_atomic(dst, buf, len, err, errn) : gt_errf(err, errn, "hf save: out of memory");
    free(dst);
    free(buf);
    return rc;
}

static int save_tokenizer(const char *src, const gt_tokenizer *tok, const char *dir, char *err, size_t errn) {
    char *buf;
    size_t len;
    if (read_whole(src, &buf, &len, err, errn)) return -1;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t')) i++;
    bool is_json = i < len && buf[i] == '{';
    char *dst = gt_path_join(dir, is_json ? "tokenizer.json" : "tokenizer.model");
    int rc = dst ? gt_write_file_atomic(dst, buf, len, err, errn) : gt_errf(err, errn, "hf save: out of memory");
    free(dst);
    free(buf);
    if (rc) return -1;
    /* the source's own tokenizer_config.json (chat template, flags) travels with it */
    const char *slash = strrchr(src, '/');
    char *sdir = slash ? strndup(src, (size_t)(slash - src + (slash == src))) : strdup(".");
    if (!sdir) return gt_errf(err, errn, "hf save: out of memory");
    bool have_cfg = false;
    static const char *const side[] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int k = 0; k < 2 && !rc; k++) {
        char *p = gt_path_join(sdir, side[k]);
        if (!p) rc = gt_errf(err, errn, "hf save: out of memory");
        else if (access(p, R_OK) == 0) {
            rc = copy_file(p, dir, side[k], err, errn);
            if (k == 0) have_cfg = true;
        }
        free(p);
    }
    free(sdir);
    if (rc || have_cfg) return rc;
    json_t *o = json_object();
    json_object_set_new(o, "tokenizer_class", json_string("GemmaTokenizer"));
    json_object_set_new(o, "add_bos_token", json_true());
    json_object_set_new(o, "add_eos_token", json_false());
    json_object_set_new(o, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(o, "padding_side", json_string("left"));
    const struct {
        const char *key;
        int32_t id;
    } sp[] = {{"bos_token", gt_tok_bos(tok)}, {"eos_token", gt_tok_eos(tok)},
              {"pad_token", gt_tok_pad(tok)}, {"unk_token", gt_tok_unk(tok)}};
    for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++)
        if (sp[k].id >= 0 && gt_tok_piece(tok, sp[k].id))
            json_object_set_new(o, sp[k].key, json_string(gt_tok_piece(tok, sp[k].id)));
    rc = write_json(dir, "tokenizer_config.json", o, err, errn);
    json_decref(o);
    return rc;
}

static int make_dir(const char *dir, char *err, size_t errn) {
    if (mkdir(dir, 0755) == 0) return 0;
    struct stat sb;
    if (errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 0;
    return gt_errf(err, errn, "hf save: %s: cannot create the directory: %s", dir,
                errno == EEXIST ? "a file of that name exists" : strerror(errno));
}

/* A Gemma 4 expert kernel's HF entry (see load_expert): down as [E, D, F] over our data; gate
 * with up joined into a new [E, 2F, D] buffer kept in fused[layer]. NULL when out of memory. */
static const float *expert_entry(const gt_gemma *m, const gt_gemma_param *p, float **fused, gt_st_entry *e) {
    const gt_gemma_layer *ly = &m->layers[p->layer];
    int64_t E = m->cfg.num_experts, rows = p->t->shape[0] / E, in = p->t->shape[1];
    e->ndim = 3;
    e->shape[0] = E, e->shape[1] = rows, e->shape[2] = in;
    if (p->t != ly->expert_gate) return p->t->data;
    e->shape[1] = 2 * rows;
    float *g = fused[p->layer] = malloc((size_t)(E * 2 * rows * in) * sizeof *g);
    for (int64_t x = 0; g && x < E; x++) {
        memcpy(g + x * 2 * rows * in, ly->expert_gate->data + x * rows * in, (size_t)(rows * in) * sizeof *g);
        memcpy(g + (x * 2 + 1) * rows * in, ly->expert_up->data + x * rows * in, (size_t)(rows * in) * sizeof *g);
    }
    return g;
}

/* The decoder's tensors under their HF names (after prefix pre) into e; *n of them. */
static int gather_decoder(const gt_gemma *m, const char *pre, gt_st_entry *e, char (*names)[128], float **fused,
                          size_t *n, char *err, size_t errn) {
    const gt_gemma_config *c = &m->cfg;
    for (int k = 0; k < m->n_params; k++) {
        const gt_gemma_param *p = &m->params[k];
        if (p->row->keras_layout == GT_KERAS_EXPERTS && p->t == m->layers[p->layer].expert_up) continue; /* fused */
        if (gt_gemma_param_hf_name(p->row, c, p->layer, pre, names[*n], sizeof names[*n]))
            return gt_errf(err, errn, "hf save: %s has no Hugging Face name", p->name);
        gt_st_entry *x = &e[*n];
        x->name = names[*n];
        x->data = p->t->data;
        x->ndim = p->t->ndim ? p->t->ndim : 1; /* a scalar (Gemma 4's layer_scalar): HF stores [1] */
        x->shape[0] = 1;
        for (int d = 0; d < p->t->ndim; d++) x->shape[d] = p->t->shape[d];
        if (p->row->keras_layout == GT_KERAS_EXPERTS && !(x->data = expert_entry(m, p, fused, x)))
            return gt_errf(err, errn, "hf save: out of memory joining %s", p->name);
        (*n)++;
    }
    return 0;
}

/* bos, eos, pad, <end_of_turn>; Gemma 3's image ids (3); Gemma 4's image and audio ids (6) */
#define NIDS 13

/* config.json (the multimodal one around the text config when there is an encoder) and
 * generation_config.json. ids: bos, eos, pad, <end_of_turn>, then the image token ids. */
static int write_configs(const gt_gemma *m, const gt_hf_save_opts *o, const char *dir, const int32_t ids[NIDS],
                         char *err, size_t errn) {
    int32_t bos = ids[0], eos = ids[1], pad = ids[2], eot = ids[3];
    json_t *cj = config_json(&m->cfg, o->bf16, bos, eos, pad);
    if (o->vision) cj = gt_vision_hf_config(&o->vision->cfg, cj, ids + 4);
    if (o->vision4 || o->audio) cj = gt_hf_towers4_config(cj, o->vision4, o->audio, ids + 7, o->vision_bidir);
    int rc = write_json(dir, "config.json", cj, err, errn);
    json_decref(cj);
    if (rc) return rc;
    json_t *gj = json_object();
    json_object_set_new(gj, "_from_model_config", json_false());
    json_object_set_new(gj, "bos_token_id", bos >= 0 ? json_integer(bos) : json_null());
    if (eot >= 0 && eot != eos) {
        json_t *a = json_array();
        json_array_append_new(a, json_integer(eos));
        json_array_append_new(a, json_integer(eot));
        json_object_set_new(gj, "eos_token_id", a);
    } else {
        json_object_set_new(gj, "eos_token_id", eos >= 0 ? json_integer(eos) : json_null());
    }
    json_object_set_new(gj, "pad_token_id", pad >= 0 ? json_integer(pad) : json_null());
    if (m->cfg.generation == 2) json_object_set_new(gj, "cache_implementation", json_string("hybrid"));
    rc = write_json(dir, "generation_config.json", gj, err, errn);
    json_decref(gj);
    return rc;
}

/* The tokenizer's special ids (Gemma's when there is none): bos, eos, pad, <end_of_turn>,
 * <start_of_image>, <end_of_image>, the image token; 0 or -1 when they do not fit the model. */
static int special_ids(const gt_tokenizer *tok, const char *path, const gt_gemma_config *c, int32_t ids[NIDS],
                       char *err, size_t errn) {
    int32_t d[NIDS] = {2, 1, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    memcpy(ids, d, sizeof d);
    if (!tok) return 0;
    static const char *const g4[6] = {GT_IMAGE4_START, GT_IMAGE4_PLACEHOLDER, GT_IMAGE4_END,
                                      GT_AUDIO_START, GT_AUDIO_PLACEHOLDER, GT_AUDIO_END};
    for (int k = 0; k < 6; k++) ids[7 + k] = gt_tok_piece_id(tok, g4[k]);
    ids[0] = gt_tok_bos(tok), ids[1] = gt_tok_eos(tok), ids[2] = gt_tok_pad(tok);
    ids[3] = gt_tok_piece_id(tok, "<end_of_turn>");
    ids[4] = gt_tok_piece_id(tok, "<start_of_image>"), ids[5] = gt_tok_piece_id(tok, "<end_of_image>");
    ids[6] = gt_tok_piece_id(tok, "<image_soft_token>");
    /* HF tokenizers may be longer than the embedding (Gemma 3's <image_soft_token> on text
     * models); the ids the model is told about must fit it */
    for (int i = 0; i < 4; i++)
        if (ids[i] >= c->vocab_size)
            return gt_errf(err, errn, "hf save: tokenizer %s: special ids (bos %d, eos %d, pad %d, <end_of_turn> %d) "
                           "do not fit the model's vocab_size %lld", path, ids[0], ids[1], ids[2], ids[3],
                           (long long)c->vocab_size);
    return 0;
}

int gt_hf_gemma_save(const gt_gemma *m, const char *dir, const gt_hf_save_opts *opts, char *err,
                     size_t errn) {
    gt_hf_save_opts o = opts ? *opts : (gt_hf_save_opts){0};
    const gt_gemma_config *c = &m->cfg;
    if (m->frozen_dtype != GT_FROZEN_FP32) /* the writer reads fp32 parameters */
        return gt_errf(err, errn, "hf save: %s: the model is stored as %s: widen it first (gt_gemma_set_frozen_dtype)", dir, gt_frozen_dtype_names[m->frozen_dtype]);
    if (check_expressible(c, err, errn)) return -1;
    if (o.vision && (c->generation != 3 || o.vision->cfg.output_dim != c->hidden_dim))
        return gt_errf(err, errn, "hf save: %s: a vision encoder is written for Gemma 3 with output_dim = hidden_dim", dir);
    bool towers = o.vision4 || o.audio;
    if (towers && (c->generation != 4 || o.vision))
        return gt_errf(err, errn, "hf save: %s: Gemma 4 vision / audio towers are written with a Gemma 4 decoder", dir);
    if (towers && gt_hf_towers4_check(o.vision4, o.audio, c->hidden_dim, err, errn)) return -1;
    gt_tokenizer *tok = NULL;
    int32_t ids[NIDS];
    if (o.tokenizer && gt_tok_load(o.tokenizer, &tok, err, errn)) return -1;
    if (special_ids(tok, o.tokenizer, c, ids, err, errn) || make_dir(dir, err, errn)) {
        gt_tok_free(tok);
        return -1;
    }
    gt_vision_hf_out vo = {0};
    gt_hf_towers4_out to = {0};
    int rc = o.vision ? gt_vision_hf_tensors(o.vision, &vo, err, errn) : 0;
    if (!rc && towers) rc = gt_hf_towers4_tensors(o.vision4, o.audio, &to, err, errn);
    /* tensors under their HF names: the decoder, then the encoders */
    gt_st_entry *e = calloc((size_t)m->n_params + (size_t)vo.n + to.n, sizeof *e);
    char (*names)[128] = calloc((size_t)m->n_params, sizeof *names);
    float **fused = calloc((size_t)c->num_layers, sizeof *fused); /* per layer: gate_up, or NULL */
    if (!rc && (!e || !names || !fused)) rc = gt_errf(err, errn, "hf save: out of memory");
    size_t n = 0;
    const char *pre = o.vision ? "language_model.model." : towers ? "model.language_model." : "model.";
    if (!rc) rc = gather_decoder(m, pre, e, names, fused, &n, err, errn);
    for (int64_t i = 0; !rc && i < vo.n; i++) e[n++] = vo.e[i];
    for (size_t i = 0; !rc && i < to.n; i++) e[n++] = to.e[i];
    if (rc) goto done;
    char *wpath = gt_path_join(dir, "model.safetensors");
    static const char *const meta[] = {"format", "pt", NULL};
    if (!wpath) rc = gt_errf(err, errn, "hf save: out of memory");
    else rc = gt_st_write(wpath, e, n, o.bf16 ? GT_ST_BF16 : GT_ST_F32, meta, err, errn);
    free(wpath);
    if (rc) goto done;
    /* a stale index would shadow the new single file */
    char *idx = gt_path_join(dir, "model.safetensors.index.json");
    if (idx && access(idx, F_OK) == 0 && unlink(idx))
        rc = gt_errf(err, errn, "hf save: %s: cannot remove the old shard index: %s", idx, strerror(errno));
    free(idx);
    if (!rc) rc = write_configs(m, &o, dir, ids, err, errn);
    if (!rc && tok) rc = save_tokenizer(o.tokenizer, tok, dir, err, errn);
done:
    for (int64_t i = 0; fused && i < c->num_layers; i++) free(fused[i]);
    free(fused);
    free(e);
    free(names);
    gt_vision_hf_out_free(&vo);
    gt_hf_towers4_out_free(&to);
    gt_tok_free(tok);
    return rc;
}
