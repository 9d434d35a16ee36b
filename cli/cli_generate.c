/* gemmatrain generate: KV-cached generation (and scoring) with KerasHub's generate() semantics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/generate.h"
#include "models/keras_lora.h"
#include "cli/cli.h"
#include "train/loader.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gemmatrain generate --model PATH [--lora ADAPTER.lora.h5] [options] PROMPT\n"
            "  --model PATH          a GGUF file (or its chunk files, comma-separated), a KerasHub\n"
            "                        preset directory or a Hugging Face directory\n"
            "  --lora FILE           LoRA adapters to apply, a Keras .lora.h5 (what train writes to\n"
            "                        output_dir/adapter.lora.h5; rank and targets from the file), merged\n"
            "                        into the kernels at load: same numbers as an export --merge-lora\n"
            "  --lora-alpha A        scale the adapters by A / rank, as Keras' enable_lora(rank,\n"
            "                        lora_alpha=A) would (default: rank, scale 1: the file's B already\n"
            "                        carries the training's alpha / rank)\n"
            "  --max-new-tokens N    tokens to generate at most (default 64)\n"
            "  --max-length N        prompt + generated tokens at most (KerasHub max_length)\n"
            "  --sampler SPEC        greedy (default) | random | top_k | top_p, with options,\n"
            "                        e.g. top_k:k=5,temperature=0.8,seed=2 or top_p:p=0.9\n"
            "  --stop IDS            comma-separated stop token ids (default: <eos>, <end_of_turn>, <turn|>)\n"
            "  --strip-prompt        print only the completion (default prints prompt + completion,\n"
            "                        as KerasHub's generate(strip_prompt=False))\n"
            "  --chat                wrap PROMPT in the Gemma chat template (user turn, model turn)\n"
            "  --no-bos              do not prepend <bos>\n"
            "  --score               instead of generating, print per-token losses of PROMPT as JSON\n"
            "                        (KerasHub's score(scoring_mode=\"loss\"))\n");
}

typedef struct {
    const gt_tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    size_t printed; /* bytes of decoded completion already written */
} stream;

static void on_token(int32_t id, void *user) {
    stream *s = user;
    if (s->n < s->cap) s->ids[s->n++] = id;
    char *text = NULL, err[256];
    size_t len = 0;
    if (gt_tok_decode(s->tok, s->ids, s->n, true, &text, &len, err, sizeof err) == 0) {
        /* print only complete UTF-8: hold back a trailing partial sequence */
        size_t end = len;
        while (end > s->printed && ((unsigned char)text[end - 1] & 0xC0) == 0x80) end--;
        if (end > s->printed && (unsigned char)text[end - 1] >= 0xC0) end--;
        if (end > s->printed) {
            fwrite(text + s->printed, 1, end - s->printed, stdout);
            fflush(stdout);
            s->printed = end;
        }
    }
    free(text);
}

static int score(const gt_gemma *m, const gt_tokenizer *tok, const int32_t *ids, int64_t n) {
    if (n < 2) return fprintf(stderr, "generate --score: need at least 2 tokens\n"), 1;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b = {.batch = 1, .seq = n - 1, .token_ids = ids};
    gt_real *ce = malloc(sizeof(gt_real) * (size_t)n);
    double ws;
    gt_tensor *h = gt_gemma_hidden(&ctx, m, &b);
    gt_tensor *l = gt_gemma_lm_loss(&ctx, m, h, ids + 1, NULL, 64, &ws, ce);
    if (!l) {
        fprintf(stderr, "generate --score: %s\n", ctx.err);
        free(ce);
        gt_ctx_free(&ctx);
        return 1;
    }
    printf("{\"tokens\":[");
    for (int64_t i = 1; i < n; i++) printf(i > 1 ? ",%d" : "%d", ids[i]);
    printf("],\"loss\":[");
    for (int64_t i = 0; i < n - 1; i++) printf(i ? ",%.6f" : "%.6f", ce[i]);
    printf("],\"mean_loss\":%.6f}\n", l->data[0] / ws);
    (void)tok;
    free(ce);
    gt_ctx_free(&ctx);
    return 0;
}

/* Merged rather than attached (m->lora): the loaded base is fp32, so W + scale A B costs one fp32
 * rounding per weight (the same arithmetic as export --merge-lora, hence its numbers exactly),
 * and each decoded token then pays nothing for the adapters. Errors name the file. */
static int apply_lora(gt_gemma *m, const char *path, double alpha, char *err, size_t errn) {
    gt_lora *l;
    if (gt_keras_lora_open(path, &m->cfg, &l, err, errn)) return -1;
    if (alpha > 0) l->alpha = alpha;
    char e[512];
    int rc = gt_gemma_merge_lora(m, l, e, sizeof e);
    if (rc) snprintf(err, errn, "%s: %s", path, e);
    gt_lora_free(l);
    return rc;
}

int cli_generate(int argc, char **argv) {
    const char *model_path = NULL, *lora_path = NULL, *prompt = NULL, *sampler = "greedy", *stops = NULL;
    int64_t max_new = 64, max_length = 0;
    double lora_alpha = 0; /* 0: the file's rank */
    bool strip = false, chat = false, bos = true, do_score = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--model") && has_val) model_path = argv[++i];
        else if (!strcmp(a, "--lora") && has_val) lora_path = argv[++i];
        else if (!strcmp(a, "--lora-alpha") && has_val) {
            char *end;
            lora_alpha = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !isfinite(lora_alpha) || lora_alpha <= 0)
                return fprintf(stderr, "generate: --lora-alpha: expected a positive number, got '%s'\n", argv[i]), 2;
        } else if (!strcmp(a, "--max-new-tokens") && has_val) max_new = atoll(argv[++i]);
        else if (!strcmp(a, "--max-length") && has_val) max_length = atoll(argv[++i]);
        else if (!strcmp(a, "--sampler") && has_val) sampler = argv[++i];
        else if (!strcmp(a, "--stop") && has_val) stops = argv[++i];
        else if (!strcmp(a, "--strip-prompt")) strip = true;
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "--no-bos")) bos = false;
        else if (!strcmp(a, "--score")) do_score = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        else if (a[0] == '-' && a[1]) return fprintf(stderr, "generate: unknown option '%s'\n", a), usage(stderr), 2;
        else if (!prompt) prompt = a;
        else return fprintf(stderr, "generate: more than one PROMPT given\n"), 2;
    }
    if (!model_path || !prompt) return usage(stderr), 2;
    if (max_new < 1) return fprintf(stderr, "generate: --max-new-tokens must be >= 1\n"), 2;
    if (lora_alpha > 0 && !lora_path) return fprintf(stderr, "generate: --lora-alpha needs --lora\n"), 2;
    char err[1024];
    gt_sampler smp;
    if (gt_sampler_parse(sampler, &smp, err, sizeof err)) return fprintf(stderr, "generate: %s\n", err), 2;
    gt_gemma *m;
    gt_tokenizer *tok;
    if (gt_load_model(model_path, false, &m, &tok, err, sizeof err))
        return fprintf(stderr, "generate: %s\n", err), 1;
    if (lora_path && apply_lora(m, lora_path, lora_alpha, err, sizeof err)) {
        fprintf(stderr, "generate: %s\n", err);
        gt_tok_free(tok);
        gt_gemma_free(m);
        return 1;
    }
    gt_ids ids = {0};
    int rc = 1;
    if (bos) gt_ids_push(&ids, gt_tok_bos(tok));
    /* chat turn markers are inserted as ids, never matched from the user's text */
    int32_t sot = gt_tok_piece_id(tok, "<start_of_turn>"), eot = gt_tok_piece_id(tok, "<end_of_turn>");
    if (chat && (sot < 0 || eot < 0)) {
        fprintf(stderr, "generate: --chat needs <start_of_turn>/<end_of_turn> in the vocabulary\n");
        goto done;
    }
    if (chat) {
        gt_ids_push(&ids, sot);
        if (gt_tok_encode(tok, "user\n", 5, false, &ids, err, sizeof err)) goto tokfail;
    }
    if (gt_tok_encode(tok, prompt, strlen(prompt), false, &ids, err, sizeof err)) goto tokfail;
    if (chat) {
        gt_ids_push(&ids, eot);
        if (gt_tok_encode(tok, "\n", 1, false, &ids, err, sizeof err)) goto tokfail;
        gt_ids_push(&ids, sot);
        if (gt_tok_encode(tok, "model\n", 6, false, &ids, err, sizeof err)) goto tokfail;
    }
    if (do_score) {
        rc = score(m, tok, ids.ids, (int64_t)ids.n);
        goto done;
    }
    int32_t stop_ids[64];
    int n_stop = 0;
    if (stops) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", stops);
        for (char *t = strtok(buf, ","); t && n_stop < 64; t = strtok(NULL, ",")) stop_ids[n_stop++] = atoi(t);
    } else { /* Gemma3CausalLM.generate's "auto": <eos> and <end_of_turn>; Gemma 4's: <eos>, <turn|> */
        stop_ids[n_stop++] = gt_tok_eos(tok);
        if (eot >= 0) stop_ids[n_stop++] = eot;
        int32_t turn_end = gt_tok_piece_id(tok, "<turn|>");
        if (turn_end >= 0) stop_ids[n_stop++] = turn_end;
    }
    gt_generate_opts o = {.max_length = max_length ? max_length : (int64_t)ids.n + max_new,
                          .stop_ids = stop_ids, .n_stop = n_stop, .sampler = smp};
    if (o.max_length > m->cfg.max_seq_len) o.max_length = m->cfg.max_seq_len;
    if (!strip) { /* the prompt as KerasHub prints it: special tokens removed */
        char *text = NULL;
        size_t len;
        if (gt_tok_decode(tok, ids.ids, ids.n, true, &text, &len, err, sizeof err) == 0) fwrite(text, 1, len, stdout);
        free(text);
    }
    int64_t cap = o.max_length, n_out = 0;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)cap);
    stream st = {tok, malloc(sizeof(int32_t) * (size_t)cap), 0, (size_t)cap, 0};
    bool stopped;
    if (!out || !st.ids) {
        fprintf(stderr, "generate: out of memory\n");
    } else if (gt_generate(m, ids.ids, (int64_t)ids.n, &o, out, cap, &n_out, &stopped, on_token, &st,
                           err, sizeof err)) {
        fprintf(stderr, "\ngenerate: %s\n", err);
    } else {
        printf("\n");
        rc = 0;
    }
    free(out);
    free(st.ids);
    goto done;
tokfail:
    fprintf(stderr, "generate: %s\n", err);
done:
    gt_ids_free(&ids);
    gt_tok_free(tok);
    gt_gemma_free(m);
    return rc;
}
