/* Handles and scopes: every handle is counted, scopes free what was made in them,
 * keep/unscope/free move or end ownership, and nothing is freed twice (the ASan build
 * catches that) or leaked (the live-handle check at the end of every test). */
#include <pthread.h>

#include "test_ctorch_util.h"

CT_TEST(scope, tensors_made_in_a_scope_are_freed_at_its_end)
{
    long before = ct_live_handles();
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = ct_ones(CT_SHAPE(2, 2), CT_F32);
    ct_tensor *b = ct_add(a, a);
    ct_exp(b);
    cr_expect_eq(ct_live_handles(), before + 4, "a scope and three tensors");
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, nested_scopes_free_only_their_own_tensors)
{
    long before = ct_live_handles();
    ct_scope *outer = ct_scope_begin();
    ct_tensor *a = ct_full(CT_SHAPE(3), 2.0, CT_F32);
    ct_scope *inner = ct_scope_begin();
    ct_tensor *b = ct_mul(a, a);
    ct_muls(b, 3.0);
    cr_expect_eq(ct_live_handles(), before + 5);
    ct_scope_end(inner);
    cr_expect_eq(ct_live_handles(), before + 2);
    cr_expect_eq(ct_item(ct_sum(a)), 6.0, "the outer tensor is still alive");
    ct_scope_end(outer);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, keep_moves_a_tensor_to_the_enclosing_scope)
{
    long before = ct_live_handles();
    ct_scope *outer = ct_scope_begin();
    ct_scope *inner = ct_scope_begin();
    ct_tensor *kept = ct_scope_keep(inner, ct_full(CT_SHAPE(2), 7.0, CT_F64));
    ct_tensor *tmp = ct_ones(CT_SHAPE(2), CT_F64);
    (void)tmp;
    ct_scope_end(inner);
    cr_expect_eq(ct_live_handles(), before + 2, "outer scope and the kept tensor");
    cr_expect_eq(ct_item(ct_sum(kept)), 14.0);
    ct_scope_end(outer);
    cr_expect_eq(ct_live_handles(), before, "the outer scope freed the kept tensor");
}

CT_TEST(scope, keep_at_the_outermost_scope_hands_the_tensor_to_the_caller)
{
    long before = ct_live_handles();
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_scope_keep(s, ct_arange(4, CT_I64));
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), before + 1);
    cr_expect_eq(ct_numel(t), 4);
    ct_free(t);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, keep_of_null_is_null)
{
    ct_scope *s = ct_scope_begin();
    cr_expect_null(ct_scope_keep(s, NULL));
    cr_expect_null(ct_unscope(NULL));
    ct_scope_end(s);
}

CT_TEST(scope, unscope_makes_the_caller_the_owner_from_any_depth)
{
    long before = ct_live_handles();
    ct_scope *s1 = ct_scope_begin();
    ct_scope *s2 = ct_scope_begin();
    ct_scope *s3 = ct_scope_begin();
    ct_tensor *t = ct_unscope(ct_full(CT_SHAPE(5), 1.5, CT_F32));
    ct_scope_end(s3);
    ct_scope_end(s2);
    ct_scope_end(s1);
    cr_expect_eq(ct_live_handles(), before + 1);
    ct_tensor *sum = ct_sum(t);   /* no scope open: the caller owns the sum */
    cr_expect_eq(ct_item(sum), 7.5);
    ct_free(t);
    cr_expect_eq(ct_live_handles(), before + 1, "the sum outlives t's handle");
    ct_free(sum);
}

CT_TEST(scope, freeing_a_scoped_tensor_early_frees_it_once)
{
    long before = ct_live_handles();
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = ct_ones(CT_SHAPE(1000), CT_F32);
    ct_tensor *b = ct_muls(a, 2.0);
    ct_free(a);
    cr_expect_eq(ct_live_handles(), before + 2);
    cr_expect_eq(ct_item(ct_sum(b)), 2000.0, "b does not depend on a's handle");
    ct_free(ct_unscope(ct_ones(CT_SHAPE(1), CT_F32)));
    ct_scope_end(s);  /* must not free a again */
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, tensors_made_before_a_scope_are_not_its_own)
{
    long before = ct_live_handles();
    ct_tensor *mine = ct_ones(CT_SHAPE(2), CT_F32);
    ct_scope *s = ct_scope_begin();
    ct_tensor *r = ct_add(mine, mine);
    ct_scope_end(s);
    (void)r;
    cr_expect_eq(ct_live_handles(), before + 1);
    cr_expect_eq(ct_numel(mine), 2);
    ct_free(mine);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, a_view_outlives_the_handle_of_its_base)
{
    ct_scope *outer = ct_scope_begin();
    ct_scope *s = ct_scope_begin();
    ct_tensor *base = ct_arange(10, CT_F64);
    ct_tensor *view = ct_scope_keep(s, ct_narrow(base, 0, 7, 3));   /* 7, 8, 9 */
    ct_scope_end(s);
    cr_expect_eq(ct_item(ct_sum(view)), 24.0);
    ct_scope_end(outer);
}

CT_TEST(scope, ref_is_a_second_handle_to_the_same_tensor)
{
    long before = ct_live_handles();
    ct_tensor *a = ct_zeros(CT_SHAPE(3), CT_F32);
    ct_tensor *b = ct_ref(a);
    cr_expect_eq(ct_live_handles(), before + 2);
    cr_expect_eq(ct_fill_(a, 4.0), CT_OK);
    ct_free(a);
    ct_scope *s = ct_scope_begin();
    cr_expect_eq(ct_item(ct_sum(b)), 12.0, "b sees a's write and outlives a's handle");
    ct_scope_end(s);
    ct_free(b);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, params_take_their_tensors_out_of_the_scope)
{
    long before = ct_live_handles();
    ct_params *p = ct_params_new();
    ct_scope *s = ct_scope_begin();
    ct_tensor *w = ct_params_add(p, "w", ct_full(CT_SHAPE(2, 2), 3.0, CT_F32));
    ct_params_add_buffer(p, "b", ct_zeros(CT_SHAPE(2), CT_F32));
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), before + 3, "the set and its two tensors");
    cr_expect(ct_requires_grad(w));
    cr_expect(!ct_requires_grad(ct_params_find(p, "b")));
    cr_expect_eq(ct_params_numel(p), 4);
    ct_params_free(p);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, every_kind_of_handle_is_counted)
{
    long before = ct_live_handles();
    ct_gen *g = ct_gen_new(3);
    ct_archive *a = ct_archive_new();
    ct_params *p = ct_params_new();
    ct_optim *o = ct_optim_new(CT_ADAMW);
    ct_scope *s = ct_scope_begin();
    cr_expect_eq(ct_live_handles(), before + 5);
    ct_scope_end(s);
    ct_optim_free(o);
    ct_params_free(p);
    ct_archive_free(a);
    ct_gen_free(g);
    cr_expect_eq(ct_live_handles(), before);
    /* and freeing NULL is a no-op for every kind */
    ct_free(NULL);
    ct_gen_free(NULL);
    ct_archive_free(NULL);
    ct_params_free(NULL);
    ct_optim_free(NULL);
    ct_script_free(NULL);
    ct_scope_end(NULL);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, handles_returned_by_autograd_belong_to_the_scope)
{
    long before = ct_live_handles();
    ct_tensor *x = ct_ones(CT_SHAPE(3), CT_F64);
    ct_set_requires_grad(x, true);
    ct_scope *s = ct_scope_begin();
    ct_backward(ct_sum(ct_exp(x)), false);
    ct_tensor *g = ct_grad_of(x);
    cr_expect_not_null(g);
    ct_tensor *gs[1];
    ct_tensor *y = ct_sum(ct_square(x));
    ct_grad((const ct_tensor *const[]){y}, NULL, 1, (const ct_tensor *const[]){x}, 1, gs, false,
            false, false);
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), before + 1);
    ct_free(x);
}

static void *make_tensor_in_thread(void *arg)
{
    (void)arg;
    /* No scope is open in this thread, whatever the main thread has open. */
    return ct_ones(CT_SHAPE(2), CT_F32);
}

CT_TEST(scope, scopes_are_per_thread)
{
    long before = ct_live_handles();
    ct_scope *s = ct_scope_begin();
    pthread_t th;
    void *ret = NULL;
    cr_assert_eq(pthread_create(&th, NULL, make_tensor_in_thread, NULL), 0);
    pthread_join(th, &ret);
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), before + 1, "the other thread's tensor is its caller's");
    ct_free(ret);
}

/* A conditional affine coupling written with scopes, as model code should read:
 * y2 = x2 * exp(s) + t, (s, t) from [x1, z]. */
static ct_tensor *coupling_forward(const ct_tensor *x, const ct_tensor *z, const ct_tensor *w,
                                   ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x1 = ct_narrow(x, 1, 0, 2);                       /* (B, 2) */
    ct_tensor *x2 = ct_narrow(x, 1, 2, 2);                       /* (B, 2) */
    ct_tensor *h = ct_tanh(ct_linear(ct_cat2(x1, z, 1), w, NULL)); /* (B, 4) */
    ct_tensor *sc = ct_narrow(h, 1, 0, 2);
    ct_tensor *y2 = ct_add(ct_mul(x2, ct_exp(sc)), ct_narrow(h, 1, 2, 2));
    ct_tensor *y = ct_scope_keep(s, ct_cat2(x1, y2, 1));
    *logdet = ct_scope_keep(s, ct_sum_dim(sc, 1, false));
    ct_scope_end(s);
    return y;
}

CT_TEST(scope, model_code_keeps_its_outputs_and_frees_its_temporaries)
{
    long before = ct_live_handles();
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(5, 4), CT_F64, NULL);
    ct_tensor *z = ct_randn(CT_SHAPE(5, 3), CT_F64, NULL);
    ct_tensor *w = ct_randn(CT_SHAPE(4, 5), CT_F64, NULL);
    long mid = ct_live_handles();
    ct_tensor *logdet;
    ct_tensor *y = coupling_forward(x, z, w, &logdet);
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_expect_eq(ct_live_handles(), mid + 2, "only y and logdet remain");
    cr_expect_eq(ct_size(logdet, 0), 5);
    /* x1 passes through unchanged */
    cr_expect_eq(ct_max_abs_diff(ct_narrow(y, 1, 0, 2), ct_narrow(x, 1, 0, 2)), 0.0);
    /* a failing forward returns NULL with the message, and leaks nothing either */
    ct_tensor *bad_w = ct_randn(CT_SHAPE(4, 4), CT_F64, NULL);
    long mid2 = ct_live_handles();
    ct_tensor *ld2 = NULL;
    cr_expect_null(coupling_forward(x, z, bad_w, &ld2));
    cr_expect_null(ld2);
    ct_expect_error_mentions("ct_linear");
    cr_expect_eq(ct_live_handles(), mid2);
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), before);
}

CT_TEST(scope, grad_mode_is_explicit_and_restored)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_ones(CT_SHAPE(2), CT_F32);
    ct_set_requires_grad(x, true);
    cr_expect(ct_grad_enabled());
    bool prev = ct_set_grad_enabled(false);
    cr_expect(prev);
    cr_expect(!ct_requires_grad(ct_exp(x)), "no graph without grad mode");
    cr_expect(!ct_set_grad_enabled(prev));
    cr_expect(ct_requires_grad(ct_exp(x)));
    ct_scope_end(s);
}
