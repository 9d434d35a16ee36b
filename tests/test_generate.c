/* KV-cached decoding equals the full forward; samplers follow KerasHub's rules. */
#include <check.h>
#include <math.h>

#include "autograd/rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/generate.h"
#include "models/io/h5io.h"
#include "models/io/keras_preset.h"
#include "tests/check_main.h"

static gt_gemma *tiny(int generation) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, generation);
    c.vocab_size = 50;
    c.num_layers = generation == 3 ? 7 : 3;
    c.hidden_dim = 32;
    c.intermediate_dim = 40;
    c.num_query_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 8;
    c.sliding_window = 4;
    if (generation == 2) {
        c.attn_logit_softcap = 5;
        c.final_logit_softcap = 8;
    }
    c.rope_global_scale = 8;
    gt_gemma *m;
    char err[256];
    ck_assert_msg(gt_gemma_create(&c, false, &m, err, sizeof err) == 0, "%s", err);
    gt_gemma_init_random(m, 42 + (uint64_t)generation, 0.4);
    return m;
}

static void cache_matches_full_forward(int generation) {
    gt_gemma *m = tiny(generation);
    enum { T = 11 };
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 7 + 3) % 50;
    gt_ctx full, inc;
    gt_ctx_init(&full, 0);
    gt_ctx_init(&inc, 0);
    full.grad_enabled = false;
    gt_gemma_batch b = {.batch = 1, .seq = T, .token_ids = ids};
    gt_tensor *z = gt_gemma_logits(&full, m, gt_gemma_hidden(&full, m, &b));
    ck_assert_msg(z, "%s", full.err);
    gt_gemma_cache cache;
    char err[256];
    ck_assert(gt_gemma_cache_init(&cache, m, T, err, sizeof err) == 0);
    /* a 5-token prompt, then one token at a time */
    int64_t pos = 0;
    while (pos < T) {
        int64_t n = pos == 0 ? 5 : 1;
        gt_ctx_reset(&inc);
        gt_tensor *zi = gt_gemma_step(&inc, m, &cache, ids + pos, n);
        ck_assert_msg(zi, "%s", inc.err);
        pos += n;
        const gt_real *want = z->data + (pos - 1) * 50;
        for (int v = 0; v < 50; v++)
            ck_assert_msg(fabs(zi->data[v] - want[v]) <= 1e-4 * (1 + fabs(want[v])),
                          "gen %d pos %lld vocab %d: %g vs %g", generation, (long long)pos - 1, v,
                          zi->data[v], want[v]);
    }
    gt_tensor *over = gt_gemma_step(&inc, m, &cache, ids, 1);
    ck_assert_ptr_null(over);
    ck_assert_msg(strstr(inc.err, "exceed"), "%s", inc.err);
    gt_gemma_cache_free(&cache);
    gt_ctx_free(&full);
    gt_ctx_free(&inc);
    gt_gemma_free(m);
}

START_TEST(kv_cache_gemma1) { cache_matches_full_forward(1); }
END_TEST
START_TEST(kv_cache_gemma2) { cache_matches_full_forward(2); }
END_TEST
START_TEST(kv_cache_gemma3) { cache_matches_full_forward(3); }
END_TEST

START_TEST(greedy_generation_is_argmax_of_full_forward) {
    gt_gemma *m = tiny(3);
    int32_t prompt[3] = {1, 2, 3}, out[16];
    gt_generate_opts o = {.max_length = 12};
    gt_sampler_init(&o.sampler, GT_SAMPLER_GREEDY);
    int64_t n;
    bool stopped;
    char err[256];
    ck_assert_msg(gt_generate(m, prompt, 3, &o, out, 16, &n, &stopped, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(n, 9); /* fills max_length exactly */
    ck_assert(!stopped);
    /* re-run the full forward on prompt + generated and check each was the argmax */
    int32_t all[12];
    memcpy(all, prompt, sizeof prompt);
    memcpy(all + 3, out, 9 * sizeof(int32_t));
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch b = {.batch = 1, .seq = 11, .token_ids = all};
    gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
    for (int t = 2; t < 11; t++) {
        int best = 0;
        for (int v = 1; v < 50; v++)
            if (z->data[t * 50 + v] > z->data[t * 50 + best]) best = v;
        ck_assert_int_eq(all[t + 1], best);
    }
    /* stop tokens end generation and are returned */
    int32_t stop = out[2];
    o.stop_ids = &stop;
    o.n_stop = 1;
    ck_assert(gt_generate(m, prompt, 3, &o, out, 16, &n, &stopped, NULL, NULL, err, sizeof err) == 0);
    ck_assert(stopped);
    ck_assert_int_le(n, 3);
    ck_assert_int_eq(out[n - 1], stop);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
}
END_TEST


/* KerasHub's BeamSampler written the plain way (full forward of every beam's sequence, no cache,
 * no gather): the reference for generate's cached beams on any generation. */
static int ref_beam(const gt_gemma *m, const int32_t *prompt, int64_t np, int64_t L, int64_t K, double temp,
                    const int32_t *stop, int nstop, int32_t *out) {
    int64_t V = m->cfg.vocab_size;
    int32_t seq[8][64], nseq[8][64];
    double score[8], nscore[8];
    bool done[8], ndone[8];
    for (int64_t j = 0; j < K; j++) memcpy(seq[j], prompt, (size_t)np * sizeof(int32_t)), score[j] = j ? -1e9 : 0, done[j] = false;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int64_t t = np;
    for (; t < L; t++) {
        double best_s[8];
        int64_t best_b[8], best_v[8], n = 0;
        for (int64_t j = 0; j < K; j++) {
            gt_ctx_reset(&ctx);
            gt_gemma_batch b = {.batch = 1, .seq = t, .token_ids = seq[j]};
            gt_tensor *z = gt_gemma_logits(&ctx, m, gt_gemma_hidden(&ctx, m, &b));
            ck_assert_msg(z, "%s", ctx.err);
            const gt_real *lg = z->data + (t - 1) * V;
            double mx = -INFINITY, tot = 0;
            for (int64_t v = 0; v < V; v++) mx = fmax(mx, lg[v] / temp);
            for (int64_t v = 0; v < V; v++) tot += exp(lg[v] / temp - mx);
            for (int64_t v = 0; v < V; v++) {
                double sc = score[j] + lg[v] / temp - mx - log(tot);
                int64_t i = n < K ? n++ : K; /* insertion into the sorted best list */
                if (i == K && !(sc > best_s[K - 1])) continue;
                if (i == K) i = K - 1;
                while (i > 0 && sc > best_s[i - 1]) best_s[i] = best_s[i - 1], best_b[i] = best_b[i - 1], best_v[i] = best_v[i - 1], i--;
                best_s[i] = sc, best_b[i] = j, best_v[i] = v;
            }
        }
        bool all = true;
        for (int64_t j = 0; j < K; j++) {
            memcpy(nseq[j], seq[best_b[j]], (size_t)t * sizeof(int32_t));
            nseq[j][t] = (int32_t)best_v[j];
            nscore[j] = best_s[j];
            ndone[j] = done[best_b[j]];
            for (int i = 0; i < nstop; i++) ndone[j] = ndone[j] || stop[i] == best_v[j];
            all = all && ndone[j];
        }
        memcpy(seq, nseq, sizeof seq);
        memcpy(score, nscore, sizeof score);
        memcpy(done, ndone, sizeof done);
        if (all && nstop) {
            t++;
            break;
        }
    }
    int64_t top = 0;
    for (int64_t j = 1; j < K; j++)
        if (score[j] > score[top]) top = j;
    int n = 0;
    for (int64_t i = np; i < t; i++) {
        out[n++] = seq[top][i];
        bool hit = false;
        for (int k = 0; k < nstop; k++) hit = hit || stop[k] == seq[top][i];
        if (hit) break;
    }
    gt_ctx_free(&ctx);
    return n;
}

static void beam_case(const gt_gemma *m, const int32_t *prompt, int64_t np, int64_t L, int64_t K, double temp,
                      const int32_t *stop, int nstop, const int32_t *want, int nwant, const char *what) {
    gt_generate_opts o = {.max_length = L, .stop_ids = stop, .n_stop = nstop};
    gt_sampler_init(&o.sampler, GT_SAMPLER_BEAM);
    o.sampler.num_beams = K;
    o.sampler.temperature = temp;
    int32_t out[64];
    int64_t n;
    bool stopped;
    char err[256];
    ck_assert_msg(gt_generate(m, prompt, np, &o, out, 64, &n, &stopped, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(n == nwant, "%s: %lld tokens, want %d", what, (long long)n, nwant);
    for (int i = 0; i < nwant; i++) ck_assert_msg(out[i] == want[i], "%s: token %d: %d vs %d", what, i, out[i], want[i]);
}

/* tests/fixtures/presets/beam.h5 (tools/reference/make_sampler_fixtures.py): keras_hub 0.32's
 * BeamSampler on the tiny Gemma 1 and 2 presets (its Gemma3/4CausalLM fail with BeamSampler). */
START_TEST(beam_matches_kerashub) {
    static const char *const cases[] = {"gemma1_b3", "gemma1_b3_stop", "gemma1_b4", "gemma1_b4_stop",
                                        "gemma2_b3", "gemma2_b3_stop", "gemma2_b4", "gemma2_b4_stop"};
    char err[512], path[128];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read("tests/fixtures/presets/beam.h5", &f, err, sizeof err) == 0, "%s", err);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char dir[64];
        snprintf(dir, sizeof dir, "tests/fixtures/presets/%.6s", cases[c]);
        gt_gemma *m;
        ck_assert_msg(gt_keras_preset_load(dir, false, &m, NULL, err, sizeof err) == 0, "%s", err);
        int32_t *prompt, *stop, *want;
        int nd;
        int64_t sh[8], np, ns, nw;
        snprintf(path, sizeof path, "/%s/prompt", cases[c]);
        ck_assert(gt_h5_read_i32(f, path, &prompt, &nd, sh, err, sizeof err) == 0);
        np = sh[0];
        snprintf(path, sizeof path, "/%s/stop", cases[c]);
        ck_assert(gt_h5_read_i32(f, path, &stop, &nd, sh, err, sizeof err) == 0);
        ns = sh[0];
        snprintf(path, sizeof path, "/%s/output", cases[c]);
        ck_assert(gt_h5_read_i32(f, path, &want, &nd, sh, err, sizeof err) == 0);
        nw = sh[0];
        double L, K, temp;
        snprintf(path, sizeof path, "/%s", cases[c]);
        ck_assert_msg(gt_h5_attr_f64(f, path, "max_length", &L, err, sizeof err) == 0, "%s", err);
        ck_assert(gt_h5_attr_f64(f, path, "num_beams", &K, err, sizeof err) == 0);
        ck_assert(gt_h5_attr_f64(f, path, "temperature", &temp, err, sizeof err) == 0);
        beam_case(m, prompt, np, (int64_t)L, (int64_t)K, temp, stop, (int)ns, want, (int)nw, cases[c]);
        printf("beam %s: %lld tokens as KerasHub's BeamSampler\n", cases[c], (long long)nw);
        free(prompt), free(stop), free(want);
        gt_gemma_free(m);
    }
    gt_h5_close(f);
}
END_TEST

/* Cached beams (with cache gathering) equal the plain reference on every generation, with and
 * without a stop token; one beam is greedy. */
START_TEST(beam_equals_plain_reference) {
    for (int gen = 1; gen <= 3; gen++) {
        gt_gemma *m = tiny(gen);
        int32_t prompt[4] = {2, 7, 11, 5}, want[64];
        for (int K = 1; K <= 4; K += 3) {
            int n = ref_beam(m, prompt, 4, 14, K, 0.8, NULL, 0, want);
            ck_assert_int_eq(n, 10);
            beam_case(m, prompt, 4, 14, K, 0.8, NULL, 0, want, n, "no stop");
            int32_t stop = want[2];
            n = ref_beam(m, prompt, 4, 14, K, 0.8, &stop, 1, want);
            beam_case(m, prompt, 4, 14, K, 0.8, &stop, 1, want, n, "stop");
        }
        /* num_beams 1 is greedy */
        gt_generate_opts o = {.max_length = 12};
        gt_sampler_init(&o.sampler, GT_SAMPLER_GREEDY);
        int32_t out[16];
        int64_t n;
        bool stopped;
        char err[256];
        ck_assert(gt_generate(m, prompt, 4, &o, out, 16, &n, &stopped, NULL, NULL, err, sizeof err) == 0);
        beam_case(m, prompt, 4, 12, 1, 1.0, NULL, 0, out, (int)n, "one beam");
        gt_gemma_free(m);
    }
}
END_TEST

/* tests/fixtures/presets/score.h5: keras_hub's CausalLM.score(scoring_mode "logits" and "loss"
 * with target_ids) on the tiny Gemma 1 and 2 presets (its Gemma3/4CausalLM have no score()). Our
 * logits (generate --score --logits) and per-token losses (the LM head's row losses). */
START_TEST(score_matches_kerashub) {
    static const char *const names[] = {"gemma1", "gemma2"};
    char err[512], path[128];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read("tests/fixtures/presets/score.h5", &f, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 2; k++) {
        char dir[64];
        snprintf(dir, sizeof dir, "tests/fixtures/presets/%s", names[k]);
        gt_gemma *m;
        ck_assert_msg(gt_keras_preset_load(dir, false, &m, NULL, err, sizeof err) == 0, "%s", err);
        int32_t *ids, *target;
        float *want, *loss;
        int nd;
        int64_t sh[8];
        snprintf(path, sizeof path, "/%s/token_ids", names[k]);
        ck_assert(gt_h5_read_i32(f, path, &ids, &nd, sh, err, sizeof err) == 0);
        int64_t T = sh[1], V = m->cfg.vocab_size;
        snprintf(path, sizeof path, "/%s/target_ids", names[k]);
        ck_assert(gt_h5_read_i32(f, path, &target, &nd, sh, err, sizeof err) == 0);
        snprintf(path, sizeof path, "/%s/logits", names[k]);
        ck_assert(gt_h5_read_f32(f, path, &want, &nd, sh, err, sizeof err) == 0);
        ck_assert_int_eq(sh[2], V);
        snprintf(path, sizeof path, "/%s/loss", names[k]);
        ck_assert(gt_h5_read_f32(f, path, &loss, &nd, sh, err, sizeof err) == 0);
        gt_ctx ctx;
        gt_ctx_init(&ctx, 0);
        ctx.grad_enabled = false;
        gt_gemma_batch b = {.batch = 1, .seq = T, .token_ids = ids};
        gt_tensor *h = gt_gemma_hidden(&ctx, m, &b);
        gt_tensor *z = gt_gemma_logits(&ctx, m, h);
        ck_assert_msg(z, "%s", ctx.err);
        double mx = 0, d = 0;
        for (int64_t i = 0; i < T * V; i++) mx = fmax(mx, fabs(want[i])), d = fmax(d, fabs((double)z->data[i] - want[i]));
        gt_real ce[64];
        double ws;
        ck_assert(gt_gemma_lm_loss(&ctx, m, h, target, NULL, 64, &ws, ce));
        double dl = 0;
        for (int64_t t = 0; t < T; t++) dl = fmax(dl, fabs((double)ce[t] - loss[t]) / fmax(1.0, fabs(loss[t])));
        printf("score %s: logits within %.2e x max, per-token loss within %.2e of KerasHub's\n", names[k], d / mx, dl);
        ck_assert_msg(d <= 1e-4 * mx && dl <= 1e-5, "%s: logits %g, loss %g", names[k], d / mx, dl);
        gt_ctx_free(&ctx);
        free(ids), free(target), free(want), free(loss);
        gt_gemma_free(m);
    }
    gt_h5_close(f);
}
END_TEST

START_TEST(samplers) {
    gt_real logits[6] = {0.0f, 3.0f, 2.9f, -1.0f, 1.0f, 2.0f};
    gt_sampler s;
    char err[256];
    ck_assert(gt_sampler_parse("greedy", &s, err, sizeof err) == 0);
    ck_assert_int_eq(gt_sampler_next(&s, logits, 6), 1);
    /* top_k k=2 only ever returns the two best; both appear */
    ck_assert(gt_sampler_parse("top_k:k=2,seed=7", &s, err, sizeof err) == 0);
    int seen[6] = {0};
    for (int i = 0; i < 400; i++) seen[gt_sampler_next(&s, logits, 6)]++;
    ck_assert(seen[1] > 100 && seen[2] > 100 && seen[1] + seen[2] == 400);
    /* top_p p=0.1: exclusive cumsum of the best token is 0 <= p, of the second > p -> argmax only */
    ck_assert(gt_sampler_parse("top_p:p=0.1,seed=3", &s, err, sizeof err) == 0);
    for (int i = 0; i < 50; i++) ck_assert_int_eq(gt_sampler_next(&s, logits, 6), 1);
    /* same seed, same sequence */
    gt_sampler a, b;
    ck_assert(gt_sampler_parse("random:seed=11,temperature=2", &a, err, sizeof err) == 0);
    ck_assert(gt_sampler_parse("random:seed=11,temperature=2", &b, err, sizeof err) == 0);
    for (int i = 0; i < 50; i++) ck_assert_int_eq(gt_sampler_next(&a, logits, 6), gt_sampler_next(&b, logits, 6));
    ck_assert_int_ne(gt_sampler_parse("nucleus", &s, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "contrastive") && strstr(err, "beam"), "%s", err);
    ck_assert(gt_sampler_parse("contrastive", &s, err, sizeof err) == 0);
    ck_assert(s.kind == GT_SAMPLER_CONTRASTIVE && s.k == 5 && s.alpha == 0.6); /* KerasHub's defaults */
    ck_assert(gt_sampler_parse("contrastive:k=3,alpha=0.25,temperature=2", &s, err, sizeof err) == 0);
    ck_assert(s.k == 3 && s.alpha == 0.25 && s.temperature == 2);
    ck_assert_int_ne(gt_sampler_parse("contrastive:alpha=1.5", &s, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "alpha"), "%s", err);
    ck_assert(gt_sampler_parse("beam:num_beams=3,temperature=0.5", &s, err, sizeof err) == 0);
    ck_assert(s.kind == GT_SAMPLER_BEAM && s.num_beams == 3 && s.temperature == 0.5);
    ck_assert_int_ne(gt_sampler_parse("beam:num_beams=0", &s, err, sizeof err), 0);
    ck_assert_int_ne(gt_sampler_parse("top_k:k=0", &s, err, sizeof err), 0);
    ck_assert_int_ne(gt_sampler_parse("top_k:q=1", &s, err, sizeof err), 0);
}
END_TEST

/* top_p sorts only a prefiltered set: its picks equal those of a full sort of the vocabulary. */
typedef struct {
    double p;
    int32_t id;
} ref_cand;

static int ref_desc(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

static int32_t ref_top_p(gt_sampler *s, const gt_real *logits, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    double mx = logits[best] / s->temperature, total = 0;
    ref_cand *c = malloc((size_t)V * sizeof *c);
    for (int64_t i = 0; i < V; i++) c[i].p = exp(logits[i] / s->temperature - mx), c[i].id = (int32_t)i, total += c[i].p;
    for (int64_t i = 0; i < V; i++) c[i].p /= total;
    qsort(c, (size_t)V, sizeof *c, ref_desc);
    double cum = 0, mass = 0, acc = 0;
    int64_t n = 0;
    while (n < V && cum <= s->p) cum += c[n++].p;
    for (int64_t i = 0; i < n; i++) mass += c[i].p;
    double u = gt_rng_uniform(&s->state) * mass;
    int32_t pick = c[n - 1].id;
    for (int64_t i = 0; i < n; i++)
        if (u < (acc += c[i].p)) {
            pick = c[i].id;
            break;
        }
    free(c);
    return pick;
}

START_TEST(top_p_equals_full_sort) {
    enum { V = 20000 };
    static gt_real logits[V];
    uint64_t r = 5;
    const char *specs[] = {"top_p:p=0.1,seed=1", "top_p:p=0.5,seed=2,temperature=3", "top_p:p=0.9,seed=3",
                           "top_p:p=0.9999,seed=4,temperature=5", "top_p:p=1,seed=5"};
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < V; i++) /* heavy ties among the small logits */
            logits[i] = i % 3 ? (gt_real)(8 * gt_rng_uniform(&r)) : (gt_real)((int)(4 * gt_rng_uniform(&r)) - 6);
        gt_sampler a, b;
        char err[256];
        ck_assert(gt_sampler_parse(specs[k], &a, err, sizeof err) == 0);
        b = a;
        for (int t = 0; t < 20; t++) ck_assert_int_eq(gt_sampler_next(&a, logits, V), ref_top_p(&b, logits, V));
    }
}
END_TEST

/* ---- contrastive search */

static void contrastive_case(const gt_gemma *m, const int32_t *prompt, int64_t np, int64_t L, int64_t K,
                             double alpha, double temp, const int32_t *stop, int nstop, const int32_t *want,
                             int nwant, const char *what) {
    gt_generate_opts o = {.max_length = L, .stop_ids = stop, .n_stop = nstop};
    gt_sampler_init(&o.sampler, GT_SAMPLER_CONTRASTIVE);
    o.sampler.k = K;
    o.sampler.alpha = alpha;
    o.sampler.temperature = temp;
    int32_t out[64];
    int64_t n;
    bool stopped;
    char err[256];
    ck_assert_msg(gt_generate(m, prompt, np, &o, out, 64, &n, &stopped, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(n == nwant, "%s: %lld tokens, want %d", what, (long long)n, nwant);
    for (int i = 0; i < nwant; i++) ck_assert_msg(out[i] == want[i], "%s: token %d: %d vs %d", what, i, out[i], want[i]);
    ck_assert(stopped == (nstop > 0 && n < L - np));
}

/* ContrastiveSampler written the plain way: a full forward (no cache) of every candidate
 * sequence, hidden states and logits from gt_gemma_hidden / gt_gemma_logits. */
static int ref_contrastive(const gt_gemma *m, const int32_t *prompt, int64_t np, int64_t L, int64_t K,
                           double alpha, double temp, int32_t stop, int32_t *gen) {
    int64_t V = m->cfg.vocab_size, D = m->cfg.hidden_dim;
    int32_t seq[64];
    memcpy(seq, prompt, (size_t)np * sizeof *seq);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int n = 0;
    for (int64_t pos = np; pos < L; pos++) {
        gt_ctx_reset(&ctx);
        gt_gemma_batch b = {.batch = 1, .seq = pos, .token_ids = seq};
        gt_tensor *h = gt_gemma_hidden(&ctx, m, &b);
        gt_tensor *z = gt_gemma_logits(&ctx, m, h);
        ck_assert_msg(z, "%s", ctx.err);
        const gt_real *lg = z->data + (pos - 1) * V;
        ref_cand c[128];
        double mx = -INFINITY, tot = 0;
        for (int64_t v = 0; v < V; v++) mx = fmax(mx, lg[v] / temp);
        for (int64_t v = 0; v < V; v++) tot += exp(lg[v] / temp - mx);
        for (int64_t v = 0; v < V; v++) c[v].p = exp(lg[v] / temp - mx) / tot, c[v].id = (int32_t)v;
        qsort(c, (size_t)V, sizeof *c, ref_desc);
        double best = -INFINITY;
        int32_t win = -1;
        for (int64_t j = 0; j < K; j++) {
            seq[pos] = c[j].id;
            gt_gemma_batch bj = {.batch = 1, .seq = pos + 1, .token_ids = seq};
            gt_tensor *hj = gt_gemma_hidden(&ctx, m, &bj);
            ck_assert_msg(hj, "%s", ctx.err);
            const gt_real *x = hj->data + pos * D;
            double sim = -INFINITY;
            for (int64_t p = 0; p < pos; p++) {
                double dot = 0, a2 = 0, b2 = 0;
                for (int64_t d = 0; d < D; d++)
                    dot += hj->data[p * D + d] * x[d], a2 += hj->data[p * D + d] * hj->data[p * D + d], b2 += x[d] * x[d];
                sim = fmax(sim, dot / sqrt(a2 * b2));
            }
            double score = (1 - alpha) * c[j].p - alpha * sim;
            if (win < 0 || score > best) best = score, win = c[j].id;
        }
        seq[pos] = gen[n++] = win;
        if (win == stop) break;
    }
    gt_ctx_free(&ctx);
    return n;
}

/* Cached contrastive search equals the plain reference; alpha 0 is greedy. */
START_TEST(contrastive_equals_plain_reference) {
    for (int g = 1; g <= 3; g++) {
        gt_gemma *m = tiny(g);
        int32_t prompt[4] = {2, 9, 17, 30}, want[32];
        for (int K = 2; K <= 5; K += 3) {
            int n = ref_contrastive(m, prompt, 4, 16, K, 0.6, 0.9, -1, want);
            contrastive_case(m, prompt, 4, 16, K, 0.6, 0.9, NULL, 0, want, n, "no stop");
            int32_t stop = want[5];
            n = ref_contrastive(m, prompt, 4, 16, K, 0.6, 0.9, stop, want);
            contrastive_case(m, prompt, 4, 16, K, 0.6, 0.9, &stop, 1, want, n, "stop");
        }
        gt_generate_opts o = {.max_length = 14};
        gt_sampler_init(&o.sampler, GT_SAMPLER_GREEDY);
        int64_t n;
        bool stopped;
        char err[256];
        ck_assert(gt_generate(m, prompt, 4, &o, want, 32, &n, &stopped, NULL, NULL, err, sizeof err) == 0);
        contrastive_case(m, prompt, 4, 14, 4, 0.0, 1.0, NULL, 0, want, (int)n, "alpha 0");
        gt_gemma_free(m);
    }
}
END_TEST

/* tests/fixtures/presets/contrastive.h5 (tools/reference/make_sampler_fixtures.py contrastive):
 * keras_hub 0.32's ContrastiveSampler on the tiny Gemma 1 and 2 presets (its Gemma3CausalLM fails
 * to generate from these inputs; Gemma4CausalLM passes ContrastiveSampler an argument it lacks). */
START_TEST(contrastive_matches_kerashub) {
    static const char *const cases[] = {"gemma1_k3_a6", "gemma1_k5_a3", "gemma1_k4_a9",
                                        "gemma2_k3_a6", "gemma2_k5_a3", "gemma2_k4_a9"};
    char err[512], path[128];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read("tests/fixtures/presets/contrastive.h5", &f, err, sizeof err) == 0, "%s", err);
    for (size_t c = 0; c < 2 * sizeof cases / sizeof *cases; c++) {
        char name[64], dir[64];
        snprintf(name, sizeof name, "%s%s", cases[c / 2], c % 2 ? "_stop" : "");
        snprintf(dir, sizeof dir, "tests/fixtures/presets/%.6s", name);
        gt_gemma *m;
        ck_assert_msg(gt_keras_preset_load(dir, false, &m, NULL, err, sizeof err) == 0, "%s", err);
        int32_t *prompt, *stop, *want;
        int nd;
        int64_t sh[8], np, ns, nw;
        snprintf(path, sizeof path, "/%s/prompt", name);
        ck_assert_msg(gt_h5_read_i32(f, path, &prompt, &nd, sh, err, sizeof err) == 0, "%s", err);
        np = sh[0];
        snprintf(path, sizeof path, "/%s/stop", name);
        ck_assert(gt_h5_read_i32(f, path, &stop, &nd, sh, err, sizeof err) == 0);
        ns = sh[0];
        snprintf(path, sizeof path, "/%s/output", name);
        ck_assert(gt_h5_read_i32(f, path, &want, &nd, sh, err, sizeof err) == 0);
        nw = sh[0];
        double L, K, alpha, temp;
        snprintf(path, sizeof path, "/%s", name);
        ck_assert_msg(gt_h5_attr_f64(f, path, "max_length", &L, err, sizeof err) == 0, "%s", err);
        ck_assert(gt_h5_attr_f64(f, path, "k", &K, err, sizeof err) == 0);
        ck_assert(gt_h5_attr_f64(f, path, "alpha", &alpha, err, sizeof err) == 0);
        ck_assert(gt_h5_attr_f64(f, path, "temperature", &temp, err, sizeof err) == 0);
        contrastive_case(m, prompt, np, (int64_t)L, (int64_t)K, alpha, temp, stop, (int)ns, want, (int)nw, name);
        printf("contrastive %s: %lld tokens as KerasHub's ContrastiveSampler\n", name, (long long)nw);
        free(prompt), free(stop), free(want);
        gt_gemma_free(m);
    }
    gt_h5_close(f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("generate");
    TCase *tc = tcase_create("generate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kv_cache_gemma1);
    tcase_add_test(tc, kv_cache_gemma2);
    tcase_add_test(tc, kv_cache_gemma3);
    tcase_add_test(tc, greedy_generation_is_argmax_of_full_forward);
    tcase_add_test(tc, samplers);
    tcase_add_test(tc, top_p_equals_full_sort);
    tcase_add_test(tc, beam_matches_kerashub);
    tcase_add_test(tc, beam_equals_plain_reference);
    tcase_add_test(tc, score_matches_kerashub);
    tcase_add_test(tc, contrastive_equals_plain_reference);
    tcase_add_test(tc, contrastive_matches_kerashub);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
