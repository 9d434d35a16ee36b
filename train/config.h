/* config.h: the training job's YAML configuration (libyaml), typed and validated.
 *
 * Every key is one row of a schema table in config.c (type, default, range or allowed values,
 * field); the file is read into a node tree and each key is checked against the table. Errors
 * are one line with the place: "job.yaml:12:5: unknown key 'optimizer.lr' (did you mean
 * 'optimizer.learning_rate'?)", "...: optimizer.learning_rate: expected a number, got 'fast'",
 * "...: lora.rank: 0 is out of range [1, 4096]", "...: data.format: 'csv' is not one of auto,
 * prompt_response, text, chat", duplicate keys, malformed YAML (libyaml's own message).
 * Overrides "key.path=value" (value in YAML syntax; lists as [a, b]) apply after the file with the
 * same checks, their errors naming the override. gt_config_write prints the complete effective
 * config (defaults included) as YAML that parses back to the same struct. */
#ifndef GT_CONFIG_H
#define GT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GT_CFG_STR 512
#define GT_CFG_LIST 8

typedef struct gt_config {
    struct {
        char preset[GT_CFG_STR];  /* KerasHub preset name (shapes) */
        char weights[GT_CFG_STR]; /* model file (GGUF); empty: random init */
        char dtype[16];
        int64_t generation, vocab_size, num_layers, hidden_dim, intermediate_dim,
            num_query_heads, num_key_value_heads, head_dim, sliding_window_size, init_seed;
        double attention_logit_soft_cap, final_logit_soft_cap, init_std;
    } model;
    char tokenizer[GT_CFG_STR];
    struct {
        char train[GT_CFG_STR], eval[GT_CFG_STR], format[32], template_[32], on_bad_line[16];
        int64_t sequence_length, shuffle_seed;
        bool shuffle, add_start_token, add_end_token, packing;
    } data;
    struct {
        bool enabled;
        int64_t rank;
        double alpha, dropout;
        char targets[GT_CFG_LIST][32];
        int n_targets;
        int64_t seed;
    } lora;
    struct {
        char name[16];
        double learning_rate, beta_1, beta_2, epsilon, weight_decay, momentum, clip_global_norm;
        char exclude_from_weight_decay[GT_CFG_LIST][32];
        int n_exclude;
    } optimizer;
    struct {
        char name[16];
        int64_t warmup_steps;
        double min_learning_rate;
    } schedule;
    struct {
        int64_t batch_size, micro_batch_size, steps, seed, threads, chunk_rows;
        char loss_normalization[16], on_nonfinite[16];
        bool full_finetune;
    } train;
    struct {
        int64_t every_steps, max_examples, batch_size;
        char per_example_output[GT_CFG_STR];
    } eval;
    struct {
        char dir[GT_CFG_STR], resume[GT_CFG_STR];
        int64_t every_steps, keep;
    } checkpoint;
    struct {
        char metrics[GT_CFG_STR], progress[16];
        int64_t every_steps;
    } logging;
    char output_dir[GT_CFG_STR];
} gt_config;

void gt_config_defaults(gt_config *c);
/* Defaults, then the file, then the overrides; then cross-field checks. 0 or -1 + message. */
int gt_config_load(const char *path, char *const *overrides, int n_overrides, gt_config *c,
                   char *err, size_t errn);
/* Parse YAML text (name is used in messages) onto c. */
int gt_config_parse_text(const char *text, size_t len, const char *name, gt_config *c, char *err,
                         size_t errn);
int gt_config_override(gt_config *c, const char *kv, char *err, size_t errn);
int gt_config_check(const gt_config *c, char *err, size_t errn);
void gt_config_write(const gt_config *c, FILE *f);

#endif
