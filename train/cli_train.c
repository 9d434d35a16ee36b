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
                "       gemmatrain %s --keys    (every config key: type, default, allowed values, meaning)\n"
                "  overrides use the config's keys, e.g. optimizer.learning_rate=1e-4 train.steps=50\n",
                name, name);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--keys")) {
        gt_config_reference(stdout);
        return 0;
    }
    gt_config cfg;
    char err[2048];
    if (gt_config_load(argv[1], argv + 2, argc - 2, &cfg, err, sizeof err)) {
        fprintf(stderr, "gemmatrain %s: %s\n", name, err);
        return 2;
    }
    if (!train) {
        int rc = gt_eval_job(&cfg, err, sizeof err);
        if (rc < 0) fprintf(stderr, "gemmatrain eval: %s\n", err);
        return rc < 0 ? 1 : rc;
    }
    gt_dist dist;
    if (gt_dist_init(&dist, &argc, &argv, err, sizeof err)) {
        fprintf(stderr, "gemmatrain train: %s\n", err);
        return 1;
    }
    int rc = gt_train_job(&cfg, &dist, err, sizeof err);
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
