/* Gemma 4 train/eval rows (train/media4_rows.h). Records with images and audio against KerasHub's
 * Gemma4CausalLMPreprocessor: the rows
 * of tests/fixtures/gemma4_media_pp/records.jsonl (markers at the start, in the middle, back to
 * back; clips of 20, 28 and 40 soft tokens; a text-only record) must equal expected.h5 token for
 * token (ids, labels, padding mask, weights), made by
 * tools/reference/make_gemma4_media_pp_fixture.py with the test tokenizer
 * tests/fixtures/spm/gemma4_chat_vocab.spm. Each "<|audio|>" takes its own clip's token count
 * (gt_audio_num_tokens of the decoded clip), each "<|image|>" the image token count; a prompt
 * with more "<|audio|>" markers than clips is refused. The towers of a KerasHub preset
 * (tests/fixtures/presets/gemma4_towers) load with the converters fitted to them, frozen or with
 * the vision tower trainable (model.vision_train full), and a tower narrower than the decoder or
 * tower LoRA is refused. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/audio.h"
#include "data/dataset.h"
#include "data/preprocess.h"
#include "models/io/h5io.h"
#include "train/config.h"
#include "train/media4_rows.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/gemma4_media_pp/"
#define SPM "tests/fixtures/spm/gemma4_chat_vocab.spm"

START_TEST(media_records_match_kerashub) {
    char err[512];
    gt_tokenizer *tok = NULL;
    ck_assert_msg(gt_tok_load(SPM, &tok, err, sizeof err) == 0, "%s", err);
    gt_h5 h;
    ck_assert_msg(gt_h5_open_read(FIX "expected.h5", &h, err, sizeof err) == 0, "%s", err);
    double sd, ld;
    ck_assert(gt_h5_attr_f64(h, "/", "sequence_length", &sd, err, sizeof err) == 0);
    ck_assert(gt_h5_attr_f64(h, "/", "image_tokens", &ld, err, sizeof err) == 0);
    int64_t S = (int64_t)sd, shape[8];
    int nd;
    int32_t *want_ids, *want_mask, *want_labels;
    float *want_w;
    ck_assert_msg(gt_h5_read_i32(h, "/token_ids", &want_ids, &nd, shape, err, sizeof err) == 0, "%s", err);
    ck_assert(gt_h5_read_i32(h, "/padding_mask", &want_mask, &nd, shape, err, sizeof err) == 0);
    ck_assert(gt_h5_read_i32(h, "/labels", &want_labels, &nd, shape, err, sizeof err) == 0);
    ck_assert(gt_h5_read_f32(h, "/sample_weight", &want_w, &nd, shape, err, sizeof err) == 0);
    gt_h5_close(h);
    gt_dataset ds;
    ck_assert_msg(gt_dataset_open(FIX "records.jsonl", GT_DS_AUTO, false, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, shape[0]);
    int32_t ids[256], labels[256], img = gt_tok_piece_id(tok, "<|image|>"), aud = gt_tok_piece_id(tok, "<|audio|>");
    uint8_t mask[256];
    gt_real w[256];
    ck_assert(S <= 256 && img >= 0 && aud >= 0);
    gt_audio_cfg ac;
    gt_audio_cfg_default(&ac);
    for (int64_t i = 0; i < ds.n; i++) {
        gt_example ex;
        ck_assert(gt_dataset_read(&ds, i, &ex, err, sizeof err) == 0);
        int64_t tokens[4] = {0}, n_img = 0, n_aud = 0, want_aud = 0;
        ck_assert(ex.n_audio <= 4);
        for (int k = 0; k < ex.n_audio; k++) {
            float *wav;
            int64_t ns;
            ck_assert_msg(gt_audio_read_wav(ex.audio[k], 16000, &wav, &ns, NULL, err, sizeof err) == 0, "%s", err);
            want_aud += tokens[k] = gt_audio_num_tokens(&ac, ns);
            free(wav);
        }
        gt_pp_cfg cfg = {.seq_len = S, .add_bos = true, .add_eos = true, .image4_tokens = (int64_t)ld,
                         .audio_tokens = tokens, .n_audio = ex.n_audio};
        ck_assert_msg(gt_pp_example(tok, &cfg, &ex, ids, labels, mask, w, err, sizeof err) == 0, "%s", err);
        for (int64_t t = 0; t < S; t++) {
            int64_t k = i * S + t;
            ck_assert_msg(ids[t] == want_ids[k], "record %lld: token %lld is %d, KerasHub %d", (long long)i,
                          (long long)t, ids[t], want_ids[k]);
            ck_assert_msg(labels[t] == want_labels[k], "record %lld: label %lld", (long long)i, (long long)t);
            ck_assert_msg(mask[t] == want_mask[k], "record %lld: mask %lld", (long long)i, (long long)t);
            ck_assert_msg((float)w[t] == want_w[k], "record %lld: weight %lld is %g, KerasHub %g", (long long)i,
                          (long long)t, (double)w[t], (double)want_w[k]);
            n_img += ids[t] == img, n_aud += ids[t] == aud;
        }
        ck_assert_int_eq(n_img, ex.n_images * (int64_t)ld);
        ck_assert_int_eq(n_aud, want_aud);
        gt_example_free(&ex);
    }
    gt_dataset_close(&ds);
    free(want_ids), free(want_mask), free(want_labels), free(want_w);
    gt_tok_free(tok);
}
END_TEST

START_TEST(more_audio_markers_than_clips_is_refused) {
    char err[512];
    gt_tokenizer *tok = NULL;
    ck_assert_msg(gt_tok_load(SPM, &tok, err, sizeof err) == 0, "%s", err);
    int64_t tokens[1] = {3};
    gt_pp_cfg cfg = {.seq_len = 64, .add_bos = true, .add_eos = true, .audio_tokens = tokens, .n_audio = 1};
    gt_example ex = {.kind = GT_DS_PROMPT_RESPONSE, .prompt = "<|audio|> and <|audio|>", .response = "x"};
    int32_t ids[64], labels[64];
    uint8_t mask[64];
    gt_real w[64];
    ck_assert(gt_pp_example(tok, &cfg, &ex, ids, labels, mask, w, err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "more <|audio|> markers than audio clips (1)"), "%s", err);
    gt_tok_free(tok);
}
END_TEST

START_TEST(towers_from_a_preset) {
    char err[512];
    gt_config c;
    gt_config_defaults(&c);
    snprintf(c.model.weights, sizeof c.model.weights, "tests/fixtures/presets/gemma4_towers");
    gt_gemma m = {0};
    m.cfg.generation = 4, m.cfg.hidden_dim = 32;
    gt_m4rows x;
    ck_assert_msg(gt_m4rows_build(&x, &m, &c, err, sizeof err) == 0, "%s", err);
    ck_assert(x.on && x.has_v && x.has_a && !x.vision_bidir && x.n_train == 0);
    ck_assert(x.icfg.patch == 4 && x.icfg.pool == 3 && x.L == 280);
    ck_assert(x.acfg.num_mels == 16 && x.M == 16 && x.F == 3000);
    for (int i = 0; i < x.v.n_all; i++) ck_assert(!x.v.all[i]->requires_grad);
    for (int i = 0; i < x.a.n_all; i++) ck_assert(!x.a.all[i]->requires_grad);
    gt_m4rows_free(&x);
    c.model.vision.train = GT_VISION_FULL, c.model.vision.soft_tokens = 9;
    ck_assert_msg(gt_m4rows_build(&x, &m, &c, err, sizeof err) == 0, "%s", err);
    int64_t n = 0;
    for (int i = 0; i < x.n_train; i++) {
        ck_assert(x.train_t[i]->requires_grad);
        n += x.train_t[i]->size;
    }
    ck_assert_int_eq(n, gt_vision4_param_count(&x.v.cfg, true));
    ck_assert_int_eq(x.L, 9);
    gt_m4rows_free(&x);
    c.model.vision.train = GT_VISION_LORA;
    ck_assert(gt_m4rows_build(&x, &m, &c, err, sizeof err) != 0 && strstr(err, "model.vision_train: lora"));
    gt_m4rows_free(&x);
    c.model.vision.train = GT_VISION_FROZEN, m.cfg.hidden_dim = 48;
    ck_assert(gt_m4rows_build(&x, &m, &c, err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "projects to 32 values but the decoder is 48 wide"), "%s", err);
    gt_m4rows_free(&x);
    m.cfg.generation = 3; /* not Gemma 4: nothing here */
    ck_assert(gt_m4rows_build(&x, &m, &c, err, sizeof err) == 0 && !x.on);
    gt_m4rows_free(&x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("media4_rows");
    TCase *tc = tcase_create("media4_rows");
    tcase_add_test(tc, towers_from_a_preset);
    tcase_add_test(tc, media_records_match_kerashub);
    tcase_add_test(tc, more_audio_markers_than_clips_is_refused);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
