#include "util/hugepage.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void gt_hugepage_advise(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    static int g_off = -1; /* the environment, read once (any thread may come first) */
    int off = __atomic_load_n(&g_off, __ATOMIC_ACQUIRE);
    if (off < 0) {
        const char *e = getenv("GT_HUGEPAGES");
        off = e && !strcmp(e, "0");
        __atomic_store_n(&g_off, off, __ATOMIC_RELEASE);
    }
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (!off && p && b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}
