/* The decode path's int8 dot products (autograd/qdot.h): activation quantisation, every kernel
 * against a double-precision sum over the same quantised values, Q5_0 -> Q8_0 exact, the op's
 * refusals, and a tiny Gemma 3 decoded token by token with int8 products against the same q8_0
 * model on its fp32 path (logits within a stated tolerance, same greedy tokens), plus
 * `generate --weights` end to end. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/qdot.h"
#include "autograd/quant.h"
#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/generate.h"
#include "models/io/gguf_export.h"
#include "models/io/gguf_writer.h"
#include "models/io/h5io.h"
#include "tests/testdata.h"
#include "train/loader.h"
#include "tests/check_main.h"

static double rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

static void *xbuf(int64_t n) { return aligned_alloc(64, (size_t)(gt_qdot_x_bytes(n) + 63) / 64 * 64); }

START_TEST(quantize_rounds_like_q8_0) {
    float x[96];
    uint64_t s = 3;
    for (int i = 0; i < 96; i++) x[i] = (float)rnd(&s) * (i < 32 ? 1.0f : 50.0f);
    for (int i = 64; i < 96; i++) x[i] = 0; /* an all-zero block */
    x[5] = -1.0f, x[6] = 1.0f;               /* the first block's max, both signs */
    void *b = xbuf(96);
    gt_qdot_x q;
    gt_qdot_quantize(x, 96, b, &q);
    ck_assert(q.n == 96 && q.d[2] == 0.0f);
    ck_assert(q.d[0] == 1.0f / 127.0f && q.q[5] == -127 && q.q[6] == 127);
    for (int i = 0; i < 64; i++) {
        ck_assert(abs(q.q[i]) <= 127);
        ck_assert_msg(fabs(q.q[i] * q.d[i / 32] - x[i]) <= 0.5 * q.d[i / 32] * (1 + 1e-6), "value %d", i);
    }
    for (int i = 64; i < 96; i++) ck_assert(q.q[i] == 0);
    free(b);
}
END_TEST

/* Every kernel's matvec against the double sum of dw * dx * q_w * q_x: they differ only in the
 * order of fp32 sums, so within 1e-5 of the sum of |terms|. Widths with an odd block count too. */
START_TEST(kernels_match_the_exact_sum) {
    static const int64_t shapes[][2] = {{37, 640}, {300, 96}, {5, 2048}, {64, 32}};
    for (size_t sh = 0; sh < 4; sh++) {
        int64_t R = shapes[sh][0], C = shapes[sh][1];
        float *w = malloc(sizeof(float) * (size_t)(R * C)), *x = malloc(sizeof(float) * (size_t)C);
        float *y = malloc(sizeof(float) * (size_t)R);
        uint8_t *wq = malloc((size_t)gt_q8_bytes(R * C));
        uint64_t s = 11 + sh;
        for (int64_t i = 0; i < R * C; i++) w[i] = (float)rnd(&s) * (i % 97 == 0 ? 5 : 1);
        for (int64_t i = 0; i < C; i++) x[i] = (float)rnd(&s) * 3;
        gt_q8_quantize(w, wq, R * C);
        void *b = xbuf(C);
        gt_qdot_x q;
        gt_qdot_quantize(x, C, b, &q);
        float *wd = malloc(sizeof(float) * (size_t)(R * C));
        gt_q8_dequant(wq, wd, R * C);
        for (gt_qdot_kern k = GT_QDOT_SCALAR; k <= GT_QDOT_VNNI512; k++) {
            if (gt_qdot_set_kernel(k) != k) continue; /* no VNNI on this CPU */
            memset(y, 0xff, sizeof(float) * (size_t)R);
            gt_qdot_matvec(k, wq, R, &q, y);
            for (int64_t r = 0; r < R; r++) {
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < C; i++) {
                    double t = (double)wd[r * C + i] * q.q[i] * q.d[i / 32];
                    ref += t, mag += fabs(t);
                }
                ck_assert_msg(fabs(y[r] - ref) <= 1e-5 * mag, "%s [%lld x %lld] row %lld: %g vs %g",
                              gt_qdot_kernel_name(k), (long long)R, (long long)C, (long long)r, y[r], ref);
            }
        }
        gt_qdot_set_kernel(GT_QDOT_VNNI512);
        free(w), free(x), free(y), free(wq), free(wd), free(b);
    }
}
END_TEST

/* Q5_0 blocks packed as GGUF lays them out (low nibbles: values 0-15 then 16-31 in the high
 * nibbles; bit j of qh: value j's fifth bit) come out as the same d and q - 16. */
START_TEST(q5_0_converts_exactly) {
    uint8_t src[3 * 22], dst[3 * GT_Q8_BYTES];
    int q[3][32];
    uint64_t s = 5;
    for (int b = 0; b < 3; b++) {
        uint8_t *o = src + b * 22;
        uint16_t d = (uint16_t)(0x2c00 + b); /* fp16 scales around 1/16 */
        memcpy(o, &d, 2);
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) {
            q[b][j] = b == 2 ? (j % 2 ? 31 : 0) : (int)((rnd(&s) + 1) * 16) & 31;
            qh |= (uint32_t)(q[b][j] >> 4) << j;
        }
        memcpy(o + 2, &qh, 4);
        for (int j = 0; j < 16; j++) o[6 + j] = (uint8_t)((q[b][j] & 15) | (q[b][j + 16] & 15) << 4);
    }
    gt_qdot_q5_0_to_q8_0(src, dst, 3);
    for (int b = 0; b < 3; b++) {
        ck_assert(memcmp(dst + b * GT_Q8_BYTES, src + b * 22, 2) == 0);
        const int8_t *v = (const int8_t *)(dst + b * GT_Q8_BYTES + 2);
        for (int j = 0; j < 32; j++) ck_assert_msg(v[j] == q[b][j] - 16, "block %d value %d: %d vs %d", b, j, v[j], q[b][j] - 16);
    }
}
END_TEST

START_TEST(op_refuses_gradients_and_bad_shapes) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    uint8_t w[4 * GT_Q8_BYTES] = {0};
    int64_t sh[2] = {1, 64};
    gt_tensor *x = gt_zeros(&ctx, 2, sh);
    x->requires_grad = true;
    ck_assert(gt_qdot_linear(&ctx, x, w, 2, 64) == NULL);
    ck_assert_msg(strstr(ctx.err, "inference only"), "%s", ctx.err);
    gt_ctx_reset(&ctx);
    ctx.grad_enabled = false;
    x = gt_zeros(&ctx, 2, sh);
    ck_assert(gt_qdot_linear(&ctx, x, w, 2, 48) == NULL);
    ck_assert_msg(strstr(ctx.err, "does not fit"), "%s", ctx.err);
    gt_ctx_reset(&ctx);
    gt_tensor *y = gt_qdot_linear(&ctx, x, w, 2, 64);
    ck_assert(y && y->shape[1] == 2 && y->data[0] == 0 && y->data[1] == 0);
    gt_ctx_free(&ctx);
}
END_TEST

static gt_gemma_config tiny_cfg(void) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 3);
    c.vocab_size = 8192; /* the committed tokenizer's (the CLI test writes a GGUF) */
    c.num_layers = 3;
    c.hidden_dim = 128;
    c.intermediate_dim = 256;
    c.num_query_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 32;
    c.sliding_window = 6;
    return c;
}

static gt_gemma *tiny_q8(void) {
    gt_gemma_config c = tiny_cfg();
    char err[256];
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create_frozen(&c, GT_FROZEN_Q8_0, &m, err, sizeof err) == 0, "%s", err);
    gt_gemma_init_random(m, 21, 0.08);
    m->int8_matvec = true;
    return m;
}

/* Logits of each step of a 12-token decode after a 5-token prompt, into z [13][V]. */
static void decode(const gt_gemma *m, const int32_t *ids, gt_real *z) {
    int64_t V = m->cfg.vocab_size;
    gt_gemma_cache cache;
    char err[256];
    ck_assert_msg(gt_gemma_cache_init(&cache, m, 32, err, sizeof err) == 0, "%s", err);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    for (int s = 0; s < 13; s++) {
        gt_ctx_reset(&ctx);
        gt_tensor *l = s == 0 ? gt_gemma_step(&ctx, m, &cache, ids, 5) : gt_gemma_step(&ctx, m, &cache, ids + 4 + s, 1);
        ck_assert_msg(l != NULL, "%s", ctx.err);
        memcpy(z + s * V, l->data, sizeof(gt_real) * (size_t)V);
    }
    gt_ctx_free(&ctx);
    gt_gemma_cache_free(&cache);
}

/* The same token stream through both paths (teacher-forced, so one flip cannot derail the
 * comparison): the int8 path's logits within 2% of the logits' range of the q8_0 fp32 path's,
 * and the argmax the same wherever the fp32 path's top two differ by more than that. */
START_TEST(tiny_gemma_decodes_like_the_fp32_path) {
    gt_gemma *m = tiny_q8();
    int64_t V = m->cfg.vocab_size;
    int32_t ids[17];
    uint64_t s = 9;
    for (int i = 0; i < 17; i++) ids[i] = (int32_t)((rnd(&s) + 1) / 2 * (double)(V - 1));
    gt_real *z8 = malloc(sizeof(gt_real) * (size_t)(13 * V)), *zf = malloc(sizeof(gt_real) * (size_t)(13 * V));
    for (gt_qdot_kern k = GT_QDOT_SCALAR; k <= GT_QDOT_VNNI512; k++) {
        if (gt_qdot_set_kernel(k) != k) continue;
        decode(m, ids, z8);
        gt_qdot_set_kernel(GT_QDOT_OFF);
        decode(m, ids, zf);
        double worst = 0;
        for (int st = 0; st < 13; st++) {
            const gt_real *a = z8 + st * V, *b = zf + st * V;
            double lo = b[0], hi = b[0], diff = 0;
            int64_t best = 0, second = -1, b8 = 0;
            for (int64_t v = 0; v < V; v++) {
                lo = fmin(lo, b[v]), hi = fmax(hi, b[v]), diff = fmax(diff, fabs(a[v] - b[v]));
                if (b[v] > b[best]) second = best, best = v;
                else if (second < 0 || b[v] > b[second]) second = v;
                if (a[v] > a[b8]) b8 = v;
            }
            ck_assert(hi - lo > 0.1);
            ck_assert_msg(diff <= 0.02 * (hi - lo), "%s step %d: logits differ by %g (range %g)", gt_qdot_kernel_name(k), st,
                          diff, hi - lo);
            if (b[best] - b[second] > 0.02 * (hi - lo)) ck_assert_int_eq(b8, best);
            worst = fmax(worst, diff / (hi - lo));
        }
        printf("qdot %s: tiny Gemma 3 decode logits within %.2e of the range of the fp32 path's\n",
               gt_qdot_kernel_name(k), worst);
    }
    gt_qdot_set_kernel(GT_QDOT_VNNI512);
    free(z8), free(zf);
    gt_gemma_free(m);
}
END_TEST

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = 0;
    return pclose(p);
}

/* generate on a GGUF file: auto (q8_0 and int8 products) prints the same greedy text as
 * --weights q8_0, and GT_QDOT_KERNEL=off (the q8_0 model's fp32 path) the same here; a bad
 * --weights value is one line and exit 2. */
START_TEST(cli_weights) {
    gt_gemma_config c = tiny_cfg();
    char err[512], path[128], cmd[1024], a[4096], b[4096], e[4096];
    gt_gemma *m;
    gt_tokenizer *tok;
    ck_assert(gt_gemma_create(&c, false, &m, err, sizeof err) == 0);
    gt_gemma_init_random(m, 4, 0.08);
    ck_assert_msg(gt_tok_load("tests/fixtures/gemma3-tokenizer-8k.json", &tok, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "/tmp/gt-test-qdot-%d.gguf", (int)getpid());
    ck_assert_msg(gt_gguf_export_model(m, tok, path, GT_GGML_Q8_0, "tiny", err, sizeof err) == 0, "%s", err);
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    snprintf(cmd, sizeof cmd, "%s generate --model %s --stop -1 --max-new-tokens 8 'Debian package' 2>&1", bin, path);
    ck_assert_msg(run(cmd, a, sizeof a) == 0, "%s", a);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --weights q8_0 --stop -1 --max-new-tokens 8 'Debian package' 2>&1",
             bin, path);
    ck_assert_msg(run(cmd, b, sizeof b) == 0, "%s", b);
    ck_assert_str_eq(a, b);
    snprintf(cmd, sizeof cmd, "GT_QDOT_KERNEL=off %s generate --model %s --stop -1 --max-new-tokens 8 'Debian package' 2>&1",
             bin, path);
    ck_assert_msg(run(cmd, b, sizeof b) == 0, "%s", b);
    ck_assert_str_eq(a, b);
    ck_assert(strlen(a) > strlen("Debian package") + 8);
    snprintf(cmd, sizeof cmd, "%s generate --model %s --weights int4 'x' 2>&1", bin, path);
    ck_assert_int_eq(WEXITSTATUS(run(cmd, e, sizeof e)), 2);
    ck_assert_str_eq(e, "generate: --weights: expected auto, fp32 or q8_0, got 'int4'\n");
    unlink(path);
    gt_tok_free(tok);
    gt_gemma_free(m);
}
END_TEST

/* Decode after the prompt ids[0..np): the logits of n steps into z [n][V]; the token fed after
 * step s is ids[np + s], written first as the argmax when greedy (then this is greedy decoding). */
static void forced(const gt_gemma *m, int32_t *ids, int64_t np, int64_t n, bool greedy, float *z) {
    int64_t V = m->cfg.vocab_size;
    gt_gemma_cache cache;
    char err[256];
    ck_assert_msg(gt_gemma_cache_init(&cache, m, np + n, err, sizeof err) == 0, "%s", err);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    for (int64_t s = 0; s < n; s++) {
        gt_ctx_reset(&ctx);
        gt_tensor *l = s == 0 ? gt_gemma_step(&ctx, m, &cache, ids, np) : gt_gemma_step(&ctx, m, &cache, ids + np + s - 1, 1);
        ck_assert_msg(l != NULL, "%s", ctx.err);
        memcpy(z + s * V, l->data, sizeof(float) * (size_t)V);
        int64_t best = 0;
        for (int64_t v = 1; greedy && v < V; v++) best = l->data[v] > l->data[best] ? v : best;
        if (greedy) ids[np + s] = (int32_t)best;
    }
    gt_ctx_free(&ctx);
    gt_gemma_cache_free(&cache);
}

/* The real 270M (skipped without it): loaded as q8_0 (Q8_0 and Q5_0 tensors exact, Q4_K and
 * Q6_K requantised). The fp32 model's 32 greedy tokens teacher-forced through it: every step's
 * logits within 5% of max|logit| (measured: 2.7e-2 in the optimised build, 3.3e-2 in the
 * sanitizer build, whose fp32 rounding differs), and the same argmax wherever the fp32 top two are further apart
 * than twice that step's largest logit difference (a near-tie either way is no error). Free
 * running, its greedy tokens equal the fp32 model's up to the first such near-tie. */
START_TEST(real_270m_decodes_like_fp32) {
    const char *path = gt_test_gemma3_270m_gguf("test_qdot real_270m_decodes_like_fp32");
    if (!path || gt_qdot_kernel() == GT_QDOT_OFF) return;
    char err[1024];
    gt_gemma *q8, *f32;
    ck_assert_msg(gt_load_model_frozen(path, GT_FROZEN_Q8_0, &q8, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(gt_load_model(path, false, &f32, NULL, err, sizeof err) == 0, "%s", err);
    q8->int8_matvec = true;
    gt_h5 h;
    ck_assert(gt_h5_open_read("tests/fixtures/gemma3_270m_ref.h5", &h, err, sizeof err) == 0);
    int32_t *prompt;
    int nd;
    int64_t shape[8], np;
    ck_assert(gt_h5_read_i32(h, "/prompt_ids", &prompt, &nd, shape, err, sizeof err) == 0);
    np = shape[0];
    gt_h5_close(h);
    enum { N = 32 };
    int64_t V = q8->cfg.vocab_size;
    int32_t ids[64], idq[64];
    float *zq = malloc(sizeof(float) * (size_t)(N * V)), *zf = malloc(sizeof(float) * (size_t)(N * V));
    memcpy(ids, prompt, sizeof(int32_t) * (size_t)np);
    memcpy(idq, prompt, sizeof(int32_t) * (size_t)np);
    forced(f32, ids, np, N, true, zf);
    forced(q8, ids, np, N, false, zq);
    double worst = 0;
    int agree = 0;
    bool near_tie[N];
    for (int s = 0; s < N; s++) {
        const float *a = zq + s * V, *b = zf + s * V;
        double mx = 0, diff = 0, second = -INFINITY;
        int64_t ta = 0, tb = ids[np + s];
        for (int64_t v = 0; v < V; v++) {
            mx = fmax(mx, fabs(b[v])), diff = fmax(diff, fabs(a[v] - b[v]));
            ta = a[v] > a[ta] ? v : ta;
            if (v != tb) second = fmax(second, b[v]);
        }
        worst = fmax(worst, diff / mx);
        agree += ta == tb;
        near_tie[s] = b[tb] - second <= 2 * diff;
        ck_assert_msg(diff <= 0.05 * mx, "step %d: logits differ by %g, max|logit| %g", s, diff, mx);
        ck_assert_msg(ta == tb || near_tie[s], "step %d: argmax %lld vs fp32 %lld, %g apart (diff %g)", s,
                      (long long)ta, (long long)tb, b[tb] - second, diff);
    }
    forced(q8, idq, np, N, true, zq);
    int same = 0;
    while (same < N && idq[np + same] == ids[np + same]) same++;
    ck_assert_msg(same == N || near_tie[same], "free-running greedy token %d: %d vs fp32 %d, not a near-tie", same,
                  idq[np + same], ids[np + same]);
    printf("qdot %s, real 270M: fp32's %d greedy tokens teacher-forced: same argmax at %d, logits within %.2e x "
           "max|logit|; free running, the first %d greedy tokens equal fp32's\n",
           gt_qdot_kernel_name(gt_qdot_kernel()), N, agree, worst, same);
    free(zq), free(zf), free(prompt);
    gt_gemma_free(q8);
    gt_gemma_free(f32);
}
END_TEST

int main(void) {
    Suite *s = suite_create("qdot");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, quantize_rounds_like_q8_0);
    tcase_add_test(tc, kernels_match_the_exact_sum);
    tcase_add_test(tc, q5_0_converts_exactly);
    tcase_add_test(tc, op_refuses_gradients_and_bad_shapes);
    tcase_add_test(tc, tiny_gemma_decodes_like_the_fp32_path);
    tcase_add_test(tc, cli_weights);
    tcase_add_test(tc, real_270m_decodes_like_fp32);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
