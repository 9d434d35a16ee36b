/* fuzz_checkpoint.c: libFuzzer target for training checkpoints (train/checkpoint.h): the input is
 * an HDF5 file (on /dev/shm, tools/fuzz/fuzz_tmp.h: libhdf5 cannot open a memfd's /proc/self/fd
 * path) given to gt_ckpt_read_config and to gt_ckpt_load against a small LoRA run's model,
 * adapters and AdamW state (the rig also writes the seed checkpoint: run the binary with
 * GT_FUZZ_WRITE_SEED=PATH). Properties: no crash, leak or UB in our code; a failed load leaves the
 * destination untouched and its message names the file. Crashes inside libhdf5 itself on hostile
 * bytes are libhdf5's (report them upstream, not here): three kinds are known (tools/fuzz/hdf5_repro.c
 * shows each with libhdf5 alone), so run this target with `tools/fuzz/run.sh -k` (fork mode, keeps
 * going) and triage the crash inputs: one with our code at the top of its stack is ours. Inputs
 * carry no seal (train/checkpoint.h), so they reach libhdf5 as a pre-seal checkpoint would; a
 * sealed checkpoint with any change is refused before libhdf5 sees it.
 * Leaks: libhdf5 keeps blocks of new sizes on its free lists and leaks on some error paths, so
 * about one input in eight ends with more mallocs than frees; libFuzzer then re-ran the input and
 * scanned the whole heap for leaks (85% of a profiled run's time; libhdf5's own leaks are
 * suppressed below, and none of ours was found), and after 1000 such scans stops them anyway. The per-input scan is off
 * (flags below); LeakSanitizer still checks the whole process at exit, so a leak of ours still
 * fails the run, with its allocation stack.
 * seeds: tools/fuzz/seeds/checkpoint
 * flags: -detect_leaks=0
 * Run through tools/fuzz/run.sh. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <hdf5.h>

#include "train/checkpoint.h"
#include "tools/fuzz/fuzz_tmp.h"

typedef struct {
    gt_gemma_config cfg;
    gt_lora *lora;
    gt_param_slice s[8];
    int n;
    gt_optim opt;
    gt_ckpt_model model;
} rig;

static rig *rig_get(void) {
    static rig r;
    static int ready;
    if (ready) return &r;
    gt_gemma_config_defaults(&r.cfg, 3);
    r.cfg.vocab_size = 50, r.cfg.num_layers = 2, r.cfg.hidden_dim = 16, r.cfg.intermediate_dim = 24;
    r.cfg.num_query_heads = 2, r.cfg.num_kv_heads = 1, r.cfg.head_dim = 8;
    char err[256];
    gt_lora_dims d = {2, 16, 24, 2, 1, 8};
    if (gt_lora_create(&d, 2, 4.0, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 3, &r.lora, err, sizeof err)) abort();
    for (int64_t l = 0; l < 2; l++)
        for (int t = GT_LORA_QUERY; t <= GT_LORA_VALUE; t += 2) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(r.lora, l, (gt_lora_target)t);
            r.s[r.n++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, true};
            r.s[r.n++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, true};
        }
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    if (gt_optim_init(&r.opt, &oc, r.s, r.n, err, sizeof err)) abort();
    for (int i = 0; i < r.n; i++)
        for (int64_t e = 0; e < r.s[i].size; e++) r.s[i].grad[e] = (gt_real)sin(0.1 * (double)(e + 7 * i));
    gt_optim_step(&r.opt, 0.01);
    r.model = (gt_ckpt_model){&r.cfg, r.lora, "adamw"};
    const char *seed = getenv("GT_FUZZ_WRITE_SEED");
    if (seed) {
        gt_ckpt_state st = {.step = 1};
        if (gt_ckpt_save(seed, "train:\n  steps: 1\n", &r.model, r.s, r.n, &r.opt, &st, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
    }
    /* libhdf5 callocs large metadata-cache structures per open file and by default frees
     * them through to malloc (its free lists are capped at 64 KB each); under ASan each is a
     * fresh mmap whose zeroed pages took 70% of the time. Unbounded free lists let libhdf5 reuse
     * its own blocks; what our code allocates is still checked per input. */
    H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
    ready = 1;
    return &r;
}

/* libhdf5 leaks a few bytes on some of its own error paths; ours must not leak */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\n"; }

/* libhdf5 1.10.8 reads freed or out-of-bounds memory while walking a corrupted object header's
 * messages (tools/fuzz/hdf5_repro.c, no gemmatrain code, shows it under ASan).
 * Errors with that walker on the stack are libhdf5's; a too-small buffer of ours handed to
 * H5Dread/H5Aread is reported from other frames and stays caught. */
const char *__asan_default_suppressions(void);
const char *__asan_default_suppressions(void) { return "interceptor_via_fun:H5O__msg_iterate_real\n"; }

static char path[300];
static int fd = -1; /* path, kept open: each input is written over it */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    rig *r = rig_get();
    char dir[256], e[1024];
    if (fuzz_tmp_dir("ckpt", dir, sizeof dir)) abort();
    snprintf(path, sizeof path, "%s/input.h5", dir);
    /* the plumbing works: the rig's own checkpoint, written where inputs go, loads (an earlier
     * memfd path made every input fail at the open, fuzzing nothing) */
    gt_ckpt_state st = {.step = 1}, back;
    if (gt_ckpt_save(path, "train:\n  steps: 1\n", &r->model, r->s, r->n, &r->opt, &st, e, sizeof e) ||
        gt_ckpt_load(path, &r->model, r->s, r->n, &r->opt, &back, NULL, e, sizeof e)) {
        fprintf(stderr, "fuzz_checkpoint: the rig's checkpoint does not load: %s\n", e);
        abort();
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rig *r = rig_get();
    if (ftruncate(fd, (off_t)size) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    char err[1024];
    char *yaml = NULL;
    if (gt_ckpt_read_config(path, &yaml, err, sizeof err) == 0) free(yaml);
    /* a failed load must not touch the destination */
    float before = (float)r->s[0].data[0];
    gt_ckpt_state st;
    yaml = NULL;
    if (gt_ckpt_load(path, &r->model, r->s, r->n, &r->opt, &st, &yaml, err, sizeof err)) {
        if ((float)r->s[0].data[0] != before) abort();
        if (!strstr(err, path) && !strstr(err, "fuzz")) {
            fprintf(stderr, "message without the file: %s\n", err);
            abort();
        }
    }
    free(yaml);
    return 0;
}
