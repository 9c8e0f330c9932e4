/* The free-form families FFF (trainers/fff.c) and FIF (trainers/fif.c) and their shared
 * half (architectures/freeform.h): on a linear pair with g = f⁻¹ the surrogate's gradient
 * is that of log|det f′| in expectation; the JVP, the VJP and the encoder Jacobian match
 * finite differences of a small network (float64); the loss is its stated parts and
 * FFF's exact-NLL term is the change of variables; FFF fits a conditional 2-D Gaussian
 * to its true NLL and FIF recovers a conditional arc, a 1-D manifold in 2-D; λ > 0 lowers
 * the fiber loss of each on a short color-MNIST run; a FIF latent not below the data
 * dimension is refused naming the key. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "architectures/freeform.h"
#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "lambda_fixture.h"
#include "store_fixture.h"
#include "trainers/family.h"
#include "trainers/fiber.h"
#include "trainers/freeflow.h"

static void setup(void) { make_tmp(); }

TestSuite(freeform, .init = setup, .fini = remove_tmp, .timeout = 600);

/* ---- (a) the surrogate on a linear pair ------------------------------------------------ */

/* f(x) = x Aᵀ + b and g(h) = (h − b) Wᵀ, W set to A⁻¹ (not a function of A). */
typedef struct {
    ct_tensor *a, *b, *w;
} linear_pair;

static ct_tensor *lin_enc(void *ctx, const ct_tensor *x)
{
    linear_pair *p = ctx;
    return ct_linear(x, p->a, p->b);
}

static ct_tensor *lin_dec(void *ctx, const ct_tensor *h)
{
    linear_pair *p = ctx;
    ct_scope *s = ct_scope_begin();
    ct_tensor *u = ct_scope_keep(s, ct_linear(ct_sub(h, p->b), p->w, NULL));
    ct_scope_end(s);
    return u;
}

/* Gradient of the surrogate's batch mean in A over N = 40,000 vectors, against
 * ∂ log|det A| / ∂A = A⁻ᵀ from ct_slogdet_abs. Each element is a mean of N terms of
 * standard deviation ≤ max|A⁻¹ row| (√2 for Rademacher's diagonal 0): the tolerance
 * 0.03 · max|A⁻ᵀ| is more than 4 standard errors. */
static void check_linear_surrogate(fl_ff_noise noise)
{
    const int D = 4, N = 40000;
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    long live0 = ct_live_handles();
    ct_gen *g = ct_gen_new(11);
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = ct_add(ct_eye(D, CT_F64), ct_muls(ct_randn(CT_SHAPE(D, D), CT_F64, g), 0.4)); /* (D, D) */
    ct_set_requires_grad(a, true);
    linear_pair p = {a, ct_randn(CT_SHAPE(D), CT_F64, g), ct_inverse(ct_detach(a))};
    ct_tensor *u = ct_randn(CT_SHAPE(N, D), CT_F64, g);                                       /* (N, D) */
    fl_ff_pass f;
    cr_assert_eq(fl_ff_surrogate(lin_enc, &p, lin_dec, &p, u, 1, noise, g, &f), 0, "%s", fl_error());
    /* g = f⁻¹: the reconstruction is exact */
    cr_expect_lt(ct_max_abs_diff(f.u_rec, u), 1e-10);
    ct_tensor *grad = ct_vjp(ct_mean(f.surrogate), a, ct_scalar(1, CT_F64), false);          /* (D, D) */
    ct_tensor *want = ct_vjp(ct_slogdet_abs(a), a, ct_scalar(1, CT_F64), false);             /* A⁻ᵀ */
    cr_assert_not_null(grad, "%s", ct_last_error());
    cr_assert_not_null(want, "%s", ct_last_error());
    double err = ct_max_abs_diff(grad, want), scale = ct_item(ct_max_all(ct_abs(want)));
    double inv_err = ct_max_abs_diff(want, ct_transpose(p.w, 0, 1));
    cr_expect_lt(inv_err, 1e-10, "∂ log|det A|/∂A differs from A⁻ᵀ by %g", inv_err);
    if (!(err < 0.03 * scale)) {
        ct_print("surrogate gradient", grad);
        ct_print("A^-T", want);
    }
    cr_expect_lt(err, 0.03 * scale, "%s vectors: the surrogate's gradient differs from "
                 "∂ log|det f′|/∂A by %g (scale %g)", noise == FL_FF_GAUSSIAN ? "gaussian" : "rademacher",
                 err, scale);
    ct_scope_end(s);
    ct_gen_free(g);
    cr_expect_eq(ct_live_handles(), live0, "leaked %ld handles", ct_live_handles() - live0);
    ct_set_float_dtype(prev);
}

Test(freeform, surrogate_gradient_is_the_logdet_gradient_for_a_linear_inverse_pair_gaussian)
{
    check_linear_surrogate(FL_FF_GAUSSIAN);
}

Test(freeform, surrogate_gradient_is_the_logdet_gradient_for_a_linear_inverse_pair_rademacher)
{
    check_linear_surrogate(FL_FF_RADEMACHER);
}

Test(freeform, hutchinson_vectors_have_identity_second_moment)
{
    const int N = 100000, n = 3;
    ct_gen *g = ct_gen_new(3);
    ct_scope *s = ct_scope_begin();
    for (int k = 0; k < FL_FF_NOISE_COUNT; k++) {
        ct_tensor *v = fl_ff_hutchinson_vectors(CT_SHAPE(N, n), CT_F64, k, g);                 /* (N, n) */
        ct_tensor *m = ct_muls(ct_mm(ct_transpose(v, 0, 1), v), 1.0 / N);                      /* (n, n) */
        double err = ct_max_abs_diff(m, ct_eye(n, CT_F64));
        cr_expect_lt(err, 0.02, "noise %d: E[vvᵀ] differs from I by %g", k, err);
    }
    ct_tensor *r = fl_ff_hutchinson_vectors(CT_SHAPE(1000), CT_F64, FL_FF_RADEMACHER, g);
    cr_expect_lt(ct_max_abs_diff(ct_abs(r), ct_ones(CT_SHAPE(1000), CT_F64)), 1e-15, "not ±1");
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- (b) JVP, VJP and Jacobian against finite differences ------------------------------ */

typedef struct {
    const fl_freeform *n;
    const ct_tensor *z;
} pair_ctx;

static ct_tensor *net_enc(void *ctx, const ct_tensor *x)
{
    pair_ctx *p = ctx;
    return fl_freeform_encode(p->n, x, p->z);
}

static ct_tensor *net_dec(void *ctx, const ct_tensor *h)
{
    pair_ctx *p = ctx;
    return fl_freeform_decode(p->n, h, p->z);
}

/* The Jacobian of map at x (B, n) by central differences (step 1e-6): (B, m, n). */
static ct_tensor *fd_jacobian(fl_ff_map map, void *ctx, const ct_tensor *x, int n)
{
    const double eps = 1e-6;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *cols[16];
    for (int j = 0; j < n; j++) {
        ct_tensor *e = ct_zeros(ct_shape_of(x), CT_F64);
        ct_fill_(ct_narrow(e, 1, j, 1), eps);
        cols[j] = ct_muls(ct_sub(map(ctx, ct_add(x, e)), map(ctx, ct_sub(x, e))), 0.5 / eps); /* (B, m) */
    }
    ct_tensor *j = ct_scope_keep(s, ct_stack(cols, n, 2));                                  /* (B, m, n) */
    ct_scope_end(s);
    return j;
}

Test(freeform, jvp_vjp_and_encoder_jacobian_match_finite_differences_of_a_small_network)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    const int B = 6, D = 4, d = 2, C = 3;
    ct_gen *g = ct_gen_new(5);
    ct_params *ps = ct_params_new();
    fl_freeform n;
    fl_freeform_spec spec = {.dim = D, .latent = d, .cond_dim = C, .hidden = 16, .n_blocks = 1,
                             .n_layers = 2, .act = FL_ACT_TANH};
    cr_assert_eq(fl_freeform_init(&n, ps, "t", &spec, g), 0, "%s", fl_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *z = ct_randn(CT_SHAPE(B, C), CT_F64, g);                                    /* (B, C) */
    ct_tensor *u = ct_randn(CT_SHAPE(B, D), CT_F64, g);                                    /* (B, D) */
    ct_tensor *h0 = ct_randn(CT_SHAPE(B, d), CT_F64, g);                                   /* (B, d) */
    pair_ctx p = {&n, z};
    ct_tensor *j_enc = fd_jacobian(net_enc, &p, u, D);                                     /* (B, d, D) */
    ct_tensor *j_dec = fd_jacobian(net_dec, &p, h0, d);                                    /* (B, D, d) */
    /* the encoder's full Jacobian (FFF's exact NLL) */
    ct_tensor *j = fl_freeform_encoder_jacobian(&n, u, z);
    cr_assert_not_null(j, "%s", ct_last_error());
    double e_j = ct_max_abs_diff(j, j_enc);
    cr_expect_lt(e_j, 1e-7, "encoder Jacobian differs from finite differences by %g", e_j);
    /* the VJP vᵀ f′(u), as the surrogate takes it */
    ct_tensor *x = ct_detach(u);
    ct_set_requires_grad(x, true);
    ct_tensor *v = ct_randn(CT_SHAPE(B, d), CT_F64, g);                                    /* (B, d) */
    ct_tensor *vjp = fl_ff_vjp(net_enc(&p, x), x, v, true);                                /* (B, D) */
    ct_tensor *vjp_want = ct_squeeze(ct_bmm(ct_unsqueeze(v, 1), j_enc), 1);                /* (B, D) */
    double e_vjp = ct_max_abs_diff(vjp, vjp_want);
    cr_expect_lt(e_vjp, 1e-7, "vᵀ f′ differs from vᵀ J by %g", e_vjp);
    /* the JVP g′(h) v by forward mode, and the g(h) it returns */
    ct_tensor *y = NULL;
    ct_tensor *jvp = fl_ff_jvp(net_dec, &p, h0, v, &y);                                    /* (B, D) */
    cr_assert_not_null(jvp, "%s", ct_last_error());
    ct_tensor *jvp_want = ct_squeeze(ct_bmm(j_dec, ct_unsqueeze(v, 2)), 2);                /* (B, D) */
    double e_jvp = ct_max_abs_diff(jvp, jvp_want);
    cr_expect_lt(e_jvp, 1e-7, "g′ v differs from J v by %g", e_jvp);
    cr_expect_lt(ct_max_abs_diff(y, net_dec(&p, h0)), 1e-14, "the JVP's primal is not g(h)");
    ct_scope_end(s);
    ct_params_free(ps);
    ct_gen_free(g);
    ct_set_float_dtype(prev);
}

/* ---- the losses' parts ------------------------------------------------------------------ */

static fl_config *config_with(const char *const *overrides)
{
    fl_config *c = fl_config_default();
    for (; overrides && *overrides; overrides++)
        cr_assert_eq(fl_config_override(c, *overrides), 0, "%s: %s", *overrides, fl_error());
    return c;
}

/* The term named name of t, or NAN. */
static double term(const fl_terms *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->name[i], name) == 0) return t->value[i];
    return NAN;
}

Test(freeform, fff_loss_is_its_parts_and_nll_exact_is_the_change_of_variables)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    const int B = 8, D = 3, C = 2;
    const double beta = 4;
    fl_config *c = config_with((const char *const[]){"fff.hidden=16", "fff.blocks=1", "fff.beta=4",
                                                     "fff.exact_nll_max_dim=3", NULL});
    const fl_family *fam = fl_family_find("fff");
    cr_assert_not_null(fam);
    ct_params *ps = ct_params_new();
    ct_gen *g = ct_gen_new(2);
    void *m = fam->create(c, D, C, ps, g);
    cr_assert_not_null(m, "%s", fl_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *u = ct_randn(CT_SHAPE(B, D), CT_F64, g), *z = ct_randn(CT_SHAPE(B, C), CT_F64, g);
    fl_terms t = {0};
    ct_tensor *loss = fam->loss(m, u, z, g, &t);
    cr_assert_not_null(loss, "%s", fl_error());
    double want = beta * term(&t, "rec") + term(&t, "nll_z") + term(&t, "volume");
    cr_expect_lt(fabs(ct_item(loss) - want), 1e-10, "loss %.12g, β·rec + nll_z + volume %.12g",
                 ct_item(loss), want);
    /* the parts, by hand */
    const fl_freeform *n = fl_fff_net(m);
    ct_tensor *h = fl_freeform_encode(n, u, z);                                            /* (B, D) */
    double rec = ct_item(ct_mean(ct_sum_dim(ct_square(ct_sub(fl_freeform_decode(n, h, z), u)), 1, false)));
    double nll_z = ct_item(ct_mean(ct_sum_dim(ct_square(h), 1, false))) / 2 + D * log(2 * M_PI) / 2;
    cr_expect_lt(fabs(term(&t, "rec") - rec), 1e-10);
    cr_expect_lt(fabs(term(&t, "nll_z") - nll_z), 1e-10);
    /* nll_exact = nll_z − log|det f′| with the Jacobian from the per-output VJPs */
    ct_tensor *jac = ct_zeros(CT_SHAPE(B, D, D), CT_F64);                                 /* (B, D, D) */
    ct_tensor *x = ct_detach(u);
    ct_set_requires_grad(x, true);
    ct_tensor *hx = fl_freeform_encode(n, x, z);
    for (int i = 0; i < D; i++) {
        ct_tensor *e = ct_zeros(CT_SHAPE(B, D), CT_F64);
        ct_fill_(ct_narrow(e, 1, i, 1), 1.0);
        ct_copy_(ct_narrow(jac, 1, i, 1), ct_unsqueeze(ct_vjp(hx, x, e, false), 1));
    }
    double exact = nll_z - ct_item(ct_mean(ct_slogdet_abs(jac)));
    cr_expect_lt(fabs(term(&t, "nll_exact") - exact), 1e-9, "nll_exact %.12g, want %.12g",
                 term(&t, "nll_exact"), exact);
    /* with grad off (validation) the same estimate, without a graph */
    bool grad = ct_set_grad_enabled(false);
    ct_gen *g1 = ct_gen_new(9), *g2 = ct_gen_new(9);
    ct_tensor *l_off = fam->loss(m, u, z, g1, NULL);
    ct_set_grad_enabled(grad);
    ct_tensor *l_on = fam->loss(m, u, z, g2, NULL);
    cr_assert_not_null(l_off, "%s", fl_error());
    cr_expect(!ct_requires_grad(l_off), "the validation loss carries a graph");
    cr_expect_lt(fabs(ct_item(l_off) - ct_item(l_on)), 1e-12);
    ct_gen_free(g1);
    ct_gen_free(g2);
    ct_scope_end(s);
    fam->destroy(m);
    ct_params_free(ps);
    ct_gen_free(g);
    /* above fff.exact_nll_max_dim there is no such term */
    cr_assert_eq(fl_config_override(c, "fff.exact_nll_max_dim=2"), 0);
    ps = ct_params_new();
    g = ct_gen_new(2);
    m = fam->create(c, D, C, ps, g);
    s = ct_scope_begin();
    fl_terms t2 = {0};
    cr_assert_not_null(fam->loss(m, ct_randn(CT_SHAPE(B, D), CT_F64, g), ct_randn(CT_SHAPE(B, C), CT_F64, g),
                                 g, &t2), "%s", fl_error());
    cr_expect(isnan(term(&t2, "nll_exact")), "nll_exact computed at D = 3 > fff.exact_nll_max_dim = 2");
    ct_scope_end(s);
    fam->destroy(m);
    ct_params_free(ps);
    ct_gen_free(g);
    fl_config_free(c);
    ct_set_float_dtype(prev);
}

/* ---- (c) toy problems through the shared loop ------------------------------------------ */

/* Trains on (u, z) with the shared loop (λ = 0); the condition statistics stay
 * identity, so the family sees z as it is. */
static fl_fiber *fit(const char *const *overrides, int u_dim, int z_dim, fl_latents *train)
{
    static const char *const base[] = {
        "train.batch_size=128", "train.lr=3e-3", "train.val_every=0", "train.checkpoint_every=0",
        "train.lambda=0", "train.latent_noise=0", "threads=1", "seed=0", NULL};
    fl_config *c = test_config("cache", base);
    char kv[64];
    snprintf(kv, sizeof kv, "vae.latent=%d", u_dim);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    for (; *overrides; overrides++)
        cr_assert_eq(fl_config_override(c, *overrides), 0, "%s: %s", *overrides, fl_error());
    fl_fiber *m = fl_fiber_create(c, u_dim, z_dim);
    cr_assert_not_null(m, "%s", fl_error());
    fl_subject *subj = fl_subject_custom("none", z_dim, NULL, NULL, NULL);   /* λ = 0: unused */
    fl_fiber_train_opts fo;
    fl_fiber_train_opts_from_config(&fo, c);
    fl_train_result tr;
    cr_assert_eq(fl_fiber_train(m, c, &fo, NULL, subj, train, NULL, NULL, &tr), 0, "%s", fl_error());
    fl_train_result_free(&tr);
    fl_subject_free(subj);
    fl_config_free(c);
    return m;
}

/* z ~ U[−1, 1], u = (z + 0.3 ε₁, −0.5 z + σ₂(z) ε₂) with σ₂(z) = 0.15 + 0.1 (z + 1):
 * a conditional Gaussian; *nll gets the mean of its true −log p(u | z). */
static void gauss_data(int64_t n, uint64_t seed, ct_tensor **u, ct_tensor **z, double *nll)
{
    ct_gen *g = ct_gen_new(seed);
    ct_scope *s = ct_scope_begin();
    ct_tensor *zz = ct_adds(ct_muls(ct_rand(CT_SHAPE(n, 1), CT_F32, g), 2), -1);         /* (N, 1) */
    ct_tensor *e = ct_randn(CT_SHAPE(n, 2), CT_F32, g);                                   /* (N, 2) */
    ct_tensor *s2 = ct_adds(ct_muls(ct_adds(zz, 1), 0.1), 0.15);                         /* (N, 1) */
    ct_tensor *u1 = ct_axpy(zz, 0.3, ct_narrow(e, 1, 0, 1));
    ct_tensor *u2 = ct_add(ct_muls(zz, -0.5), ct_mul(s2, ct_narrow(e, 1, 1, 1)));
    if (nll)
        *nll = ct_item(ct_mean(ct_add(ct_adds(ct_log(s2), log(2 * M_PI) + log(0.3)),
                                      ct_muls(ct_sum_dim(ct_square(e), 1, true), 0.5))));
    *u = ct_unscope(ct_scope_keep(s, ct_cat2(u1, u2, 1)));
    *z = ct_unscope(ct_scope_keep(s, zz));
    ct_scope_end(s);
    ct_gen_free(g);
}

Test(freeform, fff_fits_a_conditional_gaussian_to_its_true_nll)
{
    const char *const o[] = {"model.family=fff", "fff.hidden=64", "fff.blocks=2", "fff.exact_nll_max_dim=2",
                             "train.steps=1500", NULL};
    fl_latents train = {0};
    gauss_data(8192, 1, &train.u, &train.z, NULL);
    double t0 = fl_now();
    fl_fiber *m = fit(o, 2, 1, &train);
    double t_fit = fl_now() - t0;
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u, *z;
    double nll_true;
    gauss_data(4096, 2, &u, &z, &nll_true);
    ct_tensor *nll = fl_fff_exact_nll(fl_fiber_model(m), u, z);
    cr_assert_not_null(nll, "%s", ct_last_error());
    double nll_model = ct_item(ct_mean(nll));
    const fl_freeform *n = fl_fff_net(fl_fiber_model(m));
    ct_tensor *h = fl_freeform_encode(n, u, z);
    double rec = sqrt(ct_item(ct_mean(ct_square(ct_sub(fl_freeform_decode(n, h, z), u)))));
    fl_info("fff: exact NLL %.4f (true %.4f), reconstruction RMS %.4f, %.1f s training",
            nll_model, nll_true, rec, t_fit);
    cr_expect_lt(fabs(nll_model - nll_true), 0.1, "exact NLL %.4f, the true NLL %.4f (margin 0.1 nats)",
                 nll_model, nll_true);
    cr_expect_lt(rec, 0.05, "g(f(u)) reconstructs u with an RMS error of %.4f", rec);
    /* samples: the conditional means and spreads at z = ±0.8 */
    ct_gen *g = ct_gen_new(4);
    fl_sample_opts so = {.steps = 0, .temperature = 1, .keep_graph = false};
    const double zs[2] = {-0.8, 0.8};
    for (int i = 0; i < 2; i++) {
        ct_tensor *zc = ct_full(CT_SHAPE(4000, 1), zs[i], CT_F32);
        ct_tensor *x = fl_fiber_sample_space(m, zc, &so, g);   /* (N, 2) */
        cr_assert_not_null(x, "%s", fl_error());
        ct_tensor *mean = ct_mean_dim(x, 0, false), *sd = ct_std_dim(x, 0, true, false);
        double m1 = ct_item(ct_select(mean, 0, 0)), m2 = ct_item(ct_select(mean, 0, 1));
        double s1 = ct_item(ct_select(sd, 0, 0)), s2 = ct_item(ct_select(sd, 0, 1));
        double s2_true = 0.15 + 0.1 * (zs[i] + 1);
        fl_info("fff samples at z = %.1f: mean (%.3f, %.3f), sd (%.3f, %.3f); true (%.3f, %.3f), (0.3, %.3f)",
                zs[i], m1, m2, s1, s2, zs[i], -0.5 * zs[i], s2_true);
        cr_expect_lt(fabs(m1 - zs[i]) + fabs(m2 + 0.5 * zs[i]), 0.08, "sample mean off at z = %.1f", zs[i]);
        cr_expect_lt(fabs(s1 / 0.3 - 1), 0.15, "sample sd %.3f of u₁ (0.3) at z = %.1f", s1, zs[i]);
        cr_expect_lt(fabs(s2 / s2_true - 1), 0.15, "sample sd %.3f of u₂ (%.3f) at z = %.1f", s2, s2_true, zs[i]);
    }
    ct_gen_free(g);
    ct_free(u);
    ct_free(z);
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    fl_fiber_free(m);
    fl_latents_free(&train);
}

/* u = z (cos θ, sin θ) + N(0, noise²), z ∈ [0.5, 1.5], θ ~ U[−0.8π, 0.8π]: given z an
 * arc of a circle, a 1-D manifold in 2-D (an arc: ℝ maps onto no closed circle). */
#define ARC (0.8 * M_PI)
static void arc_data(int64_t n, double noise, uint64_t seed, ct_tensor **u, ct_tensor **z)
{
    ct_gen *g = ct_gen_new(seed);
    ct_scope *s = ct_scope_begin();
    ct_tensor *r = ct_adds(ct_rand(CT_SHAPE(n, 1), CT_F32, g), 0.5);                    /* (N, 1) */
    ct_tensor *th = ct_adds(ct_muls(ct_rand(CT_SHAPE(n, 1), CT_F32, g), 2 * ARC), -ARC); /* (N, 1) */
    ct_tensor *x = ct_cat2(ct_mul(r, ct_cos(th)), ct_mul(r, ct_sin(th)), 1);            /* (N, 2) */
    if (noise > 0) x = ct_axpy(x, noise, ct_randn_like(x, g));
    *u = ct_unscope(ct_scope_keep(s, x));
    *z = ct_unscope(ct_scope_keep(s, r));
    ct_scope_end(s);
    ct_gen_free(g);
}

Test(freeform, fif_recovers_a_conditional_arc_in_2d_and_samples_on_it)
{
    const char *const o[] = {"model.family=fif", "fif.latent=1", "fif.hidden=64", "fif.blocks=2",
                             "train.steps=1500", NULL};
    fl_latents train = {0};
    arc_data(8192, 0.01, 1, &train.u, &train.z);
    fl_fiber *m = fit(o, 2, 1, &train);
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u, *z;
    arc_data(1024, 0, 2, &u, &z);
    const fl_freeform *n = fl_fif_net(fl_fiber_model(m));
    ct_tensor *u_hat = fl_freeform_decode(n, fl_freeform_encode(n, u, z), z);            /* (N, 2) */
    cr_assert_not_null(u_hat, "%s", ct_last_error());
    double rms = sqrt(ct_item(ct_mean(ct_sum_dim(ct_square(ct_sub(u_hat, u)), 1, false))));
    ct_gen *g = ct_gen_new(3);
    fl_sample_opts so = {.steps = 0, .temperature = 1, .keep_graph = false};
    ct_tensor *x = fl_fiber_sample_space(m, z, &so, g);                                 /* (N, 2) */
    cr_assert_not_null(x, "%s", fl_error());
    double dist = ct_item(ct_mean(ct_abs(ct_sub(ct_norm_dim(x, 1, true), z))));
    ct_tensor *th = ct_atan2(ct_select(x, 1, 1), ct_select(x, 1, 0));                    /* (N,) */
    double frac[4];
    for (int q = 0; q < 4; q++) {
        double lo = -ARC + q * ARC / 2, hi = lo + ARC / 2;
        frac[q] = ct_item(ct_mean(ct_to_dtype(ct_mul(ct_gts(th, lo), ct_lts(th, hi)), CT_F32)));
    }
    fl_info("fif: reconstruction RMS %.4f; samples %.4f from the arc, quarters %.2f %.2f %.2f %.2f",
            rms, dist, frac[0], frac[1], frac[2], frac[3]);
    cr_expect_lt(rms, 0.05, "g(f(u)) reconstructs the arc with an RMS error of %.4f", rms);
    cr_expect_lt(dist, 0.05, "samples lie %.4f from the arc on average", dist);
    for (int q = 0; q < 4; q++)
        cr_expect_gt(frac[q], 0.12, "quarter %d of the arc got %.2f of the samples", q, frac[q]);
    ct_gen_free(g);
    ct_free(u);
    ct_free(z);
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    fl_fiber_free(m);
    fl_latents_free(&train);
}

/* ---- (d) λ > 0 lowers the fiber loss --------------------------------------------------- */

/* Both families in one test: the second run reuses the subject and VAE the first trained. */
Test(freeform, lambda_lowers_the_fiber_loss_of_fff_and_of_fif)
{
    const char *const families[2] = {"fff", "fif"};
    const char *const extra[2][5] = {{"fff.hidden=32", "fff.blocks=1", "fff.exact_nll_max_dim=0", NULL},
                                     {"fif.hidden=32", "fif.blocks=1", "fif.latent=3", NULL}};
    for (int i = 0; i < 2; i++) {
        double f0, f1, t0 = fl_now();
        lambda_fixture_run(families[i], 30, extra[i], &f0, &f1);
        fl_info("%s: fiber loss %.4f at λ = 0, %.4f at λ = 30 (%.1f s)", families[i], f0, f1, fl_now() - t0);
        cr_expect_lt(f1, f0, "%s: λ = 30 gave a fiber loss of %.4f, λ = 0 %.4f", families[i], f1, f0);
    }
}

/* ---- (e) refused settings -------------------------------------------------------------- */

static void expect_refused(const char *const *overrides, const char *want1, const char *want2)
{
    fl_config *c = config_with(overrides);
    cr_expect_neq(fl_fiber_check(c, 0), 0, "accepted (%s)", want1);
    cr_expect(strstr(fl_error(), want1) && strstr(fl_error(), want2), "message: %s", fl_error());
    fl_config_free(c);
}

Test(freeform, a_fif_latent_not_below_the_data_dimension_is_refused_naming_the_key)
{
    expect_refused((const char *const[]){"model.family=fif", "fif.latent=60", NULL},
                   "fif.latent: 60 is not below the latent dimension 54 (vae.latent)", "");
    expect_refused((const char *const[]){"model.family=fif", "vae.latent=8", "fif.latent=8", NULL},
                   "fif.latent: 8", "vae.latent");
    /* the defaults pass, for both families */
    fl_config *c = fl_config_default();
    cr_expect_eq(fl_config_override(c, "model.family=fif"), 0);
    cr_expect_eq(fl_fiber_check(c, 0), 0, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "model.family=fff"), 0);
    cr_expect_eq(fl_fiber_check(c, 0), 0, "%s", fl_error());
    fl_config_free(c);
    /* the key's own bounds */
    c = fl_config_default();
    cr_expect_neq(fl_config_override(c, "fif.latent=0"), 0, "fif.latent = 0 was accepted");
    cr_expect(strstr(fl_error(), "fif.latent"), "message: %s", fl_error());
    cr_expect_neq(fl_config_override(c, "fff.noise=\"uniform\""), 0, "fff.noise = uniform was accepted");
    cr_expect(strstr(fl_error(), "fff.noise"), "message: %s", fl_error());
    fl_config_free(c);
}
