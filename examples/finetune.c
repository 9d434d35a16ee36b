/* finetune.c: a training job from a YAML config, through the installed library.
 *
 *   make install PREFIX=$HOME/.local
 *   export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig LD_LIBRARY_PATH=$HOME/.local/lib
 *   cc examples/finetune.c $(pkg-config --cflags --libs gemmatrain) -o finetune
 *   ./finetune configs/tiny.yaml train.steps=10 output_dir=out/example
 *
 * The same job as `gemmatrain train CONFIG [key=value ...]` in one process; the config's keys
 * are README's config reference (`gemmatrain train --keys`). */
#include <stdio.h>

#include "train/config.h"
#include "train/trainer.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONFIG.yaml [key.path=value ...]\n", argv[0]);
        return 2;
    }
    gt_config cfg;
    char err[2048];
    if (gt_config_load(argv[1], argv + 2, argc - 2, &cfg, err, sizeof err)) {
        fprintf(stderr, "finetune: %s\n", err);
        return 2;
    }
    int rc = gt_train_job(&cfg, NULL, err, sizeof err); /* NULL: one process, no MPI */
    if (rc < 0) fprintf(stderr, "finetune: %s\n", err);
    return rc < 0 ? 1 : rc;
}
