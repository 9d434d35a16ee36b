/* vision_rows.h: the images of a train or eval job's batch rows (Gemma 3 with images).
 *
 * A gt_vrows owns the job's vision encoder (from model.weights when it is a KerasHub preset or an
 * HF directory with one, else built from model.vision_* / the preset's shapes with a seeded random
 * init; NULL for a text-only model), and for each batch row its records' images, decoded and
 * preprocessed (data/image.h), in data.max_images_per_prompt slots, with the row's placeholder
 * mask. The encoder runs per micro-batch (train/step.h); frozen by default, or fully trained, or
 * with LoRA on its attention (model.vision_train).
 * A record with images for a model without an encoder, more images than the slots, or a row
 * that cuts an image short is an error naming the record's line; so are unreadable images.
 * Everything returns 0 or -1 with one line in err; gt_vrows_free releases what was built. */
#ifndef GT_VISION_ROWS_H
#define GT_VISION_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/vision.h"
#include "train/config.h"

typedef struct gt_vrows {
    gt_vision *enc;    /* NULL: the model reads no images */
    gt_image_cfg ic;
    int64_t per, slots, S, tokens; /* floats per image, images per row, row length, tokens per image */
    float *pixels;     /* rows x slots x per */
    int32_t *count;    /* images of each row */
    uint8_t *mask;     /* rows x S: 1 at the image placeholders */
    bool no_pixels;    /* fill checks and marks rows but decodes nothing (eval's ordering pass) */
    bool trains;       /* model.vision_train is not frozen (adapters read from a file stay fixed then) */
} gt_vrows;

/* The encoder for model m: from c's model.weights (a KerasHub preset or HF directory; nothing
 * from a GGUF file), else m->cfg.vision when it has layers (random init, normal(0, model.init_std)
 * from model.init_seed; LayerNorm scales 1); trainable as model.vision_train says (lora: adapters
 * of lora.rank and lora.alpha from lora.seed). */
int gt_vrows_build(gt_vrows *v, const gt_gemma *m, const gt_config *c, char *err, size_t errn);
/* The encoder's tensors the optimizer updates (none when frozen): *out points into the encoder. */
int64_t gt_vrows_trainables(const gt_vrows *v, gt_tensor *const **out);
/* Room for rows x S tokens and max_images images a row. */
int gt_vrows_alloc(gt_vrows *v, int64_t rows, int64_t S, int64_t max_images, char *err, size_t errn);
/* Row r's images from ex, its token ids already in ids (S of them); errors without the line. */
int gt_vrows_fill(gt_vrows *v, const gt_tokenizer *tok, int64_t r, const gt_example *ex, const int32_t *ids,
                  char *err, size_t errn);
void gt_vrows_free(gt_vrows *v);

#endif
