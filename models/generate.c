#include "models/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "models/contrastive.h"

void gt_sampler_init(gt_sampler *s, gt_sampler_kind kind) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->k = kind == GT_SAMPLER_TOP_K || kind == GT_SAMPLER_CONTRASTIVE ? 5 : 0;
    s->num_beams = 5;
    s->p = 0.1;
    s->alpha = 0.6;
    s->temperature = 1.0;
}

int gt_sampler_parse(const char *spec, gt_sampler *s, char *err, size_t errn) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *args = strchr(buf, ':');
    if (args) *args++ = 0;
    static const struct { const char *name; gt_sampler_kind kind; } kinds[] = {
        {"greedy", GT_SAMPLER_GREEDY}, {"random", GT_SAMPLER_RANDOM},
        {"top_k", GT_SAMPLER_TOP_K},   {"top_p", GT_SAMPLER_TOP_P}, {"beam", GT_SAMPLER_BEAM},
        {"contrastive", GT_SAMPLER_CONTRASTIVE}};
    int found = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(buf, kinds[i].name)) found = i;
    if (found < 0)
        return snprintf(err, errn, "sampler '%s': unknown (greedy, random, top_k, top_p, beam, contrastive)", buf), -1;
    gt_sampler_init(s, kinds[found].kind);
    for (char *kv = args ? strtok(args, ",") : NULL; kv; kv = strtok(NULL, ",")) {
        char *eq = strchr(kv, '=');
        if (!eq) return snprintf(err, errn, "sampler '%s': expected key=value, got '%s'", spec, kv), -1;
        *eq++ = 0;
        char *end = NULL;
        double v = strtod(eq, &end);
        if (!end || *end || end == eq)
            return snprintf(err, errn, "sampler '%s': %s: '%s' is not a number", spec, kv, eq), -1;
        if (!strcmp(kv, "k") && v >= 1 && v == floor(v)) s->k = (int64_t)v;
        else if (!strcmp(kv, "p") && v > 0 && v <= 1) s->p = v;
        else if (!strcmp(kv, "temperature") && v > 0) s->temperature = v;
        else if (!strcmp(kv, "seed") && v >= 0 && v == floor(v)) s->seed = (uint64_t)v;
        else if (!strcmp(kv, "num_beams") && v >= 1 && v <= 64 && v == floor(v)) s->num_beams = (int64_t)v;
        else if (!strcmp(kv, "alpha") && v >= 0 && v <= 1) s->alpha = v;
        else return snprintf(err, errn, "sampler '%s': bad key or value '%s=%s' (k >= 1, 0 < p <= 1, "
                             "temperature > 0, seed >= 0, 1 <= num_beams <= 64, 0 <= alpha <= 1)", spec, kv,
                             eq), -1;
    }
    s->state = s->seed;
    return 0;
}

typedef struct { double p; int32_t id; } cand;

static int by_prob_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id; /* ties: lower id first, like a stable argsort */
}

int32_t gt_sampler_next(gt_sampler *s, const gt_real *logits, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->kind == GT_SAMPLER_GREEDY) return (int32_t)best;
    double mx = logits[best] / s->temperature, total = 0;
    cand *c = malloc((size_t)V * sizeof *c);
    if (!c) return (int32_t)best;
    for (int64_t i = 0; i < V; i++) {
        c[i].p = exp(logits[i] / s->temperature - mx);
        c[i].id = (int32_t)i;
        total += c[i].p;
    }
    for (int64_t i = 0; i < V; i++) c[i].p /= total;
    int64_t n = V;
    if (s->kind == GT_SAMPLER_TOP_K || (s->kind == GT_SAMPLER_TOP_P)) {
        if (s->k > 0 && s->k < V) {
            /* keep the k best in c[0..k) by insertion: O(V) for small k, no sort of the whole
             * vocabulary (262144 entries) per generated token; same order as the full sort */
            int64_t m = 0;
            for (int64_t i = 0; i < V; i++) {
                cand x = c[i];
                if (m == s->k && by_prob_desc(&x, &c[m - 1]) >= 0) continue;
                int64_t j = m < s->k ? m++ : m - 1;
                while (j > 0 && by_prob_desc(&x, &c[j - 1]) < 0) {
                    c[j] = c[j - 1];
                    j--;
                }
                c[j] = x;
            }
            n = s->k;
        } else if (s->kind == GT_SAMPLER_TOP_P) {
            /* The nucleus lies inside any set {p_i >= t} whose mass exceeds top_p (every token
             * below t sorts after every token in it), so only that set is sorted: t starts at
             * 1e-4 and falls tenfold until the set is heavy enough (t = 0: the whole vocabulary). */
            for (double t = 1e-4;; t = t > 1e-12 ? t / 10 : 0) {
                double in = 0;
                int64_t m = 0;
                for (int64_t i = 0; i < V; i++)
                    if (c[i].p >= t) in += c[i].p, m++;
                if (in > s->p || t == 0) {
                    int64_t w = 0;
                    for (int64_t i = 0; i < V; i++)
                        if (c[i].p >= t) {
                            cand x = c[i];
                            c[i] = c[w];
                            c[w++] = x;
                        }
                    n = m;
                    break;
                }
            }
            qsort(c, (size_t)n, sizeof *c, by_prob_desc);
        } else {
            qsort(c, (size_t)V, sizeof *c, by_prob_desc);
        }
        if (s->kind == GT_SAMPLER_TOP_P) {
            double cum = 0;
            int64_t keep = 0;
            while (keep < n && cum <= s->p) cum += c[keep++].p;
            n = keep;
        }
    }
    double mass = 0;
    for (int64_t i = 0; i < n; i++) mass += c[i].p;
    double u = gt_rng_uniform(&s->state) * mass, acc = 0;
    int32_t pick = c[n - 1].id;
    for (int64_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(c);
    return pick;
}

/* ---------------------------------------------------------------- beam search */

typedef struct {
    double score;
    int64_t beam;
    int32_t id;
} beam_cand;

/* better first: higher score, then lower (beam, id), as top_k over the flattened beams x vocab */
static bool beam_better(const beam_cand *x, const beam_cand *y) {
    if (x->score != y->score) return x->score > y->score;
    return x->beam != y->beam ? x->beam < y->beam : x->id < y->id;
}

/* Adds beam b's continuations (log-softmax of logits / temperature, plus its score) into the
 * kept list best[0..K) (sorted, *n filled). */
static void beam_offer(const gt_real *logits, int64_t V, double temperature, double base, int64_t b,
                       beam_cand *best, int64_t K, int64_t *n) {
    double mx = -INFINITY, total = 0;
    for (int64_t v = 0; v < V; v++) mx = fmax(mx, (double)logits[v] / temperature);
    for (int64_t v = 0; v < V; v++) total += exp((double)logits[v] / temperature - mx);
    double lse = mx + log(total);
    for (int64_t v = 0; v < V; v++) {
        beam_cand c = {base + (double)logits[v] / temperature - lse, b, (int32_t)v};
        if (*n == K && !beam_better(&c, &best[K - 1])) continue;
        int64_t j = *n < K ? (*n)++ : K - 1;
        while (j > 0 && beam_better(&c, &best[j - 1])) {
            best[j] = best[j - 1];
            j--;
        }
        best[j] = c;
    }
}

static bool is_stop(const gt_generate_opts *o, int32_t tok) {
    for (int i = 0; i < o->n_stop; i++)
        if (o->stop_ids[i] == tok) return true;
    return false;
}

typedef struct {
    gt_gemma_cache *cache, *next;  /* K each: the beams' caches, and the gather target */
    int32_t *seq, *seq_next;       /* K x max_length generated tokens */
    double *score;
    bool *done;                    /* the beam holds a stop token */
    beam_cand *best;
    int64_t K;
} beams;

static void beams_free(beams *b) {
    for (int64_t j = 0; b->cache && j < 2 * b->K; j++) gt_gemma_cache_free(&b->cache[j]);
    free(b->cache);
    free(b->seq);
    free(b->score);
    free(b->done);
    free(b->best);
}

static int beams_init(beams *b, const gt_gemma *m, int64_t K, int64_t max_len, char *err, size_t errn) {
    memset(b, 0, sizeof *b);
    b->K = K;
    b->cache = calloc((size_t)(2 * K), sizeof *b->cache);
    b->seq = calloc((size_t)(2 * K * max_len), sizeof *b->seq);
    b->score = calloc((size_t)K, sizeof *b->score);
    b->done = calloc((size_t)(2 * K), sizeof *b->done);
    b->best = calloc((size_t)K, sizeof *b->best);
    if (!b->cache || !b->seq || !b->score || !b->done || !b->best) return snprintf(err, errn, "beam: out of memory"), -1;
    b->next = b->cache + K;
    b->seq_next = b->seq + K * max_len;
    for (int64_t j = 0; j < 2 * K; j++)
        if (gt_gemma_cache_init(&b->cache[j], m, max_len, err, errn)) return -1;
    return 0;
}

/* KerasHub's BeamSampler: scores start [0, -1e9, ...], so the first step expands beam 0 only. */
static int generate_beam(const gt_gemma *m, const int32_t *prompt, int64_t n_prompt, const gt_generate_opts *o,
                         int32_t *out, int64_t cap, int64_t *n_out, bool *stopped, char *err, size_t errn) {
    int64_t K = o->sampler.num_beams, L = o->max_length, V = m->cfg.vocab_size;
    beams b;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int rc = beams_init(&b, m, K, L, err, errn);
    for (int64_t j = 1; j < K; j++) b.score[j] = -1e9;
    int64_t t = 0; /* generated so far */
    for (; !rc && n_prompt + t < L; t++) {
        int64_t n = 0;
        for (int64_t j = 0; j < K && !rc; j++) {
            if (t == 0 && j > 0) break; /* the other beams' -1e9 cannot win the first step */
            gt_ctx_reset(&ctx);
            gt_tensor *z = t == 0 ? gt_gemma_step_media(&ctx, m, &b.cache[j], prompt, n_prompt, o->soft_tokens,
                                                        o->soft_pos, o->n_soft, o->soft_open)
                                  : gt_gemma_step(&ctx, m, &b.cache[j], &b.seq[j * L + t - 1], 1);
            if (!z) {
                snprintf(err, errn, "generate: %s", ctx.err);
                rc = -1;
            } else {
                beam_offer(z->data, V, o->sampler.temperature, b.score[j], j, b.best, K, &n);
            }
        }
        bool all_done = true;
        for (int64_t j = 0; j < n && !rc; j++) { /* gather: new beam j continues beam best[j].beam */
            int64_t src = b.best[j].beam;
            gt_gemma_cache_copy(&b.next[j], &b.cache[src], m);
            memcpy(&b.seq_next[j * L], &b.seq[src * L], (size_t)t * sizeof *b.seq);
            b.seq_next[j * L + t] = b.best[j].id;
            b.done[K + j] = b.done[src] || is_stop(o, b.best[j].id);
            all_done = all_done && b.done[K + j];
        }
        if (rc) break;
        for (int64_t j = 0; j < n; j++) b.score[j] = b.best[j].score, b.done[j] = b.done[K + j];
        gt_gemma_cache *tc = b.cache;
        b.cache = b.next, b.next = tc;
        int32_t *ts = b.seq;
        b.seq = b.seq_next, b.seq_next = ts;
        if (all_done && o->n_stop > 0) {
            t++;
            break;
        }
    }
    if (!rc) { /* the best beam (first on ties), up to and including its first stop token */
        int64_t top = 0;
        for (int64_t j = 1; j < K; j++)
            if (b.score[j] > b.score[top]) top = j;
        for (int64_t i = 0; i < t && *n_out < cap; i++) {
            out[(*n_out)++] = b.seq[top * L + i];
            if (is_stop(o, b.seq[top * L + i])) {
                *stopped = true;
                break;
            }
        }
    }
    /* the gather swapped the halves: free both whatever their order */
    if (b.cache > b.next) b.cache = b.next;
    if (b.seq > b.seq_next) b.seq = b.seq_next;
    beams_free(&b);
    gt_ctx_free(&ctx);
    return rc;
}

int gt_generate(const gt_gemma *m, const int32_t *prompt, int64_t n_prompt,
                const gt_generate_opts *o, int32_t *out, int64_t cap, int64_t *n_out,
                bool *stopped, void (*on_token)(int32_t id, void *user), void *user, char *err,
                size_t errn) {
    *n_out = 0;
    *stopped = false;
    if (n_prompt < 1) return snprintf(err, errn, "generate: the prompt is empty"), -1;
    if (o->max_length <= n_prompt)
        return snprintf(err, errn, "generate: max_length %lld leaves no room after a %lld-token prompt",
                        (long long)o->max_length, (long long)n_prompt), -1;
    if (o->sampler.kind == GT_SAMPLER_BEAM) {
        int rc = generate_beam(m, prompt, n_prompt, o, out, cap, n_out, stopped, err, errn);
        for (int64_t i = 0; !rc && on_token && i < *n_out; i++) on_token(out[i], user);
        return rc;
    }
    if (o->sampler.kind == GT_SAMPLER_CONTRASTIVE && o->n_soft > 0)
        return snprintf(err, errn, "generate: the contrastive sampler does not take images yet (use greedy, "
                        "random, top_k, top_p or beam)"), -1;
    if (o->sampler.kind == GT_SAMPLER_CONTRASTIVE)
        return gt_generate_contrastive(m, prompt, n_prompt, o, out, cap, n_out, stopped, on_token, user, err, errn);
    gt_gemma_cache cache;
    if (gt_gemma_cache_init(&cache, m, o->max_length, err, errn) != 0) return -1;
    gt_sampler s = o->sampler;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int rc = 0;
    const int32_t *feed = prompt;
    int64_t n_feed = n_prompt;
    int32_t tok;
    while (cache.len + n_feed <= o->max_length && *n_out < cap) {
        gt_ctx_reset(&ctx);
        bool prefill = feed == prompt; /* the prompt's images go in with it */
        gt_tensor *z = gt_gemma_step_media(&ctx, m, &cache, feed, n_feed, prefill ? o->soft_tokens : NULL,
                                           prefill ? o->soft_pos : NULL, prefill ? o->n_soft : 0,
                                           prefill ? o->soft_open : NULL);
        if (!z) {
            snprintf(err, errn, "generate: %s", ctx.err);
            rc = -1;
            break;
        }
        tok = gt_sampler_next(&s, z->data, m->cfg.vocab_size);
        out[(*n_out)++] = tok;
        if (on_token) on_token(tok, user);
        bool stop = false;
        for (int i = 0; i < o->n_stop; i++) stop = stop || o->stop_ids[i] == tok;
        if (stop) {
            *stopped = true;
            break;
        }
        if (cache.len + 1 >= o->max_length) break; /* the new token fills the last slot */
        feed = &out[*n_out - 1];
        n_feed = 1;
    }
    gt_ctx_free(&ctx);
    gt_gemma_cache_free(&cache);
    return rc;
}
