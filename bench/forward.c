/* bench/forward: tokens/s of the Gemma forward pass and of forward+backward, at a preset's shapes
 * with random weights, beside this run's sgemm peak; peak RSS after each phase.
 *
 * usage: build/bench/forward [preset=gemma3_270m] [seq=256] [batch=1] [reps=3] [modes=fwd,lora,full]
 *                            [image=the preset's]
 * Modes: forward (inference, no tape), LoRA step (rank 4 on query/value, frozen base: the
 * fine-tuning case), full step (every weight trainable). The loss is the fused chunked LM head
 * with every token weighted. Model FLOPs per token (the usual convention): forward 2P + A,
 * LoRA step 4P + 3A (forward + input gradients; adapters are negligible), full step 6P + 3A,
 * with P the parameter count and A = 4 T H N L attention FLOPs (causal half not subtracted).
 * Modes enc and encstep (presets with a vision encoder, e.g. gemma3_4b): images/s of the
 * encoder's forward and of forward+backward with every encoder weight trainable, batch images
 * at the preset's image size or at image=N (6th argument, a multiple of patch x pool); FLOPs
 * 2P' (6P') per patch with P' the encoder's parameters less the position table, plus attention. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench_util.h"
#include "models/gemma.h"
#include "models/vision.h"

static double peak_rss_mb(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_maxrss / 1024.0;
}

/* The vision encoder's rows: forward and full step, `batch` images of image_size pixels. */
static int bench_encoder(gt_vision_config vc, int64_t batch, int reps, const char *which, double peak) {
    char err[512];
    int64_t s = vc.image_size, w = s / vc.patch_size, per_img = s * s * 3;
    float *img = malloc(sizeof(float) * (size_t)(batch * per_img));
    for (int64_t i = 0; i < batch * per_img; i++) img[i] = (float)((i * 7919) % 255) / 127.5f - 1;
    double p = (double)(gt_vision_param_count(&vc) - w * w * vc.hidden_dim);
    double attn = 4.0 * (double)(w * w) * vc.hidden_dim * vc.num_layers; /* per patch */
    printf("encoder %lld px, %lld patches, %lld layers, width %lld: %lld images per step\n",
           (long long)s, (long long)(w * w), (long long)vc.num_layers, (long long)vc.hidden_dim,
           (long long)batch);
    const char *keys[2] = {"enc", "encstep"}, *names[2] = {"enc fwd", "enc step"};
    for (int mode = 0; mode < 2; mode++) {
        /* "enc" is a prefix of "encstep": match whole comma-separated words */
        char pat[16];
        snprintf(pat, sizeof pat, ",%s,", keys[mode]);
        char list[256];
        snprintf(list, sizeof list, ",%s,", which);
        if (!strstr(list, pat)) continue;
        gt_vision *v;
        if (gt_vision_create(&vc, mode == 1, &v, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        for (int64_t i = 0; i < v->n_params; i++)
            for (int64_t j = 0; j < v->params[i]->size; j++)
                v->params[i]->data[j] = (gt_real)(0.02 * (((i * 131 + j * 7919) % 201) / 100.0 - 1));
        gt_ctx ctx;
        gt_ctx_init(&ctx, 0);
        ctx.grad_enabled = mode == 1;
        double *times = malloc(sizeof(double) * (size_t)(reps + 1));
        for (int r = 0; r <= reps; r++) { /* rep 0 warms up */
            gt_ctx_reset(&ctx);
            double t = gt_now();
            gt_tensor *y = gt_vision_encode(&ctx, v, img, batch);
            if (mode == 1) gt_backward(&ctx, gt_mean(&ctx, y));
            if (!gt_ok(&ctx)) return fprintf(stderr, "%s\n", ctx.err), 1;
            times[r] = gt_now() - t;
        }
        qsort(times + 1, (size_t)reps, sizeof(double), cmp_double);
        double t = times[1 + reps / 2];
        double flops = ((mode == 0 ? 2.0 : 6.0) * p + (mode == 0 ? 1.0 : 3.0) * attn) *
                       (double)(w * w * batch);
        printf("%-10s %10.1f %10.3f %9.1f %7.0f%% %12.0f\n", names[mode], t * 1e3,
               (double)batch / t, flops / t / 1e9, 100.0 * flops / t / 1e9 / peak, peak_rss_mb());
        free(times);
        gt_ctx_free(&ctx);
        gt_vision_free(v);
    }
    free(img);
    return 0;
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    const char *preset = argc > 1 ? argv[1] : "gemma3_270m";
    int64_t T = argc > 2 ? atoll(argv[2]) : 256, B = argc > 3 ? atoll(argv[3]) : 1;
    int reps = argc > 4 ? atoi(argv[4]) : 3;
    const char *which = argc > 5 ? argv[5] : "fwd,lora,full";
    char err[1024];
    gt_gemma_config cfg;
    if (gt_gemma_preset(preset, &cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    gt_threads_set(0);
    double peak = sgemm_peak();
    printf("preset %s, batch %lld x seq %lld, threads %d, sgemm peak %.1f GFLOP/s\n", preset,
           (long long)B, (long long)T, gt_threads(), peak);
    int64_t n = B * T;
    int32_t *ids = malloc(sizeof(int32_t) * n), *labels = malloc(sizeof(int32_t) * n);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = (int32_t)((i * 7919) % cfg.vocab_size);
        labels[i] = (int32_t)((i * 104729 + 3) % cfg.vocab_size);
    }
    double params = (double)gt_gemma_param_count(&cfg);
    double attn_flops = 4.0 * (double)T * cfg.head_dim * cfg.num_query_heads * cfg.num_layers;
    const char *modes[3] = {"forward", "lora step", "full step"};
    printf("%-10s %10s %10s %9s %8s %12s\n", "mode", "ms", "tokens/s", "GFLOP/s", "of peak", "peak RSS MB");
    const char *keys[3] = {"fwd", "lora", "full"};
    for (int mode = 0; mode < 3; mode++) {
        if (!strstr(which, keys[mode])) continue;
        gt_gemma *m;
        if (gt_gemma_create(&cfg, mode == 2, &m, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        gt_gemma_init_random(m, 1, 0.02);
        gt_lora *lora = NULL;
        if (mode == 1) {
            gt_lora_dims d = {cfg.num_layers, cfg.hidden_dim, cfg.intermediate_dim,
                              cfg.num_query_heads, cfg.num_kv_heads, cfg.head_dim};
            if (gt_lora_create(&d, 4, 4, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 1, &lora,
                               err, sizeof err))
                return fprintf(stderr, "%s\n", err), 1;
            m->lora = lora;
        }
        gt_ctx ctx;
        gt_ctx_init(&ctx, 0);
        ctx.grad_enabled = mode > 0;
        double *times = malloc(sizeof(double) * (size_t)(reps + 1));
        for (int r = 0; r <= reps; r++) { /* rep 0 warms up (arena growth, page faults) */
            gt_ctx_reset(&ctx);
            double t = gt_now();
            gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids};
            gt_tensor *h = gt_gemma_hidden(&ctx, m, &b);
            double ws;
            gt_tensor *loss = gt_gemma_lm_loss(&ctx, m, h, labels, NULL, 128, &ws, NULL);
            if (mode > 0) gt_backward(&ctx, loss);
            if (!gt_ok(&ctx)) return fprintf(stderr, "%s\n", ctx.err), 1;
            times[r] = gt_now() - t;
        }
        qsort(times + 1, (size_t)reps, sizeof(double), cmp_double);
        double t = times[1 + reps / 2];
        double flops = ((mode == 0 ? 2.0 : mode == 1 ? 4.0 : 6.0) * params +
                        (mode == 0 ? 1.0 : 3.0) * attn_flops) * (double)n;
        printf("%-10s %10.1f %10.1f %9.1f %7.0f%% %12.0f\n", modes[mode], t * 1e3, (double)n / t,
               flops / t / 1e9, 100.0 * flops / t / 1e9 / peak, peak_rss_mb());
        free(times);
        gt_ctx_free(&ctx);
        gt_lora_free(lora);
        gt_gemma_free(m);
    }
    free(ids);
    free(labels);
    if (cfg.vision.num_layers > 0 && strstr(which, "enc")) {
        gt_vision_config vc = cfg.vision;
        if (argc > 6) vc.image_size = atoll(argv[6]);
        if (gt_vision_config_check(&vc, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        printf("%-10s %10s %10s %9s %8s %12s\n", "mode", "ms", "images/s", "GFLOP/s", "of peak",
               "peak RSS MB");
        return bench_encoder(vc, B, reps, which, peak);
    }
    return 0;
}
