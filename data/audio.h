/* audio.h: WAV reading (libsndfile) and Gemma 4's audio features, as KerasHub 0.32's
 * Gemma4AudioConverter computes them.
 *
 * Features of one clip: the wave is trimmed or zero-padded to sampling_rate * max_audio_length
 * samples, padded on the left by frame_length / 2 zeros, cut into num_samples / stride frames of
 * frame_length samples (stride apart; samples past the end read as zero), multiplied by a
 * periodic Hann window, zero-padded to num_fft_bins, and the magnitude |rfft| (not the power) is
 * projected on an HTK-scale triangular mel filterbank (no area normalisation) and logged:
 * log(mel + mel_floor). Output [frames, num_mels], row-major. There is no resampling: a WAV at
 * another rate is refused. Multi-channel WAVs are averaged to mono.
 * Errors: -1 with one line in err naming the file (or the bad setting). */
#ifndef GT_DATA_AUDIO_H
#define GT_DATA_AUDIO_H

#include <stddef.h>
#include <stdint.h>

typedef struct gt_audio_cfg {
    int num_mels;          /* 128 */
    int num_fft_bins;      /* 512 */
    int stride;            /* hop, 160 samples */
    int frame_length;      /* window, 320 samples */
    int sampling_rate;     /* 16000 */
    int max_audio_length;  /* seconds per clip, 30 */
    double min_frequency;  /* 0 Hz */
    double max_frequency;  /* 8000 Hz */
    double mel_floor;      /* 1e-5 */
} gt_audio_cfg;

/* KerasHub's defaults (those of the Gemma 4 E2B/E4B presets). */
void gt_audio_cfg_default(gt_audio_cfg *c);
int gt_audio_cfg_validate(const gt_audio_cfg *c, char *err, size_t errn);

/* Frames per clip: sampling_rate * max_audio_length / stride. */
int64_t gt_audio_num_frames(const gt_audio_cfg *c);
/* Frames KerasHub marks valid in audio_mel_mask for a wave of n samples:
 * min(n / stride, frames). */
int64_t gt_audio_valid_frames(const gt_audio_cfg *c, int64_t n_samples);
/* <|audio|> soft tokens the preprocessor expands a clip of n samples to: the encoder's 4x time
 * subsampling of the valid frames, ceil(valid / 4), at least 1. */
int64_t gt_audio_num_tokens(const gt_audio_cfg *c, int64_t n_samples);

/* Read a WAV (any format libsndfile reads) as floats in [-1, 1] at want_rate Hz (0: any; the
 * rate is returned in *rate when rate is non-NULL). *samples is malloc'ed (free it). */
int gt_audio_read_wav(const char *path, int want_rate, float **samples, int64_t *n, int *rate,
                      char *err, size_t errn);

/* The prompt with every "<|audio|>" replaced by "<|audio>", n_tokens x "<|audio|>", "<audio|>"
 * (Gemma4CausalLMPreprocessor's expansion; n_tokens from gt_audio_num_tokens, the largest over
 * the batch's clips in KerasHub). *out is malloc'ed. */
#define GT_AUDIO_PLACEHOLDER "<|audio|>"
#define GT_AUDIO_START "<|audio>"
#define GT_AUDIO_END "<audio|>"
int gt_audio_expand_prompt(const char *prompt, int64_t n_tokens, char **out, char *err,
                           size_t errn);

/* Log-mel features of x[0..n) into out[gt_audio_num_frames(c) * num_mels]. */
int gt_audio_features(const gt_audio_cfg *c, const float *x, int64_t n, float *out, char *err,
                      size_t errn);

#endif
