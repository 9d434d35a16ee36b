/* image.h: JPEG/PNG decoding and Gemma 3 image preprocessing (KerasHub Gemma3ImageConverter).
 *
 * gt_image_load decodes a JPEG (libjpeg-turbo, its default islow IDCT and fancy upsampling) or a
 * PNG (libpng; palette and low bit depths expanded, 16-bit truncated to 8, alpha dropped, no
 * gamma correction) into 8-bit RGB, rows top to bottom; greyscale is replicated to RGB. The
 * format is told from the file's first bytes, not its name.
 *
 * gt_image_preprocess is KerasHub 0.32's ImageConverter as Gemma 3 presets configure it (Keras
 * Resizing on the JAX backend): an optional centred crop to the target aspect ratio
 * (crop_to_aspect_ratio, the converter's default), then a bilinear resize without antialiasing
 * (jax.image.resize's triangle kernel: output pixel o samples input coordinate
 * (o + 0.5) * in / out - 0.5, neighbours outside the image dropped and the weights renormalised;
 * an axis whose size already matches is left alone), then x * scale[c] + offset[c] per channel
 * (Gemma 3: scale 1/127.5, offset -1, mapping [0, 255] to [-1, 1]).
 *
 * Ownership: gt_image.px is malloc'ed by gt_image_load, released by gt_image_free; the
 * preprocessing output is the caller's. Errors: -1 and one line naming the file (unreadable, not
 * a JPEG or PNG, corrupt or truncated data with the decoder's reason, too large). */
#ifndef GT_DATA_IMAGE_H
#define GT_DATA_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gt_image {
    int width, height;
    uint8_t *px; /* height * width * 3, RGB interleaved */
} gt_image;

/* Largest accepted side and area, in pixels: bigger claims in a header are reported as corrupt
 * (the pixels are allocated from the header's claim before the data is read). */
#define GT_IMAGE_MAX_SIDE 16384
#define GT_IMAGE_MAX_PIXELS (1L << 26)

int gt_image_load(const char *path, gt_image *img, char *err, size_t errn);
/* The same from bytes already in memory (name is used in messages). */
int gt_image_decode(const uint8_t *buf, size_t n, const char *name, gt_image *img, char *err,
                    size_t errn);
void gt_image_free(gt_image *img);

typedef struct gt_image_cfg {
    int size;              /* output height = width */
    bool crop_to_aspect;   /* centred crop to a square before resizing (KerasHub default: true) */
    float scale[3];        /* per channel, applied after resizing */
    float offset[3];
} gt_image_cfg;

/* Gemma 3's converter settings for image_size `size`. */
gt_image_cfg gt_image_cfg_gemma3(int size);

/* out: size * size * 3 floats (HWC). Returns 0, or -1 for a bad size or out of memory. */
int gt_image_preprocess(const gt_image *img, const gt_image_cfg *cfg, float *out, char *err,
                        size_t errn);

#endif
