#include "train/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { T_STR, T_INT, T_FLOAT, T_BOOL, T_ENUM, T_LIST } ftype;

typedef struct {
    const char *path;      /* dotted key */
    ftype type;
    size_t off, size;      /* field; size of char arrays (per item for lists) */
    const char *dflt;      /* default as YAML text (lists: comma-separated) */
    double lo, hi;         /* numeric range */
    const char *choices;   /* enums and list items: "a|b|c"; NULL = free */
    size_t count_off;      /* lists: offset of the int count */
} row;

#define F(field) offsetof(gt_config, field), sizeof(((gt_config *)0)->field)
#define L(field, cnt) offsetof(gt_config, field), sizeof(((gt_config *)0)->field[0])
#define BIG 9.2e18

static const row schema[] = {
    /* model: a preset gives shapes; the architecture keys override it or build a custom model */
    {"model.preset", T_STR, F(model.preset), "", 0, 0, NULL, 0},
    {"model.weights", T_STR, F(model.weights), "", 0, 0, NULL, 0},        /* GGUF file; empty: random init */
    {"model.dtype", T_ENUM, F(model.dtype), "float32", 0, 0, "float32", 0},
    {"model.generation", T_INT, F(model.generation), "0", 0, 3, NULL, 0}, /* 0: from preset/weights */
    {"model.vocab_size", T_INT, F(model.vocab_size), "0", 0, 2147483647, NULL, 0},
    {"model.num_layers", T_INT, F(model.num_layers), "0", 0, 1024, NULL, 0},
    {"model.hidden_dim", T_INT, F(model.hidden_dim), "0", 0, 65536, NULL, 0},
    {"model.intermediate_dim", T_INT, F(model.intermediate_dim), "0", 0, 1 << 20, NULL, 0},
    {"model.num_query_heads", T_INT, F(model.num_query_heads), "0", 0, 1024, NULL, 0},
    {"model.num_key_value_heads", T_INT, F(model.num_key_value_heads), "0", 0, 1024, NULL, 0},
    {"model.head_dim", T_INT, F(model.head_dim), "0", 0, 4096, NULL, 0},
    {"model.sliding_window_size", T_INT, F(model.sliding_window_size), "-1", -1, 1 << 30, NULL, 0}, /* -1: default */
    {"model.attention_logit_soft_cap", T_FLOAT, F(model.attention_logit_soft_cap), "-1", -1, 1e6, NULL, 0},
    {"model.final_logit_soft_cap", T_FLOAT, F(model.final_logit_soft_cap), "-1", -1, 1e6, NULL, 0},
    {"model.init_seed", T_INT, F(model.init_seed), "0", 0, BIG, NULL, 0},
    {"model.init_std", T_FLOAT, F(model.init_std), "0.02", 0, 10, NULL, 0},
    {"tokenizer", T_STR, F(tokenizer), "", 0, 0, NULL, 0},                /* empty: the model file's */
    {"data.train", T_STR, F(data.train), "", 0, 0, NULL, 0},
    {"data.eval", T_STR, F(data.eval), "", 0, 0, NULL, 0},
    {"data.format", T_ENUM, F(data.format), "auto", 0, 0, "auto|prompt_response|text|chat", 0},
    {"data.sequence_length", T_INT, F(data.sequence_length), "256", 2, 1 << 20, NULL, 0},
    {"data.template", T_ENUM, F(data.template_), "none", 0, 0, "none|gemma_chat", 0},
    {"data.packing", T_BOOL, F(data.packing), "false", 0, 0, NULL, 0}, /* several examples per row */
    {"data.shuffle", T_BOOL, F(data.shuffle), "true", 0, 0, NULL, 0},
    {"data.shuffle_seed", T_INT, F(data.shuffle_seed), "0", 0, BIG, NULL, 0},
    {"data.add_start_token", T_BOOL, F(data.add_start_token), "true", 0, 0, NULL, 0},
    {"data.add_end_token", T_BOOL, F(data.add_end_token), "true", 0, 0, NULL, 0},
    {"data.on_bad_line", T_ENUM, F(data.on_bad_line), "fail", 0, 0, "fail|skip", 0},
    {"lora.enabled", T_BOOL, F(lora.enabled), "true", 0, 0, NULL, 0},
    {"lora.rank", T_INT, F(lora.rank), "4", 1, 4096, NULL, 0},
    {"lora.alpha", T_FLOAT, F(lora.alpha), "0", 0, 1e6, NULL, 0},          /* 0: alpha = rank (Keras) */
    {"lora.dropout", T_FLOAT, F(lora.dropout), "0", 0, 0, NULL, 0},       /* only 0: Keras has none */
    {"lora.targets", T_LIST, L(lora.targets, 0), "query,value", 0, 0,
     "query|key|value|attention_output|ffw_gating|ffw_gating_2|ffw_linear", offsetof(gt_config, lora.n_targets)},
    {"lora.seed", T_INT, F(lora.seed), "0", 0, BIG, NULL, 0},
    {"optimizer.name", T_ENUM, F(optimizer.name), "adamw", 0, 0, "adamw|adam|sgd", 0},
    {"optimizer.learning_rate", T_FLOAT, F(optimizer.learning_rate), "5e-5", 0, 10, NULL, 0},
    {"optimizer.beta_1", T_FLOAT, F(optimizer.beta_1), "0.9", 0, 0.999999, NULL, 0},
    {"optimizer.beta_2", T_FLOAT, F(optimizer.beta_2), "0.999", 0, 0.9999999, NULL, 0},
    {"optimizer.epsilon", T_FLOAT, F(optimizer.epsilon), "1e-7", 1e-30, 1, NULL, 0},
    {"optimizer.weight_decay", T_FLOAT, F(optimizer.weight_decay), "0.01", 0, 1, NULL, 0},
    {"optimizer.exclude_from_weight_decay", T_LIST, L(optimizer.exclude_from_weight_decay, 0), "bias,scale",
     0, 0, NULL, offsetof(gt_config, optimizer.n_exclude)},
    {"optimizer.momentum", T_FLOAT, F(optimizer.momentum), "0", 0, 0.999999, NULL, 0},
    {"optimizer.clip_global_norm", T_FLOAT, F(optimizer.clip_global_norm), "0", 0, 1e9, NULL, 0},
    {"schedule.name", T_ENUM, F(schedule.name), "constant", 0, 0, "constant|linear|cosine", 0},
    {"schedule.warmup_steps", T_INT, F(schedule.warmup_steps), "0", 0, BIG, NULL, 0},
    {"schedule.min_learning_rate", T_FLOAT, F(schedule.min_learning_rate), "0", 0, 10, NULL, 0},
    {"train.batch_size", T_INT, F(train.batch_size), "1", 1, 1 << 20, NULL, 0},
    {"train.micro_batch_size", T_INT, F(train.micro_batch_size), "0", 0, 1 << 20, NULL, 0}, /* 0: batch_size */
    {"train.steps", T_INT, F(train.steps), "100", 1, BIG, NULL, 0},
    {"train.loss_normalization", T_ENUM, F(train.loss_normalization), "tokens", 0, 0, "tokens|keras", 0},
    {"train.seed", T_INT, F(train.seed), "0", 0, BIG, NULL, 0},
    {"train.threads", T_INT, F(train.threads), "0", 0, 1024, NULL, 0},     /* 0: all cores */
    {"train.chunk_rows", T_INT, F(train.chunk_rows), "128", 1, 1 << 20, NULL, 0}, /* LM-head rows per chunk */
    {"train.full_finetune", T_BOOL, F(train.full_finetune), "false", 0, 0, NULL, 0},
    {"train.on_nonfinite", T_ENUM, F(train.on_nonfinite), "stop", 0, 0, "stop|skip", 0},
    {"eval.every_steps", T_INT, F(eval.every_steps), "0", 0, BIG, NULL, 0},    /* 0: at the end only */
    {"eval.max_examples", T_INT, F(eval.max_examples), "0", 0, BIG, NULL, 0},  /* 0: all */
    {"eval.batch_size", T_INT, F(eval.batch_size), "4", 1, 1 << 20, NULL, 0},
    {"eval.per_example_output", T_STR, F(eval.per_example_output), "", 0, 0, NULL, 0},
    {"checkpoint.dir", T_STR, F(checkpoint.dir), "", 0, 0, NULL, 0},
    {"checkpoint.every_steps", T_INT, F(checkpoint.every_steps), "0", 0, BIG, NULL, 0},
    {"checkpoint.keep", T_INT, F(checkpoint.keep), "3", 1, 1000, NULL, 0},
    {"checkpoint.resume", T_STR, F(checkpoint.resume), "none", 0, 0, NULL, 0},
    {"logging.metrics", T_STR, F(logging.metrics), "", 0, 0, NULL, 0},
    {"logging.every_steps", T_INT, F(logging.every_steps), "1", 1, BIG, NULL, 0},
    {"logging.progress", T_ENUM, F(logging.progress), "auto", 0, 0, "auto|bar|plain", 0},
    {"output_dir", T_STR, F(output_dir), "", 0, 0, NULL, 0},
};
#define N_ROWS (sizeof schema / sizeof schema[0])

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

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), prev[128], cur[128];
    if (la > 127 || lb > 127) return 99;
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(size_t) * (lb + 1));
    }
    return prev[lb];
}

/* a is an abbreviation of b: same first letter and a's letters appear in b in order */
static bool abbreviates(const char *a, const char *b) {
    if (!*a || *a != *b) return false;
    for (; *b && *a; b++)
        if (*a == *b) a++;
    return !*a;
}

/* "unknown key 'x' (did you mean 'y'?)": the closest key in the same section, or a key with the
 * same last component elsewhere. */
static void unknown_key(const char *path, char *out, size_t n) {
    const char *best = NULL;
    size_t bd = 99;
    const char *dot = strrchr(path, '.');
    size_t plen = dot ? (size_t)(dot - path) : 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        const char *k = schema[i].path;
        size_t d = edit_distance(path, k);
        const char *kd = strrchr(k, '.');
        bool same_section = dot && kd && (size_t)(kd - k) == plen && !strncmp(k, path, plen);
        if (same_section && abbreviates(dot + 1, kd + 1)) d = 1; /* lr -> learning_rate */
        if (d < bd) bd = d, best = k;
    }
    if (best && bd <= 4) snprintf(out, n, "unknown key '%s' (did you mean '%s'?)", path, best);
    else snprintf(out, n, "unknown key '%s'", path);
}

static bool in_choices(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static void choices_text(const char *choices, char *out, size_t n) {
    snprintf(out, n, "%s", choices);
    for (char *p = out; *p; p++)
        if (*p == '|') *p = ',';
}

/* Set a scalar field from text. where: "file:line:col" or "override '...'" for messages. */
static int set_scalar(gt_config *c, const row *r, const char *v, const char *where, char *err, size_t errn) {
    char *base = (char *)c + r->off, *end = NULL;
    char ch[256];
    switch (r->type) {
    case T_STR:
        if (strlen(v) >= r->size) return snprintf(err, errn, "%s: %s: value is longer than %zu bytes", where, r->path, r->size - 1), -1;
        snprintf(base, r->size, "%s", v);
        return 0;
    case T_ENUM:
        if (!in_choices(r->choices, v)) {
            choices_text(r->choices, ch, sizeof ch);
            return snprintf(err, errn, "%s: %s: '%s' is not one of %s", where, r->path, v, ch), -1;
        }
        snprintf(base, r->size, "%s", v);
        return 0;
    case T_BOOL: {
        static const char *yes[] = {"true", "True", "TRUE", "yes", "on"}, *no[] = {"false", "False", "FALSE", "no", "off"};
        for (int i = 0; i < 5; i++) {
            if (!strcmp(v, yes[i])) return *(bool *)base = true, 0;
            if (!strcmp(v, no[i])) return *(bool *)base = false, 0;
        }
        return snprintf(err, errn, "%s: %s: expected true or false, got '%s'", where, r->path, v), -1;
    }
    case T_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return snprintf(err, errn, "%s: %s: expected an integer, got '%s'", where, r->path, v), -1;
        if ((double)x < r->lo || (double)x > r->hi)
            return snprintf(err, errn, "%s: %s: %lld is out of range [%.0f, %.0f]", where, r->path, x, r->lo, r->hi), -1;
        *(int64_t *)base = x;
        return 0;
    }
    case T_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return snprintf(err, errn, "%s: %s: expected a number, got '%s'", where, r->path, v), -1;
        if (x < r->lo || x > r->hi)
            return snprintf(err, errn, "%s: %s: %g is out of range [%g, %g]", where, r->path, x, r->lo, r->hi), -1;
        *(double *)base = x;
        return 0;
    }
    default:
        return snprintf(err, errn, "%s: %s: expected a list", where, r->path), -1;
    }
}

static int set_list(gt_config *c, const row *r, char **items, int n, const char *where, char *err, size_t errn) {
    if (n > GT_CFG_LIST) return snprintf(err, errn, "%s: %s: at most %d items", where, r->path, GT_CFG_LIST), -1;
    char ch[256];
    for (int i = 0; i < n; i++) {
        if (r->choices && !in_choices(r->choices, items[i])) {
            choices_text(r->choices, ch, sizeof ch);
            return snprintf(err, errn, "%s: %s: '%s' is not one of %s", where, r->path, items[i], ch), -1;
        }
        if (strlen(items[i]) >= r->size) return snprintf(err, errn, "%s: %s: item '%s' too long", where, r->path, items[i]), -1;
    }
    for (int i = 0; i < n; i++) snprintf((char *)c + r->off + (size_t)i * r->size, r->size, "%s", items[i]);
    *(int *)((char *)c + r->count_off) = n;
    return 0;
}

void gt_config_defaults(gt_config *c) {
    memset(c, 0, sizeof *c);
    char err[256];
    for (size_t i = 0; i < N_ROWS; i++) {
        const row *r = &schema[i];
        if (r->type != T_LIST) {
            set_scalar(c, r, r->dflt, "default", err, sizeof err);
            continue;
        }
        char buf[256], *items[GT_CFG_LIST];
        int n = 0;
        snprintf(buf, sizeof buf, "%s", r->dflt);
        for (char *t = strtok(buf, ","); t && n < GT_CFG_LIST; t = strtok(NULL, ",")) items[n++] = t;
        set_list(c, r, items, n, "default", err, sizeof err);
    }
}

/* Apply a YAML node (scalar or sequence) to one row. */
static int apply_node(gt_config *c, const row *r, yaml_document_t *doc, yaml_node_t *v, const char *where,
                      char *err, size_t errn) {
    if (r->type == T_LIST) {
        if (v->type != YAML_SEQUENCE_NODE)
            return snprintf(err, errn, "%s: %s: expected a list like [a, b]", where, r->path), -1;
        char *items[GT_CFG_LIST + 1];
        int n = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *x = yaml_document_get_node(doc, *it);
            if (!x || x->type != YAML_SCALAR_NODE)
                return snprintf(err, errn, "%s: %s: list items must be plain values", where, r->path), -1;
            if (n > GT_CFG_LIST) break;
            items[n++] = (char *)x->data.scalar.value;
        }
        return set_list(c, r, items, n, where, err, errn);
    }
    if (v->type != YAML_SCALAR_NODE)
        return snprintf(err, errn, "%s: %s: expected a single value, got a %s", where, r->path,
                        v->type == YAML_MAPPING_NODE ? "mapping" : "list"), -1;
    return set_scalar(c, r, (const char *)v->data.scalar.value, where, err, errn);
}

static int walk(gt_config *c, yaml_document_t *doc, yaml_node_t *map, const char *prefix, const char *name,
                char *err, size_t errn) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
        char where[640], path[256], msg[384];
        snprintf(where, sizeof where, "%s:%zu:%zu", name, k->start_mark.line + 1, k->start_mark.column + 1);
        if (k->type != YAML_SCALAR_NODE) return snprintf(err, errn, "%s: keys must be plain names", where), -1;
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", (const char *)k->data.scalar.value);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && !strcmp((char *)k2->data.scalar.value, (char *)k->data.scalar.value))
                return snprintf(err, errn, "%s: duplicate key '%s' (first at line %zu)", where, path,
                                k2->start_mark.line + 1), -1;
        }
        if (is_section(path)) {
            if (v->type != YAML_MAPPING_NODE)
                return snprintf(err, errn, "%s: '%s' must be a mapping of keys", where, path), -1;
            if (walk(c, doc, v, path, name, err, errn)) return -1;
            continue;
        }
        const row *r = find_row(path);
        if (!r) {
            unknown_key(path, msg, sizeof msg);
            return snprintf(err, errn, "%s: %s", where, msg), -1;
        }
        snprintf(where, sizeof where, "%s:%zu:%zu", name, v->start_mark.line + 1, v->start_mark.column + 1);
        if (apply_node(c, r, doc, v, where, err, errn)) return -1;
    }
    return 0;
}

int gt_config_parse_text(const char *text, size_t len, const char *name, gt_config *c, char *err,
                         size_t errn) {
    yaml_parser_t ps;
    yaml_document_t doc;
    yaml_parser_initialize(&ps);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    if (!yaml_parser_load(&ps, &doc)) {
        snprintf(err, errn, "%s:%zu:%zu: malformed YAML: %s", name, ps.problem_mark.line + 1,
                 ps.problem_mark.column + 1, ps.problem ? ps.problem : "parse error");
        yaml_parser_delete(&ps);
        return -1;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
        if (root->type != YAML_MAPPING_NODE) {
            snprintf(err, errn, "%s:%zu:%zu: the config must be a mapping of keys", name,
                     root->start_mark.line + 1, root->start_mark.column + 1);
            rc = -1;
        } else
            rc = walk(c, &doc, root, "", name, err, errn);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return rc;
}

int gt_config_override(gt_config *c, const char *kv, char *err, size_t errn) {
    char where[300], msg[384];
    snprintf(where, sizeof where, "override '%s'", kv);
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return snprintf(err, errn, "%s: expected key.path=value", where), -1;
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(eq - kv), kv);
    const row *r = find_row(path);
    if (!r) {
        unknown_key(path, msg, sizeof msg);
        return snprintf(err, errn, "%s: %s", where, msg), -1;
    }
    yaml_parser_t ps;
    yaml_document_t doc;
    yaml_parser_initialize(&ps);
    const char *val = eq + 1;
    yaml_parser_set_input_string(&ps, (const unsigned char *)val, strlen(val));
    if (!yaml_parser_load(&ps, &doc)) {
        yaml_parser_delete(&ps);
        return snprintf(err, errn, "%s: malformed value", where), -1;
    }
    yaml_node_t *v = yaml_document_get_root_node(&doc);
    int rc;
    if (!v) rc = set_scalar(c, r, "", where, err, errn); /* "key=" clears a string */
    else rc = apply_node(c, r, &doc, v, where, err, errn);
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    return rc;
}

int gt_config_check(const gt_config *c, char *err, size_t errn) {
    if (!c->data.train[0] && !c->data.eval[0])
        return snprintf(err, errn, "data.train: required (a JSONL file)"), -1;
    if (!c->model.preset[0] && !c->model.weights[0] && !c->model.generation)
        return snprintf(err, errn, "model: give model.preset, model.weights or a custom architecture "
                        "(model.generation and shapes)"), -1;
    if (!c->lora.enabled && !c->train.full_finetune)
        return snprintf(err, errn, "lora.enabled is false and train.full_finetune is false: nothing to train"), -1;
    if (c->lora.enabled && c->train.full_finetune)
        return snprintf(err, errn, "lora.enabled and train.full_finetune are both true: choose one"), -1;
    if (c->lora.enabled && c->lora.n_targets == 0) return snprintf(err, errn, "lora.targets: empty"), -1;
    int64_t mb = c->train.micro_batch_size ? c->train.micro_batch_size : c->train.batch_size;
    if (c->train.batch_size % mb)
        return snprintf(err, errn, "train.batch_size (%lld) must be a multiple of train.micro_batch_size (%lld)",
                        (long long)c->train.batch_size, (long long)mb), -1;
    if (c->schedule.warmup_steps > c->train.steps)
        return snprintf(err, errn, "schedule.warmup_steps (%lld) exceeds train.steps (%lld)",
                        (long long)c->schedule.warmup_steps, (long long)c->train.steps), -1;
    return 0;
}

int gt_config_load(const char *path, char *const *overrides, int n_overrides, gt_config *c,
                   char *err, size_t errn) {
    gt_config_defaults(c);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, errn, "%s: %s", path, strerror(errno)), -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)(n > 0 ? n : 1));
    size_t got = text ? fread(text, 1, (size_t)(n > 0 ? n : 0), f) : 0;
    fclose(f);
    if (!text || (long)got != n) {
        free(text);
        return snprintf(err, errn, "%s: cannot read", path), -1;
    }
    int rc = gt_config_parse_text(text, got, path, c, err, errn);
    free(text);
    for (int i = 0; i < n_overrides && !rc; i++) rc = gt_config_override(c, overrides[i], err, errn);
    if (!rc) rc = gt_config_check(c, err, errn);
    return rc;
}

static void write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void gt_config_write(const gt_config *c, FILE *f) {
    char section[64] = "";
    for (size_t i = 0; i < N_ROWS; i++) {
        const row *r = &schema[i];
        const char *dot = strchr(r->path, '.');
        const char *leaf = r->path;
        if (dot) {
            if (strncmp(section, r->path, (size_t)(dot - r->path)) || section[dot - r->path]) {
                snprintf(section, sizeof section, "%.*s", (int)(dot - r->path), r->path);
                fprintf(f, "%s:\n", section);
            }
            leaf = dot + 1;
        } else {
            section[0] = 0;
        }
        fprintf(f, "%s%s: ", dot ? "  " : "", leaf);
        const char *base = (const char *)c + r->off;
        switch (r->type) {
        case T_STR: case T_ENUM: write_string(f, base); break;
        case T_BOOL: fputs(*(const bool *)base ? "true" : "false", f); break;
        case T_INT: fprintf(f, "%lld", (long long)*(const int64_t *)base); break;
        case T_FLOAT: fprintf(f, "%.17g", *(const double *)base); break;
        case T_LIST: {
            int n = *(const int *)((const char *)c + r->count_off);
            fputc('[', f);
            for (int k = 0; k < n; k++) {
                if (k) fputs(", ", f);
                write_string(f, base + (size_t)k * r->size);
            }
            fputc(']', f);
            break;
        }
        }
        fputc('\n', f);
    }
}
