/* cli_run.c: shared command-line test helpers (contract in cli_run.h). */
#include "tests/cli_run.h"

#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int gt_test_run(const char *args, char *out, size_t n) { return gt_test_run_with("", args, out, n); }

int gt_test_run_with(const char *prefix, const char *args, char *out, size_t n) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s %s 2>&1", prefix, getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", args);
    FILE *p = popen(cmd, "r");
    if (!p) return snprintf(out, n, "popen failed"), -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

double gt_test_number_after(const char *out, const char *key) {
    const char *p = strstr(out, key);
    return p ? atof(p + strlen(key)) : NAN;
}

double gt_test_loss_after(const char *out, const char *label) {
    const char *p = strstr(out, label);
    ck_assert_msg(p != NULL, "no '%s' in output:\n%s", label, out);
    const char *l = strstr(p, "loss ");
    ck_assert_msg(l != NULL, "no loss after '%s' in output:\n%s", label, out);
    return atof(l + 5);
}

double gt_test_json_loss(const char *out) {
    const char *p = strstr(out, "{\"loss\": ");
    ck_assert_msg(p != NULL, "no JSON result in:\n%s", out);
    return atof(p + 9);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int gt_test_rmtree(const char *dir) {
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) ? -1 : 0;
}

int gt_test_scratch(char *dir, size_t n, const char *keep_env, const char *prefix) {
    const char *keep = getenv(keep_env);
    if (keep && *keep) return snprintf(dir, n, "%s", keep), 1;
    snprintf(dir, n, "/tmp/%s_XXXXXX", prefix);
    return mkdtemp(dir) ? 0 : -1;
}
