/* The vision encoder's LoRA adapters leave a run and come back (configs/shapes-lora.yaml with
 * model.vision_train=lora, one epoch): adapter.lora.h5 holds them at KerasHub's indices, so
 * `eval --lora` gives the trainer's eval loss even with the encoder frozen in the eval config
 * (a frozen-encoder run's loss differs, so the encoder's adapters are what matter); `export` from
 * the checkpoint carries the encoder: a merged KerasHub preset and a merged Hugging Face directory
 * (`eval --model`), and the base preset with the adapters beside it (`eval --model --lora`), all
 * give the run's number; the preset's preprocessor.json has the image converter and metadata.json
 * counts the encoder. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/io/h5io.h"
#include "tests/check_main.h"
#include "tests/cli_run.h"

#define CFG "configs/shapes-lora.yaml"
#define IMG "datasets/shapes/images/eval_000.png"
#define PROMPT "<start_of_image>What is in the picture? A red square."

static char g_dir[64], g_out[1 << 16];

/* The CLI, its output in g_out. */
static int run(const char *args) { return gt_test_run(args, g_out, sizeof g_out); }

/* The loss an eval or train command prints last. */
static double loss_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static double loss_of(const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = run(args);
    ck_assert_msg(rc == 0, "%s: exit %d\n%s", args, rc, g_out);
    const char *p = strstr(g_out, "eval after training: loss ");
    if (p) return atof(p + strlen("eval after training: loss "));
    p = strstr(g_out, "\"mean_loss\":"); /* generate --score */
    if (p) return atof(p + strlen("\"mean_loss\":"));
    p = strstr(g_out, "\"loss\": ");
    ck_assert_msg(p != NULL, "%s: no loss in\n%s", args, g_out);
    return atof(p + strlen("\"loss\": "));
}

/* The checkpoint exported merged (KerasHub, HF) and as base + adapter.lora.h5. */
static void exports(const char *ck) {
    static const char *const how[3] = {"mk --merge-lora", "mh --merge-lora --format hf", "base"};
    for (int i = 0; i < 3; i++) {
        char args[1024];
        snprintf(args, sizeof args, "export %s --out %s/%s", ck, g_dir, how[i]);
        ck_assert_msg(run(args) == 0, "%s\n%s", args, g_out);
        ck_assert_msg(!strstr(g_out, "stays behind"), "%s", g_out);
    }
}

/* The merged preset's preprocessor.json holds Gemma3ImageConverter (keras_hub's
 * Gemma3CausalLM.from_preset then builds the preprocessor with images) and metadata.json counts
 * the encoder: 604800, what keras_hub's backbone.count_params() gives on this export. */
static void preset_files(void) {
    char path[256];
    json_error_t je;
    snprintf(path, sizeof path, "%s/mk/preprocessor.json", g_dir);
    json_t *j = json_load_file(path, 0, &je), *c = json_object_get(j, "config");
    ck_assert_msg(j != NULL, "%s: %s", path, je.text);
    json_t *ic = json_object_get(c, "image_converter");
    ck_assert_str_eq(json_string_value(json_object_get(ic, "class_name")), "Gemma3ImageConverter");
    json_t *icc = json_object_get(ic, "config");
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(icc, "image_size"), 0)), 32);
    ck_assert(fabs(json_real_value(json_object_get(icc, "scale")) - 1 / 127.5) < 1e-12);
    ck_assert(json_is_true(json_object_get(icc, "crop_to_aspect_ratio")));
    ck_assert_int_eq(json_integer_value(json_object_get(c, "num_vision_tokens_per_image")), 4);
    ck_assert(json_is_true(json_object_get(json_object_get(json_object_get(c, "tokenizer"), "config"), "has_vision_tokens")));
    json_decref(j);
    snprintf(path, sizeof path, "%s/mk/metadata.json", g_dir);
    j = json_load_file(path, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", path, je.text);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "parameter_count")), 604800);
    json_decref(j);
}

/* One kernel of a .lora.h5 (owned by the caller). */
static float *kernel(const char *path, const char *ds, int64_t *n) {
    char err[512];
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(path, &f, err, sizeof err), "%s", err);
    float *d;
    int nd;
    int64_t sh[8];
    ck_assert_msg(!gt_h5_read_f32(f, ds, &d, &nd, sh, err, sizeof err), "%s", err);
    gt_h5_close(f);
    *n = sh[0] * sh[1];
    return d;
}

/* Training on from the file with the encoder frozen: the decoder's adapters move, the encoder's
 * (read from the file) stay as they were. */
static void frozen_encoder_keeps_its_adapters(const char *path) {
    loss_of("train " CFG " output_dir=%s/cont lora.weights=%s train.epochs=1", g_dir, path);
    char out[256];
    snprintf(out, sizeof out, "%s/cont/adapter.lora.h5", g_dir);
    int64_t n1, n2;
    float *a = kernel(path, "/lora/15/vars/lora_kernel_b", &n1), *b = kernel(out, "/lora/15/vars/lora_kernel_b", &n2);
    ck_assert_int_eq(n1, n2);
    ck_assert_msg(!memcmp(a, b, sizeof(float) * (size_t)n1), "the frozen encoder's adapters moved");
    free(a), free(b);
    a = kernel(path, "/lora/21/vars/lora_kernel_b", &n1), b = kernel(out, "/lora/21/vars/lora_kernel_b", &n2);
    ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)n1), "the decoder's adapters did not train");
    free(a), free(b);
}

START_TEST(encoder_adapters_leave_and_come_back) {
    double lora = loss_of("train " CFG " output_dir=%s/run model.vision_train=lora train.epochs=1 "
                          "checkpoint.dir=%s/ckpt", g_dir, g_dir);
    ck_assert_msg(!strstr(g_out, "holds no vision encoder"), "%s", g_out);
    double frozen = loss_of("train " CFG " output_dir=%s/frozen train.epochs=1", g_dir);
    /* the file: decoder adapters past the encoder's layers, the encoder's four per block */
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/run/adapter.lora.h5", g_dir);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(path, &f, err, sizeof err), "%s", err);
    ck_assert(gt_h5_exists(f, "/lora/15/vars/lora_kernel_a")); /* encoder_block_0 query_proj */
    ck_assert(gt_h5_exists(f, "/lora/12/vars/lora_kernel_b")); /* its out_proj */
    ck_assert(!gt_h5_exists(f, "/lora/1"));
    gt_h5_close(f);
    double back = loss_of("eval " CFG " --lora %s", path);
    frozen_encoder_keeps_its_adapters(path);
    char ck[256];
    snprintf(ck, sizeof ck, "%s/ckpt/ckpt-00000012.h5", g_dir);
    exports(ck);
    preset_files();
    double keras = loss_of("eval " CFG " --model %s/mk lora.enabled=false", g_dir);
    double hf = loss_of("eval " CFG " --model %s/mh lora.enabled=false", g_dir);
    double beside = loss_of("eval " CFG " --model %s/base --lora %s/base/adapter.lora.h5", g_dir, g_dir);
    /* generate --lora --image on the base preset reads the encoder's adapters too: the merged model's losses */
    double gl = loss_of("generate --model %s/base --lora %s/base/adapter.lora.h5 --image " IMG " --score \"" PROMPT "\"",
                        g_dir, g_dir);
    double gm = loss_of("generate --model %s/mk --image " IMG " --score \"" PROMPT "\"", g_dir);
    printf("vision LoRA CLI: generate --score --image: mean loss %.6f with --lora, %.6f merged\n", gl, gm);
    ck_assert_msg(fabs(gl - gm) <= 1e-5 * gm, "generate --lora %.6f vs merged %.6f", gl, gm);
    printf("vision LoRA CLI: eval %.6f in the run (frozen encoder %.6f); eval --lora %.6f; exported merged preset %.6f, "
           "HF %.6f, preset + adapter.lora.h5 %.6f\n", lora, frozen, back, keras, hf, beside);
    ck_assert_msg(fabs(frozen - lora) > 1e-3, "the encoder's adapters change nothing: %.6f vs %.6f", lora, frozen);
    ck_assert_msg(fabs(back - lora) <= 5e-5, "eval --lora %.6f vs %.4f", back, lora); /* the trainer prints 4 decimals */
    ck_assert_msg(fabs(keras - back) <= 1e-5 * back && fabs(hf - back) <= 1e-5 * back && fabs(beside - back) <= 1e-5 * back,
                  "exports: %.6f %.6f %.6f vs %.6f", keras, hf, beside, back);
}
END_TEST

int main(void) {
    gt_h5_process_init();
    snprintf(g_dir, sizeof g_dir, "/tmp/gt-test-vlora-cli-XXXXXX");
    if (!mkdtemp(g_dir)) return fprintf(stderr, "mkdir %s failed\n", g_dir), EXIT_FAILURE;
    Suite *s = suite_create("vision_lora_cli");
    TCase *tc = tcase_create("vision_lora_cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, encoder_adapters_leave_and_come_back);
    suite_add_tcase(s, tc);
    int rc = gt_test_suite_main(s);
    if (gt_test_rmtree(g_dir)) fprintf(stderr, "removing %s failed\n", g_dir);
    return rc;
}
