/* The YAML config: one test per error class (exact messages with file:line:col), overrides,
 * defaults and derived defaults, cross-field checks, the effective config round trip (every key
 * set to a non-default value, written, parsed back, byte-identical), and the example configs. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/config.h"
#include "tests/check_main.h"

static char err[2048];

static int parse(const char *yaml, gt_config *c) {
    gt_config_defaults(c);
    return gt_config_parse_text(yaml, strlen(yaml), "job.yaml", c, err, sizeof err);
}

/* parse must fail with exactly msg */
#define PARSE_FAILS(yaml, msg) \
    do { \
        gt_config c_; \
        ck_assert_msg(parse(yaml, &c_) != 0, "accepted: %s", yaml); \
        ck_assert_str_eq(err, msg); \
    } while (0)

#define OVERRIDE_FAILS(kv, msg) \
    do { \
        gt_config c_; \
        gt_config_defaults(&c_); \
        ck_assert_msg(gt_config_override(&c_, kv, err, sizeof err) != 0, "accepted: %s", kv); \
        ck_assert_str_eq(err, msg); \
    } while (0)

/* Write text to a temporary file; returns its path (static buffer). */
static const char *temp_yaml(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/gt-test-config-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    size_t n = strlen(text);
    ck_assert(write(fd, text, n) == (ssize_t)n);
    close(fd);
    return path;
}

/* gt_config_load on text; the message is in err */
static int load_text(const char *text, char *const *ov, int n_ov, gt_config *c, char *path_out) {
    const char *p = temp_yaml(text);
    int rc = gt_config_load(p, ov, n_ov, c, err, sizeof err);
    if (path_out) strcpy(path_out, p);
    unlink(p);
    return rc;
}

static const char *MINIMAL =
    "model:\n  preset: gemma3_270m\ntokenizer: tok.json\ndata:\n  train: train.jsonl\n";

START_TEST(malformed_yaml) {
    PARSE_FAILS("train: [1, 2\n", "job.yaml:2:1: malformed YAML: did not find expected ',' or ']' (while "
                                  "parsing a flow sequence, line 1)");
    PARSE_FAILS("train:\n  steps: 5\n    seed: 1\n",
                "job.yaml:3:9: malformed YAML: mapping values are not allowed in this context");
    PARSE_FAILS("train:\n\tsteps: 5\n", "job.yaml:2:1: malformed YAML: found character that cannot start any "
                                        "token (while scanning for the next token, line 2)");
    PARSE_FAILS("train:\n  steps: 5\n---\ntrain:\n  seed: 1\n",
                "job.yaml:4:1: a second YAML document; the config is one document");
    PARSE_FAILS("- a\n- b\n", "job.yaml:1:1: the config must be a mapping of keys, got a list");
}
END_TEST

START_TEST(unknown_key) {
    PARSE_FAILS("optimizer:\n  lrr: 1e-4\n",
                "job.yaml:2:3: unknown key 'optimizer.lrr' (did you mean 'learning_rate'?)");
    PARSE_FAILS("optimizer:\n  learning-rate: 1e-4\n",
                "job.yaml:2:3: unknown key 'optimizer.learning-rate' (did you mean 'learning_rate'?)");
    /* the right key in the wrong section, a misspelt section, nothing close */
    PARSE_FAILS("train:\n  warmup_steps: 3\n",
                "job.yaml:2:3: unknown key 'train.warmup_steps' (did you mean 'schedule.warmup_steps'?)");
    PARSE_FAILS("optimiser:\n  name: sgd\n",
                "job.yaml:1:1: unknown key 'optimiser' (did you mean 'optimizer'?)");
    PARSE_FAILS("data:\n  zzz: 1\n", "job.yaml:2:3: unknown key 'data.zzz'");
    /* suggestions reach distance 3 exactly (the early exits of the distance keep this) */
    PARSE_FAILS("optimizer:\n  learnxng_rxtx: 1\n",
                "job.yaml:2:3: unknown key 'optimizer.learnxng_rxtx' (did you mean 'learning_rate'?)");
    PARSE_FAILS("optimizer:\n  lxarnxng_rxtx: 1\n", "job.yaml:2:3: unknown key 'optimizer.lxarnxng_rxtx'");
    PARSE_FAILS("optimizer:\n  learning_ratexyz: 1\n",
                "job.yaml:2:3: unknown key 'optimizer.learning_ratexyz' (did you mean 'learning_rate'?)");
    PARSE_FAILS("optimizer:\n  learning_rate_wxyz: 1\n", "job.yaml:2:3: unknown key 'optimizer.learning_rate_wxyz'");
}
END_TEST

START_TEST(wrong_type) {
    PARSE_FAILS("optimizer:\n  learning_rate: fast\n",
                "job.yaml:2:18: optimizer.learning_rate: expected a number, got 'fast'");
    PARSE_FAILS("train:\n  steps: 1.5\n", "job.yaml:2:10: train.steps: expected an integer, got '1.5'");
    PARSE_FAILS("data:\n  shuffle: maybe\n",
                "job.yaml:2:12: data.shuffle: expected true or false, got 'maybe'");
    PARSE_FAILS("lora:\n  rank: [1]\n", "job.yaml:2:9: lora.rank: expected an integer, got a list");
    PARSE_FAILS("optimizer:\n  learning_rate: .nan\n",
                "job.yaml:2:18: optimizer.learning_rate: expected a number, got '.nan'");
    PARSE_FAILS("train: 5\n",
                "job.yaml:1:8: 'train' is a section: expected a mapping of its keys, got a value");
    PARSE_FAILS("data:\n  train: {a: 1}\n", "job.yaml:2:10: data.train: expected a string, got a mapping");
}
END_TEST

START_TEST(out_of_range) {
    PARSE_FAILS("lora:\n  rank: 0\n", "job.yaml:2:9: lora.rank: 0 is out of range [1, 4096]");
    PARSE_FAILS("optimizer:\n  beta_1: 1\n", "job.yaml:2:11: optimizer.beta_1: 1 is out of range [0, 1)");
    PARSE_FAILS("optimizer:\n  learning_rate: 0\n",
                "job.yaml:2:18: optimizer.learning_rate: 0 is out of range (0, 10]");
    PARSE_FAILS("train:\n  steps: 99999999999999999999\n",
                "job.yaml:2:10: train.steps: 99999999999999999999 is out of range [0, inf)");
    PARSE_FAILS("train:\n  seed: -1\n", "job.yaml:2:9: train.seed: -1 is out of range [0, inf)");
}
END_TEST

START_TEST(bad_enum) {
    PARSE_FAILS("data:\n  format: csv\n",
                "job.yaml:2:11: data.format: 'csv' is not one of auto, prompt_response, text, chat");
    PARSE_FAILS(
        "lora:\n  targets: [query, mlp]\n",
        "job.yaml:2:12: lora.targets: 'mlp' is not one of query, key, value, attention_output, ffw_gating, "
        "ffw_gating_2, ffw_linear");
    PARSE_FAILS("lora:\n  targets: [query, query]\n", "job.yaml:2:12: lora.targets: 'query' is listed twice");
    PARSE_FAILS("model:\n  preset: gemma3_207m\n",
                "job.yaml:2:11: model.preset: unknown preset 'gemma3_207m' (did you mean 'gemma3_270m'?)");
}
END_TEST

START_TEST(missing_required_key) {
    gt_config c;
    char path[64];
    ck_assert_int_ne(load_text("model:\n  preset: gemma3_270m\ntokenizer: t.json\n", NULL, 0, &c, path), 0);
    char want[256];
    snprintf(want, sizeof want, "%s: missing required key 'data.train' (the training data, a JSONL file)",
             path);
    ck_assert_str_eq(err, want);
    /* a custom model needs all its shapes */
    ck_assert_int_ne(
        load_text("data:\n  train: x.jsonl\ntokenizer: t.json\nmodel:\n  generation: 3\n  vocab_size: 10\n"
                  "  num_layers: 1\n  hidden_dim: 8\n  intermediate_dim: 16\n  num_query_heads: 2\n"
                  "  num_key_value_heads: 1\n",
                  NULL, 0, &c, path),
        0);
    snprintf(
        want, sizeof want,
        "%s: missing required key 'model.head_dim' or model.architecture.head_dim (a custom model has no "
        "model.preset or model.weights)",
        path);
    ck_assert_str_eq(err, want);
    ck_assert_int_ne(load_text("data:\n  train: x.jsonl\nmodel:\n  preset: gemma3_270m\n", NULL, 0, &c, path),
                     0);
    ck_assert_msg(strstr(err, "missing required key 'tokenizer' (model.preset gives shapes only)"), "%s",
                  err);
    ck_assert_int_ne(load_text("data:\n  train: x.jsonl\n", NULL, 0, &c, path), 0);
    ck_assert_msg(strstr(err, "missing required key: give model.preset, model.weights, or a custom model"),
                  "%s", err);
    /* an empty file: the first required key */
    ck_assert_int_ne(load_text("", NULL, 0, &c, path), 0);
    ck_assert_msg(strstr(err, "missing required key 'data.train'"), "%s", err);
}
END_TEST

START_TEST(duplicate_key) {
    PARSE_FAILS("train:\n  steps: 5\n  steps: 6\n",
                "job.yaml:3:3: duplicate key 'train.steps' (first at line 2)");
    PARSE_FAILS("train:\n  steps: 5\nlora:\n  rank: 2\ntrain:\n  seed: 1\n",
                "job.yaml:5:1: duplicate key 'train' (first at line 1)");
}
END_TEST

START_TEST(missing_file) {
    gt_config c;
    ck_assert_int_ne(gt_config_load("configs/no-such.yaml", NULL, 0, &c, err, sizeof err), 0);
    ck_assert_str_eq(err, "configs/no-such.yaml: No such file or directory");
    ck_assert_int_ne(gt_config_load("configs", NULL, 0, &c, err, sizeof err), 0);
    ck_assert_str_eq(err, "configs: Is a directory");
}
END_TEST

START_TEST(overrides) {
    OVERRIDE_FAILS(
        "optimizer.lr=1e-4",
        "override 'optimizer.lr=1e-4': unknown key 'optimizer.lr' (did you mean 'optimizer.learning_rate'?)");
    OVERRIDE_FAILS(
        "optimizer.learning_rate=fast",
        "override 'optimizer.learning_rate=fast': optimizer.learning_rate: expected a number, got 'fast'");
    OVERRIDE_FAILS("lora.rank=0", "override 'lora.rank=0': lora.rank: 0 is out of range [1, 4096]");
    OVERRIDE_FAILS(
        "data.format=csv",
        "override 'data.format=csv': data.format: 'csv' is not one of auto, prompt_response, text, chat");
    OVERRIDE_FAILS(
        "train={steps: 5, sed: 1}",
        "override 'train={steps: 5, sed: 1}': unknown key 'train.sed' (did you mean 'train.seed'?)");
    OVERRIDE_FAILS("train=5", "override 'train=5': 'train' is a section: give one of its keys "
                              "(train.KEY=value) or a mapping like {key: value}");
    OVERRIDE_FAILS("lora.targets=[query",
                   "override 'lora.targets=[query': malformed value: did not find expected ',' or ']'");
    OVERRIDE_FAILS("steps", "override 'steps': expected key.path=value");

    gt_config c;
    gt_config_defaults(&c);
    ck_assert_int_eq(gt_config_override(&c, "optimizer.learning_rate=1e-4", err, sizeof err), 0);
    ck_assert(c.optimizer.learning_rate == 1e-4);
    ck_assert_int_eq(gt_config_override(&c, "lora.targets=[query, key, value]", err, sizeof err), 0);
    ck_assert_int_eq(c.lora.n_targets, 3);
    ck_assert_int_eq(c.lora.targets[2], GT_LORA_VALUE);
    ck_assert_int_eq(gt_config_override(&c, "lora.targets=ffw_linear", err, sizeof err), 0); /* one item */
    ck_assert_int_eq(c.lora.n_targets, 1);
    ck_assert_int_eq(c.lora.targets[0], GT_LORA_DOWN);
    ck_assert_int_eq(c.lora.targets[1], 0); /* the old tail is cleared */
    ck_assert_int_eq(gt_config_override(&c, "optimizer.exclude_from_weight_decay=[]", err, sizeof err), 0);
    ck_assert_int_eq(c.optimizer.n_exclude, 0);
    ck_assert_int_eq(gt_config_override(&c, "train={steps: 7, seed: 3}", err, sizeof err), 0);
    ck_assert_int_eq(c.train.steps, 7);
    ck_assert_int_eq(c.train.seed, 3);
    ck_assert_int_eq(gt_config_override(&c, "data.train=my dir/a:b.jsonl", err, sizeof err), 0);
    ck_assert_str_eq(c.data.train, "my dir/a:b.jsonl");
    ck_assert_int_eq(gt_config_override(&c, "data.shuffle=off", err, sizeof err), 0);
    ck_assert(!c.data.shuffle);
    /* "key=" and "key=~" restore the default; a quoted "null" is a string */
    ck_assert_int_eq(gt_config_override(&c, "data.train=", err, sizeof err), 0);
    ck_assert_str_eq(c.data.train, "");
    ck_assert_int_eq(gt_config_override(&c, "data.shuffle=~", err, sizeof err), 0);
    ck_assert(c.data.shuffle);
    ck_assert_int_eq(gt_config_override(&c, "lora.targets=", err, sizeof err), 0);
    ck_assert_int_eq(c.lora.n_targets, 2);
    ck_assert_int_eq(gt_config_override(&c, "output_dir='null'", err, sizeof err), 0);
    ck_assert_str_eq(c.output_dir, "null");

    /* through gt_config_load: overrides come after the file */
    ck_assert_int_eq(load_text(MINIMAL, (char *[]){"data.sequence_length=64", "lora.rank=8"}, 2, &c, NULL),
                     0);
    ck_assert_int_eq(c.data.sequence_length, 64);
    ck_assert_int_eq(c.lora.rank, 8);
    ck_assert(c.lora.alpha == 8); /* resolved after the overrides */
    ck_assert_int_ne(load_text(MINIMAL, (char *[]){"train.stepz=3"}, 1, &c, NULL), 0);
    ck_assert_str_eq(err,
                     "override 'train.stepz=3': unknown key 'train.stepz' (did you mean 'train.steps'?)");
}
END_TEST

START_TEST(null_values_and_empty_sections) {
    gt_config c;
    ck_assert_msg(parse("data:\n  eval: ~\n  shuffle:\neval:\ncheckpoint: null\n", &c) == 0, "%s", err);
    ck_assert_str_eq(c.data.eval, "");
    ck_assert(c.data.shuffle);
    ck_assert_msg(parse("data:\n  eval: \"~\"\n", &c) == 0, "%s", err);
    ck_assert_str_eq(c.data.eval, "~");
    ck_assert_msg(parse("# nothing but a comment\n", &c) == 0, "%s", err);
    ck_assert_msg(parse("data: {train: a.jsonl, format: text}\n", &c) == 0, "%s", err); /* flow style */
    ck_assert_int_eq(c.data.format, GT_DS_TEXT);
}
END_TEST

START_TEST(defaults_and_resolve) {
    gt_config c;
    ck_assert_msg(load_text(MINIMAL, NULL, 0, &c, NULL) == 0, "%s", err);
    /* KerasHub's LoRA tutorial: rank 4, sequence 256, batch 1, 1 epoch, AdamW 5e-5 / wd 0.01 */
    ck_assert_int_eq(c.lora.rank, 4);
    ck_assert(c.lora.alpha == 4);
    ck_assert_int_eq(c.lora.n_targets, 2);
    ck_assert_int_eq(c.lora.targets[0], GT_LORA_QUERY);
    ck_assert_int_eq(c.lora.targets[1], GT_LORA_VALUE);
    ck_assert_int_eq(c.data.sequence_length, 256);
    ck_assert(c.data.add_start_token && c.data.add_end_token);
    ck_assert_int_eq(c.train.batch_size, 1);
    ck_assert_int_eq(c.train.micro_batch_size, 1);
    ck_assert_int_eq(c.train.steps, 0);
    ck_assert_int_eq(c.train.epochs, 1);
    ck_assert_int_eq(c.optimizer.name, GT_OPT_ADAMW);
    ck_assert(c.optimizer.learning_rate == 5e-5 && c.optimizer.weight_decay == 0.01);
    ck_assert(c.optimizer.beta_1 == 0.9 && c.optimizer.beta_2 == 0.999 && c.optimizer.epsilon == 1e-7);
    ck_assert_int_eq(c.optimizer.n_exclude, 2);
    ck_assert_str_eq(c.optimizer.exclude_from_weight_decay[1], "scale");
    ck_assert_int_eq(c.checkpoint.keep, 3);
    ck_assert_int_eq(c.checkpoint.resume, GT_RESUME_NONE);
    ck_assert_str_eq(c.checkpoint.resume_path, "");
    ck_assert_int_eq(c.logging.every_steps, 1);
    ck_assert_int_eq(c.model.dtype, GT_DTYPE_FLOAT32);
    ck_assert_int_eq(c.model.init_seed, 0);
    /* seeds follow train.seed unless given; the ratio becomes an absolute floor */
    ck_assert_msg(load_text(MINIMAL,
                            (char *[]){"train.seed=42", "lora.seed=7", "schedule.min_learning_rate_ratio=0.1",
                                       "train.batch_size=8", "train.steps=100"},
                            5, &c, NULL) == 0,
                  "%s", err);
    ck_assert_int_eq(c.data.shuffle_seed, 42);
    ck_assert_int_eq(c.model.init_seed, 42);
    ck_assert_int_eq(c.lora.seed, 7);
    ck_assert(c.schedule.min_learning_rate == 0.1 * 5e-5);
    ck_assert(c.schedule.min_learning_rate_ratio == 0);
    ck_assert_int_eq(c.train.micro_batch_size, 8);
    ck_assert_int_eq(c.train.epochs, 0);
    ck_assert_int_eq(gt_config_total_steps(&c, 1000), 100);
    gt_config r = c;
    gt_config_resolve(&r); /* idempotent */
    ck_assert(memcmp(&r, &c, sizeof c) == 0);
    /* epochs: ceil(epochs * examples / batch) */
    ck_assert_msg(load_text(MINIMAL, (char *[]){"train.batch_size=8", "train.epochs=3"}, 2, &c, NULL) == 0,
                  "%s", err);
    ck_assert_int_eq(gt_config_total_steps(&c, 200), 75);
    ck_assert_int_eq(gt_config_total_steps(&c, 50), 19);
    ck_assert_int_eq(gt_config_total_steps(&c, 0), 0);
}
END_TEST

/* load MINIMAL + overrides; must fail with a message containing want */
static void check_fails(char *const *ov, int n, const char *want) {
    gt_config c;
    ck_assert_msg(load_text(MINIMAL, ov, n, &c, NULL) != 0, "accepted: %s", ov[0]);
    ck_assert_msg(strstr(err, want), "got: %s\nwant: %s", err, want);
}

START_TEST(cross_field_checks) {
    check_fails((char *[]){"train.batch_size=6", "train.micro_batch_size=4"}, 2,
                ": train.batch_size (6) must be a multiple of train.micro_batch_size (4)");
    check_fails((char *[]){"train.batch_size=2", "train.micro_batch_size=4"}, 2,
                ": train.micro_batch_size (4) exceeds train.batch_size (2)");
    check_fails((char *[]){"lora.enabled=false"}, 1,
                "lora.enabled and train.full_finetune are both false: nothing to train");
    check_fails((char *[]){"train.full_finetune=true"}, 1,
                "lora.enabled and train.full_finetune are both true: choose one");
    check_fails((char *[]){"lora.targets=[]"}, 1, "lora.targets: empty while lora.enabled is true");
    check_fails((char *[]){"train.steps=10", "schedule.warmup_steps=11"}, 2,
                "schedule.warmup_steps (11) exceeds train.steps (10)");
    check_fails((char *[]){"train.steps=10", "train.epochs=2"}, 2,
                "train.steps (10) and train.epochs (2) are both set: give one");
    check_fails((char *[]){"model.weights=m.gguf"}, 1, "model.preset and model.weights are both set");
    check_fails((char *[]){"model.preset=", "model.weights=m.gguf", "model.num_layers=2"}, 3,
                "model.num_layers cannot change a model loaded from model.weights");
    check_fails((char *[]){"model.generation=2"}, 1,
                "model.generation (2) contradicts model.preset gemma3_270m (generation 3)");
    check_fails((char *[]){"model.num_query_heads=3", "model.num_key_value_heads=2"}, 2,
                "model.num_query_heads (3) must be a multiple of model.num_key_value_heads (2)");
    check_fails((char *[]){"optimizer.momentum=0.9"}, 1,
                "optimizer.momentum applies to sgd only (optimizer.name is adamw)");
    check_fails((char *[]){"schedule.min_learning_rate=1e-3"}, 1,
                "schedule.min_learning_rate (0.001) exceeds optimizer.learning_rate (5e-05)");
    check_fails((char *[]){"schedule.min_learning_rate=1e-6", "schedule.min_learning_rate_ratio=0.1"}, 2,
                "schedule.min_learning_rate and schedule.min_learning_rate_ratio are both set");
    check_fails((char *[]){"eval.every_steps=10"}, 1, "eval.every_steps is set but data.eval is empty");
    check_fails((char *[]){"checkpoint.resume=latest"}, 1,
                "checkpoint.dir: required by checkpoint.resume: latest");
    /* and the good variants pass */
    gt_config c;
    ck_assert_msg(load_text(MINIMAL,
                            (char *[]){"optimizer.name=sgd", "optimizer.momentum=0.9", "train.batch_size=8",
                                       "train.micro_batch_size=2", "model.weights=", "lora.enabled=false",
                                       "train.full_finetune=true"},
                            7, &c, NULL) == 0,
                  "%s", err);
}
END_TEST

/* Keys and types from the reference table: "| `key` | type | `default` | allowed | meaning |". */
typedef struct {
    char key[64], type[16], dflt[64], allowed[256];
} key_info;

static int read_reference(key_info *out, int max) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    gt_config_reference(f);
    fclose(f);
    int n = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "| `", 3)) continue;
        ck_assert(n < max);
        key_info *k = &out[n++];
        int got = sscanf(line, "| `%63[^`]` | %15[^ ] | `%63[^`]` | %255[^|]|", k->key, k->type, k->dflt,
                         k->allowed);
        if (got < 4) { /* empty default or allowed column */
            k->allowed[0] = 0;
            if (got < 3) k->dflt[0] = 0;
            if (got < 3) sscanf(line, "| `%63[^`]` | %15[^ ] | `` | %255[^|]|", k->key, k->type, k->allowed);
        }
        size_t l = strlen(k->allowed);
        while (l && k->allowed[l - 1] == ' ') k->allowed[--l] = 0;
    }
    free(buf);
    return n;
}

/* A valid value for key k that differs from its default. */
static void other_value(const key_info *k, char *v, size_t n) {
    if (!strcmp(k->type, "string")) {
        if (!strcmp(k->key, "model.preset"))
            snprintf(v, n, "gemma2_instruct_2b_en");
        else
            snprintf(v, n, "\"we'ird: \\\"%s\\\" #1 \\u00fcn\\x09\\\\ yes\"", k->key);
    } else if (!strcmp(k->type, "integer")) {
        snprintf(v, n, "%lld", atoll(k->dflt) + 1);
    } else if (!strcmp(k->type, "number")) {
        snprintf(v, n, "0.33333333333333331"); /* in every range, needs all 17 digits */
    } else if (!strcmp(k->type, "bool")) {
        snprintf(v, n, "%s", strcmp(k->dflt, "true") ? "true" : "false");
    } else if (!strcmp(k->type, "enum")) {
        const char *last = strrchr(k->allowed, ' ');
        snprintf(v, n, "%s", last ? last + 1 : k->allowed);
    } else if (!strcmp(k->type, "mapping")) { /* model.architecture */
        snprintf(v, n, "{num_layers: 3, use_qk_norm: false, rope_local_base: 0.33333333333333331}");
    } else { /* list */
        if (k->allowed[0])
            snprintf(v, n, "[ffw_linear, key, attention_output]");
        else
            snprintf(v, n, "[\"a b\", \"x: y\", norm]");
    }
}

START_TEST(effective_config_round_trip) {
    static key_info keys[200];
    int n = read_reference(keys, 200);
    ck_assert_int_ge(n, 60);
    gt_config def, all, one, back;
    gt_config_defaults(&def);
    all = def;
    int enums_with_one_choice = 0;
    for (int i = 0; i < n; i++) {
        char kv[512], v[256];
        other_value(&keys[i], v, sizeof v);
        snprintf(kv, sizeof kv, "%s=%s", keys[i].key, v);
        ck_assert_msg(gt_config_override(&all, kv, err, sizeof err) == 0, "%s", err);
        /* each key fills its own field: alone, it is the only difference from the defaults */
        one = def;
        ck_assert_msg(gt_config_override(&one, kv, err, sizeof err) == 0, "%s", err);
        const char *d = gt_config_diff(&one, &def);
        if (!d && !strcmp(keys[i].type, "enum") && !strchr(keys[i].allowed, ',')) {
            enums_with_one_choice++; /* model.dtype */
            continue;
        }
        ck_assert_msg(d && !strcmp(d, keys[i].key), "%s changed %s", kv, d ? d : "nothing");
    }
    ck_assert_int_eq(enums_with_one_choice, 1);
    ck_assert_int_eq(all.lora.targets[2], GT_LORA_ATTN_OUT);
    ck_assert_str_eq(all.output_dir, "we'ird: \"output_dir\" #1 \xc3\xbcn\t\\ yes");
    ck_assert(all.optimizer.beta_2 == 1.0 / 3);

    /* write, parse back: the same struct, byte for byte */
    gt_config *cases[] = {&def, &all};
    for (int k = 0; k < 2; k++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        gt_config_write(cases[k], f);
        fclose(f);
        gt_config_defaults(&back);
        ck_assert_msg(gt_config_parse_text(buf, len, "effective.yaml", &back, err, sizeof err) == 0, "%s\n%s",
                      err, buf);
        const char *d = gt_config_diff(cases[k], &back);
        ck_assert_msg(d == NULL, "%s differs after the round trip:\n%s", d, buf);
        ck_assert(memcmp(cases[k], &back, sizeof back) == 0);
        /* every key is written */
        for (int i = 0; i < n; i++) {
            const char *leaf = strrchr(keys[i].key, '.');
            char pat[80];
            snprintf(pat, sizeof pat, "%s%s: ", leaf ? "\n  " : "\n", leaf ? leaf + 1 : keys[i].key);
            ck_assert_msg(strstr(buf, pat), "%s missing", keys[i].key);
        }
        if (k == 0) {
            ck_assert_msg(strstr(buf, "\n  learning_rate: 5.0e-05\n"), "%s",
                          buf); /* a float to YAML 1.1 readers too */
            ck_assert_msg(strstr(buf, "\n  targets: [query, value]\n"), "%s", buf);
        }
        free(buf);
    }
}
END_TEST

/* Every allowed value of every enum key is parsed into the module's enum and written back under
 * its own name; checkpoint.resume takes its two words or a path. */
START_TEST(enum_values_decode_and_write_back) {
    static key_info keys[200];
    int n = read_reference(keys, 200), tried = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(keys[i].type, "enum")) continue;
        char names[256], *save = NULL;
        snprintf(names, sizeof names, "%s", keys[i].allowed);
        for (char *v = strtok_r(names, ", ", &save); v; v = strtok_r(NULL, ", ", &save)) {
            gt_config c;
            char kv[512], pat[128], *buf = NULL;
            size_t len = 0;
            gt_config_defaults(&c);
            snprintf(kv, sizeof kv, "%s=%s", keys[i].key, v);
            ck_assert_msg(gt_config_override(&c, kv, err, sizeof err) == 0, "%s", err);
            FILE *f = open_memstream(&buf, &len);
            gt_config_write(&c, f);
            fclose(f);
            snprintf(pat, sizeof pat, "\n  %s: %s\n", strrchr(keys[i].key, '.') + 1, v);
            ck_assert_msg(strstr(buf, pat), "%s: no '%s' in\n%s", kv, pat, buf);
            free(buf);
            tried++;
        }
    }
    ck_assert_int_eq(tried, 33); /* the values of the 12 enum keys */
    gt_config c;
    gt_config_defaults(&c);
    const char *ov[] = {"optimizer.name=sgd", "schedule.name=cosine", "data.format=chat",
                        "data.template=gemma_chat", "data.on_bad_line=skip", "train.loss_normalization=keras",
                        "train.on_nonfinite=skip", "logging.progress=plain", "model.frozen_dtype=bf16",
                        "lora.targets=[ffw_gating_2, key]", "model.compute_dtype=bfloat16"};
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++)
        ck_assert_msg(gt_config_override(&c, ov[i], err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.optimizer.name, GT_OPT_SGD);
    ck_assert_int_eq(c.schedule.name, GT_SCHED_COSINE);
    ck_assert_int_eq(c.data.format, GT_DS_CHAT);
    ck_assert_int_eq(c.data.template_, GT_TEMPLATE_GEMMA_CHAT);
    ck_assert_int_eq(c.data.on_bad_line, GT_BAD_LINE_SKIP);
    ck_assert_int_eq(c.train.loss_normalization, GT_NORM_KERAS);
    ck_assert_int_eq(c.train.on_nonfinite, GT_NONFINITE_SKIP);
    ck_assert_int_eq(c.logging.progress, GT_PROGRESS_PLAIN);
    ck_assert_int_eq(c.model.frozen_dtype, GT_FROZEN_BF16);
    ck_assert_int_eq(c.model.compute_dtype, GT_COMPUTE_BFLOAT16);
    ck_assert_int_eq(c.lora.n_targets, 2);
    ck_assert_int_eq(c.lora.targets[0], GT_LORA_UP);
    ck_assert_int_eq(c.lora.targets[1], GT_LORA_KEY);
    /* checkpoint.resume: none | latest | a path */
    ck_assert_msg(gt_config_override(&c, "checkpoint.resume=latest", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.checkpoint.resume, GT_RESUME_LATEST);
    ck_assert_msg(gt_config_override(&c, "checkpoint.resume=ck/step-00000010.h5", err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(c.checkpoint.resume, GT_RESUME_PATH);
    ck_assert_str_eq(c.checkpoint.resume_path, "ck/step-00000010.h5");
    ck_assert_msg(gt_config_override(&c, "checkpoint.resume=none", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.checkpoint.resume, GT_RESUME_NONE);
    ck_assert_str_eq(c.checkpoint.resume_path, ""); /* cleared: equal configs are equal bytes */
    ck_assert_msg(gt_config_override(&c, "checkpoint.resume=\"\"", err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.checkpoint.resume, GT_RESUME_PATH);
    check_fails((char *[]){"checkpoint.resume=\"\""}, 1, ": checkpoint.resume: empty (none, latest or a path)");
}
END_TEST

START_TEST(example_configs_parse) {
    gt_config c, back;
    /* every example config loads for its job, and the data it names ships with the repository */
    static const struct { const char *path; gt_cfg_purpose purpose; } ex[] = {
        {"configs/gemma3-270m-full.yaml", GT_CFG_TRAIN},
        {"configs/gemma3-270m-chat-packing.yaml", GT_CFG_TRAIN},
        {"configs/gemma3-270m-eval.yaml", GT_CFG_EVAL},
        {"configs/gemma4-e2b-lora.yaml", GT_CFG_TRAIN},
        {"configs/gemma4-tiny.yaml", GT_CFG_TRAIN},
    };
    for (size_t k = 0; k < sizeof ex / sizeof ex[0]; k++) {
        ck_assert_msg(gt_config_load_for(ex[k].path, NULL, 0, ex[k].purpose, &c, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(!c.data.train[0] || access(c.data.train, R_OK) == 0, "%s: %s", ex[k].path, c.data.train);
        ck_assert_msg(access(c.data.eval, R_OK) == 0, "%s: %s", ex[k].path, c.data.eval);
    }
    ck_assert_int_ne(gt_config_load("configs/gemma3-270m-eval.yaml", NULL, 0, &c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "nothing to train"), "%s", err); /* an eval config is not a training one */
    ck_assert_msg(gt_config_load("configs/tiny.yaml", NULL, 0, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.model.generation, 3);
    ck_assert(c.train.full_finetune && !c.lora.enabled);
    ck_assert_int_eq(c.data.format, GT_DS_PROMPT_RESPONSE);
    ck_assert_msg(gt_config_load("configs/gemma3-270m-lora.yaml", NULL, 0, &c, err, sizeof err) == 0, "%s",
                  err);
    ck_assert(c.lora.enabled);
    ck_assert_int_eq(c.lora.rank, 4);
    ck_assert_int_eq(c.lora.n_targets, 2);
    ck_assert_int_eq(c.train.steps, 300);
    /* the data ships with the repository (the weights come from `make model`) */
    ck_assert_str_eq(c.data.eval, "datasets/debian-packages/eval.jsonl");
    ck_assert_msg(access(c.data.train, R_OK) == 0 && access(c.data.eval, R_OK) == 0, "%s, %s", c.data.train,
                  c.data.eval);
    ck_assert_msg(strstr(c.model.weights, ".gguf"), "%s", c.model.weights);
    /* the effective config of an example loads as a config file of its own */
    char path[64];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    gt_config_write(&c, f);
    fclose(f);
    ck_assert_msg(load_text(buf, NULL, 0, &back, path) == 0, "%s", err);
    ck_assert(memcmp(&c, &back, sizeof c) == 0);
    free(buf);
}
END_TEST

START_TEST(reference_lists_every_key) {
    static key_info keys[200];
    int n = read_reference(keys, 200);
    const char *want[] = {"model.preset",
                          "model.weights",
                          "model.dtype",
                          "model.init_std",
                          "tokenizer",
                          "data.train",
                          "data.packing",
                          "data.on_bad_line",
                          "lora.targets",
                          "optimizer.exclude_from_weight_decay",
                          "schedule.min_learning_rate_ratio",
                          "train.epochs",
                          "train.on_nonfinite",
                          "eval.per_example_output",
                          "checkpoint.resume",
                          "logging.progress",
                          "output_dir"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (int i = 0; i < n; i++) found += !strcmp(keys[i].key, want[w]);
        ck_assert_msg(found == 1, "%s listed %d times", want[w], found);
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(keys[i].key, "optimizer.learning_rate")) {
            ck_assert_str_eq(keys[i].type, "number");
            ck_assert_str_eq(keys[i].dflt, "5e-5");
            ck_assert_str_eq(keys[i].allowed, "(0, 10]");
        }
}
END_TEST

int main(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, malformed_yaml);
    tcase_add_test(tc, unknown_key);
    tcase_add_test(tc, wrong_type);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, bad_enum);
    tcase_add_test(tc, missing_required_key);
    tcase_add_test(tc, duplicate_key);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, overrides);
    tcase_add_test(tc, null_values_and_empty_sections);
    tcase_add_test(tc, defaults_and_resolve);
    tcase_add_test(tc, cross_field_checks);
    tcase_add_test(tc, effective_config_round_trip);
    tcase_add_test(tc, enum_values_decode_and_write_back);
    tcase_add_test(tc, example_configs_parse);
    tcase_add_test(tc, reference_lists_every_key);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
