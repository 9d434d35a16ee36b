/* Reliability under faults (issue 13), in-process:
 *   a full disk under every HDF5 writer (checkpoint, Keras .lora.h5): this binary interposes
 *   pwrite(), which libhdf5 writes with, and fallocate(), and fails them with ENOSPC past
 *   a byte budget for the temporary files in the test directory; the save fails with one line, no file is left under
 *   the final name nor a temporary, and HDF5 stays healthy (a later save works, and the process
 *   exits without HDF5's atexit cleanup crashing on a file closed twice);
 *   stdio writers (gt_atomic, safetensors) under a file size limit (RLIMIT_FSIZE, EFBIG): the
 *   same.
 * Through the CLI (gemmatrain under a file size limit; its output read through a pipe, which the
 * limit does not touch): a checkpoint, logging.metrics and eval.per_example_output that cannot be
 * written end the command with exit 1 and one line naming the file, no crash and no partial file
 * under the final name.
 * Memory: a run whose peak-memory estimate exceeds what is available is refused before step 1
 * (GT_FAULT_INJECT=mem_available), unless train.ignore_memory_check.
 * Signals: SIGTERM and SIGINT finish the step, checkpoint and exit 143 / 130; a second signal
 * ends the process at once; under mpirun -np 2 (which forwards a SIGTERM to every rank) all
 * ranks stop at the same step and one checkpoint is written. */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/io/keras_lora.h"
#include "models/io/safetensors.h"
#include "train/checkpoint.h"
#include "util/fsutil.h"
#include "tests/check_main.h"

static char dir[128];

/* ---- the full disk: pwrite() past g_budget bytes of a matching file fails with ENOSPC ---- */

static long long g_budget = -1; /* -1: no fault */
static int g_faults;            /* writes refused */

static bool faulty_fd(int fd) {
    char link[64], target[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return false;
    target[n] = 0;
    return !strncmp(target, dir, strlen(dir)) && strstr(target, ".tmp");
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (g_budget >= 0 && dir[0] && faulty_fd(fd)) {
        if (offset >= g_budget) {
            g_faults++;
            errno = ENOSPC;
            return -1;
        }
        if ((long long)(offset + (off_t)count) > g_budget) count = (size_t)(g_budget - offset);
    }
    return real(fd, buf, count, offset);
}

/* the space reservation before a close (models/io/h5io.c) meets the same full disk */
int fallocate(int fd, int mode, off_t offset, off_t len) {
    static int (*real)(int, int, off_t, off_t);
    if (!real) real = (int (*)(int, int, off_t, off_t))dlsym(RTLD_NEXT, "fallocate");
    if (g_budget >= 0 && dir[0] && faulty_fd(fd) && offset + len > g_budget) {
        g_faults++;
        errno = ENOSPC;
        return -1;
    }
    return real(fd, mode, offset, len);
}

/* LeakSanitizer (make test SAN=1): libhdf5 1.10 loses one 1 KB free-list block on the error
 * path of a write that fails (its own allocation, freed nowhere); the in-process cases here make
 * it fail on purpose. Our code's leaks are still reported (the frames would name it). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\n"; }

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/gt-test-faults-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}

/* Files in dir other than keep (NULL: none allowed). */
static int stray_files(const char *keep) {
    char cmd[512], out[4096] = "";
    snprintf(cmd, sizeof cmd, "ls -A %s", dir);
    FILE *p = popen(cmd, "r");
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    pclose(p);
    int n = 0;
    for (char *s = strtok(out, "\n"); s; s = strtok(NULL, "\n"))
        if (!keep || strcmp(s, keep)) n++, fprintf(stderr, "stray file: %s\n", s);
    return n;
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A small full fine-tuning state: three slices and AdamW. */
typedef struct {
    gt_gemma_config cfg;
    gt_real *data[3], *grad[3];
    gt_param_slice s[3];
    gt_optim opt;
} rig;

static void rig_init(rig *r) {
    gt_gemma_config_defaults(&r->cfg, 3);
    static const char *names[3] = {"a/kernel", "b/kernel", "c/scale"};
    int64_t sizes[3] = {6000, 3000, 64};
    for (int i = 0; i < 3; i++) {
        r->data[i] = calloc((size_t)sizes[i], sizeof(gt_real));
        r->grad[i] = calloc((size_t)sizes[i], sizeof(gt_real));
        for (int64_t e = 0; e < sizes[i]; e++) r->data[i][e] = (gt_real)sin((double)(e + i));
        r->s[i] = (gt_param_slice){names[i], r->data[i], r->grad[i], sizes[i], true};
    }
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    char err[256];
    ck_assert(gt_optim_init(&r->opt, &oc, r->s, 3, err, sizeof err) == 0);
}

static void rig_free(rig *r) {
    gt_optim_free(&r->opt);
    for (int i = 0; i < 3; i++) free(r->data[i]), free(r->grad[i]);
}

static int save_ckpt(rig *r, const char *path, char *err, size_t errn) {
    gt_ckpt_state st = {.step = 4, .world = 1};
    gt_ckpt_model m = {&r->cfg, NULL, "adamw"};
    return gt_ckpt_save(path, "train:\n  steps: 8\n", &m, r->s, 3, &r->opt, &st, err, errn);
}

START_TEST(full_disk_checkpoint_fails_cleanly) {
    rig r;
    rig_init(&r);
    char path[256], err[1024];
    gt_ckpt_path(dir, 4, path, sizeof path);
    /* the disk fills at every point of the write: data, metadata, the close */
    long long budgets[] = {0, 100, 800, 2048, 4096, 20000, 40000, 70000, 100000, 107000, 109000, 110500};
    int refused = 0;
    for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; k++) {
        g_budget = budgets[k];
        g_faults = 0;
        err[0] = 0;
        int rc = save_ckpt(&r, path, err, sizeof err);
        g_budget = -1;
        if (!g_faults) { /* the budget held the whole file */
            ck_assert_msg(rc == 0, "budget %lld: %s", budgets[k], err);
            unlink(path);
            continue;
        }
        refused++;
        ck_assert_msg(rc != 0, "budget %lld: a failed write was not reported", budgets[k]);
        ck_assert_msg(strstr(err, path) && strstr(err, "No space left on device") && !strchr(err, '\n'),
                      "budget %lld: %s", budgets[k], err);
        ck_assert_msg(!exists(path), "budget %lld: a half-written checkpoint under the final name", budgets[k]);
        ck_assert_int_eq(stray_files(NULL), 0);
    }
    ck_assert_int_ge(refused, 9);
    /* HDF5 is still fine: a save with room works and loads back */
    ck_assert_msg(save_ckpt(&r, path, err, sizeof err) == 0, "%s", err);
    gt_ckpt_state st;
    gt_ckpt_model m = {&r.cfg, NULL, "adamw"};
    ck_assert_msg(gt_ckpt_load(path, &m, r.s, 3, &r.opt, &st, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(st.step, 4);
    rig_free(&r);
    /* returning exits this test's process: HDF5's atexit cleanup must find nothing to crash on */
}
END_TEST

START_TEST(full_disk_lora_file_fails_cleanly) {
    gt_gemma_config cfg;
    gt_gemma_config_defaults(&cfg, 3);
    cfg.num_layers = 2, cfg.hidden_dim = 64, cfg.intermediate_dim = 96, cfg.num_query_heads = 2;
    cfg.num_kv_heads = 1, cfg.head_dim = 32;
    gt_lora *l;
    char err[1024], path[256];
    gt_lora_dims d = {2, 64, 96, 2, 1, 32};
    ck_assert(gt_lora_create(&d, 8, 8, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 1, &l, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/adapter.lora.h5", dir);
    long long budgets[] = {0, 512, 3000, 6000, 9000, 12000, 15000};
    int refused = 0;
    for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; k++) {
        g_budget = budgets[k];
        g_faults = 0;
        err[0] = 0;
        int rc = gt_keras_lora_save(path, l, &cfg, err, sizeof err);
        g_budget = -1;
        if (!g_faults) {
            ck_assert_msg(rc == 0, "budget %lld: %s", budgets[k], err);
            unlink(path);
            continue;
        }
        refused++;
        ck_assert_msg(rc != 0, "budget %lld: a failed write was not reported", budgets[k]);
        ck_assert_msg(strstr(err, "No space left on device") && !strchr(err, '\n'), "budget %lld: %s", budgets[k], err);
        ck_assert_msg(!exists(path), "budget %lld: a half-written file under the final name", budgets[k]);
        ck_assert_int_eq(stray_files(NULL), 0);
    }
    ck_assert_int_ge(refused, 5);
    ck_assert_msg(gt_keras_lora_save(path, l, &cfg, err, sizeof err) == 0, "%s", err);
    gt_lora *back;
    ck_assert_msg(gt_keras_lora_open(path, &cfg, &back, err, sizeof err) == 0, "%s", err);
    gt_lora_free(back);
    gt_lora_free(l);
}
END_TEST

/* stdio writers: a file size limit makes write() fail with EFBIG past `bytes` (SIGXFSZ ignored) */
static void limit_file_size(rlim_t bytes) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = bytes;
    ck_assert(setrlimit(RLIMIT_FSIZE, &rl) == 0);
}

static void unlimit_file_size(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_FSIZE, &rl);
}

START_TEST(file_size_limit_fails_stdio_writers_cleanly) {
    enum { N = 40000 };
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) v[i] = (float)i;
    char path[256], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gt_st_entry e = {"w", v, 1, {N}};
    limit_file_size(64 << 10);
    int rc = gt_st_write(path, &e, 1, GT_ST_F32, NULL, err, sizeof err);
    unlimit_file_size();
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(err, path) && strstr(err, "File too large") && !strchr(err, '\n'), "%s", err);
    ck_assert(!exists(path));
    ck_assert_int_eq(stray_files(NULL), 0);
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    limit_file_size(64 << 10);
    rc = gt_write_file_atomic(path, v, N * sizeof *v, err, sizeof err);
    unlimit_file_size();
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(err, path) && strstr(err, "File too large"), "%s", err);
    ck_assert_int_eq(stray_files(NULL), 0);
    free(v);
}
END_TEST

/* ---- the CLI ---- */

static char g_out[1 << 17];

/* gemmatrain ARGS with files limited to fsize bytes (0: no limit); its stdout and stderr in g_out.
 * Returns the exit status, or 128 + the signal. */
static int gt_limited(rlim_t fsize, const char *args) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char cmd[4096];
    if (!strncmp(args, "GT_", 3)) snprintf(cmd, sizeof cmd, "exec env %s", args); /* VAR=... BIN ARGS */
    else snprintf(cmd, sizeof cmd, "exec %s %s", bin, args);
    int fds[2];
    ck_assert(pipe(fds) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        signal(SIGXFSZ, SIG_IGN); /* inherited: a write past the limit fails with EFBIG */
        if (fsize) {
            struct rlimit rl;
            getrlimit(RLIMIT_FSIZE, &rl);
            rl.rlim_cur = fsize;
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], g_out + got, sizeof g_out - 1 - got)) > 0) got += (size_t)n;
    g_out[got] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The end of g_out, short enough for a Check message. */
static const char *tail_out(void) {
    size_t n = strlen(g_out);
    return n > 3000 ? g_out + n - 3000 : g_out;
}

/* The output's lines that start with prefix: exactly one, containing every needle. */
static void one_error_line(const char *prefix, const char *n1, const char *n2) {
    int lines = 0;
    for (const char *p = g_out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) {
            lines++;
            const char *end = strchr(p, '\n');
            int len = end ? (int)(end - p) : (int)strlen(p);
            char line[2048];
            snprintf(line, sizeof line, "%.*s", len, p);
            ck_assert_msg(strstr(line, n1) && strstr(line, n2), "expected '%s' and '%s' in: %s", n1, n2, line);
        }
    ck_assert_msg(lines == 1, "%d lines start with '%s' in:\n%s", lines, prefix, tail_out());
}

START_TEST(cli_checkpoint_on_a_full_disk_exits_1) {
    char args[1024], ck[256];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= checkpoint.dir=%s checkpoint.every_steps=2", ck);
    int rc = gt_limited(1 << 20, args); /* a checkpoint of the tiny model is about 7 MB */
    ck_assert_msg(rc == 1, "exit %d:\n%s", rc, tail_out());
    one_error_line("gemmatrain train: ", "ckpt-00000002.h5", "File too large");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", ck);
    ck_assert_msg(system(cmd) == 0, "files left in %s", ck);
}
END_TEST

START_TEST(cli_metrics_on_a_full_disk_exits_1) {
    char args[1024], m[256];
    snprintf(m, sizeof m, "%s/metrics.jsonl", dir);
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= logging.every_steps=1 logging.metrics=%s", m);
    int rc = gt_limited(2048, args); /* 20 lines of about 150 bytes */
    ck_assert_msg(rc == 1, "exit %d:\n%s", rc, tail_out());
    one_error_line("gemmatrain train: ", m, "File too large");
    ck_assert_msg(strstr(g_out, "logging.metrics: "), "%s", tail_out());
}
END_TEST

START_TEST(cli_per_example_output_on_a_full_disk_exits_1) {
    char args[1024], p[256];
    snprintf(p, sizeof p, "%s/per-example.jsonl", dir);
    snprintf(args, sizeof args, "eval configs/tiny.yaml eval.per_example_output=%s", p);
    int rc = gt_limited(1024, args); /* 50 lines of about 45 bytes */
    ck_assert_msg(rc == 1, "exit %d:\n%s", rc, tail_out());
    one_error_line("gemmatrain eval: ", p, "File too large");
    ck_assert_msg(!exists(p), "a partial %s", p);
    ck_assert_int_eq(stray_files(NULL), 0);
    /* with room, the same command writes it */
    rc = gt_limited(0, args);
    ck_assert_msg(rc == 0 && exists(p), "exit %d:\n%s", rc, tail_out());
}
END_TEST

/* An output location that cannot be written, or a disk without room for one checkpoint, is
 * refused before step 1 (not at the first save, after the last step). */
START_TEST(cli_output_locations_checked_before_step_1) {
    char args[1024], file[256];
    ck_assert_int_eq(gt_limited(0, "train configs/tiny.yaml data.eval= checkpoint.dir=/proc/gt-no-such/ckpt"), 1);
    one_error_line("gemmatrain train: ", "checkpoint.dir: ", "/proc/gt-no-such");
    ck_assert_msg(!strstr(g_out, "step 1/"), "trained first:\n%s", tail_out());
    snprintf(file, sizeof file, "%s/a-file", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= checkpoint.dir=%s/ck output_dir=%s", dir, file);
    ck_assert_int_eq(gt_limited(0, args), 1);
    one_error_line("gemmatrain train: ", "output_dir: ", "not a directory");
    ck_assert_msg(!strstr(g_out, "step 1/"), "trained first:\n%s", tail_out());
    snprintf(args, sizeof args, "GT_FAULT_INJECT=free_bytes:3000000 %s train configs/tiny.yaml data.eval= "
             "checkpoint.dir=%s/ck", getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain", dir);
    ck_assert_int_eq(gt_limited(0, args), 1);
    one_error_line("gemmatrain train: ", "3.0 MB free", "a checkpoint needs about 7.");
    ck_assert_msg(!strstr(g_out, "step 1/"), "trained first:\n%s", tail_out());
}
END_TEST

START_TEST(cli_memory_estimate_refuses_before_step_1) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char args[1024];
    /* 8 rows of 512 tokens: about 0.07 GB of activations, against 1 KB "available" */
    snprintf(args, sizeof args, "GT_FAULT_INJECT=mem_available:1000 %s train configs/tiny.yaml data.eval= "
             "data.sequence_length=512 train.batch_size=8 train.steps=1 schedule.warmup_steps=0", bin);
    ck_assert_int_eq(gt_limited(0, args), 1);
    ck_assert_msg(strstr(g_out, "memory: about ") && strstr(g_out, "GB at the peak"), "%s", tail_out());
    one_error_line("gemmatrain train: ", "memory: the run needs about", "train.ignore_memory_check");
    ck_assert_msg(!strstr(g_out, "step 1/"), "trained first:\n%s", tail_out());
    strcat(args, " train.ignore_memory_check=true");
    ck_assert_msg(gt_limited(0, args) == 0 && strstr(g_out, "step 1/1"), "%s", tail_out());
}
END_TEST

/* gemmatrain ARGS (or "mpirun ... ARGS" when mpi) started in the background, output to a file
 * in dir; returns its pid once the output shows `marker`. */
static char g_log[256];
static pid_t start_bg(bool mpi, const char *args, const char *marker) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char cmd[4096];
    if (mpi) /* mpirun forwards SIGTERM after odls_base_sigkill_timeout s, and kills as much later */
        snprintf(cmd, sizeof cmd, "exec mpirun --oversubscribe --mca odls_base_sigkill_timeout 2 -np 2 -x GT_THREADS=1 "
                 "-x ASAN_OPTIONS=detect_leaks=0 %s %s", bin, args);
    else snprintf(cmd, sizeof cmd, "exec %s %s", bin, args);
    snprintf(g_log, sizeof g_log, "%s/run.log", dir);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        FILE *f = fopen(g_log, "w");
        dup2(fileno(f), 1);
        dup2(fileno(f), 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 3000; i++) { /* 30 s */
        usleep(10000);
        FILE *f = fopen(g_log, "r");
        size_t got = f ? fread(g_out, 1, sizeof g_out - 1, f) : 0;
        if (f) fclose(f);
        g_out[got] = 0;
        if (strstr(g_out, marker)) return pid;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_abort_msg("no '%s' within 30 s:\n%s", marker, tail_out());
    return -1;
}

/* Waits for pid; its whole output in g_out; the raw wait status. */
static int finish_bg(pid_t pid) {
    int st;
    waitpid(pid, &st, 0);
    FILE *f = fopen(g_log, "r");
    size_t got = fread(g_out, 1, sizeof g_out - 1, f);
    fclose(f);
    g_out[got] = 0;
    return st;
}

/* The step of the run's "checkpoint: DIR/ckpt-N.h5" line (exactly one), which exists. */
static long long the_checkpoint(void) {
    const char *p = strstr(g_out, "checkpoint: ");
    ck_assert_msg(p && !strstr(p + 1, "checkpoint: /"), "one checkpoint line expected:\n%s", tail_out());
    char path[512];
    ck_assert(sscanf(p + 12, "%511s", path) == 1);
    ck_assert_msg(exists(path), "%s missing", path);
    const char *c = strstr(path, "ckpt-");
    return c ? atoll(c + 5) : -1;
}

static void stops_with_a_checkpoint(int sig, int code) {
    char args[1024];
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= train.steps=1000000 logging.every_steps=1 "
             "checkpoint.dir=%s/ck", dir);
    pid_t pid = start_bg(false, args, "step 5/");
    kill(pid, sig);
    int st = finish_bg(pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == code, "status 0x%x, expected exit %d:\n%s", st, code, tail_out());
    long long step = the_checkpoint();
    char line[64];
    snprintf(line, sizeof line, "interrupted after %lld steps", step);
    ck_assert_msg(step >= 5 && strstr(g_out, line), "checkpoint at %lld:\n%s", step, tail_out());
}

START_TEST(sigterm_checkpoints_and_exits_143) { stops_with_a_checkpoint(SIGTERM, 143); }
END_TEST

START_TEST(sigint_checkpoints_and_exits_130) { stops_with_a_checkpoint(SIGINT, 130); }
END_TEST

START_TEST(a_second_signal_exits_at_once) {
    char args[1024];
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= train.steps=1000000 logging.every_steps=1 "
             "checkpoint.dir=%s/ck", dir);
    pid_t pid = start_bg(false, args, "step 5/");
    /* two kinds, as two of one kind still pending would merge into one */
    kill(pid, SIGTERM);
    kill(pid, SIGINT);
    int st = finish_bg(pid);
    ck_assert_msg(WIFSIGNALED(st) && (WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGINT), "status 0x%x:\n%s", st,
                  tail_out());
    ck_assert_msg(!strstr(g_out, "interrupted after"), "%s", tail_out());
}
END_TEST

START_TEST(sigterm_to_mpirun_stops_every_rank_at_one_step) {
    if (system("command -v mpirun >/dev/null 2>&1") != 0) return;
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    char args[1024];
    snprintf(args, sizeof args, "train configs/tiny.yaml data.eval= train.steps=1000000 logging.every_steps=1 "
             "train.full_finetune=false lora.enabled=true checkpoint.dir=%s/ck", dir);
    pid_t pid = start_bg(true, args, "step 5/");
    kill(pid, SIGTERM);
    int st = finish_bg(pid); /* mpirun itself exits 1 once it has forwarded a signal */
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "status 0x%x", st);
    /* one checkpoint, written after the ranks checked that they hold the same weights and data
     * position (mpirun may drop the ranks' last lines of output as it ends) */
    char ck[256], path[512], err[512], cmd[512];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    int64_t step = -1;
    ck_assert_msg(gt_ckpt_latest(ck, path, sizeof path, &step, err, sizeof err) == 0, "no checkpoint:\n%s", tail_out());
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) = 1", ck);
    ck_assert_msg(system(cmd) == 0 && step >= 5, "step %lld:\n%s", (long long)step, tail_out());
    ck_assert_msg(!strstr(g_out, "rank 1:") && !strstr(g_out, "differ"), "%s", tail_out());
}
END_TEST

int main(void) {
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, full_disk_checkpoint_fails_cleanly);
    tcase_add_test(tc, full_disk_lora_file_fails_cleanly);
    tcase_add_test(tc, file_size_limit_fails_stdio_writers_cleanly);
    tcase_add_test(tc, cli_checkpoint_on_a_full_disk_exits_1);
    tcase_add_test(tc, cli_metrics_on_a_full_disk_exits_1);
    tcase_add_test(tc, cli_per_example_output_on_a_full_disk_exits_1);
    tcase_add_test(tc, cli_output_locations_checked_before_step_1);
    tcase_add_test(tc, cli_memory_estimate_refuses_before_step_1);
    tcase_add_test(tc, sigterm_checkpoints_and_exits_143);
    tcase_add_test(tc, sigint_checkpoints_and_exits_130);
    tcase_add_test(tc, a_second_signal_exits_at_once);
    tcase_add_test(tc, sigterm_to_mpirun_stops_every_rank_at_one_step);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
