/* vision_rows.h: the images of a train or eval job's batch rows (Gemma 3 with images).
 *
 * A gt_vrows owns the job's vision encoder (from model.weights when it is a KerasHub preset or an
 * HF directory with one, else built from model.vision_* / the preset's shapes with a seeded random
 * init; NULL for a text-only model), and for each batch row its records' images, decoded and
 * preprocessed (data/image.h), in data.max_images_per_prompt slots, with the row's placeholder
 * mask. The encoder is frozen: it runs per micro-batch (train/step.h) and gets no gradient.
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

typedef struct gt_vrows {
    gt_vision *enc;    /* NULL: the model reads no images */
    gt_image_cfg ic;
    int64_t per, slots, S, tokens; /* floats per image, images per row, row length, tokens per image */
    float *pixels;     /* rows x slots x per */
    int32_t *count;    /* images of each row */
    uint8_t *mask;     /* rows x S: 1 at the image placeholders */
} gt_vrows;

/* The encoder for model m: from weights (a KerasHub preset or HF directory; may be NULL or a
 * GGUF file), else m->cfg.vision when it has layers (random init, normal(0, std) from seed;
 * LayerNorm scales 1). */
int gt_vrows_build(gt_vrows *v, const gt_gemma *m, const char *weights, uint64_t seed, double std, char *err,
                   size_t errn);
/* Room for rows x S tokens and max_images images a row. */
int gt_vrows_alloc(gt_vrows *v, int64_t rows, int64_t S, int64_t max_images, char *err, size_t errn);
/* Row r's images from ex, its token ids already in ids (S of them); errors without the line. */
int gt_vrows_fill(gt_vrows *v, const gt_tokenizer *tok, int64_t r, const gt_example *ex, const int32_t *ids,
                  char *err, size_t errn);
void gt_vrows_free(gt_vrows *v);

#endif
