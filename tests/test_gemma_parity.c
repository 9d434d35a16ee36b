/* Gemma 1/2/3 against KerasHub golden fixtures (tools/reference/make_gemma_fixtures.py):
 * logits, KerasHub-normalised weighted loss and the gradient of every parameter. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma.h"
#include "models/io/h5io.h"
#include "tests/check_main.h"

static double attr(gt_h5 f, const char *name, double dflt) {
    double v;
    char err[512];
    return gt_h5_attr_f64(f, "/config", name, &v, err, sizeof err) == 0 ? v : dflt;
}

static void load_config(gt_h5 f, gt_gemma_config *c) {
    int gen = (int)attr(f, "generation", 0);
    gt_gemma_config_defaults(c, gen);
    c->vocab_size = (int64_t)attr(f, "vocabulary_size", 0);
    c->num_layers = (int64_t)attr(f, "num_layers", 0);
    c->hidden_dim = (int64_t)attr(f, "hidden_dim", 0);
    c->intermediate_dim = (int64_t)attr(f, "intermediate_dim", 0);
    c->num_query_heads = (int64_t)attr(f, "num_query_heads", 0);
    c->num_kv_heads = (int64_t)attr(f, "num_key_value_heads", 0);
    c->head_dim = (int64_t)attr(f, "head_dim", 0);
    c->use_post_attention_norm = attr(f, "use_post_attention_norm", 0) != 0;
    c->use_post_ffw_norm = attr(f, "use_post_ffw_norm", 0) != 0;
    c->use_qk_norm = attr(f, "use_query_key_norm", 0) != 0;
    c->attn_logit_softcap = attr(f, "attention_logit_soft_cap", 0);
    c->final_logit_softcap = attr(f, "final_logit_soft_cap", 0);
    c->query_head_dim_normalize = attr(f, "query_head_dim_normalize", 1) != 0;
    bool sliding = attr(f, "use_sliding_window_attention", 0) != 0;
    c->sliding_window = sliding ? (int64_t)attr(f, "sliding_window_size", 0) : 0;
    if (!sliding) c->sliding_pattern = 0;
    c->rope_local_scale = attr(f, "local_rope_scaling_factor", 1);
    c->rope_global_scale = attr(f, "global_rope_scaling_factor", 1);
}

static float *read_f32(gt_h5 f, const char *path, int64_t expect_size) {
    float *d;
    int nd;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(expect_size < 0 || n == expect_size, "%s: %lld values, expected %lld", path,
                  (long long)n, (long long)expect_size);
    return d;
}

static void check_fixture(const char *file) {
    char path[256], err[1024];
    snprintf(path, sizeof path, "tests/fixtures/%s", file);
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(path, &f, err, sizeof err) == 0, "%s", err);
    gt_gemma_config cfg;
    load_config(f, &cfg);
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&cfg, true, &m, err, sizeof err) == 0, "%s: %s", file, err);
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = read_f32(f, p, m->params[i].t->size);
        memcpy(m->params[i].t->data, w, (size_t)m->params[i].t->size * sizeof(float));
        free(w);
    }
    int32_t *ids, *mask32, *labels;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_read_i32(f, "/inputs/token_ids", &ids, &nd, shape, err, sizeof err) == 0);
    int64_t B = shape[0], T = shape[1];
    ck_assert(gt_h5_read_i32(f, "/inputs/padding_mask", &mask32, &nd, shape, err, sizeof err) == 0);
    ck_assert(gt_h5_read_i32(f, "/inputs/labels", &labels, &nd, shape, err, sizeof err) == 0);
    float *weights = read_f32(f, "/inputs/sample_weight", B * T);
    uint8_t *mask = malloc((size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = (uint8_t)mask32[i];

    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_gemma_batch batch = {.batch = B, .seq = T, .token_ids = ids, .padding_mask = mask};
    gt_tensor *hidden = gt_gemma_hidden(&ctx, m, &batch);
    gt_tensor *logits = gt_gemma_logits(&ctx, m, hidden);
    double wsum = 0;
    gt_tensor *ce = gt_cross_entropy(&ctx, logits, labels, weights, &wsum, NULL);
    gt_tensor *loss = gt_scale(&ctx, ce, 1.0 / (double)(B * T)); /* KerasHub normalisation */
    ck_assert_msg(gt_ok(&ctx), "%s: %s", file, ctx.err);

    float *want = read_f32(f, "/expected/logits", B * T * cfg.vocab_size);
    double maxref = 0, maxdiff = 0;
    for (int64_t i = 0; i < logits->size; i++) {
        maxref = fmax(maxref, fabs(want[i]));
        maxdiff = fmax(maxdiff, fabs((double)logits->data[i] - want[i]));
    }
    ck_assert_msg(maxdiff <= 1e-4 * maxref, "%s: logits max error %.3g vs max|logit| %.3g", file,
                  maxdiff, maxref);
    float *want_loss = read_f32(f, "/expected/loss", 1);
    double rel = fabs(loss->data[0] - want_loss[0]) / fabs(want_loss[0]);
    ck_assert_msg(rel <= 1e-5, "%s: loss %.9g vs %.9g (rel %.3g)", file, loss->data[0], want_loss[0], rel);

    ck_assert_int_eq(gt_backward(&ctx, loss), GT_OK);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/expected/grads/%s", m->params[i].name);
        gt_tensor *t = m->params[i].t;
        float *g = read_f32(f, p, t->size);
        double gmax = 0, dmax = 0;
        for (int64_t j = 0; j < t->size; j++) {
            gmax = fmax(gmax, fabs(g[j]));
            dmax = fmax(dmax, fabs((double)t->grad[j] - g[j]));
        }
        double e = gmax > 0 ? dmax / gmax : dmax;
        if (e > worst) {
            worst = e;
            worst_name = m->params[i].name;
        }
        free(g);
    }
    ck_assert_msg(worst <= 1e-3, "%s: gradient of %s off by %.3g (relative to its max)", file,
                  worst_name, worst);
    printf("%s: logits err %.2e x max, loss rel %.2e, worst grad %.2e (%s)\n", file,
           maxdiff / maxref, rel, worst, worst_name);
    free(want);
    free(want_loss);
    free(ids);
    free(mask32);
    free(labels);
    free(weights);
    free(mask);
    gt_ctx_free(&ctx);
    gt_gemma_free(m);
    gt_h5_close(f);
}

START_TEST(gemma1_matches_kerashub) { check_fixture("gemma1.h5"); }
END_TEST
START_TEST(gemma2_matches_kerashub) { check_fixture("gemma2.h5"); }
END_TEST
START_TEST(gemma3_matches_kerashub) { check_fixture("gemma3.h5"); }
END_TEST

int main(void) {
    Suite *s = suite_create("gemma_parity");
    TCase *tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gemma1_matches_kerashub);
    tcase_add_test(tc, gemma2_matches_kerashub);
    tcase_add_test(tc, gemma3_matches_kerashub);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
