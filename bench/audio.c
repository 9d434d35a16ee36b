/* bench/audio: one 30 s clip through the gemma4_2b audio path at full size.
 *
 *   build/bench/audio [WAV]     (threads: GT_THREADS, default all cores)
 *
 * Features of a 30 s clip (a synthetic tone, or WAV at 16 kHz, padded/trimmed to 30 s: 3000
 * frames x 128 mels), then the E2B audio encoder (12 conformer blocks of width 1024, 307M
 * parameters, small random weights) forward, and forward + backward with every trainable weight
 * taking a gradient: prints the times, the 750 output tokens' shape and peak arena use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_util.h"
#include "data/audio.h"
#include "models/audio.h"

static int encode(gt_audio_enc *m, const float *feat, int64_t frames, bool backward, double *secs) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t shape[3] = {1, frames, m->cfg.input_feat_size};
    double t0 = gt_now();
    gt_tensor *x = gt_from_data(&ctx, feat, 3, shape, false);
    gt_tensor *y = gt_audio_enc_forward(&ctx, m, x, NULL, NULL);
    if (y && backward) {
        gt_real *seed = gt_alloc(&ctx, (size_t)y->size * sizeof *seed);
        for (int64_t i = 0; seed && i < y->size; i++) seed[i] = 1e-3f;
        if (seed) gt_backward_seed(&ctx, y, seed);
    }
    *secs = gt_now() - t0;
    int rc = gt_ok(&ctx) ? 0 : -1;
    if (rc) fprintf(stderr, "bench/audio: %s\n", ctx.err);
    else if (!backward)
        printf("encoder output [%lld, %lld, %lld]\n", (long long)y->shape[0], (long long)y->shape[1],
               (long long)y->shape[2]);
    gt_ctx_free(&ctx);
    return rc;
}

int main(int argc, char **argv) {
    char err[512];
    gt_audio_cfg ac;
    gt_audio_cfg_default(&ac);
    int64_t n = 30 * 16000, frames = gt_audio_num_frames(&ac);
    float *wav = NULL, *feat = malloc((size_t)(frames * ac.num_mels) * sizeof *feat);
    if (argc > 1 && gt_audio_read_wav(argv[1], ac.sampling_rate, &wav, &n, NULL, err, sizeof err)) {
        fprintf(stderr, "bench/audio: %s\n", err);
        return 1;
    }
    if (!wav) {
        wav = malloc((size_t)n * sizeof *wav);
        for (int64_t i = 0; wav && i < n; i++) wav[i] = 0.3f * sinf(2 * (float)M_PI * 440 * (float)i / 16000);
    }
    if (!wav || !feat) return 1;
    double t0 = gt_now();
    if (gt_audio_features(&ac, wav, n, feat, err, sizeof err)) {
        fprintf(stderr, "bench/audio: %s\n", err);
        return 1;
    }
    printf("features: %lld frames x %d mels in %.3f s\n", (long long)frames, ac.num_mels, gt_now() - t0);
    gt_audio_enc_config c;
    gt_audio_enc_preset("gemma4_2b", &c, err, sizeof err);
    gt_audio_enc m;
    if (gt_audio_enc_init(&m, &c, err, sizeof err)) {
        fprintf(stderr, "bench/audio: %s\n", err);
        return 1;
    }
    unsigned s = 1;
    for (int i = 0; i < m.n_all; i++)
        if (m.all[i]->requires_grad && m.all[i]->ndim >= 2)
            for (int64_t j = 0; j < m.all[i]->size; j++) {
                s = s * 1664525u + 1013904223u;
                m.all[i]->data[j] = 0.05f * ((float)(s >> 8) / 16777216.0f - 0.5f);
            }
    double fwd, both;
    if (encode(&m, feat, frames, false, &fwd) || encode(&m, feat, frames, true, &both)) return 1;
    printf("gemma4_2b audio encoder (%lld params): forward %.2f s, forward+backward %.2f s\n",
           (long long)gt_audio_enc_param_count(&c, false), fwd, both);
    gt_audio_enc_free(&m);
    free(wav);
    free(feat);
    return 0;
}
