/* cli.h: gemmatrain subcommands. Each takes the argv that follows `gemmatrain` (argv[0] is the
 * command name), prints its own errors on stderr and returns the process exit status:
 * 0 success, 1 runtime failure (bad input, unreadable file), 2 usage error. */
#ifndef GT_CLI_H
#define GT_CLI_H

/* gemmatrain tokenize: JSONL text <-> ids with a Gemma tokenizer (cli/cli_tokenize.c). */
int cli_tokenize(int argc, char **argv);

/* gemmatrain generate: KV-cached generation and scoring (cli/cli_generate.c). */
int cli_generate(int argc, char **argv);

/* gemmatrain train / eval CONFIG [overrides] (cli/cli_train.c). */
int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);

/* gemmatrain export CONFIG --out PATH / convert IN OUT (cli/cli_export.c). */
int cli_export(int argc, char **argv);
int cli_convert(int argc, char **argv);

/* gemmatrain plot METRICS.jsonl [-o OUT.svg] [--title TEXT]: loss curves as SVG (cli/cli_plot.c). */
int cli_plot(int argc, char **argv);
/* gemmatrain compare A.h5 B.h5: two checkpoints' trained state, bit for bit (cli/cli_compare.c). */
int cli_compare(int argc, char **argv);

#endif
