#include "models/gemma_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void gt_gemma_config_defaults(gt_gemma_config *cfg, int generation) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->name, sizeof cfg->name, "custom");
    cfg->generation = generation;
    cfg->rms_eps = 1e-6;
    cfg->norm_add_one = generation <= 3;
    cfg->use_post_attention_norm = generation >= 2;
    cfg->use_post_ffw_norm = generation >= 2;
    cfg->use_qk_norm = generation >= 3;
    cfg->attn_logit_softcap = generation == 2 ? 50.0 : 0.0;
    cfg->final_logit_softcap = (generation == 2 || generation == 4) ? 30.0 : 0.0;
    cfg->sliding_pattern = generation == 2 ? 2 : generation >= 3 ? 6 : 0;
    cfg->sliding_window = generation == 2 ? 4096 : generation >= 3 ? 512 : 0;
    cfg->rope_local_base = 10000.0;
    cfg->rope_global_base = generation >= 3 ? 1000000.0 : 10000.0;
    cfg->rope_local_scale = 1.0;
    cfg->rope_global_scale = 1.0;
    cfg->query_head_dim_normalize = true;
    cfg->kerashub_query_scaling = true;
    cfg->max_seq_len = generation >= 4 ? 131072 : generation >= 3 ? 32768 : 8192;
    cfg->rope_global_partial = 1.0;
    if (generation == 4) cfg->experts_per_token = 8; /* KerasHub's default, kept by dense configs too */
}

typedef struct {
    const char *name;
    int gen;
    int64_t v, l, d, f, n, k, h, window;
    double global_scale;
    bool qhdn;
    int64_t ctx;
} preset_row;

/* Numbers from KerasHub/HF converters and gemma.cpp configs, verified by parameter count
 * (tests/test_gemma_config.c checks the published counts). */
static const preset_row presets[] = {
    {"gemma_2b_en", 1, 256000, 18, 2048, 16384, 8, 1, 256, 0, 1, true, 8192},
    {"gemma_instruct_2b_en", 1, 256000, 18, 2048, 16384, 8, 1, 256, 0, 1, true, 8192},
    {"gemma_1.1_instruct_2b_en", 1, 256000, 18, 2048, 16384, 8, 1, 256, 0, 1, true, 8192},
    {"gemma_7b_en", 1, 256000, 28, 3072, 24576, 16, 16, 256, 0, 1, true, 8192},
    {"gemma_instruct_7b_en", 1, 256000, 28, 3072, 24576, 16, 16, 256, 0, 1, true, 8192},
    {"gemma_1.1_instruct_7b_en", 1, 256000, 28, 3072, 24576, 16, 16, 256, 0, 1, true, 8192},
    {"gemma2_2b_en", 2, 256000, 26, 2304, 9216, 8, 4, 256, 4096, 1, true, 8192},
    {"gemma2_instruct_2b_en", 2, 256000, 26, 2304, 9216, 8, 4, 256, 4096, 1, true, 8192},
    {"gemma2_9b_en", 2, 256000, 42, 3584, 14336, 16, 8, 256, 4096, 1, true, 8192},
    {"gemma2_instruct_9b_en", 2, 256000, 42, 3584, 14336, 16, 8, 256, 4096, 1, true, 8192},
    {"gemma2_27b_en", 2, 256000, 46, 4608, 36864, 32, 16, 128, 4096, 1, false, 8192},
    {"gemma2_instruct_27b_en", 2, 256000, 46, 4608, 36864, 32, 16, 128, 4096, 1, false, 8192},
    {"gemma3_270m", 3, 262144, 18, 640, 2048, 4, 1, 256, 512, 1, true, 32768},
    {"gemma3_instruct_270m", 3, 262144, 18, 640, 2048, 4, 1, 256, 512, 1, true, 32768},
    {"gemma3_1b", 3, 262144, 26, 1152, 6912, 4, 1, 256, 512, 1, true, 32768},
    {"gemma3_instruct_1b", 3, 262144, 26, 1152, 6912, 4, 1, 256, 512, 1, true, 32768},
    {"gemma3_4b_text", 3, 262144, 34, 2560, 10240, 8, 4, 256, 1024, 8, true, 131072},
    {"gemma3_instruct_4b_text", 3, 262144, 34, 2560, 10240, 8, 4, 256, 1024, 8, true, 131072},
    {"gemma3_12b_text", 3, 262144, 48, 3840, 15360, 16, 8, 256, 1024, 8, true, 131072},
    {"gemma3_instruct_12b_text", 3, 262144, 48, 3840, 15360, 16, 8, 256, 1024, 8, true, 131072},
    {"gemma3_27b_text", 3, 262144, 62, 5376, 21504, 32, 16, 128, 1024, 8, false, 131072},
    {"gemma3_instruct_27b_text", 3, 262144, 62, 5376, 21504, 32, 16, 128, 1024, 8, false, 131072},
};

#define N_PRESETS (sizeof presets / sizeof presets[0])

/* Gemma 4 dense text decoders: HF convert_gemma4_weights.py _VARIANTS (gemma-4-e2b, -e4b, -31b)
 * plus Gemma4TextConfig defaults (head_dim 256, global_head_dim 512, vocab and PLE vocab 262144,
 * global RoPE base 1e6 with partial factor 0.25, local base 1e4), as KerasHub's converter maps
 * them (convert_gemma4.py). The 26B-A4B adds the MoE block: 128 experts of width 704, top 8
 * (docs/reference/gemma-architecture.md, KerasHub's converter keys). */
typedef struct {
    const char *name;
    int64_t l, d, f, n, k, window, pattern, global_kv, kv_shared, ple;
    bool double_wide;
    int64_t ctx;
    int64_t experts, expert_dim, top_k; /* MoE; 0: dense */
} preset4_row;

static const preset4_row presets4[] = {
    {"gemma4_2b", 35, 1536, 6144, 8, 1, 512, 5, 0, 20, 256, true, 131072, 0, 0, 0},
    {"gemma4_instruct_2b", 35, 1536, 6144, 8, 1, 512, 5, 0, 20, 256, true, 131072, 0, 0, 0},
    {"gemma4_4b", 42, 2560, 10240, 8, 2, 512, 6, 0, 18, 256, false, 131072, 0, 0, 0},
    {"gemma4_instruct_4b", 42, 2560, 10240, 8, 2, 512, 6, 0, 18, 256, false, 131072, 0, 0, 0},
    {"gemma4_26b_a4b", 30, 2816, 2112, 16, 8, 1024, 6, 2, 0, 0, false, 262144, 128, 704, 8},
    {"gemma4_instruct_26b_a4b", 30, 2816, 2112, 16, 8, 1024, 6, 2, 0, 0, false, 262144, 128, 704, 8},
    {"gemma4_31b", 60, 5376, 21504, 32, 16, 1024, 6, 4, 0, 0, false, 262144, 0, 0, 0},
    {"gemma4_instruct_31b", 60, 5376, 21504, 32, 16, 1024, 6, 4, 0, 0, false, 262144, 0, 0, 0},
};

#define N_PRESETS4 (sizeof presets4 / sizeof presets4[0])

/* KerasHub's multimodal Gemma 3 presets: the text preset's decoder (vocabulary 262144, as
 * KerasHub builds them) plus the SigLIP encoder. */
static const struct {
    const char *name, *text;
} presets_mm[] = {
    {"gemma3_4b", "gemma3_4b_text"},   {"gemma3_instruct_4b", "gemma3_instruct_4b_text"},
    {"gemma3_12b", "gemma3_12b_text"}, {"gemma3_instruct_12b", "gemma3_instruct_12b_text"},
    {"gemma3_27b", "gemma3_27b_text"}, {"gemma3_instruct_27b", "gemma3_instruct_27b_text"},
};
#define N_PRESETS_MM (sizeof presets_mm / sizeof presets_mm[0])

const char *const *gt_gemma_preset_names(void) {
    static const char *names[N_PRESETS + N_PRESETS4 + N_PRESETS_MM + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_PRESETS; i++) names[n++] = presets[i].name;
    for (size_t i = 0; i < N_PRESETS_MM; i++) names[n++] = presets_mm[i].name;
    for (size_t i = 0; i < N_PRESETS4; i++) names[n++] = presets4[i].name;
    names[n] = NULL;
    return names;
}

int gt_gemma_preset(const char *name, gt_gemma_config *cfg, char *err, size_t errn) {
    for (size_t i = 0; i < N_PRESETS_MM; i++) {
        if (strcmp(presets_mm[i].name, name) != 0) continue;
        if (gt_gemma_preset(presets_mm[i].text, cfg, err, errn)) return -1;
        snprintf(cfg->name, sizeof cfg->name, "%s", name);
        cfg->vision = gt_vision_gemma3_siglip(cfg->hidden_dim);
        return 0;
    }
    for (size_t i = 0; i < N_PRESETS; i++) {
        const preset_row *p = &presets[i];
        if (strcmp(p->name, name) != 0) continue;
        gt_gemma_config_defaults(cfg, p->gen);
        snprintf(cfg->name, sizeof cfg->name, "%s", p->name);
        cfg->vocab_size = p->v;
        cfg->num_layers = p->l;
        cfg->hidden_dim = p->d;
        cfg->intermediate_dim = p->f;
        cfg->num_query_heads = p->n;
        cfg->num_kv_heads = p->k;
        cfg->head_dim = p->h;
        cfg->sliding_window = p->window;
        cfg->rope_global_scale = p->global_scale;
        cfg->query_head_dim_normalize = p->qhdn;
        cfg->max_seq_len = p->ctx;
        return 0;
    }
    for (size_t i = 0; i < N_PRESETS4; i++) {
        const preset4_row *p = &presets4[i];
        if (strcmp(p->name, name) != 0) continue;
        gt_gemma_config_defaults(cfg, 4);
        snprintf(cfg->name, sizeof cfg->name, "%s", p->name);
        cfg->vocab_size = 262144;
        cfg->num_layers = p->l;
        cfg->hidden_dim = p->d;
        cfg->intermediate_dim = p->f;
        cfg->num_query_heads = p->n;
        cfg->num_kv_heads = p->k;
        cfg->head_dim = 256;
        cfg->global_head_dim = 512;
        cfg->num_global_kv_heads = p->global_kv;
        cfg->sliding_window = p->window;
        cfg->sliding_pattern = (int)p->pattern;
        cfg->rope_global_partial = 0.25;
        cfg->num_kv_shared_layers = p->kv_shared;
        cfg->double_wide_mlp = p->double_wide;
        cfg->per_layer_input_dim = p->ple;
        cfg->per_layer_vocab_size = p->ple ? 262144 : 0;
        cfg->max_seq_len = p->ctx;
        cfg->moe = p->experts > 0;
        cfg->num_experts = p->experts;
        cfg->expert_dim = p->expert_dim;
        if (p->experts) cfg->experts_per_token = p->top_k;
        return 0;
    }
    size_t off = (size_t)snprintf(err, errn, "unknown model preset '%s'; known:", name);
    for (const char *const *n = gt_gemma_preset_names(); *n && off < errn; n++)
        off += (size_t)snprintf(err + off, errn - off, " %s", *n);
    return -1;
}

int gt_gemma_config_validate(const gt_gemma_config *c, char *err, size_t errn) {
#define BAD(...) return snprintf(err, errn, __VA_ARGS__), -1
    if (c->generation < 1 || c->generation > 4)
        BAD("model.generation: %d is not supported (1, 2, 3 or 4)", c->generation);
    if (c->vocab_size < 1 || c->vocab_size > INT32_MAX) BAD("model.vocab_size: %lld out of range", (long long)c->vocab_size);
    /* Upper bounds far past any Gemma (62 layers, width 5376, MLP 21504, 32 heads of 256, 128
     * experts), so that a corrupted config is refused instead of walked: num_layers 1.1e14 in a
     * preset's config.json spun in the parameter walk for minutes. */
    const int64_t max_layers = 1024, max_width = (int64_t)1 << 20, max_heads = 4096;
    if (c->num_layers < 1 || c->num_layers > max_layers)
        BAD("model.num_layers: must be in [1, %lld], got %lld", (long long)max_layers, (long long)c->num_layers);
    if (c->hidden_dim < 1 || c->hidden_dim > max_width)
        BAD("model.hidden_dim: must be in [1, %lld], got %lld", (long long)max_width, (long long)c->hidden_dim);
    if (c->intermediate_dim < 1 || c->intermediate_dim > max_width)
        BAD("model.intermediate_dim: must be in [1, %lld], got %lld", (long long)max_width, (long long)c->intermediate_dim);
    if (c->num_query_heads < 1 || c->num_kv_heads < 1 || c->num_query_heads > max_heads || c->num_kv_heads > max_heads)
        BAD("model: head counts must be in [1, %lld] (query %lld, kv %lld)", (long long)max_heads,
            (long long)c->num_query_heads, (long long)c->num_kv_heads);
    if (c->head_dim > max_heads || c->global_head_dim > max_heads || c->expert_dim > max_width ||
        c->num_experts > max_heads || c->per_layer_input_dim > max_width)
        BAD("model: head_dim %lld, global_head_dim %lld (at most %lld), expert_intermediate_dim %lld, "
            "hidden_size_per_layer_input %lld (at most %lld) or num_experts %lld (at most %lld) out of range",
            (long long)c->head_dim, (long long)c->global_head_dim, (long long)max_heads, (long long)c->expert_dim,
            (long long)c->per_layer_input_dim, (long long)max_width, (long long)c->num_experts, (long long)max_heads);
    if (c->num_query_heads % c->num_kv_heads)
        BAD("model.num_query_heads (%lld) must be a multiple of num_kv_heads (%lld)",
            (long long)c->num_query_heads, (long long)c->num_kv_heads);
    if (c->head_dim < 2 || c->head_dim % 2) BAD("model.head_dim: must be even and >= 2, got %lld", (long long)c->head_dim);
    if (!(c->rms_eps > 0)) BAD("model.layer_norm_epsilon: must be > 0");
    if (c->attn_logit_softcap < 0 || c->final_logit_softcap < 0) BAD("model: soft-caps must be >= 0");
    if (c->sliding_window < 0) BAD("model.sliding_window_size: must be >= 0");
    if (c->sliding_pattern < 0) BAD("model.sliding_window_pattern: must be >= 0");
    if (c->sliding_pattern > 0 && c->sliding_window == 0)
        BAD("model: a sliding-window pattern needs sliding_window_size > 0");
    if (!(c->rope_local_base > 0) || !(c->rope_global_base > 0)) BAD("model: RoPE bases must be > 0");
    if (!(c->rope_local_scale > 0) || !(c->rope_global_scale > 0)) BAD("model: RoPE scaling factors must be > 0");
    if (c->vision.num_layers != 0) {
        if (c->generation != 3) BAD("model: a vision encoder is Gemma 3 only (generation %d)", c->generation);
        if (gt_vision_config_check(&c->vision, err, errn)) return -1;
        if (c->vision.output_dim != c->hidden_dim)
            BAD("model: the vision encoder's output_dim %lld must equal hidden_dim %lld",
                (long long)c->vision.output_dim, (long long)c->hidden_dim);
    }
    if (c->generation < 4) {
        if (c->global_head_dim || c->num_global_kv_heads || c->num_kv_shared_layers || c->double_wide_mlp ||
            c->per_layer_input_dim || c->per_layer_vocab_size || c->rope_global_partial != 1.0 || c->moe)
            BAD("model: global_head_dim, num_global_key_value_heads, num_kv_shared_layers, "
                "use_double_wide_mlp, hidden_size_per_layer_input, partial RoPE and MoE are Gemma 4 only "
                "(generation %d)", c->generation);
        return 0;
    }
    if (c->norm_add_one || !c->use_post_attention_norm || !c->use_post_ffw_norm || !c->use_qk_norm)
        BAD("model: Gemma 4 norms are fixed (w, not 1 + w; post-attention, post-ffw and q/k norms always on)");
    if (c->sliding_pattern < 1) BAD("model.sliding_window_pattern: Gemma 4 needs >= 1, got %d", c->sliding_pattern);
    if (c->global_head_dim < 0 || c->global_head_dim % 2)
        BAD("model.global_head_dim: must be even and >= 0, got %lld", (long long)c->global_head_dim);
    if (c->num_global_kv_heads < 0 || (c->num_global_kv_heads && c->num_query_heads % c->num_global_kv_heads))
        BAD("model.num_query_heads (%lld) must be a multiple of num_global_key_value_heads (%lld)",
            (long long)c->num_query_heads, (long long)c->num_global_kv_heads);
    if (!(c->rope_global_partial > 0 && c->rope_global_partial <= 1))
        BAD("model.global_rope_partial_rotary_factor: must be in (0, 1], got %g", c->rope_global_partial);
    if (c->per_layer_input_dim < 0 || c->per_layer_vocab_size < 0 || c->per_layer_vocab_size > INT32_MAX)
        BAD("model: hidden_size_per_layer_input and vocab_size_per_layer_input must be >= 0");
    if (c->num_kv_shared_layers < 0 || c->num_kv_shared_layers >= c->num_layers)
        BAD("model.num_kv_shared_layers: must be in [0, num_layers - 1], got %lld",
            (long long)c->num_kv_shared_layers);
    if (!c->moe && (c->num_experts || c->expert_dim)) /* e.g. a file with expert keys but no MoE flag */
        BAD("model: num_experts / expert_intermediate_dim are set (%lld, %lld) but enable_moe_block is false",
            (long long)c->num_experts, (long long)c->expert_dim);
    if (c->moe && (c->num_experts < 1 || c->expert_dim < 1))
        BAD("model: enable_moe_block needs num_experts >= 1 and expert_intermediate_dim >= 1 (got %lld, %lld)",
            (long long)c->num_experts, (long long)c->expert_dim);
    if (c->moe && (c->experts_per_token < 1 || c->experts_per_token > c->num_experts))
        BAD("model.num_experts_per_token: must be in [1, num_experts = %lld], got %lld", (long long)c->num_experts,
            (long long)c->experts_per_token);
    for (int64_t i = c->num_layers - c->num_kv_shared_layers; i < c->num_layers; i++)
        if (gt_gemma_kv_source(c, i) < 0)
            BAD("model.num_kv_shared_layers: layer %lld (%s) has no earlier unshared layer of its type",
                (long long)i, gt_gemma_layer_is_local(c, i) ? "local" : "global");
    return 0;
#undef BAD
}

bool gt_gemma_layer_is_local(const gt_gemma_config *c, int64_t layer) {
    return c->sliding_pattern > 0 && c->sliding_window > 0 &&
           layer % c->sliding_pattern < c->sliding_pattern - 1;
}

static bool global4(const gt_gemma_config *c, int64_t layer) {
    return c->generation == 4 && !gt_gemma_layer_is_local(c, layer);
}

int64_t gt_gemma_layer_head_dim(const gt_gemma_config *c, int64_t layer) {
    return global4(c, layer) && c->global_head_dim > 0 ? c->global_head_dim : c->head_dim;
}

bool gt_gemma_layer_k_eq_v(const gt_gemma_config *c, int64_t layer) {
    return global4(c, layer) && c->num_global_kv_heads > 0;
}

int64_t gt_gemma_layer_kv_heads(const gt_gemma_config *c, int64_t layer) {
    return gt_gemma_layer_k_eq_v(c, layer) ? c->num_global_kv_heads : c->num_kv_heads;
}

int64_t gt_gemma_kv_source(const gt_gemma_config *c, int64_t layer) {
    int64_t first = c->num_layers - c->num_kv_shared_layers;
    if (c->generation != 4 || c->num_kv_shared_layers <= 0 || layer < first) return -1;
    bool local = gt_gemma_layer_is_local(c, layer);
    for (int64_t k = first - 1; k >= 0; k--)
        if (gt_gemma_layer_is_local(c, k) == local) return k;
    return -1;
}

int64_t gt_gemma_layer_ffw_dim(const gt_gemma_config *c, int64_t layer) {
    return c->double_wide_mlp && gt_gemma_kv_source(c, layer) >= 0 ? 2 * c->intermediate_dim
                                                                  : c->intermediate_dim;
}

int64_t gt_gemma_layer_rotary_dims(const gt_gemma_config *c, int64_t layer) {
    int64_t h = gt_gemma_layer_head_dim(c, layer);
    if (!global4(c, layer)) return h;
    int64_t r = (int64_t)(c->rope_global_partial * (double)h);
    r -= r % 2;
    return r < 2 ? 2 : r;
}

double gt_gemma_query_scale(const gt_gemma_config *c) {
    if (c->generation == 4) return 1.0;
    if (c->query_head_dim_normalize || c->kerashub_query_scaling) return 1.0 / sqrt((double)c->head_dim);
    return 1.0 / sqrt((double)(c->hidden_dim / c->num_query_heads));
}

/* KerasHub's count_params: every variable, the non-trainable layer_scalar included. */
static int64_t param_count4(const gt_gemma_config *c) {
    int64_t d = c->hidden_dim, n = c->num_query_heads, L = c->num_layers, p = c->per_layer_input_dim;
    int64_t total = c->vocab_size * d + d;
    if (p > 0) {
        int64_t vp = c->per_layer_vocab_size ? c->per_layer_vocab_size : c->vocab_size;
        total += vp * L * p + d * L * p + p;
    }
    for (int64_t i = 0; i < L; i++) {
        int64_t h = gt_gemma_layer_head_dim(c, i), k = gt_gemma_layer_kv_heads(c, i);
        int64_t per = 4 * d + 2 * n * d * h + h + 3 * d * gt_gemma_layer_ffw_dim(c, i) + 1;
        if (gt_gemma_kv_source(c, i) < 0) per += (gt_gemma_layer_k_eq_v(c, i) ? 1 : 2) * k * d * h + h;
        if (p > 0) per += 2 * d * p + d;
        /* MoE: 3 norms, router scale and kernel, gate/up/down per expert, per_expert_scale */
        if (c->moe) per += 4 * d + c->num_experts * (d + 3 * d * c->expert_dim + 1);
        total += per;
    }
    return total;
}

int64_t gt_gemma_total_param_count(const gt_gemma_config *c) {
    return gt_gemma_param_count(c) + (c->vision.num_layers > 0 ? gt_vision_param_count(&c->vision) : 0);
}

int64_t gt_gemma_param_count(const gt_gemma_config *c) {
    if (c->generation == 4) return param_count4(c);
    int64_t d = c->hidden_dim, h = c->head_dim, n = c->num_query_heads, k = c->num_kv_heads;
    int64_t per = 2 * d                            /* pre-attention, pre-ffw norms */
                  + 2 * n * d * h + 2 * k * d * h  /* q, o; k, v */
                  + 3 * d * c->intermediate_dim;   /* gate, up, down */
    if (c->use_post_attention_norm) per += d;
    if (c->use_post_ffw_norm) per += d;
    if (c->use_qk_norm) per += 2 * h;
    return c->vocab_size * d + c->num_layers * per + d;
}
