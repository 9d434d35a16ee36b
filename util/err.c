#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>

int gt_errf(char *err, size_t errn, const char *fmt, ...) {
    if (err && errn) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errn, fmt, ap);
        va_end(ap);
    }
    return -1;
}
