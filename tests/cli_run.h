/* cli_run.h: what the command-line tests share: run the gemmatrain binary ($GT_BIN, else
 * build/gemmatrain) with arguments, stdout and stderr captured together; read a loss the run
 * printed; make and remove a scratch directory tree.
 * Errors: gt_test_run returns the exit status, or -1 (a signal, or popen failing, with "popen
 * failed" as the output); the loss readers fail the running Check test when the label is absent. */
#ifndef GT_TESTS_CLI_RUN_H
#define GT_TESTS_CLI_RUN_H

#include <stddef.h>

/* Runs "$GT_BIN args 2>&1"; out gets up to n-1 bytes of its output, NUL-terminated. */
int gt_test_run(const char *args, char *out, size_t n);

/* The same behind a command prefix ("mpirun -n 2", "GT_X=1", or ""). */
int gt_test_run_with(const char *prefix, const char *args, char *out, size_t n);

/* The number right after the first `key` in out; NAN when key is absent. */
double gt_test_number_after(const char *out, const char *key);

/* The number after "loss " following the first `label` in out ("eval after training: ..."). */
double gt_test_loss_after(const char *out, const char *label);

/* The loss of eval's JSON result line, {"loss": x, ...}. */
double gt_test_json_loss(const char *out);

/* A scratch directory into dir: $keep_env's value when that is set (the caller keeps it), else a
 * new "/tmp/<prefix>_XXXXXX". 1: kept; 0: new (gt_test_rmtree it at the end); -1: mkdtemp failed. */
int gt_test_scratch(char *dir, size_t n, const char *keep_env, const char *prefix);

/* Removes dir and everything below it (links not followed); 0, or -1 when something stayed. */
int gt_test_rmtree(const char *dir);

#endif
