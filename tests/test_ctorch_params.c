/* Parameter sets beyond training: the EMA update follows its formula and refuses sets
 * that differ. */
#include "test_ctorch_util.h"

/* ---- EMA ------------------------------------------------------------------------- */

/* w (3,) and b (2,) parameters and a step counter buffer n (1,), F64, set to v. */
static ct_params *ema_set(const double w[3], const double b[2], double n)
{
    ct_params *p = ct_params_new();
    ct_params_add(p, "w", ct_from_data(w, CT_SHAPE(3), CT_F64));
    ct_params_add(p, "b", ct_from_data(b, CT_SHAPE(2), CT_F64));
    ct_params_add_buffer(p, "n", ct_from_data(&n, CT_SHAPE(1), CT_F64));
    cr_assert_eq(ct_params_count(p), 3, "%s", ct_last_error());
    return p;
}

static void expect_values(const ct_params *p, const char *name, const double *want, int n)
{
    double got[8];
    cr_assert_eq(ct_to_data(ct_params_find(p, name), got, n * sizeof(double)), CT_OK, "%s",
                 ct_last_error());
    for (int i = 0; i < n; i++)
        cr_expect(fabs(got[i] - want[i]) <= 1e-15 * (1 + fabs(want[i])),
                  "%s[%d] = %.17g, expected %.17g", name, i, got[i], want[i]);
}

CT_TEST(ema, update_follows_the_formula_over_several_steps)
{
    double ew[3] = {1, -2, 0.5}, eb[2] = {3, 4};
    ct_params *ema = ema_set(ew, eb, 0);
    const double decay = 0.9;
    for (int k = 1; k <= 4; k++) {
        /* the model moves on; the average follows it by hand */
        double sw[3] = {0.1 * k, -0.3 * k * k, 2.0 - k}, sb[2] = {1.0 / k, -k};
        ct_params *src = ema_set(sw, sb, (double)k);
        cr_assert_eq(ct_params_ema_update(ema, src, decay), CT_OK, "%s", ct_last_error());
        for (int i = 0; i < 3; i++) ew[i] = decay * ew[i] + (1 - decay) * sw[i];
        for (int i = 0; i < 2; i++) eb[i] = decay * eb[i] + (1 - decay) * sb[i];
        double n = k;  /* buffers are copied, not averaged */
        expect_values(ema, "w", ew, 3);
        expect_values(ema, "b", eb, 2);
        expect_values(ema, "n", &n, 1);
        ct_params_free(src);
    }
    /* in place, without a graph: the handles are the set's leaves still */
    ct_tensor *w = ct_params_find(ema, "w");
    cr_expect(ct_requires_grad(w));
    ct_scope *s = ct_scope_begin();
    cr_assert_eq(ct_backward(ct_sum(ct_square(w)), false), CT_OK, "%s", ct_last_error());
    ct_tensor *gw = ct_grad_of(w);
    cr_assert_not_null(gw, "the average's parameters are still leaves");
    ct_expect_close("d sum(w^2) / dw", gw, ct_muls(w, 2.0), 1e-15);
    ct_scope_end(s);
    ct_params_free(ema);
}

CT_TEST(ema, decay_one_keeps_and_decay_zero_copies)
{
    double ew[3] = {1, 2, 3}, eb[2] = {4, 5}, sw[3] = {-1, -2, -3}, sb[2] = {-4, -5};
    ct_params *ema = ema_set(ew, eb, 0), *src = ema_set(sw, sb, 9);
    cr_assert_eq(ct_params_ema_update(ema, src, 1.0), CT_OK, "%s", ct_last_error());
    expect_values(ema, "w", ew, 3);
    cr_assert_eq(ct_params_ema_update(ema, src, 0.0), CT_OK, "%s", ct_last_error());
    expect_values(ema, "w", sw, 3);
    expect_values(ema, "b", sb, 2);
    ct_params_free(ema);
    ct_params_free(src);
}

CT_TEST(ema, sets_that_differ_are_an_error_naming_the_entry_and_change_nothing)
{
    double ew[3] = {1, 2, 3}, eb[2] = {4, 5}, sw[3] = {7, 8, 9}, sb[2] = {6, 6};
    ct_params *ema = ema_set(ew, eb, 0);

    ct_params *other_shape = ct_params_new();          /* b of (3,) */
    ct_params_add(other_shape, "w", ct_from_data(sw, CT_SHAPE(3), CT_F64));
    ct_params_add(other_shape, "b", ct_from_data(sw, CT_SHAPE(3), CT_F64));
    ct_params_add_buffer(other_shape, "n", ct_zeros(CT_SHAPE(1), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, other_shape, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("ct_params_ema_update");
    ct_expect_error_mentions("'b'");

    ct_params *missing = ct_params_new();              /* no n */
    ct_params_add(missing, "w", ct_from_data(sw, CT_SHAPE(3), CT_F64));
    ct_params_add(missing, "b", ct_from_data(sb, CT_SHAPE(2), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, missing, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("'n'");

    ct_params *extra = ema_set(sw, sb, 1);             /* one more entry */
    ct_params_add(extra, "v", ct_zeros(CT_SHAPE(2), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, extra, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("'v'");

    ct_params *as_f32 = ct_params_new();               /* w of another dtype */
    ct_params_add(as_f32, "w", ct_zeros(CT_SHAPE(3), CT_F32));
    ct_params_add(as_f32, "b", ct_from_data(sb, CT_SHAPE(2), CT_F64));
    ct_params_add_buffer(as_f32, "n", ct_zeros(CT_SHAPE(1), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, as_f32, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("'w'");
    ct_expect_error_mentions("f32");

    ct_params *good = ema_set(sw, sb, 1);
    cr_expect_eq(ct_params_ema_update(ema, good, 1.5), CT_ERR_ARG);
    ct_expect_error_mentions("decay");
    cr_expect_eq(ct_params_ema_update(ema, good, NAN), CT_ERR_ARG);
    double zero = 0;
    expect_values(ema, "w", ew, 3);                    /* nothing changed */
    expect_values(ema, "b", eb, 2);
    expect_values(ema, "n", &zero, 1);
    ct_params_free(other_shape);
    ct_params_free(missing);
    ct_params_free(extra);
    ct_params_free(as_f32);
    ct_params_free(good);
    ct_params_free(ema);
}
