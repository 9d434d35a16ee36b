/* One Hugging Face Gemma4ForConditionalGeneration directory with the decoder and both towers
 * (tests/fixtures/hf/gemma4_mm, written by transformers: tools/reference/make_hf_gemma4_mm_fixture.py):
 * read by gt_hf_gemma_load + hf_vision4 + hf_audio, a text + image + audio prompt gives
 * transformers' logits within 1e-4 x max; written back by gt_hf_gemma_save with the towers and
 * read again, every value is bit-identical and every tensor of transformers' file is in ours with
 * the same name, shape and values; convert / export carry the towers; generate reads the HF
 * processor files; train takes the directory. GT_HF_GEMMA4_MM_EXPORT_DIR keeps what is written:
 * DIR/model for make_hf_gemma4_mm_fixture.py --check-export, DIR/conv_preset for
 * check_hf_gemma4_mm_keras.py. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "data/audio.h"
#include "data/image4.h"
#include "data/tokenizer.h"
#include "models/gemma4_mm.h"
#include "models/io/hf_audio.h"
#include "models/io/hf_gemma.h"
#include "models/io/hf_vision4.h"
#include "models/io/safetensors.h"
#include "tests/h5fixture.h"
#include "tests/check_main.h"
#include "tests/cli_run.h"
#include "tests/same_tensors.h"
#include "tests/score_json.h"

#define DIR "tests/fixtures/hf/gemma4_mm"

static char g_dir[600];

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

/* 64 pieces: specials, letters, and the six media markers at the fixture config's ids (50-55). */
static void write_vocab(const char *path) {
    static const char *const mark[6] = {"<|image>", "<image|>", "<|image|>", "<|audio>", "<audio|>", "<|audio|>"};
    const char *pieces[64], *sp[4] = {"<pad>", "<eos>", "<bos>", "<unk>"};
    char store[64][8];
    float scores[64];
    int32_t types[64];
    for (int i = 0; i < 64; i++) {
        scores[i] = (float)-i, types[i] = GT_PIECE_NORMAL;
        if (i < 4) pieces[i] = sp[i], types[i] = i == 3 ? GT_PIECE_UNKNOWN : GT_PIECE_CONTROL;
        else if (i >= 50 && i < 56) pieces[i] = mark[i - 50], types[i] = GT_PIECE_USER_DEFINED;
        else snprintf(store[i], 8, "%c%c", 'a' + i % 26, 'a' + i / 26), pieces[i] = store[i];
    }
    gt_tokenizer *tok;
    char err[512];
    ck_assert_msg(gt_tok_from_pieces(pieces, scores, types, 64, &tok, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_tok_save_spm(tok, path, err, sizeof err) == 0, "%s", err);
    gt_tok_free(tok);
}

/* The fixture's config.json keys that say where the media go equal ours. */
static void same_ids(const char *dir) {
    static const char *const keys[] = {"boi_token_id", "eoi_token_id", "image_token_id", "boa_token_id",
                                       "eoa_token_index", "audio_token_id"};
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *a = json_load_file(DIR "/config.json", 0, NULL), *b = json_load_file(p, 0, NULL);
    ck_assert(a && b);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        ck_assert_msg(json_integer_value(json_object_get(a, keys[k])) == json_integer_value(json_object_get(b, keys[k])),
                      "%s differs", keys[k]);
    const char *bd = json_string_value(json_object_get(json_object_get(b, "text_config"), "use_bidirectional_attention"));
    ck_assert_msg(bd && !strcmp(bd, "vision"), "text_config.use_bidirectional_attention not \"vision\"");
    json_decref(a), json_decref(b);
}

START_TEST(writes_one_directory_and_reads_it_back) {
    char err[512], out[700], vocab[700];
    snprintf(out, sizeof out, "%s/model", g_dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.spm", g_dir);
    write_vocab(vocab);
    full x, y;
    load_full(DIR, &x);
    gt_hf_save_opts o = {.tokenizer = vocab, .vision4 = &x.v, .audio = &x.a, .vision_bidir = true};
    ck_assert_msg(!gt_hf_gemma_save(x.m, out, &o, err, sizeof err), "%s", err);
    load_full(out, &y);
    ck_assert_int_eq(y.m->n_params, x.m->n_params);
    for (int i = 0; i < x.m->n_params; i++)
        ck_assert_msg(!memcmp(x.m->params[i].t->data, y.m->params[i].t->data,
                              sizeof(gt_real) * (size_t)x.m->params[i].t->size),
                      "%s differs after the round trip", x.m->params[i].name);
    ck_assert_int_eq(y.v.n_all, x.v.n_all);
    ck_assert_int_eq(y.a.n_all, x.a.n_all);
    gt_test_same_params(x.v.all, y.v.all, x.v.n_all);
    gt_test_same_params(x.a.all, y.a.all, x.a.n_all);
    gt_test_same_st(DIR, out);
    same_ids(out);
    double e = logits_err(&y, true);
    printf("hf gemma4 written and read back: %.3g x max from transformers\n", e);
    ck_assert_msg(e <= 1e-4, "%.3g", e);
    /* towers of another width, or with a Gemma 3 decoder, are refused naming the reason */
    x.v.cfg.output_dim++;
    ck_assert_int_eq(gt_hf_gemma_save(x.m, out, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "project to different widths"), "%s", err);
    o.audio = NULL;
    ck_assert_int_eq(gt_hf_gemma_save(x.m, out, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "hidden_size is 16"), "%s", err);
    x.v.cfg.output_dim--;
    free_full(&x), free_full(&y);
}
END_TEST

/* gemmatrain convert and export carry both towers: our HF directory -> a KerasHub preset -> HF
 * again (convert --format hf, export --format hf) holds the same tensors, bit for bit, and the
 * same media ids. */
START_TEST(convert_carries_the_towers) {
    char err[512], hf[700], preset[700], back[700], args[2400], out[4096];
    snprintf(hf, sizeof hf, "%s/conv_src", g_dir);
    snprintf(preset, sizeof preset, "%s/conv_preset", g_dir);
    snprintf(back, sizeof back, "%s/conv_back", g_dir);
    snprintf(args, sizeof args, "%s/vocab2.spm", g_dir);
    write_vocab(args);
    full x;
    load_full(DIR, &x);
    gt_hf_save_opts o = {.tokenizer = args, .vision4 = &x.v, .audio = &x.a, .vision_bidir = true};
    ck_assert_msg(!gt_hf_gemma_save(x.m, hf, &o, err, sizeof err), "%s", err);
    free_full(&x);
    snprintf(args, sizeof args, "convert %s %s", hf, preset);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "with the vision and audio towers"), "%s", out);
    snprintf(args, sizeof args, "convert %s %s --format hf", preset, back);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    gt_test_same_st(hf, back);
    same_ids(back);
    /* export --format hf from a config naming the preset: the same directory again */
    snprintf(back, sizeof back, "%s/export.yaml", g_dir);
    FILE *f = fopen(back, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "model:\n  weights: %s\n", preset);
    fclose(f);
    snprintf(args, sizeof args, "export %s --out %s/exported --format hf", back, g_dir);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    snprintf(back, sizeof back, "%s/exported", g_dir);
    gt_test_same_st(hf, back);
    same_ids(back);
}
END_TEST

/* train takes the directory as model.weights (text rows; the towers are not a Gemma 3 encoder),
 * and so does it the KerasHub preset convert makes of it: the same losses. */
START_TEST(trains_from_the_directory) {
    char err[512], d[700], args[2400], loss[2][64];
    static char out[1 << 16];
    snprintf(d, sizeof d, "%s/train_src", g_dir);
    snprintf(args, sizeof args, "%s/vocab4.spm", g_dir);
    write_vocab(args);
    full x;
    load_full(DIR, &x);
    gt_hf_save_opts o = {.tokenizer = args, .vision4 = &x.v, .audio = &x.a};
    ck_assert_msg(!gt_hf_gemma_save(x.m, d, &o, err, sizeof err), "%s", err);
    free_full(&x);
    snprintf(args, sizeof args, "convert %s %s/train_preset", d, g_dir);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    snprintf(args, sizeof args, "%s/train.jsonl", g_dir);
    FILE *f = fopen(args, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "{\"prompt\": \"ab\", \"response\": \"cd\"}\n{\"prompt\": \"ef\", \"response\": \"gh\"}\n");
    fclose(f);
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "train /dev/null model.weights=%s%s data.train=%s/train.jsonl "
                 "data.sequence_length=16 train.steps=2 train.batch_size=2 lora.enabled=true lora.rank=2 "
                 "output_dir=%s/run%d", k ? g_dir : d, k ? "/train_preset" : "", g_dir, g_dir, k);
        ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
        const char *p = strstr(out, "step 2/2 loss ");
        ck_assert_msg(p, "%s", out);
        ck_assert_int_eq(sscanf(p + 14, "%63s", loss[k]), 1);
    }
    printf("hf gemma4 train: step 2 loss %s from the HF directory, %s from its KerasHub preset\n", loss[0], loss[1]);
    ck_assert_str_eq(loss[0], loss[1]);
}
END_TEST

#define IMAGE "tests/fixtures/images/rgb_45x33.jpg"
#define CLIP "tests/fixtures/audio/short_tone.wav"

/* processor_config.json as Gemma4Processor saves it (the keys KerasHub's converter reads), with
 * the tiny tower's 4 soft tokens and 16 mels; skip: a key left out; extra: a line added. */
static void write_processor(const char *dir, const char *skip, const char *extra) {
    static const char *const img[] = {"\"do_resize\": true", "\"do_rescale\": true",
                                      "\"rescale_factor\": 0.00392156862745098", "\"do_normalize\": false",
                                      "\"image_mean\": [0.0, 0.0, 0.0]", "\"image_std\": [1.0, 1.0, 1.0]",
                                      "\"max_soft_tokens\": 4", "\"patch_size\": 4", "\"pooling_kernel_size\": 2"};
    static const char *const aud[] = {"\"feature_size\": 16", "\"fft_length\": 512", "\"hop_length\": 160",
                                      "\"frame_length\": 320", "\"sampling_rate\": 16000",
                                      "\"min_frequency\": 0.0", "\"max_frequency\": 8000.0",
                                      "\"mel_floor\": 0.001", "\"per_bin_mean\": null", "\"dither\": 0.0",
                                      "\"preemphasis\": 0.0", "\"input_scale_factor\": 1.0"};
    char p[700];
    snprintf(p, sizeof p, "%s/processor_config.json", dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "{\"image_processor\": {\"image_processor_type\": \"Gemma4ImageProcessor\"");
    for (size_t i = 0; i < sizeof img / sizeof img[0]; i++)
        if (!skip || !strstr(img[i], skip)) fprintf(f, ", %s", img[i]);
    fprintf(f, "},\n \"feature_extractor\": {\"feature_extractor_type\": \"Gemma4AudioFeatureExtractor\"%s%s",
            extra ? ", " : "", extra ? extra : "");
    for (size_t i = 0; i < sizeof aud / sizeof aud[0]; i++)
        if (!skip || !strstr(aud[i], skip)) fprintf(f, ", %s", aud[i]);
    fprintf(f, "}}\n");
    fclose(f);
}

/* The uncached direct path's logits [n, V] for "<|image|><|audio|>" with the converters set as
 * the processor file says (mel_floor as given); *n gets the prompt length. */
static gt_tensor *direct(gt_ctx *ctx, const full *x, double mel_floor, int32_t *ids, int64_t *n) {
    char err[1024];
    static float patches[16 * 48], mel[3000 * 16];
    static int32_t pos[16 * 2];
    static uint8_t valid[3000];
    gt_image4_cfg ic = {4, 2, 4, {1.0f / 255, 1.0f / 255, 1.0f / 255}, {0, 0, 0}};
    ck_assert_msg(gt_image4_load(IMAGE, &ic, patches, pos, NULL, err, sizeof err) == 0, "%s", err);
    gt_audio_cfg ac;
    gt_audio_cfg_default(&ac);
    ac.num_mels = 16, ac.mel_floor = mel_floor;
    float *wav;
    int64_t ns;
    ck_assert_msg(gt_audio_read_wav(CLIP, 16000, &wav, &ns, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_audio_features(&ac, wav, ns, mel, err, sizeof err) == 0, "%s", err);
    int64_t nv = gt_audio_valid_frames(&ac, ns), nt = gt_audio_num_tokens(&ac, ns), k = 0;
    free(wav);
    for (int t = 0; t < 3000; t++) valid[t] = t < nv;
    ids[k++] = 2, ids[k++] = 50;
    for (int i = 0; i < 4; i++) ids[k++] = 52;
    ids[k++] = 51, ids[k++] = 53;
    for (int64_t i = 0; i < nt; i++) ids[k++] = 55;
    ids[k++] = 54;
    *n = k;
    static gt_gemma4_images im;
    static gt_gemma4_clips cl;
    static gt_gemma4_media md;
    im = (gt_gemma4_images){patches, pos, 1, 16};
    cl = (gt_gemma4_clips){mel, valid, 1, 4 * nt};
    md = (gt_gemma4_media){&x->v, true, 52, &im, &x->a, 55, &cl};
    gt_gemma_batch b = {.batch = 1, .seq = k, .token_ids = ids};
    gt_tensor *z = gt_gemma_logits(ctx, x->m, gt_gemma4_media_hidden(ctx, x->m, &md, &b));
    ck_assert_msg(z, "%s", ctx->err);
    return z;
}

/* generate on an HF directory takes the converters from processor_config.json: 4 image soft
 * tokens (the default 280 would not fit), 16 mels, HF's mel_floor 1e-3; a missing or bad key is
 * refused naming the file and the key. */
START_TEST(generate_reads_processor_config) {
    char err[512], d[700], args[2400];
    static char out[1 << 20];
    snprintf(d, sizeof d, "%s/proc", g_dir);
    snprintf(args, sizeof args, "%s/vocab3.spm", g_dir);
    write_vocab(args);
    full x;
    load_full(DIR, &x);
    gt_hf_save_opts o = {.tokenizer = args, .vision4 = &x.v, .audio = &x.a, .vision_bidir = true};
    ck_assert_msg(!gt_hf_gemma_save(x.m, d, &o, err, sizeof err), "%s", err);
    write_processor(d, NULL, NULL);
    snprintf(args, sizeof args, "generate --model %s --image " IMAGE " --audio " CLIP " --score --logits "
             "'<|image|><|audio|>'", d);
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%.2000s", out);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int32_t ids[64];
    int64_t n, V = x.m->cfg.vocab_size;
    gt_tensor *z = direct(&ctx, &x, 1e-3, ids, &n);
    double mx = 0;
    for (int64_t i = 0; i < n * V; i++) mx = fmax(mx, fabs(z->data[i]));
    double e = gt_test_score_diff(out, ids, n, z, V, NULL);
    gt_ctx_reset(&ctx);
    double floor5 = gt_test_score_diff(out, ids, n, direct(&ctx, &x, 1e-5, ids, &n), V, NULL);
    printf("hf gemma4 generate with processor_config.json: %lld tokens, CLI vs direct %.3g x max; "
           "with KerasHub's mel_floor 1e-5 instead %.3g x max\n", (long long)n, e / mx, floor5 / mx);
    ck_assert_msg(e <= 1e-5 * mx, "%.3g", e / mx);
    ck_assert_msg(floor5 > 1e-3 * mx, "mel_floor changed nothing (%.3g)", floor5 / mx);
    /* missing, mistyped and unsupported settings, each named */
    static const struct { const char *skip, *extra, *want; } bad[] = {
        {"mel_floor", NULL, "processor_config.json: key \"feature_extractor.mel_floor\" is missing"},
        {"mel_floor", "\"mel_floor\": \"big\"", "\"feature_extractor.mel_floor\" must be a number"},
        {"hop_length", "\"hop_length\": 0", "\"feature_extractor.hop_length\" is 0, outside [1, 65536]"},
        {"hop_length", NULL, "key \"feature_extractor.hop_length\" is missing"},
        {"per_bin_mean", "\"per_bin_mean\": [1.0]", "\"feature_extractor.per_bin_mean\" is not supported"},
        {"do_resize", NULL, "key \"image_processor.do_resize\" is missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_processor(d, bad[i].skip, bad[i].extra);
        ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
        ck_assert_msg(strstr(out, bad[i].want), "want '%s', got:\n%s", bad[i].want, out);
    }
    /* without processor_config.json, a feature extractor's own preprocessor_config.json (flat) */
    snprintf(err, sizeof err, "%s/processor_config.json", d);
    ck_assert_int_eq(remove(err), 0);
    snprintf(err, sizeof err, "%s/preprocessor_config.json", d);
    FILE *f = fopen(err, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "{\"feature_extractor_type\": \"Gemma4AudioFeatureExtractor\", \"feature_size\": 16}\n");
    fclose(f);
    snprintf(args, sizeof args, "generate --model %s --audio " CLIP " --score '<|audio|>'", d);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "preprocessor_config.json: key \"fft_length\" is missing"), "%s", out);
    gt_ctx_free(&ctx);
    free_full(&x);
}
END_TEST

int main(void) {
    int keep = gt_test_scratch(g_dir, sizeof g_dir, "GT_HF_GEMMA4_MM_EXPORT_DIR", "gt_hfg4mm");
    if (keep < 0) return 1;
    Suite *s = suite_create("hf_gemma4_mm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, reads_transformers_directory);
    tcase_add_test(tc, writes_one_directory_and_reads_it_back);
    tcase_add_test(tc, convert_carries_the_towers);
    tcase_add_test(tc, generate_reads_processor_config);
    tcase_add_test(tc, trains_from_the_directory);
    suite_add_tcase(s, tc);
    int rc = gt_test_suite_main(s);
    if (!keep) gt_test_rmtree(g_dir);
    return rc;
}
