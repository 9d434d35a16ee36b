#include "models/contrastive.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const gt_gemma *m;
    gt_gemma_cache cache;
    gt_ctx ctx;
    int64_t K, V, D;
    gt_real *H;           /* [max_length, D]: hidden states of the positions so far */
    gt_real *logits;      /* [V]: the logits for the next position */
    int32_t *cand_id;     /* [K] */
    double *cand_p;       /* [K] */
} cs_state;

static void cs_free(cs_state *s) {
    gt_gemma_cache_free(&s->cache);
    gt_ctx_free(&s->ctx);
    free(s->H), free(s->logits), free(s->cand_id), free(s->cand_p);
}

/* The K most probable ids of softmax(logits / temperature) into cand_id / cand_p, best first
 * (ties: lower id, as a stable top-k). */
static void cs_top_k(cs_state *s, double temperature) {
    double mx = -INFINITY, total = 0;
    for (int64_t v = 0; v < s->V; v++) mx = fmax(mx, (double)s->logits[v] / temperature);
    for (int64_t v = 0; v < s->V; v++) total += exp((double)s->logits[v] / temperature - mx);
    int64_t n = 0;
    for (int64_t v = 0; v < s->V; v++) {
        double p = exp((double)s->logits[v] / temperature - mx) / total;
        if (n == s->K && p <= s->cand_p[n - 1]) continue;
        int64_t j = n < s->K ? n++ : n - 1;
        for (; j > 0 && p > s->cand_p[j - 1]; j--) s->cand_p[j] = s->cand_p[j - 1], s->cand_id[j] = s->cand_id[j - 1];
        s->cand_p[j] = p;
        s->cand_id[j] = (int32_t)v;
    }
}

/* The largest cosine similarity of h with the hidden states of positions [0, pos). */
static double cs_max_similarity(const cs_state *s, const gt_real *h, int64_t pos) {
    double hn = 0, best = -INFINITY;
    for (int64_t d = 0; d < s->D; d++) hn += (double)h[d] * h[d];
    for (int64_t p = 0; p < pos; p++) {
        const gt_real *q = s->H + p * s->D;
        double dot = 0, qn = 0;
        for (int64_t d = 0; d < s->D; d++) dot += (double)q[d] * h[d], qn += (double)q[d] * q[d];
        best = fmax(best, dot / (sqrt(qn) * sqrt(hn)));
    }
    return best;
}

/* Feeds ids[0..n) at cache position pos. A candidate (h_out set): its hidden state to h_out, no
 * LM head. Else: the hidden states to H[pos..pos+n) and the last logits to s->logits. */
static int cs_feed(cs_state *s, const int32_t *ids, int64_t n, int64_t pos, gt_real *h_out, char *err, size_t errn) {
    gt_ctx_reset(&s->ctx);
    s->cache.len = pos; /* a candidate's rows at pos are overwritten by the next one fed */
    gt_tensor *h, *z;
    if (gt_gemma_step_hidden(&s->ctx, s->m, &s->cache, ids, n, h_out ? NULL : &z, &h))
        return snprintf(err, errn, "generate: %s", s->ctx.err), -1;
    memcpy(h_out ? h_out : s->H + pos * s->D, h->data, (size_t)(n * s->D) * sizeof *h->data);
    if (!h_out) memcpy(s->logits, z->data, (size_t)s->V * sizeof *z->data);
    return 0;
}

/* One step at position pos: scores the K candidates and leaves the winner fed (its cache rows,
 * hidden state in H[pos], logits for pos + 1). *tok gets its id. */
static int cs_step(cs_state *s, const gt_sampler *smp, int64_t pos, int32_t *tok, char *err, size_t errn) {
    cs_top_k(s, smp->temperature);
    double best = -INFINITY;
    int64_t win = 0;
    gt_real *h = s->H + pos * s->D; /* scratch until the winner is fed again */
    for (int64_t j = 0; j < s->K; j++) {
        if (cs_feed(s, &s->cand_id[j], 1, pos, h, err, errn)) return -1;
        double score = (1 - smp->alpha) * s->cand_p[j] - smp->alpha * cs_max_similarity(s, h, pos);
        if (score > best || j == 0) best = score, win = j;
    }
    *tok = s->cand_id[win];
    /* the winner's own cache rows and logits: fed once more (K + 1 decoder passes and one LM head
     * per token; the candidates need only their hidden states) */
    return cs_feed(s, tok, 1, pos, NULL, err, errn);
}

int gt_generate_contrastive(const gt_gemma *m, const int32_t *prompt, int64_t n_prompt,
                            const gt_generate_opts *o, int32_t *out, int64_t cap, int64_t *n_out,
                            bool *stopped, void (*on_token)(int32_t id, void *user), void *user,
                            char *err, size_t errn) {
    cs_state s = {.m = m, .V = m->cfg.vocab_size, .D = m->cfg.hidden_dim};
    s.K = o->sampler.k < s.V ? o->sampler.k : s.V;
    gt_ctx_init(&s.ctx, 0);
    s.ctx.grad_enabled = false;
    int64_t L = o->max_length;
    s.H = malloc((size_t)(L * s.D) * sizeof *s.H);
    s.logits = malloc((size_t)s.V * sizeof *s.logits);
    s.cand_id = malloc((size_t)s.K * sizeof *s.cand_id);
    s.cand_p = malloc((size_t)s.K * sizeof *s.cand_p);
    int rc = 0;
    if (!s.H || !s.logits || !s.cand_id || !s.cand_p) {
        rc = -1;
        snprintf(err, errn, "generate: contrastive: out of memory");
    } else if (gt_gemma_cache_init(&s.cache, m, L, err, errn) || cs_feed(&s, prompt, n_prompt, 0, NULL, err, errn)) {
        rc = -1;
    }
    for (int64_t pos = n_prompt; !rc && pos < L && *n_out < cap; pos++) {
        int32_t tok;
        if (cs_step(&s, &o->sampler, pos, &tok, err, errn)) {
            rc = -1;
            break;
        }
        out[(*n_out)++] = tok;
        if (on_token) on_token(tok, user);
        for (int i = 0; i < o->n_stop; i++) *stopped = *stopped || o->stop_ids[i] == tok;
        if (*stopped) break;
    }
    cs_free(&s);
    return rc;
}
