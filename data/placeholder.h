/* placeholder.h: expansion of media placeholders in a prompt.
 *
 * Each occurrence of the marker ph in prompt becomes start, then n_tokens copies of ph, then
 * end (the soft-token span the model fills with encoder output). n_tokens must be in 1..2^20;
 * what ("audio prompt") and unit ("clip") name the caller in error messages. On success *out
 * is a new malloc'd string the caller frees; on error *out is NULL and err holds one line. */
#ifndef GT_DATA_PLACEHOLDER_H
#define GT_DATA_PLACEHOLDER_H

#include <stddef.h>
#include <stdint.h>

int gt_placeholder_expand(const char *prompt, const char *ph, const char *start, const char *end,
                          int64_t n_tokens, const char *what, const char *unit, char **out,
                          char *err, size_t errn);

#endif
