/* gemma4_mm.h: Gemma 4's decoder with images (KerasHub Gemma4Backbone with a vision encoder).
 *
 * The token row holds image_token at every soft-token slot (the preprocessor's expansion of an
 * image into num_vision_tokens_per_image placeholders). The images are encoded (models/
 * vision4.h) and their tokens, in order (images in batch-row order, each image's L tokens), put
 * at the placeholders in flat order: KerasHub divides them by sqrt(D) before the embedding scale
 * so they enter the decoder unscaled, which is what placing them after the scale does. The
 * per-layer embeddings read token 0 at those slots (KerasHub's pad id). With vision_bidir
 * (use_vision_bidirectional_attention) each maximal run of placeholders sees itself both ways on
 * local layers (the decoder leaves global layers causal); a run longer than the sliding window
 * is refused, because KerasHub's rule does not cut the run at the window and gt_attention does.
 * Errors: NULL with ctx's sticky error (placeholder count != images x tokens, bad positions). */
#ifndef GT_MODELS_GEMMA4_MM_H
#define GT_MODELS_GEMMA4_MM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/gemma.h"
#include "models/vision4.h"

typedef struct gt_gemma4_images {
    const float *patches;   /* n * P * 3p^2, pixels in [0, 1] */
    const int32_t *pos;     /* n * P * 2: (x, y) per patch */
    int64_t n, P;
} gt_gemma4_images;

/* Final hidden states [B, T, D] of m on b (token_ids, padding_mask, ... as for gt_gemma_hidden;
 * b's soft-token fields must be unset) with imgs placed at image_token slots. imgs NULL or n = 0:
 * no slot may hold image_token. */
gt_tensor *gt_gemma4_mm_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_vision4 *v,
                               bool vision_bidir, int32_t image_token, const gt_gemma_batch *b,
                               const gt_gemma4_images *imgs);

/* The prompt with every "<|image|>" replaced by "<|image>", n_tokens x "<|image|>", "<image|>"
 * (Gemma4CausalLMPreprocessor's expansion; n_tokens = num_vision_tokens_per_image, 280 for the
 * presets). -1 with one line for n_tokens outside 1..2^20. *out is malloc'ed. */
#define GT_IMAGE4_PLACEHOLDER "<|image|>"
#define GT_IMAGE4_START "<|image>"
#define GT_IMAGE4_END "<image|>"
int gt_gemma4_expand_images(const char *prompt, int64_t n_tokens, char **out, char *err,
                            size_t errn);

#endif
