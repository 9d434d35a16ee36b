#include "data/preprocess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Round-robin shares of a budget (MultiSegmentPacker): the prompt takes the first and every
 * other token until one side runs out. */
static void round_robin(int64_t np, int64_t nr, int64_t budget, int64_t *tp, int64_t *tr) {
    *tp = np;
    *tr = nr;
    if (np + nr <= budget) return;
    int64_t half = (budget + 1) / 2;
    *tp = np < half ? np : (budget - nr > half ? budget - nr : half);
    if (*tp > np) *tp = np;
    *tr = budget - *tp < nr ? budget - *tp : nr;
}

int64_t gt_pp_pack_pair(const int32_t *p, int64_t np, const int32_t *r, int64_t nr, int32_t bos,
                        int32_t eos, int32_t pad, const gt_pp_cfg *cfg, int32_t *seq, uint8_t *resp) {
    int64_t L = cfg->seq_len + 1;
    int64_t budget = L - (cfg->add_bos ? 1 : 0) - (cfg->add_eos ? 1 : 0);
    if (budget < 0) budget = 0;
    int64_t tp, tr;
    round_robin(np, nr, budget, &tp, &tr);
    int64_t k = 0;
    if (cfg->add_bos) seq[k] = bos, resp[k++] = 0;
    for (int64_t i = 0; i < tp; i++) seq[k] = p[i], resp[k++] = 0;
    for (int64_t i = 0; i < tr; i++) seq[k] = r[i], resp[k++] = 1;
    if (cfg->add_eos) seq[k] = eos, resp[k++] = 1;
    int64_t used = k;
    for (; k < L; k++) seq[k] = pad, resp[k] = 0;
    return used;
}

/* seq (S+1) + per-token response flags -> a training row */
void gt_pp_to_row(const gt_pp_cfg *cfg, int32_t pad, const int32_t *seq, const uint8_t *resp,
                   int32_t *ids, int32_t *labels, uint8_t *mask, gt_real *weights) {
    for (int64_t t = 0; t < cfg->seq_len; t++) {
        ids[t] = seq[t];
        labels[t] = seq[t + 1];
        mask[t] = seq[t] != pad;
        weights[t] = resp[t + 1] ? 1 : 0;
    }
}

typedef struct {
    gt_ids ids;
    uint8_t *resp;
    size_t cap;
    int audio_next; /* Gemma 4: the next clip's index (gt_pp_cfg.audio_tokens) */
} flagged;

static int push(flagged *f, int32_t id, uint8_t r) {
    if (gt_ids_push(&f->ids, id)) return -1;
    if (f->ids.n > f->cap) {
        size_t c = f->cap ? 2 * f->cap : 256;
        uint8_t *n = realloc(f->resp, c);
        if (!n) return -1;
        f->resp = n;
        f->cap = c;
    }
    f->resp[f->ids.n - 1] = r;
    return 0;
}

/* Remove entries [from, to). */
static void cut(flagged *f, size_t from, size_t to) {
    memmove(f->ids.ids + from, f->ids.ids + to, sizeof(int32_t) * (f->ids.n - to));
    memmove(f->resp + from, f->resp + to, f->ids.n - to);
    f->ids.n -= to - from;
}

static int push_text(flagged *f, const gt_tokenizer *tok, const char *s, uint8_t r, char *err, size_t errn) {
    size_t from = f->ids.n;
    if (gt_tok_encode(tok, s, strlen(s), false, &f->ids, err, errn)) return -1;
    size_t to = f->ids.n;
    f->ids.n = from; /* re-push through push() to grow the flags alongside */
    for (size_t i = from; i < to; i++)
        if (push(f, f->ids.ids[i], r)) return -1;
    return 0;
}

#define IMAGE_MARK "<start_of_image>"

int gt_pp_count_image_markers(const char *text) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, IMAGE_MARK)); p += sizeof IMAGE_MARK - 1) n++;
    for (const char *p = text; (p = strstr(p, "<|image|>")); p += sizeof "<|image|>" - 1) n++; /* Gemma 4's */
    return n;
}

int64_t gt_pp_vision_mask(const gt_tokenizer *tok, const int32_t *ids, int64_t n, uint8_t *vision) {
    int32_t img = gt_tok_piece_id(tok, "<img>");
    int64_t count = 0;
    for (int64_t t = 0; t < n; t++) count += vision[t] = img >= 0 && ids[t] == img;
    return count;
}

#define IMAGE4_MARK "<|image|>"
#define AUDIO4_MARK "<|audio|>"

/* start, n x slot, end as ids (prompt tokens); -1 naming a piece the vocabulary lacks. */
static int push_span4(flagged *f, const gt_tokenizer *tok, const char *start, const char *slot, const char *end,
                      int64_t n, char *err, size_t errn) {
    int32_t s = gt_tok_piece_id(tok, start), p = gt_tok_piece_id(tok, slot), e = gt_tok_piece_id(tok, end);
    if (s < 0 || p < 0 || e < 0) return snprintf(err, errn, "the vocabulary has no %s, %s or %s", start, slot, end), -1;
    int rc = push(f, s, 0);
    for (int64_t k = 0; k < n && !rc; k++) rc = push(f, p, 0);
    if (rc || push(f, e, 0)) return snprintf(err, errn, "out of memory"), -1;
    return 0;
}

/* Prompt text with Gemma 4's media markers expanded (gt_pp_cfg.image4_tokens, audio_tokens):
 * KerasHub replaces each marker by its span in the string and adds no newlines. */
static int push_prompt4(flagged *f, const gt_tokenizer *tok, const gt_pp_cfg *cfg, const char *s, char *err,
                        size_t errn) {
    for (const char *p = s;;) {
        const char *im = cfg->image4_tokens > 0 ? strstr(p, IMAGE4_MARK) : NULL;
        const char *au = cfg->n_audio > 0 ? strstr(p, AUDIO4_MARK) : NULL;
        const char *at = !im ? au : !au ? im : im < au ? im : au;
        size_t len = at ? (size_t)(at - p) : strlen(p);
        size_t from = f->ids.n;
        if (len && gt_tok_encode(tok, p, len, false, &f->ids, err, errn)) return -1;
        size_t to = f->ids.n;
        f->ids.n = from;
        for (size_t i = from; i < to; i++)
            if (push(f, f->ids.ids[i], 0)) return snprintf(err, errn, "out of memory"), -1;
        if (!at) return 0;
        if (at == au && f->audio_next >= cfg->n_audio)
            return snprintf(err, errn, "more %s markers than audio clips (%d)", AUDIO4_MARK, cfg->n_audio), -1;
        int rc = at == im ? push_span4(f, tok, "<|image>", IMAGE4_MARK, "<image|>", cfg->image4_tokens, err, errn)
                          : push_span4(f, tok, "<|audio>", AUDIO4_MARK, "<audio|>", cfg->audio_tokens[f->audio_next++],
                                       err, errn);
        if (rc) return -1;
        p = at + strlen(at == im ? IMAGE4_MARK : AUDIO4_MARK);
    }
}

/* Prompt text with Gemma 3's image markers expanded (gt_pp_cfg.image_tokens): the text pieces
 * around each marker get its "\n\n" on their side and are encoded as text, exactly as encoding
 * the expanded string does where the markers are atomic pieces (the real vocabulary's are
 * USER_DEFINED, which split the text around them). */
static int push_prompt(flagged *f, const gt_tokenizer *tok, const gt_pp_cfg *cfg, const char *s,
                       char *err, size_t errn) {
    if (cfg->image4_tokens > 0 || cfg->n_audio > 0) return push_prompt4(f, tok, cfg, s, err, errn);
    if (cfg->image_tokens <= 0 || !strstr(s, IMAGE_MARK)) return push_text(f, tok, s, 0, err, errn);
    int32_t soi = gt_tok_piece_id(tok, IMAGE_MARK), img = gt_tok_piece_id(tok, "<img>"),
            eoi = gt_tok_piece_id(tok, "<end_of_image>");
    if (soi < 0 || img < 0 || eoi < 0)
        return snprintf(err, errn, "images: the vocabulary has no <start_of_image>, <img> or "
                        "<end_of_image>"), -1;
    char *buf = malloc(strlen(s) + 5);
    if (!buf) return snprintf(err, errn, "out of memory"), -1;
    int rc = 0;
    for (const char *p = s, *q;; p = q + sizeof IMAGE_MARK - 1) {
        q = strstr(p, IMAGE_MARK);
        size_t len = q ? (size_t)(q - p) : strlen(p);
        snprintf(buf, strlen(s) + 5, "%s%.*s%s", p == s ? "" : "\n\n", (int)len, p, q ? "\n\n" : "");
        if ((rc = push_text(f, tok, buf, 0, err, errn))) break;
        if (!q) break;
        rc = push(f, soi, 0);
        for (int64_t k = 0; k < cfg->image_tokens && !rc; k++) rc = push(f, img, 0);
        if (rc || (rc = push(f, eoi, 0))) {
            snprintf(err, errn, "out of memory");
            break;
        }
    }
    free(buf);
    return rc ? -1 : 0;
}

int gt_pp_encode_prompt(const gt_tokenizer *tok, const char *text, int64_t image_tokens, gt_ids *out,
                        char *err, size_t errn) {
    gt_pp_cfg cfg = {.image_tokens = image_tokens};
    flagged f = {0};
    int rc = push_prompt(&f, tok, &cfg, text, err, errn);
    for (size_t i = 0; !rc && i < f.ids.n; i++)
        if (gt_ids_push(out, f.ids.ids[i])) rc = (snprintf(err, errn, "out of memory"), -1);
    gt_ids_free(&f.ids);
    free(f.resp);
    return rc;
}

/* A chat format: its turn markers (ids) and layout. */
typedef struct {
    int32_t sot, eot;
    bool gemma4; /* Gemma 4: own system turn, turns joined by "\n" (none after the last) */
} chat_fmt;

/* The chat format an example is written in, or none (fmt->sot < 0). */
static int chat_format(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const gt_example *ex, chat_fmt *fmt,
                       char *err, size_t errn) {
    gt_template t = cfg->template_;
    if (t == GT_TEMPLATE_AUTO || (t == GT_TEMPLATE_NONE && ex->kind == GT_DS_CHAT))
        t = cfg->chat_default == GT_TEMPLATE_GEMMA4_CHAT ? GT_TEMPLATE_GEMMA4_CHAT : GT_TEMPLATE_GEMMA_CHAT;
    fmt->sot = fmt->eot = -1;
    fmt->gemma4 = t == GT_TEMPLATE_GEMMA4_CHAT;
    if (t == GT_TEMPLATE_NONE || ex->kind == GT_DS_TEXT) return 0;
    const char *s = fmt->gemma4 ? "<|turn>" : "<start_of_turn>", *e = fmt->gemma4 ? "<turn|>" : "<end_of_turn>";
    fmt->sot = gt_tok_piece_id(tok, s);
    fmt->eot = gt_tok_piece_id(tok, e);
    if (fmt->sot < 0 || fmt->eot < 0)
        return snprintf(err, errn, "chat template %s: the vocabulary has no %s/%s", fmt->gemma4 ? "gemma4_chat" : "gemma_chat",
                        s, e), -1;
    return 0;
}

/* One prompt/response pair in the chat template: a = "<sot>user\n{prompt}<eot>\n<sot>model\n", b =
 * "{response}<eot>" (weighted). When too long the template stays whole and the two texts share
 * what is left, round-robin. */
static int chat_pair(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const chat_fmt *fmt, const gt_example *ex,
                     flagged *a, flagged *b, char *err, size_t errn) {
    size_t p0, p1;
    if (push(a, fmt->sot, 0) || push_text(a, tok, "user\n", 0, err, errn)) return -1;
    p0 = a->ids.n;
    if (push_prompt(a, tok, cfg, ex->prompt, err, errn)) return -1;
    p1 = a->ids.n;
    if (push(a, fmt->eot, 0) || push_text(a, tok, "\n", 0, err, errn) || push(a, fmt->sot, 0) ||
        push_text(a, tok, "model\n", 0, err, errn))
        return -1;
    /* the reply and its end-of-turn marker are learned */
    if (push_text(b, tok, ex->response, 1, err, errn) || push(b, fmt->eot, 1)) return -1;
    int64_t budget = cfg->seq_len + 1 - (cfg->add_bos ? 1 : 0) - (cfg->add_eos ? 1 : 0);
    int64_t np = (int64_t)(p1 - p0), nr = (int64_t)b->ids.n - 1;
    int64_t frame = (int64_t)a->ids.n - np + 1;
    if ((int64_t)(a->ids.n + b->ids.n) > budget && frame < budget) {
        int64_t tp, tr;
        round_robin(np, nr, budget - frame, &tp, &tr);
        cut(a, p0 + (size_t)tp, p1);
        cut(b, (size_t)tr, (size_t)nr);
    }
    return 0;
}

/* Chat messages as one flagged stream: each model turn's reply and its end marker are weighted,
 * everything else is prompt. Gemma 1-3: the system text opens the first user turn (+ "\n\n"),
 * every turn ends with "\n". Gemma 4: system is a turn of its own, turns are joined by "\n". */
static int chat_messages(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const chat_fmt *fmt, const gt_example *ex,
                         flagged *a, char *err, size_t errn) {
    if (cfg->add_bos && push(a, gt_tok_bos(tok), 0)) return -1;
    const char *system = NULL;
    bool first = true;
    for (int i = 0; i < ex->n_turns; i++) {
        const char *role = ex->roles[i];
        bool sys = !strcmp(role, "system"), model = !strcmp(role, "assistant") || !strcmp(role, "model");
        if (sys && !fmt->gemma4) {
            system = ex->contents[i];
            continue;
        }
        if (fmt->gemma4 && !first && push_text(a, tok, "\n", 0, err, errn)) return -1;
        first = false;
        if (push(a, fmt->sot, 0) || push_text(a, tok, sys ? "system\n" : model ? "model\n" : "user\n", 0, err, errn))
            return -1;
        if (!model && system) {
            if (push_text(a, tok, system, 0, err, errn) || push_text(a, tok, "\n\n", 0, err, errn)) return -1;
            system = NULL;
        }
        if ((model ? push_text(a, tok, ex->contents[i], 1, err, errn) : push_prompt(a, tok, cfg, ex->contents[i], err, errn)) ||
            push(a, fmt->eot, model))
            return -1;
        if (!fmt->gemma4 && push_text(a, tok, "\n", 0, err, errn)) return -1;
    }
    if (cfg->add_eos && push(a, gt_tok_eos(tok), 1)) return -1;
    return 0;
}

/* The example's S+1 sequence and response flags; *used gets its real (unpadded) length. */
static int build_seq(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const gt_example *ex,
                     int32_t *seq, uint8_t *resp, int64_t *used, char *err, size_t errn) {
    int32_t bos = gt_tok_bos(tok), eos = gt_tok_eos(tok), pad = gt_tok_pad(tok);
    chat_fmt fmt;
    if (chat_format(tok, cfg, ex, &fmt, err, errn)) return -1;
    int64_t L = cfg->seq_len + 1;
    flagged a = {0}, b = {0};
    int rc = -1;
    if (ex->kind == GT_DS_TEXT) {
        if (push_text(&a, tok, ex->text, 1, err, errn)) goto done;
        /* KerasHub's text path weights every real label (sample_weight = padding_mask[1:]):
         * packing the whole text as the "response" gives exactly that */
        *used = gt_pp_pack_pair(NULL, 0, a.ids.ids, (int64_t)a.ids.n, bos, eos, pad, cfg, seq, resp);
    } else if (ex->kind == GT_DS_PROMPT_RESPONSE) {
        if (fmt.sot >= 0) {
            if (chat_pair(tok, cfg, &fmt, ex, &a, &b, err, errn)) goto done;
        } else if (push_prompt(&a, tok, cfg, ex->prompt, err, errn) || push_text(&b, tok, ex->response, 1, err, errn)) {
            goto done;
        }
        *used = gt_pp_pack_pair(a.ids.ids, (int64_t)a.ids.n, b.ids.ids, (int64_t)b.ids.n, bos, eos, pad, cfg, seq, resp);
    } else { /* chat messages: one flagged stream, right-truncated */
        if (chat_messages(tok, cfg, &fmt, ex, &a, err, errn)) goto done;
        for (int64_t k = 0; k < L; k++) {
            bool have = (size_t)k < a.ids.n;
            seq[k] = have ? a.ids.ids[k] : pad;
            resp[k] = have ? a.resp[k] : 0;
        }
        *used = (int64_t)a.ids.n < L ? (int64_t)a.ids.n : L;
    }
    rc = 0;
done:
    gt_ids_free(&a.ids);
    gt_ids_free(&b.ids);
    free(a.resp);
    free(b.resp);
    return rc;
}

int gt_pp_example(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const gt_example *ex,
                  int32_t *ids, int32_t *labels, uint8_t *mask, gt_real *weights, char *err,
                  size_t errn) {
    int64_t L = cfg->seq_len + 1, used;
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)L);
    uint8_t *resp = malloc((size_t)L);
    int rc = -1;
    if (!seq || !resp) snprintf(err, errn, "out of memory");
    else if (build_seq(tok, cfg, ex, seq, resp, &used, err, errn) == 0) {
        gt_pp_to_row(cfg, gt_tok_pad(tok), seq, resp, ids, labels, mask, weights);
        rc = 0;
    }
    free(seq);
    free(resp);
    return rc;
}

void gt_pp_row_clear(const gt_pp_cfg *cfg, int32_t pad, gt_pp_row *row) {
    for (int64_t t = 0; t < cfg->seq_len; t++) {
        row->ids[t] = pad;
        row->labels[t] = pad;
        row->mask[t] = 0;
        row->weights[t] = 0;
        row->positions[t] = 0;
        row->segments[t] = -1;
    }
    row->used = 0;
    row->n_segments = 0;
}

int gt_pp_pack_append(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const gt_example *ex,
                      gt_pp_row *row, char *err, size_t errn) {
    int64_t L = cfg->seq_len + 1, used;
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)L);
    uint8_t *resp = malloc((size_t)L);
    int rc = -1;
    if (!seq || !resp) {
        snprintf(err, errn, "out of memory");
    } else if (build_seq(tok, cfg, ex, seq, resp, &used, err, errn) == 0) {
        /* an example of n tokens fills n - 1 positions: its last token is only a label */
        int64_t need = used - 1;
        if (need < 1) {
            rc = 0; /* nothing to learn from a single token */
        } else if (row->used + need > cfg->seq_len) {
            rc = 1;
        } else {
            for (int64_t i = 0; i < need; i++) {
                int64_t t = row->used + i;
                row->ids[t] = seq[i];
                row->labels[t] = seq[i + 1];
                row->mask[t] = 1;
                row->weights[t] = resp[i + 1] ? 1 : 0;
                row->positions[t] = (int32_t)i;
                row->segments[t] = row->n_segments;
            }
            row->used += need;
            row->n_segments++;
            rc = 0;
        }
    }
    free(seq);
    free(resp);
    return rc;
}
