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
 * Errors: -1 with one line. */
#ifndef GT_MODELS_IO_HF_TOWERS4_H
#define GT_MODELS_IO_HF_TOWERS4_H

#include <stddef.h>

#include "models/audio.h"
#include "models/vision4.h"

/* Either tower may be NULL, not both. dir is created if missing; the two files are replaced. */
int gt_hf_towers4_save(const char *dir, const gt_vision4 *v, const gt_audio_enc *a, char *err,
                       size_t errn);

#endif
