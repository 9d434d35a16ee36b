/* gemmatrain compare: do two checkpoints hold the same trained state, bit for bit? */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "train/checkpoint.h"

int cli_compare(int argc, char **argv) {
    if (argc != 3 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: gemmatrain compare A.h5 B.h5\n"
                "  Compares two training checkpoints: every tensor under /params and /optimizer (the\n"
                "  trained weights and the optimizer state), bit for bit. Exit 0 when equal, 1 when not\n"
                "  (naming the first difference), 2 when a file cannot be read. E.g. a resumed run\n"
                "  against an uninterrupted one.\n");
        return argc == 2 ? 0 : 2;
    }
    int n, differ;
    char first[256], err[1024];
    if (gt_ckpt_compare(argv[1], argv[2], &n, &differ, first, sizeof first, err, sizeof err)) {
        fprintf(stderr, "gemmatrain compare: %s\n", err);
        return 2;
    }
    if (differ) {
        printf("%d of %d tensors differ (first: %s)\n", differ, n, first);
        return 1;
    }
    printf("same: %d tensors equal bit for bit\n", n);
    return 0;
}
