/* audio.c: WAV reading and Gemma 4 log-mel features (contract in audio.h). The window, the mel
 * filterbank and the windowed frames are rounded to float as KerasHub's float32 arrays are; the
 * DFT and the mel products run in double. */
#include "data/audio.h"

#include <errno.h>
#include <math.h>
#include <sndfile.h>
#include <stdlib.h>
#include <string.h>

#include "data/placeholder.h"
#include "util/err.h"

void gt_audio_cfg_default(gt_audio_cfg *c) {
    *c = (gt_audio_cfg){.num_mels = 128, .num_fft_bins = 512, .stride = 160, .frame_length = 320,
                        .sampling_rate = 16000, .max_audio_length = 30, .min_frequency = 0.0,
                        .max_frequency = 8000.0, .mel_floor = 1e-5};
}

int gt_audio_cfg_validate(const gt_audio_cfg *c, char *err, size_t errn) {
    if (c->num_mels < 1 || c->num_fft_bins < 2 || c->stride < 1 || c->frame_length < 1 ||
        c->sampling_rate < 1 || c->max_audio_length < 1)
        return gt_errf(err, errn, "audio converter: num_mels, num_fft_bins, stride, frame_length, "
                                  "sampling_rate and max_audio_length must be positive");
    if (c->frame_length > c->num_fft_bins)
        return gt_errf(err, errn, "audio converter: frame_length %d exceeds num_fft_bins %d",
                       c->frame_length, c->num_fft_bins);
    if (!(c->min_frequency >= 0 && c->max_frequency > c->min_frequency))
        return gt_errf(err, errn, "audio converter: need 0 <= min_frequency < max_frequency");
    if (!(c->mel_floor > 0))
        return gt_errf(err, errn, "audio converter: mel_floor must be positive");
    return 0;
}

int64_t gt_audio_num_frames(const gt_audio_cfg *c) {
    return (int64_t)c->sampling_rate * c->max_audio_length / c->stride;
}

int64_t gt_audio_valid_frames(const gt_audio_cfg *c, int64_t n_samples) {
    int64_t v = n_samples / c->stride, f = gt_audio_num_frames(c);
    return v < f ? v : f;
}

int64_t gt_audio_num_tokens(const gt_audio_cfg *c, int64_t n_samples) {
    int64_t t = (gt_audio_valid_frames(c, n_samples) + 3) / 4;
    return t > 1 ? t : 1;
}

int gt_audio_read_wav(const char *path, int want_rate, float **samples, int64_t *n, int *rate,
                      char *err, size_t errn) {
    *samples = NULL;
    *n = 0;
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return gt_errf(err, errn, "%s: cannot read audio: %s", path, sf_strerror(NULL));
    if (info.channels < 1 || info.frames < 0 || info.frames > ((int64_t)1 << 31) / info.channels) {
        sf_close(sf);
        return gt_errf(err, errn, "%s: unsupported audio (%d channels, %lld frames)", path,
                       info.channels, (long long)info.frames);
    }
    if (want_rate > 0 && info.samplerate != want_rate) {
        sf_close(sf);
        return gt_errf(err, errn, "%s: sample rate %d Hz, the audio converter needs %d Hz "
                                  "(resample it first, e.g. sox IN -r %d OUT)",
                       path, info.samplerate, want_rate, want_rate);
    }
    int64_t frames = info.frames, ch = info.channels;
    float *buf = malloc((size_t)(frames * ch > 0 ? frames * ch : 1) * sizeof *buf);
    if (!buf) {
        sf_close(sf);
        return gt_errf(err, errn, "%s: out of memory for %lld samples", path, (long long)frames);
    }
    sf_count_t got = sf_readf_float(sf, buf, frames);
    sf_close(sf);
    if (got != frames) {
        free(buf);
        return gt_errf(err, errn, "%s: truncated audio (%lld of %lld frames read)", path,
                       (long long)got, (long long)frames);
    }
    for (int64_t i = 0; i < frames && ch > 1; i++) {  /* average the channels, in place */
        double s = 0;
        for (int64_t k = 0; k < ch; k++) s += buf[i * ch + k];
        buf[i] = (float)(s / ch);
    }
    *samples = buf;
    *n = frames;
    if (rate) *rate = info.samplerate;
    return 0;
}

/* HTK mel scale. */
static double hz_to_mel(double hz) { return 2595.0 * log10(1.0 + hz / 700.0); }
static double mel_to_hz(double mel) { return 700.0 * (pow(10.0, mel / 2595.0) - 1.0); }

/* Triangular filters [bins, mels] with edges evenly spaced in mel, rounded to float. */
static int mel_filters(const gt_audio_cfg *c, int bins, float *fb) {
    int m = c->num_mels;
    double lo = hz_to_mel(c->min_frequency), hi = hz_to_mel(c->max_frequency);
    double *edge = malloc((size_t)(m + 2) * sizeof *edge);
    if (!edge) return -1;
    for (int i = 0; i < m + 2; i++) edge[i] = mel_to_hz(lo + (hi - lo) * i / (m + 1));
    for (int b = 0; b < bins; b++) {
        double f = (double)b * c->sampling_rate / c->num_fft_bins;
        for (int j = 0; j < m; j++) {
            double down = (f - edge[j]) / (edge[j + 1] - edge[j]);
            double up = (edge[j + 2] - f) / (edge[j + 2] - edge[j + 1]);
            double w = down < up ? down : up;
            fb[(size_t)b * m + j] = (float)(w > 0 ? w : 0);
        }
    }
    free(edge);
    return 0;
}

typedef struct {
    float *win;      /* [frame_length] periodic Hann */
    float *fb;       /* [bins, mels] */
    double *cs, *sn; /* [bins, frame_length] DFT twiddles (only the non-padded samples) */
} feat_tables;

static void tables_free(feat_tables *t) {
    free(t->win);
    free(t->fb);
    free(t->cs);
    free(t->sn);
}

static int tables_init(const gt_audio_cfg *c, int bins, feat_tables *t) {
    int L = c->frame_length, N = c->num_fft_bins;
    t->win = malloc((size_t)L * sizeof *t->win);
    t->fb = calloc((size_t)bins * c->num_mels, sizeof *t->fb);
    t->cs = malloc((size_t)bins * L * sizeof *t->cs);
    t->sn = malloc((size_t)bins * L * sizeof *t->sn);
    if (!t->win || !t->fb || !t->cs || !t->sn) return -1;
    for (int i = 0; i < L; i++) t->win[i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / L));
    if (mel_filters(c, bins, t->fb)) return -1;
    for (int k = 0; k < bins; k++)
        for (int i = 0; i < L; i++) {
            /* (k * i) mod N keeps the angle small, so the twiddle is exact to rounding */
            double a = 2.0 * M_PI * (double)(((int64_t)k * i) % N) / N;
            t->cs[(size_t)k * L + i] = cos(a);
            t->sn[(size_t)k * L + i] = sin(a);
        }
    return 0;
}

/* One frame: out[mels] = log(mel(|DFT(frame * window)|) + floor). */
static void one_frame(const gt_audio_cfg *c, const feat_tables *t, int bins, const float *fr,
                      double *mag, float *out) {
    int L = c->frame_length, m = c->num_mels;
    for (int k = 0; k < bins; k++) {
        const double *cs = t->cs + (size_t)k * L, *sn = t->sn + (size_t)k * L;
        double re = 0, im = 0;
        for (int i = 0; i < L; i++) {
            re += fr[i] * cs[i];
            im -= fr[i] * sn[i];
        }
        mag[k] = sqrt(re * re + im * im);
    }
    for (int j = 0; j < m; j++) {
        double s = 0;
        for (int k = 0; k < bins; k++) s += mag[k] * t->fb[(size_t)k * m + j];
        out[j] = (float)log(s + c->mel_floor);
    }
}

int gt_audio_features(const gt_audio_cfg *c, const float *x, int64_t n, float *out, char *err,
                      size_t errn) {
    if (gt_audio_cfg_validate(c, err, errn)) return -1;
    int bins = c->num_fft_bins / 2 + 1, L = c->frame_length;
    int64_t total = (int64_t)c->sampling_rate * c->max_audio_length;
    int64_t frames = gt_audio_num_frames(c), keep = n < total ? n : total;
    int64_t pad = L / 2;
    feat_tables t = {0};
    int rc = 0;
    if (tables_init(c, bins, &t)) {
        tables_free(&t);
        return gt_errf(err, errn, "audio features: out of memory");
    }
#pragma omp parallel
    {
        float *fr = malloc((size_t)L * sizeof *fr);
        double *mag = malloc((size_t)bins * sizeof *mag);
        if (!fr || !mag) {
#pragma omp atomic write
            rc = -1;
        }
#pragma omp for schedule(static)
        for (int64_t f = 0; f < frames; f++) {
            if (!fr || !mag) continue;
            for (int i = 0; i < L; i++) {
                /* position in the clip (trimmed/zero-padded to total, left pad of L/2) */
                int64_t p = f * c->stride + i - pad;
                float v = (p >= 0 && p < keep) ? x[p] : 0.0f;
                fr[i] = v * t.win[i];
            }
            one_frame(c, &t, bins, fr, mag, out + f * c->num_mels);
        }
        free(fr);
        free(mag);
    }
    tables_free(&t);
    if (rc) return gt_errf(err, errn, "audio features: out of memory");
    return 0;
}

int gt_audio_expand_prompt(const char *prompt, int64_t n_tokens, char **out, char *err,
                           size_t errn) {
    return gt_placeholder_expand(prompt, GT_AUDIO_PLACEHOLDER, GT_AUDIO_START, GT_AUDIO_END,
                                 n_tokens, "audio prompt", "clip", out, err, errn);
}
