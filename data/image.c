#include "data/image.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void gt_image_free(gt_image *img) {
    if (!img) return;
    free(img->px);
    img->px = NULL;
    img->width = img->height = 0;
}

static int check_dims(const char *name, const char *fmt, long w, long h, char *err, size_t errn) {
    if (w < 1 || h < 1 || w > GT_IMAGE_MAX_SIDE || h > GT_IMAGE_MAX_SIDE || w * h > GT_IMAGE_MAX_PIXELS)
        return gt_errf(err, errn, "%s: corrupt %s: size %ldx%ld outside 1..%d a side, %ld pixels", name,
                       fmt, w, h, GT_IMAGE_MAX_SIDE, GT_IMAGE_MAX_PIXELS);
    return 0;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

/* libjpeg's default error_exit calls exit(): jump back to the decoder instead. */
static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (e.g. premature end of data, which libjpeg pads with grey) make the image corrupt. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return; /* trace messages */
    jpeg_on_error(cinfo);
}

static int decode_jpeg(const uint8_t *buf, size_t n, const char *name, gt_image *img, char *err,
                       size_t errn) {
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    uint8_t *volatile px = NULL;
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        return gt_errf(err, errn, "%s: corrupt JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    ci.out_color_space = JCS_RGB; /* greyscale and YCbCr both come out as RGB */
    jpeg_start_decompress(&ci);
    if (check_dims(name, "JPEG", (long)ci.output_width, (long)ci.output_height, err, errn)) {
        jpeg_destroy_decompress(&ci);
        return -1;
    }
    size_t stride = (size_t)ci.output_width * 3;
    px = malloc(stride * ci.output_height);
    if (!px) {
        jpeg_destroy_decompress(&ci);
        return gt_errf(err, errn, "%s: out of memory decoding JPEG", name);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + (size_t)ci.output_scanline * stride;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    img->width = (int)ci.output_width;
    img->height = (int)ci.output_height;
    img->px = px;
    jpeg_destroy_decompress(&ci);
    return 0;
}

/* ---------------------------------------------------------------- PNG */

typedef struct {
    const uint8_t *buf;
    size_t n, at;
    char msg[256];
} png_src;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_read_mem(png_structp png, png_bytep out, png_size_t len) {
    png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->at) png_error(png, "truncated file");
    memcpy(out, s->buf + s->at, len);
    s->at += len;
}

/* Expand to 8-bit RGB: palette and grey to RGB, 16 bits truncated, alpha dropped (as a
 * convert-to-RGB does: no compositing, no gamma). */
static void png_to_rgb8(png_structp png, png_infop info) {
    int ct = png_get_color_type(png, info);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static int decode_png(const uint8_t *buf, size_t n, const char *name, gt_image *img, char *err,
                      size_t errn) {
    png_src src = {buf, n, 0, "unknown error"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return gt_errf(err, errn, "%s: out of memory decoding PNG", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(px);
        free(rows);
        return gt_errf(err, errn, "%s: corrupt PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);
    long w = (long)png_get_image_width(png, info), h = (long)png_get_image_height(png, info);
    if (check_dims(name, "PNG", w, h, err, errn)) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_to_rgb8(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) png_error(png, "unexpected row layout");
    px = malloc((size_t)w * (size_t)h * 3);
    rows = malloc((size_t)h * sizeof *rows);
    if (!px || !rows) {
        snprintf(src.msg, sizeof src.msg, "out of memory");
        png_longjmp(png, 1);
    }
    for (long y = 0; y < h; y++) rows[y] = px + (size_t)y * (size_t)w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    img->width = (int)w;
    img->height = (int)h;
    img->px = px;
    return 0;
}

int gt_image_decode(const uint8_t *buf, size_t n, const char *name, gt_image *img, char *err,
                    size_t errn) {
    memset(img, 0, sizeof *img);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return decode_jpeg(buf, n, name, img, err, errn);
    if (n >= 8 && memcmp(buf, png_sig, 8) == 0) return decode_png(buf, n, name, img, err, errn);
    return gt_errf(err, errn, "%s: not a JPEG or PNG image (%zu bytes)", name, n);
}

int gt_image_load(const char *path, gt_image *img, char *err, size_t errn) {
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return gt_err_open(err, errn, path, errno);
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                return gt_errf(err, errn, "%s: out of memory reading the image", path);
            }
            buf = nb, cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? gt_errf(err, errn, "%s: read error", path)
                 : gt_image_decode(buf, n, path, img, err, errn);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- preprocessing */

gt_image_cfg gt_image_cfg_gemma3(int size) {
    float s = (float)(1.0 / 127.5);
    return (gt_image_cfg){size, true, {s, s, s}, {-1.0f, -1.0f, -1.0f}};
}

/* One axis of jax.image.resize's bilinear (triangle-kernel) weights, no antialiasing: out
 * sample o reads at most two inputs idx[2o], idx[2o+1] with weights w[2o], w[2o+1]. */
static void axis_weights(int in, int out, int *idx, float *w) {
    double inv = (double)in / (double)out;
    for (int o = 0; o < out; o++) {
        double s = ((double)o + 0.5) * inv - 0.5;
        double f = floor(s);
        int i0 = (int)f;
        double w1 = s - f, w0 = 1.0 - w1;
        /* a neighbour outside [0, in) is dropped and the weights renormalised */
        if (i0 < 0) i0 = 0, w0 = 1.0, w1 = 0.0;
        if (i0 + 1 >= in) w0 = 1.0, w1 = 0.0;
        idx[2 * o] = i0;
        idx[2 * o + 1] = i0 + 1 < in ? i0 + 1 : i0;
        w[2 * o] = (float)w0;
        w[2 * o + 1] = (float)w1;
    }
}

int gt_image_preprocess(const gt_image *img, const gt_image_cfg *cfg, float *out, char *err,
                        size_t errn) {
    int S = cfg->size;
    if (S < 1 || S > GT_IMAGE_MAX_SIDE || !img->px || img->width < 1 || img->height < 1)
        return gt_errf(err, errn, "image preprocess: bad size %d for a %dx%d image", S, img->width,
                       img->height);
    /* Keras' crop_to_aspect_ratio: the largest centred window of the target aspect (square). */
    int h = img->height, w = img->width, y0 = 0, x0 = 0;
    if (cfg->crop_to_aspect) {
        int ch = w < h ? w : h, cw = ch;
        y0 = (h - ch) / 2, x0 = (w - cw) / 2;
        h = ch, w = cw;
    }
    int *iy = malloc(sizeof(int) * 2 * (size_t)S), *ix = malloc(sizeof(int) * 2 * (size_t)S);
    float *wy = malloc(sizeof(float) * 2 * (size_t)S), *wx = malloc(sizeof(float) * 2 * (size_t)S);
    float *tmp = malloc(sizeof(float) * (size_t)h * (size_t)S * 3); /* rows resized along x */
    if (!iy || !ix || !wy || !wx || !tmp) {
        free(iy), free(ix), free(wy), free(wx), free(tmp);
        return gt_errf(err, errn, "image preprocess: out of memory (%dx%d to %d)", w, h, S);
    }
    axis_weights(h, S, iy, wy);
    axis_weights(w, S, ix, wx);
    /* an axis already at the target size is copied, as jax skips it */
    bool same_x = w == S, same_y = h == S;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = img->px + ((size_t)(y + y0) * (size_t)img->width + (size_t)x0) * 3;
        for (int o = 0; o < S; o++)
            for (int c = 0; c < 3; c++)
                tmp[((size_t)y * S + o) * 3 + c] =
                    same_x ? (float)row[o * 3 + c]
                           : wx[2 * o] * row[ix[2 * o] * 3 + c] + wx[2 * o + 1] * row[ix[2 * o + 1] * 3 + c];
    }
    for (int o = 0; o < S; o++) {
        const float *r0 = tmp + (size_t)(same_y ? o : iy[2 * o]) * S * 3;
        const float *r1 = tmp + (size_t)(same_y ? o : iy[2 * o + 1]) * S * 3;
        float a = same_y ? 1.0f : wy[2 * o], b = same_y ? 0.0f : wy[2 * o + 1];
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                float v = a * r0[x * 3 + c] + b * r1[x * 3 + c];
                out[((size_t)o * S + x) * 3 + c] = v * cfg->scale[c] + cfg->offset[c];
            }
    }
    free(iy), free(ix), free(wy), free(wx), free(tmp);
    return 0;
}
