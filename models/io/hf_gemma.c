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

#include "data/tokenizer.h"
#include "models/gemma_params.h"
#include "models/io/safetensors.h"
#include "util/err.h"
#include "util/fsutil.h"

_Static_assert(sizeof(gt_real) == sizeof(float), "HF import/export is built against the fp32 engine");

/* ---------------------------------------------------------------- config.json */

/* transformers' class defaults (configuration_gemma{,2,3,4}.py, 5.x; same numbers in 4.x) of
 * the fields that need more than a read (query scaling, layer pattern, RoPE, soft-caps) */
typedef struct {
    int64_t qpas, window, pattern;
    double global_theta, local_theta, final_cap, attn_cap;
} hf_defaults;

static const hf_defaults defaults_by_gen[4] = {
    [1] = {0, 0, 0, 10000.0, 10000.0, 0, 0},
    [2] = {256, 4096, 2, 10000.0, 10000.0, 30.0, 50.0},
    [3] = {256, 4096, 6, 1000000.0, 10000.0, 0, 0},
};

/* config.json integer fields read as they are into gt_gemma_config, with the class default per
 * generation (index 1-4; -1: not read this way for that generation). */
static const struct {
    const char *key;
    size_t off;
    int64_t dflt[5];
} int_fields[] = {
    {"vocab_size", offsetof(gt_gemma_config, vocab_size), {-1, 256000, 256000, 262208, 262144}},
    {"hidden_size", offsetof(gt_gemma_config, hidden_dim), {-1, 3072, 2304, 2304, 2304}},
    {"intermediate_size", offsetof(gt_gemma_config, intermediate_dim), {-1, 24576, 9216, 9216, 9216}},
    {"num_hidden_layers", offsetof(gt_gemma_config, num_layers), {-1, 28, 26, 26, 30}},
    {"num_attention_heads", offsetof(gt_gemma_config, num_query_heads), {-1, 16, 8, 8, 8}},
    {"num_key_value_heads", offsetof(gt_gemma_config, num_kv_heads), {-1, 16, 4, 4, 4}},
    {"head_dim", offsetof(gt_gemma_config, head_dim), {-1, -1, -1, -1, 256}}, /* 1-3: null allowed */
    {"max_position_embeddings", offsetof(gt_gemma_config, max_seq_len), {-1, 8192, 8192, 131072, 131072}},
    {"hidden_size_per_layer_input", offsetof(gt_gemma_config, per_layer_input_dim), {-1, -1, -1, -1, 256}},
    {"vocab_size_per_layer_input", offsetof(gt_gemma_config, per_layer_vocab_size), {-1, -1, -1, -1, 262144}},
    {"num_kv_shared_layers", offsetof(gt_gemma_config, num_kv_shared_layers), {-1, -1, -1, -1, 0}},
};

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

static int read_int_fields(jcfg *j, int gen, gt_gemma_config *c) {
    for (size_t k = 0; k < sizeof int_fields / sizeof int_fields[0]; k++)
        if (int_fields[k].dflt[gen] >= 0 &&
            j_int(j, int_fields[k].key, int_fields[k].dflt[gen], (int64_t *)((char *)c + int_fields[k].off)))
            return -1;
    return j_num(j, "rms_norm_eps", 1e-6, 1e-6, &c->rms_eps);
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

static int text_config(jcfg *jp, int gen, const char *a, gt_gemma_config *c, bool *tied, bool tie);

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
static int text_config4(jcfg *jp, const char *a, gt_gemma_config *c, bool *tied, bool tie) {
    jcfg j = *jp;
    char *err = j.err;
    size_t errn = j.errn;
    gt_gemma_config_defaults(c, 4);
    snprintf(c->name, sizeof c->name, "hf:%s", a);
    int64_t gh = 0, gk = 0, window = 0;
    bool keqv = false, bias = false, moe = false, tie_text = true, dw = false;
    if (read_int_fields(&j, 4, c) || j_int(&j, "sliding_window", 512, &window) ||
        j_num(&j, "final_logit_softcapping", 0, 0, &c->final_logit_softcap) ||
        j_int(&j, "global_head_dim", 512, &gh) || j_int(&j, "num_global_key_value_heads", 0, &gk) ||
        j_bool(&j, "attention_k_eq_v", false, &keqv) || j_bool(&j, "attention_bias", false, &bias) ||
        j_bool(&j, "enable_moe_block", false, &moe) || j_bool(&j, "use_double_wide_mlp", false, &dw) ||
        j_bool(&j, "tie_word_embeddings", true, &tie_text))
        return -1;
    c->double_wide_mlp = dw;
    if (bias) return gt_errf(err, errn, "%s: \"attention_bias\": true is not supported (Gemma has no biases)", j.file);
    if (moe) return gt_errf(err, errn, "%s: \"enable_moe_block\": true (Gemma 4 MoE, 26B-A4B) is not supported", j.file);
    json_t *bd = json_object_get(j.o, "use_bidirectional_attention");
    if (bd && json_is_string(bd) && !strcmp(json_string_value(bd), "all"))
        return gt_errf(err, errn, "%s: \"use_bidirectional_attention\": \"all\" is not supported (causal only)", j.file);
    json_t *act = json_object_get(j.o, "hidden_activation");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_pytorch_tanh")))
        return gt_errf(err, errn, "%s: \"hidden_activation\" must be gelu_pytorch_tanh", j.file);
    if (tied) *tied = tie && tie_text;
    int64_t L = c->num_layers;
    if (L < 1 || L > 100000 || c->hidden_dim < 1 || c->num_query_heads < 1)
        return gt_errf(err, errn, "%s: num_hidden_layers, hidden_size and num_attention_heads must be positive", j.file);

    /* layer types -> pattern P (layer i global iff i % P == P - 1); transformers' default: every
     * 6th layer global and the last layer global */
    bool *global = calloc((size_t)L, sizeof *global);
    if (!global) return gt_errf(err, errn, "%s: out of memory", j.file);
    json_t *lt = json_object_get(j.o, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || (int64_t)json_array_size(lt) != L) {
            free(global);
            return gt_errf(err, errn, "%s: \"layer_types\" must list num_hidden_layers (%lld) entries", j.file, (long long)L);
        }
        for (int64_t i = 0; i < L; i++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)i));
            if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention"))) {
                free(global);
                return gt_errf(err, errn, "%s: \"layer_types\"[%lld] must be \"sliding_attention\" or \"full_attention\"",
                            j.file, (long long)i);
            }
            global[i] = !strcmp(t, "full_attention");
        }
    } else {
        for (int64_t i = 0; i < L; i++) global[i] = (i + 1) % 6 == 0 || i == L - 1;
    }
    int64_t pat = 0;
    for (int64_t p = 1; p <= L && !pat; p++) {
        bool ok = true;
        for (int64_t i = 0; i < L && ok; i++) ok = global[i] == (i % p == p - 1);
        if (ok) pat = p;
    }
    if (!pat) {
        free(global);
        return gt_errf(err, errn, "%s: \"layer_types\" is not a repeating pattern of P-1 sliding layers and one full "
                    "layer: not supported", j.file);
    }
    c->sliding_pattern = (int)pat;
    c->sliding_window = window;

    /* global layers' head dim and kv heads */
    int64_t ghd = gh, gkv = keqv ? gk : 0;
    json_t *plc = json_object_get(j.o, "per_layer_config");
    if (plc && !json_is_null(plc)) {
        if (!json_is_object(plc)) {
            free(global);
            return gt_errf(err, errn, "%s: \"per_layer_config\" must be an object", j.file);
        }
        bool first = true;
        for (int64_t i = 0; i < L; i++) {
            char key[24];
            snprintf(key, sizeof key, "%lld", (long long)i);
            json_t *o = json_object_get(plc, key);
            if (!global[i]) {
                if (o && json_object_size(o)) {
                    free(global);
                    return gt_errf(err, errn, "%s: \"per_layer_config\" overrides sliding layer %lld: not supported",
                                j.file, (long long)i);
                }
                continue;
            }
            jcfg lj = {o ? o : json_object(), j.file, err, errn};
            int64_t h, k;
            int rc = j_int(&lj, "head_dim", c->head_dim, &h) || j_int(&lj, "num_key_value_heads", c->num_kv_heads, &k);
            if (!o) json_decref(lj.o);
            if (rc) {
                free(global);
                return -1;
            }
            if (!first && (h != ghd || k != gkv)) {
                free(global);
                return gt_errf(err, errn, "%s: \"per_layer_config\": full-attention layers differ in shape: not supported",
                            j.file);
            }
            ghd = h, gkv = k, first = false;
        }
        if (!keqv && gkv != c->num_kv_heads) {
            free(global);
            return gt_errf(err, errn, "%s: full-attention layers with their own kv head count need attention_k_eq_v",
                        j.file);
        }
        if (!keqv) gkv = 0;
    } else if (keqv && !gkv) {
        gkv = c->num_kv_heads;
    } else if (!keqv) {
        gkv = 0;
    }
    free(global);
    c->global_head_dim = ghd;
    c->num_global_kv_heads = keqv ? gkv : 0;

    /* RoPE */
    json_t *rp = json_object_get(j.o, "rope_parameters");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return gt_errf(err, errn, "%s: \"rope_parameters\" must be an object", j.file);
    c->rope_local_base = 10000.0, c->rope_global_base = 1000000.0, c->rope_global_partial = 0.25;
    if (rp && !json_is_null(rp)) {
        json_t *sl = json_object_get(rp, "sliding_attention"), *fu = json_object_get(rp, "full_attention");
        if (rope_set(&j, sl, "rope_parameters.sliding_attention", &c->rope_local_base, &c->rope_local_scale)) return -1;
        if (fu && !json_is_null(fu)) {
            if (!json_is_object(fu)) return gt_errf(err, errn, "%s: \"rope_parameters.full_attention\" must be an object", j.file);
            const char *t = json_string_value(json_object_get(fu, "rope_type"));
            jcfg fj = {fu, j.file, err, errn};
            if (j_num(&fj, "rope_theta", c->rope_global_base, c->rope_global_base, &c->rope_global_base)) return -1;
            if (t && !strcmp(t, "proportional")) {
                if (j_num(&fj, "partial_rotary_factor", 1.0, 1.0, &c->rope_global_partial) ||
                    j_num(&fj, "factor", 1.0, 1.0, &c->rope_global_scale))
                    return -1;
            } else if (!t || !strcmp(t, "default")) {
                c->rope_global_partial = 1.0;
                if (json_object_get(fu, "partial_rotary_factor"))
                    return gt_errf(err, errn, "%s: default RoPE with partial_rotary_factor on full-attention layers is not "
                                "supported (proportional is)", j.file);
            } else {
                return gt_errf(err, errn, "%s: rope_parameters.full_attention: rope_type \"%s\" is not supported "
                            "(proportional, default)", j.file, t);
            }
        }
    }
    if (gt_gemma_config_validate(c, err, errn)) {
        char m[512];
        snprintf(m, sizeof m, "%s", err);
        return gt_errf(err, errn, "%s: %s", j.file, m);
    }
    return 0;
}

/* The text model's fields of a config (j->o) for generation gen. */
static int text_config(jcfg *jp, int gen, const char *a, gt_gemma_config *c, bool *tied, bool tie) {
    if (gen == 4) return text_config4(jp, a, c, tied, tie);
    jcfg j = *jp;
    char *err = j.err;
    size_t errn = j.errn;
    const hf_defaults *d = &defaults_by_gen[gen];
    gt_gemma_config_defaults(c, gen);
    snprintf(c->name, sizeof c->name, "hf:%s", a);
    c->kerashub_query_scaling = false; /* HF scales by query_pre_attn_scalar as written */
    int64_t qpas, window;
    if (read_int_fields(&j, gen, c)) return -1;
    /* head_dim: null means hidden_size / heads in transformers' attention */
    json_t *hd = json_object_get(j.o, "head_dim");
    if (hd && json_is_null(hd)) {
        if (c->num_query_heads < 1) return gt_errf(err, errn, "%s: num_attention_heads must be >= 1", j.file);
        c->head_dim = c->hidden_dim / c->num_query_heads;
    } else if (j_int(&j, "head_dim", 256, &c->head_dim)) { /* every generation's class default */
        return -1;
    }
    if (c->num_query_heads < 1 || c->hidden_dim < 1 || c->head_dim < 1 || c->num_layers < 1 ||
        c->num_layers > 100000)
        return gt_errf(err, errn, "%s: hidden_size, num_attention_heads, head_dim and num_hidden_layers must be "
                    "positive (num_hidden_layers at most 100000)", j.file);

    /* activation: transformers 5 reads Gemma 1's hidden_act (its legacy "gelu" meaning the tanh
     * approximation), 4.x its hidden_activation; Gemma 2/3 read hidden_activation */
    static const char *const act_keys[2] = {"hidden_act", "hidden_activation"};
    for (int k = gen == 1 ? 0 : 1; k < 2; k++) {
        json_t *act = json_object_get(j.o, act_keys[k]);
        if (!act || json_is_null(act)) continue;
        const char *s = json_string_value(act);
        if (!s || (strcmp(s, "gelu_pytorch_tanh") && strcmp(s, "gelu_new") && !(gen == 1 && !strcmp(s, "gelu"))))
            return gt_errf(err, errn, "%s: \"%s\" %s is not supported (gelu_pytorch_tanh)", j.file, act_keys[k],
                        s ? s : "(not a string)");
    }
    bool bias = false, bidir = false, tie_text = true;
    if (j_bool(&j, "attention_bias", false, &bias) || j_bool(&j, "use_bidirectional_attention", false, &bidir) ||
        j_bool(&j, "tie_word_embeddings", true, &tie_text))
        return -1;
    if (bias) return gt_errf(err, errn, "%s: \"attention_bias\": true is not supported (Gemma has no biases)", j.file);
    if (bidir) return gt_errf(err, errn, "%s: \"use_bidirectional_attention\": true is not supported (causal only)", j.file);
    /* untied: accepted on load only when lm_head.weight is stored and equals the embedding */
    if (tied) *tied = tie && tie_text;

    /* query scaling */
    if (gen >= 2) {
        if (j_int(&j, "query_pre_attn_scalar", d->qpas, &qpas)) return -1;
        if (qpas == c->head_dim) c->query_head_dim_normalize = true;
        else if (qpas == c->hidden_dim / c->num_query_heads) c->query_head_dim_normalize = false;
        else
            return gt_errf(err, errn, "%s: \"query_pre_attn_scalar\" %lld is neither head_dim (%lld) nor hidden_size / "
                        "num_attention_heads (%lld): not supported", j.file, (long long)qpas,
                        (long long)c->head_dim, (long long)(c->hidden_dim / c->num_query_heads));
        double cap = 0;
        if (j_num(&j, "attn_logit_softcapping", d->attn_cap, 0, &cap)) return -1;
        c->attn_logit_softcap = cap;
        if (j_num(&j, "final_logit_softcapping", d->final_cap, 0, &cap)) return -1;
        c->final_logit_softcap = cap;
    } else {
        c->attn_logit_softcap = c->final_logit_softcap = 0;
    }

    /* local / global layers */
    int64_t L = c->num_layers;
    c->sliding_window = 0;
    c->sliding_pattern = 0;
    if (gen >= 2) {
        if (j_int(&j, "sliding_window", d->window, &window)) return -1;
        int64_t pat = d->pattern;
        if (gen == 3 && (j_int(&j, "sliding_window_pattern", pat, &pat) ||
                         j_int(&j, "_sliding_window_pattern", pat, &pat)))
            return -1;
        bool *local = calloc((size_t)L, sizeof *local);
        if (!local) return gt_errf(err, errn, "%s: out of memory", j.file);
        json_t *lt = json_object_get(j.o, "layer_types");
        int64_t n_local = 0;
        if (lt && !json_is_null(lt)) {
            if (!json_is_array(lt) || (int64_t)json_array_size(lt) != L) {
                free(local);
                return gt_errf(err, errn, "%s: \"layer_types\" must list num_hidden_layers (%lld) entries", j.file,
                            (long long)L);
            }
            for (int64_t i = 0; i < L; i++) {
                const char *s = json_string_value(json_array_get(lt, (size_t)i));
                if (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention"))) {
                    free(local);
                    return gt_errf(err, errn, "%s: \"layer_types\"[%lld] must be \"sliding_attention\" or "
                                "\"full_attention\"", j.file, (long long)i);
                }
                local[i] = !strcmp(s, "sliding_attention");
            }
        } else {
            for (int64_t i = 0; i < L; i++) local[i] = pat > 0 && (i + 1) % pat != 0;
        }
        for (int64_t i = 0; i < L; i++) n_local += local[i];
        if (n_local > 0) {
            if (window < 1) {
                free(local);
                return gt_errf(err, errn, "%s: sliding-attention layers need \"sliding_window\" >= 1", j.file);
            }
            /* the smallest P (the class's own first) with local[i] == (i % P < P - 1) */
            int64_t found = 0;
            for (int64_t p = 1; p <= L + 2 && !found; p++) {
                int64_t cand = p == 1 ? pat : p;
                if (cand < 2) continue;
                bool ok = true;
                for (int64_t i = 0; i < L && ok; i++) ok = local[i] == (i % cand < cand - 1);
                if (ok) found = cand;
            }
            if (!found) {
                free(local);
                return gt_errf(err, errn, "%s: \"layer_types\" is not a repeating pattern of P-1 sliding layers and "
                            "one full layer: not supported", j.file);
            }
            c->sliding_pattern = (int)found;
            c->sliding_window = window;
        }
        free(local);
    }

    /* RoPE */
    double gtheta = d->global_theta, ltheta = d->local_theta, gscale = 1, lscale = 1;
    json_t *rp = json_object_get(j.o, "rope_parameters");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return gt_errf(err, errn, "%s: \"rope_parameters\" must be an object", j.file);
    /* 4.x keys first; rope_parameters (5.x) wins where both are present, as in transformers */
    if (j_num(&j, "rope_theta", gtheta, gtheta, &gtheta)) return -1;
    if (gen == 3) {
        if (j_num(&j, "rope_local_base_freq", ltheta, ltheta, &ltheta)) return -1;
        if (rope_set(&j, json_object_get(j.o, "rope_scaling"), "rope_scaling", &gtheta, &gscale)) return -1;
        if (rp && !json_is_null(rp)) {
            if (rope_set(&j, json_object_get(rp, "full_attention"), "rope_parameters.full_attention", &gtheta, &gscale) ||
                rope_set(&j, json_object_get(rp, "sliding_attention"), "rope_parameters.sliding_attention", &ltheta,
                         &lscale))
                return -1;
        }
    } else {
        if (rope_set(&j, json_object_get(j.o, "rope_scaling"), "rope_scaling", &gtheta, &gscale)) return -1;
        if (rp && !json_is_null(rp) && rope_set(&j, rp, "rope_parameters", &gtheta, &gscale)) return -1;
        ltheta = gtheta;
        lscale = gscale;
    }
    if (!(gtheta > 0) || !(ltheta > 0)) return gt_errf(err, errn, "%s: RoPE theta must be > 0", j.file);
    c->rope_global_base = gtheta;
    c->rope_local_base = ltheta;
    c->rope_global_scale = gscale;
    c->rope_local_scale = lscale;
    if (gt_gemma_config_validate(c, err, errn)) {
        char m[512];
        snprintf(m, sizeof m, "%s", err);
        return gt_errf(err, errn, "%s: %s", j.file, m);
    }
    return 0;
}

static int load_config_file(const char *path, json_t **root, char **file, char *err, size_t errn) {
    struct stat sb;
    *root = NULL;
    *file = (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) ? gt_path_join(path, "config.json") : strdup(path);
    if (!*file) return gt_errf(err, errn, "%s: out of memory", path);
    json_error_t je;
    *root = json_load_file(*file, JSON_REJECT_DUPLICATES, &je);
    if (!*root) {
        gt_errf(err, errn, "%s: line %d: %s", *file, je.line, je.text);
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

static int check_expressible(const gt_gemma_config *c, char *err, size_t errn) {
    const char *why = NULL;
    int g = c->generation;
    if (g < 1 || g > 3) why = "only generations 1-3 are supported";
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

static json_t *config_json(const gt_gemma_config *c, bool bf16, int32_t bos, int32_t eos, int32_t pad) {
    static const char *const archs[4] = {NULL, "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM"};
    static const char *const types[4] = {NULL, "gemma", "gemma2", "gemma3_text"};
    int g = c->generation;
    json_t *o = json_object();
    json_t *a = json_array();
    json_array_append_new(a, json_string(archs[g]));
    json_object_set_new(o, "architectures", a);
    json_object_set_new(o, "model_type", json_string(types[g]));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_dim));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_dim));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_query_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, g == 1 ? "hidden_act" : "hidden_activation", json_string("gelu_pytorch_tanh"));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq_len > 0 ? c->max_seq_len : 8192));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_eps));
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
    if (g >= 2) {
        /* the scalar whose inverse square root gt_gemma_query_scale is */
        int64_t qpas = (c->query_head_dim_normalize || c->kerashub_query_scaling)
                           ? c->head_dim : c->hidden_dim / c->num_query_heads;
        json_object_set_new(o, "query_pre_attn_scalar", json_integer(qpas));
        json_object_set_new(o, "attn_logit_softcapping",
                            c->attn_logit_softcap > 0 ? json_real(c->attn_logit_softcap) : json_null());
        json_object_set_new(o, "final_logit_softcapping",
                            c->final_logit_softcap > 0 ? json_real(c->final_logit_softcap) : json_null());
        bool any_local = c->sliding_pattern > 0 && c->sliding_window > 0;
        json_object_set_new(o, "sliding_window", any_local ? json_integer(c->sliding_window) : json_null());
        json_t *lt = json_array();
        for (int64_t i = 0; i < c->num_layers; i++)
            json_array_append_new(lt, json_string(gt_gemma_layer_is_local(c, i) ? "sliding_attention" : "full_attention"));
        json_object_set_new(o, "layer_types", lt);
        json_object_set_new(o, "use_bidirectional_attention", json_false());
        if (g == 2) json_object_set_new(o, "cache_implementation", json_string("hybrid"));
    }
    if (g == 3) {
        json_t *rp = json_object();
        json_object_set_new(rp, "full_attention", rope_json(c->rope_global_base, c->rope_global_scale));
        json_object_set_new(rp, "sliding_attention", rope_json(c->rope_local_base, c->rope_local_scale));
        json_object_set_new(o, "rope_parameters", rp);
        /* 4.x */
        json_object_set_new(o, "rope_theta", json_real(c->rope_global_base));
        json_object_set_new(o, "rope_local_base_freq", json_real(c->rope_local_base));
        if (c->rope_global_scale != 1) {
            json_t *rs = json_object();
            json_object_set_new(rs, "rope_type", json_string("linear"));
            json_object_set_new(rs, "factor", json_real(c->rope_global_scale));
            json_object_set_new(o, "rope_scaling", rs);
        } else {
            json_object_set_new(o, "rope_scaling", json_null());
        }
        if (c->sliding_pattern > 0) json_object_set_new(o, "sliding_window_pattern", json_integer(c->sliding_pattern));
    } else {
        json_object_set_new(o, "rope_parameters", rope_json(c->rope_global_base, c->rope_global_scale));
        json_object_set_new(o, "rope_theta", json_real(c->rope_global_base)); /* 4.x */
        if (c->rope_global_scale != 1) {
            json_t *rs = json_object();
            json_object_set_new(rs, "rope_type", json_string("linear"));
            json_object_set_new(rs, "factor", json_real(c->rope_global_scale));
            json_object_set_new(o, "rope_scaling", rs);
        }
    }
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

int gt_hf_gemma_save(const gt_gemma *m, const char *dir, const gt_hf_save_opts *opts, char *err,
                     size_t errn) {
    gt_hf_save_opts o = opts ? *opts : (gt_hf_save_opts){0};
    const gt_gemma_config *c = &m->cfg;
    if (m->data16) /* the writer reads fp32 parameters */
        return gt_errf(err, errn, "hf save: %s: the model is stored as bf16: widen it first (gt_gemma_set_frozen_dtype)", dir);
    if (check_expressible(c, err, errn)) return -1;
    gt_tokenizer *tok = NULL;
    int32_t bos = 2, eos = 1, pad = 0, eot = -1; /* Gemma's ids when no tokenizer is given */
    if (o.tokenizer) {
        if (gt_tok_load(o.tokenizer, &tok, err, errn)) return -1;
        bos = gt_tok_bos(tok);
        eos = gt_tok_eos(tok);
        pad = gt_tok_pad(tok);
        eot = gt_tok_piece_id(tok, "<end_of_turn>");
        /* HF tokenizers may be longer than the embedding (Gemma 3's <image_soft_token> on text
         * models); the ids the model is told about must fit it */
        if (bos >= c->vocab_size || eos >= c->vocab_size || pad >= c->vocab_size || eot >= c->vocab_size) {
            int rc = gt_errf(err, errn, "hf save: tokenizer %s: special ids (bos %d, eos %d, pad %d, <end_of_turn> %d) "
                          "do not fit the model's vocab_size %lld", o.tokenizer, bos, eos, pad, eot,
                          (long long)c->vocab_size);
            gt_tok_free(tok);
            return rc;
        }
    }
    if (make_dir(dir, err, errn)) {
        gt_tok_free(tok);
        return -1;
    }
    /* tensors under their HF names */
    gt_st_entry *e = calloc((size_t)m->n_params, sizeof *e);
    char (*names)[96] = calloc((size_t)m->n_params, sizeof *names);
    int rc = 0;
    if (!e || !names) {
        rc = gt_errf(err, errn, "hf save: out of memory");
        goto done;
    }
    size_t n = 0;
    for (int k = 0; k < m->n_params && !rc; k++) {
        const gt_gemma_param *p = &m->params[k];
        if (gt_gemma_param_hf_name(p->row, c, p->layer, "model.", names[n], sizeof names[n])) {
            rc = gt_errf(err, errn, "hf save: %s has no Hugging Face name", p->name);
            break;
        }
        e[n].name = names[n];
        e[n].data = p->t->data;
        e[n].ndim = p->t->ndim;
        for (int d = 0; d < p->t->ndim; d++) e[n].shape[d] = p->t->shape[d];
        n++;
    }
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
    if (rc) goto done;
    json_t *cj = config_json(c, o.bf16, bos, eos, pad);
    rc = write_json(dir, "config.json", cj, err, errn);
    json_decref(cj);
    if (rc) goto done;
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
    if (c->generation == 2) json_object_set_new(gj, "cache_implementation", json_string("hybrid"));
    rc = write_json(dir, "generation_config.json", gj, err, errn);
    json_decref(gj);
    if (!rc && tok) rc = save_tokenizer(o.tokenizer, tok, dir, err, errn);
done:
    free(e);
    free(names);
    gt_tok_free(tok);
    return rc;
}
