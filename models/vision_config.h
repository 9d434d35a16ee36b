/* vision_config.h: the shapes of Gemma 3's vision encoder (KerasHub Gemma3VisionEncoder's config)
 * and what follows from them, apart from the model (models/vision.h) so that the preset table
 * (models/gemma_config.h) can name them without the engine.
 * Contract: plain values and pure functions; nothing allocates. gt_vision_config_check returns -1
 * with one line naming the field. */
#ifndef GT_MODELS_VISION_CONFIG_H
#define GT_MODELS_VISION_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct gt_vision_config {
    int64_t image_size, patch_size, num_heads, hidden_dim, num_layers, intermediate_dim;
    int64_t output_dim; /* the decoder's hidden_dim */
    int64_t pool_size;
    double layer_norm_epsilon;
} gt_vision_config;

/* 0 when the config is usable, else -1 naming the field. */
int gt_vision_config_check(const gt_vision_config *c, char *err, size_t errn);
/* (image_size / patch_size / pool_size)^2 */
int64_t gt_vision_tokens_per_image(const gt_vision_config *c);
/* Number of scalar parameters (no allocation). */
int64_t gt_vision_param_count(const gt_vision_config *c);

/* The encoder of KerasHub's gemma3_4b / 12b / 27b presets (SigLIP So400m at 896 px: patch 14,
 * 27 layers, width 1152, 16 heads, MLP 4304, pool 4 -> 256 tokens, eps 1e-6), projecting to
 * output_dim (the decoder's hidden_dim). */
gt_vision_config gt_vision_gemma3_siglip(int64_t output_dim);

#endif
