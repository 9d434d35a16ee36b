/* keras_converters4.h: Gemma 4 converter settings from a KerasHub preset's preprocessor.json:
 *   config.image_converter.config: patch_size, max_soft_tokens, pooling_kernel_size;
 *   config.audio_converter.config: num_mels, num_fft_bins, stride, frame_length, sampling_rate,
 *   max_audio_length, min_frequency, max_frequency, mel_floor.
 * Each key present overrides the config's field; an absent or null key leaves it. No file: 0 with
 * both configs untouched. A file that does not parse, or a key that is not a number: -1 with one
 * line naming the file (and line or key). Shared by training (train/media4_rows) and generate
 * (cli/gen_media4) so both read a preset the same way. */
#ifndef GT_MODELS_IO_KERAS_CONVERTERS4_H
#define GT_MODELS_IO_KERAS_CONVERTERS4_H

#include <stddef.h>

#include "data/audio.h"
#include "data/image4.h"

int gt_keras_converters4_load(const char *dir, gt_image4_cfg *ic, gt_audio_cfg *ac, char *err, size_t errn);

#endif
