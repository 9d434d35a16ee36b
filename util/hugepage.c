#include "util/hugepage.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void gt_hugepage_advise(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    static int off = -1; /* read once; a race only writes the same value */
    if (off < 0) {
        const char *e = getenv("GT_HUGEPAGES");
        off = e && !strcmp(e, "0");
    }
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (!off && p && b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}
