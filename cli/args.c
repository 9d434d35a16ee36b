/* args.c: helpers of the subcommands' getopt_long parsers (cli/args.h). */
#include "cli/args.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_prefix; /* the abbreviated long option cli_getopt just refused */

void cli_getopt_reset(void) {
    opterr = 0;
    optind = 1;
    g_prefix = NULL;
}

int cli_getopt(int argc, char *const *argv, const char *optstring, const struct option *opts) {
    int at = optind, idx = -1;
    int o = getopt_long(argc, argv, optstring, opts, &idx);
    g_prefix = NULL;
    /* idx is set only for a long option taken; argv[at] is it (optstring's "-": no reordering) */
    if (idx >= 0 && at < argc && !strncmp(argv[at], "--", 2) &&
        strcspn(argv[at] + 2, "=") != strlen(opts[idx].name)) {
        g_prefix = argv[at];
        return '?';
    }
    return o;
}

const char *cli_rejected(char *const *argv, char *buf, size_t n) {
    if (g_prefix) return g_prefix;
    const char *a = argv[optind - 1];
    /* a short option may sit inside a cluster (-xy): name the letter; optopt is 0 or a long
     * option's value for a long one, and optind has moved past it */
    if (optopt > 0 && optopt < 256 && strncmp(a, "--", 2)) {
        snprintf(buf, n, "-%c", optopt);
        return buf;
    }
    return a;
}

int cli_parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}
