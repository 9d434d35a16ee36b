/* KerasHub reads our .lora.h5 of a Gemma 3 with a vision encoder: the tiny multimodal preset
 * KerasHub saved (tests/fixtures/presets/gemma3_mm: 7 decoder blocks, 2 encoder blocks) with
 * adapters on the decoder's query/value and on every encoder projection (B != 0), written by
 * gt_keras_lora_save_mm; tools/reference/check_vision_lora_keras.py loads the file with
 * Gemma3Backbone.enable_lora + load_lora_weights and runs Gemma3CausalLM on one row with one image
 * (tests/fixtures/gemma3_mm_lora_keras.h5). Our logits with the same adapters applied must be
 * KerasHub's; the file read back by gt_keras_lora_load_mm gives them too. And metadata.json's
 * parameter_count counts the encoder as KerasHub does. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/io/h5io.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "models/io/vision_keras.h"
#include "models/lora.h"
#include "models/vision.h"
#include "tests/check_main.h"

#define SRC "tests/fixtures/presets/gemma3_mm"
#define FIX "tests/fixtures/gemma3_mm_lora_keras.h5"

static void fill(gt_gemma **m, gt_vision **v, gt_lora **l) {
    char err[1024];
    ck_assert_msg(!gt_keras_preset_load(SRC, false, m, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_keras_load(SRC, false, v, err, sizeof err), "%s", err);
    unsigned targets = 1u << GT_LORA_QUERY | 1u << GT_LORA_VALUE;
    ck_assert_msg(!gt_lora_create_for(&(*m)->cfg, 2, 4.0, targets, 3, l, err, sizeof err), "%s", err);
    for (int64_t i = 0; i < (*m)->cfg.num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(*l, i, (gt_lora_target)t);
            for (int64_t j = 0; ad && j < ad->b.size; j++) ad->b.data[j] = (gt_real)(0.2 * sin(0.5 + i * 7 + t * 3 + j));
        }
    ck_assert_msg(!gt_vision_lora_create(*v, 2, 4.0, 9, err, sizeof err), "%s", err);
    for (int64_t i = 0; i < (*v)->n_lora; i++)
        for (int64_t j = 0; j < (*v)->lora[i]->size; j++) (*v)->lora[i]->data[j] = (gt_real)(0.4 * cos(1.0 + i * 13 + j));
}

static float *read_f32(gt_h5 f, const char *path, int64_t *n) {
    char err[512];
    float *d;
    int nd;
    int64_t sh[8];
    ck_assert_msg(!gt_h5_read_f32(f, path, &d, &nd, sh, err, sizeof err), "%s", err);
    *n = 1;
    for (int i = 0; i < nd; i++) *n *= sh[i];
    return d;
}

/* Logits of the fixture's row; *diff: worst |ours - KerasHub| / max. */
static gt_tensor *logits(gt_ctx *ctx, const gt_gemma *m, const gt_vision *v, gt_h5 f, double *diff) {
    char err[512];
    int nd;
    int64_t sh[8], n_img, n;
    int32_t *ids, *vm32;
    ck_assert(!gt_h5_read_i32(f, "/inputs/token_ids", &ids, &nd, sh, err, sizeof err));
    ck_assert(!gt_h5_read_i32(f, "/inputs/vision_mask", &vm32, &nd, sh, err, sizeof err));
    int64_t B = sh[0], T = sh[1], n_soft = 0;
    float *px = read_f32(f, "/inputs/images", &n_img), *want = read_f32(f, "/expected/logits", &n);
    uint8_t *vm = malloc((size_t)(B * T));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(B * T)), *end = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++)
        if ((vm[i] = (uint8_t)vm32[i])) pos[n_soft++] = (int32_t)i;
    gt_vision_span_ends(vm, B, T, end);
    int64_t S = v->cfg.image_size;
    gt_tensor *soft = gt_vision_encode(ctx, v, px, n_img / (S * S * 3));
    int64_t flat[2] = {n_soft, m->cfg.hidden_dim};
    gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids, .soft_tokens = gt_reshape(ctx, soft, 2, flat),
                        .soft_pos = pos, .n_soft = n_soft, .bidir_end = end};
    gt_tensor *y = gt_gemma_logits(ctx, m, gt_gemma_hidden(ctx, m, &b));
    ck_assert_msg(gt_ok(ctx), "%s", ctx->err);
    ck_assert_int_eq(y->size, n);
    double mx = 0, md = 0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(want[i]));
        md = fmax(md, fabs((double)y->data[i] - want[i]));
    }
    *diff = md / mx;
    free(ids), free(vm32), free(px), free(want), free(vm), free(pos), free(end);
    return y;
}

START_TEST(keras_loads_our_lora_file) {
    char err[1024], path[128];
    gt_gemma *m;
    gt_vision *v;
    gt_lora *l;
    fill(&m, &v, &l);
    const char *keep = getenv("GT_VISION_LORA_FILE");
    if (keep) {
        ck_assert_msg(!gt_keras_lora_save_mm(keep, l, &m->cfg, v, err, sizeof err), "%s", err);
        gt_lora_free(l), gt_vision_free(v), gt_gemma_free(m);
        return;
    }
    snprintf(path, sizeof path, "/tmp/gt_vlora_%d.lora.h5", (int)getpid());
    ck_assert_msg(!gt_keras_lora_save_mm(path, l, &m->cfg, v, err, sizeof err), "%s", err);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(FIX, &f, err, sizeof err), "%s", err);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    double base, ours, back;
    m->lora = l;
    logits(&ctx, m, v, f, &ours);
    gt_vision *v0;
    ck_assert_msg(!gt_vision_keras_load(SRC, false, &v0, err, sizeof err), "%s", err);
    m->lora = NULL;
    logits(&ctx, m, v0, f, &base);
    /* read back: fresh adapters from the file, the encoder's into v0 */
    gt_lora *l2;
    ck_assert_msg(!gt_keras_lora_open_mm(path, &m->cfg, v0, &l2, err, sizeof err), "%s", err);
    ck_assert_int_eq(v0->n_lora, v->n_lora);
    m->lora = l2;
    logits(&ctx, m, v0, f, &back);
    printf("keras_hub load_lora_weights on our .lora.h5 (decoder + encoder adapters): logits %.3g x max of ours "
           "(read back %.3g); without the adapters %.3g\n", ours, back, base);
    ck_assert_msg(base > 1e-2, "the adapters change nothing (%.3g)", base);
    ck_assert_msg(ours <= 1e-4 && back <= 1e-4, "KerasHub with our adapters: %.3g / %.3g x max", ours, back);
    /* a text-only reader of the file is told what it holds */
    gt_lora *l3;
    ck_assert_int_eq(gt_keras_lora_open(path, &m->cfg, &l3, err, sizeof err), -1);
    gt_ctx_free(&ctx);
    gt_h5_close(f);
    m->lora = NULL;
    gt_lora_free(l), gt_lora_free(l2);
    gt_vision_free(v), gt_vision_free(v0);
    gt_gemma_free(m);
    unlink(path);
}
END_TEST

/* metadata.json's parameter_count counts the encoder: the fixture preset written again gives the
 * count keras_hub 0.32 wrote into its own metadata.json (42808). */
START_TEST(metadata_counts_the_encoder) {
    char err[1024], dir[] = "/tmp/gt_vmeta_XXXXXX", path[128];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    gt_gemma *m;
    gt_vision *v;
    gt_tokenizer *tok;
    ck_assert_msg(!gt_keras_preset_load(SRC, false, &m, NULL, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_keras_load(SRC, false, &v, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_tok_load("tests/fixtures/presets/gemma3/assets/tokenizer/vocabulary.spm", &tok, err, sizeof err),
                  "%s", err);
    gt_preset_save_opts o = {.sequence_length = 16, .prov = {.steps = -1, .final_eval_loss = NAN}, .vision = v};
    ck_assert_msg(!gt_keras_preset_save(dir, m, tok, &o, err, sizeof err), "%s", err);
    snprintf(path, sizeof path, "%s/metadata.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "parameter_count")), 42808);
    json_decref(j);
    gt_tok_free(tok), gt_vision_free(v), gt_gemma_free(m);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

int main(void) {
    gt_h5_process_init();
    Suite *s = suite_create("vision_lora_keras");
    TCase *tc = tcase_create("vision_lora_keras");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, keras_loads_our_lora_file);
    tcase_add_test(tc, metadata_counts_the_encoder);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
