/* The iterative families DIFF (trainers/diff.c) and FM (trainers/fm.c): each fits a
 * conditional 2-D Gaussian toy problem (DIFF with an ε- and with a v-network); the
 * targets of the ε, v and x0 predictions convert back to the true ε, the network's output
 * reaches the samplers through that conversion, and the loss is the MSE on the predicted
 * quantity; DDIM at η = 0 is deterministic and its
 * inversion returns to the sample; FM's midpoint solver follows the closed-form flow
 * between two Gaussians (at least) to second order; gradients through the samplers match finite
 * differences, and truncation to the last k steps is the gradient of the truncated
 * graph; activation checkpointing keeps the samples and the fiber-loss gradient while it
 * recomputes exactly the differentiated steps; λ > 0 lowers the fiber loss on a short
 * color-MNIST run; bad settings are refused naming the key. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/fiber.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "store_fixture.h"
#include "lambda_fixture.h"
#include "trainers/diffusion.h"
#include "trainers/family.h"
#include "trainers/fiber.h"
#include "trainers/loop.h"

static fl_config *config_with(const char *const *overrides)
{
    fl_config *c = fl_config_default();
    cr_assert_not_null(c, "%s", fl_error());
    for (; overrides && *overrides; overrides++)
        cr_assert_eq(fl_config_override(c, *overrides), 0, "%s: %s", *overrides, fl_error());
    return c;
}

/* A family's model (its parameters in *ps) for u_dim and z_dim under the overrides. */
static void *model_new(const fl_family *fam, const char *const *overrides, int u_dim, int z_dim,
                       uint64_t seed, ct_params **ps)
{
    fl_config *c = config_with(overrides);
    cr_assert_eq(fam->check(c, u_dim, z_dim), 0, "%s", fl_error());
    *ps = ct_params_new();
    ct_gen *g = ct_gen_new(seed);
    void *m = fam->create(c, u_dim, z_dim, *ps, g);
    cr_assert_not_null(m, "%s", fl_error());
    ct_gen_free(g);
    fl_config_free(c);
    return m;
}

/* ---- the toy problem: u | c ~ N(μ(c), L(c) L(c)ᵀ), c ∈ {−1, 0, 1}, z = c ------------- */

static void toy_truth(int c, double mu[2], double L[2][2])
{
    double s1 = 0.5 + 0.25 * (c + 1), s2 = 0.6, rho = 0.6 * c;
    mu[0] = 1.5 * c;
    mu[1] = 1.0 - c;
    L[0][0] = s1, L[0][1] = 0;
    L[1][0] = rho * s2, L[1][1] = s2 * sqrt(1 - rho * rho);
}

typedef struct {
    const fl_family *fam;
    void *model;
    ct_params *ps;
    ct_gen *g;
    ct_tensor *mu, *L;   /* (3, 2), (3, 2, 2) */
} toy_task;

static ct_tensor *toy_step(void *ctx, fl_terms *terms)
{
    toy_task *t = ctx;
    const int64_t b = 256;
    ct_tensor *ci = ct_randint(3, CT_SHAPE(b), t->g);                             /* (B) */
    ct_tensor *z = ct_unsqueeze(ct_adds(ct_to_dtype(ci, CT_F32), -1), 1);          /* (B, 1) */
    ct_tensor *e = ct_randn(CT_SHAPE(b, 2, 1), CT_F32, t->g);                      /* (B, 2, 1) */
    ct_tensor *u = ct_add(ct_index_select(t->mu, 0, ci),
                          ct_squeeze(ct_bmm(ct_index_select(t->L, 0, ci), e), 2)); /* (B, 2) */
    return t->fam->loss(t->model, u, z, t->g, terms);
}

/* Trains a fresh model of fam on the toy problem with the shared loop. */
static void toy_train(toy_task *t, const fl_family *fam, const char *const *overrides, int steps)
{
    float mu[3][2], L[3][2][2];
    for (int c = -1; c <= 1; c++) {
        double m[2], l[2][2];
        toy_truth(c, m, l);
        for (int i = 0; i < 2; i++) {
            mu[c + 1][i] = (float)m[i];
            for (int j = 0; j < 2; j++) L[c + 1][i][j] = (float)l[i][j];
        }
    }
    t->fam = fam;
    t->model = model_new(fam, overrides, 2, 1, 11, &t->ps);
    t->g = ct_gen_new(12);
    t->mu = ct_from_data(mu, CT_SHAPE(3, 2), CT_F32);
    t->L = ct_from_data(L, CT_SHAPE(3, 2, 2), CT_F32);
    fl_config *c = config_with((const char *const[]){"train.lr=3e-3", "train.val_every=0", NULL});
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    o.steps = steps;
    o.label = fam->name;
    fl_task task = {.params = t->ps, .ctx = t, .step_loss = toy_step};
    fl_train_result res = {0};
    cr_assert_eq(fl_train_run(&task, &o, &res), 0, "%s", fl_error());
    fl_train_result_free(&res);
    fl_config_free(c);
}

static void toy_free(toy_task *t)
{
    t->fam->destroy(t->model);
    ct_params_free(t->ps);
    ct_gen_free(t->g);
    ct_free(t->mu);
    ct_free(t->L);
}

/* n samples of condition c through the family's evaluation sampler. */
static ct_tensor *toy_sample(toy_task *t, int c, int64_t n, int steps, uint64_t seed)
{
    bool prev = ct_set_grad_enabled(false);
    ct_gen *g = ct_gen_new(seed);
    ct_tensor *z = ct_full(CT_SHAPE(n, 1), c, CT_F32);                           /* (n, 1) */
    fl_sample_opts o = {.steps = steps, .temperature = 1, .keep_graph = false};
    ct_tensor *u = t->fam->sample(t->model, z, &o, g);                             /* (n, 2) */
    cr_assert_not_null(u, "%s", fl_error());
    ct_gen_free(g);
    ct_set_grad_enabled(prev);
    return u;
}

/* Per condition: the sample mean within mean_tol and every covariance entry within
 * cov_tol of the truth. */
static void toy_expect_fit(toy_task *t, int steps, double mean_tol, double cov_tol)
{
    const int64_t n = 4000;
    for (int c = -1; c <= 1; c++) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *u = ct_to_dtype(toy_sample(t, c, n, steps, 100 + (uint64_t)c), CT_F64);
        ct_tensor *mean = ct_mean_dim(u, 0, true);                                /* (1, 2) */
        ct_tensor *d = ct_sub(u, mean);                                          /* (n, 2) */
        ct_tensor *cov = ct_muls(ct_mm(ct_transpose(d, 0, 1), d), 1.0 / (n - 1)); /* (2, 2) */
        double m[2], cv[4], mu[2], L[2][2];
        cr_assert_eq(ct_to_data(mean, m, sizeof m), CT_OK);
        cr_assert_eq(ct_to_data(cov, cv, sizeof cv), CT_OK);
        toy_truth(c, mu, L);
        for (int i = 0; i < 2; i++) {
            cr_expect(fabs(m[i] - mu[i]) < mean_tol, "%s c=%d: mean[%d] %.3f, truth %.3f",
                      t->fam->name, c, i, m[i], mu[i]);
            for (int j = 0; j < 2; j++) {
                double truth = L[i][0] * L[j][0] + L[i][1] * L[j][1];
                cr_expect(fabs(cv[2 * i + j] - truth) < cov_tol,
                          "%s c=%d: cov[%d][%d] %.3f, truth %.3f", t->fam->name, c, i, j,
                          cv[2 * i + j], truth);
            }
        }
        ct_scope_end(s);
    }
}

static const char *const toy_net[] = {"diff.hidden=64", "diff.blocks=2", "diff.time_embed=16",
                                      "fm.hidden=64", "fm.blocks=2", "fm.time_embed=16", NULL};

Test(diffusion, diff_fits_the_per_condition_mean_and_covariance_of_a_2d_gaussian_toy)
{
    toy_task t;
    toy_train(&t, &fl_family_diff, toy_net, 2000);
    toy_expect_fit(&t, 50, 0.1, 0.1);
    toy_free(&t);
}

Test(diffusion, fm_fits_the_per_condition_mean_and_covariance_of_a_2d_gaussian_toy)
{
    toy_task t;
    toy_train(&t, &fl_family_fm, toy_net, 1200);
    toy_expect_fit(&t, 20, 0.1, 0.1);
    toy_free(&t);
}

Test(diffusion, diff_with_v_prediction_fits_the_per_condition_mean_and_covariance_of_a_2d_gaussian_toy)
{
    static const char *const ov[] = {"diff.hidden=64", "diff.blocks=2", "diff.time_embed=16",
                                     "diff.prediction=v", NULL};
    toy_task t;
    toy_train(&t, &fl_family_diff, ov, 2000);
    toy_expect_fit(&t, 50, 0.1, 0.1);
    toy_free(&t);
}

/* ---- what the network predicts: ε, v or x0 ------------------------------------------- */

static const fl_diff_prediction predictions[] = {FL_DIFF_EPS, FL_DIFF_V, FL_DIFF_X0};
static const char *const prediction_names[] = {"eps", "v", "x0"};

Test(diffusion, the_target_of_each_prediction_converts_back_to_the_true_noise)
{
    ct_scope *sc = ct_scope_begin();
    ct_gen *g = ct_gen_new(17);
    /* ᾱ from the authors' ᾱ_T (2e-9) to the first step's 1 − 1e-4, one per row */
    const double abar[] = {2e-9, 1e-3, 0.1, 0.5, 0.9, 0.9999};
    const int64_t b = sizeof abar / sizeof abar[0];
    ct_tensor *ab = ct_from_data(abar, CT_SHAPE(b, 1), CT_F64);                    /* (B, 1) */
    ct_tensor *x0 = ct_randn(CT_SHAPE(b, 5), CT_F64, g), *eps = ct_randn(CT_SHAPE(b, 5), CT_F64, g);
    ct_tensor *x_t = ct_add(ct_mul(ct_sqrt(ab), x0), ct_mul(ct_sqrt(ct_rsubs(ab, 1)), eps)); /* (B, 5) */
    for (int k = 0; k < 3; k++) {
        /* an oracle network: it returns the true target; its ε̂ must be the true ε */
        ct_tensor *target = fl_diff_target(predictions[k], x0, eps, ab, 0);       /* (B, 5) */
        ct_tensor *e = fl_diff_eps_from(predictions[k], x_t, target, ab, 0);
        double d = ct_max_abs_diff(e, eps);
        cr_expect_lt(d, 1e-9, "%s, per-row ᾱ: ε̂ %.3g off ε", prediction_names[k], d);
        /* the same with ᾱ a number, row by row */
        for (int64_t i = 0; i < b; i++) {
            ct_tensor *r0 = ct_narrow(x0, 0, i, 1), *re = ct_narrow(eps, 0, i, 1), *rx = ct_narrow(x_t, 0, i, 1);
            ct_tensor *e1 = fl_diff_eps_from(predictions[k], rx, fl_diff_target(predictions[k], r0, re, NULL, abar[i]),
                                             NULL, abar[i]);
            double d1 = ct_max_abs_diff(e1, re);
            cr_expect_lt(d1, 1e-9, "%s, ᾱ = %g: ε̂ %.3g off ε", prediction_names[k], abar[i], d1);
        }
    }
    /* v is Salimans & Ho's: x0 = √ᾱ x_t − √(1−ᾱ) v and ε = √(1−ᾱ) x_t + √ᾱ v */
    ct_tensor *v = fl_diff_target(FL_DIFF_V, x0, eps, ab, 0);
    double dx = ct_max_abs_diff(ct_sub(ct_mul(ct_sqrt(ab), x_t), ct_mul(ct_sqrt(ct_rsubs(ab, 1)), v)), x0);
    double de = ct_max_abs_diff(ct_add(ct_mul(ct_sqrt(ct_rsubs(ab, 1)), x_t), ct_mul(ct_sqrt(ab), v)), eps);
    cr_expect_lt(dx, 1e-12, "x0 from v: %.3g off", dx);
    cr_expect_lt(de, 1e-12, "ε from v: %.3g off", de);
    cr_expect_gt(ct_max_abs_diff(v, eps), 0.1, "v is not ε");
    ct_gen_free(g);
    ct_scope_end(sc);
}

Test(diffusion, the_network_output_reaches_the_samplers_as_eps_through_the_prediction)
{
    ct_scope *sc = ct_scope_begin();
    ct_dtype prev_dt = ct_set_float_dtype(CT_F64);
    bool prev = ct_set_grad_enabled(false);
    fl_diff *m[3];
    ct_params *ps[3];
    char key[32];
    for (int k = 0; k < 3; k++) {   /* the same seed: the same weights, read three ways */
        snprintf(key, sizeof key, "diff.prediction=%s", prediction_names[k]);
        m[k] = model_new(&fl_family_diff, (const char *const[]){"diff.hidden=32", key, NULL}, 3, 2, 5, &ps[k]);
    }
    ct_gen *g = ct_gen_new(1);
    ct_tensor *x = ct_randn(CT_SHAPE(16, 3), CT_F64, g), *z = ct_randn(CT_SHAPE(16, 2), CT_F64, g);
    int T = fl_diff_T(m[0]);
    const int ts[] = {1, T / 2, T};
    for (int i = 0; i < 3; i++) {
        int t = ts[i];
        double a = fl_diff_alpha_bar(m[0], t);
        ct_tensor *out = fl_diff_eps(m[0], x, t, z);                               /* the raw output */
        ct_tensor *ev = fl_diff_eps(m[1], x, t, z), *ex = fl_diff_eps(m[2], x, t, z);
        double dv = ct_max_abs_diff(ev, ct_axpy(ct_muls(x, sqrt(1 - a)), sqrt(a), out));
        double dx = ct_max_abs_diff(ex, ct_muls(ct_axpy(x, -sqrt(a), out), 1 / sqrt(1 - a)));
        cr_expect_lt(dv, 1e-12, "v, t = %d: ε̂ %.3g off √(1−ᾱ) x + √ᾱ v̂", t, dv);
        cr_expect_lt(dx, 1e-9, "x0, t = %d: ε̂ %.3g off (x − √ᾱ x̂0)/√(1−ᾱ)", t, dx);
        cr_expect_gt(ct_max_abs_diff(ev, out), 1e-3, "t = %d: v's ε̂ is the raw output", t);
    }
    for (int k = 0; k < 3; k++) fl_family_diff.destroy(m[k]), ct_params_free(ps[k]);
    ct_gen_free(g);
    ct_set_grad_enabled(prev);
    ct_set_float_dtype(prev_dt);
    ct_scope_end(sc);
}

/* A diffusion model of one step (ᾱ_1 = 0.64) whose every weight is 0: its output is 0. */
static fl_diff *zero_model(fl_diff_prediction p, ct_params **ps)
{
    *ps = ct_params_new();
    ct_gen *g = ct_gen_new(3);
    fl_diff_spec s = {.net = {.dim = 4, .cond_dim = 0, .embed = 8, .hidden = 16, .n_blocks = 0,
                              .n_layers = 1, .act = fl_act_parse("silu")},
                      .T = 1, .beta_max = 0.36, .steps = 1, .prediction = p};
    fl_diff *m = fl_diff_new(&s, *ps, "zero", g);
    cr_assert_not_null(m, "%s", fl_error());
    bool prev = ct_set_grad_enabled(false);
    for (int i = 0; i < ct_params_count(*ps); i++) cr_assert_eq(ct_zero_(ct_params_at(*ps, i)), CT_OK);
    ct_set_grad_enabled(prev);
    ct_gen_free(g);
    return m;
}

/* The training loss of m on u (B, 4), the noise from a generator of seed 9. */
static double ddpm_loss_of(const fl_diff *m, const ct_tensor *u)
{
    ct_gen *g = ct_gen_new(9);
    ct_tensor *none = ct_zeros(CT_SHAPE(ct_size(u, 0), 0), CT_F64);              /* (B, 0) */
    ct_tensor *l = fl_diff_ddpm_loss(m, u, none, g);
    cr_assert_not_null(l, "%s", fl_error());
    double r = ct_item(l);
    ct_free(l), ct_free(none);
    ct_gen_free(g);
    return r;
}

Test(diffusion, the_training_loss_is_the_mse_on_the_predicted_quantity)
{
    ct_scope *sc = ct_scope_begin();
    ct_dtype prev_dt = ct_set_float_dtype(CT_F64);
    ct_params *ps[3];
    fl_diff *m[3];
    for (int k = 0; k < 3; k++) m[k] = zero_model(predictions[k], &ps[k]);
    cr_assert_float_eq(fl_diff_alpha_bar(m[0], 1), 0.64, 1e-15);
    ct_gen *g = ct_gen_new(2);
    ct_tensor *u = ct_adds(ct_muls(ct_randn(CT_SHAPE(64, 4), CT_F64, g), 0.7), 0.3);   /* (64, 4) */
    double uu = ct_item(ct_mean(ct_square(u)));
    /* the output is 0, so each loss is the mean square of its target, with the same ε:
     * eps mean ε², x0 mean u², v mean (0.8 ε − 0.6 u)², whose ±u average drops the cross term */
    double l_eps = ddpm_loss_of(m[0], u), l_x0 = ddpm_loss_of(m[2], u);
    double l_vp = ddpm_loss_of(m[1], u), l_vm = ddpm_loss_of(m[1], ct_neg(u));
    double l_v0 = ddpm_loss_of(m[1], ct_zeros_like(u));
    cr_expect_float_eq(l_x0, uu, 1e-12, "x0: loss %.15g, mean u² %.15g", l_x0, uu);
    cr_expect_float_eq(l_v0, 0.64 * l_eps, 1e-12, "v at u = 0: loss %.15g, 0.64 mean ε² %.15g", l_v0,
                       0.64 * l_eps);
    cr_expect_float_eq((l_vp + l_vm) / 2, 0.64 * l_eps + 0.36 * uu, 1e-12,
                       "v: loss at ±u %.15g, 0.64 mean ε² + 0.36 mean u² %.15g", (l_vp + l_vm) / 2,
                       0.64 * l_eps + 0.36 * uu);
    cr_expect(fabs(l_eps - 1) < 0.3 && fabs(l_eps - uu) > 0.1, "eps: loss %.4g is not about mean ε² = 1", l_eps);
    for (int k = 0; k < 3; k++) fl_diff_free(m[k]), ct_params_free(ps[k]);
    ct_gen_free(g);
    ct_set_float_dtype(prev_dt);
    ct_scope_end(sc);
}

/* ---- DDIM ---------------------------------------------------------------------------- */

Test(diffusion, ddim_at_eta_0_is_a_function_of_the_initial_noise_alone)
{
    ct_scope *sc = ct_scope_begin();
    ct_params *ps;
    fl_diff *m = model_new(&fl_family_diff, (const char *const[]){"diff.hidden=32", NULL}, 3, 2, 5, &ps);
    long handles = ct_live_handles();
    bool prev = ct_set_grad_enabled(false);
    ct_gen *g0 = ct_gen_new(1);
    ct_tensor *x_T = ct_randn(CT_SHAPE(16, 3), CT_F32, g0);                       /* (16, 3) */
    ct_tensor *z = ct_randn(CT_SHAPE(16, 2), CT_F32, g0);                         /* (16, 2) */
    ct_gen *g1 = ct_gen_new(2), *g2 = ct_gen_new(3);
    fl_ddim_opts o = {.steps = 10, .eta = 0};
    ct_tensor *a = fl_diff_ddim(m, x_T, z, &o, g1), *b = fl_diff_ddim(m, x_T, z, &o, g2);
    cr_assert(a && b, "%s", fl_error());
    cr_expect_eq(ct_max_abs_diff(a, b), 0.0, "η = 0: different generators gave different samples");
    /* the same comparison at η > 0 tells the generators apart: the test can fail */
    o.eta = 0.5;
    ct_tensor *c = fl_diff_ddim(m, x_T, z, &o, g1), *d = fl_diff_ddim(m, x_T, z, &o, g2);
    cr_assert(c && d, "%s", fl_error());
    cr_expect_gt(ct_max_abs_diff(c, d), 1e-3, "η = 0.5 should draw fresh noise from the generator");
    /* and the family's sampler with same-seed generators draws the same samples */
    fl_sample_opts so = {.steps = 0, .temperature = 1, .keep_graph = false};
    ct_gen *h1 = ct_gen_new(9), *h2 = ct_gen_new(9);
    ct_tensor *e = fl_family_diff.sample(m, z, &so, h1), *f = fl_family_diff.sample(m, z, &so, h2);
    cr_assert(e && f, "%s", fl_error());
    cr_expect_eq(ct_max_abs_diff(e, f), 0.0);
    ct_free(a), ct_free(b), ct_free(c), ct_free(d), ct_free(e), ct_free(f), ct_free(x_T), ct_free(z);
    ct_gen_free(g0), ct_gen_free(g1), ct_gen_free(g2), ct_gen_free(h1), ct_gen_free(h2);
    cr_expect_eq(ct_live_handles(), handles, "the samplers left %ld handles behind",
                 ct_live_handles() - handles);
    ct_set_grad_enabled(prev);
    fl_family_diff.destroy(m);
    ct_params_free(ps);
    ct_scope_end(sc);
}

/* Round trip x_0 -> x_T -> x_0 with S steps: the largest and the mean error. */
static void ddim_round_trip(fl_diff *m, const ct_tensor *x0, const ct_tensor *z, int S, double *max_err,
                            double *mean_err, double *noise_sd)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *x_T = fl_diff_ddim_invert(m, x0, z, S);                            /* (B, 2) */
    fl_ddim_opts o = {.steps = S, .eta = 0};
    ct_tensor *back = x_T ? fl_diff_ddim(m, x_T, z, &o, NULL) : NULL;            /* (B, 2) */
    cr_assert(back, "%s", fl_error());
    *max_err = ct_max_abs_diff(back, x0);
    *mean_err = ct_item(ct_mean(ct_abs(ct_sub(back, x0))));
    *noise_sd = ct_item(ct_std_dim(ct_flatten(x_T, 0), 0, true, false));
    ct_scope_end(sc);
}

Test(diffusion, ddim_inversion_then_generation_returns_the_sample)
{
    ct_scope *sc = ct_scope_begin();
    toy_task t;
    /* β up to 0.01: ᾱ_T = 6.7e-3; the smaller ᾱ_T, the more the steps near T amplify the
     * network's error (1/√ᾱ) and the larger the inversion's discretisation error */
    toy_train(&t, &fl_family_diff, (const char *const[]){"diff.hidden=64", "diff.blocks=2",
                                                          "diff.time_embed=16", "diff.beta_max=0.01", NULL},
              600);
    bool prev = ct_set_grad_enabled(false);
    ct_gen *g = ct_gen_new(4);
    ct_tensor *z = ct_adds(ct_to_dtype(ct_randint(3, CT_SHAPE(256, 1), g), CT_F32), -1);   /* (256, 1) */
    fl_sample_opts so = {.steps = 100, .temperature = 1, .keep_graph = false};
    ct_tensor *x0 = fl_family_diff.sample(t.model, z, &so, g);                    /* (256, 2) */
    cr_assert_not_null(x0, "%s", fl_error());
    double max100, mean100, sd, max200, mean200, sd200;
    ddim_round_trip(t.model, x0, z, 100, &max100, &mean100, &sd);
    ddim_round_trip(t.model, x0, z, 200, &max200, &mean200, &sd200);
    cr_log_info("round trip: 100 steps %.4f (mean %.4f), 200 steps %.4f (mean %.4f)", max100, mean100,
                max200, mean200);
    cr_expect_lt(max100, 0.15, "generation from the inverted noise is %.4f off the sample", max100);
    cr_expect_lt(mean100, 0.04, "generation from the inverted noise is %.4f off on average", mean100);
    /* a discretisation error: first order in the step */
    cr_expect(mean100 / mean200 > 1.6 && mean100 / mean200 < 2.5, "error ratio %.3f at twice the steps",
              mean100 / mean200);
    cr_expect(sd > 0.7 && sd < 1.3, "the inverted noise has std %.3f, not about 1", sd);
    ct_gen_free(g);
    ct_set_grad_enabled(prev);
    toy_free(&t);
    ct_scope_end(sc);
}

/* ---- FM's solver on the exact velocity of N(0, I) -> N(m, diag s²) ----------------- */

/* Independent coupling x_0 ~ N(0, I), x_1 ~ N(m, diag s²) on the linear path: the
 * marginal velocity is v(x, t) = m + (t s² − (1 − t)) / σ_t² (x − t m), σ_t² = (1 − t)² +
 * t² s², whose flow takes x_0 to m + s x_0 at t = 1. */
static const double gm[2] = {1.0, -2.0}, gs[2] = {0.5, 2.0};

static ct_tensor *gauss_velocity(void *ctx, const ct_tensor *x, double t, const ct_tensor *z)
{
    (void)ctx, (void)z;
    double coef[2], shift[2];
    for (int d = 0; d < 2; d++) {
        double var = (1 - t) * (1 - t) + t * t * gs[d] * gs[d];
        coef[d] = (t * gs[d] * gs[d] - (1 - t)) / var;
        shift[d] = gm[d] - coef[d] * t * gm[d];
    }
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = ct_from_data(coef, CT_SHAPE(1, 2), CT_F64), *b = ct_from_data(shift, CT_SHAPE(1, 2), CT_F64);
    ct_tensor *v = ct_scope_keep(s, ct_add(ct_mul(x, a), b));                     /* (B, 2) */
    ct_scope_end(s);
    return v;
}

static double flow_error(fl_ode_solver solver, int steps, const ct_tensor *x0, const ct_tensor *exact)
{
    fl_ode_opts o = {.solver = solver, .steps = steps, .t0 = 0, .t1 = 1};
    ct_tensor *x1 = fl_ode_solve(gauss_velocity, NULL, x0, NULL, &o);
    cr_assert_not_null(x1, "%s", fl_error());
    double e = ct_max_abs_diff(x1, exact);
    ct_free(x1);
    return e;
}

Test(diffusion, fm_midpoint_solver_follows_the_closed_form_gaussian_flow_at_least_to_second_order)
{
    ct_scope *sc = ct_scope_begin();
    ct_gen *g = ct_gen_new(3);
    ct_tensor *x0 = ct_randn(CT_SHAPE(64, 2), CT_F64, g);                          /* (64, 2) */
    ct_tensor *m = ct_from_data(gm, CT_SHAPE(1, 2), CT_F64), *s = ct_from_data(gs, CT_SHAPE(1, 2), CT_F64);
    ct_tensor *exact = ct_add(m, ct_mul(s, x0));                                   /* (64, 2) */
    double mid = flow_error(FL_ODE_MIDPOINT, 200, x0, exact);
    double mid2 = flow_error(FL_ODE_MIDPOINT, 400, x0, exact);
    double eul = flow_error(FL_ODE_EULER, 200, x0, exact);
    double eul2 = flow_error(FL_ODE_EULER, 400, x0, exact);
    cr_log_info("midpoint %.3g %.3g, Euler %.3g %.3g", mid, mid2, eul, eul2);
    cr_expect_lt(mid, 1e-6, "midpoint, 200 steps: %.3g from the closed-form flow", mid);
    /* (on this field the second-order term of the midpoint error cancels: the ratio is 8) */
    cr_expect_gt(mid / mid2, 3.5, "midpoint error ratio at twice the steps %.3f, below second order",
                 mid / mid2);
    cr_expect(eul / eul2 > 1.7 && eul / eul2 < 2.3, "Euler error ratio %.3f, not ~2", eul / eul2);
    cr_expect_lt(mid * 20, eul, "midpoint %.3g is not far better than Euler %.3g", mid, eul);
    ct_free(x0), ct_free(m), ct_free(s), ct_free(exact);
    ct_gen_free(g);
    ct_scope_end(sc);
}

/* ---- gradients through the samplers (float64) ---------------------------------------- */

typedef struct {
    const fl_family *fam;
    void *model;
    ct_params *ps;
    ct_tensor *z, *w;   /* (B, C), (B, D) */
} grad_case;

/* f(θ) = Σ w ⊙ sample(z) through the family's differentiable sampler (2 steps), the
 * noise from a generator of a fixed seed. */
static ct_tensor *grad_objective(grad_case *gc)
{
    ct_gen *g = ct_gen_new(21);
    fl_sample_opts o = {.steps = 2, .temperature = 1, .keep_graph = true};
    ct_tensor *u = gc->fam->sample(gc->model, gc->z, &o, g);                      /* (B, D) */
    cr_assert_not_null(u, "%s", fl_error());
    ct_tensor *f = ct_unscope(ct_sum(ct_mul(u, gc->w)));
    ct_free(u);
    ct_gen_free(g);
    return f;
}

/* θ += h d for every parameter. */
static void params_shift(ct_params *ps, ct_tensor **d, double h)
{
    bool prev = ct_set_grad_enabled(false);
    for (int i = 0; i < ct_params_count(ps); i++) {
        if (ct_params_is_buffer(ps, i)) continue;
        ct_scope *s = ct_scope_begin();
        ct_tensor *p = ct_params_at(ps, i);
        cr_assert_eq(ct_copy_(p, ct_axpy(p, h, d[i])), CT_OK);
        ct_scope_end(s);
    }
    ct_set_grad_enabled(prev);
}

/* The directional derivative of f along a random d: autograd against central
 * differences. */
static void expect_gradient_matches_finite_differences(const fl_family *fam, const char *const *ov)
{
    ct_scope *sc = ct_scope_begin();
    ct_dtype prev_dt = ct_set_float_dtype(CT_F64);
    grad_case gc = {.fam = fam};
    gc.model = model_new(fam, ov, 3, 2, 8, &gc.ps);
    ct_gen *g = ct_gen_new(5);
    gc.z = ct_randn(CT_SHAPE(4, 2), CT_F64, g);
    gc.w = ct_randn(CT_SHAPE(4, 3), CT_F64, g);
    int n = ct_params_count(gc.ps);
    ct_tensor *d[64] = {0};
    cr_assert_leq(n, 64);
    ct_tensor *f = grad_objective(&gc);
    ct_params_zero_grad(gc.ps);
    cr_assert_eq(ct_backward(f, false), CT_OK, "%s", ct_last_error());
    double analytic = 0;
    int with_grad = 0;
    for (int i = 0; i < n; i++) {
        if (ct_params_is_buffer(gc.ps, i)) continue;
        ct_tensor *p = ct_params_at(gc.ps, i);
        d[i] = ct_unscope(ct_randn_like(p, g));
        ct_tensor *gr = ct_grad_of(p);
        if (!gr) continue;
        with_grad++;
        analytic += ct_item(ct_sum(ct_mul(gr, d[i])));
    }
    cr_assert_eq(with_grad, ct_params_count(gc.ps), "every parameter gets a gradient");
    const double h = 1e-6;
    params_shift(gc.ps, d, h);
    ct_tensor *fp = grad_objective(&gc);
    params_shift(gc.ps, d, -2 * h);
    ct_tensor *fm = grad_objective(&gc);
    params_shift(gc.ps, d, h);
    double numeric = (ct_item(fp) - ct_item(fm)) / (2 * h);
    cr_expect(fabs(analytic - numeric) < 1e-6 * (1 + fabs(numeric)),
              "%s: autograd %.10g, finite differences %.10g", fam->name, analytic, numeric);
    cr_expect_gt(fabs(analytic), 1e-3, "%s: a vanishing derivative checks nothing", fam->name);
    for (int i = 0; i < n; i++) ct_free(d[i]);
    ct_free(f), ct_free(fp), ct_free(fm), ct_free(gc.z), ct_free(gc.w);
    ct_gen_free(g);
    fam->destroy(gc.model);
    ct_params_free(gc.ps);
    ct_set_float_dtype(prev_dt);
    ct_scope_end(sc);
}

Test(diffusion, gradient_through_a_2_step_ddim_sampler_matches_finite_differences)
{
    expect_gradient_matches_finite_differences(
        &fl_family_diff, (const char *const[]){"diff.hidden=8", "diff.blocks=1", "diff.time_embed=4",
                                               "diff.T=20", "diff.steps=2", "diff.beta_max=0.5", "diff.eta=0.5", NULL});
}

Test(diffusion, gradient_through_a_2_step_ddim_sampler_of_v_and_x0_networks_matches_finite_differences)
{
    for (int k = 1; k < 3; k++) {
        char key[32];
        snprintf(key, sizeof key, "diff.prediction=%s", prediction_names[k]);
        expect_gradient_matches_finite_differences(
            &fl_family_diff, (const char *const[]){"diff.hidden=8", "diff.blocks=1", "diff.time_embed=4", "diff.T=20",
                                                   "diff.steps=2", "diff.beta_max=0.5", "diff.eta=0.5", key, NULL});
    }
}

Test(diffusion, gradient_through_a_2_step_midpoint_sampler_matches_finite_differences)
{
    expect_gradient_matches_finite_differences(
        &fl_family_fm, (const char *const[]){"fm.hidden=8", "fm.blocks=1", "fm.time_embed=4",
                                             "fm.solver=midpoint", NULL});
}

/* The gradients of Σ w ⊙ x with respect to every parameter, into out[] (caller frees). */
static void param_grads(ct_params *ps, const ct_tensor *x, const ct_tensor *w, ct_tensor **out)
{
    ct_params_zero_grad(ps);
    ct_tensor *f = ct_sum(ct_mul(x, w));
    cr_assert_eq(ct_backward(f, false), CT_OK, "%s", ct_last_error());
    ct_free(f);
    for (int i = 0; i < ct_params_count(ps); i++) {
        ct_tensor *gr = ct_grad_of(ct_params_at(ps, i));
        out[i] = gr ? ct_unscope(ct_clone(gr)) : ct_unscope(ct_zeros_like(ct_params_at(ps, i)));
    }
}

static double max_grad_diff(int n, ct_tensor **a, ct_tensor **b)
{
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = ct_max_abs_diff(a[i], b[i]);
        if (d > m) m = d;
    }
    return m;
}

Test(diffusion, ddim_truncated_to_the_last_step_gives_the_gradient_of_the_detached_graph)
{
    ct_scope *sc = ct_scope_begin();
    ct_dtype prev_dt = ct_set_float_dtype(CT_F64);
    ct_params *ps;
    fl_diff *m = model_new(&fl_family_diff, (const char *const[]){"diff.hidden=16", "diff.T=30", "diff.steps=3", "diff.beta_max=0.4", NULL},
                           3, 2, 6, &ps);
    int n = ct_params_count(ps);
    ct_tensor *trunc[64], *manual[64], *full[64];
    cr_assert_leq(n, 64);
    ct_gen *g = ct_gen_new(2);
    ct_tensor *x_T = ct_randn(CT_SHAPE(8, 3), CT_F64, g), *z = ct_randn(CT_SHAPE(8, 2), CT_F64, g);
    ct_tensor *w = ct_randn(CT_SHAPE(8, 3), CT_F64, g);
    /* the sampler: 3 steps, the graph through the last one */
    ct_gen *g1 = ct_gen_new(40);
    fl_ddim_opts o = {.steps = 3, .eta = 0.7, .grad_steps = 1};
    ct_tensor *x = fl_diff_ddim(m, x_T, z, &o, g1);
    cr_assert_not_null(x, "%s", fl_error());
    param_grads(ps, x, w, trunc);
    /* by hand: steps 3 and 2 without a graph, their result detached, then step 1 */
    ct_gen *g2 = ct_gen_new(40);
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *x2 = fl_diff_ddim_step(m, x_T, z, 3, 3, 0.7, g2);
    ct_tensor *x1 = ct_detach(fl_diff_ddim_step(m, x2, z, 2, 3, 0.7, g2));
    ct_set_grad_enabled(prev);
    ct_tensor *x0 = fl_diff_ddim_step(m, x1, z, 1, 3, 0.7, g2);
    cr_expect_eq(ct_max_abs_diff(x0, x), 0.0, "the same sample either way");
    param_grads(ps, x0, w, manual);
    /* and all 3 steps differentiated: another gradient */
    ct_gen *g3 = ct_gen_new(40);
    o.grad_steps = 0;
    ct_tensor *xf = fl_diff_ddim(m, x_T, z, &o, g3);
    param_grads(ps, xf, w, full);
    double dm = max_grad_diff(n, trunc, manual), df = max_grad_diff(n, trunc, full);
    cr_expect_lt(dm, 1e-12, "truncated against the detached graph: %.3g", dm);
    cr_expect_gt(df, 1e-4, "truncated against the full graph: %.3g (truncation did nothing)", df);
    for (int i = 0; i < n; i++) ct_free(trunc[i]), ct_free(manual[i]), ct_free(full[i]);
    ct_free(x_T), ct_free(z), ct_free(w), ct_free(x), ct_free(x2), ct_free(x1), ct_free(x0), ct_free(xf);
    ct_gen_free(g), ct_gen_free(g1), ct_gen_free(g2), ct_gen_free(g3);
    fl_family_diff.destroy(m);
    ct_params_free(ps);
    ct_set_float_dtype(prev_dt);
    ct_scope_end(sc);
}

Test(diffusion, fm_truncated_to_the_last_step_gives_the_gradient_of_the_detached_graph)
{
    ct_scope *sc = ct_scope_begin();
    ct_dtype prev_dt = ct_set_float_dtype(CT_F64);
    ct_params *ps;
    fl_fm *m = model_new(&fl_family_fm, (const char *const[]){"fm.hidden=16", NULL}, 3, 2, 6, &ps);
    int n = ct_params_count(ps);
    ct_tensor *trunc[64], *manual[64], *full[64];
    cr_assert_leq(n, 64);
    ct_gen *g = ct_gen_new(2);
    ct_tensor *x_0 = ct_randn(CT_SHAPE(8, 3), CT_F64, g), *z = ct_randn(CT_SHAPE(8, 2), CT_F64, g);
    ct_tensor *w = ct_randn(CT_SHAPE(8, 3), CT_F64, g);
    fl_ode_opts o = {.solver = FL_ODE_MIDPOINT, .steps = 3, .grad_steps = 1, .t0 = 0, .t1 = 1};
    ct_tensor *x = fl_ode_solve(fl_fm_velocity, m, x_0, z, &o);
    cr_assert_not_null(x, "%s", fl_error());
    param_grads(ps, x, w, trunc);
    double dt = 1.0 / 3;
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *xa = fl_ode_step(fl_fm_velocity, m, x_0, z, 0 * dt, dt, FL_ODE_MIDPOINT);
    ct_tensor *xb = ct_detach(fl_ode_step(fl_fm_velocity, m, xa, z, 1 * dt, dt, FL_ODE_MIDPOINT));
    ct_set_grad_enabled(prev);
    ct_tensor *xc = fl_ode_step(fl_fm_velocity, m, xb, z, 2 * dt, dt, FL_ODE_MIDPOINT);
    cr_expect_eq(ct_max_abs_diff(xc, x), 0.0, "the same sample either way");
    param_grads(ps, xc, w, manual);
    o.grad_steps = 0;
    ct_tensor *xf = fl_ode_solve(fl_fm_velocity, m, x_0, z, &o);
    param_grads(ps, xf, w, full);
    double dm = max_grad_diff(n, trunc, manual), df = max_grad_diff(n, trunc, full);
    cr_expect_lt(dm, 1e-12, "truncated against the detached graph: %.3g", dm);
    cr_expect_gt(df, 1e-4, "truncated against the full graph: %.3g (truncation did nothing)", df);
    for (int i = 0; i < n; i++) ct_free(trunc[i]), ct_free(manual[i]), ct_free(full[i]);
    ct_free(x_0), ct_free(z), ct_free(w), ct_free(x), ct_free(xa), ct_free(xb), ct_free(xc), ct_free(xf);
    ct_gen_free(g);
    fl_family_fm.destroy(m);
    ct_params_free(ps);
    ct_set_float_dtype(prev_dt);
    ct_scope_end(sc);
}

/* ---- activation checkpointing of the differentiable samplers ------------------------- */

/* The fiber loss of S samples through a stand-in for the decoder and the subject, u (B, D)
 * -> x = tanh(u A) (B, 12) -> ẑ = x Bm (B, C), against z; backpropagated with ct_backward.
 * The model of fam under ov (a fresh one, seed 8: the same parameters every call),
 * sampled by the family's sampler with keep_graph; its parameter gradients into out[],
 * the samples into *u_out (caller frees both), the ct_checkpoint recomputations the
 * pass made into *recomputed, and the generator's next draw after it into *next. */
static int fiber_grads(const fl_family *fam, const char *const *ov, int S, ct_tensor **out,
                       ct_tensor **u_out, long *recomputed, double *next)
{
    ct_scope *sc = ct_scope_begin();
    ct_params *ps;
    void *m = model_new(fam, ov, 3, 2, 8, &ps);
    ct_gen *g = ct_gen_new(5);
    ct_tensor *z = ct_randn(CT_SHAPE(6, 2), CT_F64, g);                           /* (6, 2) */
    ct_tensor *A = ct_randn(CT_SHAPE(3, 12), CT_F64, g), *Bm = ct_randn(CT_SHAPE(12, 2), CT_F64, g);
    ct_gen *noise = ct_gen_new(21);
    fl_sample_opts o = {.steps = S, .temperature = 1, .keep_graph = true};
    ct_tensor *u = fam->sample(m, z, &o, noise);                                  /* (6, 3) */
    cr_assert_not_null(u, "%s", fl_error());
    ct_tensor *fib = fl_fiber_loss_mean(ct_mm(ct_tanh(ct_mm(u, A)), Bm), z);      /* () */
    long r0 = ct_checkpoint_recomputes();
    ct_params_zero_grad(ps);
    cr_assert_eq(ct_backward(fib, false), CT_OK, "%s", ct_last_error());
    *recomputed = ct_checkpoint_recomputes() - r0;
    *next = ct_item(ct_randn(CT_SHAPE(1), CT_F64, noise));
    int n = ct_params_count(ps);
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++) {
        ct_tensor *gr = ct_grad_of(ct_params_at(ps, i));
        out[i] = gr ? ct_unscope(ct_clone(gr)) : ct_unscope(ct_zeros_like(ct_params_at(ps, i)));
    }
    *u_out = ct_unscope(ct_detach(u));
    ct_gen_free(g), ct_gen_free(noise);
    fam->destroy(m);
    ct_params_free(ps);
    ct_scope_end(sc);
    return n;
}

/* The settings base + "<fam>.checkpoint=false" and base + "…=true" give the same samples
 * and the same parameter gradients of the fiber loss through S sampler steps (float64),
 * leave the generator at the same place (the recomputation draws nothing: DDIM's noise
 * enters a step additively, so only this would show a redrawn one), and the
 * checkpointed pass runs exactly `differentiated` steps again. */
static void expect_checkpoint_keeps_the_gradient(const fl_family *fam, const char *const *base, int S,
                                                 int differentiated)
{
    ct_dtype prev_dt = ct_set_float_dtype(CT_F64);
    const char *ov[16];
    int n_ov = 0;
    for (; base[n_ov]; n_ov++) ov[n_ov] = base[n_ov];
    cr_assert_lt(n_ov, 14);
    char key[64];
    ov[n_ov + 1] = NULL;
    ct_tensor *plain[64], *ckpt[64], *u_plain, *u_ckpt;
    long r_plain, r_ckpt;
    double next_plain, next_ckpt;
    snprintf(key, sizeof key, "%s.checkpoint=false", fam->name);
    ov[n_ov] = key;
    int n = fiber_grads(fam, ov, S, plain, &u_plain, &r_plain, &next_plain);
    snprintf(key, sizeof key, "%s.checkpoint=true", fam->name);
    fiber_grads(fam, ov, S, ckpt, &u_ckpt, &r_ckpt, &next_ckpt);
    double du = ct_max_abs_diff(u_plain, u_ckpt), dg = max_grad_diff(n, plain, ckpt), norm = 0;
    ct_scope *sn = ct_scope_begin();
    for (int i = 0; i < n; i++) norm += ct_item(ct_sum(ct_square(plain[i])));
    ct_scope_end(sn);
    cr_log_info("%s, %d steps, %d differentiated: samples %.3g apart, gradients %.3g apart (norm %.3g)",
                fam->name, S, differentiated, du, dg, sqrt(norm));
    cr_expect_lt(du, 1e-14, "%s: checkpointing changed the samples by %.3g", fam->name, du);
    cr_expect_lt(dg, 1e-12, "%s: checkpointed gradient %.3g off the plain one", fam->name, dg);
    cr_expect_gt(sqrt(norm), 1e-3, "%s: a vanishing gradient checks nothing", fam->name);
    cr_expect_eq(next_plain, next_ckpt, "%s: the generator moved on differently with checkpointing",
                 fam->name);
    cr_expect_eq(r_plain, 0, "%s: %ld recomputations without checkpointing", fam->name, r_plain);
    cr_expect_eq(r_ckpt, differentiated, "%s: %ld steps recomputed, expected %d", fam->name, r_ckpt,
                 differentiated);
    for (int i = 0; i < n; i++) ct_free(plain[i]), ct_free(ckpt[i]);
    ct_free(u_plain), ct_free(u_ckpt);
    ct_set_float_dtype(prev_dt);
}

#define DIFF_SMALL "diff.hidden=16", "diff.blocks=1", "diff.time_embed=4", "diff.T=30", "diff.steps=4", "diff.beta_max=0.4"
#define FM_SMALL "fm.hidden=16", "fm.blocks=1", "fm.time_embed=4"

Test(diffusion, checkpointed_ddim_gives_the_fiber_loss_gradient_of_the_plain_sampler)
{
    expect_checkpoint_keeps_the_gradient(&fl_family_diff, (const char *const[]){DIFF_SMALL, "diff.eta=0", NULL}, 2, 2);
    /* η > 0: the noise of each step is the same in the recomputation */
    expect_checkpoint_keeps_the_gradient(&fl_family_diff, (const char *const[]){DIFF_SMALL, "diff.eta=0.7", NULL}, 4, 4);
    /* with truncation: the last 2 of 3 steps differentiated, only those recomputed */
    expect_checkpoint_keeps_the_gradient(&fl_family_diff,
                                         (const char *const[]){DIFF_SMALL, "diff.eta=0.7", "diff.grad_steps=2", NULL}, 3, 2);
    /* and a v-network */
    expect_checkpoint_keeps_the_gradient(&fl_family_diff,
                                         (const char *const[]){DIFF_SMALL, "diff.eta=0.7", "diff.prediction=v", NULL}, 4, 4);
}

Test(diffusion, checkpointed_ode_solver_gives_the_fiber_loss_gradient_of_the_plain_one)
{
    expect_checkpoint_keeps_the_gradient(&fl_family_fm, (const char *const[]){FM_SMALL, "fm.solver=midpoint", NULL}, 3, 3);
    expect_checkpoint_keeps_the_gradient(&fl_family_fm, (const char *const[]){FM_SMALL, "fm.solver=euler", NULL}, 2, 2);
    expect_checkpoint_keeps_the_gradient(&fl_family_fm,
                                         (const char *const[]){FM_SMALL, "fm.solver=midpoint", "fm.grad_steps=1", NULL}, 4, 1);
}

/* ---- settings -------------------------------------------------------------------------- */

/* fl_fiber_check on the overrides refuses them with a message naming key. */
static void expect_refused(const char *const *ov, const char *key)
{
    fl_config *c = config_with(ov);
    cr_expect_neq(fl_fiber_check(c, 16), 0, "accepted; expected a refusal naming %s", key);
    cr_expect(strstr(fl_error(), key) != NULL, "the message '%s' does not name %s", fl_error(), key);
    fl_config_free(c);
}

Test(diffusion, bad_sampler_settings_are_refused_naming_the_key)
{
    fl_config *c = fl_config_default();
    cr_expect_neq(fl_config_override(c, "diff.steps=0"), 0);
    cr_expect(strstr(fl_error(), "diff.steps") != NULL, "%s", fl_error());
    cr_expect_neq(fl_config_override(c, "fm.steps=0"), 0);
    cr_expect(strstr(fl_error(), "fm.steps") != NULL, "%s", fl_error());
    cr_expect_neq(fl_config_override(c, "diff.prediction=score"), 0);
    cr_expect(strstr(fl_error(), "diff.prediction") != NULL, "%s", fl_error());
    cr_expect_neq(fl_config_override(c, "fm.solver=rk4"), 0);
    cr_expect(strstr(fl_error(), "fm.solver") != NULL, "%s", fl_error());
    fl_config_free(c);
    expect_refused((const char *const[]){"model.family=diff", "diff.steps=4", "diff.grad_steps=5", NULL},
                   "diff.grad_steps");
    expect_refused((const char *const[]){"model.family=diff", "train.fiber_steps=2", "diff.grad_steps=3", NULL},
                   "diff.grad_steps");
    expect_refused((const char *const[]){"model.family=diff", "diff.T=100", "diff.steps=200", NULL}, "diff.steps");
    expect_refused((const char *const[]){"model.family=diff", "eval.steps=2000", NULL}, "eval.steps");
    expect_refused((const char *const[]){"model.family=diff", "diff.T=50", "diff.steps=10", NULL}, "diff.beta_max");
    expect_refused((const char *const[]){"model.family=diff", "diff.time_embed=7", NULL}, "diff.time_embed");
    expect_refused((const char *const[]){"model.family=fm", "train.fiber_steps=2", "fm.grad_steps=3", NULL},
                   "fm.grad_steps");
    expect_refused((const char *const[]){"model.family=fm", "fm.blocks=12", "fm.layers=3", NULL}, "fm.blocks");
    /* and the settings next to them pass */
    const char *const *good[] = {
        (const char *const[]){"model.family=diff", "diff.steps=4", "diff.grad_steps=4", NULL},
        (const char *const[]){"model.family=diff", "diff.schedule=cosine", "diff.beta_max=0.999", "diff.T=50",
                              "diff.steps=10", NULL},
        (const char *const[]){"model.family=fm", "train.fiber_steps=3", "fm.grad_steps=3", NULL},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fl_config *g = config_with(good[i]);
        cr_expect_eq(fl_fiber_check(g, 16), 0, "good settings %zu refused: %s", i, fl_error());
        fl_config_free(g);
    }
}

/* ---- the fiber loss through the sampler on color MNIST ------------------------------- */

Test(diffusion, lambda_above_0_lowers_the_fiber_loss_of_diff_and_fm, .init = make_tmp, .fini = remove_tmp)
{
    static const char *const diff_extra[] = {"diff.hidden=64", "diff.blocks=1", "diff.steps=4", NULL};
    static const char *const fm_extra[] = {"fm.hidden=64", "fm.blocks=1", "fm.steps=4", NULL};
    double f0, f_lam;
    lambda_fixture_run("diff", 10, diff_extra, &f0, &f_lam);
    cr_expect_lt(f_lam, f0, "diff: fiber loss %.4f at λ = 10, %.4f at λ = 0", f_lam, f0);
    cr_log_info("diff: fiber loss %.4f at λ = 0, %.4f at λ = 10", f0, f_lam);
    lambda_fixture_run("fm", 10, fm_extra, &f0, &f_lam);
    cr_expect_lt(f_lam, f0, "fm: fiber loss %.4f at λ = 10, %.4f at λ = 0", f_lam, f0);
    cr_log_info("fm: fiber loss %.4f at λ = 0, %.4f at λ = 10", f0, f_lam);
}
