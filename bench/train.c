/* bench/train: one LoRA fine-tuning step of a Gemma preset (random weights): tokens/s, step time,
 * this process's peak RSS and this run's sgemm peak, plus where the step's memory goes.
 *
 * usage: build/bench/train [seq=256] [reps=3] [frozen_dtype=fp32] [preset=gemma3_270m]
 *                          [batch=1] [chunk_rows=128] [data=JSONL tokenizer=FILE [dump=FILE]]
 *                          [compute=float32|bfloat16]
 * compute=bfloat16 (frozen_dtype bf16 only): model.compute_dtype bfloat16, the frozen linears on
 * the CPU's bf16 kernel (autograd/bf16_gemm.h; printed as kernel=, "off" when it fell back to fp32).
 * The step is the trainer's: gt_step_run over one micro-batch (forward, fused chunked LM-head
 * loss, backward, AdamW on the adapters), LoRA rank 4 on query and value. Without data= every
 * token is a label of weight 1 (synthetic ids). With data= the batch is a real SFT batch (tokenizer=
 * a tokenizer.json, .spm or GGUF file, e.g. out/models/gemma-3-270m-q4_k_m.gguf): rows
 * packed with whole prompt/response examples from the start of JSONL in the gemma_chat template
 * (as data.packing: true builds them), prompt and padding labels weighted 0, so the LM head runs
 * only on response tokens; dump= writes that batch (ids, positions, weights) as JSON for
 * bench/train_peft.py to run the same one.
 * Peak RSS is the process's high-water mark (VmHWM), so run one configuration per process
 * (bench/train.sh does). The sgemm peak is the better of two samples, before and after the steps
 * (the machine may be shared). FLOPs are the model's for this batch: per token 4P' (forward 2P' +
 * input gradients 2P', P' every parameter but the embedding; adapters are negligible), plus
 * 4VD for the tied LM head only on tokens whose label is weighted, plus attention 3 x 4 H N per
 * visible key per layer (causal: i + 1 keys for token i, fewer within a sliding window or a packed
 * example). The nominal count (4P + attention over all T keys, every token) is printed too:
 * on the synthetic batch the two differ only by the causal half of attention. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench_util.h"
#include "data/preprocess.h"
#include "models/gemma.h"
#include "train/step.h"
#include "train/loader.h"
#include "autograd/bf16_gemm.h"

/* VmHWM / VmRSS of this process in MB (from /proc/self/status), -1 if unreadable */
static double proc_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double v = -1;
    size_t kn = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kn) && line[kn] == ':') {
            v = atof(line + kn + 1) / 1024.0;
            break;
        }
    fclose(f);
    return v;
}

/* CPU seconds (user + system, all threads) used so far: less sensitive to other load than wall */
static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec * 1e-6 + (double)r.ru_stime.tv_sec +
           r.ru_stime.tv_usec * 1e-6;
}

#define MB(x) ((double)(x) / 1048576.0)

/* Bytes of op outputs on the tape, by op name (the activations a step keeps for backward). */
static void tape_breakdown(const gt_ctx *ctx) {
    const char *names[32];
    double bytes[32];
    int n = 0;
    for (const gt_node *nd = ctx->tape; nd; nd = nd->prev) {
        int i = 0;
        while (i < n && strcmp(names[i], nd->op)) i++;
        if (i == n && n < 32) names[n] = nd->op, bytes[n++] = 0;
        if (i < n) bytes[i] += (double)nd->out->size * sizeof(gt_real);
    }
    printf("  tape outputs by op (MB):");
    for (int i = 0; i < n; i++) printf(" %s %.1f", names[i], MB(bytes[i]));
    printf("\n");
}

/* Rows of a real SFT batch (B x T) packed from the first records of data; 0 or -1 with err. */
static int real_batch(const char *data, const char *tok_path, int64_t B, int64_t T, int32_t *ids,
                      int32_t *labels, int32_t *pos, int32_t *seg, uint8_t *mask, gt_real *w,
                      char *err, size_t errn) {
    gt_tokenizer *tok;
    gt_dataset ds;
    if (gt_tok_load(tok_path, &tok, err, errn)) return -1;
    if (gt_dataset_open(data, GT_DS_AUTO, false, &ds, err, errn)) return gt_tok_free(tok), -1;
    gt_pp_cfg pp = {.seq_len = T, .add_bos = true, .add_eos = true, .template_ = GT_TEMPLATE_GEMMA_CHAT,
                    .chat_default = GT_TEMPLATE_GEMMA_CHAT};
    int64_t next = 0;
    int rc = 0;
    gt_example ex = {0};
    bool have = false;
    for (int64_t r = 0; r < B && !rc; r++) {
        int64_t o = r * T;
        gt_pp_row row = {ids + o, labels + o, pos + o, seg + o, mask + o, w + o, 0, 0};
        gt_pp_row_clear(&pp, gt_tok_pad(tok), &row);
        for (;;) {
            if (!have) {
                if (next >= ds.n) {
                    rc = snprintf(err, errn, "%s: too few records to fill %lld rows", data, (long long)B);
                    break;
                }
                if (gt_dataset_read(&ds, next++, &ex, err, errn)) { rc = -1; break; }
                have = true;
            }
            int a = gt_pp_pack_append(tok, &pp, &ex, &row, err, errn);
            if (a < 0) { rc = -1; break; }
            if (a == 1) break; /* row full */
            gt_example_free(&ex);
            have = false;
        }
    }
    if (have) gt_example_free(&ex);
    gt_dataset_close(&ds);
    gt_tok_free(tok);
    return rc ? -1 : 0;
}

static void dump_ints(FILE *f, const char *key, const int32_t *v, int64_t n) {
    fprintf(f, "\"%s\": [", key);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", v[i]);
    fprintf(f, "]");
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    const char *data = NULL, *tok_path = NULL, *dump = NULL, *compute = "float32";
    int pos_argc = 1; /* key=value arguments are taken out; the rest stay positional */
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "data=", 5)) data = argv[i] + 5;
        else if (!strncmp(argv[i], "tokenizer=", 10)) tok_path = argv[i] + 10;
        else if (!strncmp(argv[i], "dump=", 5)) dump = argv[i] + 5;
        else if (!strncmp(argv[i], "compute=", 8)) compute = argv[i] + 8;
        else argv[pos_argc++] = argv[i];
    }
    argc = pos_argc;
    if (data && !tok_path) return fprintf(stderr, "data= needs tokenizer=\n"), 2;
    int64_t T = argc > 1 ? atoll(argv[1]) : 256;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *frozen = argc > 3 ? argv[3] : "fp32";
    const char *preset = argc > 4 ? argv[4] : "gemma3_270m";
    int64_t B = argc > 5 ? atoll(argv[5]) : 1;
    int64_t chunk = argc > 6 ? atoll(argv[6]) : 128;
    if (T < 1 || B < 1 || reps < 1 || chunk < 1)
        return fprintf(stderr, "usage: %s [seq] [reps] [frozen_dtype] [preset] [batch] [chunk_rows]\n",
                       argv[0]), 2;
    int fdt = gt_frozen_dtype_from_name(frozen);
    if (fdt < 0) return fprintf(stderr, "frozen_dtype %s: want fp32, bf16, q8_0 or q4_k\n", frozen), 2;
    char err[1024];
    gt_gemma_config cfg;
    if (gt_gemma_preset(preset, &cfg, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    int64_t n = B * T;
    int32_t *ids = malloc(sizeof(int32_t) * n), *labels = malloc(sizeof(int32_t) * n);
    int32_t *pos = malloc(sizeof(int32_t) * n), *seg = malloc(sizeof(int32_t) * n);
    uint8_t *mask = malloc((size_t)n);
    gt_real *w = malloc(sizeof(gt_real) * n);
    gt_micro_batch mb = {.in = {.batch = B, .seq = T, .token_ids = ids}, .labels = labels, .weights = w};
    if (data) { /* before the model, so the tokenizer's memory is gone by the step */
        if (real_batch(data, tok_path, B, T, ids, labels, pos, seg, mask, w, err, sizeof err))
            return fprintf(stderr, "%s\n", err), 1;
        mb.in.positions = pos;
        mb.in.segment_ids = seg;
        mb.in.padding_mask = mask;
    } else
        for (int64_t i = 0; i < n; i++) {
            ids[i] = (int32_t)((i * 7919) % cfg.vocab_size);
            labels[i] = (int32_t)((i * 104729 + 3) % cfg.vocab_size);
            w[i] = 1;
        }
    int64_t n_active = 0;
    for (int64_t i = 0; i < n; i++) n_active += w[i] != 0;
    gt_threads_set(0);
    double peak = sgemm_peak();
    double rss0 = proc_mb("VmRSS");

    gt_gemma *m;
    /* built straight in its storage type, as the trainer does (a 12B never exists as fp32) */
    if (gt_gemma_create_frozen(&cfg, (gt_frozen_dtype)fdt, &m, err, sizeof err))
        return fprintf(stderr, "%s\n", err), 1;
    gt_gemma_init_random(m, 1, 0.02);
    if (strcmp(compute, "float32") && strcmp(compute, "bfloat16"))
        return fprintf(stderr, "compute=%s: want float32 or bfloat16\n", compute), 2;
    bool cbf16 = !strcmp(compute, "bfloat16");
    if (gt_gemma_set_compute_bf16(m, cbf16, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    double weights_mb = MB((double)m->n_values * (fdt == GT_FROZEN_BF16 ? 2 : fdt == GT_FROZEN_Q8_0 ? 34.0 / 32 : sizeof(gt_real)));
    if (fdt == GT_FROZEN_Q4_K) weights_mb = MB((double)gt_gemma_stored_bytes(m));
    gt_lora_dims d = {cfg.num_layers, cfg.hidden_dim, cfg.intermediate_dim, cfg.num_query_heads,
                      cfg.num_kv_heads, cfg.head_dim};
    gt_lora *lora;
    if (gt_lora_create(&d, 4, 4, (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 1, &lora, err, sizeof err))
        return fprintf(stderr, "%s\n", err), 1;
    m->lora = lora;
    gt_param_slice *sl = calloc((size_t)(2 * GT_LORA_NTARGETS * cfg.num_layers), sizeof *sl);
    int ns = 0;
    for (int64_t i = 0; i < cfg.num_layers; i++)
        for (int t = 0; t < GT_LORA_NTARGETS; t++) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(lora, i, (gt_lora_target)t);
            if (!ad) continue;
            sl[ns++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, true};
            sl[ns++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, true};
        }
    gt_optim opt;
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    oc.weight_decay = 0.01;
    if (gt_optim_init(&opt, &oc, sl, ns, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;

    if (dump) { /* for bench/train_peft.py: the same batch (labels are ids shifted by one) */
        FILE *f = fopen(dump, "w");
        if (!f) return fprintf(stderr, "%s: cannot write\n", dump), 1;
        fprintf(f, "{\"batch\": %lld, \"seq\": %lld, ", (long long)B, (long long)T);
        dump_ints(f, "ids", ids, n);
        fprintf(f, ", ");
        dump_ints(f, "labels", labels, n);
        fprintf(f, ", ");
        dump_ints(f, "positions", pos, data ? n : 0);
        fprintf(f, ", \"weights\": [");
        for (int64_t i = 0; i < n; i++) fprintf(f, "%s%g", i ? ", " : "", (double)w[i]);
        fprintf(f, "]}\n");
        if (fclose(f)) return fprintf(stderr, "%s: write failed\n", dump), 1;
    }
    gt_step_cfg sc = {.norm = GT_NORM_TOKENS, .chunk_rows = chunk};
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    double *times = malloc(sizeof(double) * (size_t)(reps + 1));
    double cpu0 = 0;
    for (int r = 0; r <= reps; r++) { /* rep 0 warms up (arena growth, page faults) */
        gt_step_result res;
        if (r == 1) cpu0 = cpu_s();
        if (r == 1) gt_op_profile_report(stdout, 0); /* GT_OP_PROFILE=1: drop the warm-up's times */
        gt_op_profile_mark();
        double t = gt_now();
        if (gt_step_run(&ctx, m, &opt, &sc, &mb, 1, B, 1e-4, &res, err, sizeof err))
            return fprintf(stderr, "%s\n", err), 1;
        times[r] = gt_now() - t;
    }
    double cpu = (cpu_s() - cpu0) / reps;
    gt_op_profile_report(stdout, 1.0 / reps);
    double hwm = proc_mb("VmHWM"), arena_peak = MB(ctx.arena.peak);
    double peak2 = sgemm_peak(); /* the machine may be shared: the better of two samples */
    if (peak2 > peak) peak = peak2;
    qsort(times + 1, (size_t)reps, sizeof(double), cmp_double);
    double t = times[1 + reps / 2];
    double params = (double)gt_gemma_param_count(&cfg);
    double emb = (double)cfg.vocab_size * cfg.hidden_dim, keys = 0;
    for (int64_t l = 0; l < cfg.num_layers; l++) {
        double hn = (double)gt_gemma_layer_head_dim(&cfg, l) * cfg.num_query_heads;
        int64_t win = gt_gemma_layer_is_local(&cfg, l) ? cfg.sliding_window : 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < T; i++) {
                int64_t o = b * T, vis = 0;
                for (int64_t j = win > 0 && i - win + 1 > 0 ? i - win + 1 : 0; j <= i; j++)
                    vis += !data || (mask[o + j] && seg[o + j] == seg[o + i]);
                keys += hn * (double)vis;
            }
    }
    double flops = 4.0 * (params - emb) * (double)n + 4.0 * emb * (double)n_active + 12.0 * keys;
    double attn = 4.0 * (double)T * cfg.head_dim * cfg.num_query_heads * cfg.num_layers;
    double nominal = (4.0 * params + 3.0 * attn) * (double)n;
    const char *kern = cbf16 && gt_bf16_linear_uses_bf16(&m->mats[m->layers[0].query - m->tensors])
                           ? gt_bf16_kernel_name(gt_bf16_kernel_active()) : "off";
    printf("preset %s, batch %lld x seq %lld, frozen %s, compute %s (bf16 kernel %s), threads %d, sgemm peak "
           "%.1f GFLOP/s\n", preset, (long long)B, (long long)T, frozen, compute, kern, gt_threads(), peak);
    printf("batch: %s, %lld of %lld labels weighted\n", data ? data : "synthetic ids, every label weighted",
           (long long)n_active, (long long)n);
    printf("lora step: %.1f ms (min %.1f, max %.1f), %.1f tokens/s, %.1f GFLOP/s, %.0f%% of peak, "
           "peak RSS %.0f MB\n", t * 1e3, times[1] * 1e3, times[reps] * 1e3, (double)n / t,
           flops / t / 1e9, 100.0 * flops / t / 1e9 / peak, hwm);
    printf("  nominal model FLOPs (4P + attention over all T keys, every token): %.1f GFLOP/s, %.0f%% "
           "of peak\n", nominal / t / 1e9, 100.0 * nominal / t / 1e9 / peak);
    printf("  CPU time %.2f s/step over %d threads (wall x threads = %.2f s)\n", cpu, gt_threads(),
           t * gt_threads());
    printf("RESULT seq=%lld frozen=%s compute=%s kernel=%s weighted=%lld ms=%.1f tokens_s=%.2f gflops=%.2f "
           "peak_pct=%.1f rss_mb=%.0f cpu_s=%.2f\n", (long long)T, frozen, compute, kern, (long long)n_active, t * 1e3, (double)n / t, flops / t / 1e9,
           100.0 * flops / t / 1e9 / peak, hwm, cpu);

    /* Memory detail, from one more (untimed) step taken apart. */
    gt_ctx_reset(&ctx);
    double c0 = cpu_s(), w0 = gt_now();
    gt_tensor *h = gt_gemma_hidden(&ctx, m, &mb.in);
    double c1 = cpu_s(), w1 = gt_now();
    size_t fwd_hidden = ctx.arena.used;
    double ws;
    gt_tensor *loss = gt_gemma_lm_loss(&ctx, m, h, labels, w, chunk, &ws, NULL);
    double c2 = cpu_s(), w2 = gt_now();
    size_t fwd = ctx.arena.used;
    if (loss) gt_backward(&ctx, loss);
    double c3 = cpu_s(), w3 = gt_now();
    size_t bwd = ctx.arena.used;
    if (!gt_ok(&ctx)) return fprintf(stderr, "%s\n", ctx.err), 1;
    printf("  phases (CPU s / wall s): decoder forward %.2f / %.2f, LM head (with its input "
           "gradient) %.2f / %.2f, decoder backward %.2f / %.2f\n", c1 - c0, w1 - w0, c2 - c1,
           w2 - w1, c3 - c2, w3 - w2);
    gt_ctx_reset(&ctx); /* once more for the tape's contents (backward consumed the last one) */
    h = gt_gemma_hidden(&ctx, m, &mb.in);
    loss = gt_gemma_lm_loss(&ctx, m, h, labels, w, chunk, &ws, NULL);
    if (loss) tape_breakdown(&ctx);
    printf("  memory (MB): process at start %.0f, weights %.0f, arena peak %.0f (forward to hidden "
           "%.0f, + LM head %.0f, backward %.0f), adapters+AdamW %.1f, rest %.0f\n",
           rss0, weights_mb, arena_peak, MB(fwd_hidden), MB(fwd - fwd_hidden),
           MB(bwd - fwd), MB(4.0 * lora->n_values * sizeof(gt_real)),
           hwm - rss0 - weights_mb - arena_peak);

    free(times);
    free(pos);
    free(seg);
    free(mask);
    free(ids);
    free(labels);
    free(w);
    gt_ctx_free(&ctx);
    gt_optim_free(&opt);
    free(sl);
    gt_lora_free(lora);
    gt_gemma_free(m);
    return 0;
}
