/* gemmatrain command-line entry point: dispatches to subcommands; prints library errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/blas.h"
#include "autograd/real.h"
#include "cli/cli.h"
#include "models/io/h5io.h"

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    /* Subcommands (train, eval, generate, tokenize, export, convert, plot) register here. */
    {"train", "fine-tune a model from a YAML config (LoRA or full)", cli_train},
    {"eval", "weighted loss and perplexity of a model on a dataset", cli_eval},
    {"generate", "generate text from a model (or --score a text)", cli_generate},
    {"tokenize", "encode JSONL text to token ids, or decode ids (--decode)", cli_tokenize},
    {"export", "write a KerasHub preset (or a Keras .lora.h5) from a config's model and adapters", cli_export},
    {"convert", "convert a GGUF file or KerasHub preset to a KerasHub preset", cli_convert},
    {"plot", "draw a run's loss curves (its metrics JSONL) as an SVG", cli_plot},
    {"compare", "compare two checkpoints' trained state bit for bit", cli_compare},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f,
            "gemmatrain %s: training and fine-tuning for Gemma language models\n"
            "\n"
            "usage: gemmatrain [--help | --version] <command> [args]\n"
            "\n"
            "options:\n"
            "  -h, --help      show this help and exit\n"
            "  -V, --version   print the version and build facts and exit\n",
            GT_VERSION);
    if (commands[0].name) {
        fprintf(f, "\ncommands:\n");
        for (const command *c = commands; c->name; c++) fprintf(f, "  %-10s %s\n", c->name, c->summary);
    } else {
        fprintf(f, "\nno subcommands are built yet (train, eval, generate, tokenize, export arrive "
                   "in later releases)\n");
    }
    fprintf(f, "\nenvironment:\n  GT_THREADS      threads for the engine and OpenBLAS (default: "
               "all cores)\n");
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    gt_h5_process_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("gemmatrain %s (engine %s, threads %d)\n", GT_VERSION, GT_REAL_NAME, gt_threads());
        return 0;
    }
    for (const command *c = commands; c->name; c++)
        if (!strcmp(cmd, c->name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "gemmatrain: unknown command '%s' (see gemmatrain --help)\n", cmd);
    return 2;
}
