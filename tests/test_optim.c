/* Optimizers against Keras 3 trajectories (tools/reference/make_optim_fixture.py ->
 * tests/fixtures/optim.h5: AdamW with "scale" excluded from decay, Adam with non-default betas,
 * SGD with momentum, SGD with weight decay; 10 steps, a different lr each step), schedules against
 * closed forms, global-norm clipping, the non-finite check, state save/restore by name, and the
 * thread-count independence of the update and of the norm. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/io/h5io.h"
#include "train/optim.h"

#define FIXTURE "tests/fixtures/optim.h5"
#define STEPS 10
#define NV 5
static const char *const var_names[NV] = {"kernel", "bias", "scale", "lora_kernel_a", "tiny"};

static float *rd(gt_h5 f, const char *path, int64_t *count) {
    float *d;
    int nd;
    int64_t shape[8], n = 1;
    char err[512];
    ck_assert_msg(gt_h5_read_f32(f, path, &d, &nd, shape, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (count) *count = n;
    return d;
}

static double attr(gt_h5 f, const char *obj, const char *name) {
    double v;
    char err[512];
    ck_assert_msg(gt_h5_attr_f64(f, obj, name, &v, err, sizeof err) == 0, "%s", err);
    return v;
}

/* max over elements of |a - b| / max(|b|, 1e-30); 0 where both are 0 */
static double max_rel(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > 0) worst = fmax(worst, d / fmax(fabs((double)b[i]), 1e-30));
    }
    return worst;
}

typedef struct {
    float *w[NV], *g[NV], *grads[NV];
    int64_t n[NV];
    gt_param_slice p[NV];
} vars;

static void load_vars(gt_h5 f, vars *v) {
    char path[128];
    for (int i = 0; i < NV; i++) {
        int64_t ng;
        snprintf(path, sizeof path, "/vars/%s/init", var_names[i]);
        v->w[i] = rd(f, path, &v->n[i]);
        snprintf(path, sizeof path, "/vars/%s/grads", var_names[i]);
        v->grads[i] = rd(f, path, &ng);
        ck_assert_int_eq(ng, STEPS * v->n[i]);
        v->g[i] = malloc(sizeof(float) * (size_t)v->n[i]);
        ck_assert_ptr_nonnull(v->g[i]);
        v->p[i] = (gt_param_slice){var_names[i], v->w[i], v->g[i], v->n[i], true};
    }
}

static void free_vars(vars *v) {
    for (int i = 0; i < NV; i++) {
        free(v->w[i]);
        free(v->g[i]);
        free(v->grads[i]);
    }
}

/* Runs one fixture optimizer for 10 steps; returns the worst relative error over all steps. */
static double run_keras_case(const char *key, gt_opt_kind kind, const char *const *exclude, int n_exclude) {
    char err[512], obj[128];
    gt_h5 f;
    ck_assert_msg(gt_h5_open_read(FIXTURE, &f, err, sizeof err) == 0, "%s", err);
    vars v;
    load_vars(f, &v);
    float *lrs;
    {
        int64_t n;
        lrs = rd(f, "/lr", &n);
        ck_assert_int_eq(n, STEPS);
    }
    snprintf(obj, sizeof obj, "/%s", key);
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, kind);
    c.weight_decay = attr(f, obj, "weight_decay");
    c.momentum = attr(f, obj, "momentum");
    if (kind != GT_OPT_SGD) {
        c.beta_1 = attr(f, obj, "beta_1");
        c.beta_2 = attr(f, obj, "beta_2");
        c.epsilon = attr(f, obj, "epsilon");
    }
    for (int i = 0; i < NV; i++) {
        v.p[i].decay = !gt_optim_name_excluded(var_names[i], exclude, n_exclude);
        snprintf(obj, sizeof obj, "/%s/%s", key, var_names[i]);
        bool keras_decays = attr(f, obj, "use_weight_decay") != 0;
        if (c.weight_decay > 0 && kind != GT_OPT_ADAM)
            ck_assert_msg(v.p[i].decay == keras_decays, "%s: decay flag of %s differs from Keras'", key,
                          var_names[i]);
    }
    float *after[NV];
    for (int i = 0; i < NV; i++) {
        snprintf(obj, sizeof obj, "/%s/%s/after", key, var_names[i]);
        int64_t n;
        after[i] = rd(f, obj, &n);
        ck_assert_int_eq(n, STEPS * v.n[i]);
    }
    gt_optim o;
    ck_assert_msg(gt_optim_init(&o, &c, v.p, NV, err, sizeof err) == 0, "%s", err);
    double worst = 0;
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < NV; i++)
            memcpy(v.g[i], v.grads[i] + t * v.n[i], sizeof(float) * (size_t)v.n[i]);
        gt_optim_step(&o, (double)lrs[t]);
        for (int i = 0; i < NV; i++) {
            double e = max_rel(v.w[i], after[i] + t * v.n[i], v.n[i]);
            ck_assert_msg(e <= 1e-6, "%s step %d: %s off Keras by %.3g (relative)", key, t, var_names[i], e);
            worst = fmax(worst, e);
        }
    }
    ck_assert_int_eq(gt_optim_get_step(&o), STEPS);
    /* the state arrays, found by Keras' names, equal Keras' optimizer variables */
    int n_kinds = kind == GT_OPT_SGD ? (c.momentum > 0 ? 1 : 0) : 2;
    ck_assert_int_eq(gt_optim_state_count(&o), NV * n_kinds);
    const char *kinds[2] = {"momentum", "velocity"};
    for (int i = 0; i < NV; i++)
        for (int k = 0; k < n_kinds; k++) {
            int idx = gt_optim_state_find(&o, var_names[i], kinds[k]);
            ck_assert_int_eq(idx, i * n_kinds + k); /* Keras' interleaved order */
            gt_optim_state_array sa;
            ck_assert_int_eq(gt_optim_state_get(&o, idx, &sa), 0);
            ck_assert_str_eq(sa.param, var_names[i]);
            ck_assert_str_eq(sa.kind, kinds[k]);
            ck_assert_int_eq(sa.size, v.n[i]);
            snprintf(obj, sizeof obj, "/%s/%s/%s", key, var_names[i], kinds[k]);
            float *want = rd(f, obj, NULL);
            double e = max_rel(sa.data, want, sa.size);
            ck_assert_msg(e <= 1e-6, "%s: %s %s off Keras by %.3g", key, var_names[i], kinds[k], e);
            free(want);
        }
    snprintf(obj, sizeof obj, "/%s/%s/velocity", key, var_names[0]);
    if (n_kinds < 2) ck_assert(!gt_h5_exists(f, obj));
    ck_assert_int_eq(gt_optim_state_find(&o, "kernel", "velocity") >= 0, n_kinds == 2);
    ck_assert_int_eq(gt_optim_state_find(&o, "nope", "momentum"), -1);
    gt_optim_free(&o);
    for (int i = 0; i < NV; i++) free(after[i]);
    free(lrs);
    free_vars(&v);
    gt_h5_close(f);
    printf("optim: %-13s 10 steps within %.2e of Keras\n", key, worst);
    return worst;
}

START_TEST(keras_adamw) {
    const char *ex[1] = {"scale"};
    run_keras_case("adamw", GT_OPT_ADAMW, ex, 1);
}
END_TEST

START_TEST(keras_adam) {
    run_keras_case("adam", GT_OPT_ADAM, NULL, 0);
}
END_TEST

START_TEST(keras_sgd_momentum) {
    run_keras_case("sgd_momentum", GT_OPT_SGD, NULL, 0);
}
END_TEST

START_TEST(keras_sgd_decay) {
    run_keras_case("sgd_decay", GT_OPT_SGD, NULL, 0);
}
END_TEST

START_TEST(name_exclusion) {
    const char *pat[3] = {"bias", "", "scale"};
    ck_assert(gt_optim_name_excluded("decoder_block_0/pre_ffw_norm/scale", pat, 3));
    ck_assert(gt_optim_name_excluded("dense/bias", pat, 3));
    ck_assert(!gt_optim_name_excluded("decoder_block_0/attention/query/lora_kernel_a", pat, 3));
    ck_assert(!gt_optim_name_excluded("token_embedding/embeddings", pat, 3)); /* "" matches nothing */
    ck_assert(!gt_optim_name_excluded("dense/bias", NULL, 0));
}
END_TEST

START_TEST(schedules) {
    const double lr = 2e-3, mn = 1e-4;
    const int64_t W = 10, T = 110;
    gt_schedule s = {GT_SCHED_COSINE, lr, mn, W, T};
    /* warmup: lr * (step + 1) / W, the same for every kind */
    for (int k = 0; k < 3; k++) {
        s.kind = (gt_sched_kind)k;
        ck_assert_double_eq_tol(gt_schedule_lr(&s, 0), lr / W, 1e-15);
        ck_assert_double_eq_tol(gt_schedule_lr(&s, 4), lr * 5 / W, 1e-15);
        ck_assert_double_eq_tol(gt_schedule_lr(&s, W - 1), lr, 1e-15);
        ck_assert_double_eq_tol(gt_schedule_lr(&s, W), lr, 1e-15);     /* decay starts at lr */
        ck_assert_double_eq_tol(gt_schedule_lr(&s, -3), lr / W, 1e-15); /* negative = step 0 */
    }
    s.kind = GT_SCHED_CONSTANT;
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 60), lr, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 5000), lr, 1e-15);
    s.kind = GT_SCHED_LINEAR;
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 60), (lr + mn) / 2, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 35), lr - (lr - mn) * 0.25, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, T - 1), mn + (lr - mn) / 100, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, T), mn, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, T + 50), mn, 1e-15);
    s.kind = GT_SCHED_COSINE;
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 60), (lr + mn) / 2, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 35), mn + (lr - mn) * 0.5 * (1 + cos(M_PI / 4)), 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, 85), mn + (lr - mn) * 0.5 * (1 + cos(3 * M_PI / 4)), 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, T), mn, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&s, T + 50), mn, 1e-15);
    /* no warmup: step 0 uses the full rate */
    gt_schedule nw = {GT_SCHED_LINEAR, lr, 0, 0, 100};
    ck_assert_double_eq_tol(gt_schedule_lr(&nw, 0), lr, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&nw, 50), lr / 2, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&nw, 100), 0, 1e-15);
    /* warmup as long as the run: warmup, then the floor */
    gt_schedule ww = {GT_SCHED_COSINE, lr, mn, 8, 8};
    ck_assert_double_eq_tol(gt_schedule_lr(&ww, 7), lr, 1e-15);
    ck_assert_double_eq_tol(gt_schedule_lr(&ww, 8), mn, 1e-15);
}
END_TEST

START_TEST(clipping) {
    float g1[2] = {3, 0}, g2[1] = {4}, w[3] = {0};
    gt_param_slice p[2] = {{"a", w, g1, 2, true}, {"b", w + 2, g2, 1, true}};
    ck_assert_double_eq(gt_grad_norm(p, 2), 5.0);
    ck_assert_double_eq(gt_grad_clip(p, 2, 10), 5.0);
    ck_assert(g1[0] == 3 && g1[1] == 0 && g2[0] == 4); /* below the threshold: untouched */
    ck_assert_double_eq(gt_grad_clip(p, 2, 5), 5.0);
    ck_assert(g1[0] == 3 && g2[0] == 4); /* at it: untouched (scale would be 1) */
    ck_assert_double_eq(gt_grad_clip(p, 2, 0), 5.0); /* 0 = off */
    ck_assert(g1[0] == 3 && g2[0] == 4);
    ck_assert_double_eq(gt_grad_clip(p, 2, 1), 5.0);
    ck_assert(g1[0] == 3.0f * (float)(1.0 / 5.0) && g2[0] == 4.0f * (float)(1.0 / 5.0)); /* exactly */
    ck_assert_double_eq_tol(gt_grad_norm(p, 2), 1, 1e-7);

    /* a larger list: the norm accumulated in double matches a long-double sum; clipping scales
     * every element by exactly clip / norm rounded once */
    enum { N1 = 70001, N2 = 333 };
    float *a = malloc(sizeof(float) * N1), *b = malloc(sizeof(float) * N2);
    float *a0 = malloc(sizeof(float) * N1);
    ck_assert(a && b && a0);
    long double ref = 0;
    for (int i = 0; i < N1; i++) {
        a[i] = (float)sin(0.37 * i) * (i % 7 == 0 ? 100.0f : 1.0f);
        ref += (long double)a[i] * a[i];
    }
    for (int i = 0; i < N2; i++) {
        b[i] = 1e-20f * (float)(i + 1);
        ref += (long double)b[i] * b[i];
    }
    memcpy(a0, a, sizeof(float) * N1);
    gt_param_slice q[2] = {{"big", a, a, N1, true}, {"small", b, b, N2, true}};
    double norm = gt_grad_norm(q, 2), want = (double)sqrtl(ref);
    ck_assert_msg(fabs(norm - want) <= 1e-13 * want, "norm %.17g vs %.17g", norm, want);
    double pre = gt_grad_clip(q, 2, 2.5);
    ck_assert(pre == norm);
    float f = (float)(2.5 / norm);
    for (int i = 0; i < N1; i++) ck_assert(a[i] == a0[i] * f);
    ck_assert_double_eq_tol(gt_grad_norm(q, 2), 2.5, 2.5e-6);
    /* non-finite norm: reported, gradients left alone */
    a[5] = INFINITY;
    ck_assert(isinf(gt_grad_clip(q, 2, 1.0)));
    ck_assert(a[6] == a0[6] * f);
    free(a);
    free(b);
    free(a0);
}
END_TEST

START_TEST(nonfinite_names_the_tensor) {
    enum { N = 100000 };
    float *big = calloc(N, sizeof(float)), small[3] = {1, 2, 3}, w[1];
    ck_assert_ptr_nonnull(big);
    gt_param_slice p[3] = {{"layer0/kernel", w, small, 3, true},
                           {"layer1/kernel", w, big, N, true},
                           {"layer2/scale", w, small, 3, false}};
    char err[256];
    int64_t at = -7;
    ck_assert_int_eq(gt_grad_find_nonfinite(p, 3, &at), -1);
    ck_assert_int_eq(at, -7);
    ck_assert_int_eq(gt_grad_check_finite(p, 3, err, sizeof err), 0);
    big[N - 2] = INFINITY;
    big[77777] = NAN; /* the first one in order wins */
    ck_assert_int_eq(gt_grad_find_nonfinite(p, 3, &at), 1);
    ck_assert_int_eq(at, 77777);
    ck_assert_int_eq(gt_grad_check_finite(p, 3, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "layer1/kernel[77777]") && strstr(err, "nan"), "%s", err);
    big[77777] = 0;
    ck_assert_int_eq(gt_grad_check_finite(p, 3, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "layer1/kernel[99998]") && strstr(err, "inf"), "%s", err);
    big[N - 2] = 0;
    small[2] = -INFINITY; /* slices 0 and 2 share it: slice 0 comes first */
    ck_assert_int_eq(gt_grad_find_nonfinite(p, 3, &at), 0);
    ck_assert_int_eq(at, 2);
    small[2] = 3e38f; /* large but finite */
    ck_assert_int_eq(gt_grad_find_nonfinite(p, 3, &at), -1);
    free(big);
}
END_TEST

/* Fills a list of slices with deterministic values; sizes straddle the parallel threshold. */
enum { NS = 4 };
static const int64_t rt_sizes[NS] = {5, 40000, 1, 12345};
static const char *const rt_names[NS] = {"emb", "block/kernel", "block/scale", "lm/bias"};

typedef struct {
    float *w[NS], *g[NS];
    gt_param_slice p[NS];
} plist;

static void plist_make(plist *l, unsigned seed) {
    for (int i = 0; i < NS; i++) {
        l->w[i] = malloc(sizeof(float) * (size_t)rt_sizes[i]);
        l->g[i] = malloc(sizeof(float) * (size_t)rt_sizes[i]);
        ck_assert(l->w[i] && l->g[i]);
        for (int64_t j = 0; j < rt_sizes[i]; j++) l->w[i][j] = (float)cos(0.01 * (double)(j + 31 * i + seed));
        l->p[i] = (gt_param_slice){rt_names[i], l->w[i], l->g[i], rt_sizes[i], i != 2};
    }
}

static void plist_grads(plist *l, int step) {
    for (int i = 0; i < NS; i++)
        for (int64_t j = 0; j < rt_sizes[i]; j++)
            l->g[i][j] = (float)sin(0.013 * (double)j + 0.7 * step + i) * (1.0f + (float)(j % 5));
}

static void plist_free(plist *l) {
    for (int i = 0; i < NS; i++) {
        free(l->w[i]);
        free(l->g[i]);
    }
}

static bool plist_same(const plist *a, const plist *b) {
    for (int i = 0; i < NS; i++)
        if (memcmp(a->w[i], b->w[i], sizeof(float) * (size_t)rt_sizes[i])) return false;
    return true;
}

/* Save after 3 steps, restore by name into a fresh optimizer whose slice list is in another
 * order, and check that the next 2 updates are bit-identical (weights and state). */
static void round_trip(gt_opt_kind kind, double momentum) {
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, kind);
    c.weight_decay = kind == GT_OPT_ADAM ? 0 : 0.01;
    c.momentum = momentum;
    plist a, b;
    plist_make(&a, 0);
    plist_make(&b, 0);
    gt_param_slice rev[NS];
    for (int i = 0; i < NS; i++) rev[i] = b.p[NS - 1 - i];
    char err[256];
    gt_optim oa, ob;
    ck_assert_msg(gt_optim_init(&oa, &c, a.p, NS, err, sizeof err) == 0, "%s", err);
    for (int s = 0; s < 3; s++) {
        plist_grads(&a, s);
        gt_optim_step(&oa, 1e-2 * (s + 1));
    }
    /* "checkpoint": copy the weights and every named state array, then the step */
    for (int i = 0; i < NS; i++) memcpy(b.w[i], a.w[i], sizeof(float) * (size_t)rt_sizes[i]);
    ck_assert_msg(gt_optim_init(&ob, &c, rev, NS, err, sizeof err) == 0, "%s", err);
    int n = gt_optim_state_count(&oa);
    ck_assert_int_eq(n, gt_optim_state_count(&ob));
    for (int k = 0; k < n; k++) {
        gt_optim_state_array src, dst;
        ck_assert_int_eq(gt_optim_state_get(&oa, k, &src), 0);
        int at = gt_optim_state_find(&ob, src.param, src.kind);
        ck_assert_int_ge(at, 0);
        ck_assert_int_eq(gt_optim_state_get(&ob, at, &dst), 0);
        ck_assert_int_eq(dst.size, src.size);
        memcpy(dst.data, src.data, sizeof(float) * (size_t)src.size);
    }
    gt_optim_state_array none;
    ck_assert_int_eq(gt_optim_state_get(&oa, n, &none), -1);
    ck_assert_int_eq(gt_optim_state_get(&oa, -1, &none), -1);
    ck_assert_int_eq(gt_optim_set_step(&ob, -1), -1);
    ck_assert_int_eq(gt_optim_set_step(&ob, gt_optim_get_step(&oa)), 0);
    for (int s = 3; s < 5; s++) {
        plist_grads(&a, s);
        plist_grads(&b, s);
        gt_optim_step(&oa, 1e-2 * (s + 1));
        gt_optim_step(&ob, 1e-2 * (s + 1));
        ck_assert_msg(plist_same(&a, &b), "kind %d: update %d after restore differs", (int)kind, s);
    }
    for (int k = 0; k < n; k++) {
        gt_optim_state_array x, y;
        gt_optim_state_get(&oa, k, &x);
        gt_optim_state_get(&ob, gt_optim_state_find(&ob, x.param, x.kind), &y);
        ck_assert(memcmp(x.data, y.data, sizeof(float) * (size_t)x.size) == 0);
    }
    /* without the step counter the bias correction differs: the restore is not vacuous */
    if (kind != GT_OPT_SGD) {
        plist c2;
        plist_make(&c2, 0);
        for (int i = 0; i < NS; i++) memcpy(c2.w[i], b.w[i], sizeof(float) * (size_t)rt_sizes[i]);
        gt_optim oc;
        ck_assert(gt_optim_init(&oc, &c, c2.p, NS, err, sizeof err) == 0);
        for (int k = 0; k < n; k++) {
            gt_optim_state_array x, y;
            gt_optim_state_get(&ob, k, &x);
            gt_optim_state_get(&oc, gt_optim_state_find(&oc, x.param, x.kind), &y);
            memcpy(y.data, x.data, sizeof(float) * (size_t)x.size);
        }
        plist_grads(&b, 5);
        plist_grads(&c2, 5);
        gt_optim_step(&ob, 1e-2);
        gt_optim_step(&oc, 1e-2);
        ck_assert(!plist_same(&b, &c2));
        gt_optim_free(&oc);
        plist_free(&c2);
    }
    gt_optim_free(&oa);
    gt_optim_free(&ob);
    plist_free(&a);
    plist_free(&b);
}

START_TEST(restore_adamw) { round_trip(GT_OPT_ADAMW, 0); }
END_TEST
START_TEST(restore_adam) { round_trip(GT_OPT_ADAM, 0); }
END_TEST
START_TEST(restore_sgd_momentum) { round_trip(GT_OPT_SGD, 0.9); }
END_TEST
START_TEST(restore_sgd_plain) { round_trip(GT_OPT_SGD, 0); }
END_TEST

/* The update and the norm give the same bits on 1 thread and on several, and one optimizer over
 * the whole list equals one optimizer per slice (the value-range split is invisible). */
START_TEST(thread_count_independent) {
    gt_opt_kind kinds[3] = {GT_OPT_ADAMW, GT_OPT_SGD, GT_OPT_ADAM};
    int saved = omp_get_max_threads();
    for (int k = 0; k < 3; k++) {
        gt_optim_cfg c;
        gt_optim_cfg_defaults(&c, kinds[k]);
        c.weight_decay = 0.05;
        c.momentum = 0.5;
        plist a, b, s;
        plist_make(&a, 3);
        plist_make(&b, 3);
        plist_make(&s, 3);
        char err[256];
        gt_optim oa, ob, os[NS];
        ck_assert(gt_optim_init(&oa, &c, a.p, NS, err, sizeof err) == 0);
        ck_assert(gt_optim_init(&ob, &c, b.p, NS, err, sizeof err) == 0);
        for (int i = 0; i < NS; i++) ck_assert(gt_optim_init(&os[i], &c, &s.p[i], 1, err, sizeof err) == 0);
        for (int step = 0; step < 3; step++) {
            plist_grads(&a, step);
            plist_grads(&b, step);
            plist_grads(&s, step);
            omp_set_num_threads(1);
            double na = gt_grad_norm(a.p, NS);
            gt_optim_step(&oa, 3e-3);
            for (int i = 0; i < NS; i++) gt_optim_step(&os[i], 3e-3);
            omp_set_num_threads(3);
            double nb = gt_grad_norm(b.p, NS);
            gt_optim_step(&ob, 3e-3);
            ck_assert_msg(na == nb, "norm %.17g on 1 thread, %.17g on 3", na, nb);
            ck_assert_msg(plist_same(&a, &b), "kind %d step %d: 1 vs 3 threads differ", k, step);
            ck_assert_msg(plist_same(&a, &s), "kind %d step %d: list vs per-slice differ", k, step);
        }
        if (oa.n_kinds)
            ck_assert(memcmp(oa.state, ob.state, sizeof(float) * (size_t)(oa.n_kinds * oa.n_values)) == 0);
        gt_optim_free(&oa);
        gt_optim_free(&ob);
        for (int i = 0; i < NS; i++) gt_optim_free(&os[i]);
        plist_free(&a);
        plist_free(&b);
        plist_free(&s);
    }
    omp_set_num_threads(saved);
}
END_TEST

START_TEST(init_errors_and_layout) {
    float w[4] = {0}, g[4] = {0};
    char err[256];
    gt_optim o;
    gt_optim_cfg c;
    gt_optim_cfg_defaults(&c, GT_OPT_ADAMW);
    ck_assert(c.beta_1 == 0.9 && c.beta_2 == 0.999 && c.epsilon == 1e-7 && c.weight_decay == 0.004);
    gt_param_slice dup[2] = {{"x", w, g, 2, true}, {"x", w + 2, g + 2, 2, true}};
    ck_assert_int_eq(gt_optim_init(&o, &c, dup, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "x appears twice"), "%s", err);
    gt_param_slice nul = {"y", w, NULL, 2, true};
    ck_assert_int_eq(gt_optim_init(&o, &c, &nul, 1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "y: grad buffer is NULL"), "%s", err);
    gt_param_slice neg = {"z", w, g, -1, true};
    ck_assert_int_eq(gt_optim_init(&o, &c, &neg, 1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "z: size -1"), "%s", err);
    gt_param_slice ok[2] = {{"a", w, g, 3, true}, {"b", w + 3, g + 3, 1, false}};
    c.beta_2 = 1.0;
    ck_assert_int_eq(gt_optim_init(&o, &c, ok, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "beta_2"), "%s", err);
    c.beta_2 = 0.999;
    c.epsilon = 0;
    ck_assert_int_eq(gt_optim_init(&o, &c, ok, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "epsilon"), "%s", err);
    gt_optim_cfg_defaults(&c, GT_OPT_SGD);
    c.momentum = 1.5;
    ck_assert_int_eq(gt_optim_init(&o, &c, ok, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "momentum"), "%s", err);

    /* layout: one allocation, m of every slice in order, then v */
    gt_optim_cfg_defaults(&c, GT_OPT_ADAM);
    ck_assert_msg(gt_optim_init(&o, &c, ok, 2, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(o.n_values, 4);
    ck_assert(o.m == o.state && o.v == o.state + 4);
    ck_assert(o.offset[0] == 0 && o.offset[1] == 3 && o.offset[2] == 4);
    gt_optim_state_array sa;
    ck_assert_int_eq(gt_optim_state_get(&o, 3, &sa), 0);
    ck_assert(!strcmp(sa.param, "b") && !strcmp(sa.kind, "velocity"));
    ck_assert(sa.data == o.state + 7 && sa.size == 1);
    for (int i = 0; i < 8; i++) ck_assert(o.state[i] == 0);
    gt_optim_free(&o);
    /* plain SGD keeps no state; an empty list is valid */
    gt_optim_cfg_defaults(&c, GT_OPT_SGD);
    ck_assert(gt_optim_init(&o, &c, ok, 2, err, sizeof err) == 0);
    ck_assert(o.state == NULL && gt_optim_state_count(&o) == 0);
    gt_optim_step(&o, 0.5);
    ck_assert(o.step == 1);
    gt_optim_free(&o);
    gt_optim_cfg_defaults(&c, GT_OPT_ADAMW);
    ck_assert(gt_optim_init(&o, &c, NULL, 0, err, sizeof err) == 0);
    gt_optim_step(&o, 0.5);
    ck_assert_int_eq(gt_optim_state_count(&o), 0);
    gt_optim_free(&o);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, keras_adamw);
    tcase_add_test(tc, keras_adam);
    tcase_add_test(tc, keras_sgd_momentum);
    tcase_add_test(tc, keras_sgd_decay);
    tcase_add_test(tc, name_exclusion);
    tcase_add_test(tc, schedules);
    tcase_add_test(tc, clipping);
    tcase_add_test(tc, nonfinite_names_the_tensor);
    tcase_add_test(tc, restore_adamw);
    tcase_add_test(tc, restore_adam);
    tcase_add_test(tc, restore_sgd_momentum);
    tcase_add_test(tc, restore_sgd_plain);
    tcase_add_test(tc, thread_count_independent);
    tcase_add_test(tc, init_errors_and_layout);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* print the per-optimizer summary lines */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
