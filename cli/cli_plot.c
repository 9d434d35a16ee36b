/* gemmatrain plot: a run's metrics JSONL (logging.metrics) -> loss-curve SVG (train/plot.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "train/plot.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gemmatrain plot METRICS.jsonl [-o OUT.svg] [--title TEXT]\n"
            "\n"
            "Draws a training run's loss curves from its logging.metrics file as an SVG: train loss,\n"
            "eval loss (with markers) against step, and the learning rate on a right-hand axis.\n"
            "A step logged twice (a resumed run) keeps its last value; nan / inf / null values are\n"
            "left out and counted. Prints the path of the SVG.\n"
            "\n"
            "options:\n"
            "  -o, --output OUT  the SVG to write (default: METRICS with .jsonl replaced by .svg)\n"
            "  -t, --title TEXT  a title above the plot\n"
            "  -h, --help        show this help and exit\n");
}

/* METRICS.jsonl -> METRICS.svg; any other name gets .svg appended. */
static char *default_output(const char *in) {
    size_t n = strlen(in);
    if (n > 6 && !strcmp(in + n - 6, ".jsonl")) n -= 6;
    char *out = malloc(n + 5);
    if (out) {
        memcpy(out, in, n);
        memcpy(out + n, ".svg", 5);
    }
    return out;
}

int cli_plot(int argc, char **argv) {
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"title", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *title = NULL;
    opterr = 0; /* our own messages, with the command's name */
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 't': title = optarg; break;
        case 'h': usage(stdout); return 0;
        case ':':
            fprintf(stderr, "gemmatrain plot: option '%s' needs a value\n", argv[optind - 1]);
            return 2;
        default:
            if (optopt) fprintf(stderr, "gemmatrain plot: unknown option '-%c'\n", optopt);
            else fprintf(stderr, "gemmatrain plot: unknown option '%s'\n", argv[optind - 1]);
            fprintf(stderr, "usage: gemmatrain plot METRICS.jsonl [-o OUT.svg] [--title TEXT]\n");
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "gemmatrain plot: %s\n", argc - optind ? "give one metrics file" : "no metrics file given");
        fprintf(stderr, "usage: gemmatrain plot METRICS.jsonl [-o OUT.svg] [--title TEXT]\n");
        return 2;
    }
    const char *in = argv[optind];
    char err[1024], *dflt = NULL;
    if (!out && !(out = dflt = default_output(in))) {
        fprintf(stderr, "gemmatrain plot: out of memory\n");
        return 1;
    }
    int rc = 1;
    gt_plot_data d;
    if (gt_plot_read(in, &d, err, sizeof err)) {
        fprintf(stderr, "gemmatrain plot: %s\n", err);
        goto done;
    }
    /* -o pointing at the metrics file itself would replace the run's log with a picture */
    struct stat si, so;
    if (!stat(in, &si) && !stat(out, &so) && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        fprintf(stderr, "gemmatrain plot: %s: is the metrics file; give another output\n", out);
        gt_plot_free(&d);
        goto done;
    }
    int64_t missing = d.loss.skipped + d.eval_loss.skipped + d.lr.skipped;
    if (missing)
        fprintf(stderr, "gemmatrain plot: note: %lld non-finite or null values left out (loss %lld, eval_loss %lld, "
                        "lr %lld)\n", (long long)missing, (long long)d.loss.skipped, (long long)d.eval_loss.skipped,
                (long long)d.lr.skipped);
    if (d.repeated)
        fprintf(stderr, "gemmatrain plot: note: %lld values logged again for the same step (a resumed run?); "
                        "the last one is plotted\n", (long long)d.repeated);
    gt_plot_opts po = {title};
    if (gt_plot_write_svg(&d, &po, out, err, sizeof err)) fprintf(stderr, "gemmatrain plot: %s\n", err);
    else {
        printf("%s\n", out);
        rc = 0;
    }
    gt_plot_free(&d);
done:
    free(dflt);
    return rc;
}
