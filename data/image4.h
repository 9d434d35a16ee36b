/* image4.h: Gemma 4 image preprocessing (KerasHub 0.32 Gemma4ImageConverter, JAX backend).
 *
 * Decoded 8-bit RGB -> an aspect-preserving resize to a multiple of patch * pool on each side
 * (factor sqrt(max_soft_tokens * pool^2 * patch^2 / (h w)) in float32, each side floored to the
 * multiple and at least one multiple) with jax.image.resize's antialiased bicubic (Keys cubic,
 * a = -0.5, stretched by in/out when shrinking, weights renormalised; an axis already at its
 * target size is left alone) -> clip to [0, 255] -> x * scale[c] + offset[c] (Gemma 4: 1/255,
 * 0) -> patch x patch patches in row-major grid order, each flattened (row, column, channel),
 * with (x, y) = (column, row) grid positions -> padded with zero patches at (-1, -1) to
 * max_soft_tokens * pool^2 patches. That is what gt_vision4_encode consumes.
 *
 * Errors: -1 and one line (a bad config, an image whose aspect ratio needs more patches than
 * the maximum, out of memory; from gt_image4_load also the decoder's message naming the file). */
#ifndef GT_DATA_IMAGE4_H
#define GT_DATA_IMAGE4_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

typedef struct gt_image4_cfg {
    int patch, pool, max_soft_tokens;
    float scale[3], offset[3];
} gt_image4_cfg;

/* The Gemma 4 presets' converter: patch 16, pool 3, 280 soft tokens, scale 1/255, offset 0. */
gt_image4_cfg gt_image4_cfg_gemma4(void);
int gt_image4_validate(const gt_image4_cfg *c, char *err, size_t errn);
/* max_soft_tokens * pool^2: patches per image after padding. */
int64_t gt_image4_max_patches(const gt_image4_cfg *c);
/* Values per patch: 3 * patch^2. */
int64_t gt_image4_patch_dim(const gt_image4_cfg *c);
/* The resized height and width for an h x w image. */
int gt_image4_target(const gt_image4_cfg *c, int h, int w, int *th, int *tw, char *err,
                     size_t errn);

/* patches: max_patches * patch_dim floats; pos: max_patches * 2 (x, y); *n_real (may be NULL):
 * the patches before the padding. */
int gt_image4_preprocess(const gt_image *img, const gt_image4_cfg *c, float *patches,
                         int32_t *pos, int64_t *n_real, char *err, size_t errn);
/* The same from a JPEG/PNG file. */
int gt_image4_load(const char *path, const gt_image4_cfg *c, float *patches, int32_t *pos,
                   int64_t *n_real, char *err, size_t errn);

#endif
