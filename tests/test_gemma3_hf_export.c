/* The Hugging Face writer with Gemma 3's vision encoder (gt_hf_save_opts.vision): transformers'
 * tiny Gemma3ForConditionalGeneration (tests/fixtures/hf/gemma3_mm) written by us and read back
 * is bit-identical, decoder and encoder, under Google's tensor names; with encoder adapters
 * merged, transformers' logits on our export (tests/fixtures/hf/gemma3_mm_export_ref.h5, from
 * tools/reference/check_hf_vision_export.py) equal ours with the adapters applied. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma.h"
#include "models/io/h5io.h"
#include "models/io/hf_gemma.h"
#include "models/io/safetensors.h"
#include "models/io/vision_hf.h"
#include "models/vision.h"
#include "tests/check_main.h"

#define SRC "tests/fixtures/hf/gemma3_mm"
#define REF "tests/fixtures/hf/gemma3_mm_images_ref.h5"
#define EXPORT_REF "tests/fixtures/hf/gemma3_mm_export_ref.h5"

static void rm_rf(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void load_src(gt_gemma **m, gt_vision **v) {
    char err[1024];
    ck_assert_msg(!gt_hf_gemma_load(SRC, false, m, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_hf_load(SRC, false, v, err, sizeof err), "%s", err);
    ck_assert_ptr_nonnull(*v);
}

static void save(const gt_gemma *m, const gt_vision *v, const char *dir) {
    char err[1024];
    gt_hf_save_opts o = {.tokenizer = SRC "/tokenizer.json", .vision = v};
    ck_assert_msg(!gt_hf_gemma_save(m, dir, &o, err, sizeof err), "%s", err);
}

START_TEST(hf_export_round_trips) {
    char err[1024], dir[] = "/tmp/gt_hfv_XXXXXX", path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    gt_gemma *m, *m2;
    gt_vision *v, *v2;
    load_src(&m, &v);
    save(m, v, dir);
    ck_assert_msg(!gt_hf_gemma_load(dir, false, &m2, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_hf_load(dir, false, &v2, err, sizeof err), "%s", err);
    ck_assert_ptr_nonnull(v2);
    ck_assert_int_eq(m2->n_values, m->n_values);
    ck_assert(!memcmp(m->data, m2->data, sizeof(gt_real) * (size_t)m->n_values));
    ck_assert_int_eq(v2->n_params, v->n_params);
    ck_assert_int_eq(v2->cfg.pool_size, v->cfg.pool_size);
    for (int64_t i = 0; i < v->n_params; i++)
        ck_assert_msg(!memcmp(v->params[i]->data, v2->params[i]->data, sizeof(gt_real) * (size_t)v->params[i]->size),
                      "%s differs", v->params[i]->name);
    /* the names and config keys transformers looks for */
    gt_st *st;
    ck_assert_msg(!gt_st_open(dir, &st, err, sizeof err), "%s", err);
    ck_assert_ptr_nonnull(gt_st_find(st, "language_model.model.embed_tokens.weight"));
    ck_assert_ptr_nonnull(gt_st_find(st, "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight"));
    const gt_st_tensor *pk = gt_st_find(st, "vision_tower.vision_model.embeddings.patch_embedding.weight");
    ck_assert_ptr_nonnull(pk);
    ck_assert_int_eq(pk->ndim, 4);
    ck_assert_int_eq(pk->shape[1], 3);
    ck_assert_ptr_nonnull(gt_st_find(st, "multi_modal_projector.mm_input_projection_weight"));
    ck_assert_ptr_null(gt_st_find(st, "model.embed_tokens.weight"));
    gt_st_close(st);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "architectures"), 0)),
                     "Gemma3ForConditionalGeneration");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "image_token_index")), 152); /* the tokenizer's */
    ck_assert_int_eq(json_integer_value(json_object_get(j, "boi_token_index")), 150);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "mm_tokens_per_image")), 4);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "text_config"), "model_type")), "gemma3_text");
    json_decref(j);
    /* a text-only save stays Gemma3ForCausalLM */
    gt_hf_save_opts o = {0};
    ck_assert_msg(!gt_hf_gemma_save(m, dir, &o, err, sizeof err), "%s", err);
    gt_vision *none;
    ck_assert_msg(!gt_vision_hf_load(dir, false, &none, err, sizeof err), "%s", err);
    ck_assert_ptr_null(none);
    gt_vision_free(v), gt_vision_free(v2);
    gt_gemma_free(m), gt_gemma_free(m2);
    rm_rf(dir);
}
END_TEST

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

/* Our logits of the fixture's rows (1 and 2 images) with v's adapters applied. */
static gt_tensor *logits_of(gt_ctx *ctx, const gt_gemma *m, const gt_vision *v, int32_t **ids_out) {
    char err[512];
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(REF, &f, err, sizeof err), "%s", err);
    int nd;
    int64_t sh[8], npx;
    int32_t *ids;
    ck_assert(!gt_h5_read_i32(f, "/input_ids", &ids, &nd, sh, err, sizeof err));
    float *px = read_f32(f, "/pixel_values", &npx);
    gt_h5_close(f);
    int64_t B = sh[0], T = sh[1], n_soft = 0;
    uint8_t *vm = malloc((size_t)(B * T));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(B * T)), *end = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++)
        if ((vm[i] = ids[i] == 152)) pos[n_soft++] = (int32_t)i;
    gt_vision_span_ends(vm, B, T, end);
    gt_tensor *soft = gt_vision_encode(ctx, v, px, 3);
    int64_t flat[2] = {n_soft, m->cfg.hidden_dim};
    gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids, .soft_tokens = gt_reshape(ctx, soft, 2, flat),
                        .soft_pos = pos, .n_soft = n_soft, .bidir_end = end};
    gt_tensor *logits = gt_gemma_logits(ctx, m, gt_gemma_hidden(ctx, m, &b));
    ck_assert_msg(gt_ok(ctx), "%s", ctx->err);
    free(px), free(vm), free(pos), free(end);
    *ids_out = ids;
    return logits;
}

static double max_rel(const gt_tensor *t, const float *want, int64_t n) {
    ck_assert_int_eq(n, t->size);
    double mx = 0, md = 0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(want[i]));
        md = fmax(md, fabs((double)t->data[i] - want[i]));
    }
    return md / mx;
}

/* Encoder adapters (B != 0) merged on write. GT_HF_EXPORT_DIR: only write the export there (for
 * the reference script); else transformers' logits on it must be ours with the adapters. */
START_TEST(transformers_reads_our_export) {
    char err[1024], dir[] = "/tmp/gt_hfv_XXXXXX";
    gt_gemma *m, *m2;
    gt_vision *v, *v2;
    load_src(&m, &v);
    ck_assert_msg(!gt_vision_lora_create(v, 2, 4.0, 11, err, sizeof err), "%s", err);
    for (int64_t i = 0; i < v->n_lora; i++)
        for (int64_t j = 0; j < v->lora[i]->size; j++) v->lora[i]->data[j] = (gt_real)(0.3 * sin(2.0 + i * 17 + j));
    const char *keep = getenv("GT_HF_EXPORT_DIR");
    if (keep) {
        save(m, v, keep);
        gt_vision_free(v), gt_gemma_free(m);
        return;
    }
    ck_assert_ptr_nonnull(mkdtemp(dir));
    save(m, v, dir);
    ck_assert_msg(!gt_hf_gemma_load(dir, false, &m2, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_vision_hf_load(dir, false, &v2, err, sizeof err), "%s", err);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int32_t *ids, *ids2;
    gt_tensor *ours = logits_of(&ctx, m, v, &ids), *merged = logits_of(&ctx, m2, v2, &ids2);
    gt_h5 f;
    ck_assert_msg(!gt_h5_open_read(EXPORT_REF, &f, err, sizeof err), "%s", err);
    int64_t n, n0;
    float *want = read_f32(f, "/logits", &n);
    gt_h5_close(f);
    ck_assert_msg(!gt_h5_open_read(REF, &f, err, sizeof err), "%s", err);
    float *before = read_f32(f, "/logits", &n0);
    gt_h5_close(f);
    double e = max_rel(ours, want, n), em = max_rel(merged, want, n), moved = max_rel(ours, before, n0);
    printf("transformers on our HF export (encoder LoRA merged): logits %.3g x max of ours (reloaded %.3g); "
           "the adapters move them %.3g x max\n", e, em, moved);
    ck_assert_msg(moved > 1e-3, "the adapters change nothing (%.3g)", moved);
    ck_assert_msg(e <= 1e-4 && em <= 1e-4, "transformers on our export: %.3g / %.3g x max", e, em);
    free(want), free(before), free(ids), free(ids2);
    gt_ctx_free(&ctx);
    gt_vision_free(v), gt_vision_free(v2);
    gt_gemma_free(m), gt_gemma_free(m2);
    rm_rf(dir);
}
END_TEST

/* An encoder whose output width is not the decoder's is refused, naming the directory. */
START_TEST(hf_export_refuses_mismatched_encoder) {
    char err[1024], dir[] = "/tmp/gt_hfv_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    gt_gemma *m;
    gt_vision *v;
    load_src(&m, &v);
    v->cfg.output_dim = m->cfg.hidden_dim + 1;
    gt_hf_save_opts o = {.vision = v};
    ck_assert_int_eq(gt_hf_gemma_save(m, dir, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, dir) && strstr(err, "output_dim"), "%s", err);
    v->cfg.output_dim = m->cfg.hidden_dim;
    gt_vision_free(v), gt_gemma_free(m);
    rm_rf(dir);
}
END_TEST

int main(void) {
    gt_h5_process_init();
    Suite *s = suite_create("gemma3_hf_export");
    TCase *tc = tcase_create("gemma3_hf_export");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hf_export_round_trips);
    tcase_add_test(tc, transformers_reads_our_export);
    tcase_add_test(tc, hf_export_refuses_mismatched_encoder);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
