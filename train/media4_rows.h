/* media4_rows.h: the images and audio clips of a train or eval job's batch rows (Gemma 4).
 *
 * A gt_m4rows owns a Gemma 4 job's towers: from model.weights when it is a KerasHub preset or an
 * HF directory with them (converter settings from the preset's preprocessor.json), else from the
 * preset's shapes (gemma4_2b / gemma4_4b) or model.vision_* / model.audio_* with a seeded random
 * init; either may be absent. For each batch row it keeps its record's images (data/image4.h:
 * patches and positions, data.max_images_per_prompt slots) and clips (data/audio.h: log-mel
 * frames, data.max_audio_per_prompt slots). Before a row is preprocessed, gt_m4rows_prepare
 * reads the clips (each "<|audio|>" expands to its own clip's token count) and sets the
 * preprocessor's Gemma 4 fields; after, gt_m4rows_check marks the row's media slots and checks
 * that every span fits. gt_m4rows_hidden runs the towers on a micro-batch's rows and the decoder
 * with their tokens in place (models/gemma4_mm.h). The vision tower is frozen or fully trained
 * (model.vision_train full); the audio tower stays frozen.
 * Errors (without the record's file:line, which the job adds): media for a model without that
 * tower, more media than slots, markers that do not match the files, a data.sequence_length that
 * cuts a span, unreadable files. Everything returns 0 or -1 with one line in err. */
#ifndef GT_MEDIA4_ROWS_H
#define GT_MEDIA4_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/audio.h"
#include "data/dataset.h"
#include "data/image4.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"
#include "models/gemma4_mm.h"
#include "train/config.h"

typedef struct gt_m4rows {
    bool on;                      /* a Gemma 4 model: rows go through here */
    gt_vision4 v;
    gt_audio_enc a;
    bool has_v, has_a, vision_bidir, trains;
    gt_image4_cfg icfg;
    gt_audio_cfg acfg;
    int32_t image_token, audio_token;
    int64_t S, slots_i, slots_a, P, pd, F, M, L; /* L: tokens per image */
    float *patches;               /* rows x slots_i x P x pd */
    int32_t *pos;                 /* rows x slots_i x P x 2 */
    float *mel;                   /* rows x slots_a x F x M */
    int64_t *clip_tokens, *clip_valid; /* rows x slots_a: <|audio|> slots, valid frames */
    int32_t *n_img, *n_clip;      /* per row */
    uint8_t *mask;                /* rows x S: 1 at media slots (batch cuts keep whole spans) */
    bool no_media;                /* counts and checks only, no decoding (eval's ordering pass) */
    gt_tensor **train_t;          /* the vision tower's trainable tensors (model.vision_train full) */
    int n_train;
} gt_m4rows;

/* The towers for model m (nothing unless m is Gemma 4). */
int gt_m4rows_build(gt_m4rows *x, const gt_gemma *m, const gt_config *c, char *err, size_t errn);
/* Room for rows x S tokens and the slots; the placeholder ids from tok. */
int gt_m4rows_alloc(gt_m4rows *x, const gt_tokenizer *tok, int64_t rows, int64_t S, int64_t max_images,
                    int64_t max_clips, char *err, size_t errn);
/* Before preprocessing row r from ex: reads its clips and sets pp's Gemma 4 fields. */
int gt_m4rows_prepare(gt_m4rows *x, int64_t r, const gt_example *ex, gt_pp_cfg *pp, char *err, size_t errn);
/* After: row r's ids (S of them) hold whole spans; its images converted. */
int gt_m4rows_check(gt_m4rows *x, int64_t r, const gt_example *ex, const int32_t *ids, char *err, size_t errn);
/* Final hidden states of m on b, whose rows are the job's rows row0..row0 + b->batch - 1. NULL
 * with ctx's error. */
gt_tensor *gt_m4rows_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_m4rows *x, int64_t row0,
                            const gt_gemma_batch *b);
void gt_m4rows_free(gt_m4rows *x);

#endif
