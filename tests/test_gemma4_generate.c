/* generate --image / --audio on Gemma 4 (cli/gen_media4.h): a copy of the KerasHub towers preset
 * (tests/fixtures/presets/gemma4_towers) with a 61-piece vocabulary holding the media markers and
 * a preprocessor.json sizing the converters for its tiny towers. The CLI's greedy completion of a
 * prompt with an image and a clip equals a direct call path (the converters, then
 * gt_gemma4_media_hidden over the whole sequence and argmax per step, with the clip's mel left
 * untruncated), and so does the beam sampler with one beam; --score --logits gives the same
 * prompt ids and logits; two clips in one prompt likewise (logits and greedy output); a model
 * without the tower, an unreadable file, too many clips and a marker count that does not fit are
 * refused. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/audio.h"
#include "data/image4.h"
#include "data/tokenizer.h"
#include "models/gemma4_mm.h"
#include "models/io/keras_preset.h"
#include "models/io/towers4_keras.h"
#include "tests/cli_run.h"
#include "tests/score_json.h"
#include "tests/check_main.h"

#define TOWERS "tests/fixtures/presets/gemma4_towers"
#define IMAGE "tests/fixtures/images/rgb_45x33.jpg"
#define CLIP "tests/fixtures/audio/short_tone.wav"
#define PROMPT "a <|image|> b <|audio|> c"
#define NEW 6

static char dir[64], plain[64];

static void copy(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert_msg(a && b, "copy %s -> %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

/* 61 pieces (the towers preset's vocabulary size): specials, the six media markers, letters. */
static void write_vocab(const char *path) {
    static const char *const mark[] = {"<|image>", "<|image|>", "<image|>", "<|audio>", "<|audio|>", "<audio|>"};
    const char *pieces[61];
    char store[61][8];
    float scores[61];
    int32_t types[61];
    const char *sp[4] = {"<pad>", "<eos>", "<bos>", "<unk>"};
    for (int i = 0; i < 61; i++) {
        scores[i] = (float)-i;
        if (i < 4) pieces[i] = sp[i], types[i] = i == 3 ? GT_PIECE_UNKNOWN : GT_PIECE_CONTROL;
        else if (i < 10) pieces[i] = mark[i - 4], types[i] = GT_PIECE_USER_DEFINED;
        else if (i < 36) snprintf(store[i], 8, "%c", 'a' + i - 10), pieces[i] = store[i], types[i] = GT_PIECE_NORMAL;
        else if (i < 60) snprintf(store[i], 8, "\xe2\x96\x81%c", 'a' + i - 36), pieces[i] = store[i], types[i] = GT_PIECE_NORMAL;
        else pieces[i] = "\xe2\x96\x81", types[i] = GT_PIECE_NORMAL;
    }
    gt_tokenizer *tok;
    char err[512];
    ck_assert_msg(gt_tok_from_pieces(pieces, scores, types, 61, &tok, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_tok_save_spm(tok, path, err, sizeof err) == 0, "%s", err);
    gt_tok_free(tok);
}

/* A preset directory: src's config and weights, our vocabulary, the tiny converters. */
static void make_preset(const char *d, const char *src) {
    char p[256], q[256];
    ck_assert(mkdir(d, 0755) == 0);
    snprintf(p, sizeof p, "%s/assets", d), ck_assert(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/assets/tokenizer", d), ck_assert(mkdir(p, 0755) == 0);
    static const char *const files[] = {"config.json", "metadata.json", "model.weights.h5"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", src, files[i]), snprintf(q, sizeof q, "%s/%s", d, files[i]);
        copy(p, q);
    }
    snprintf(p, sizeof p, "%s/assets/tokenizer/vocabulary.spm", d);
    write_vocab(p);
    snprintf(p, sizeof p, "%s/preprocessor.json", d);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "{\"class_name\": \"Gemma4CausalLMPreprocessor\", \"config\": {"
               "\"image_converter\": {\"config\": {\"patch_size\": 4, \"max_soft_tokens\": 4, "
               "\"pooling_kernel_size\": 3}}, \"audio_converter\": {\"config\": {\"num_mels\": 16, "
               "\"max_audio_length\": 1}}}}\n");
    fclose(f);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/gt-test-g4gen-%d", (int)getpid());
    snprintf(plain, sizeof plain, "/tmp/gt-test-g4gen-plain-%d", (int)getpid());
    make_preset(dir, TOWERS);
    make_preset(plain, "tests/fixtures/presets/gemma4");
}

static void teardown(void) {
    gt_test_rmtree(dir);
    gt_test_rmtree(plain);
}

static void push_text(const gt_tokenizer *tok, const char *s, gt_ids *ids) {
    char err[256];
    ck_assert_msg(gt_tok_encode(tok, s, strlen(s), false, ids, err, sizeof err) == 0, "%s", err);
}

static void push_span(const gt_tokenizer *tok, const char *s, const char *slot, const char *e, int64_t n, gt_ids *ids) {
    gt_ids_push(ids, gt_tok_piece_id(tok, s));
    for (int64_t i = 0; i < n; i++) gt_ids_push(ids, gt_tok_piece_id(tok, slot));
    gt_ids_push(ids, gt_tok_piece_id(tok, e));
}

typedef struct {
    gt_gemma *m;
    gt_tokenizer *tok;
    gt_vision4 v;
    gt_audio_enc a;
    float patches[36 * 48], *mel;
    int32_t pos[36 * 2];
    uint8_t valid[100];
    gt_gemma4_images im;
    gt_gemma4_clips cl;
    gt_gemma4_media md;
    gt_ids ids;
} ref_path;

/* The model, the media through the converters (the clip's 100 frames whole) and PROMPT's ids as
 * Gemma4CausalLMPreprocessor lays them out: 4 image tokens, ceil(37 valid frames / 4) = 10 audio. */
static void ref_load(ref_path *r) {
    char err[1024];
    bool hv, ha;
    memset(r, 0, sizeof *r);
    ck_assert_msg(gt_keras_preset_load(dir, false, &r->m, &r->tok, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_towers4_keras_load(dir, &r->v, &hv, &r->a, &ha, err, sizeof err) == 0, "%s", err);
    ck_assert(hv && ha);
    gt_image4_cfg ic = {4, 3, 4, {1.0f / 255, 1.0f / 255, 1.0f / 255}, {0, 0, 0}};
    ck_assert_msg(gt_image4_load(IMAGE, &ic, r->patches, r->pos, NULL, err, sizeof err) == 0, "%s", err);
    gt_audio_cfg ac;
    gt_audio_cfg_default(&ac);
    ac.num_mels = 16, ac.max_audio_length = 1;
    float *wav;
    int64_t ns;
    ck_assert_msg(gt_audio_read_wav(CLIP, 16000, &wav, &ns, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_audio_num_frames(&ac), 100);
    r->mel = malloc(sizeof(float) * 100 * 16);
    ck_assert_msg(gt_audio_features(&ac, wav, ns, r->mel, err, sizeof err) == 0, "%s", err);
    int64_t nv = gt_audio_valid_frames(&ac, ns), nt = gt_audio_num_tokens(&ac, ns);
    ck_assert(nv == 37 && nt == 10);
    free(wav);
    for (int t = 0; t < 100; t++) r->valid[t] = t < nv;
    r->im = (gt_gemma4_images){r->patches, r->pos, 1, 36};
    r->cl = (gt_gemma4_clips){r->mel, r->valid, 1, 100};
    r->md = (gt_gemma4_media){&r->v, false, gt_tok_piece_id(r->tok, "<|image|>"), &r->im,
                              &r->a, gt_tok_piece_id(r->tok, "<|audio|>"), &r->cl};
    gt_ids_push(&r->ids, gt_tok_bos(r->tok));
    push_text(r->tok, "a ", &r->ids);
    push_span(r->tok, "<|image>", "<|image|>", "<image|>", 4, &r->ids);
    push_text(r->tok, " b ", &r->ids);
    push_span(r->tok, "<|audio>", "<|audio|>", "<audio|>", nt, &r->ids);
    push_text(r->tok, " c", &r->ids);
}

static void ref_free(ref_path *r) {
    gt_ids_free(&r->ids);
    gt_vision4_free(&r->v);
    gt_audio_enc_free(&r->a);
    gt_tok_free(r->tok);
    gt_gemma_free(r->m);
    free(r->mel);
}

/* Logits [n, V] of ids[0..n) with the media placed, uncached. */
static gt_tensor *ref_logits(gt_ctx *ctx, const ref_path *r, const int32_t *ids, int64_t n) {
    gt_gemma_batch b = {.batch = 1, .seq = n, .token_ids = ids};
    gt_tensor *z = gt_gemma_logits(ctx, r->m, gt_gemma4_media_hidden(ctx, r->m, &r->md, &b));
    ck_assert_msg(z, "%s", ctx->err);
    return z;
}

START_TEST(greedy_matches_the_direct_path) {
    ref_path r;
    ref_load(&r);
    int64_t V = r.m->cfg.vocab_size, n0 = (int64_t)r.ids.n;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int32_t eos = gt_tok_eos(r.tok);
    size_t ng = 0;
    for (int s = 0; s < NEW; s++, ng++) {
        gt_ctx_reset(&ctx);
        gt_tensor *z = ref_logits(&ctx, &r, r.ids.ids, (int64_t)r.ids.n);
        const gt_real *row = z->data + ((int64_t)r.ids.n - 1) * V;
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = (int32_t)v;
        gt_ids_push(&r.ids, best);
        if (best == eos) {
            ng++;
            break;
        }
    }
    char *want = NULL, err[256];
    ck_assert_int_eq(gt_tok_decode(r.tok, r.ids.ids + n0, ng, true, &want, NULL, err, sizeof err), 0);
    static char out[1 << 16];
    char args[1024];
    snprintf(args, sizeof args, "generate --model %s --image " IMAGE " --audio " CLIP " --max-new-tokens %d "
             "--strip-prompt '" PROMPT "'", dir, NEW);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    size_t len = strlen(out);
    ck_assert_msg(len > 0 && out[len - 1] == '\n', "%s", out);
    out[len - 1] = 0;
    printf("gemma4 generate --image --audio: CLI \"%s\", direct path \"%s\" (%zu tokens after a %lld-token "
           "prompt)\n", out, want, ng, (long long)n0);
    ck_assert_msg(strlen(want) > 0, "the direct path generated no text");
    ck_assert_str_eq(out, want);
    /* BeamSampler with one beam is greedy: the beam path's prefill places the media too */
    snprintf(args, sizeof args, "generate --model %s --image " IMAGE " --audio " CLIP " --max-new-tokens %d "
             "--sampler beam:num_beams=1 --strip-prompt '" PROMPT "'", dir, NEW);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    len = strlen(out);
    ck_assert_msg(len > 0 && out[len - 1] == '\n', "%s", out);
    out[len - 1] = 0;
    ck_assert_str_eq(out, want);
    free(want);
    gt_ctx_free(&ctx);
    ref_free(&r);
}
END_TEST

START_TEST(score_logits_match_the_direct_path) {
    ref_path r;
    ref_load(&r);
    int64_t V = r.m->cfg.vocab_size, n = (int64_t)r.ids.n;
    static char out[1 << 20];
    char args[1024];
    snprintf(args, sizeof args, "generate --model %s --image " IMAGE " --audio " CLIP " --score --logits '" PROMPT "'",
             dir);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%.2000s", rc, out);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_tensor *z = ref_logits(&ctx, &r, r.ids.ids, n);
    double mx, worst = gt_test_score_diff(out, r.ids.ids, n, z, V, &mx);
    printf("gemma4 generate --score --logits with an image and a clip: %lld tokens, max |diff| %.3g (max |logit| "
           "%.3g)\n", (long long)n, worst, mx);
    ck_assert(mx > 0);
    ck_assert_msg(worst <= 1e-5 * mx, "logits differ by %.3g", worst);
    /* the check can fail: other pixels, or other features, move the last logits */
    double moved[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        float *x = k ? r.mel : r.patches;
        size_t nx = k ? 100 * 16 : 36 * 48;
        for (size_t i = 0; i < nx; i++) x[i] = k ? x[i] + 1.0f : 1.0f - x[i];
        gt_tensor *z2 = ref_logits(&ctx, &r, r.ids.ids, n);
        for (int64_t v = 0; v < V; v++) moved[k] = fmax(moved[k], fabs(z2->data[(n - 1) * V + v] - z->data[(n - 1) * V + v]));
        for (size_t i = 0; i < nx; i++) x[i] = k ? x[i] - 1.0f : 1.0f - x[i];
    }
    printf("  last logits moved by %.3g (inverted image), %.3g (features + 1)\n", moved[0], moved[1]);
    ck_assert(moved[0] > 1e-3 * mx && moved[1] > 1e-3 * mx);
    gt_ctx_free(&ctx);
    ref_free(&r);
}
END_TEST

#define CLIP2 "tests/fixtures/audio/noise.wav"

/* Two clips in one prompt (the longer first, so the shorter one is padded to its cut): the CLI's
 * ids and --score --logits equal the direct path with each clip's 100 frames whole, the first
 * <|audio|> taking the first --audio; the cached prefill then greedy steps too. */
START_TEST(two_clips_match_the_direct_path) {
    ref_path r;
    ref_load(&r); /* the model, tokenizer and towers; its one-clip media are replaced below */
    char err[1024];
    gt_audio_cfg ac;
    gt_audio_cfg_default(&ac);
    ac.num_mels = 16, ac.max_audio_length = 1;
    static float mel[2 * 100 * 16];
    uint8_t valid[200];
    int64_t nt[2];
    const char *clip[2] = {CLIP2, CLIP};
    for (int c = 0; c < 2; c++) {
        float *wav;
        int64_t ns;
        ck_assert_msg(gt_audio_read_wav(clip[c], 16000, &wav, &ns, NULL, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(gt_audio_features(&ac, wav, ns, mel + c * 100 * 16, err, sizeof err) == 0, "%s", err);
        int64_t nv = gt_audio_valid_frames(&ac, ns);
        nt[c] = gt_audio_num_tokens(&ac, ns);
        for (int t = 0; t < 100; t++) valid[c * 100 + t] = t < nv;
        free(wav);
    }
    ck_assert(nt[0] == 23 && nt[1] == 10);
    gt_gemma4_clips cl = {mel, valid, 2, 100};
    r.md.images = NULL, r.md.clips = &cl;
    gt_ids ids = {0};
    gt_ids_push(&ids, gt_tok_bos(r.tok));
    push_text(r.tok, "a ", &ids);
    push_span(r.tok, "<|audio>", "<|audio|>", "<audio|>", nt[0], &ids);
    push_text(r.tok, " b ", &ids);
    push_span(r.tok, "<|audio>", "<|audio|>", "<audio|>", nt[1], &ids);
    push_text(r.tok, " c", &ids);
    int64_t V = r.m->cfg.vocab_size, n = (int64_t)ids.n;
    static char out[1 << 20];
    char args[1024];
    snprintf(args, sizeof args, "generate --model %s --audio " CLIP2 " --audio " CLIP " --score --logits "
             "'a <|audio|> b <|audio|> c'", dir);
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%.2000s", rc, out);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_tensor *z = ref_logits(&ctx, &r, ids.ids, n);
    double mx, worst = gt_test_score_diff(out, ids.ids, n, z, V, &mx);
    /* greedy: the cached prefill with both clips, then steps, against argmax of the direct path */
    int32_t eos = gt_tok_eos(r.tok);
    size_t ng = 0;
    for (int s = 0; s < NEW; s++, ng++) {
        gt_ctx_reset(&ctx);
        gt_tensor *zz = ref_logits(&ctx, &r, ids.ids, (int64_t)ids.n);
        const gt_real *row = zz->data + ((int64_t)ids.n - 1) * V;
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = (int32_t)v;
        gt_ids_push(&ids, best);
        if (best == eos) {
            ng++;
            break;
        }
    }
    char *want = NULL;
    ck_assert_int_eq(gt_tok_decode(r.tok, ids.ids + n, ng, true, &want, NULL, err, sizeof err), 0);
    snprintf(args, sizeof args, "generate --model %s --audio " CLIP2 " --audio " CLIP " --max-new-tokens %d "
             "--strip-prompt 'a <|audio|> b <|audio|> c'", dir, NEW);
    rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
    size_t len = strlen(out);
    ck_assert_msg(len > 0 && out[len - 1] == '\n', "%s", out);
    out[len - 1] = 0;
    printf("gemma4 generate with two clips (%lld + %lld tokens): --score --logits max |diff| %.3g (max |logit| "
           "%.3g); greedy CLI \"%s\", direct \"%s\"\n", (long long)nt[0], (long long)nt[1], worst, mx, out, want);
    ck_assert(mx > 0);
    ck_assert_msg(worst <= 1e-5 * mx, "logits differ by %.3g", worst);
    ck_assert_msg(strlen(want) > 0, "the direct path generated no text");
    ck_assert_str_eq(out, want);
    free(want);
    gt_ids_free(&ids);
    gt_ctx_free(&ctx);
    ref_free(&r);
}
END_TEST

static void expect_error(const char *args, const char *needle) {
    static char out[1 << 16];
    int rc = gt_test_run(args, out, sizeof out);
    ck_assert_msg(rc != 0 && strstr(out, needle), "%s: exit %d, wanted '%s' in:\n%s", args, rc, needle, out);
}

START_TEST(bad_media_are_refused) {
    char a[1024];
    snprintf(a, sizeof a, "generate --model %s --audio " CLIP " 'x <|audio|>'", plain);
    expect_error(a, "has no Gemma 4 audio encoder");
    snprintf(a, sizeof a, "generate --model %s --image " IMAGE " 'x <|image|>'", plain);
    expect_error(a, "has no Gemma 4 vision encoder");
    snprintf(a, sizeof a, "generate --model %s --image /nonexistent/cat.png 'x <|image|>'", dir);
    expect_error(a, "/nonexistent/cat.png");
    snprintf(a, sizeof a, "generate --model %s --audio /nonexistent/say.wav 'x <|audio|>'", dir);
    expect_error(a, "/nonexistent/say.wav");
    snprintf(a, sizeof a, "generate --model %s --audio " CLIP " --audio " CLIP " 'x <|audio|>'", dir);
    expect_error(a, "PROMPT has 1 <|audio|> marker for 2 clips");
    char *q = a + snprintf(a, sizeof a, "generate --model %s", dir);
    for (int i = 0; i < 9; i++) q += snprintf(q, sizeof a - (size_t)(q - a), " --audio " CLIP);
    snprintf(q, sizeof a - (size_t)(q - a), " 'x'");
    expect_error(a, "at most 8 clips");
    snprintf(a, sizeof a, "generate --model %s --image " IMAGE " 'no marker'", dir);
    expect_error(a, "(a Gemma 4 prompt has one <|image|> per image)");
    snprintf(a, sizeof a, "generate --model %s --image " IMAGE " '<|image|> <|image|>'", dir);
    expect_error(a, "PROMPT has 2 <|image|> markers for 1 image");
    snprintf(a, sizeof a, "generate --model %s --audio " CLIP " '<|audio|> <|audio|>'", dir);
    expect_error(a, "PROMPT has 2 <|audio|> markers for 1 clip");
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemma4_generate");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, greedy_matches_the_direct_path);
    tcase_add_test(tc, score_logits_match_the_direct_path);
    tcase_add_test(tc, two_clips_match_the_direct_path);
    tcase_add_test(tc, bad_media_are_refused);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
