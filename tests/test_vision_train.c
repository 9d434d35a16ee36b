/* LoRA fine-tuning of a tiny Gemma 3 with images on the shipped shapes task (datasets/shapes,
 * tools/make_shapes_task.py), end to end: JSONL "images" records, the <start_of_image> expansion
 * with the real Gemma 3 vocabulary, PNG decoding and Gemma 3 preprocessing, the frozen vision
 * encoder, image embeddings at their placeholders with the image spans' bidirectional mask,
 * LoRA on every decoder projection, AdamW. The eval loss must fall; with the eval images
 * rotated among the records, it must be worse than with the right ones (the model reads them).
 * The token ids are renumbered densely (only the ~40 the task uses) so that the model stays
 * tiny. Needs the real Gemma 3 270M GGUF (its vocabulary); skips without. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "models/gemma.h"
#include "models/lora.h"
#include "models/vision.h"
#include "tests/testdata.h"
#include "train/optim.h"
#include "tests/check_main.h"

#define S 24
#define IMG 32
#define MAXN 96

typedef struct {
    int64_t n;
    int32_t ids[MAXN][S], labels[MAXN][S];
    uint8_t mask[MAXN][S], vision[MAXN][S];
    float w[MAXN][S];
    float *images; /* n * IMG * IMG * 3 */
} split;

static void load_split(const char *path, const gt_tokenizer *tok, split *sp) {
    gt_dataset ds;
    char err[1024];
    ck_assert_msg(gt_dataset_open(path, GT_DS_AUTO, false, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert(ds.n <= MAXN);
    sp->n = ds.n;
    sp->images = malloc(sizeof(float) * (size_t)(ds.n * IMG * IMG * 3));
    gt_pp_cfg cfg = {.seq_len = S, .add_bos = true, .add_eos = true, .image_tokens = 4};
    gt_image_cfg ic = gt_image_cfg_gemma3(IMG);
    for (int64_t i = 0; i < ds.n; i++) {
        gt_example ex;
        ck_assert_msg(gt_dataset_read(&ds, i, &ex, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(ex.n_images, 1);
        ck_assert_msg(gt_pp_example(tok, &cfg, &ex, sp->ids[i], sp->labels[i], sp->mask[i], sp->w[i],
                                    err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(gt_pp_vision_mask(tok, sp->ids[i], S, sp->vision[i]), 4);
        gt_image im;
        ck_assert_msg(gt_image_load(ex.images[0], &im, err, sizeof err) == 0, "%s", err);
        ck_assert(gt_image_preprocess(&im, &ic, sp->images + i * IMG * IMG * 3, err, sizeof err) == 0);
        gt_image_free(&im);
        gt_example_free(&ex);
    }
    gt_dataset_close(&ds);
}

/* Dense renumbering of every id the two splits use. */
static int32_t renumber(split *a, split *b) {
    static int32_t map[262144 + 64];
    memset(map, -1, sizeof map);
    int32_t k = 0;
    split *sp[2] = {a, b};
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < sp[s]->n; i++)
            for (int t = 0; t < S; t++) {
                int32_t *v[2] = {&sp[s]->ids[i][t], &sp[s]->labels[i][t]};
                for (int j = 0; j < 2; j++) {
                    if (map[*v[j]] < 0) map[*v[j]] = k++;
                    *v[j] = map[*v[j]];
                }
            }
    return k;
}

/* Mean weighted cross-entropy of rows [r0, r0 + n) of sp (images of row r taken from row
 * (r + shift) % sp->n); with opt, one AdamW step on it. */
static double run_batch(gt_gemma *m, gt_vision *v, split *sp, int64_t r0, int64_t n, int shift,
                        gt_optim *opt, gt_lora *lora) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = opt != NULL;
    int64_t per = IMG * IMG * 3, T = S;
    float *img = malloc(sizeof(float) * (size_t)(n * per));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(n * 4)), *end = malloc(sizeof(int32_t) * (size_t)(n * T));
    int64_t n_soft = 0;
    for (int64_t i = 0; i < n; i++) {
        memcpy(img + i * per, sp->images + ((r0 + i + shift) % sp->n) * per, sizeof(float) * (size_t)per);
        for (int64_t t = 0; t < T; t++)
            if (sp->vision[r0 + i][t]) pos[n_soft++] = (int32_t)(i * T + t);
    }
    gt_vision_span_ends(&sp->vision[r0][0], n, T, end);
    gt_tensor *soft = gt_vision_encode(&ctx, v, img, n);
    int64_t flat[2] = {n_soft, m->cfg.hidden_dim};
    gt_gemma_batch b = {.batch = n, .seq = T, .token_ids = &sp->ids[r0][0], .padding_mask = &sp->mask[r0][0],
                        .soft_tokens = gt_reshape(&ctx, soft, 2, flat), .soft_pos = pos, .n_soft = n_soft,
                        .bidir_end = end};
    double ws = 0;
    gt_tensor *loss = gt_gemma_lm_loss(&ctx, m, gt_gemma_hidden(&ctx, m, &b), &sp->labels[r0][0],
                                       &sp->w[r0][0], 64, &ws, NULL);
    ck_assert_msg(gt_ok(&ctx), "%s", ctx.err);
    double mean = loss->data[0] / ws;
    if (opt) {
        gt_lora_zero_grad(lora);
        ck_assert_int_eq(gt_backward(&ctx, gt_scale(&ctx, loss, 1.0 / ws)), GT_OK);
        gt_optim_step(opt, 1e-2);
    }
    free(img), free(pos), free(end);
    gt_ctx_free(&ctx);
    return mean;
}

static double eval_loss(gt_gemma *m, gt_vision *v, split *ev, int shift) {
    double sum = 0;
    for (int64_t r = 0; r < ev->n; r += 8) sum += run_batch(m, v, ev, r, 8, shift, NULL, NULL);
    return sum / (double)(ev->n / 8);
}

START_TEST(lora_learns_the_shapes_task) {
    const char *gguf = gt_test_gemma3_270m_gguf("shapes task LoRA");
    if (!gguf) return;
    char err[1024];
    gt_tokenizer *tok;
    ck_assert_msg(gt_tok_load(gguf, &tok, err, sizeof err) == 0, "%s", err);
    static split tr, ev;
    load_split("datasets/shapes/train.jsonl", tok, &tr);
    load_split("datasets/shapes/eval.jsonl", tok, &ev);
    gt_tok_free(tok);
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = renumber(&tr, &ev);
    c.num_layers = 2, c.hidden_dim = 32, c.intermediate_dim = 64;
    c.num_query_heads = 2, c.num_kv_heads = 1, c.head_dim = 16;
    c.vision = (gt_vision_config){IMG, 8, 2, 32, 1, 64, 32, 2, 1e-6};
    gt_gemma *m;
    gt_vision *v;
    ck_assert_msg(gt_gemma_create(&c, false, &m, err, sizeof err) == 0, "%s", err);
    gt_gemma_init_random(m, 5, 0.3);
    ck_assert_msg(gt_vision_create(&c.vision, false, &v, err, sizeof err) == 0, "%s", err);
    unsigned rng = 9;
    for (int64_t i = 0; i < v->n_params; i++)
        if (!strstr(v->params[i]->name, "gamma"))
            for (int64_t j = 0; j < v->params[i]->size; j++) {
                rng = rng * 1103515245u + 12345u;
                v->params[i]->data[j] = (float)(((rng >> 8) & 0xffff) / 65536.0 - 0.5) * 0.5f;
            }
    gt_lora *lora;
    ck_assert_msg(gt_lora_create_for(&c, 8, 16, (1u << GT_LORA_NTARGETS) - 1, 3, &lora, err, sizeof err) == 0, "%s", err);
    m->lora = lora;
    gt_optim opt;
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    gt_param_slice slice = {"lora", lora->data, lora->grad, lora->n_values, true};
    ck_assert_msg(gt_optim_init(&opt, &oc, &slice, 1, err, sizeof err) == 0, "%s", err);
    double before = eval_loss(m, v, &ev, 0);
    for (int epoch = 0; epoch < 6; epoch++)
        for (int64_t r = 0; r + 8 <= tr.n; r += 8) run_batch(m, v, &tr, r, 8, 0, &opt, lora);
    double after = eval_loss(m, v, &ev, 0), wrong = eval_loss(m, v, &ev, 1);
    printf("shapes task: eval loss %.4f before, %.4f after %lld LoRA steps (%.4f with the images "
           "rotated), vocabulary %lld\n", before, after, (long long)opt.step, wrong, (long long)c.vocab_size);
    ck_assert_msg(after < 0.5 * before, "eval loss %.4f -> %.4f", before, after);
    ck_assert_msg(wrong > after + 0.05, "the images do not matter: %.4f right, %.4f rotated", after, wrong);
    free(tr.images), free(ev.images);
    gt_optim_free(&opt);
    m->lora = NULL;
    gt_lora_free(lora);
    gt_vision_free(v);
    gt_gemma_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vision_train");
    TCase *tc = tcase_create("vision_train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lora_learns_the_shapes_task);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
