/* gen_media4.h: generate's Gemma 4 images and audio (--image / --audio on a Gemma 4 model).
 *
 * The towers come from the model directory (a KerasHub preset: models/io/towers4_keras.h; a
 * Hugging Face directory: hf_vision4 / hf_audio). The converters' settings come from the
 * preset's preprocessor.json (config.image_converter / config.audio_converter, as KerasHub
 * saves Gemma4CausalLMPreprocessor) when it has them, else KerasHub's defaults with the
 * towers' patch, pool and mel sizes; on a Hugging Face directory, from its
 * processor_config.json or preprocessor_config.json (models/io/hf_processor4.h), as KerasHub's
 * converter maps them. As Gemma4CausalLMPreprocessor, each "<|image|>" of the prompt becomes
 * <|image>, max_soft_tokens x <|image|>, <image|> and the k-th "<|audio|>" the k-th clip's
 * <|audio|> count (ceil(valid frames / 4)) inside <|audio>...<audio|>; KerasHub adds no marker
 * itself, so a prompt must hold one per file. At most 8 images and 8 clips (KerasHub's
 * max_audio_clips_per_prompt is 1 by default; its placement takes any number, clip after clip).
 * Errors: -1 with one line naming the file or the missing tower. */
#ifndef GT_CLI_GEN_MEDIA4_H
#define GT_CLI_GEN_MEDIA4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/audio.h"
#include "data/image4.h"
#include "data/tokenizer.h"
#include "models/gemma4_mm.h"

#define GT_GEN4_MAX_IMAGES 8
#define GT_GEN4_MAX_CLIPS 8

typedef struct gt_gen4 {
    gt_vision4 v;
    gt_audio_enc a;
    bool has_v, has_a;
    gt_image4_cfg icfg;
    gt_audio_cfg acfg;
    float *patches, *mel;
    int32_t *pos;
    uint8_t *valid;
    int64_t clip_tokens[GT_GEN4_MAX_CLIPS]; /* <|audio|> slots of each clip */
    gt_gemma4_images im;
    gt_gemma4_clips cl;
    gt_gemma4_media md;
} gt_gen4;

/* Towers of the model at dir, and the media files converted (x zeroed first). tok gives the
 * placeholder ids; image runs are bidirectional as config.json says (KerasHub's
 * use_vision_bidirectional_attention, HF's text_config.use_bidirectional_attention "vision"). */
int gt_gen4_load(gt_gen4 *x, const char *dir, const gt_tokenizer *tok,
                 const char *const *images, int n_images, const char *const *clips, int n_clips,
                 char *err, size_t errn);
/* Appends the prompt's ids with its markers expanded (one "<|image|>" per image, one "<|audio|>"
 * per clip required): the span's ids pushed as such, the text between encoded as text. */
int gt_gen4_encode(const gt_gen4 *x, const gt_tokenizer *tok, const char *prompt, gt_ids *ids, char *err,
                   size_t errn);
void gt_gen4_free(gt_gen4 *x);

#endif
