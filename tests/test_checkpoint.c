/* Checkpoints: exact round trip of parameters, optimizer state and run state; refusal of another
 * model shape / LoRA layout / optimizer with a message naming the difference, without touching
 * the destination; truncated, foreign and non-HDF5 files; latest / prune / stale temporaries. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "train/checkpoint.h"
#include "tests/check_main.h"

typedef struct {
    gt_gemma_config cfg;
    gt_lora *lora;
    gt_param_slice s[16];
    int n;
    gt_optim opt;
} rig;

static void rig_init(rig *r, int64_t rank, int64_t layers, uint64_t seed) {
    gt_gemma_config_defaults(&r->cfg, 3);
    r->cfg.vocab_size = 50;
    r->cfg.num_layers = layers;
    r->cfg.hidden_dim = 16;
    r->cfg.intermediate_dim = 24;
    r->cfg.num_query_heads = 2;
    r->cfg.num_kv_heads = 1;
    r->cfg.head_dim = 8;
    char err[256];
    gt_lora_dims d = {layers, 16, 24, 2, 1, 8};
    ck_assert(gt_lora_create(&d, rank, 2.0 * (double)rank, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), seed,
                             &r->lora, err, sizeof err) == 0);
    r->n = 0;
    for (int64_t l = 0; l < layers; l++)
        for (int t = GT_LORA_QUERY; t <= GT_LORA_VALUE; t += 2) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(r->lora, l, (gt_lora_target)t);
            r->s[r->n++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, true};
            r->s[r->n++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, true};
        }
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    ck_assert(gt_optim_init(&r->opt, &oc, r->s, r->n, err, sizeof err) == 0);
}

/* Two AdamW steps with made-up gradients, so every state array is nonzero. */
static void rig_train(rig *r) {
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < r->s[i].size; e++) r->s[i].grad[e] = (gt_real)sin(0.1 * (double)(e + 7 * i + k));
        gt_optim_step(&r->opt, 0.01);
    }
}

static void rig_free(rig *r) {
    gt_optim_free(&r->opt);
    gt_lora_free(r->lora);
}

static char dir[128];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/gt-test-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}

static gt_ckpt_model model_of(rig *r) { return (gt_ckpt_model){&r->cfg, r->lora, "adamw"}; }

static void save(rig *r, const char *path, int64_t step) {
    gt_ckpt_state st = {.step = step, .data_epoch = 1, .data_next = 17, .tokens = 4096, .elapsed_s = 1.5,
                        .world = 2, .train_seed = 3, .shuffle_seed = 4, .lora_seed = 5};
    gt_ckpt_model m = model_of(r);
    char err[512];
    ck_assert_msg(gt_ckpt_save(path, "train:\n  steps: 20\n", &m, r->s, r->n, &r->opt, &st, err, sizeof err) == 0,
                  "%s", err);
}

START_TEST(round_trip_is_exact) {
    rig a, b;
    rig_init(&a, 2, 2, 1);
    rig_init(&b, 2, 2, 99); /* different init: everything must be overwritten */
    rig_train(&a);
    char path[256], err[512];
    gt_ckpt_path(dir, 12, path, sizeof path);
    save(&a, path, 12);
    gt_ckpt_model m = model_of(&b);
    gt_ckpt_state st;
    char *yaml = NULL;
    ck_assert_msg(gt_ckpt_load(path, &m, b.s, b.n, &b.opt, &st, &yaml, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(memcmp(a.lora->data, b.lora->data, sizeof(gt_real) * (size_t)a.lora->n_values), 0);
    ck_assert_int_eq(memcmp(a.opt.state, b.opt.state, sizeof(gt_real) * (size_t)(2 * a.opt.n_values)), 0);
    ck_assert_int_eq(gt_optim_get_step(&b.opt), 2);
    ck_assert(st.step == 12 && st.data_epoch == 1 && st.data_next == 17 && st.tokens == 4096 && st.world == 2);
    ck_assert(st.elapsed_s == 1.5 && st.train_seed == 3 && st.shuffle_seed == 4 && st.lora_seed == 5);
    ck_assert_str_eq(yaml, "train:\n  steps: 20\n");
    free(yaml);
    /* the next update from the restored state is bit-identical */
    rig_train(&a);
    rig_train(&b);
    ck_assert_int_eq(memcmp(a.lora->data, b.lora->data, sizeof(gt_real) * (size_t)a.lora->n_values), 0);
    rig_free(&a);
    rig_free(&b);
}
END_TEST

static void expect_refused(rig *dst, gt_ckpt_model m, const char *path, const char *needle) {
    gt_real *before = malloc(sizeof(gt_real) * (size_t)dst->lora->n_values);
    memcpy(before, dst->lora->data, sizeof(gt_real) * (size_t)dst->lora->n_values);
    gt_ckpt_state st;
    char err[512];
    ck_assert_int_ne(gt_ckpt_load(path, &m, dst->s, dst->n, &dst->opt, &st, NULL, err, sizeof err), 0);
    ck_assert_msg(strstr(err, needle) && strstr(err, path), "expected '%s' in: %s", needle, err);
    ck_assert_msg(!strchr(err, '\n'), "one line: %s", err);
    ck_assert_int_eq(memcmp(before, dst->lora->data, sizeof(gt_real) * (size_t)dst->lora->n_values), 0);
    free(before);
}

START_TEST(other_shapes_are_refused_by_name) {
    rig a;
    rig_init(&a, 2, 2, 1);
    rig_train(&a);
    char path[256];
    gt_ckpt_path(dir, 3, path, sizeof path);
    save(&a, path, 3);
    rig r4, l3, tw;
    rig_init(&r4, 4, 2, 1);
    expect_refused(&r4, model_of(&r4), path, "lora rank 2, this run has 4");
    rig_init(&l3, 2, 3, 1);
    expect_refused(&l3, model_of(&l3), path, "num_layers 2, this run has 3");
    rig_init(&tw, 2, 2, 1);
    gt_ckpt_model m = model_of(&tw);
    m.optimizer = "sgd";
    expect_refused(&tw, m, path, "optimizer adamw, this run uses sgd");
    m = model_of(&tw);
    m.lora = NULL;
    expect_refused(&tw, m, path, "LoRA run, this run is full fine-tuning");
    tw.cfg.hidden_dim = 32;
    expect_refused(&tw, model_of(&tw), path, "hidden_dim 16, this run has 32");
    tw.cfg.hidden_dim = 16;
    tw.lora->alpha = 1;
    expect_refused(&tw, model_of(&tw), path, "lora alpha 4, this run has 1");
    rig_free(&a);
    rig_free(&r4);
    rig_free(&l3);
    rig_free(&tw);
}
END_TEST

START_TEST(truncated_and_foreign_files_fail_cleanly) {
    rig a;
    rig_init(&a, 2, 2, 1);
    char path[256], cut[300], err[512];
    gt_ckpt_path(dir, 1, path, sizeof path);
    save(&a, path, 1);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *bytes = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    ck_assert(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    snprintf(cut, sizeof cut, "%s/cut.h5", dir);
    int refused = 0, tries = 0;
    for (long n = 0; n < size; n += size / 97 + 1, tries++) {
        f = fopen(cut, "wb");
        fwrite(bytes, 1, (size_t)n, f);
        fclose(f);
        gt_ckpt_model m = model_of(&a);
        gt_ckpt_state st;
        if (gt_ckpt_load(cut, &m, a.s, a.n, &a.opt, &st, NULL, err, sizeof err)) {
            refused++;
            ck_assert_msg(strstr(err, cut) && !strchr(err, '\n'), "%s", err);
        }
    }
    ck_assert_int_eq(refused, tries); /* every strict prefix is refused */
    free(bytes);
    gt_ckpt_model m = model_of(&a);
    gt_ckpt_state st;
    ck_assert(gt_ckpt_load("tests/fixtures/gemma1.h5", &m, a.s, a.n, &a.opt, &st, NULL, err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "not a gemmatrain checkpoint"), "%s", err);
    ck_assert(gt_ckpt_load("tests/fixtures/vectors.jsonl", &m, a.s, a.n, &a.opt, &st, NULL, err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "not a readable HDF5 file"), "%s", err);
    ck_assert(gt_ckpt_load("/nonexistent/ckpt.h5", &m, a.s, a.n, &a.opt, &st, NULL, err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "No such file"), "%s", err);
    rig_free(&a);
}
END_TEST

static char *read_all(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    char *bytes = malloc((size_t)*size);
    fseek(f, 0, SEEK_SET);
    ck_assert(fread(bytes, 1, (size_t)*size, f) == (size_t)*size);
    fclose(f);
    return bytes;
}

static void write_all(const char *path, const char *bytes, long n) {
    FILE *f = fopen(path, "wb");
    ck_assert(fwrite(bytes, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
}

/* The seal (a checksum in the file's 512-byte user block, checked before libhdf5 reads it, which
 * crashes on some corrupted files): one changed byte anywhere after the block, a changed stored
 * checksum, a byte appended, each refused by name with the rig untouched; a file without the seal
 * (written before it: the same HDF5 data without the block) still loads, bit for bit. */
START_TEST(sealed_files_refuse_corruption_and_unsealed_ones_load) {
    rig a, b;
    rig_init(&a, 2, 2, 1);
    rig_init(&b, 2, 2, 99);
    rig_train(&a);
    char path[256], bad[300], err[512];
    gt_ckpt_path(dir, 3, path, sizeof path);
    save(&a, path, 3);
    long size;
    char *bytes = read_all(path, &size);
    ck_assert(size > 4096 && !memcmp(bytes, "GTCKSUM1", 8) && !memcmp(bytes + 512, "\x89HDF", 4));
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    gt_ckpt_model m = model_of(&b);
    for (long at = 512; at < size; at += size / 13) {
        bytes[at] ^= 0x20;
        write_all(bad, bytes, size);
        bytes[at] ^= 0x20;
        expect_refused(&b, m, bad, "checksum does not match");
    }
    bytes[16] ^= 1; /* the stored checksum itself */
    write_all(bad, bytes, size);
    bytes[16] ^= 1;
    expect_refused(&b, m, bad, "checksum does not match");
    char *yaml = NULL;
    ck_assert_int_ne(gt_ckpt_read_config(bad, &yaml, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "checksum") && strstr(err, bad), "%s", err);
    char *longer = malloc((size_t)size + 1);
    memcpy(longer, bytes, (size_t)size);
    longer[size] = 0;
    write_all(bad, longer, size + 1);
    free(longer);
    expect_refused(&b, m, bad, "appended to");
    write_all(bad, bytes + 512, size - 512); /* unsealed */
    gt_ckpt_state st;
    ck_assert_msg(gt_ckpt_load(bad, &m, b.s, b.n, &b.opt, &st, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(memcmp(a.lora->data, b.lora->data, sizeof(gt_real) * (size_t)a.lora->n_values), 0);
    ck_assert_int_eq(st.step, 3);
    free(bytes);
    rig_free(&a);
    rig_free(&b);
}
END_TEST

/* Found by fuzz_checkpoint: a file (unsealed, as every fuzz input) whose first arrays read and a
 * later one does not; the load wrote the readable ones before it failed. Now every array is read
 * once into scratch before any is written: refused, nothing touched. */
START_TEST(a_late_unreadable_array_leaves_everything_untouched) {
    rig b;
    rig_init(&b, 2, 2, 99);
    rig_train(&b);
    gt_real *before = malloc(sizeof(gt_real) * (size_t)(2 * b.opt.n_values));
    memcpy(before, b.opt.state, sizeof(gt_real) * (size_t)(2 * b.opt.n_values));
    expect_refused(&b, model_of(&b), "tests/fixtures/ckpt_late_unreadable.h5", "unreadable data");
    ck_assert_int_eq(memcmp(before, b.opt.state, sizeof(gt_real) * (size_t)(2 * b.opt.n_values)), 0);
    free(before);
    rig_free(&b);
}
END_TEST

/* Found by fuzz_checkpoint: a /config of 40 strings (or a 3-value /state@step) was read into one
 * value's room, a heap overflow; now each is refused by name. */
START_TEST(several_values_where_one_is_expected_are_refused) {
    rig a;
    rig_init(&a, 2, 2, 1);
    char path[256], err[512];
    gt_ckpt_path(dir, 1, path, sizeof path);
    save(&a, path, 1);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0 && H5Ldelete(f, "/config", H5P_DEFAULT) >= 0 && H5Adelete_by_name(f, "/state", "step", H5P_DEFAULT) >= 0);
    hsize_t n40 = 40, n3 = 3;
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate_simple(1, &n40, NULL);
    H5Tset_size(st, 64);
    char text[40 * 64];
    memset(text, 'a', sizeof text);
    hid_t d = H5Dcreate2(f, "/config", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(d >= 0 && H5Dwrite(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) >= 0);
    H5Dclose(d), H5Sclose(sp), H5Tclose(st);
    int64_t steps[3] = {1, 2, 3};
    sp = H5Screate_simple(1, &n3, NULL);
    hid_t at = H5Acreate_by_name(f, "/state", "step", H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(at >= 0 && H5Awrite(at, H5T_NATIVE_INT64, steps) >= 0);
    H5Aclose(at), H5Sclose(sp), H5Fclose(f);
    FILE *fu = fopen(path, "r+b"); /* edited after sealing: drop the seal, so the reader itself is tested */
    ck_assert(fu && fwrite("\0\0\0\0\0\0\0\0", 1, 8, fu) == 8);
    fclose(fu);
    char *yaml = NULL;
    ck_assert_int_ne(gt_ckpt_read_config(path, &yaml, err, sizeof err), 0);
    ck_assert_msg(strstr(err, path) && strstr(err, "/config"), "%s", err);
    expect_refused(&a, model_of(&a), path, "/state@step");
    rig_free(&a);
}
END_TEST

START_TEST(latest_and_prune) {
    rig a;
    rig_init(&a, 2, 1, 1);
    char path[256], err[512];
    int64_t step;
    ck_assert_int_eq(gt_ckpt_latest(dir, path, sizeof path, &step, err, sizeof err), 1);
    for (int s = 5; s <= 25; s += 5) {
        gt_ckpt_path(dir, s, path, sizeof path);
        save(&a, path, s);
    }
    /* a stale temporary of a writer that died, and an unrelated file */
    char junk[300];
    snprintf(junk, sizeof junk, "%s/.ckpt-00000030.h5.tmp-12345", dir);
    fclose(fopen(junk, "w"));
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    fclose(fopen(path, "w"));
    ck_assert_int_eq(gt_ckpt_latest(dir, path, sizeof path, &step, err, sizeof err), 0);
    ck_assert_int_eq(step, 25);
    ck_assert(gt_ckpt_prune(dir, 2, err, sizeof err) == 0);
    ck_assert(access(junk, F_OK) != 0);
    gt_ckpt_path(dir, 15, path, sizeof path);
    ck_assert(access(path, F_OK) != 0);
    gt_ckpt_path(dir, 20, path, sizeof path);
    ck_assert(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    ck_assert(access(path, F_OK) == 0);
    rig_free(&a);
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, round_trip_is_exact);
    tcase_add_test(tc, other_shapes_are_refused_by_name);
    tcase_add_test(tc, truncated_and_foreign_files_fail_cleanly);
    tcase_add_test(tc, sealed_files_refuse_corruption_and_unsealed_ones_load);
    tcase_add_test(tc, a_late_unreadable_array_leaves_everything_untouched);
    tcase_add_test(tc, several_values_where_one_is_expected_are_refused);
    tcase_add_test(tc, latest_and_prune);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
