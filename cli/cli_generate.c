/* gemmatrain generate: KV-cached generation (and scoring) with KerasHub's generate() semantics. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/preprocess.h"
#include "cli/gen_media4.h"
#include "models/generate.h"
#include "models/io/gguf.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "models/io/peft.h"
#include "models/io/vision_hf.h"
#include "models/io/vision_keras.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "train/loader.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gemmatrain generate --model PATH [--lora ADAPTER] [options] PROMPT\n"
            "  --model PATH          a GGUF file (or its chunk files, comma-separated), a KerasHub\n"
            "                        preset directory or a Hugging Face directory\n"
            "  --lora PATH           LoRA adapters to apply: a Keras .lora.h5 (what train writes to\n"
            "                        output_dir/adapter.lora.h5) or a PEFT directory (adapter_config.json;\n"
            "                        export --format peft); rank and targets from the file, merged\n"
            "                        into the kernels at load: same numbers as an export --merge-lora\n"
            "  --lora-alpha A        scale the adapters by A / rank, as Keras' enable_lora(rank,\n"
            "                        lora_alpha=A) would (default: rank, scale 1: the file's B already\n"
            "                        carries the training's alpha / rank)\n"
            "  --max-new-tokens N    tokens to generate at most (default 64)\n"
            "  --max-length N        prompt + generated tokens at most (KerasHub max_length)\n"
            "  --sampler SPEC        greedy (default) | random | top_k | top_p | beam | contrastive, with\n"
            "                        options, e.g. top_k:k=5,temperature=0.8,seed=2, top_p:p=0.9,\n"
            "                        beam:num_beams=4 (KerasHub's BeamSampler; the best beam is printed) or\n"
            "                        contrastive:k=5,alpha=0.6 (KerasHub's ContrastiveSampler: of the k\n"
            "                        likeliest tokens, the best in (1-alpha) p - alpha max-similarity)\n"
            "  --stop IDS            comma-separated stop token ids (default: <eos>, <end_of_turn>, <turn|>)\n"
            "  --strip-prompt        print only the completion (default prints prompt + completion,\n"
            "                        as KerasHub's generate(strip_prompt=False))\n"
            "  --chat                wrap PROMPT in the chat template (user turn, model turn; Gemma 4: <|turn>)\n"
            "  --no-bos              do not prepend <bos>\n"
            "  --score               instead of generating, print per-token losses of PROMPT as JSON\n"
            "                        (KerasHub's score(scoring_mode=\"loss\"))\n"
            "  --logits              with --score: the logits at every position instead\n"
            "                        (KerasHub's score(scoring_mode=\"logits\")), {\"tokens\", \"logits\"}\n"
            "  --target-ids LIST     with --score: comma-separated token ids, one per position of the\n"
            "                        encoded PROMPT (<bos> included): the loss at position t is against\n"
            "                        LIST[t] (KerasHub's score(target_ids=...)); default: the next token\n"
            "  --image PATH          a JPEG or PNG for the next <start_of_image> of PROMPT (repeat per\n"
            "                        image, at most 8); MODEL must be a Gemma 3 with its vision encoder\n"
            "                        (KerasHub preset or Hugging Face directory). Gemma 4: for the next\n"
            "                        <|image|> of PROMPT (at most 8), the model's vision tower\n"
            "  --audio PATH          Gemma 4 (E2B/E4B): a WAV (or any format libsndfile reads, at the converter's\n"
            "                        rate, 16 kHz) for the next <|audio|> of PROMPT (repeat per clip, at most 8),\n"
            "                        the model's audio tower\n"
            "  --weights W           auto (default) | fp32 | q8_0: how the weights are held. q8_0: as GGUF\n"
            "                        Q8_0 blocks (other types requantised once at load), each decoded token's\n"
            "                        products as int8 dot products (AVX512-VNNI where present); auto: q8_0\n"
            "                        for a Gemma 1-3 GGUF file when generating without --lora, else fp32\n");
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

typedef struct {
    gt_real *soft;
    int32_t *pos;
    int64_t n;
    /* Gemma 4: the media (scoring places them itself), and for generate the rows' open flags
     * and the ids to feed (0 at media slots); NULL otherwise */
    const gt_gemma4_media *md4;
    uint8_t *open;
    int32_t *feed;
} soft_tokens;

/* The final hidden states of b with the prompt's media (Gemma 4's placed by gemma4_mm). */
static gt_tensor *hidden(gt_ctx *ctx, const gt_gemma *m, const gt_gemma_batch *b, const soft_tokens *img) {
    return img->md4 ? gt_gemma4_media_hidden(ctx, m, img->md4, b) : gt_gemma_hidden(ctx, m, b);
}

/* The batch of the first seq tokens of ids with the images' rows at their placeholders and
 * their spans bidirectional (img->n 0: text only); false with the message printed when a
 * placeholder lies past seq. Arrays in ctx. */
static bool score_batch(gt_ctx *ctx, const gt_gemma *m, const int32_t *ids, int64_t seq, const soft_tokens *img,
                        gt_gemma_batch *b) {
    *b = (gt_gemma_batch){.batch = 1, .seq = seq, .token_ids = ids};
    if (!img->n || img->md4) return true;
    if (img->pos[img->n - 1] >= seq) return fprintf(stderr, "generate --score: the prompt ends inside an image\n"), false;
    uint8_t *vm = gt_alloc(ctx, (size_t)seq);
    int32_t *end = gt_alloc(ctx, sizeof(int32_t) * (size_t)seq);
    int64_t shape[2] = {img->n, m->cfg.hidden_dim};
    gt_tensor *soft = gt_empty(ctx, 2, shape);
    if (!vm || !end || !soft) return fprintf(stderr, "generate --score: out of memory\n"), false;
    memset(vm, 0, (size_t)seq);
    for (int64_t k = 0; k < img->n; k++) vm[img->pos[k]] = 1;
    gt_vision_span_ends(vm, 1, seq, end);
    memcpy(soft->data, img->soft, sizeof(gt_real) * (size_t)soft->size);
    b->soft_tokens = soft;
    b->soft_pos = img->pos;
    b->n_soft = img->n;
    b->bidir_end = end;
    return true;
}

/* --score --logits: KerasHub's score(scoring_mode="logits"): the logits at every position of
 * the token ids (after soft-capping), one row per token, %.9g each. */
static int score_logits(const gt_gemma *m, const int32_t *ids, int64_t n, const soft_tokens *img) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b;
    if (!score_batch(&ctx, m, ids, n, img, &b)) return gt_ctx_free(&ctx), 1;
    gt_tensor *z = gt_gemma_logits(&ctx, m, hidden(&ctx, m, &b, img));
    if (!z) {
        fprintf(stderr, "generate --score --logits: %s\n", ctx.err);
        gt_ctx_free(&ctx);
        return 1;
    }
    int64_t V = m->cfg.vocab_size;
    printf("{\"tokens\":[");
    for (int64_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    printf("],\"logits\":[");
    for (int64_t i = 0; i < n; i++) {
        printf(i ? ",[" : "[");
        for (int64_t v = 0; v < V; v++) printf(v ? ",%.9g" : "%.9g", (double)z->data[i * V + v]);
        printf("]");
    }
    printf("]}\n");
    gt_ctx_free(&ctx);
    return 0;
}

/* --target-ids: n ids in [0, V), comma-separated; 0, or 1 with the message printed. */
static int parse_targets(const char *list, int64_t n, int64_t vocab, int32_t *out) {
    int64_t got = 1;
    for (const char *c = list; *c; c++) got += *c == ',';
    if (got != n)
        return fprintf(stderr, "generate: --target-ids: %lld ids for the %lld tokens of the encoded PROMPT (one "
                       "per position, <bos> included)\n", (long long)got, (long long)n), 1;
    const char *p = list;
    char *end;
    for (int64_t i = 0; i < n; i++, p = end + 1) {
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v >= vocab || (*end != ',' && *end != '\0'))
            return fprintf(stderr, "generate: --target-ids: item %lld is not a token id in [0, %lld)\n",
                           (long long)i + 1, (long long)vocab), 1;
        out[i] = (int32_t)v;
    }
    return 0;
}

/* Per-token losses as KerasHub's score(scoring_mode="loss"): against targets when given (one per
 * position), else against the next token (target_ids = roll(ids, -1) without the last position). */
static int score(const gt_gemma *m, const char *targets, const int32_t *ids, int64_t n, const soft_tokens *img) {
    if (n < (targets ? 1 : 2)) return fprintf(stderr, "generate --score: need at least 2 tokens\n"), 1;
    int64_t rows = targets ? n : n - 1;
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
    gt_real *ce = malloc(sizeof(gt_real) * (size_t)n);
    if (!lab || !ce) return free(lab), free(ce), fprintf(stderr, "generate --score: out of memory\n"), 1;
    if (targets ? parse_targets(targets, n, m->cfg.vocab_size, lab) : (memcpy(lab, ids + 1, sizeof(int32_t) * (size_t)rows), 0))
        return free(lab), free(ce), 1;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma_batch b;
    if (!score_batch(&ctx, m, ids, rows, img, &b)) return free(lab), free(ce), gt_ctx_free(&ctx), 1;
    double ws;
    gt_tensor *h = hidden(&ctx, m, &b, img);
    gt_tensor *l = gt_gemma_lm_loss(&ctx, m, h, lab, NULL, 64, &ws, ce);
    int rc = 0;
    if (!l) {
        fprintf(stderr, "generate --score: %s\n", ctx.err);
        rc = 1;
    } else {
        printf("{\"tokens\":[");
        for (int64_t i = 0; i < rows; i++) printf(i ? ",%d" : "%d", lab[i]);
        printf("],\"loss\":[");
        for (int64_t i = 0; i < rows; i++) printf(i ? ",%.6f" : "%.6f", ce[i]);
        printf("],\"mean_loss\":%.6f}\n", l->data[0] / ws);
    }
    free(lab);
    free(ce);
    gt_ctx_free(&ctx);
    return rc;
}

/* Merged rather than attached (m->lora): the loaded base is fp32, so W + scale A B costs one fp32
 * rounding per weight (the same arithmetic as export --merge-lora, hence its numbers exactly),
 * and each decoded token then pays nothing for the adapters. Errors name the file. */
static int apply_lora(gt_gemma *m, gt_vision *v, const char *path, double alpha, char *err, size_t errn) {
    gt_lora *l;
    if (v && m->cfg.generation == 3 && !gt_peft_detect(path) ? gt_keras_lora_open_mm(path, &m->cfg, v, &l, err, errn)
                                                             : gt_adapters_open(path, &m->cfg, &l, err, errn))
        return -1;
    if (alpha > 0 && v && v->n_lora) v->lora_scale *= alpha / (double)l->rank; /* the file's scale is 1 */
    if (alpha > 0) l->alpha = alpha;
    char e[512];
    int rc = gt_gemma_merge_lora(m, l, e, sizeof e);
    if (rc) snprintf(err, errn, "%s: %s", path, e);
    gt_lora_free(l);
    return rc;
}

typedef struct gen_args {
    const char *model_path, *lora_path, *prompt, *sampler, *stops, *targets, *weights;
    const char *images[8], *audio[8];
    int n_images, n_audio;
    int64_t image_tokens; /* per image, from the encoder; 0: text only */
    int64_t max_new, max_length;
    double lora_alpha; /* 0: the file's rank */
    bool strip, chat, bos, do_score, logits;
} gen_args;

/* Gemma 3's --image: one <start_of_image> per image. 0, or 2 with the message printed. */
static int check_markers(const gen_args *a) {
    int marks = gt_pp_count_image_markers(a->prompt);
    if (a->n_images && marks != a->n_images)
        return fprintf(stderr, "generate: --image: PROMPT has %d <start_of_image> marker%s for %d image%s (a Gemma 4 "
                       "prompt has one <|image|> per image)\n", marks, marks == 1 ? "" : "s", a->n_images,
                       a->n_images == 1 ? "" : "s"), 2;
    return 0;
}

/* 0: run with *a; else the exit status (2 for a usage error, its message printed) plus one. */
static int parse_args(int argc, char **argv, gen_args *a) {
    enum { O_MODEL = 256, O_LORA, O_ALPHA, O_MAX_NEW, O_MAX_LEN, O_SAMPLER, O_STOP, O_STRIP, O_CHAT, O_NO_BOS, O_SCORE,
           O_LOGITS, O_IMAGE, O_TARGETS, O_WEIGHTS, O_AUDIO };
    static const struct option opts[] = {
        {"model", required_argument, NULL, O_MODEL},
        {"lora", required_argument, NULL, O_LORA},
        {"lora-alpha", required_argument, NULL, O_ALPHA},
        {"max-new-tokens", required_argument, NULL, O_MAX_NEW},
        {"max-length", required_argument, NULL, O_MAX_LEN},
        {"sampler", required_argument, NULL, O_SAMPLER},
        {"stop", required_argument, NULL, O_STOP},
        {"strip-prompt", no_argument, NULL, O_STRIP},
        {"chat", no_argument, NULL, O_CHAT},
        {"no-bos", no_argument, NULL, O_NO_BOS},
        {"score", no_argument, NULL, O_SCORE},
        {"logits", no_argument, NULL, O_LOGITS},
        {"image", required_argument, NULL, O_IMAGE},
        {"audio", required_argument, NULL, O_AUDIO},
        {"target-ids", required_argument, NULL, O_TARGETS},
        {"weights", required_argument, NULL, O_WEIGHTS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (gen_args){.sampler = "greedy", .max_new = 64, .bos = true, .weights = "auto"};
    char nb[8], *end;
    cli_getopt_reset();
    int o;
    while ((o = cli_getopt(argc, argv, "-:h", opts)) != -1) {
        switch (o) {
        case O_MODEL: a->model_path = optarg; break;
        case O_LORA: a->lora_path = optarg; break;
        case O_ALPHA:
            a->lora_alpha = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(a->lora_alpha) || a->lora_alpha <= 0)
                return fprintf(stderr, "generate: --lora-alpha: expected a positive number, got '%s'\n", optarg), 3;
            break;
        case O_MAX_NEW: a->max_new = atoll(optarg); break;
        case O_MAX_LEN: a->max_length = atoll(optarg); break;
        case O_SAMPLER: a->sampler = optarg; break;
        case O_STOP: a->stops = optarg; break;
        case O_STRIP: a->strip = true; break;
        case O_CHAT: a->chat = true; break;
        case O_NO_BOS: a->bos = false; break;
        case O_SCORE: a->do_score = true; break;
        case O_LOGITS: a->logits = true; break;
        case O_TARGETS: a->targets = optarg; break;
        case O_WEIGHTS: a->weights = optarg; break;
        case O_IMAGE:
            if (a->n_images == 8) return fprintf(stderr, "generate: --image: at most 8 images\n"), 3;
            a->images[a->n_images++] = optarg;
            break;
        case O_AUDIO:
            if (a->n_audio == 8) return fprintf(stderr, "generate: --audio: at most 8 clips\n"), 3;
            a->audio[a->n_audio++] = optarg;
            break;
        case 'h': return usage(stdout), 1;
        case 1: /* "-": arguments come back in order, the prompt among them */
            if (a->prompt) return fprintf(stderr, "generate: more than one PROMPT given\n"), 3;
            a->prompt = optarg;
            break;
        case ':':
            fprintf(stderr, "generate: option '%s' needs a value\n", cli_rejected(argv, nb, sizeof nb));
            return usage(stderr), 3;
        default:
            fprintf(stderr, "generate: unknown option '%s'\n", cli_rejected(argv, nb, sizeof nb));
            return usage(stderr), 3;
        }
    }
    for (; optind < argc; optind++) { /* after "--": prompt text, even if it starts with '-' */
        if (a->prompt) return fprintf(stderr, "generate: more than one PROMPT given\n"), 3;
        a->prompt = argv[optind];
    }
    if (!a->model_path || !a->prompt) return usage(stderr), 3;
    if (a->max_new < 1) return fprintf(stderr, "generate: --max-new-tokens must be >= 1\n"), 3;
    if (strcmp(a->weights, "auto") && strcmp(a->weights, "fp32") && strcmp(a->weights, "q8_0"))
        return fprintf(stderr, "generate: --weights: expected auto, fp32 or q8_0, got '%s'\n", a->weights), 3;
    if (a->lora_alpha > 0 && !a->lora_path) return fprintf(stderr, "generate: --lora-alpha needs --lora\n"), 3;
    if (a->logits && !a->do_score) return fprintf(stderr, "generate: --logits needs --score\n"), 3;
    if (a->targets && (!a->do_score || a->logits))
        return fprintf(stderr, "generate: --target-ids needs --score (and gives losses, not --logits)\n"), 3;
    /* a prompt without Gemma 4's marker is checked before loading (Gemma 3's usage error) */
    if (a->n_images && !strstr(a->prompt, GT_IMAGE4_PLACEHOLDER) && check_markers(a)) return 3;
    return 0;
}

/* The prompt's ids: <bos> unless --no-bos, in the chat template with --chat (turn markers
 * inserted as ids, never matched from the user's text). 0, or 1 with the message printed. */
static int encode_prompt(const gt_tokenizer *tok, const gen_args *a, bool gemma4, const gt_gen4 *md4, gt_ids *ids) {
    char err[1024];
    if (a->bos) gt_ids_push(ids, gt_tok_bos(tok));
    /* Gemma 4's turn markers are <|turn> / <turn|> (data.template gemma4_chat) */
    const char *s = gemma4 ? "<|turn>" : "<start_of_turn>", *e = gemma4 ? "<turn|>" : "<end_of_turn>";
    int32_t sot = gt_tok_piece_id(tok, s), eot = gt_tok_piece_id(tok, e);
    if (a->chat && (sot < 0 || eot < 0))
        return fprintf(stderr, "generate: --chat needs %s/%s in the vocabulary\n", s, e), 1;
    if (a->chat) {
        gt_ids_push(ids, sot);
        if (gt_tok_encode(tok, "user\n", 5, false, ids, err, sizeof err)) goto fail;
    }
    if (md4 ? gt_gen4_encode(md4, tok, a->prompt, ids, err, sizeof err)
        : a->image_tokens ? gt_pp_encode_prompt(tok, a->prompt, a->image_tokens, ids, err, sizeof err)
                          : gt_tok_encode(tok, a->prompt, strlen(a->prompt), false, ids, err, sizeof err))
        goto fail;
    if (a->chat) {
        gt_ids_push(ids, eot);
        if (gt_tok_encode(tok, "\n", 1, false, ids, err, sizeof err)) goto fail;
        gt_ids_push(ids, sot);
        if (gt_tok_encode(tok, "model\n", 6, false, ids, err, sizeof err)) goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "generate: %s\n", err);
    return 1;
}

/* --stop's ids, else Gemma3CausalLM.generate's "auto": <eos> and <end_of_turn>; Gemma 4's:
 * <eos>, <turn|>. Returns how many (at most 64). */
static int stop_ids(const gt_tokenizer *tok, const char *stops, int32_t out[64]) {
    int n = 0;
    if (stops) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", stops);
        for (char *t = strtok(buf, ","); t && n < 64; t = strtok(NULL, ",")) out[n++] = atoi(t);
        return n;
    }
    out[n++] = gt_tok_eos(tok);
    int32_t eot = gt_tok_piece_id(tok, "<end_of_turn>"), turn_end = gt_tok_piece_id(tok, "<turn|>");
    if (eot >= 0) out[n++] = eot;
    if (turn_end >= 0) out[n++] = turn_end;
    return n;
}

/* Generates from the prompt's ids, streaming the completion to stdout. The exit status. */
/* The encoder's output for a->images (in order) and the prompt's placeholder positions. The
 * exit status (0 or 1, the message printed). */
static int encode_images(const gt_vision *v, const gt_tokenizer *tok, const gen_args *a, const gt_ids *ids,
                         soft_tokens *st) {
    char err[1024];
    int64_t S = v->cfg.image_size, per = S * S * 3, D = v->cfg.output_dim;
    float *px = malloc(sizeof(float) * (size_t)(per * a->n_images));
    uint8_t *vm = malloc(ids->n ? ids->n : 1);
    gt_image_cfg ic = gt_image_cfg_gemma3((int)S);
    int rc = !px || !vm ? (fprintf(stderr, "generate: out of memory\n"), 1) : 0;
    for (int i = 0; !rc && i < a->n_images; i++) {
        gt_image im;
        rc = gt_image_load(a->images[i], &im, err, sizeof err) || gt_image_preprocess(&im, &ic, px + i * per, err, sizeof err);
        if (rc) fprintf(stderr, "generate: --image: %s\n", err);
        gt_image_free(&im);
    }
    st->n = rc ? 0 : gt_pp_vision_mask(tok, ids->ids, (int64_t)ids->n, vm);
    if (!rc && st->n != a->n_images * a->image_tokens)
        rc = (fprintf(stderr, "generate: --image: %lld image tokens in the prompt, expected %lld\n",
                      (long long)st->n, (long long)(a->n_images * a->image_tokens)), 1);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *y = rc ? NULL : gt_vision_encode(&ctx, v, px, a->n_images);
    if (!rc && !y) rc = (fprintf(stderr, "generate: --image: %s\n", ctx.err), 1);
    st->soft = rc ? NULL : malloc(sizeof(gt_real) * (size_t)(st->n * D));
    st->pos = rc ? NULL : malloc(sizeof(int32_t) * (size_t)st->n);
    if (!rc && (!st->soft || !st->pos)) rc = (fprintf(stderr, "generate: out of memory\n"), 1);
    if (!rc) {
        memcpy(st->soft, y->data, sizeof(gt_real) * (size_t)(st->n * D));
        for (int64_t t = 0, k = 0; t < (int64_t)ids->n; t++)
            if (vm[t]) st->pos[k++] = (int32_t)t;
    }
    gt_ctx_free(&ctx);
    free(px);
    free(vm);
    return rc;
}

/* Gemma 4: the encoders' rows for the cached prefill (gt_gemma4_media_rows) into st. The exit
 * status (0 or 1, the message printed). */
static int media4_rows(const gt_gemma *m, const gt_gemma4_media *md, const gt_ids *ids, soft_tokens *st) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    gt_gemma4_rows r;
    int64_t n = (int64_t)ids->n, D = m->cfg.hidden_dim;
    int rc = gt_gemma4_media_rows(&ctx, m, md, ids->ids, n, &r) ? (fprintf(stderr, "generate: %s\n", ctx.err), 1) : 0;
    if (!rc) {
        st->soft = malloc(sizeof(gt_real) * (size_t)(r.n * D + 1));
        st->pos = malloc(sizeof(int32_t) * (size_t)(r.n + 1));
        st->open = malloc((size_t)r.n + 1);
        st->feed = malloc(sizeof(int32_t) * (size_t)n);
        if (!st->soft || !st->pos || !st->open || !st->feed) rc = (fprintf(stderr, "generate: out of memory\n"), 1);
    }
    if (!rc) {
        memcpy(st->soft, r.rows, sizeof(gt_real) * (size_t)(r.n * D));
        memcpy(st->pos, r.pos, sizeof(int32_t) * (size_t)r.n);
        memcpy(st->open, r.open, (size_t)r.n);
        memcpy(st->feed, r.ids, sizeof(int32_t) * (size_t)n);
        st->n = r.n;
    }
    gt_ctx_free(&ctx);
    return rc;
}

static int generate(const gt_gemma *m, const gt_tokenizer *tok, const gen_args *a, const gt_sampler *smp,
                    const gt_ids *ids, const soft_tokens *img) {
    char err[1024];
    int32_t stops[64];
    int n_stop = stop_ids(tok, a->stops, stops);
    gt_generate_opts o = {.max_length = a->max_length ? a->max_length : (int64_t)ids->n + a->max_new,
                          .stop_ids = stops, .n_stop = n_stop, .sampler = *smp,
                          .soft_tokens = img->soft, .soft_pos = img->pos, .n_soft = img->n,
                          .soft_open = img->open};
    if (o.max_length > m->cfg.max_seq_len) o.max_length = m->cfg.max_seq_len;
    if (!a->strip) { /* the prompt as KerasHub prints it: special tokens removed */
        char *text = NULL;
        size_t len;
        if (gt_tok_decode(tok, ids->ids, ids->n, true, &text, &len, err, sizeof err) == 0) fwrite(text, 1, len, stdout);
        free(text);
    }
    int64_t cap = o.max_length, n_out = 0;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)cap);
    stream st = {tok, malloc(sizeof(int32_t) * (size_t)cap), 0, (size_t)cap, 0};
    bool stopped;
    int rc = 1;
    if (!out || !st.ids) {
        fprintf(stderr, "generate: out of memory\n");
    } else if (gt_generate(m, img->feed ? img->feed : ids->ids, (int64_t)ids->n, &o, out, cap, &n_out, &stopped, on_token, &st, err,
                           sizeof err)) {
        fprintf(stderr, "\ngenerate: %s\n", err);
    } else {
        printf("\n");
        rc = 0;
    }
    free(out);
    free(st.ids);
    return rc;
}

/* The vision encoder of the model at path (a KerasHub preset or an HF directory), for --image.
 * The exit status (0 or 1, the message printed). */
static int load_vision(const char *path, gt_vision **v, bool needed) {
    char err[1024], cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    FILE *f = fopen(cfg, "r");
    if (f) fclose(f);
    int rc = !f ? 0 : gt_keras_preset_detect(path) ? gt_vision_keras_load(path, false, v, err, sizeof err)
                                                  : gt_vision_hf_load(path, false, v, err, sizeof err);
    if (rc) return fprintf(stderr, "generate: %s\n", err), 1;
    if (!*v && needed)
        return fprintf(stderr, "generate: --image: %s has no vision encoder (a KerasHub preset or Hugging Face "
                       "directory of a Gemma 3 with images)\n", path), 1;
    return 0;
}

/* --weights auto: only a GGUF file of Gemma 1-3 (q8_0 storage refuses Gemma 4), generating
 * without adapters: --score keeps the fp32 numbers, adapters merge into fp32 kernels. */
static bool auto_q8(const gen_args *a) {
    if (a->do_score || a->lora_path || gt_gguf_sniff(a->model_path) != 1) return false;
    gt_gguf *g;
    char e[512];
    const char *arch = NULL;
    uint64_t n = 0;
    if (gt_gguf_open(a->model_path, &g, e, sizeof e)) return false; /* the fp32 load names the problem */
    bool q8 = !gt_gguf_get_str(g, "general.architecture", &arch, &n, e, sizeof e) && !(n == 6 && !strncmp(arch, "gemma4", 6));
    gt_gguf_close(g);
    return q8;
}

/* The model as --weights says; with --lora, q8_0 comes after the merge (cli_generate). */
static int load(const gen_args *a, gt_gemma **m, gt_tokenizer **tok, char *err, size_t errn) {
    bool q8 = !strcmp(a->weights, "q8_0") ? !a->lora_path : !strcmp(a->weights, "auto") && auto_q8(a);
    int rc = q8 ? gt_load_model_frozen(a->model_path, GT_FROZEN_Q8_0, m, tok, err, errn)
                : gt_load_model(a->model_path, false, m, tok, err, errn);
    if (!rc) (*m)->int8_matvec = q8;
    return rc;
}

/* Everything the prompt needs once the model is loaded: Gemma 3's vision encoder (for --image,
 * and for --lora: a multimodal .lora.h5 numbers its layers past the encoder's), the adapters,
 * Gemma 4's towers and media (x4). The exit status (0, 1 or 2 for a usage error, printed). */
static int prepare(gen_args *a, gt_gemma *m, const gt_tokenizer *tok, gt_vision **v, gt_gen4 *x4) {
    char err[1024];
    bool g4 = m->cfg.generation == 4;
    if (!g4 && a->n_audio)
        return fprintf(stderr, "generate: --audio needs a Gemma 4 model with an audio encoder (E2B/E4B)\n"), 2;
    if (!g4 && check_markers(a)) return 2;
    if (((!g4 && a->n_images) || a->lora_path) && load_vision(a->model_path, v, !g4 && a->n_images > 0)) return 1;
    a->image_tokens = *v ? gt_vision_tokens_per_image(&(*v)->cfg) : 0;
    if (a->lora_path && apply_lora(m, *v, a->lora_path, a->lora_alpha, err, sizeof err))
        return fprintf(stderr, "generate: %s\n", err), 1;
    if (a->lora_path && !strcmp(a->weights, "q8_0") &&
        (m->int8_matvec = true, gt_gemma_set_frozen_dtype(m, GT_FROZEN_Q8_0, err, sizeof err)))
        return fprintf(stderr, "generate: --weights q8_0: %s\n", err), 1;
    if (g4 && (a->n_images || a->n_audio) &&
        gt_gen4_load(x4, a->model_path, tok, a->images, a->n_images, a->audio, a->n_audio, err, sizeof err))
        return fprintf(stderr, "generate: %s\n", err), 1;
    return 0;
}

int cli_generate(int argc, char **argv) {
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc - 1;
    char err[1024];
    gt_sampler smp;
    if (gt_sampler_parse(a.sampler, &smp, err, sizeof err)) return fprintf(stderr, "generate: %s\n", err), 2;
    gt_gemma *m;
    gt_tokenizer *tok;
    if (load(&a, &m, &tok, err, sizeof err)) return fprintf(stderr, "generate: %s\n", err), 1;
    gt_vision *v = NULL;
    gt_gen4 x4 = {0};
    gt_ids ids = {0};
    soft_tokens img = {0};
    rc = prepare(&a, m, tok, &v, &x4);
    bool media4 = x4.md.images || x4.md.clips;
    if (media4) img.md4 = &x4.md;
    if (!rc && (encode_prompt(tok, &a, m->cfg.generation == 4, media4 ? &x4 : NULL, &ids) ||
                (v && encode_images(v, tok, &a, &ids, &img)) ||
                (media4 && !a.do_score && media4_rows(m, &x4.md, &ids, &img))))
        rc = 1;
    if (!rc)
        rc = a.do_score && a.logits ? score_logits(m, ids.ids, (int64_t)ids.n, &img)
             : a.do_score           ? score(m, a.targets, ids.ids, (int64_t)ids.n, &img)
                                    : generate(m, tok, &a, &smp, &ids, &img);
    free(img.soft), free(img.pos), free(img.open), free(img.feed);
    gt_gen4_free(&x4);
    gt_ids_free(&ids);
    gt_tok_free(tok);
    gt_gemma_free(m);
    gt_vision_free(v);
    return rc;
}
