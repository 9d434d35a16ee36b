#include "data/image4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

gt_image4_cfg gt_image4_cfg_gemma4(void) {
    float s = (float)(1.0 / 255.0);
    return (gt_image4_cfg){16, 3, 280, {s, s, s}, {0.0f, 0.0f, 0.0f}};
}

int gt_image4_validate(const gt_image4_cfg *c, char *err, size_t errn) {
    if (c->patch < 1 || c->patch > 64 || c->pool < 1 || c->pool > 16 || c->max_soft_tokens < 1 ||
        c->max_soft_tokens > 65536)
        return gt_errf(err, errn,
                       "gemma4 image converter: bad patch %d / pool %d / max_soft_tokens %d "
                       "(want 1-64, 1-16, 1-65536)",
                       c->patch, c->pool, c->max_soft_tokens);
    return 0;
}

int64_t gt_image4_max_patches(const gt_image4_cfg *c) {
    return (int64_t)c->max_soft_tokens * c->pool * c->pool;
}

int64_t gt_image4_patch_dim(const gt_image4_cfg *c) { return 3 * (int64_t)c->patch * c->patch; }

/* KerasHub computes the factor and sides in float32; the same arithmetic keeps the floors
 * (volatile: no wider intermediates or fused multiply-adds that could move a floor). */
int gt_image4_target(const gt_image4_cfg *c, int h, int w, int *th, int *tw, char *err,
                     size_t errn) {
    if (gt_image4_validate(c, err, errn)) return -1;
    if (h < 1 || w < 1 || h > GT_IMAGE_MAX_SIDE || w > GT_IMAGE_MAX_SIDE)
        return gt_errf(err, errn, "gemma4 image converter: bad image size %dx%d", w, h);
    int side = c->patch * c->pool;
    int64_t target_px = gt_image4_max_patches(c) * c->patch * c->patch;
    volatile float ratio = (float)target_px / (float)((int64_t)h * w);
    volatile float factor = sqrtf(ratio);
    volatile float ih = factor * (float)h, iw = factor * (float)w;
    volatile float qh = floorf(ih / (float)side), qw = floorf(iw / (float)side);
    int64_t oh = (int64_t)(qh * (float)side), ow = (int64_t)(qw * (float)side);
    if (oh < side) oh = side;
    if (ow < side) ow = side;
    int64_t n = (oh / c->patch) * (ow / c->patch);
    if (n > gt_image4_max_patches(c) || oh > GT_IMAGE_MAX_SIDE || ow > GT_IMAGE_MAX_SIDE)
        return gt_errf(err, errn,
                       "gemma4 image converter: a %dx%d image resizes to %lldx%lld, %lld patches, "
                       "more than the %lld allowed (aspect ratio too extreme)",
                       w, h, (long long)ow, (long long)oh, (long long)n,
                       (long long)gt_image4_max_patches(c));
    *th = (int)oh, *tw = (int)ow;
    return 0;
}

/* One axis of jax.image.resize's antialiased Keys-cubic weights: output o reads inputs
 * first[o] .. first[o] + cnt[o] - 1 with weights w[o * span ...]. Evaluated in float32 as jax. */
typedef struct {
    int span;
    int *first, *cnt;
    float *w;
} axis_w;

static void axis_free(axis_w *a) { free(a->first), free(a->cnt), free(a->w); }

static float keys_cubic(float x) {
    if (x >= 2.0f) return 0.0f;
    if (x >= 1.0f) return ((-0.5f * x + 2.5f) * x - 4.0f) * x + 2.0f;
    return ((1.5f * x - 2.5f) * x) * x + 1.0f;
}

static int axis_make(int in, int out, axis_w *a) {
    /* jax takes out / in and its inverse as Python doubles, then rounds to float32 */
    float inv = (float)(1.0 / ((double)out / (double)in));
    float ks = inv > 1.0f ? inv : 1.0f;
    a->span = (int)ceilf(4.0f * ks) + 2;
    a->first = malloc(sizeof(int) * (size_t)out);
    a->cnt = malloc(sizeof(int) * (size_t)out);
    a->w = malloc(sizeof(float) * (size_t)out * (size_t)a->span);
    if (!a->first || !a->cnt || !a->w) return -1;
    for (int o = 0; o < out; o++) {
        float s = ((float)o + 0.5f) * inv - 0.5f;
        int lo = (int)floorf(s - 2.0f * ks), hi = (int)ceilf(s + 2.0f * ks);
        if (lo < 0) lo = 0;
        if (hi > in - 1) hi = in - 1;
        if (hi - lo + 1 > a->span) hi = lo + a->span - 1;
        float *w = a->w + (size_t)o * a->span, sum = 0.0f;
        for (int j = lo; j <= hi; j++) sum += w[j - lo] = keys_cubic(fabsf(s - (float)j) / ks);
        /* jax zeroes a column whose weights nearly cancel */
        bool keep = fabsf(sum) > 1000.0f * 1.1920929e-7f;
        for (int j = lo; j <= hi; j++) w[j - lo] = keep ? w[j - lo] / sum : 0.0f;
        a->first[o] = lo, a->cnt[o] = hi - lo + 1;
    }
    return 0;
}

/* src [rows, in, 3] -> dst [rows, out, 3]: along x. */
static void resize_rows(const float *src, int rows, int in, int out, const axis_w *a,
                        float *dst) {
    for (int r = 0; r < rows; r++) {
        const float *row = src + (size_t)r * in * 3;
        for (int o = 0; o < out; o++) {
            const float *w = a->w + (size_t)o * a->span;
            double acc[3] = {0, 0, 0};
            for (int k = 0; k < a->cnt[o]; k++)
                for (int ch = 0; ch < 3; ch++)
                    acc[ch] += (double)w[k] * row[(size_t)(a->first[o] + k) * 3 + ch];
            for (int ch = 0; ch < 3; ch++) dst[((size_t)r * out + o) * 3 + ch] = (float)acc[ch];
        }
    }
}

/* src [in, cols, 3] -> dst [out, cols, 3]: along y. */
static void resize_cols(const float *src, int cols, int out, const axis_w *a,
                        float *dst) {
    for (int o = 0; o < out; o++) {
        const float *w = a->w + (size_t)o * a->span;
        for (int x = 0; x < cols * 3; x++) {
            double acc = 0;
            for (int k = 0; k < a->cnt[o]; k++)
                acc += (double)w[k] * src[(size_t)(a->first[o] + k) * cols * 3 + x];
            dst[(size_t)o * cols * 3 + x] = (float)acc;
        }
    }
}

/* img -> th x tw x 3 floats, resized and clipped to [0, 255] (jax skips an unchanged axis). */
static float *resize(const gt_image *img, int th, int tw) {
    int h = img->height, w = img->width;
    size_t n_in = (size_t)h * w * 3;
    float *cur = malloc(sizeof(float) * n_in);
    if (!cur) return NULL;
    for (size_t i = 0; i < n_in; i++) cur[i] = img->px[i];
    axis_w ax = {0}, ay = {0};
    float *mid = NULL, *out = NULL;
    if ((w != tw && axis_make(w, tw, &ax)) || (h != th && axis_make(h, th, &ay))) goto done;
    mid = w == tw ? cur : malloc(sizeof(float) * (size_t)h * tw * 3);
    if (!mid) goto done;
    if (w != tw) resize_rows(cur, h, w, tw, &ax, mid);
    out = h == th ? mid : malloc(sizeof(float) * (size_t)th * tw * 3);
    if (!out) goto done;
    if (h != th) resize_cols(mid, tw, th, &ay, out);
    for (size_t i = 0; i < (size_t)th * tw * 3; i++)
        out[i] = out[i] < 0.0f ? 0.0f : out[i] > 255.0f ? 255.0f : out[i];
done:
    axis_free(&ax), axis_free(&ay);
    if (cur != out) free(cur);
    if (mid && mid != out && mid != cur) free(mid);
    return out;
}

int gt_image4_preprocess(const gt_image *img, const gt_image4_cfg *c, float *patches,
                         int32_t *pos, int64_t *n_real, char *err, size_t errn) {
    int th, tw;
    if (!img->px) return gt_errf(err, errn, "gemma4 image converter: no pixels");
    if (gt_image4_target(c, img->height, img->width, &th, &tw, err, errn)) return -1;
    float *px = resize(img, th, tw);
    if (!px)
        return gt_errf(err, errn, "gemma4 image converter: out of memory (%dx%d to %dx%d)",
                       img->width, img->height, tw, th);
    int p = c->patch, nh = th / p, nw = tw / p;
    int64_t dim = gt_image4_patch_dim(c), maxp = gt_image4_max_patches(c), n = (int64_t)nh * nw;
    for (int py = 0; py < nh; py++)
        for (int px_ = 0; px_ < nw; px_++) {
            int64_t q = (int64_t)py * nw + px_;
            float *dst = patches + q * dim;
            for (int r = 0; r < p; r++)
                for (int col = 0; col < p; col++)
                    for (int ch = 0; ch < 3; ch++) {
                        float v = px[((size_t)(py * p + r) * tw + (size_t)(px_ * p + col)) * 3 + ch];
                        dst[(r * p + col) * 3 + ch] = v * c->scale[ch] + c->offset[ch];
                    }
            pos[2 * q] = px_, pos[2 * q + 1] = py;
        }
    memset(patches + n * dim, 0, sizeof(float) * (size_t)((maxp - n) * dim));
    for (int64_t q = n; q < maxp; q++) pos[2 * q] = pos[2 * q + 1] = -1;
    if (n_real) *n_real = n;
    free(px);
    return 0;
}

int gt_image4_load(const char *path, const gt_image4_cfg *c, float *patches, int32_t *pos,
                   int64_t *n_real, char *err, size_t errn) {
    gt_image img;
    if (gt_image_load(path, &img, err, errn)) return -1;
    char sub[400];
    int rc = gt_image4_preprocess(&img, c, patches, pos, n_real, sub, sizeof sub);
    if (rc) gt_errf(err, errn, "%s: %s", path, sub);
    gt_image_free(&img);
    return rc;
}
