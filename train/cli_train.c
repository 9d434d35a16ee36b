/* gemmatrain train / eval: run a YAML-configured job (train/trainer.h). */
#include <stdio.h>
#include <string.h>

#include "train/cli.h"
#include "train/trainer.h"

static int run(int argc, char **argv, bool train) {
    const char *name = train ? "train" : "eval";
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: gemmatrain %s CONFIG.yaml [key.path=value ...]\n"
                "  overrides use the config's keys, e.g. optimizer.learning_rate=1e-4 train.steps=50\n"
                "  (every key, its default and its range: README.md, 'Config reference')\n", name);
        return argc < 2 ? 2 : 0;
    }
    gt_config cfg;
    char err[2048];
    if (gt_config_load(argv[1], argv + 2, argc - 2, &cfg, err, sizeof err)) {
        fprintf(stderr, "gemmatrain %s: %s\n", name, err);
        return 2;
    }
    int rc = train ? gt_train_job(&cfg, err, sizeof err) : gt_eval_job(&cfg, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "gemmatrain %s: %s\n", name, err);
        return 1;
    }
    return rc;
}

int cli_train(int argc, char **argv) { return run(argc, argv, true); }
int cli_eval(int argc, char **argv) { return run(argc, argv, false); }
