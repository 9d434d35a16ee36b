/* hf_towers4.h: Gemma 4's vision and audio towers written as a Hugging Face
 * Gemma4ForConditionalGeneration directory holds them: model.safetensors (F32) with
 * model.vision_tower.*, model.embed_vision.*, model.audio_tower.*, model.embed_audio.* in HF's
 * layouts (the inverse of models/io/hf_vision4.h and models/io/hf_audio.h; clip bounds as 0-d
 * tensors, as the HF buffers are), and config.json with vision_config / audio_config and
 * text_config.hidden_size. The text decoder is not written here (models/io/hf_gemma.h writes it
 * as Gemma4ForCausalLM), so the directory is the towers' part of a checkpoint; our HF readers
 * and transformers' Gemma4VisionModel / Gemma4AudioModel load it.
 * Refused, naming the field: towers of different output widths, an audio tower HF cannot
 * describe (mel count other than subsampling channel 0, no output projection, a separate
 * subsampling norm epsilon). The vision image_size is not stored (HF has none; readers use 896).
 * The pieces are also exported for models/io/hf_gemma.h, which writes the decoder and the towers
 * into one Gemma4ForConditionalGeneration directory (model.language_model.* beside these).
 * Errors: -1 with one line. */
#ifndef GT_MODELS_IO_HF_TOWERS4_H
#define GT_MODELS_IO_HF_TOWERS4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "models/audio.h"
#include "models/io/safetensors.h"
#include "models/vision4.h"

/* Either tower may be NULL, not both. dir is created if missing; the two files are replaced. */
int gt_hf_towers4_save(const char *dir, const gt_vision4 *v, const gt_audio_enc *a, char *err,
                       size_t errn);

/* What HF's configs cannot say is refused (above); text_width > 0: the towers must project into it. */
int gt_hf_towers4_check(const gt_vision4 *v, const gt_audio_enc *a, int64_t text_width, char *err,
                        size_t errn);


typedef struct gt_hf_towers4_out {
    const gt_st_entry *e; /* n tensors under their HF names, F32 data in HF layouts */
    size_t n;
    void *priv;           /* the names and relayouted copies */
} gt_hf_towers4_out;
int gt_hf_towers4_tensors(const gt_vision4 *v, const gt_audio_enc *a, gt_hf_towers4_out *out,
                          char *err, size_t errn);
void gt_hf_towers4_out_free(gt_hf_towers4_out *o);

/* config.json of a Gemma4ForConditionalGeneration: text (a Gemma4ForCausalLM config.json
 * object, stolen; NULL: text_config.hidden_size alone) becomes text_config, with "vision"
 * bidirectional attention when vision_bidir; vision_config / audio_config from the towers; ids
 * (NULL, or -1 entries: transformers' defaults): <|image>, <|image|>, <image|>, <|audio>,
 * <|audio|>, <audio|>. NULL when out of memory. */
json_t *gt_hf_towers4_config(json_t *text, const gt_vision4 *v, const gt_audio_enc *a,
                             const int32_t ids[6], bool vision_bidir);

#endif
