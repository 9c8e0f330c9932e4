/* Invertible blocks and the conditional INN: exact inverses and log-determinants equal
 * to log|det| of the autograd Jacobian (float64); a spec it cannot build is an error. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "architectures/inn.h"
#include "ctorch/ct.h"

static long live0;
static ct_dtype prev_dtype;

static void setup(void)
{
    live0 = ct_live_handles();
    prev_dtype = ct_set_float_dtype(CT_F64);
}

static void teardown(void)
{
    ct_set_float_dtype(prev_dtype);
    cr_expect_eq(ct_live_handles(), live0, "leaked %ld handles", ct_live_handles() - live0);
}

TestSuite(inn, .init = setup, .fini = teardown);

/* Moves every trainable parameter away from its (often identity) initial value. */
static void perturb(ct_params *ps, ct_gen *g)
{
    for (int i = 0; i < ct_params_count(ps); i++) {
        if (ct_params_is_buffer(ps, i)) continue;
        ct_tensor *p = ct_params_at(ps, i);
        ct_scope *s = ct_scope_begin();
        ct_copy_(p, ct_add(p, ct_muls(ct_randn_like(p, g), 0.3)));
        ct_scope_end(s);
    }
}

typedef ct_tensor *(*fwd_fn)(void *obj, const ct_tensor *x, const ct_tensor *c, ct_tensor **ld);
typedef ct_tensor *(*inv_fn)(void *obj, const ct_tensor *y, const ct_tensor *c);

/* Checks inverse(forward(x)) = x and logdet = log|det J| for every sample. */
static void check_invertible(void *obj, fwd_fn fwd, inv_fn inv, int dim, int cond_dim, ct_gen *g)
{
    const int B = 5;
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(B, dim), CT_F64, g);
    ct_tensor *c = cond_dim ? ct_randn(CT_SHAPE(B, cond_dim), CT_F64, g) : NULL;
    ct_set_requires_grad(x, true);
    ct_tensor *ld = NULL;
    ct_tensor *y = fwd(obj, x, c, &ld);
    cr_assert_not_null(y, "forward failed: %s", ct_last_error());
    cr_assert_not_null(ld);
    ct_tensor *xr = inv(obj, y, c);
    cr_assert_not_null(xr, "inverse failed: %s", ct_last_error());
    double err = ct_max_abs_diff(x, xr);
    cr_expect_lt(err, 1e-6, "inverse(forward(x)) differs from x by %g", err);

    /* Jacobian rows: d y[:, i] / d x, for all samples at once (samples are independent). */
    ct_tensor *jac = ct_zeros(CT_SHAPE(B, dim, dim), CT_F64);
    for (int i = 0; i < dim; i++) {
        ct_tensor *sel = ct_zeros(CT_SHAPE(B, dim), CT_F64);
        ct_tensor *col = ct_narrow(sel, 1, i, 1);
        ct_fill_(col, 1.0);
        ct_tensor *row = ct_vjp(y, x, sel, false);                  /* (B, dim) */
        cr_assert_not_null(row, "%s", ct_last_error());
        ct_copy_(ct_narrow(jac, 1, i, 1), ct_unsqueeze(row, 1));
    }
    ct_tensor *want = ct_slogdet_abs(jac);                          /* (B,) */
    double lerr = ct_max_abs_diff(ct_detach(ld), want);
    if (!(lerr < 1e-6)) {
        ct_print("logdet", ld);
        ct_print("log|det J|", want);
    }
    cr_expect_lt(lerr, 1e-6, "log-determinant differs from log|det J| by %g", lerr);
    ct_scope_end(s);
}

static ct_tensor *block_fwd(void *b, const ct_tensor *x, const ct_tensor *c, ct_tensor **ld)
{
    return fl_block_forward(b, x, c, ld);
}
static ct_tensor *block_inv(void *b, const ct_tensor *y, const ct_tensor *c)
{
    return fl_block_inverse(b, y, c);
}
static ct_tensor *inn_fwd(void *n, const ct_tensor *x, const ct_tensor *c, ct_tensor **ld)
{
    return fl_inn_forward(n, x, c, ld);
}
static ct_tensor *inn_inv(void *n, const ct_tensor *y, const ct_tensor *c)
{
    return fl_inn_inverse(n, y, c);
}

static const fl_coupling_spec affine = {.hidden = 16, .n_layers = 2, .n_blocks = 0, .act = FL_ACT_SILU,
                                        .clamp = 2.0};
/* A bound of 1.5 puts about 13 % of the N(0, 1) inputs on the linear tails. */
static const fl_coupling_spec spline = {.hidden = 16, .n_layers = 2, .n_blocks = 0, .act = FL_ACT_SILU,
                                        .transform = FL_COUPLING_SPLINE, .bins = 5, .bound = 1.5};

static void check_block_spec(fl_block_kind kind, int dim, int cond_dim, const fl_coupling_spec *cs)
{
    ct_gen *g = ct_gen_new(7);
    ct_params *ps = ct_params_new();
    fl_block *b = fl_block_new(kind, ps, "b", dim, cond_dim, cs, g);
    cr_assert_not_null(b, "%s", ct_last_error());
    if (kind == FL_BLOCK_ACTNORM) {
        /* the first pass initialises it from the batch; then it is a plain affine map */
        ct_scope *s = ct_scope_begin();
        ct_tensor *x0 = ct_adds(ct_muls(ct_randn(CT_SHAPE(64, dim), CT_F64, g), 3.0), 2.0);
        ct_tensor *y0 = fl_block_forward(b, x0, NULL, NULL);
        double m = ct_item(ct_mean(y0)), sd = ct_item(ct_mean(ct_std_dim(y0, 0, false, false)));
        cr_expect_lt(fabs(m), 1e-9, "ActNorm output mean %g after initialisation", m);
        cr_expect_lt(fabs(sd - 1), 1e-5, "ActNorm output std %g after initialisation", sd);
        ct_scope_end(s);
    }
    perturb(ps, g);
    check_invertible(b, block_fwd, block_inv, dim, cond_dim, g);
    fl_block_free(b);
    ct_params_free(ps);
    ct_gen_free(g);
}

static void check_block(fl_block_kind kind, int dim, int cond_dim)
{
    check_block_spec(kind, dim, cond_dim, &affine);
}

Test(inn, actnorm_is_invertible_with_exact_logdet) { check_block(FL_BLOCK_ACTNORM, 5, 0); }
Test(inn, coupling_is_invertible_with_exact_logdet) { check_block(FL_BLOCK_COUPLING, 6, 3); }
Test(inn, odd_coupling_is_invertible_with_exact_logdet) { check_block(FL_BLOCK_COUPLING, 5, 2); }
Test(inn, permutation_is_invertible_with_zero_logdet) { check_block(FL_BLOCK_PERMUTE, 7, 0); }
Test(inn, orthogonal_mixing_is_invertible_with_zero_logdet) { check_block(FL_BLOCK_ORTHOGONAL, 6, 0); }

Test(inn, spline_coupling_is_invertible_with_exact_logdet)
{
    check_block_spec(FL_BLOCK_COUPLING, 6, 3, &spline);
    check_block_spec(FL_BLOCK_COUPLING, 5, 0, &spline);
}

/* With its subnets' zero-initialised last layers a spline coupling is the identity, as
 * the affine one is: a new flow starts where the data are. */
Test(inn, a_new_spline_coupling_is_the_identity)
{
    ct_gen *g = ct_gen_new(3);
    ct_params *ps = ct_params_new();
    fl_block *b = fl_block_new(FL_BLOCK_COUPLING, ps, "b", 6, 2, &spline, g);
    cr_assert_not_null(b, "%s", ct_last_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_muls(ct_randn(CT_SHAPE(32, 6), CT_F64, g), 1.5);
    ct_tensor *ld = NULL, *y = fl_block_forward(b, x, ct_randn(CT_SHAPE(32, 2), CT_F64, g), &ld);
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_expect_lt(ct_max_abs_diff(x, y), 1e-12, "y - x: %g", ct_max_abs_diff(x, y));
    cr_expect_lt(ct_item(ct_max_all(ct_abs(ld))), 1e-12, "logdet %g", ct_item(ct_max_all(ct_abs(ld))));
    ct_scope_end(s);
    fl_block_free(b);
    ct_params_free(ps);
    ct_gen_free(g);
}

/* A trained spline is far from the identity: bins of very unequal widths and heights,
 * derivatives near 0 and large. Inverse and log-determinant must hold there too. */
Test(inn, a_steep_spline_is_invertible_with_exact_logdet)
{
    ct_gen *g = ct_gen_new(5);
    ct_scope *s = ct_scope_begin();
    const int B = 64, d = 3, K = 6;
    ct_tensor *h = ct_muls(ct_randn(CT_SHAPE(B, d * (3 * K - 1)), CT_F64, g), 4.0);
    ct_tensor *x = ct_muls(ct_randn(CT_SHAPE(B, d), CT_F64, g), 2.0);
    ct_set_requires_grad(x, true);
    ct_tensor *ld = NULL, *y = ct_rq_spline(x, h, K, 2.5, false, &ld);
    cr_assert_not_null(y, "%s", ct_last_error());
    ct_tensor *ldi = NULL, *xr = ct_rq_spline(y, h, K, 2.5, true, &ldi);
    cr_assert_not_null(xr, "%s", ct_last_error());
    cr_expect_lt(ct_max_abs_diff(x, xr), 1e-9, "inverse(forward(x)) - x: %g", ct_max_abs_diff(x, xr));
    cr_expect_lt(ct_max_abs_diff(ct_neg(ld), ldi), 1e-9, "inverse logdet is not minus the forward's");
    /* elementwise: log|det J| is the sum of log dy_j/dx_j */
    ct_tensor *dy = ct_vjp(y, x, ct_ones_like(y), false);
    cr_assert_not_null(dy, "%s", ct_last_error());
    ct_tensor *want = ct_sum_dim(ct_log(dy), 1, false);
    cr_expect_lt(ct_max_abs_diff(ct_detach(ld), want), 1e-9, "logdet - Σ log y'(x): %g",
                 ct_max_abs_diff(ct_detach(ld), want));
    /* the inverse's own derivative (autograd through the root of the quadratic, the path
     * of NF samples in the fiber-loss term) is 1 / the forward's */
    ct_tensor *yd = ct_detach(y);
    ct_set_requires_grad(yd, true);
    ct_tensor *xb = ct_rq_spline(yd, h, K, 2.5, true, NULL);
    ct_tensor *dx = ct_vjp(xb, yd, ct_ones_like(xb), false);
    cr_assert_not_null(dx, "%s", ct_last_error());
    double rerr = ct_item(ct_max_all(ct_abs(ct_sub(ct_mul(dx, dy), ct_ones_like(dy)))));
    cr_expect_lt(rerr, 1e-8, "dx/dy · dy/dx - 1: %g", rerr);
    /* monotone, onto [-bound, bound] inside, the identity outside */
    cr_expect_gt(ct_item(ct_min_all(dy)), 0.0);
    ct_tensor *out = ct_gts(ct_abs(x), 2.5);
    cr_expect_eq(ct_item(ct_sum(ct_mul(ct_to_dtype(out, CT_F64), ct_abs(ct_sub(y, x))))), 0.0,
                 "the tails moved");
    ct_scope_end(s);
    ct_gen_free(g);
}

Test(inn, a_spline_coupling_without_bins_or_bound_is_an_error)
{
    ct_params *ps = ct_params_new();
    fl_coupling_spec cs = spline;
    cs.bins = 1;
    cr_expect_null(fl_block_new(FL_BLOCK_COUPLING, ps, "c", 4, 0, &cs, NULL));
    cr_expect(strstr(ct_last_error(), "bins >= 2") != NULL, "message: %s", ct_last_error());
    cs = spline;
    cs.bound = 0;
    cr_expect_null(fl_block_new(FL_BLOCK_COUPLING, ps, "c", 4, 0, &cs, NULL));
    cr_expect(strstr(ct_last_error(), "bound > 0") != NULL, "message: %s", ct_last_error());
    ct_params_free(ps);
}

Test(inn, whole_conditional_inn_is_invertible_with_exact_logdet)
{
    for (int run = 0; run < 2 * FL_MIX_COUNT; run++) {
        int mix = run % FL_MIX_COUNT;
        bool use_spline = run >= FL_MIX_COUNT;
        ct_gen *g = ct_gen_new(11 + run);
        ct_params *ps = ct_params_new();
        fl_inn_spec sp = {.dim = 6, .cond_dim = 4, .n_steps = 3, .actnorm = true,
                          .mixing = (fl_mixing)mix,
                          .coupling = {.hidden = 16, .n_layers = 2, .n_blocks = 1,
                                       .act = FL_ACT_TANH, .clamp = 1.5,
                                       .transform = use_spline ? FL_COUPLING_SPLINE : FL_COUPLING_AFFINE,
                                       .bins = 4, .bound = 2}};
        fl_inn *n = fl_inn_new(ps, "nf", &sp, g);
        cr_assert_not_null(n, "%s", ct_last_error());
        cr_expect_eq(fl_inn_n_blocks(n), 9);
        perturb(ps, g);
        check_invertible(n, inn_fwd, inn_inv, 6, 4, g);
        fl_inn_free(n);
        ct_params_free(ps);
        ct_gen_free(g);
    }
}

Test(inn, coupling_without_dims_to_split_is_an_error)
{
    ct_params *ps = ct_params_new();
    fl_coupling_spec cs = {.hidden = 4, .n_layers = 1, .act = FL_ACT_SILU, .clamp = 2};
    fl_block *b = fl_block_new(FL_BLOCK_COUPLING, ps, "c", 1, 0, &cs, NULL);
    cr_expect_null(b);
    cr_expect(strstr(ct_last_error(), "dim >= 2") != NULL, "message: %s", ct_last_error());
    ct_params_free(ps);
}

Test(inn, an_inn_without_steps_is_an_error_naming_n_steps)
{
    const int bad[] = {0, -1, -2147483647};
    for (int i = 0; i < 3; i++) {
        ct_params *ps = ct_params_new();
        fl_inn_spec sp = {.dim = 4, .cond_dim = 2, .n_steps = bad[i], .actnorm = true,
                          .coupling = {.hidden = 4, .n_layers = 1, .act = FL_ACT_SILU, .clamp = 2}};
        fl_inn *n = fl_inn_new(ps, "nf", &sp, NULL);
        cr_expect_null(n, "n_steps = %d made an INN of %d blocks", bad[i], n ? fl_inn_n_blocks(n) : 0);
        cr_expect(strstr(ct_last_error(), "nf: n_steps") != NULL, "n_steps = %d: message: %s", bad[i],
                  ct_last_error());
        cr_expect_eq(ct_params_count(ps), 0, "n_steps = %d: parameters were made", bad[i]);
        fl_inn_free(n);
        ct_params_free(ps);
    }
}
