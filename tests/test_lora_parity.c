/* LoRA fine-tuning against KerasHub (tools/reference/make_lora_fixture.py): enable_lora(rank=4) on
 * query/value of a tiny Gemma 3, KerasHub's loss normalisation sum(w*ce)/(B*T), Keras AdamW. Checks
 * the adapter gradients at step 0 and the loss of each of 10 train_on_batch steps. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gemma.h"
#include "models/io/h5io.h"
#include "train/optim.h"
#include "tests/check_main.h"

static double attr(gt_h5 f, const char *obj, const char *name, double dflt) {
    double v;
    char err[512];
    return gt_h5_attr_f64(f, obj, name, &v, err, sizeof err) == 0 ? v : dflt;
}

static float *rd(gt_h5 f, const char *path, int64_t want) {
    float *d;
    int nd;
    int64_t shape[8], n = 1;
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < nd; i++) n *= shape[i];
    ck_assert_msg(want < 0 || n == want, "%s: %lld values, want %lld", path, (long long)n, (long long)want);
    return d;
}

static int32_t *rdi(gt_h5 f, const char *path) {
    int32_t *d;
    int nd;
    int64_t shape[8];
    char err[512];
    ck_assert_msg(gt_h5_read_i32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    return d;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

START_TEST(lora_training_matches_kerashub) {
    char err[1024];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read("tests/fixtures/lora_gemma3.h5", &f, err, sizeof err) == 0, "%s", err);
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = (int64_t)attr(f, "/config", "vocabulary_size", 0);
    c.num_layers = (int64_t)attr(f, "/config", "num_layers", 0);
    c.hidden_dim = (int64_t)attr(f, "/config", "hidden_dim", 0);
    c.intermediate_dim = (int64_t)attr(f, "/config", "intermediate_dim", 0);
    c.num_query_heads = (int64_t)attr(f, "/config", "num_query_heads", 0);
    c.num_kv_heads = (int64_t)attr(f, "/config", "num_key_value_heads", 0);
    c.head_dim = (int64_t)attr(f, "/config", "head_dim", 0);
    c.sliding_window = (int64_t)attr(f, "/config", "sliding_window_size", 0);
    c.rope_global_scale = attr(f, "/config", "global_rope_scaling_factor", 1);
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&c, false, &m, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = rd(f, p, m->params[i].t->size);
        memcpy(m->params[i].t->data, w, sizeof(float) * (size_t)m->params[i].t->size);
        free(w);
    }
    int64_t rank = (int64_t)attr(f, "/lora", "rank", 0);
    gt_lora_dims dims = {c.num_layers, c.hidden_dim, c.intermediate_dim, c.num_query_heads,
                         c.num_kv_heads, c.head_dim};
    gt_lora *lora;
    ck_assert(gt_lora_create(&dims, rank, attr(f, "/lora", "alpha", 0),
                             (1u << GT_LORA_QUERY) | (1u << GT_LORA_VALUE), 1, &lora, err, sizeof err) == 0);
    m->lora = lora;
    /* Keras' own initial adapters */
    for (int64_t i = 0; i < c.num_layers; i++)
        for (int t = GT_LORA_QUERY; t <= GT_LORA_VALUE; t += 2) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(lora, i, (gt_lora_target)t);
            char p[192];
            snprintf(p, sizeof p, "/lora/init/%s/lora_kernel_a", ad->name);
            float *a = rd(f, p, ad->a.size);
            gt_lora_set_keras_a(ad, a);
            free(a);
            snprintf(p, sizeof p, "/lora/init/%s/lora_kernel_b", ad->name);
            float *b = rd(f, p, ad->b.size);
            memcpy(ad->b.data, b, sizeof(float) * (size_t)ad->b.size);
            free(b);
        }
    /* every adapter tensor is a slice for the optimizer; LoRA kernels are decayed in Keras */
    int n_slices = 0;
    gt_param_slice slices[64];
    for (int64_t i = 0; i < c.num_layers; i++)
        for (int t = GT_LORA_QUERY; t <= GT_LORA_VALUE; t += 2) {
            gt_lora_adapter *ad = (gt_lora_adapter *)gt_lora_get(lora, i, (gt_lora_target)t);
            slices[n_slices++] = (gt_param_slice){ad->a.name, ad->a.data, ad->a.grad, ad->a.size, true};
            slices[n_slices++] = (gt_param_slice){ad->b.name, ad->b.data, ad->b.grad, ad->b.size, true};
        }
    gt_optim_cfg oc;
    gt_optim_cfg_defaults(&oc, GT_OPT_ADAMW);
    oc.weight_decay = attr(f, "/lora", "weight_decay", 0);
    oc.beta_1 = attr(f, "/lora", "beta_1", 0);
    oc.beta_2 = attr(f, "/lora", "beta_2", 0);
    oc.epsilon = attr(f, "/lora", "epsilon", 0);
    double lr = attr(f, "/lora", "learning_rate", 0);
    gt_optim opt;
    ck_assert(gt_optim_init(&opt, &oc, slices, n_slices, err, sizeof err) == 0);

    int32_t *ids = rdi(f, "/batches/token_ids"), *mask32 = rdi(f, "/batches/padding_mask");
    int32_t *labels = rdi(f, "/batches/labels");
    float *weights = rd(f, "/batches/sample_weight", -1), *want = rd(f, "/expected/losses", 10);
    const int64_t B = 2, T = 9, BT = B * T;
    uint8_t mask[2 * 9];
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    double worst_loss = 0;
    for (int s = 0; s < 10; s++) {
        for (int64_t i = 0; i < BT; i++) mask[i] = (uint8_t)mask32[s * BT + i];
        gt_ctx_reset(&ctx);
        gt_lora_zero_grad(lora);
        gt_gemma_batch b = {.batch = B, .seq = T, .token_ids = ids + s * BT, .padding_mask = mask};
        double ws;
        gt_tensor *h = gt_gemma_hidden(&ctx, m, &b);
        gt_tensor *sum = gt_lm_head_loss(&ctx, h, m->embedding, 0, labels + s * BT,
                                         weights + s * BT, 64, &ws, NULL);
        gt_tensor *loss = gt_scale(&ctx, sum, 1.0 / (double)BT); /* KerasHub: / (B * T) */
        ck_assert_int_eq(gt_backward(&ctx, loss), GT_OK);
        double rel = fabs(loss->data[0] - want[s]) / fabs(want[s]);
        worst_loss = fmax(worst_loss, rel);
        ck_assert_msg(rel <= 1e-4, "step %d: loss %.7f vs KerasHub %.7f", s, loss->data[0], want[s]);
        if (s == 0) {
            double worst = 0;
            for (int k = 0; k < n_slices; k++) {
                char p[192];
                snprintf(p, sizeof p, "/lora/grads0/%s", slices[k].name);
                float *g = rd(f, p, slices[k].size);
                float *ours = malloc(sizeof(float) * (size_t)slices[k].size);
                if (k % 2 == 0) { /* A: compare in Keras layout */
                    const gt_lora_adapter *ad = gt_lora_get(lora, k / 4, (k / 2) % 2 ? GT_LORA_VALUE : GT_LORA_QUERY);
                    gt_lora_adapter tmp = *ad;
                    tmp.a.data = ad->a.grad;
                    gt_lora_get_keras_a(&tmp, ours);
                } else {
                    memcpy(ours, slices[k].grad, sizeof(float) * (size_t)slices[k].size);
                }
                double e = rel_err(ours, g, slices[k].size);
                worst = fmax(worst, e);
                ck_assert_msg(e <= 1e-3, "step-0 gradient of %s off by %.3g", slices[k].name, e);
                free(g);
                free(ours);
            }
            printf("lora: step-0 adapter gradients within %.2e of KerasHub\n", worst);
        }
        gt_optim_step(&opt, lr);
    }
    printf("lora: 10 step losses within %.2e of KerasHub\n", worst_loss);
    /* adapters after 10 updates */
    double worst = 0;
    for (int k = 0; k < n_slices; k += 2) {
        const gt_lora_adapter *ad = gt_lora_get(lora, k / 4, (k / 2) % 2 ? GT_LORA_VALUE : GT_LORA_QUERY);
        char p[192];
        snprintf(p, sizeof p, "/lora/final/%s/lora_kernel_a", ad->name);
        float *a = rd(f, p, ad->a.size), *ours = malloc(sizeof(float) * (size_t)ad->a.size);
        gt_lora_get_keras_a(ad, ours);
        worst = fmax(worst, rel_err(ours, a, ad->a.size));
        free(a);
        free(ours);
        snprintf(p, sizeof p, "/lora/final/%s/lora_kernel_b", ad->name);
        float *b = rd(f, p, ad->b.size);
        worst = fmax(worst, rel_err(ad->b.data, b, ad->b.size));
        free(b);
    }
    ck_assert_msg(worst <= 1e-3, "adapters after 10 steps off by %.3g", worst);
    printf("lora: adapters after 10 steps within %.2e of KerasHub\n", worst);
    gt_optim_free(&opt);
    gt_ctx_free(&ctx);
    free(ids);
    free(mask32);
    free(labels);
    free(weights);
    free(want);
    gt_lora_free(lora);
    gt_gemma_free(m);
    gt_h5_close(f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lora_parity");
    TCase *tc = tcase_create("kerashub");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lora_training_matches_kerashub);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
