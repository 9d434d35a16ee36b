/* quant.c: Q8_0 blocks (autograd/quant.h). */
#include "autograd/quant.h"

#include <math.h>
#include <string.h>

#include "util/half.h"

static void quantize_block(const gt_real *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < GT_Q8_BLOCK; i++) {
        float a = fabsf((float)x[i]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = gt_f32_to_f16(d);
    memcpy(b, &h, 2);
    int8_t *q = (int8_t *)(b + 2);
    for (int i = 0; i < GT_Q8_BLOCK; i++) q[i] = (int8_t)roundf((float)x[i] * id);
}

void gt_q8_quantize(const gt_real *src, uint8_t *dst, int64_t n) {
    int64_t nb = n / GT_Q8_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t i = 0; i < nb; i++) quantize_block(src + i * GT_Q8_BLOCK, dst + i * GT_Q8_BYTES);
}

void gt_q8_dequant(const uint8_t *src, gt_real *dst, int64_t n) {
    int64_t nb = n / GT_Q8_BLOCK;
#pragma omp parallel for schedule(static) if (nb > 2048)
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * GT_Q8_BYTES;
        uint16_t h;
        memcpy(&h, b, 2);
        const float d = gt_f16_to_f32(h);
        const int8_t *q = (const int8_t *)(b + 2);
        gt_real *y = dst + i * GT_Q8_BLOCK;
        for (int k = 0; k < GT_Q8_BLOCK; k++) y[k] = (gt_real)(d * (float)q[k]);
    }
}
