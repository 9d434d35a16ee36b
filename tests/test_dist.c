/* Data parallelism and resume through the CLI, on the tiny config with LoRA:
 *   mpirun -np 2 and -np 1 give the same losses for 20 steps on the same global batch;
 *   a run stopped at step 10 and resumed to 20 gives bit-identical losses and final weights and
 *   optimizer state to an uninterrupted run, for 1 and 2 ranks;
 *   a process killed while writing a checkpoint leaves the previous one loadable, and the run
 *   resumes from it to the same result; a killed rank ends the job non-zero within 30 s;
 *   resuming with another LoRA rank is refused with a message naming it.
 * MPI cases need mpirun (Open MPI); they run with --oversubscribe and as root where needed. */
#include <check.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "train/checkpoint.h"

static char tmp[128];
static char out[1 << 17];

/* Tiny Gemma 3 + LoRA rank 4 on q/v, global batch 4 of 16 tokens, 20 steps, no eval; the real
 * tokenizer cut to 8192 pieces (tools/reference/make_small_tokenizer.py) keeps the LM head small. */
static const char *BASE =
    "train configs/tiny.yaml tokenizer=tests/fixtures/gemma3-tokenizer-8k.json model.vocab_size=8192 "
    "train.full_finetune=false lora.enabled=true lora.rank=4 "
    "lora.dropout=0.1 optimizer.learning_rate=5e-2 data.sequence_length=16 data.eval= "
    "train.batch_size=4 train.micro_batch_size=2 train.steps=20 logging.every_steps=1";

static int sh(const char *cmd, char *o, size_t n) {
    FILE *p = popen(cmd, "r");
    size_t got = fread(o, 1, n - 1, p);
    o[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int gt(int ranks, const char *env, const char *args) {
    char cmd[4096];
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    if (ranks == 0)
        snprintf(cmd, sizeof cmd, "%s %s %s %s 2>&1", env, bin, BASE, args);
    else
        /* Open MPI's dlopen'ed plugins leak at exit and are unloaded before LeakSanitizer can name
         * them, so leak checking is off inside mpirun (the same code paths run leak-checked in the
         * one-process cases; ASan and UBSan stay on) */
        snprintf(cmd, sizeof cmd, "mpirun --oversubscribe -np %d -x GT_THREADS=1 -x ASAN_OPTIONS=detect_leaks=0 "
                 "%s%s %s %s %s 2>&1", ranks, env[0] ? "-x " : "", env, bin, BASE, args);
    return sh(cmd, out, sizeof out);
}

static bool have_mpirun(void) { return system("command -v mpirun >/dev/null 2>&1") == 0; }

/* Losses of a metrics file, by step (1-based); returns the count. */
static int losses(const char *path, double *l, int n) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s missing", path);
    char line[1024];
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "\"loss\": ");
        int step = atoi(strstr(line, "\"step\": ") + 8);
        if (p && step >= 1 && step <= n) l[step - 1] = atof(p + 8), got++;
    }
    fclose(f);
    return got;
}

/* Every float dataset under /params and /optimizer equal bit for bit (gt_ckpt_compare). */
static void same_checkpoint(const char *p, const char *q) {
    int n, differ;
    char first[256], err[512];
    ck_assert_msg(gt_ckpt_compare(p, q, &n, &differ, first, sizeof first, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(n >= 3 * 8 && differ == 0, "%d of %d datasets differ, first %s (%s vs %s)", differ, n, first, p, q);
}

static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/gt-test-dist-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
}

static void teardown(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    ck_assert(system(cmd) == 0);
}

/* Uninterrupted reference run with the given ranks (0: no mpirun); checkpoint at the end. The
 * tests run in one process (CK_NOFORK), so each reference is run once and reused. */
static void reference(int ranks, const char *name, double *l) {
    static double cache[3][20];
    static bool have[3];
    if (have[ranks]) {
        memcpy(l, cache[ranks], sizeof cache[ranks]);
        return;
    }
    char args[512];
    snprintf(args, sizeof args, "logging.metrics=%s/%s.jsonl checkpoint.dir=%s/%s", tmp, name, tmp, name);
    int rc = gt(ranks, "", args);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s/%s.jsonl", tmp, name);
    ck_assert_int_eq(losses(args, l, 20), 20);
    memcpy(cache[ranks], l, sizeof cache[ranks]);
    have[ranks] = true;
}

static void resume_is_exact(int ranks) {
    double ref[20], got[20];
    reference(ranks, ranks ? "ref2" : "ref0", ref);
    char args[512];
    snprintf(args, sizeof args, "logging.metrics=%s/r%d.jsonl checkpoint.dir=%s/r%d train.stop_after_steps=10", tmp,
             ranks, tmp, ranks);
    int rc = gt(ranks, "", args);
    ck_assert_msg(rc == 0 && strstr(out, "stopped after 10 steps"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "logging.metrics=%s/r%d.jsonl checkpoint.dir=%s/r%d checkpoint.resume=latest", tmp,
             ranks, tmp, ranks);
    rc = gt(ranks, "", args);
    ck_assert_msg(rc == 0 && strstr(out, "at step 10"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s/r%d.jsonl", tmp, ranks);
    ck_assert_int_eq(losses(args, got, 20), 20);
    for (int i = 0; i < 20; i++) ck_assert_msg(got[i] == ref[i], "step %d: %.9g vs %.9g", i + 1, got[i], ref[i]);
    char p[256], q[256];
    snprintf(p, sizeof p, "%s/%s/ckpt-00000020.h5", tmp, ranks ? "ref2" : "ref0");
    snprintf(q, sizeof q, "%s/r%d/ckpt-00000020.h5", tmp, ranks);
    same_checkpoint(p, q);
}

START_TEST(resume_is_bit_identical_one_process) { resume_is_exact(0); }
END_TEST

START_TEST(resume_is_bit_identical_two_ranks) {
    if (!have_mpirun()) return;
    resume_is_exact(2);
}
END_TEST

START_TEST(two_ranks_equal_one) {
    if (!have_mpirun()) return;
    double one[20], two[20];
    reference(0, "ref0", one);
    reference(2, "ref2", two);
    for (int i = 0; i < 20; i++)
        ck_assert_msg(fabs(one[i] - two[i]) <= 1e-6 * fabs(one[i]), "step %d: %.9g vs %.9g", i + 1, one[i], two[i]);
    ck_assert(one[19] < one[0]); /* and it trains */
}
END_TEST

/* Full fine-tuning: one large gradient buffer, reduced in buckets that start during backward. */
START_TEST(two_ranks_equal_one_full_finetune) {
    if (!have_mpirun()) return;
    const char *full = "train.full_finetune=true lora.enabled=false optimizer.learning_rate=1e-2 train.steps=4";
    char args[512];
    double one[4], two[4];
    snprintf(args, sizeof args, "%s logging.metrics=%s/f1.jsonl", full, tmp);
    int rc = gt(0, "", args);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s logging.metrics=%s/f2.jsonl", full, tmp);
    rc = gt(2, "", args);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s/f1.jsonl", tmp);
    ck_assert_int_eq(losses(args, one, 4), 4);
    snprintf(args, sizeof args, "%s/f2.jsonl", tmp);
    ck_assert_int_eq(losses(args, two, 4), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(fabs(one[i] - two[i]) <= 1e-6 * fabs(one[i]), "step %d: %.9g vs %.9g", i + 1, one[i], two[i]);
    ck_assert(one[3] < one[0]);
}
END_TEST

/* Full fine-tuning with the update sharded over the ranks (GT_SHARD forces it below
 * GT_DIST_SHARD_MIN values): bit-identical weights and optimizer state to the unsharded update,
 * also across a stop and resume (the checkpoint gathers every rank's share of the state). */
START_TEST(sharded_update_is_bit_identical) {
    if (!have_mpirun()) return;
    const char *full = "train.full_finetune=true lora.enabled=false optimizer.learning_rate=1e-2 train.steps=4";
    char args[512];
    snprintf(args, sizeof args, "%s logging.metrics=%s/u.jsonl checkpoint.dir=%s/u", full, tmp, tmp);
    int rc = gt(2, "GT_NO_SHARD=1", args);
    ck_assert_msg(rc == 0 && !strstr(out, "sharded"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s logging.metrics=%s/s.jsonl checkpoint.dir=%s/s train.stop_after_steps=2", full,
             tmp, tmp);
    rc = gt(2, "GT_SHARD=1", args);
    ck_assert_msg(rc == 0 && strstr(out, "update sharded over 2 ranks") && strstr(out, "stopped after 2 steps"),
                  "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s logging.metrics=%s/s.jsonl checkpoint.dir=%s/s checkpoint.resume=latest", full,
             tmp, tmp);
    rc = gt(2, "GT_SHARD=1", args);
    ck_assert_msg(rc == 0 && strstr(out, "at step 2"), "exit %d:\n%s", rc, out);
    double u[4], sh4[4];
    snprintf(args, sizeof args, "%s/u.jsonl", tmp);
    ck_assert_int_eq(losses(args, u, 4), 4);
    snprintf(args, sizeof args, "%s/s.jsonl", tmp);
    ck_assert_int_eq(losses(args, sh4, 4), 4);
    for (int i = 0; i < 4; i++) ck_assert_msg(u[i] == sh4[i], "step %d: %.9g vs %.9g", i + 1, u[i], sh4[i]);
    char p[256], q[256];
    snprintf(p, sizeof p, "%s/u/ckpt-00000004.h5", tmp);
    snprintf(q, sizeof q, "%s/s/ckpt-00000004.h5", tmp);
    same_checkpoint(p, q);
}
END_TEST

START_TEST(killed_during_checkpoint_write_resumes_from_previous) {
    double ref[20], got[20];
    reference(0, "ref0", ref);
    char args[512];
    snprintf(args, sizeof args, "logging.metrics=%s/k.jsonl checkpoint.dir=%s/k checkpoint.every_steps=5", tmp, tmp);
    int rc = gt(0, "GT_FAULT_INJECT=ckpt_kill:10", args);
    ck_assert_msg(rc != 0, "the fault hook did not fire:\n%s", out);
    char p[256];
    snprintf(p, sizeof p, "%s/k/ckpt-00000010.h5", tmp);
    ck_assert_msg(access(p, F_OK) != 0, "a half-written checkpoint was published");
    snprintf(p, sizeof p, "ls -a %s/k", tmp);
    sh(p, out, sizeof out);
    ck_assert_msg(strstr(out, "ckpt-00000005.h5") && strstr(out, ".tmp-"), "%s", out);
    snprintf(args, sizeof args, "logging.metrics=%s/k.jsonl checkpoint.dir=%s/k checkpoint.every_steps=5 "
             "checkpoint.resume=latest", tmp, tmp);
    rc = gt(0, "", args);
    ck_assert_msg(rc == 0 && strstr(out, "ckpt-00000005.h5 at step 5"), "exit %d:\n%s", rc, out);
    snprintf(args, sizeof args, "%s/k.jsonl", tmp);
    losses(args, got, 20);
    for (int i = 0; i < 20; i++) ck_assert_msg(got[i] == ref[i], "step %d: %.9g vs %.9g", i + 1, got[i], ref[i]);
    snprintf(p, sizeof p, "ls -a %s/k", tmp);
    sh(p, out, sizeof out);
    ck_assert_msg(!strstr(out, ".tmp-"), "stale temporary left: %s", out);
    /* another LoRA layout is refused, naming the difference */
    snprintf(args, sizeof args, "checkpoint.dir=%s/k checkpoint.resume=latest lora.rank=8", tmp);
    rc = gt(0, "", args);
    ck_assert_msg(rc == 1 && strstr(out, "lora rank 4, this run has 8"), "exit %d:\n%s", rc, out);
}
END_TEST

START_TEST(a_killed_rank_ends_the_job) {
    if (!have_mpirun()) return;
    char args[512];
    snprintf(args, sizeof args, "checkpoint.dir=%s/d checkpoint.every_steps=2", tmp);
    time_t t0 = time(NULL);
    int rc = gt(2, "GT_FAULT_INJECT=rank_kill:1:5", args);
    double took = difftime(time(NULL), t0);
    ck_assert_msg(rc != 0, "exit 0 after a rank died:\n%s", out);
    ck_assert_msg(took < 30, "took %.0f s", took);
    /* the newest complete checkpoint (step 4) is intact and resumes */
    snprintf(args, sizeof args, "checkpoint.dir=%s/d checkpoint.resume=latest", tmp);
    rc = gt(0, "", args);
    ck_assert_msg(rc == 0 && strstr(out, "ckpt-00000004.h5 at step 4"), "exit %d:\n%s", rc, out);
}
END_TEST

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("dist");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, resume_is_bit_identical_one_process);
    tcase_add_test(tc, two_ranks_equal_one);
    tcase_add_test(tc, resume_is_bit_identical_two_ranks);
    tcase_add_test(tc, two_ranks_equal_one_full_finetune);
    tcase_add_test(tc, sharded_update_is_bit_identical);
    tcase_add_test(tc, killed_during_checkpoint_write_resumes_from_previous);
    tcase_add_test(tc, a_killed_rank_ends_the_job);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* reference runs are shared between the tests */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
