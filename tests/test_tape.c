/* Engine plumbing: sticky errors with messages, frozen tensors, arena reuse, backward misuse. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"

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
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
