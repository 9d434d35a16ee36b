#include "train/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "models/gemma_config.h"
#include "models/gemma_fields.h"

/* T_WORD: one of names, or else a path (checkpoint.resume: none | latest | PATH) */
/* T_ARCH: model.architecture, a mapping of gt_gemma_fields() names to values */
typedef enum { T_STR, T_INT, T_NUM, T_BOOL, T_ENUM, T_LIST, T_WORD, T_ARCH } ftype;

typedef struct row {
    const char *path; /* dotted key */
    ftype type;
    size_t off, size; /* field; for lists the size of one item */
    const char *dflt; /* default as YAML text; lists: "[a, b]" */
    const char *range; /* numbers: "[lo, hi]", "(lo, hi)", "[0, inf)" */
    const char *const *names; /* enums, T_WORD and enum lists: the values in enum order, NULL-ended;
                                 a list without names holds free strings */
    size_t aux_off, aux_size; /* lists: offset of the int item count; T_WORD: the path field */
    int (*valid)(const char *v, char *msg, size_t n); /* extra check of a string value */
    const char *doc;
} row;

/* The one name table of each enum: parsing, writing and --keys read it. Indexed by the value. */
const char *const gt_cfg_dtype_names[] = {[GT_DTYPE_FLOAT32] = "float32", NULL};
const char *const gt_cfg_compute_dtype_names[] = {[GT_COMPUTE_FLOAT32] = "float32",
                                                  [GT_COMPUTE_BFLOAT16] = "bfloat16", NULL};
const char *const gt_cfg_format_names[] = {[GT_DS_AUTO] = "auto", [GT_DS_PROMPT_RESPONSE] = "prompt_response",
                                           [GT_DS_TEXT] = "text", [GT_DS_CHAT] = "chat", NULL};
const char *const gt_cfg_template_names[] = {[GT_TEMPLATE_NONE] = "none",
                                             [GT_TEMPLATE_GEMMA_CHAT] = "gemma_chat",
                                             [GT_TEMPLATE_GEMMA4_CHAT] = "gemma4_chat",
                                             [GT_TEMPLATE_AUTO] = "auto", NULL};
const char *const gt_cfg_bad_line_names[] = {[GT_BAD_LINE_FAIL] = "fail", [GT_BAD_LINE_SKIP] = "skip", NULL};
const char *const gt_cfg_optimizer_names[] = {[GT_OPT_ADAMW] = "adamw", [GT_OPT_ADAM] = "adam",
                                              [GT_OPT_SGD] = "sgd", NULL};
const char *const gt_cfg_schedule_names[] = {[GT_SCHED_CONSTANT] = "constant", [GT_SCHED_LINEAR] = "linear",
                                             [GT_SCHED_COSINE] = "cosine", NULL};
const char *const gt_cfg_loss_norm_names[] = {[GT_NORM_TOKENS] = "tokens", [GT_NORM_KERAS] = "keras", NULL};
const char *const gt_cfg_nonfinite_names[] = {[GT_NONFINITE_STOP] = "stop", [GT_NONFINITE_SKIP] = "skip",
                                              NULL};
const char *const gt_cfg_progress_names[] = {[GT_PROGRESS_AUTO] = "auto", [GT_PROGRESS_BAR] = "bar",
                                             [GT_PROGRESS_PLAIN] = "plain", NULL};
/* GT_RESUME_PATH has no name: any other value is the path */
const char *const gt_cfg_resume_names[] = {[GT_RESUME_NONE] = "none", [GT_RESUME_LATEST] = "latest", NULL};
const char *const gt_cfg_vision_train_names[] = {[GT_VISION_FROZEN] = "frozen", [GT_VISION_FULL] = "full",
                                                 [GT_VISION_LORA] = "lora", NULL};

/* Enum fields are stored and read as int (the setters write through the schema's offsets). */
_Static_assert(sizeof(gt_model_dtype) == sizeof(int) && sizeof(gt_compute_dtype) == sizeof(int) &&
                   sizeof(gt_frozen_dtype) == sizeof(int) &&
                   sizeof(gt_ds_format) == sizeof(int) && sizeof(gt_template) == sizeof(int) &&
                   sizeof(gt_on_bad_line) == sizeof(int) && sizeof(gt_lora_target) == sizeof(int) &&
                   sizeof(gt_opt_kind) == sizeof(int) && sizeof(gt_sched_kind) == sizeof(int) &&
                   sizeof(gt_loss_norm) == sizeof(int) && sizeof(gt_on_nonfinite) == sizeof(int) &&
                   sizeof(gt_vision_train) == sizeof(int) &&
                   sizeof(gt_resume) == sizeof(int) && sizeof(gt_progress) == sizeof(int),
               "config enums are int-sized");

static int valid_preset(const char *v, char *msg, size_t n);

#define FLD(f) offsetof(gt_config, f), sizeof(((gt_config *)0)->f)
#define STR(k, f, d, doc) {k, T_STR, FLD(f), d, NULL, NULL, 0, 0, NULL, doc}
#define ENUM(k, f, d, names, doc) {k, T_ENUM, FLD(f), d, NULL, names, 0, 0, NULL, doc}
#define WORD(k, f, pathf, d, names, doc) {k, T_WORD, FLD(f), d, NULL, names, FLD(pathf), NULL, doc}
#define BOOL(k, f, d, doc) {k, T_BOOL, FLD(f), d, NULL, NULL, 0, 0, NULL, doc}
#define INT(k, f, d, range, doc) {k, T_INT, FLD(f), d, range, NULL, 0, 0, NULL, doc}
#define NUM(k, f, d, range, doc) {k, T_NUM, FLD(f), d, range, NULL, 0, 0, NULL, doc}
#define LIST(k, f, n, d, names, doc) \
    {k, T_LIST, offsetof(gt_config, f), sizeof(((gt_config *)0)->f[0]), d, NULL, names, \
     offsetof(gt_config, n), 0, NULL, doc}

/* The schema. Rows of one section stay together (the writer opens a section when the prefix
 * changes). Defaults follow KerasHub's Gemma LoRA fine-tuning tutorial: LoRA rank 4, sequence
 * length 256, batch size 1, one epoch, AdamW with learning rate 5e-5 and weight decay 0.01
 * excluding bias and scale, Keras' betas and epsilon. */
static const row schema[] = {
    {"model.preset", T_STR, FLD(model.preset), "", NULL, NULL, 0, 0, valid_preset,
     "KerasHub preset name (gemma3_270m, ...): the shapes; empty: model.weights or a custom model"},
    STR("model.weights", model.weights, "", "model to start from: a GGUF file, a KerasHub preset or a Hugging Face directory; empty: random init"),
    ENUM("model.dtype", model.dtype, "float32", gt_cfg_dtype_names,
         "parameter type and, but for model.compute_dtype, compute type"),
    ENUM("model.frozen_dtype", model.frozen_dtype, "fp32", gt_frozen_dtype_names,
         "storage of the frozen base weights under LoRA; bf16 halves their memory (values rounded "
         "once to bfloat16, arithmetic fp32 unless model.compute_dtype); q8_0 keeps GGUF Q8_0 blocks, "
         "8.5 bits a weight (a Q8_0 GGUF as stored, other weights quantised a tensor slice at a time; "
         "matrix widths multiples of 32; arithmetic fp32 unless model.compute_dtype); q4_k also keeps a GGUF's "
         "Q4_K, Q6_K and Q5_0 blocks as stored (a Q4_K_M file: ~5 bits a weight) and quantises other "
         "matrices to Q4_K, 4.5 bits (Q8_0 where the width is not whole 256-blocks); "
         "full fine-tuning needs fp32"),
    ENUM("model.compute_dtype", model.compute_dtype, "float32", gt_cfg_compute_dtype_names,
         "arithmetic of the frozen-weight products (q, k, v, o, gate, up, down and the tied LM head; "
         "forward and input gradient): bfloat16 rounds their activations to bf16 and accumulates in "
         "fp32 on the CPU's AMX unit, or its AVX512-BF16 instructions on AMD, fp32 where the CPU has neither (or GT_BF16_KERNEL=off); needs "
         "model.frozen_dtype bf16, q8_0 or q4_k (LoRA; q8_0, q4_k: rows widened to bf16 a block at a time, the LM "
         "head's vocabulary blocks too); attention's score and context products too (head dims multiples of 32); adapters, norms, "
         "softmax, loss, optimizer stay fp32"),
    INT("model.generation", model.generation, "0", "[0, 4]",
        "Gemma generation of a custom model (1-4); 0: the preset's"),
    INT("model.vocab_size", model.vocab_size, "0", "[0, 2147483647]", "vocabulary size; 0: the preset's"),
    INT("model.num_layers", model.num_layers, "0", "[0, 1024]", "decoder blocks; 0: the preset's"),
    INT("model.hidden_dim", model.hidden_dim, "0", "[0, 65536]", "model width; 0: the preset's"),
    INT("model.intermediate_dim", model.intermediate_dim, "0", "[0, 1048576]",
        "width of one MLP branch; 0: the preset's"),
    INT("model.num_query_heads", model.num_query_heads, "0", "[0, 1024]", "query heads; 0: the preset's"),
    INT("model.num_key_value_heads", model.num_key_value_heads, "0", "[0, 1024]",
        "key/value heads (grouped-query); 0: the preset's"),
    INT("model.head_dim", model.head_dim, "0", "[0, 4096]", "width of one head; 0: the preset's"),
    INT("model.sliding_window_size", model.sliding_window_size, "-1", "[-1, 1073741824]",
        "local attention window in tokens; 0: no local layers; -1: the preset's"),
    NUM("model.attention_logit_soft_cap", model.attention_logit_soft_cap, "-1", "[-1, 1e6]",
        "c in c*tanh(logits/c) on attention scores; 0: none; -1: the preset's"),
    NUM("model.final_logit_soft_cap", model.final_logit_soft_cap, "-1", "[-1, 1e6]",
        "soft-cap on the output logits; 0: none; -1: the preset's"),
    {"model.architecture", T_ARCH, FLD(model.architecture), "{}", NULL, NULL, 0, 0, NULL,
     "any field of the model config by name, e.g. {num_layers: 4, sliding_pattern: 3, "
     "rope_global_partial: 0.25}; set over the preset's or the generation's defaults and the keys above "
     "(which it must not repeat)"},
    INT("model.init_seed", model.init_seed, "-1", "[-1, inf)",
        "seed of the random init (no model.weights); -1: train.seed"),
    NUM("model.init_std", model.init_std, "0.02", "[0, 10]", "standard deviation of the random init"),
    INT("model.vision_image_size", model.vision.image_size, "0", "[0, 65536]",
        "Gemma 3 vision encoder: input pixels per side; 0: the preset's"),
    INT("model.vision_patch_size", model.vision.patch_size, "0", "[0, 65536]", "vision encoder patch side; 0: the preset's"),
    INT("model.vision_num_layers", model.vision.num_layers, "0", "[0, 1024]",
        "vision encoder blocks (Gemma 3's encoder, or Gemma 4's vision tower with the keys below); 0: the preset's "
        "(none: a text-only model)"),
    INT("model.vision_hidden_dim", model.vision.hidden_dim, "0", "[0, 65536]", "vision encoder width; 0: the preset's"),
    INT("model.vision_num_heads", model.vision.num_heads, "0", "[0, 1024]", "vision encoder heads; 0: the preset's"),
    INT("model.vision_intermediate_dim", model.vision.intermediate_dim, "0", "[0, 1048576]",
        "vision encoder MLP width; 0: the preset's"),
    INT("model.vision_pool_size", model.vision.pool_size, "0", "[0, 1024]",
        "average pooling of the patch grid (image tokens = (image_size/patch_size/pool_size)^2); 0: the preset's"),
    ENUM("model.vision_train", model.vision.train, "frozen", gt_cfg_vision_train_names,
         "the vision encoder: frozen, every weight trained (full), or LoRA adapters (lora.rank, lora.alpha) "
         "on its attention's query, key, value and output projections"),
    INT("model.vision_soft_tokens", model.vision.soft_tokens, "0", "[0, 65536]",
        "Gemma 4 vision tower: tokens per image (the converter's max_soft_tokens); 0: the preset's, or 280"),
    INT("model.audio_num_layers", model.audio.num_layers, "0", "[0, 1024]",
        "Gemma 4 audio tower: conformer blocks; 0: the preset's (none: no audio tower)"),
    INT("model.audio_hidden_dim", model.audio.hidden_dim, "0", "[0, 65536]", "audio tower width; 0: the preset's (1024)"),
    INT("model.audio_num_heads", model.audio.num_heads, "0", "[0, 1024]", "audio tower heads; 0: the preset's (8)"),
    INT("model.audio_num_mels", model.audio.num_mels, "0", "[0, 4096]",
        "audio tower input: log-mel bins of the features; 0: the preset's (128)"),
    STR("tokenizer", tokenizer, "",
        "tokenizer file (tokenizer.json, .spm or .gguf); empty: the one in model.weights"),
    STR("data.train", data.train, "", "training data, a JSONL file"),
    STR("data.eval", data.eval, "", "evaluation data, a JSONL file; empty: no eval"),
    ENUM("data.format", data.format, "auto", gt_cfg_format_names,
         "record form: {prompt, response}, {text} or {messages}; auto: from each file's first record"),
    INT("data.sequence_length", data.sequence_length, "256", "[2, 1048576]",
        "tokens per row (prompt, response and special tokens)"),
    INT("data.max_images_per_prompt", data.max_images_per_prompt, "2", "[0, 1024]",
        "images one record may bring (Gemma 3 and 4 with images; KerasHub's default)"),
    INT("data.max_audio_per_prompt", data.max_audio_per_prompt, "1", "[0, 1024]",
        "audio clips one record may bring (Gemma 4 E2B/E4B; KerasHub's max_audio_clips_per_prompt)"),
    ENUM("data.template", data.template_, "none", gt_cfg_template_names,
         "prompt template; gemma_chat: Gemma 1-3's turn markers; gemma4_chat: Gemma 4's; auto: the "
         "model generation's"),
    BOOL("data.packing", data.packing, "false",
         "pack whole examples into each row (positions restart per example, attention kept within it)"),
    BOOL("data.shuffle", data.shuffle, "true", "reshuffle the training data every epoch"),
    INT("data.shuffle_seed", data.shuffle_seed, "-1", "[-1, inf)", "seed of the shuffle; -1: train.seed"),
    BOOL("data.add_start_token", data.add_start_token, "true", "prepend <bos>"),
    BOOL("data.add_end_token", data.add_end_token, "true", "append <eos>"),
    ENUM("data.on_bad_line", data.on_bad_line, "fail", gt_cfg_bad_line_names,
         "a malformed JSONL record stops the job, or is skipped and counted"),
    BOOL("lora.enabled", lora.enabled, "true", "train LoRA adapters (else train.full_finetune must be true)"),
    INT("lora.rank", lora.rank, "4", "[1, 4096]", "adapter rank"),
    NUM("lora.alpha", lora.alpha, "0", "[0, 1e6]", "scale is alpha/rank; 0: alpha = rank (Keras)"),
    NUM("lora.dropout", lora.dropout, "0", "[0, 1)",
        "dropout on the adapter input while training, as PEFT's lora_dropout (Keras' LoRA has none)"),
    LIST("lora.targets", lora.targets, lora.n_targets, "[query, value]", gt_lora_target_names,
         "layers that get adapters"),
    INT("lora.seed", lora.seed, "-1", "[-1, inf)", "seed of the adapters' init; -1: train.seed"),
    STR("lora.weights", lora.weights, "",
        "adapters to start from / evaluate: a Keras .lora.h5 file (save_lora_weights; rank and targets "
        "must match); empty: fresh init"),
    ENUM("optimizer.name", optimizer.name, "adamw", gt_cfg_optimizer_names, "optimizer"),
    NUM("optimizer.learning_rate", optimizer.learning_rate, "5e-5", "(0, 10]", "peak learning rate"),
    NUM("optimizer.beta_1", optimizer.beta_1, "0.9", "[0, 1)", "Adam first-moment decay"),
    NUM("optimizer.beta_2", optimizer.beta_2, "0.999", "[0, 1)", "Adam second-moment decay"),
    NUM("optimizer.epsilon", optimizer.epsilon, "1e-7", "(0, 1]", "Adam epsilon (Keras' default)"),
    NUM("optimizer.weight_decay", optimizer.weight_decay, "0.01", "[0, 1]",
        "decoupled weight decay (adamw), L2 (sgd)"),
    LIST("optimizer.exclude_from_weight_decay", optimizer.exclude_from_weight_decay, optimizer.n_exclude,
         "[bias, scale]", NULL, "variables whose path contains one of these words get no weight decay"),
    NUM("optimizer.momentum", optimizer.momentum, "0", "[0, 1)", "momentum (sgd only)"),
    NUM("optimizer.clip_global_norm", optimizer.clip_global_norm, "0", "[0, 1e9]",
        "clip gradients to this global norm; 0: off"),
    ENUM("schedule.name", schedule.name, "constant", gt_cfg_schedule_names,
         "learning-rate decay after warmup"),
    INT("schedule.warmup_steps", schedule.warmup_steps, "0", "[0, inf)", "linear warmup steps"),
    NUM("schedule.min_learning_rate", schedule.min_learning_rate, "0", "[0, 10]",
        "floor of the linear and cosine decays"),
    NUM("schedule.min_learning_rate_ratio", schedule.min_learning_rate_ratio, "0", "[0, 1]",
        "the floor as a fraction of optimizer.learning_rate (instead of min_learning_rate)"),
    INT("train.batch_size", train.batch_size, "1", "[1, 1048576]", "examples per optimizer step (global)"),
    INT("train.micro_batch_size", train.micro_batch_size, "0", "[0, 1048576]",
        "examples per forward/backward (gradient accumulation); 0: batch_size"),
    INT("train.steps", train.steps, "0", "[0, inf)", "optimizer steps; 0: from train.epochs"),
    INT("train.epochs", train.epochs, "0", "[0, 1000000]",
        "passes over data.train; 0: from train.steps (1 when neither is given)"),
    ENUM("train.loss_normalization", train.loss_normalization, "tokens", gt_cfg_loss_norm_names,
         "loss divisor: the batch's weighted tokens, or batch x sequence_length (KerasHub)"),
    INT("train.stop_after_steps", train.stop_after_steps, "0", "[0, inf)",
        "end this invocation once the run reaches step N (checkpoint, then exit; resume continues "
        "the same schedule); 0: run to the end"),
    INT("train.seed", train.seed, "0", "[0, inf)",
        "base seed: model.init_seed, data.shuffle_seed and lora.seed default to it"),
    INT("train.threads", train.threads, "0", "[0, 1024]",
        "threads for the engine and OpenBLAS; 0: GT_THREADS or all cores"),
    INT("train.chunk_rows", train.chunk_rows, "128", "[1, 1048576]",
        "LM-head buffer: chunk_rows x vocab logits (memory vs speed)"),
    BOOL("train.full_finetune", train.full_finetune, "false",
         "train every weight (else LoRA must be enabled)"),
    ENUM("train.on_nonfinite", train.on_nonfinite, "stop", gt_cfg_nonfinite_names,
         "a NaN/Inf loss or gradient stops the run, or skips the step"),
    BOOL("train.ignore_memory_check", train.ignore_memory_check, "false",
         "train even when the peak-memory estimate printed before step 1 exceeds the memory available "
         "(MemAvailable, the cgroup limit)"),
    INT("eval.every_steps", eval.every_steps, "0", "[0, inf)",
        "evaluate every N steps; 0: before and after training only"),
    INT("eval.max_examples", eval.max_examples, "0", "[0, inf)", "evaluate the first N examples; 0: all"),
    INT("eval.batch_size", eval.batch_size, "4", "[1, 1048576]", "examples per eval forward"),
    STR("eval.per_example_output", eval.per_example_output, "",
        "JSONL file of per-example losses (gemmatrain eval); empty: none"),
    STR("checkpoint.dir", checkpoint.dir, "", "checkpoint directory; empty: no checkpoints"),
    INT("checkpoint.every_steps", checkpoint.every_steps, "0", "[0, inf)",
        "save every N steps; 0: at the end only"),
    INT("checkpoint.keep", checkpoint.keep, "3", "[1, 1000]", "checkpoints kept (oldest removed)"),
    WORD("checkpoint.resume", checkpoint.resume, checkpoint.resume_path, "none", gt_cfg_resume_names,
         "none, latest (the newest in checkpoint.dir that loads) or a checkpoint path"),
    LIST("checkpoint.allow_changes", checkpoint.allow_changes, checkpoint.n_allow_changes, "[]", NULL,
         "keys a resume may change from the checkpoint's config (e.g. [train.steps]); any other change "
         "that alters the run is refused"),
    STR("logging.metrics", logging.metrics, "", "JSONL file of step and eval metrics; empty: none"),
    INT("logging.every_steps", logging.every_steps, "1", "[1, inf)", "log every N steps"),
    ENUM("logging.progress", logging.progress, "auto", gt_cfg_progress_names,
         "progress display; auto: a bar on a terminal"),
    STR("output_dir", output_dir, "", "directory for outputs (the effective config.yaml, ...); empty: none"),
    BOOL("output.overwrite", output.overwrite, "false",
         "a fresh run may replace the trained result in output_dir (adapter.lora.h5, model) and "
         "logging.metrics; else it is refused (gemmatrain train --overwrite)"),
};
#define N_ROWS (sizeof schema / sizeof schema[0])

/* ---- small helpers ---- */

static const row *find_row(const char *path) {
    for (size_t i = 0; i < N_ROWS; i++)
        if (!strcmp(schema[i].path, path)) return &schema[i];
    return NULL;
}

static bool is_section(const char *path) {
    size_t n = strlen(path);
    for (size_t i = 0; i < N_ROWS; i++)
        if (!strncmp(schema[i].path, path, n) && schema[i].path[n] == '.') return true;
    return false;
}

/* Case-insensitive Levenshtein distance with '-' == '_', exact up to EDIT_MAX (every caller
 * suggests only within 3); a larger one is some value above EDIT_MAX, found early so that a long
 * unknown key is not compared in full against every schema key. */
#define EDIT_MAX 3
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), prev[128], cur[128];
    if (la > 127 || lb > 127) return 999;
    if (la > lb + EDIT_MAX || lb > la + EDIT_MAX) return EDIT_MAX + 1; /* >= the length gap */
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        size_t row_min = i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            if (ca == '-') ca = '_';
            if (cb == '-') cb = '_';
            size_t sub = prev[j - 1] + (ca != cb), del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (cur[j] < row_min) row_min = cur[j];
        }
        if (row_min > EDIT_MAX) return EDIT_MAX + 1; /* rows never decrease their minimum */
        memcpy(prev, cur, sizeof(size_t) * (lb + 1));
    }
    return prev[lb];
}

/* a abbreviates b: same first letter, a's letters appear in b in order (lr -> learning_rate) */
static bool abbreviates(const char *a, const char *b) {
    if (strlen(a) < 2 || *a != *b) return false;
    for (; *b && *a; b++)
        if (*a == *b) a++;
    return !*a;
}

static const char *leaf_of(const char *path) {
    const char *d = strrchr(path, '.');
    return d ? d + 1 : path;
}

static size_t section_len(const char *path) {
    const char *d = strrchr(path, '.');
    return d ? (size_t)(d - path) : 0;
}

/* Distance used for suggestions: small is close. Candidates are every key and every section. */
static size_t suggest_score(const char *path, const char *cand) {
    size_t ps = section_len(path), cs = section_len(cand);
    const char *pl = leaf_of(path), *cl = leaf_of(cand);
    bool same_section = ps == cs && !strncmp(path, cand, ps);
    if (same_section) {
        size_t d = edit_distance(pl, cl);
        if (abbreviates(pl, cl) && d > 1) d = 1;
        return d;
    }
    if (!strcmp(pl, cl)) return 1; /* right key, wrong section: train.warmup_steps */
    return edit_distance(path, cand) + 1;
}

/* "unknown key 'x' (did you mean 'y'?)". relative: name a key of the same section by its leaf
 * (what one writes at that place in a file); overrides always get the full path. Candidates are
 * every key and every section name (optimiser -> optimizer). */
static void unknown_key(const char *path, bool relative, char *out, size_t n) {
    char best[256] = "", cand[256];
    size_t bd = 999;
    for (size_t i = 0; i < N_ROWS; i++) {
        for (int k = 0; k < 2; k++) {
            size_t sl = section_len(schema[i].path);
            if (k && !sl) break;
            snprintf(cand, sizeof cand, "%.*s", k ? (int)sl : (int)strlen(schema[i].path), schema[i].path);
            size_t d = suggest_score(path, cand);
            if (d < bd) bd = d, memcpy(best, cand, sizeof best);
        }
    }
    size_t limit = strlen(leaf_of(path)) >= 8 ? 3 : 2;
    if (!best[0] || bd > limit) {
        snprintf(out, n, "unknown key '%s'", path);
        return;
    }
    size_t ps = section_len(path);
    bool same = relative && ps && section_len(best) == ps && !strncmp(best, path, ps);
    snprintf(out, n, "unknown key '%s' (did you mean '%s'?)", path, same ? leaf_of(best) : best);
}

/* The value of name v in names, or -1. */
static int find_name(const char *const *names, const char *v) {
    for (int i = 0; names && names[i]; i++)
        if (!strcmp(names[i], v)) return i;
    return -1;
}

static int n_names(const char *const *names) {
    int n = 0;
    while (names[n]) n++;
    return n;
}

/* The name of enum value x; a value outside the table (never set by the parser) shows as '?'. */
static const char *name_of(const char *const *names, int x) {
    return x >= 0 && x < n_names(names) ? names[x] : "?";
}

static void choices_text(const char *const *names, char *out, size_t n) {
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; names[i] && o < n; i++) {
        int w = snprintf(out + o, n - o, "%s%s", i ? ", " : "", names[i]);
        if (w < 0) break;
        o += (size_t)w;
    }
}

/* "[lo, hi)" etc. */
static void parse_range(const char *r, double *lo, double *hi, bool *lo_open, bool *hi_open) {
    char *e;
    *lo_open = r[0] == '(';
    *lo = strtod(r + 1, &e);
    while (*e == ',' || *e == ' ') e++;
    *hi = strtod(e, &e);
    *hi_open = *e == ')';
}

static bool in_range(const char *r, double x) {
    double lo, hi;
    bool lo_open, hi_open;
    parse_range(r, &lo, &hi, &lo_open, &hi_open);
    return (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
}

/* Copy v into a char field, zeroing its tail so equal configs are equal bytes. */
static void set_str(char *dst, size_t size, const char *v) {
    memset(dst, 0, size);
    memcpy(dst, v, strlen(v));
}

static bool is_null(const char *v) {
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

/* ---- setting values ---- */

static int set_list(gt_config *c, const row *r, const char *const *items, int n, const char *where, char *err,
                    size_t errn);

/* Set a scalar field from text. where: "file:line:col" or "override '...'". plain_null: the
 * value is an unquoted YAML null, which means the key's default. */
static int set_scalar(gt_config *c, const row *r, const char *v, bool plain_null, const char *where,
                      char *err, size_t errn) {
    char *base = (char *)c + r->off, *end = NULL, ch[256];
    if (plain_null) v = r->dflt;
    switch (r->type) {
    case T_STR:
        if (strlen(v) >= r->size)
            return snprintf(err, errn, "%s: %s: value is longer than %zu bytes", where, r->path, r->size - 1),
                   -1;
        if (r->valid && *v && r->valid(v, ch, sizeof ch))
            return snprintf(err, errn, "%s: %s: %s", where, r->path, ch), -1;
        set_str(base, r->size, v);
        return 0;
    case T_ENUM: {
        int x = find_name(r->names, v);
        if (x < 0) {
            choices_text(r->names, ch, sizeof ch);
            return snprintf(err, errn, "%s: %s: '%s' is not one of %s", where, r->path, v, ch), -1;
        }
        *(int *)base = x;
        return 0;
    }
    case T_WORD: { /* a name, or else a path (the first value after the named ones) */
        int x = find_name(r->names, v);
        char *p = (char *)c + r->aux_off;
        if (x < 0 && strlen(v) >= r->aux_size)
            return snprintf(err, errn, "%s: %s: value is longer than %zu bytes", where, r->path,
                            r->aux_size - 1),
                   -1;
        *(int *)base = x < 0 ? n_names(r->names) : x;
        set_str(p, r->aux_size, x < 0 ? v : "");
        return 0;
    }
    case T_BOOL: {
        static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
        for (int i = 0; i < 3; i++) {
            if (!strcasecmp(v, yes[i])) return *(bool *)base = true, 0;
            if (!strcasecmp(v, no[i])) return *(bool *)base = false, 0;
        }
        return snprintf(err, errn, "%s: %s: expected true or false, got '%s'", where, r->path, v), -1;
    }
    case T_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || isspace((unsigned char)*v) || *end || errno == EINVAL)
            return snprintf(err, errn, "%s: %s: expected an integer, got '%s'", where, r->path, v), -1;
        if (errno == ERANGE || !in_range(r->range, (double)x))
            return snprintf(err, errn, "%s: %s: %s is out of range %s", where, r->path, v, r->range), -1;
        *(int64_t *)base = x;
        return 0;
    }
    case T_NUM: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || isspace((unsigned char)*v) || *end || !isfinite(x))
            return snprintf(err, errn, "%s: %s: expected a number, got '%s'", where, r->path, v), -1;
        if (!in_range(r->range, x))
            return snprintf(err, errn, "%s: %s: %s is out of range %s", where, r->path, v, r->range), -1;
        *(double *)base = x;
        return 0;
    }
    case T_ARCH: /* only its default ({}, nothing set) comes as a scalar; mappings: arch_node */
        if (!plain_null && !is_null(v))
            return snprintf(err, errn, "%s: %s: expected a mapping like {num_layers: 4}, got '%s'", where, r->path, v), -1;
        memset(c->model.architecture, 0, sizeof c->model.architecture);
        memset(c->model.architecture_set, 0, sizeof c->model.architecture_set);
        return 0;
    case T_LIST: { /* a single value is a one-item list; the default is parsed from "[a, b]" */
        if (!plain_null) return set_list(c, r, &v, 1, where, err, errn);
        char buf[256], *save = NULL;
        const char *items[GT_CFG_LIST];
        int n = 0;
        snprintf(buf, sizeof buf, "%s", r->dflt + 1);
        for (char *t = strtok_r(buf, ", ]", &save); t && n < GT_CFG_LIST; t = strtok_r(NULL, ", ]", &save))
            items[n++] = t;
        return set_list(c, r, items, n, where, err, errn);
    }
    }
    return -1;
}

static int set_list(gt_config *c, const row *r, const char *const *items, int n, const char *where, char *err,
                    size_t errn) {
    char ch[256];
    if (n > GT_CFG_LIST)
        return snprintf(err, errn, "%s: %s: at most %d items", where, r->path, GT_CFG_LIST), -1;
    for (int i = 0; i < n; i++) {
        if (r->names && find_name(r->names, items[i]) < 0) {
            choices_text(r->names, ch, sizeof ch);
            return snprintf(err, errn, "%s: %s: '%s' is not one of %s", where, r->path, items[i], ch), -1;
        }
        if (!r->names && (!*items[i] || strlen(items[i]) >= r->size))
            return snprintf(err, errn, "%s: %s: item '%s' must be 1 to %zu bytes", where, r->path, items[i],
                            r->size - 1),
                   -1;
        for (int k = 0; k < i; k++)
            if (!strcmp(items[k], items[i]))
                return snprintf(err, errn, "%s: %s: '%s' is listed twice", where, r->path, items[i]), -1;
    }
    char *base = (char *)c + r->off;
    memset(base, 0, r->size * GT_CFG_LIST);
    for (int i = 0; i < n; i++) {
        if (r->names)
            ((int *)base)[i] = find_name(r->names, items[i]);
        else
            set_str(base + (size_t)i * r->size, r->size, items[i]);
    }
    *(int *)((char *)c + r->aux_off) = n;
    return 0;
}

void gt_config_defaults(gt_config *c) {
    memset(c, 0, sizeof *c);
    char err[256];
    for (size_t i = 0; i < N_ROWS; i++) set_scalar(c, &schema[i], "", true, "default", err, sizeof err);
}

/* ---- YAML documents ---- */

typedef struct {
    const char *name; /* file name, or the override text */
    bool override;
} place;

static void where_of(const place *pl, const yaml_node_t *n, char *out, size_t size) {
    if (pl->override)
        snprintf(out, size, "override '%s'", pl->name);
    else
        snprintf(out, size, "%s:%zu:%zu", pl->name, n->start_mark.line + 1, n->start_mark.column + 1);
}

static bool node_is_null(const yaml_node_t *v) {
    return v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           is_null((const char *)v->data.scalar.value);
}

static const char *node_kind(const yaml_node_t *v) {
    return v->type == YAML_MAPPING_NODE ? "a mapping" : v->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

static const char *expected(const row *r) {
    switch (r->type) {
    case T_INT: return "an integer";
    case T_NUM: return "a number";
    case T_BOOL: return "true or false";
    case T_LIST: return "a list like [a, b]";
    case T_ARCH: return "a mapping like {num_layers: 4}";
    default: return "a string";
    }
}

/* Apply a YAML node (scalar or sequence) to one row. */
static int apply_node(gt_config *c, const row *r, yaml_document_t *doc, yaml_node_t *v, const char *where,
                      char *err, size_t errn) {
    if (r->type == T_LIST && v->type == YAML_SEQUENCE_NODE) {
        const char *items[GT_CFG_LIST + 1];
        int n = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *x = yaml_document_get_node(doc, *it);
            if (!x || x->type != YAML_SCALAR_NODE)
                return snprintf(err, errn, "%s: %s: list items must be plain values", where, r->path), -1;
            if (n > GT_CFG_LIST) break; /* set_list reports the count */
            items[n++] = (const char *)x->data.scalar.value;
        }
        return set_list(c, r, items, n, where, err, errn);
    }
    if (v->type != YAML_SCALAR_NODE)
        return snprintf(err, errn, "%s: %s: expected %s, got %s", where, r->path, expected(r), node_kind(v)),
               -1;
    return set_scalar(c, r, (const char *)v->data.scalar.value, node_is_null(v), where, err, errn);
}

/* ---- model.architecture ---- */

static int arch_index(const char *name) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(f[i].name, name)) return (int)i;
    return -1;
}

static void arch_names(char *out, size_t size) {
    size_t n, o = 0;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    out[0] = 0;
    for (size_t i = 0; i < n && o < size; i++) {
        int w = snprintf(out + o, size - o, "%s%s", i ? ", " : "", f[i].name);
        if (w < 0) break;
        o += (size_t)w;
    }
}

/* One field of model.architecture from its text. */
static int set_arch_one(gt_config *c, const char *name, const char *v, const char *where, char *err, size_t errn) {
    size_t n;
    const gt_gemma_field *f = gt_gemma_fields(&n);
    int i = arch_index(name);
    if (i < 0) {
        const char *best = NULL;
        size_t bd = 999;
        for (size_t k = 0; k < n; k++) {
            size_t d = edit_distance(name, f[k].name);
            if (d < bd) bd = d, best = f[k].name;
        }
        if (best && bd <= 3)
            return snprintf(err, errn, "%s: model.architecture: unknown field '%s' (did you mean '%s'?)", where, name, best), -1;
        char all[1024];
        arch_names(all, sizeof all);
        return snprintf(err, errn, "%s: model.architecture: unknown field '%s' (fields: %s)", where, name, all), -1;
    }
    if (i >= GT_CFG_ARCH) return snprintf(err, errn, "%s: model.architecture.%s: GT_CFG_ARCH is too small", where, name), -1;
    double x = 0;
    char *end = NULL;
    if (f[i].type == GT_FIELD_BOOL) {
        if (!strcasecmp(v, "true")) x = 1;
        else if (strcasecmp(v, "false"))
            return snprintf(err, errn, "%s: model.architecture.%s: expected true or false, got '%s'", where, name, v), -1;
    } else {
        errno = 0;
        x = f[i].type == GT_FIELD_INT ? (double)strtoll(v, &end, 10) : strtod(v, &end);
        if (!*v || isspace((unsigned char)*v) || *end || errno || !isfinite(x))
            return snprintf(err, errn, "%s: model.architecture.%s: expected %s, got '%s'", where, name,
                            f[i].type == GT_FIELD_INT ? "an integer" : "a number", v), -1;
        if (x < 0 || (f[i].type == GT_FIELD_INT && x > 1e15))
            return snprintf(err, errn, "%s: model.architecture.%s: %s is out of range [0, 1e15]", where, name, v), -1;
    }
    c->model.architecture[i] = x;
    c->model.architecture_set[i] = true;
    return 0;
}

/* A YAML mapping onto model.architecture (merged into what is set). */
static int arch_node(gt_config *c, yaml_document_t *doc, yaml_node_t *v, const place *pl, char *err, size_t errn) {
    char where[640];
    where_of(pl, v, where, sizeof where);
    if (node_is_null(v)) return 0;
    if (v->type != YAML_MAPPING_NODE)
        return snprintf(err, errn, "%s: model.architecture: expected a mapping like {num_layers: 4}, got %s", where,
                        node_kind(v)), -1;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *x = yaml_document_get_node(doc, p->value);
        where_of(pl, k, where, sizeof where);
        if (k->type != YAML_SCALAR_NODE) return snprintf(err, errn, "%s: keys must be plain names", where), -1;
        const char *key = (const char *)k->data.scalar.value;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && !strcmp((const char *)k2->data.scalar.value, key))
                return snprintf(err, errn, "%s: duplicate key 'model.architecture.%s'", where, key), -1;
        }
        if (arch_index(key) < 0) return set_arch_one(c, key, "", where, err, errn); /* names the key */
        where_of(pl, x, where, sizeof where);
        if (x->type != YAML_SCALAR_NODE || node_is_null(x))
            return snprintf(err, errn, "%s: model.architecture.%s: expected a value, got %s", where, key,
                            x->type == YAML_SCALAR_NODE ? "nothing" : node_kind(x)), -1;
        if (set_arch_one(c, key, (const char *)x->data.scalar.value, where, err, errn)) return -1;
    }
    return 0;
}

static int walk(gt_config *c, yaml_document_t *doc, yaml_node_t *map, const char *prefix, const place *pl,
                char *err, size_t errn) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
        char where[640], path[256], msg[512];
        where_of(pl, k, where, sizeof where);
        if (k->type != YAML_SCALAR_NODE)
            return snprintf(err, errn, "%s: keys must be plain names", where), -1;
        const char *key = (const char *)k->data.scalar.value;
        if (snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key) >= (int)sizeof path)
            return snprintf(err, errn, "%s: key too long", where), -1;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && !strcmp((const char *)k2->data.scalar.value, key))
                return snprintf(err, errn, "%s: duplicate key '%s' (first at line %zu)", where, path,
                                k2->start_mark.line + 1),
                       -1;
        }
        if (is_section(path)) {
            if (node_is_null(v)) continue; /* "eval:" with nothing under it */
            if (v->type != YAML_MAPPING_NODE) {
                where_of(pl, v, where, sizeof where);
                return snprintf(err, errn, "%s: '%s' is a section: expected a mapping of its keys, got %s",
                                where, path, node_kind(v)),
                       -1;
            }
            if (walk(c, doc, v, path, pl, err, errn)) return -1;
            continue;
        }
        const row *r = find_row(path);
        if (!r) {
            unknown_key(path, !pl->override, msg, sizeof msg);
            return snprintf(err, errn, "%s: %s", where, msg), -1;
        }
        if (r->type == T_ARCH) {
            if (arch_node(c, doc, v, pl, err, errn)) return -1;
            continue;
        }
        where_of(pl, v, where, sizeof where);
        if (apply_node(c, r, doc, v, where, err, errn)) return -1;
    }
    return 0;
}

static void yaml_error(const yaml_parser_t *ps, const char *name, char *err, size_t errn) {
    const char *problem = ps->problem ? ps->problem : "parse error";
    if (ps->error == YAML_READER_ERROR) {
        snprintf(err, errn, "%s: malformed YAML: %s at byte %zu", name, problem, ps->problem_offset);
        return;
    }
    int o = snprintf(err, errn, "%s:%zu:%zu: malformed YAML: %s", name, ps->problem_mark.line + 1,
                     ps->problem_mark.column + 1, problem);
    if (ps->context && o > 0 && (size_t)o < errn)
        snprintf(err + o, errn - (size_t)o, " (%s, line %zu)", ps->context, ps->context_mark.line + 1);
}

int gt_config_parse_text(const char *text, size_t len, const char *name, gt_config *c, char *err,
                         size_t errn) {
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps)) return snprintf(err, errn, "%s: out of memory", name), -1;
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    if (!yaml_parser_load(&ps, &doc)) {
        yaml_error(&ps, name, err, errn);
        yaml_parser_delete(&ps);
        return -1;
    }
    int rc = 0;
    place pl = {name, false};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !node_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            snprintf(err, errn, "%s:%zu:%zu: the config must be a mapping of keys, got %s", name,
                     root->start_mark.line + 1, root->start_mark.column + 1, node_kind(root));
            rc = -1;
        } else {
            rc = walk(c, &doc, root, "", &pl, err, errn);
        }
    }
    yaml_document_delete(&doc);
    if (!rc && root) { /* a second document would be silently ignored: refuse it */
        yaml_document_t more;
        if (!yaml_parser_load(&ps, &more)) {
            yaml_error(&ps, name, err, errn);
            rc = -1;
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&more);
            if (r2) {
                snprintf(err, errn, "%s:%zu:%zu: a second YAML document; the config is one document", name,
                         r2->start_mark.line + 1, r2->start_mark.column + 1);
                rc = -1;
            }
            yaml_document_delete(&more);
        }
    }
    yaml_parser_delete(&ps);
    return rc;
}

int gt_config_override(gt_config *c, const char *kv, char *err, size_t errn) {
    char where[600], msg[512], path[256];
    snprintf(where, sizeof where, "override '%s'", kv);
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return snprintf(err, errn, "%s: expected key.path=value", where), -1;
    if ((size_t)(eq - kv) >= sizeof path) return snprintf(err, errn, "%s: key too long", where), -1;
    snprintf(path, sizeof path, "%.*s", (int)(eq - kv), kv);
    const row *r = find_row(path);
    bool section = !r && is_section(path);
    if (!r && !strncmp(path, "model.architecture.", 19)) return set_arch_one(c, path + 19, eq + 1, where, err, errn);
    if (!r && !section) {
        unknown_key(path, false, msg, sizeof msg);
        return snprintf(err, errn, "%s: %s", where, msg), -1;
    }
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps)) return snprintf(err, errn, "%s: out of memory", where), -1;
    const char *val = eq + 1;
    yaml_parser_set_input_string(&ps, (const unsigned char *)val, strlen(val));
    if (!yaml_parser_load(&ps, &doc)) {
        snprintf(err, errn, "%s: malformed value: %s", where, ps.problem ? ps.problem : "parse error");
        yaml_parser_delete(&ps);
        return -1;
    }
    yaml_node_t *v = yaml_document_get_root_node(&doc);
    place pl = {kv, true};
    int rc;
    if (section) {
        if (!v || node_is_null(v))
            rc = 0;
        else if (v->type != YAML_MAPPING_NODE) {
            snprintf(err, errn,
                     "%s: '%s' is a section: give one of its keys (%s.KEY=value) or a mapping like "
                     "{key: value}",
                     where, path, path);
            rc = -1;
        } else
            rc = walk(c, &doc, v, path, &pl, err, errn);
    } else if (!v) {
        rc = set_scalar(c, r, "", true, where, err, errn); /* "key=": the default */
    } else if (r->type == T_ARCH) {
        rc = arch_node(c, &doc, v, &pl, err, errn);
    } else {
        rc = apply_node(c, r, &doc, v, where, err, errn);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return rc;
}

/* ---- resolution and cross-field checks ---- */

void gt_config_resolve(gt_config *c) {
    if (!c->train.micro_batch_size) c->train.micro_batch_size = c->train.batch_size;
    if (c->lora.alpha == 0) c->lora.alpha = (double)c->lora.rank;
    if (!c->train.steps && !c->train.epochs) c->train.epochs = 1;
    int64_t *seeds[] = {&c->model.init_seed, &c->data.shuffle_seed, &c->lora.seed};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        if (*seeds[i] < 0) *seeds[i] = c->train.seed;
    if (c->schedule.min_learning_rate_ratio > 0 && c->schedule.min_learning_rate == 0) {
        c->schedule.min_learning_rate = c->schedule.min_learning_rate_ratio * c->optimizer.learning_rate;
        c->schedule.min_learning_rate_ratio = 0;
    }
}

int64_t gt_config_total_steps(const gt_config *c, int64_t n) {
    if (c->train.steps > 0) return c->train.steps;
    int64_t epochs = c->train.epochs > 0 ? c->train.epochs : 1;
    if (n <= 0) return 0;
    return (epochs * n + c->train.batch_size - 1) / c->train.batch_size;
}

static const char *const arch_keys[] = {
    "model.vocab_size",      "model.num_layers",          "model.hidden_dim", "model.intermediate_dim",
    "model.num_query_heads", "model.num_key_value_heads", "model.head_dim"};
#define N_ARCH (sizeof arch_keys / sizeof arch_keys[0])

static int64_t int_at(const gt_config *c, const char *path) {
    return *(const int64_t *)((const char *)c + find_row(path)->off);
}

/* The gt_gemma_config field each of arch_keys sets (model.architecture may set it instead). */
static const char *const arch_fields[N_ARCH] = {"vocab_size", "num_layers", "hidden_dim", "intermediate_dim",
                                                "num_query_heads", "num_kv_heads", "head_dim"};

static bool arch_set(const gt_config *c, const char *field) {
    int i = arch_index(field);
    return i >= 0 && i < GT_CFG_ARCH && c->model.architecture_set[i];
}

static bool any_arch_set(const gt_config *c) {
    for (int i = 0; i < GT_CFG_ARCH; i++)
        if (c->model.architecture_set[i]) return true;
    return false;
}

int gt_config_check(const gt_config *c, char *err, size_t errn) { return gt_config_check_for(c, GT_CFG_TRAIN, err, errn); }

int gt_config_check_for(const gt_config *c, gt_cfg_purpose purpose, char *err, size_t errn) {
#define BAD(...) return snprintf(err, errn, __VA_ARGS__), -1
    if (purpose == GT_CFG_EXPORT) {
        if (!c->model.weights[0]) BAD("model.weights: required for export (the model to write)");
        return 0;
    }
    for (int i = 0; i < c->checkpoint.n_allow_changes; i++)
        if (!find_row(c->checkpoint.allow_changes[i]))
            BAD("checkpoint.allow_changes: '%s' is not a config key", c->checkpoint.allow_changes[i]);
    /* required keys */
    if (!c->data.train[0] && !c->data.eval[0])
        BAD("missing required key 'data.train' (the training data, a JSONL file)");
    for (size_t i = 0; i < N_ARCH; i++)
        if (int_at(c, arch_keys[i]) && arch_set(c, arch_fields[i]))
            BAD("%s and model.architecture.%s are both set: give one", arch_keys[i], arch_fields[i]);
    if (!c->model.preset[0] && !c->model.weights[0]) {
        if (!c->model.generation)
            BAD("missing required key: give model.preset, model.weights, or a custom model (model.generation "
                "and "
                "its shapes)");
        for (size_t i = 0; i < N_ARCH; i++)
            if (!int_at(c, arch_keys[i]) && !arch_set(c, arch_fields[i]))
                BAD("missing required key '%s' or model.architecture.%s (a custom model has no model.preset or "
                    "model.weights)", arch_keys[i], arch_fields[i]);
        if (!c->tokenizer[0]) BAD("missing required key 'tokenizer' (a randomly initialised model has none)");
    }
    if (c->model.preset[0] && !c->model.weights[0] && !c->tokenizer[0])
        BAD("missing required key 'tokenizer' (model.preset gives shapes only)");
    /* the model */
    if (c->model.preset[0] && c->model.weights[0])
        BAD("model.preset and model.weights are both set: the weights file defines the model; give one");
    if (c->model.weights[0] && any_arch_set(c))
        BAD("model.architecture cannot change a model loaded from model.weights");
    if (c->model.weights[0]) {
        for (size_t i = 0; i < N_ARCH; i++)
            if (int_at(c, arch_keys[i]))
                BAD("%s cannot change a model loaded from model.weights", arch_keys[i]);
        if (c->model.generation || c->model.sliding_window_size >= 0 ||
            c->model.attention_logit_soft_cap >= 0 || c->model.final_logit_soft_cap >= 0)
            BAD("model.generation, sliding_window_size and the soft-caps cannot change a model loaded from "
                "model.weights");
    }
    if (c->model.preset[0] && c->model.generation) {
        gt_gemma_config mc;
        char e[512];
        if (!gt_gemma_preset(c->model.preset, &mc, e, sizeof e) && mc.generation != c->model.generation)
            BAD("model.generation (%lld) contradicts model.preset %s (generation %d)",
                (long long)c->model.generation, c->model.preset, mc.generation);
    }
    if (c->model.num_query_heads && c->model.num_key_value_heads &&
        c->model.num_query_heads % c->model.num_key_value_heads)
        BAD("model.num_query_heads (%lld) must be a multiple of model.num_key_value_heads (%lld)",
            (long long)c->model.num_query_heads, (long long)c->model.num_key_value_heads);
    /* what to train */
    if (!c->lora.enabled && !c->train.full_finetune && purpose == GT_CFG_TRAIN)
        BAD("lora.enabled and train.full_finetune are both false: nothing to train");
    if (c->lora.enabled && c->train.full_finetune)
        BAD("lora.enabled and train.full_finetune are both true: choose one");
    if (c->lora.enabled && c->lora.n_targets == 0) BAD("lora.targets: empty while lora.enabled is true");
    if (c->lora.weights[0] && !c->lora.enabled) BAD("lora.weights is set while lora.enabled is false");
    if (c->train.full_finetune && c->model.frozen_dtype != GT_FROZEN_FP32)
        BAD("model.frozen_dtype: %s stores frozen weights; full fine-tuning trains them all (use fp32)",
            name_of(gt_frozen_dtype_names, (int)c->model.frozen_dtype));
    if (c->model.compute_dtype == GT_COMPUTE_BFLOAT16 && c->model.frozen_dtype == GT_FROZEN_FP32)
        BAD("model.compute_dtype: bfloat16 multiplies the frozen weights as stored in bf16, q8_0 or q4_k: set "
            "model.frozen_dtype: bf16, q8_0 or q4_k (LoRA; full fine-tuning computes in float32)");
    /* batches and steps */
    int64_t mb = c->train.micro_batch_size ? c->train.micro_batch_size : c->train.batch_size;
    if (mb > c->train.batch_size)
        BAD("train.micro_batch_size (%lld) exceeds train.batch_size (%lld)", (long long)mb,
            (long long)c->train.batch_size);
    if (c->train.batch_size % mb)
        BAD("train.batch_size (%lld) must be a multiple of train.micro_batch_size (%lld)",
            (long long)c->train.batch_size, (long long)mb);
    if (c->train.steps && c->train.epochs)
        BAD("train.steps (%lld) and train.epochs (%lld) are both set: give one", (long long)c->train.steps,
            (long long)c->train.epochs);
    if (c->train.steps && c->schedule.warmup_steps > c->train.steps)
        BAD("schedule.warmup_steps (%lld) exceeds train.steps (%lld)", (long long)c->schedule.warmup_steps,
            (long long)c->train.steps);
    /* optimizer and schedule */
    if (c->schedule.min_learning_rate > 0 && c->schedule.min_learning_rate_ratio > 0)
        BAD("schedule.min_learning_rate and schedule.min_learning_rate_ratio are both set: give one");
    if (c->schedule.min_learning_rate > c->optimizer.learning_rate)
        BAD("schedule.min_learning_rate (%g) exceeds optimizer.learning_rate (%g)",
            c->schedule.min_learning_rate, c->optimizer.learning_rate);
    if (c->optimizer.momentum > 0 && c->optimizer.name != GT_OPT_SGD)
        BAD("optimizer.momentum applies to sgd only (optimizer.name is %s)",
            name_of(gt_cfg_optimizer_names, (int)c->optimizer.name));
    /* eval, checkpoints */
    if (c->eval.every_steps && !c->data.eval[0]) BAD("eval.every_steps is set but data.eval is empty");
    if ((c->checkpoint.every_steps || c->checkpoint.resume == GT_RESUME_LATEST) && !c->checkpoint.dir[0])
        BAD("checkpoint.dir: required by checkpoint.%s",
            c->checkpoint.every_steps ? "every_steps" : "resume: latest");
    if (c->checkpoint.resume == GT_RESUME_PATH && !c->checkpoint.resume_path[0])
        BAD("checkpoint.resume: empty (none, latest or a path)");
    return 0;
#undef BAD
}

int gt_config_load(const char *path, char *const *overrides, int n_overrides, gt_config *c, char *err,
                   size_t errn) {
    return gt_config_load_for(path, overrides, n_overrides, GT_CFG_TRAIN, c, err, errn);
}

int gt_config_load_for(const char *path, char *const *overrides, int n_overrides, gt_cfg_purpose purpose,
                       gt_config *c, char *err, size_t errn) {
    gt_config_defaults(c);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, errn, "%s: %s", path, strerror(errno)), -1;
    char *text = NULL;
    size_t len = 0, cap = 0, got;
    int rc = 0;
    do { /* read whole; works for pipes and /dev/stdin too */
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            char *t = realloc(text, cap);
            if (!t) {
                rc = -1;
                snprintf(err, errn, "%s: out of memory", path);
                break;
            }
            text = t;
        }
        got = fread(text + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (!rc && ferror(f)) rc = -1, snprintf(err, errn, "%s: %s", path, strerror(errno ? errno : EIO));
    fclose(f);
    if (!rc) rc = gt_config_parse_text(text ? text : "", len, path, c, err, errn);
    free(text);
    for (int i = 0; i < n_overrides && !rc; i++) rc = gt_config_override(c, overrides[i], err, errn);
    if (rc) return rc;
    gt_config_resolve(c);
    char e[1024];
    if (gt_config_check_for(c, purpose, e, sizeof e)) return snprintf(err, errn, "%s: %s", path, e), -1;
    return 0;
}

/* ---- writing ---- */

/* A string that every YAML reader takes as this same string without quotes. */
static bool plain_ok(const char *s) {
    static const char *const words[] = {"y",   "n",    "yes", "no",   "true", "false", "on",
                                        "off", "null", "~",   ".inf", ".nan", "-.inf", "+.inf"};
    if (!*s || !(isalpha((unsigned char)*s) || *s == '/' || *s == '.' || *s == '_')) return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_./-", *p)) return false;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcasecmp(s, words[i])) return false;
    return true;
}

static void write_string(FILE *f, const char *s) {
    if (plain_ok(s)) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Shortest text that reads back to x, in a form YAML 1.1 readers (PyYAML) also take as a float:
 * a '.' in the mantissa and a signed exponent ("5.0e-05", "0.9", "1.0"). */
static void format_number(double x, char *out, size_t n) {
    char t[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*g", p, x);
        if (strtod(t, NULL) == x) break;
    }
    char *e = strchr(t, 'e');
    char mant[40], ex[16] = "";
    if (e) {
        snprintf(ex, sizeof ex, "%s", e);
        *e = 0;
    }
    snprintf(mant, sizeof mant, "%s%s", t, strchr(t, '.') ? "" : ".0");
    snprintf(out, n, "%s%s", mant, ex);
}

static void write_value(FILE *f, const gt_config *c, const row *r) {
    const char *base = (const char *)c + r->off;
    char num[48];
    switch (r->type) {
    case T_STR: write_string(f, base); break;
    case T_ENUM: write_string(f, name_of(r->names, *(const int *)base)); break;
    case T_WORD: {
        int x = *(const int *)base;
        write_string(f, x < n_names(r->names) ? name_of(r->names, x) : (const char *)c + r->aux_off);
        break;
    }
    case T_BOOL: fputs(*(const bool *)base ? "true" : "false", f); break;
    case T_INT: fprintf(f, "%lld", (long long)*(const int64_t *)base); break;
    case T_NUM: format_number(*(const double *)base, num, sizeof num), fputs(num, f); break;
    case T_ARCH: {
        size_t n;
        const gt_gemma_field *fl = gt_gemma_fields(&n);
        bool any = false;
        fputc('{', f);
        for (size_t i = 0; i < n && i < GT_CFG_ARCH; i++) {
            if (!c->model.architecture_set[i]) continue;
            double x = c->model.architecture[i];
            fprintf(f, "%s%s: ", any ? ", " : "", fl[i].name);
            any = true;
            if (fl[i].type == GT_FIELD_BOOL) fputs(x != 0 ? "true" : "false", f);
            else if (fl[i].type == GT_FIELD_INT) fprintf(f, "%lld", (long long)x);
            else format_number(x, num, sizeof num), fputs(num, f);
        }
        fputc('}', f);
        break;
    }
    case T_LIST: {
        int n = *(const int *)((const char *)c + r->aux_off);
        fputc('[', f);
        for (int k = 0; k < n; k++) {
            if (k) fputs(", ", f);
            write_string(f, r->names ? name_of(r->names, ((const int *)base)[k])
                                     : base + (size_t)k * r->size);
        }
        fputc(']', f);
        break;
    }
    }
}

void gt_config_write(const gt_config *c, FILE *f) {
    size_t open = 0; /* length of the open section's name; 0: top level */
    const char *sec = "";
    for (size_t i = 0; i < N_ROWS; i++) {
        const row *r = &schema[i];
        size_t sl = section_len(r->path);
        if (sl && (sl != open || strncmp(sec, r->path, sl))) fprintf(f, "%.*s:\n", (int)sl, r->path);
        open = sl, sec = r->path;
        fprintf(f, "%s%s: ", sl ? "  " : "", leaf_of(r->path));
        write_value(f, c, r);
        fputc('\n', f);
    }
}

static bool row_same(const gt_config *a, const gt_config *b, const row *r) {
    const char *x = (const char *)a + r->off, *y = (const char *)b + r->off;
    switch (r->type) {
    case T_STR: return !strcmp(x, y);
    case T_ENUM: return *(const int *)x == *(const int *)y;
    case T_WORD:
        return *(const int *)x == *(const int *)y && !strcmp((const char *)a + r->aux_off, (const char *)b + r->aux_off);
    case T_BOOL: return *(const bool *)x == *(const bool *)y;
    case T_INT: return *(const int64_t *)x == *(const int64_t *)y;
    case T_NUM: return *(const double *)x == *(const double *)y;
    case T_ARCH:
        for (int i = 0; i < GT_CFG_ARCH; i++)
            if (a->model.architecture_set[i] != b->model.architecture_set[i] ||
                (a->model.architecture_set[i] && a->model.architecture[i] != b->model.architecture[i]))
                return false;
        return true;
    default: {
        int n = *(const int *)((const char *)a + r->aux_off);
        bool same = n == *(const int *)((const char *)b + r->aux_off);
        for (int k = 0; same && k < n; k++)
            same = r->names ? ((const int *)x)[k] == ((const int *)y)[k]
                            : !strcmp(x + (size_t)k * r->size, y + (size_t)k * r->size);
        return same;
    }
    }
}

const char *gt_config_diff(const gt_config *a, const gt_config *b) {
    for (size_t i = 0; i < N_ROWS; i++)
        if (!row_same(a, b, &schema[i])) return schema[i].path;
    return NULL;
}

int gt_config_diff_all(const gt_config *a, const gt_config *b, const char **keys, int max) {
    int n = 0;
    for (size_t i = 0; i < N_ROWS; i++)
        if (!row_same(a, b, &schema[i])) {
            if (n < max) keys[n] = schema[i].path;
            n++;
        }
    return n;
}

void gt_config_reference(FILE *f) {
    /* T_WORD reads as a string: a path, or one of the words its doc names */
    static const char *const tname[] = {"string", "integer", "number", "bool", "enum", "list", "string", "mapping"};
    char ch[1024];
    fputs("| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < N_ROWS; i++) {
        const row *r = &schema[i];
        ch[0] = 0;
        if (r->names && (r->type == T_ENUM || r->type == T_LIST))
            choices_text(r->names, ch, sizeof ch);
        else if (r->range)
            snprintf(ch, sizeof ch, "%s", r->range);
        else if (r->type == T_ARCH)
            arch_names(ch, sizeof ch);
        fprintf(f, "| `%s` | %s | `%s` | %s | %s |\n", r->path, tname[r->type], r->dflt, ch, r->doc);
    }
}

/* ---- validators ---- */

static int valid_preset(const char *v, char *msg, size_t n) {
    gt_gemma_config mc;
    char e[1024];
    if (!gt_gemma_preset(v, &mc, e, sizeof e)) return 0;
    if (strchr(v, '/'))
        return snprintf(msg, n,
                        "preset directories are not supported yet; give a KerasHub preset "
                        "name or model.weights"),
               -1;
    const char *const *names = gt_gemma_preset_names(), *best = NULL;
    size_t bd = 999;
    for (; *names; names++) {
        size_t d = edit_distance(v, *names);
        if (d < bd) bd = d, best = *names;
    }
    if (best && bd <= 3) return snprintf(msg, n, "unknown preset '%s' (did you mean '%s'?)", v, best), -1;
    return snprintf(msg, n,
                    "unknown preset '%s' (gemmatrain knows KerasHub's gemma, gemma2 and gemma3 "
                    "presets, e.g. gemma3_270m)",
                    v),
           -1;
}
