/* ct_checkpoint: a chain of checkpointed steps gives the gradients of the plain graph
 * (parameters used inside the steps and the inputs, float64) while it really runs each
 * step again in the backward pass, on a copy of its context; parameters train when no
 * input requires grad; grad mode off is one plain call; failures come back with their message; and
 * ct_grad through a checkpoint is refused. */
#include "test_ctorch_util.h"

/* One step x -> tanh(x W + b) * scale + noise: W, b are parameters reached through ctx
 * (not inputs), noise an input; calls counts the calls of the function. */
typedef struct {
    const ct_tensor *w, *b;   /* (D, D), (D) */
    double scale;
    int *calls;
    int fail_from;            /* > 0: return NULL from this call on */
} step_ctx;

static ct_tensor *step(const void *ctx, const ct_tensor *const *in, int n)
{
    const step_ctx *c = ctx;
    cr_assert_eq(n, 2);
    if (c->calls) ++*c->calls;
    if (c->fail_from > 0 && *c->calls >= c->fail_from) {
        ct_set_error("step: failing as asked at call %d", *c->calls);
        return NULL;
    }
    ct_tensor *h = ct_tanh(ct_add(ct_mm(in[0], c->w), c->b));                    /* (B, D) */
    return ct_add(ct_muls(h, c->scale), in[1]);                                   /* (B, D) */
}

typedef struct {
    ct_tensor *w, *b, *x0, *noise[3], *v;   /* (4, 4), (4), (5, 4), 3 × (5, 4), (5, 4) */
} chain;

static void chain_make(chain *k, bool x0_grad)
{
    ct_gen *g = ct_gen_new(7);
    k->w = ct_unscope(ct_muls(ct_randn(CT_SHAPE(4, 4), CT_F64, g), 0.7));
    k->b = ct_unscope(ct_randn(CT_SHAPE(4), CT_F64, g));
    k->x0 = ct_unscope(ct_randn(CT_SHAPE(5, 4), CT_F64, g));
    for (int i = 0; i < 3; i++) k->noise[i] = ct_unscope(ct_muls(ct_randn(CT_SHAPE(5, 4), CT_F64, g), 0.1));
    k->v = ct_unscope(ct_randn(CT_SHAPE(5, 4), CT_F64, g));
    ct_set_requires_grad(k->w, true);
    ct_set_requires_grad(k->b, true);
    ct_set_requires_grad(k->x0, x0_grad);
    ct_gen_free(g);
}

static void chain_free(chain *k)
{
    ct_free(k->w), ct_free(k->b), ct_free(k->x0), ct_free(k->v);
    for (int i = 0; i < 3; i++) ct_free(k->noise[i]);
}

/* Σ v ⊙ (3 steps from x0), checkpointed or not, backpropagated with ct_backward; the
 * gradients of W, b and x0 (x0's NULL when it needs none) into grads[3] (caller frees).
 * Each step's context is spoilt right after the call: a recomputation that read it
 * instead of ct_checkpoint's copy would give other gradients. */
static void chain_grads(chain *k, bool checkpoint, int *calls, ct_tensor **grads)
{
    ct_zero_grad(k->w), ct_zero_grad(k->b), ct_zero_grad(k->x0);
    ct_scope *s = ct_scope_begin();
    const ct_tensor *x = k->x0;
    for (int i = 0; i < 3; i++) {
        step_ctx c = {.w = k->w, .b = k->b, .scale = 1.5, .calls = calls};
        const ct_tensor *in[2] = {x, k->noise[i]};
        x = checkpoint ? ct_checkpoint(step, &c, sizeof c, in, 2) : step(&c, in, 2);
        cr_assert_not_null(x, "step %d: %s", i, ct_last_error());
        c.scale = -100;
    }
    cr_assert_eq(ct_backward(ct_sum(ct_mul(x, k->v)), false), CT_OK, "%s", ct_last_error());
    ct_scope_end(s);
    grads[0] = ct_grad_of(k->w) ? ct_unscope(ct_clone(ct_grad_of(k->w))) : NULL;
    grads[1] = ct_grad_of(k->b) ? ct_unscope(ct_clone(ct_grad_of(k->b))) : NULL;
    grads[2] = ct_grad_of(k->x0) ? ct_unscope(ct_clone(ct_grad_of(k->x0))) : NULL;
}

/* One checkpointed step from x0 with noise[0], its context c (made here) counting into
 * *calls. */
static ct_tensor *one_step(const chain *k, step_ctx *c, int *calls, int fail_from)
{
    *c = (step_ctx){.w = k->w, .b = k->b, .scale = 1.5, .calls = calls, .fail_from = fail_from};
    const ct_tensor *in[2] = {k->x0, k->noise[0]};
    return ct_checkpoint(step, c, sizeof *c, in, 2);
}

static void expect_same_grads(ct_tensor **plain, ct_tensor **ckpt, int n)
{
    static const char *const names[] = {"W", "b", "x0"};
    for (int i = 0; i < n; i++) {
        cr_assert(plain[i] && ckpt[i], "%s: a gradient is missing (plain %p, checkpointed %p)",
                  names[i], (void *)plain[i], (void *)ckpt[i]);
        double d = ct_max_abs_diff(plain[i], ckpt[i]);
        cr_expect_lt(d, 1e-13, "%s: checkpointed gradient %.3g off the plain one", names[i], d);
        cr_expect_gt(ct_item(ct_norm(plain[i])), 1e-3, "%s: a vanishing gradient checks nothing", names[i]);
    }
}

CT_TEST(ckpt, a_checkpointed_chain_gives_the_plain_gradients_running_each_step_again_on_a_copy_of_its_context)
{
    ct_scope *sc = ct_scope_begin();
    chain k;
    chain_make(&k, true);
    ct_tensor *plain[3], *ckpt[3];
    int calls_plain = 0, calls_ckpt = 0;
    chain_grads(&k, false, &calls_plain, plain);
    long r0 = ct_checkpoint_recomputes();
    chain_grads(&k, true, &calls_ckpt, ckpt);
    expect_same_grads(plain, ckpt, 3);
    cr_expect_eq(calls_plain, 3);
    cr_expect_eq(calls_ckpt, 6, "3 forward calls and 3 recomputations expected, %d calls", calls_ckpt);
    cr_expect_eq(ct_checkpoint_recomputes() - r0, 3);
    for (int i = 0; i < 3; i++) ct_free(plain[i]), ct_free(ckpt[i]);
    chain_free(&k);
    ct_scope_end(sc);
}

CT_TEST(ckpt, parameters_get_their_gradients_when_no_input_requires_grad)
{
    ct_scope *sc = ct_scope_begin();
    chain k;
    chain_make(&k, false);
    ct_tensor *plain[3], *ckpt[3];
    int calls = 0;
    chain_grads(&k, false, &calls, plain);
    chain_grads(&k, true, &calls, ckpt);
    cr_expect_null(plain[2]);
    cr_expect_null(ckpt[2], "x0 needs no gradient and got one");
    expect_same_grads(plain, ckpt, 2);
    for (int i = 0; i < 3; i++) ct_free(plain[i]), ct_free(ckpt[i]);
    chain_free(&k);
    ct_scope_end(sc);
}

CT_TEST(ckpt, with_grad_mode_off_it_is_one_call_and_records_nothing)
{
    ct_scope *sc = ct_scope_begin();
    chain k;
    chain_make(&k, true);
    int calls = 0;
    step_ctx c;
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *y = one_step(&k, &c, &calls, 0);
    ct_set_grad_enabled(prev);
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_expect_eq(calls, 1);
    cr_expect_not(ct_requires_grad(y));
    ct_tensor *direct = step(&c, (const ct_tensor *const[]){k.x0, k.noise[0]}, 2);
    cr_expect_eq(ct_max_abs_diff(y, direct), 0.0);
    ct_free(y), ct_free(direct);
    chain_free(&k);
    ct_scope_end(sc);
}

CT_TEST(ckpt, a_failing_step_fails_the_call_or_the_backward_pass_with_its_message)
{
    ct_scope *sc = ct_scope_begin();
    chain k;
    chain_make(&k, true);
    int calls = 0;
    step_ctx c;
    cr_expect_null(one_step(&k, &c, &calls, 1));
    ct_expect_error_mentions("ct_checkpoint");
    ct_expect_error_mentions("failing as asked at call 1");
    /* the forward succeeds, the recomputation (call 2) fails: ct_backward says why */
    calls = 0;
    ct_clear_error();
    ct_tensor *y = one_step(&k, &c, &calls, 2);
    cr_assert_not_null(y, "%s", ct_last_error());
    ct_tensor *f = ct_sum(y);
    cr_expect_eq(ct_backward(f, false), CT_ERR_TORCH);
    ct_expect_error_mentions("ct_backward");
    ct_expect_error_mentions("failing as asked at call 2");
    ct_free(f), ct_free(y);
    const ct_tensor *bad[2] = {k.x0, NULL};
    cr_expect_null(ct_checkpoint(step, &c, sizeof c, bad, 2));
    chain_free(&k);
    ct_scope_end(sc);
}

CT_TEST(ckpt, ct_grad_through_a_checkpoint_is_refused)
{
    ct_scope *sc = ct_scope_begin();
    chain k;
    chain_make(&k, true);
    int calls = 0;
    step_ctx c;
    ct_tensor *y = one_step(&k, &c, &calls, 0);
    cr_assert_not_null(y, "%s", ct_last_error());
    ct_tensor *f = ct_sum(y), *g = NULL;
    cr_expect_neq(ct_grad((const ct_tensor *const[]){f}, NULL, 1, (const ct_tensor *const[]){k.x0}, 1, &g,
                          false, false, false),
                  CT_OK);
    ct_expect_error_mentions("only ct_backward");
    cr_expect_null(ct_grad_of(k.w), "the refused pass put a gradient into W");
    ct_free(f), ct_free(y);
    chain_free(&k);
    ct_scope_end(sc);
}

CT_TEST(ckpt, a_step_that_needs_no_gradient_backpropagates_to_nothing)
{
    ct_scope *sc = ct_scope_begin();
    chain k;
    chain_make(&k, false);
    ct_set_requires_grad(k.w, false);
    ct_set_requires_grad(k.b, false);
    int calls = 0;
    step_ctx c;
    ct_tensor *y = one_step(&k, &c, &calls, 0);
    cr_assert_not_null(y, "%s", ct_last_error());
    ct_tensor *f = ct_sum(y);
    cr_expect_eq(ct_backward(f, false), CT_OK, "%s", ct_last_error());
    cr_expect_eq(calls, 2);
    cr_expect_null(ct_grad_of(k.w));
    ct_free(f), ct_free(y);
    chain_free(&k);
    ct_scope_end(sc);
}
