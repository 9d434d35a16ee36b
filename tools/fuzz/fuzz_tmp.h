/* fuzz_tmp.h: a per-process scratch directory on /dev/shm for harnesses whose product API takes a
 * path (header-only: each harness is one object linked with the library).
 *
 * fuzz_tmp_dir(tag, dir, n) makes /dev/shm/gt-fuzz-TAG-PID (TMPDIR instead of /dev/shm when set)
 * and removes it and its files at exit. A run that ends by a crash, a timeout or a kill skips
 * exit handlers, so the call first removes the directories of the same tag whose PID no longer
 * runs: leftovers live until the next run of that harness, never pile up. 0, or -1. */
#ifndef GT_FUZZ_TMP_H
#define GT_FUZZ_TMP_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_tmp_path[256];

/* Removes the regular files in dir, then dir (the harnesses write flat files only). */
static void fuzz_tmp_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char f[512];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(f, sizeof f, "%s/%s", dir, e->d_name);
                unlink(f);
            }
        closedir(d);
    }
    if (rmdir(dir)) unlink(dir); /* a plain file left by an older harness */
}

static void fuzz_tmp_atexit(void) { fuzz_tmp_remove(fuzz_tmp_path); }

static int fuzz_tmp_dir(const char *tag, char *dir, size_t n) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/dev/shm";
    char prefix[128], stale[512];
    snprintf(prefix, sizeof prefix, "gt-fuzz-%s-", tag);
    DIR *d = opendir(base);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
            long pid = strtol(e->d_name + strlen(prefix), &end, 10);
            (void)end; /* "PID" or, from older harnesses, "PID.h5" */
            if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
                snprintf(stale, sizeof stale, "%s/%s", base, e->d_name);
                fuzz_tmp_remove(stale);
            }
        }
        closedir(d);
    }
    snprintf(fuzz_tmp_path, sizeof fuzz_tmp_path, "%s/%s%d", base, prefix, (int)getpid());
    if (mkdir(fuzz_tmp_path, 0700) && errno != EEXIST) return -1;
    atexit(fuzz_tmp_atexit);
    snprintf(dir, n, "%s", fuzz_tmp_path);
    return 0;
}

#endif
