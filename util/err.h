/* err.h: the library's error-message convention, written once.
 *
 * Library functions report failure by returning -1 (or NULL) and writing one line into the
 * caller's buffer err[errn]; they never print or exit. gt_errf formats that line (printf-style,
 * truncated to errn; err may be NULL or errn 0, then nothing is written) and returns -1, so a
 * failure reads `return gt_errf(err, errn, "%s: ...", path);`. */
#ifndef GT_UTIL_ERR_H
#define GT_UTIL_ERR_H

#include <stddef.h>

__attribute__((format(printf, 3, 4))) int gt_errf(char *err, size_t errn, const char *fmt, ...);
/* "PATH: cannot open: <strerror(errnum)>", and for a missing copy of the example model
 * (out/models/gemma-3-270m-q4_k_m.gguf) how to get it. Returns -1. */
int gt_err_open(char *err, size_t errn, const char *path, int errnum);
/* s with its control characters replaced by '?' (in place; returns s): parser messages that quote
 * the input (jansson's) stay one printable line. */
char *gt_err_printable(char *s);

#endif
