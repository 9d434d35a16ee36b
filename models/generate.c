#include "models/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"

void gt_sampler_init(gt_sampler *s, gt_sampler_kind kind) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->k = kind == GT_SAMPLER_TOP_K ? 5 : 0;
    s->p = 0.1;
    s->temperature = 1.0;
}

int gt_sampler_parse(const char *spec, gt_sampler *s, char *err, size_t errn) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *args = strchr(buf, ':');
    if (args) *args++ = 0;
    static const struct { const char *name; gt_sampler_kind kind; } kinds[] = {
        {"greedy", GT_SAMPLER_GREEDY}, {"random", GT_SAMPLER_RANDOM},
        {"top_k", GT_SAMPLER_TOP_K},   {"top_p", GT_SAMPLER_TOP_P}};
    int found = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(buf, kinds[i].name)) found = i;
    if (found < 0)
        return snprintf(err, errn, "sampler '%s': unknown (greedy, random, top_k, top_p)", buf), -1;
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
        else return snprintf(err, errn, "sampler '%s': bad key or value '%s=%s' (k >= 1, 0 < p <= 1, "
                             "temperature > 0, seed >= 0)", spec, kv, eq), -1;
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
        gt_tensor *z = gt_gemma_step(&ctx, m, &cache, feed, n_feed);
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
