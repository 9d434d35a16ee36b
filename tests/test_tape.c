/* Engine plumbing: sticky errors with messages, frozen tensors, arena reuse, backward misuse. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "tests/check_main.h"

START_TEST(bad_shapes_give_a_message_not_an_abort) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sa[2] = {3, 4}, sb[2] = {5, 6};
    gt_tensor *a = gt_zeros(&ctx, 2, sa), *b = gt_zeros(&ctx, 2, sb);
    ck_assert_ptr_null(gt_matmul(&ctx, a, b, false, false));
    ck_assert_int_eq(ctx.status, GT_ERR_SHAPE);
    ck_assert_msg(strstr(ctx.err, "matmul") && strstr(ctx.err, "[3,4]") && strstr(ctx.err, "[5,6]"),
                  "message: %s", ctx.err);
    /* Sticky: a later valid op returns NULL and keeps the first message. */
    char first[512];
    strcpy(first, ctx.err);
    ck_assert_ptr_null(gt_matmul(&ctx, a, a, false, true));
    ck_assert_str_eq(ctx.err, first);
    gt_ctx_reset(&ctx);
    ck_assert(gt_ok(&ctx));
    a = gt_zeros(&ctx, 2, sa);
    ck_assert_ptr_nonnull(gt_matmul(&ctx, a, a, false, true));
    int64_t bad[2] = {5, 5};
    ck_assert_ptr_null(gt_reshape(&ctx, a, 2, bad));
    ck_assert_msg(strstr(ctx.err, "reshape") && strstr(ctx.err, "12"), "message: %s", ctx.err);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(embedding_rejects_out_of_range_id) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[2] = {10, 4};
    gt_tensor *t = gt_zeros(&ctx, 2, s);
    int32_t ids[3] = {1, 10, 2};
    ck_assert_ptr_null(gt_embedding(&ctx, t, ids, 3));
    ck_assert_msg(strstr(ctx.err, "id 10") && strstr(ctx.err, "position 1"), "message: %s", ctx.err);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(no_tape_without_trainable_inputs) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[2] = {3, 3};
    gt_tensor *w = gt_tensor_new(2, s, false);
    gt_tensor *x = gt_zeros(&ctx, 2, s);
    gt_tensor *y = gt_matmul(&ctx, x, w, false, false);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq(ctx.n_nodes, 0);
    ck_assert_int_ne(gt_backward(&ctx, gt_sum(&ctx, y)), GT_OK);
    ck_assert_msg(strstr(ctx.err, "requires a gradient"), "message: %s", ctx.err);
    gt_tensor_free(w);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(grad_disabled_records_nothing) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    ctx.grad_enabled = false;
    int64_t s[2] = {3, 3};
    gt_tensor *w = gt_tensor_new(2, s, true);
    gt_tensor *y = gt_matmul(&ctx, w, w, false, false);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq(ctx.n_nodes, 0);
    gt_tensor_free(w);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(gradients_accumulate_across_backward_passes) {
    int64_t s[2] = {2, 2};
    gt_tensor *w = gt_tensor_new(2, s, true);
    for (int i = 0; i < 4; i++) w->data[i] = (gt_real)(i + 1);
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    for (int pass = 0; pass < 2; pass++) {
        gt_ctx_reset(&ctx);
        ck_assert_int_eq(gt_backward(&ctx, gt_sum(&ctx, w)), GT_OK);
    }
    for (int i = 0; i < 4; i++) ck_assert(w->grad[i] == 2);
    gt_tensor_free(w);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(backward_needs_a_scalar) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t s[2] = {2, 2};
    gt_tensor *w = gt_tensor_new(2, s, true);
    ck_assert_int_eq(gt_backward(&ctx, gt_matmul(&ctx, w, w, false, false)), GT_ERR_STATE);
    ck_assert_msg(strstr(ctx.err, "one element"), "message: %s", ctx.err);
    gt_tensor_free(w);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(arena_folds_into_one_block_and_stops_allocating) {
    gt_arena a;
    gt_arena_init(&a, 1024);
    for (int i = 0; i < 10; i++) ck_assert_ptr_nonnull(gt_arena_alloc(&a, 1000));
    size_t peak = a.peak;
    ck_assert_int_ge(peak, 10000);
    gt_arena_reset(&a);
    ck_assert_int_ge(a.capacity, peak);
    size_t cap = a.capacity;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 10; i++) {
            void *p = gt_arena_alloc(&a, 1000);
            ck_assert_ptr_nonnull(p);
            ck_assert_int_eq((uintptr_t)p % 64, 0);
        }
        ck_assert_int_eq(a.capacity, cap); /* same-shaped step: no new block */
        gt_arena_reset(&a);
    }
    gt_arena_free(&a);
}
END_TEST

START_TEST(nonleaf_gradients_are_released_and_their_memory_reused) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sh[1] = {4};
    gt_real v[4] = {1, 2, 3, 4};
    gt_tensor *x = gt_from_data(&ctx, v, 1, sh, true);
    gt_tensor *y = gt_scale(&ctx, x, 2);
    ck_assert_int_eq(gt_backward(&ctx, gt_sum(&ctx, y)), GT_OK);
    for (int i = 0; i < 4; i++) ck_assert(x->grad[i] == 2); /* a leaf keeps its gradient */
    ck_assert_ptr_null(y->grad);                              /* a non-leaf's is released */
    /* released neighbours merge: two 256-byte pieces serve one 512-byte tensor, zeroed */
    gt_ctx_reset(&ctx);
    gt_real *a = gt_alloc(&ctx, 256), *b = gt_alloc(&ctx, 256);
    ck_assert_ptr_eq((char *)a + 256, (char *)b);
    memset(a, 0xff, 256);
    memset(b, 0xff, 256);
    gt_release(&ctx, b, 256);
    gt_release(&ctx, a, 256);
    int64_t n[1] = {512 / (int64_t)sizeof(gt_real)};
    gt_tensor *z = gt_zeros(&ctx, 1, n);
    ck_assert_ptr_eq(z->data, a);
    for (int64_t i = 0; i < n[0]; i++) ck_assert(z->data[i] == 0);
    size_t used = ctx.arena.used;
    gt_release(&ctx, z->data, 512);
    int64_t m[1] = {16};
    gt_tensor *w = gt_empty(&ctx, 1, m); /* the struct is new, the data reused */
    ck_assert_ptr_eq(w->data, a);
    ck_assert_int_le(ctx.arena.used, used + 256);
    gt_ctx_free(&ctx);
}
END_TEST


/* ---------------------------------------------------------------- activation lifetime */

/* Each case: one op on two step tensors a, b made inside a scope that keeps only a scaled copy of
 * the op's output, so every value the op's backward reads but did not declare would be released
 * before backward runs. */
enum { LT_MUL, LT_GELU, LT_GEGLU, LT_SOFTMAX, LT_SOFTCAP, LT_MATMUL, LT_RMSNORM, LT_ATTN, LT_CE, LT_N };
static const char *const lt_names[LT_N] = {"mul", "gelu", "geglu", "softmax", "softcap", "matmul",
                                           "rmsnorm", "attention", "cross_entropy"};

static gt_tensor *lt_op(gt_ctx *ctx, int op, gt_tensor *a, gt_tensor *b) {
    static const int32_t labels[8] = {0, 3, 1, 2, 2, 0, 3, 1};
    gt_attn_cfg attn = {.scale = 0.5, .causal = true};
    int64_t rows[2] = {8, 4};
    switch (op) {
    case LT_MUL: return gt_mul(ctx, a, b);
    case LT_GELU: return gt_gelu(ctx, a);
    case LT_GEGLU: return gt_geglu(ctx, a, b);
    case LT_SOFTMAX: return gt_softmax(ctx, a);
    case LT_SOFTCAP: return gt_softcap(ctx, a, 0.7);
    case LT_MATMUL: return gt_matmul(ctx, a, b, false, true);
    case LT_RMSNORM: return gt_rmsnorm(ctx, a, NULL, 1e-6, false);
    case LT_ATTN: return gt_attention(ctx, a, b, b, &attn);
    default: return gt_cross_entropy(ctx, gt_reshape(ctx, a, 2, rows), labels, NULL, NULL, NULL);
    }
}

/* d(sum z^2)/d(xa, xb) for z = 2 op(1.5 xa, 0.5 xb); with scoped, a, b and op's output die in a
 * scope. Returns the status of backward; the gradients land in ga, gb. */
static int lt_grads(int op, bool scoped, gt_real *ga, gt_real *gb) {
    int64_t sh[4] = {1, 4, 2, 4};
    gt_real va[32], vb[32];
    for (int i = 0; i < 32; i++) {
        va[i] = (gt_real)(0.37 * ((i * 7) % 11) - 1.6);
        vb[i] = (gt_real)(0.29 * ((i * 5) % 13) - 1.5);
    }
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_tensor *xa = gt_from_data(&ctx, va, 4, sh, true), *xb = gt_from_data(&ctx, vb, 4, sh, true);
    gt_scope s = gt_scope_begin(&ctx);
    gt_tensor *a = gt_scale(&ctx, xa, 1.5), *b = gt_scale(&ctx, xb, 0.5);
    gt_tensor *z = gt_scale(&ctx, lt_op(&ctx, op, a, b), 2);
    if (scoped) {
        gt_scope_end(&ctx, s, &z, 1);
        ck_assert_int_eq(z ? z->life : -1, GT_LIFE_LIVE);
    }
    int rc = gt_backward(&ctx, gt_sum(&ctx, gt_mul(&ctx, z, z)));
    if (rc != GT_OK) fprintf(stderr, "%s: %s\n", lt_names[op], ctx.err);
    if (rc == GT_OK && scoped) /* every tensor the scope let go is released after backward */
        ck_assert(a->life == GT_LIFE_RELEASED && b->life == GT_LIFE_RELEASED && !a->data);
    memset(ga, 0, sizeof va);
    memset(gb, 0, sizeof vb); /* unary ops leave xb without a gradient */
    if (xa->grad) memcpy(ga, xa->grad, sizeof va);
    if (xb->grad) memcpy(gb, xb->grad, sizeof vb);
    gt_ctx_free(&ctx);
    return rc;
}

/* The test that fails when an activation is freed too early: with the tape deciding lifetimes,
 * each op's gradients equal (bit for bit) those of a run that frees nothing, and a backward that
 * reads a value its op did not declare (so the tape released it) is an error, not garbage. */
START_TEST(no_activation_is_freed_before_its_last_backward_read) {
    for (int op = 0; op < LT_N; op++) {
        gt_real ga[32], gb[32], ra[32], rb[32];
        ck_assert_int_eq(lt_grads(op, false, ra, rb), GT_OK);
        ck_assert_msg(lt_grads(op, true, ga, gb) == GT_OK, "%s: backward failed", lt_names[op]);
        ck_assert_msg(!memcmp(ga, ra, sizeof ga) && !memcmp(gb, rb, sizeof gb),
                      "%s: gradients differ once intermediates are released", lt_names[op]);
    }
}
END_TEST

START_TEST(scope_releases_what_no_backward_reads_and_keeps_the_rest) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sh[1] = {4};
    gt_real v[4] = {0.5, -1, 2, 0.25};
    gt_tensor *x = gt_from_data(&ctx, v, 1, sh, true);
    gt_scope s = gt_scope_begin(&ctx);
    gt_tensor *u = gt_scale(&ctx, x, 3); /* read by gelu's backward */
    gt_tensor *g = gt_gelu(&ctx, u);     /* read by nothing: softcap's backward reads its output */
    gt_tensor *c = gt_softcap(&ctx, g, 5);
    gt_tensor *z = gt_scale(&ctx, c, 2);
    gt_scope_end(&ctx, s, &z, 1);
    ck_assert_int_eq(u->life, GT_LIFE_DONE);
    ck_assert_int_eq(c->life, GT_LIFE_DONE);
    ck_assert_int_eq(g->life, GT_LIFE_RELEASED);
    ck_assert_int_eq(z->life, GT_LIFE_LIVE);
    /* the forward may not read what its scope let go */
    ck_assert_ptr_null(gt_add(&ctx, u, z));
    ck_assert_int_eq(ctx.status, GT_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ctx.err, "scope"));
    gt_ctx_reset(&ctx);
    /* inference: nothing is recorded, so everything but the kept output goes at scope end */
    ctx.grad_enabled = false;
    x = gt_from_data(&ctx, v, 1, sh, false);
    s = gt_scope_begin(&ctx);
    u = gt_scale(&ctx, x, 3);
    z = gt_scope_end(&ctx, s, (gt_tensor *[]){gt_gelu(&ctx, u)}, 1);
    ck_assert_int_eq(u->life, GT_LIFE_RELEASED);
    ck_assert_int_eq(x->life, GT_LIFE_LIVE);
    ck_assert(z->data[0] > 0);
    gt_ctx_free(&ctx);
}
END_TEST

START_TEST(undeclared_backward_read_is_an_error) {
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    int64_t sh[1] = {4};
    gt_real v[4] = {0.5, -1, 2, 0.25};
    gt_tensor *x = gt_from_data(&ctx, v, 1, sh, true);
    gt_tensor *y = gt_gelu(&ctx, x);
    ctx.tape->reads = 0; /* as if gelu had not declared that its backward reads x */
    ck_assert_int_eq(gt_backward(&ctx, gt_sum(&ctx, y)), GT_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ctx.err, "gelu backward reads its input"));
    gt_ctx_free(&ctx);
}
END_TEST

/* The op profile (GT_OP_PROFILE=1, or gt_op_profile_set): each recorded op is named with its
 * call count, forward and backward time; off, the report prints nothing. */
static size_t profile_of(bool on, char *buf, size_t n) {
    gt_op_profile_set(on);
    int64_t s[2] = {384, 384}; /* big enough for its products to show in the report's 0.1 ms */
    gt_tensor *w = gt_tensor_new(2, s, true);
    for (int i = 0; i < 384 * 384; i++) w->data[i] = (gt_real)(i % 7) * 0.01f;
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    gt_op_profile_mark();
    for (int pass = 0; pass < 2; pass++) {
        gt_ctx_reset(&ctx);
        gt_tensor *y = gt_mul(&ctx, gt_matmul(&ctx, w, w, false, true), w);
        ck_assert_int_eq(gt_backward(&ctx, gt_sum(&ctx, y)), GT_OK);
    }
    FILE *f = tmpfile();
    ck_assert(f != NULL);
    gt_op_profile_report(f, 1);
    rewind(f);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
    gt_tensor_free(w);
    gt_ctx_free(&ctx);
    return got;
}

START_TEST(op_profile_names_each_op_when_asked) {
    char buf[4096];
    ck_assert_uint_eq(profile_of(false, buf, sizeof buf), 0);
    ck_assert_uint_gt(profile_of(true, buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "op profile (ms;"), "%s", buf);
    const char *ops[3] = {"matmul", "mul", "sum"};
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "\n  %-16s calls      2", ops[i]);
        ck_assert_msg(strstr(buf, want), "no '%s' in:\n%s", want + 1, buf);
    }
    double fwd = -1, bwd = -1;
    const char *m = strstr(buf, "  matmul ");
    ck_assert(sscanf(strstr(m, "forward"), "forward %lf backward %lf", &fwd, &bwd) == 2);
    ck_assert_msg(fwd > 0 && bwd > 0, "%s", buf); /* 384^3 products: 0.1-1 ms each here */
    gt_op_profile_set(-1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tape");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, bad_shapes_give_a_message_not_an_abort);
    tcase_add_test(tc, embedding_rejects_out_of_range_id);
    tcase_add_test(tc, no_tape_without_trainable_inputs);
    tcase_add_test(tc, grad_disabled_records_nothing);
    tcase_add_test(tc, gradients_accumulate_across_backward_passes);
    tcase_add_test(tc, backward_needs_a_scalar);
    tcase_add_test(tc, arena_folds_into_one_block_and_stops_allocating);
    tcase_add_test(tc, nonleaf_gradients_are_released_and_their_memory_reused);
    tcase_add_test(tc, no_activation_is_freed_before_its_last_backward_read);
    tcase_add_test(tc, scope_releases_what_no_backward_reads_and_keeps_the_rest);
    tcase_add_test(tc, undeclared_backward_read_is_an_error);
    tcase_add_test(tc, op_profile_names_each_op_when_asked);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
