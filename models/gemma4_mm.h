/* gemma4_mm.h: Gemma 4's decoder with images and audio (KerasHub Gemma4Backbone with a vision
 * and an audio encoder).
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
 *
 * Audio clips (log-mel features, data/audio.h) are encoded (models/audio.h) and each clip's valid
 * output steps (ceil(valid frames / 4), the preprocessor's count) fill the audio_token slots in
 * flat order, clip after clip; KerasHub scales them by D^-0.5 before the embedding scale, so they
 * too enter unscaled, and reads token 0 for the per-layer embeddings there. Audio spans stay
 * causal (KerasHub passes only the vision mask to the decoder).
 * Errors: NULL with ctx's sticky error (placeholder count != soft tokens, bad positions). */
#ifndef GT_MODELS_GEMMA4_MM_H
#define GT_MODELS_GEMMA4_MM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/audio.h"
#include "models/gemma.h"
#include "models/vision4.h"

typedef struct gt_gemma4_images {
    const float *patches;   /* n * P * 3p^2, pixels in [0, 1] */
    const int32_t *pos;     /* n * P * 2: (x, y) per patch */
    int64_t n, P;
} gt_gemma4_images;

typedef struct gt_gemma4_clips {
    const float *mel;       /* n * T * mels */
    const uint8_t *valid;   /* n * T, 1 = a real frame (a prefix of each clip); NULL: all */
    int64_t n, T;
} gt_gemma4_clips;

/* What a Gemma 4 prompt's media needs: either half may be absent (encoder NULL, or n = 0). */
typedef struct gt_gemma4_media {
    const gt_vision4 *vision;
    bool vision_bidir;
    int32_t image_token;
    const gt_gemma4_images *images;
    const gt_audio_enc *audio;
    int32_t audio_token;
    const gt_gemma4_clips *clips;
} gt_gemma4_media;

/* What a cached step needs to feed the prompt ids[0..n) with md's media (one row): ids with 0
 * at the media slots (KerasHub's per-layer-embedding pad), the encoders' rows [n_rows, D] in
 * position order, their positions and bidirectional flags. Arrays in ctx; nothing on the tape.
 * -1 with ctx's sticky error. */
typedef struct gt_gemma4_rows {
    int32_t *ids;
    gt_real *rows;
    int32_t *pos;
    uint8_t *open;
    int64_t n;
} gt_gemma4_rows;
int gt_gemma4_media_rows(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md, const int32_t *ids,
                         int64_t n, gt_gemma4_rows *out);

/* Cached generation: feed the prompt ids[0..n) (one row, at cache->len..) with md's media at
 * their slots, as gt_gemma4_media_hidden places them (image runs bidirectional with
 * vision_bidir, audio causal), and return the last token's logits [1, V]. Records nothing on the
 * tape. NULL with ctx's sticky error. */
gt_tensor *gt_gemma4_media_prefill(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md,
                                   gt_gemma_cache *cache, const int32_t *ids, int64_t n);

/* Final hidden states [B, T, D] of m on b (as gt_gemma4_mm_hidden) with md's images at
 * image_token slots and its clips at audio_token slots. A token < 0 is never a slot; a kind
 * without media (NULL or n = 0) must have no slots in b. */
gt_tensor *gt_gemma4_media_hidden(gt_ctx *ctx, const gt_gemma *m, const gt_gemma4_media *md,
                                  const gt_gemma_batch *b);

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
