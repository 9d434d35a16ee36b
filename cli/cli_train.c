/* gemmatrain train / eval: run a YAML-configured job (train/trainer.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/trainer.h"

/* The value of "--name VALUE" or "--name=VALUE" at argv[*i] (advancing *i), else NULL. */
static const char *flag_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n)) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (!argv[*i][n] && *i + 1 < argc) return argv[++*i];
    return NULL;
}

/* eval's sugar, as overrides applied before the user's key=value ones: --model PATH evaluates
 * another model (the config's preset and architecture keys described the config's own, so they
 * go back to their defaults); --lora FILE evaluates adapters on the model, with the file's rank
 * and targets (gt_eval_job's adapters_from_file). */
static const char *const model_keys[] = {
    "model.preset=", "model.generation=", "model.vocab_size=", "model.num_layers=", "model.hidden_dim=",
    "model.intermediate_dim=", "model.num_query_heads=", "model.num_key_value_heads=", "model.head_dim=",
    "model.sliding_window_size=", "model.attention_logit_soft_cap=", "model.final_logit_soft_cap=",
    "model.architecture="};
#define N_MODEL_KEYS (int)(sizeof model_keys / sizeof model_keys[0])

static int run(int argc, char **argv, bool train) {
    const char *name = train ? "train" : "eval";
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: gemmatrain %s CONFIG.yaml %s[key.path=value ...]\n"
                "       gemmatrain %s --keys    (every config key: type, default, allowed values, meaning)\n"
                "  overrides use the config's keys, e.g. optimizer.learning_rate=1e-4 train.steps=50\n",
                name, train ? "[--overwrite] " : "[--model PATH] [--lora ADAPTER.lora.h5] ", name);
        if (train)
            fprintf(argc < 2 ? stderr : stdout,
                    "  --overwrite    a fresh run may replace the trained result in output_dir and the\n"
                    "                 metrics file (output.overwrite=true); else an existing one is refused\n");
        if (!train)
            fprintf(argc < 2 ? stderr : stdout,
                    "  --model PATH   evaluate this model (model.weights=PATH: a GGUF file, a KerasHub preset or\n"
                    "                 a Hugging Face directory); the config's model.preset and architecture\n"
                    "                 keys are dropped, its tokenizer (if set) still applies\n"
                    "  --lora FILE    evaluate these LoRA adapters on the model (lora.enabled=true\n"
                    "                 train.full_finetune=false lora.weights=FILE), a Keras .lora.h5 such as\n"
                    "                 output_dir/adapter.lora.h5; rank and targets come from the file\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--keys")) {
        gt_config_reference(stdout);
        return 0;
    }
    gt_config cfg;
    char err[2048];
    const char *model = NULL, *lora = NULL;
    char model_kv[GT_CFG_STR + 32], lora_kv[GT_CFG_STR + 32];
    /* the sugar's overrides first, then the user's */
    char **ov = calloc((size_t)(argc + N_MODEL_KEYS + 4), sizeof *ov), **user = calloc((size_t)argc, sizeof *user);
    int nov = 0, nuser = 0, rc;
    if (!ov || !user) return free(ov), free(user), fprintf(stderr, "gemmatrain %s: out of memory\n", name), 1;
    for (int i = 2; i < argc; i++) {
        const char *v;
        if (!train && (v = flag_value(argc, argv, &i, "--model"))) model = v;
        else if (!train && (v = flag_value(argc, argv, &i, "--lora"))) lora = v;
        else if (train && !strcmp(argv[i], "--overwrite")) user[nuser++] = "output.overwrite=true";
        else if (!train && !strncmp(argv[i], "--", 2)) {
            fprintf(stderr, "gemmatrain eval: unknown option '%s' (or it lacks its value)\n", argv[i]);
            free(ov);
            free(user);
            return 2;
        } else user[nuser++] = argv[i];
    }
    if (model) {
        for (int k = 0; k < N_MODEL_KEYS; k++) ov[nov++] = (char *)model_keys[k];
        snprintf(model_kv, sizeof model_kv, "model.weights=%s", model);
        ov[nov++] = model_kv;
    }
    if (lora) {
        snprintf(lora_kv, sizeof lora_kv, "lora.weights=%s", lora);
        ov[nov++] = "lora.enabled=true";
        ov[nov++] = "train.full_finetune=false";
        ov[nov++] = lora_kv;
    }
    for (int i = 0; i < nuser; i++) ov[nov++] = user[i];
    rc = gt_config_load_for(argv[1], ov, nov, train ? GT_CFG_TRAIN : GT_CFG_EVAL, &cfg, err, sizeof err);
    free(ov);
    free(user);
    if (rc) {
        fprintf(stderr, "gemmatrain %s: %s\n", name, err);
        return 2;
    }
    if (!train) {
        rc = gt_eval_job(&cfg, lora != NULL, err, sizeof err);
        if (rc < 0) fprintf(stderr, "gemmatrain eval: %s\n", err);
        return rc < 0 ? 1 : rc;
    }
    gt_dist dist;
    if (gt_dist_init(&dist, &argc, &argv, err, sizeof err)) {
        fprintf(stderr, "gemmatrain train: %s\n", err);
        return 1;
    }
    rc = gt_train_job(&cfg, &dist, err, sizeof err);
    if (rc < 0) {
        if (dist.world > 1) fprintf(stderr, "gemmatrain train: rank %d: %s\n", dist.rank, err);
        else fprintf(stderr, "gemmatrain train: %s\n", err);
        fflush(stderr);
        gt_dist_abort(&dist, 1); /* the other ranks may be waiting in a collective */
    }
    gt_dist_finalize(&dist);
    return rc < 0 ? 1 : rc;
}

int cli_train(int argc, char **argv) { return run(argc, argv, true); }
int cli_eval(int argc, char **argv) { return run(argc, argv, false); }
