/* hf_processor4.h: Gemma 4's converter settings from a Hugging Face directory's processor files,
 * mapped as KerasHub's HF converter maps them onto Gemma4ImageConverter / Gemma4AudioConverter:
 *   processor_config.json (what Gemma4Processor saves): "image_processor" and
 *   "feature_extractor" objects; else preprocessor_config.json, one flat object (an image
 *   processor's, or a feature extractor's when it has "feature_extractor_type").
 * Image: max_soft_tokens; do_rescale / rescale_factor, do_normalize / image_mean / image_std ->
 *   per-channel scale = rescale / std, offset = -mean / std (identity when neither is set);
 *   do_resize false is refused (the converter always resizes). patch and pool are not read here:
 *   they are the tower's (vision_config), as KerasHub takes them.
 * Audio: feature_size -> num_mels, fft_length -> num_fft_bins, hop_length -> stride,
 *   frame_length, sampling_rate, min_frequency, max_frequency, mel_floor; settings the KerasHub
 *   features do not have (per_bin_mean / per_bin_stddev not null, preemphasis, dither,
 *   input_scale_factor other than 1, fft_overdrive) are refused.
 * A file that is present must hold every key above for the section it has; a missing key or a
 * value of the wrong type or range is an error naming the file and the key. No file: *has_i and
 * *has_a false, the configs untouched. Errors: -1 with one line. */
#ifndef GT_MODELS_IO_HF_PROCESSOR4_H
#define GT_MODELS_IO_HF_PROCESSOR4_H

#include <stdbool.h>
#include <stddef.h>

#include "data/audio.h"
#include "data/image4.h"

/* Either config may be NULL (that section not wanted). */
int gt_hf_processor4_load(const char *dir, gt_image4_cfg *ic, bool *has_i, gt_audio_cfg *ac,
                          bool *has_a, char *err, size_t errn);

#endif
