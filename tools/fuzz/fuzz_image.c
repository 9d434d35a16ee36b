/* fuzz_image.c: libFuzzer target for the JPEG/PNG decoder (data/image.h) from memory, and Gemma 3
 * preprocessing of what it accepts.
 * Properties beyond "no crash, leak or UB": a refusal is one line naming the input; an accepted
 * image has a size within the limits, and its preprocessed pixels lie in [-1, 1].
 * seeds: tests/fixtures/images datasets/shapes/images
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    gt_image img;
    err[0] = 0;
    if (gt_image_decode(data, size, "fuzz.img", &img, err, sizeof err) != 0) {
        if (!strstr(err, "fuzz.img") || strchr(err, '\n') || img.px) abort();
        return 0;
    }
    if (img.width < 1 || img.height < 1 || img.width > GT_IMAGE_MAX_SIDE || img.height > GT_IMAGE_MAX_SIDE)
        abort();
    gt_image_cfg cfg = gt_image_cfg_gemma3(7);
    float out[7 * 7 * 3];
    if (gt_image_preprocess(&img, &cfg, out, err, sizeof err) != 0) abort();
    for (int i = 0; i < 7 * 7 * 3; i++)
        if (!(out[i] >= -1.0001f && out[i] <= 1.0001f)) abort();
    gt_image_free(&img);
    return 0;
}
