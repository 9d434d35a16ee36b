/* config.h: the training job's YAML configuration (libyaml), typed and validated.
 *
 * Every key is one row of the schema table in config.c (path, type, default, range or allowed
 * values, the struct field it fills, a one-line doc); `gemmatrain train --keys` prints the table.
 * Loading = defaults, then the file, then "key.path=value" overrides (values in YAML syntax, lists
 * as [a, b]), then gt_config_resolve (derived defaults), then gt_config_check (cross-field rules).
 * A null/empty value (`key:` or `key=`) means the key's default.
 *
 * Errors are one line naming the place and the key; the message goes to err, the call returns -1:
 *   job.yaml:2:1: malformed YAML: did not find expected ',' or ']' (while parsing a flow sequence, line 1)
 *   job.yaml:2:3: unknown key 'optimizer.lrr' (did you mean 'learning_rate'?)
 *   job.yaml:2:18: optimizer.learning_rate: expected a number, got 'fast'
 *   job.yaml:2:9: lora.rank: 0 is out of range [1, 4096]
 *   job.yaml:2:11: data.format: 'csv' is not one of auto, prompt_response, text, chat
 *   job.yaml: missing required key 'data.train' (the training data, a JSONL file)
 *   job.yaml:3:3: duplicate key 'train.steps' (first at line 2)
 *   job.yaml: No such file or directory
 *   override 'optimizer.lr=1e-4': unknown key 'optimizer.lr' (did you mean 'optimizer.learning_rate'?)
 * gt_config_write prints every key (defaults included) as YAML that parses back to the same
 * struct, byte for byte (setters zero the unused tail of every string field). */
#ifndef GT_CONFIG_H
#define GT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "models/gemma.h"
#include "models/lora.h"
#include "train/optim.h"
#include "train/step.h"

#define GT_CFG_STR 512 /* bytes of a path or free string, NUL included */
#define GT_CFG_LIST 8  /* items of a list key */
#define GT_CFG_ARCH 64 /* rows of gt_gemma_fields() that model.architecture can hold */

/* Enum keys are decoded once, when the value is set; the modules' own enums are used where they
 * exist (gt_opt_kind, gt_sched_kind, gt_ds_format, gt_template, gt_loss_norm, gt_frozen_dtype,
 * gt_lora_target). The names, in enum order, are the gt_cfg_*_names tables below (NULL-ended). */
typedef enum { GT_DTYPE_FLOAT32 } gt_model_dtype;
typedef enum { GT_COMPUTE_FLOAT32, GT_COMPUTE_BFLOAT16 } gt_compute_dtype;
typedef enum { GT_BAD_LINE_FAIL, GT_BAD_LINE_SKIP } gt_on_bad_line;
typedef enum { GT_NONFINITE_STOP, GT_NONFINITE_SKIP } gt_on_nonfinite;
typedef enum { GT_PROGRESS_AUTO, GT_PROGRESS_BAR, GT_PROGRESS_PLAIN } gt_progress;
/* checkpoint.resume: the words none and latest, or a path (checkpoint.resume_path) */
typedef enum { GT_RESUME_NONE, GT_RESUME_LATEST, GT_RESUME_PATH } gt_resume;
/* model.vision_train: the vision encoder frozen, fully trained, or LoRA on its attention */
typedef enum { GT_VISION_FROZEN, GT_VISION_FULL, GT_VISION_LORA } gt_vision_train;

extern const char *const gt_cfg_dtype_names[], *const gt_cfg_compute_dtype_names[], *const gt_cfg_format_names[], *const gt_cfg_template_names[],
    *const gt_cfg_bad_line_names[], *const gt_cfg_optimizer_names[], *const gt_cfg_schedule_names[],
    *const gt_cfg_loss_norm_names[], *const gt_cfg_nonfinite_names[], *const gt_cfg_progress_names[],
    *const gt_cfg_resume_names[], *const gt_cfg_vision_train_names[];

typedef struct gt_config {
    struct {
        char preset[GT_CFG_STR];  /* KerasHub preset name (shapes); empty: custom or from weights */
        char weights[GT_CFG_STR]; /* model file (GGUF); empty: random init */
        gt_model_dtype dtype;
        gt_frozen_dtype frozen_dtype; /* storage of the frozen base weights under LoRA */
        gt_compute_dtype compute_dtype; /* arithmetic of the frozen-weight products */
        /* architecture overrides: 0 (or -1 where 0 is meaningful) keeps the preset's value */
        int64_t generation, vocab_size, num_layers, hidden_dim, intermediate_dim,
            num_query_heads, num_key_value_heads, head_dim, sliding_window_size, init_seed;
        double attention_logit_soft_cap, final_logit_soft_cap, init_std;
        /* model.architecture: any gt_gemma_config field by name, indexed by its gt_gemma_fields()
         * row; applied after the preset (or generation defaults) and the keys above */
        double architecture[GT_CFG_ARCH];
        bool architecture_set[GT_CFG_ARCH];
        /* model.vision_*: the Gemma 3 vision encoder's shapes over the preset's; 0 keeps them
         * (num_layers > 0 without a preset's encoder builds one, randomly initialised) */
        struct {
            int64_t image_size, patch_size, num_layers, hidden_dim, num_heads, intermediate_dim, pool_size;
            int64_t soft_tokens; /* Gemma 4: tokens per image (the converter's max_soft_tokens) */
            gt_vision_train train;
        } vision;
        /* model.audio_*: a Gemma 4 audio tower's shapes (random init when no model.weights) */
        struct {
            int64_t num_layers, hidden_dim, num_heads, num_mels;
        } audio;
    } model;
    char tokenizer[GT_CFG_STR];
    struct {
        char train[GT_CFG_STR], eval[GT_CFG_STR];
        gt_ds_format format;
        gt_template template_;
        gt_on_bad_line on_bad_line;
        int64_t sequence_length, shuffle_seed;
        int64_t max_images_per_prompt; /* images a record may bring (KerasHub's default 2) */
        int64_t max_audio_per_prompt;  /* Gemma 4 clips a record may bring (KerasHub's default 1) */
        bool packing, shuffle, add_start_token, add_end_token;
    } data;
    struct {
        bool enabled;
        int64_t rank;
        double alpha, dropout; /* alpha: resolved to rank when left 0 */
        gt_lora_target targets[GT_CFG_LIST];
        int n_targets;
        int64_t seed;
        char weights[GT_CFG_STR]; /* adapters to start from (Keras .lora.h5); empty: fresh init */
    } lora;
    struct {
        gt_opt_kind name;
        double learning_rate, beta_1, beta_2, epsilon, weight_decay, momentum, clip_global_norm;
        char exclude_from_weight_decay[GT_CFG_LIST][32];
        int n_exclude;
    } optimizer;
    struct {
        gt_sched_kind name;
        int64_t warmup_steps;
        double min_learning_rate, min_learning_rate_ratio; /* ratio: resolved into the absolute */
    } schedule;
    struct {
        /* micro_batch_size: resolved to batch_size when 0. steps / epochs: exactly one is > 0
         * after resolve (epochs = 1 when neither is given); see gt_config_total_steps. */
        int64_t batch_size, micro_batch_size, steps, epochs, seed, threads, chunk_rows;
        int64_t stop_after_steps; /* end this invocation at that step (the schedule spans the run) */
        gt_loss_norm loss_normalization;
        gt_on_nonfinite on_nonfinite;
        bool full_finetune;
        bool ignore_memory_check; /* train even when the peak-memory estimate exceeds what is available */
    } train;
    struct {
        int64_t every_steps, max_examples, batch_size;
        char per_example_output[GT_CFG_STR];
    } eval;
    struct {
        char dir[GT_CFG_STR];
        gt_resume resume;
        char resume_path[GT_CFG_STR]; /* GT_RESUME_PATH: the checkpoint; else empty */
        int64_t every_steps, keep;
        char allow_changes[GT_CFG_LIST][48]; /* keys a resume may change (config keys) */
        int n_allow_changes;
    } checkpoint;
    struct {
        char metrics[GT_CFG_STR];
        gt_progress progress;
        int64_t every_steps;
    } logging;
    char output_dir[GT_CFG_STR];
    struct {
        bool overwrite; /* a fresh run may replace output_dir's trained result and logging.metrics */
    } output;
} gt_config;

void gt_config_defaults(gt_config *c);
/* Defaults, the file, the overrides, resolve, check. Errors from the checks are prefixed with
 * the file's path. 0 or -1 + message. */
int gt_config_load(const char *path, char *const *overrides, int n_overrides, gt_config *c,
                   char *err, size_t errn);
/* What a config is loaded for: TRAIN checks every rule; EVAL drops "something to train" (an
 * eval-only config evaluates the model as loaded); EXPORT only parses and resolves and needs
 * model.weights (the model to write; data is not read). */
typedef enum { GT_CFG_TRAIN, GT_CFG_EVAL, GT_CFG_EXPORT } gt_cfg_purpose;
int gt_config_load_for(const char *path, char *const *overrides, int n_overrides, gt_cfg_purpose purpose,
                       gt_config *c, char *err, size_t errn);
/* Parse YAML text onto c (keys not in the text keep their values); name is used in messages. */
int gt_config_parse_text(const char *text, size_t len, const char *name, gt_config *c, char *err,
                         size_t errn);
/* Apply one "key.path=value" (a section takes a flow mapping: "train={steps: 5, seed: 1}"). */
int gt_config_override(gt_config *c, const char *kv, char *err, size_t errn);
/* Fill derived defaults: micro_batch_size = batch_size, lora.alpha = rank, epochs = 1 when
 * neither steps nor epochs is set, min_learning_rate = ratio * learning_rate, seeds left at -1 =
 * train.seed. Idempotent. */
void gt_config_resolve(gt_config *c);
/* Required keys and cross-field rules on a resolved config; messages name the keys. */
int gt_config_check(const gt_config *c, char *err, size_t errn);
int gt_config_check_for(const gt_config *c, gt_cfg_purpose purpose, char *err, size_t errn);
/* The full effective config as YAML. */
void gt_config_write(const gt_config *c, FILE *f);
/* The dotted key of the first field where a and b differ, or NULL when equal. */
const char *gt_config_diff(const gt_config *a, const gt_config *b);
/* Every key where a and b differ, in schema order (at most max into keys); returns the count. */
int gt_config_diff_all(const gt_config *a, const gt_config *b, const char **keys, int max);
/* Markdown table of every key: type, default, allowed values, meaning. */
void gt_config_reference(FILE *f);
/* Optimizer steps of the run: train.steps, or ceil(epochs * n_train_examples / batch_size). */
int64_t gt_config_total_steps(const gt_config *c, int64_t n_train_examples);

#endif
