/* KV-cached decoding equals the full forward; samplers follow KerasHub's rules. */
#include <check.h>
#include <math.h>

#include "autograd/rng.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/generate.h"

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
    ck_assert_int_ne(gt_sampler_parse("beam", &s, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "beam"), "%s", err);
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
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
