/* args.h: what the subcommands' getopt_long parsers share (cli/). Each parser sets opterr = 0
 * and prints its own messages, with the command's name, and exits 2 on a usage error. */
#ifndef GT_CLI_ARGS_H
#define GT_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

struct option;

/* Starts a getopt_long scan of a fresh argv (our messages, not getopt's). */
void cli_getopt_reset(void);

/* getopt_long, except that a long option must be spelt in full: getopt_long takes any unique
 * prefix ("--lora" for --lora-only), which the hand-written parsers it replaced did not; a
 * prefix comes back as '?', an unknown option. */
int cli_getopt(int argc, char *const *argv, const char *optstring, const struct option *opts);

/* The option getopt_long just rejected ('?' or ':'), as the user wrote it: the whole argument
 * for a long option, "-c" for a short one (in buf, n bytes). */
const char *cli_rejected(char *const *argv, char *buf, size_t n);

/* A whole decimal integer >= 0: 0, or -1 (out untouched) for anything else. */
int cli_parse_i64(const char *s, int64_t *out);

#endif
