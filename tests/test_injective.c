/* The injective families MLF and DNF (trainers/mlf.c, trainers/dnf.c): each whole flow
 * is invertible with an exact log-determinant (float64, against the autograd Jacobian),
 * DNF's decoded manifold point is F⁻¹([h_m, 0]) and lies where F sends it back to
 * [h_m, 0]; the losses are the stated densities plus their weighted terms; each fits a
 * conditional arc of a circle in 3-D through the shared training loop (reconstructions
 * and samples on it, samples all along it); λ > 0 lowers the fiber loss on a short
 * color-MNIST run; latents not below the data dimension and σ ≤ 0 are refused naming
 * the key. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "lambda_fixture.h"
#include "store_fixture.h"
#include "trainers/family.h"
#include "trainers/fiber.h"
#include "trainers/injective.h"

static void setup(void) { make_tmp(); }

TestSuite(injective, .init = setup, .fini = remove_tmp, .timeout = 600);

/* ---- (a) the whole flows, in float64 ---------------------------------------------------- */

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

typedef ct_tensor *(*fwd_fn)(void *m, const ct_tensor *x, const ct_tensor *c, ct_tensor **ld);
typedef ct_tensor *(*inv_fn)(void *m, const ct_tensor *y, const ct_tensor *c);

/* inverse(forward(x)) = x to 1e-6 and logdet = log|det ∂forward/∂x| to 1e-6, per sample. */
static void check_invertible(void *m, fwd_fn fwd, inv_fn inv, int dim, int cond_dim, ct_gen *g)
{
    const int B = 5;
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(B, dim), CT_F64, g);                    /* (B, D) */
    ct_tensor *c = ct_randn(CT_SHAPE(B, cond_dim), CT_F64, g);               /* (B, C) */
    ct_set_requires_grad(x, true);
    ct_tensor *ld = NULL;
    ct_tensor *y = fwd(m, x, c, &ld);                                        /* (B, D) */
    cr_assert_not_null(y, "forward failed: %s", ct_last_error());
    cr_assert_not_null(ld);
    ct_tensor *xr = inv(m, y, c);
    cr_assert_not_null(xr, "inverse failed: %s", ct_last_error());
    double err = ct_max_abs_diff(x, xr);
    cr_expect_lt(err, 1e-6, "inverse(forward(x)) differs from x by %g", err);
    ct_tensor *jac = ct_zeros(CT_SHAPE(B, dim, dim), CT_F64);                /* (B, D, D) */
    for (int i = 0; i < dim; i++) {
        ct_tensor *sel = ct_zeros(CT_SHAPE(B, dim), CT_F64);
        ct_fill_(ct_narrow(sel, 1, i, 1), 1.0);
        ct_tensor *row = ct_vjp(y, x, sel, false);                           /* (B, D) */
        cr_assert_not_null(row, "%s", ct_last_error());
        ct_copy_(ct_narrow(jac, 1, i, 1), ct_unsqueeze(row, 1));
    }
    ct_tensor *want = ct_slogdet_abs(jac);                                   /* (B,) */
    double lerr = ct_max_abs_diff(ct_detach(ld), want);
    if (!(lerr < 1e-6)) {
        ct_print("logdet", ld);
        ct_print("log|det J|", want);
    }
    cr_expect_lt(lerr, 1e-6, "log-determinant differs from log|det J| by %g", lerr);
    ct_scope_end(s);
}

/* A small model of family fam (D = dim, C = cond_dim) with perturbed weights and its
 * ActNorms initialised from a batch; the config stays with the caller. */
typedef struct {
    fl_config *c;
    ct_params *ps;
    ct_gen *g;
    void *model;
    const fl_family *fam;
} small_model;

static small_model small_new(const char *fam, int dim, int cond_dim, const char *const *overrides)
{
    small_model s = {.c = fl_config_default(), .ps = ct_params_new(), .g = ct_gen_new(5)};
    char kv[64];
    snprintf(kv, sizeof kv, "model.family=%s", fam);
    cr_assert_eq(fl_config_override(s.c, kv), 0, "%s", fl_error());
    snprintf(kv, sizeof kv, "vae.latent=%d", dim);
    cr_assert_eq(fl_config_override(s.c, kv), 0, "%s", fl_error());
    for (; overrides && *overrides; overrides++)
        cr_assert_eq(fl_config_override(s.c, *overrides), 0, "%s: %s", *overrides, fl_error());
    s.fam = fl_family_find(fam);
    cr_assert_not_null(s.fam);
    s.model = s.fam->create(s.c, dim, cond_dim, s.ps, s.g);
    cr_assert_not_null(s.model, "%s", fl_error());
    perturb(s.ps, s.g);
    return s;
}

static void small_free(small_model *s)
{
    s->fam->destroy(s->model);
    ct_params_free(s->ps);
    ct_gen_free(s->g);
    fl_config_free(s->c);
}

Test(injective, the_whole_mlf_flow_is_invertible_with_exact_logdet)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    long live0 = ct_live_handles();
    const char *const o[] = {"mlf.blocks=2", "mlf.detail_blocks=2", "mlf.hidden=16", "mlf.latent=2",
                             "mlf.mixing=orthogonal", "mlf.activation=tanh", NULL};
    small_model s = small_new("mlf", 6, 3, o);
    check_invertible(s.model, fl_mlf_forward, fl_mlf_inverse, 6, 3, s.g);
    small_free(&s);
    cr_expect_eq(ct_live_handles(), live0, "leaked %ld handles", ct_live_handles() - live0);
    ct_set_float_dtype(prev);
}

Test(injective, the_whole_dnf_flow_is_invertible_with_exact_logdet)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    long live0 = ct_live_handles();
    const char *const o[] = {"dnf.blocks=3", "dnf.hidden=16", "dnf.latent=2", "dnf.mixing=permute",
                             "dnf.activation=tanh", NULL};
    small_model s = small_new("dnf", 6, 3, o);
    check_invertible(s.model, fl_dnf_forward, fl_dnf_inverse, 6, 3, s.g);
    small_free(&s);
    cr_expect_eq(ct_live_handles(), live0, "leaked %ld handles", ct_live_handles() - live0);
    ct_set_float_dtype(prev);
}

Test(injective, dnf_decodes_to_the_manifold_point_that_the_flow_maps_to_h_m_and_zero)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    const int B = 7, D = 6, d = 2, C = 3;
    const char *const o[] = {"dnf.blocks=3", "dnf.hidden=16", "dnf.latent=2", NULL};
    small_model s = small_new("dnf", D, C, o);
    ct_scope *sc = ct_scope_begin();
    ct_tensor *c = ct_randn(CT_SHAPE(B, C), CT_F64, s.g);                     /* (B, C) */
    fl_dnf_forward(s.model, ct_randn(CT_SHAPE(B, D), CT_F64, s.g), c, NULL);  /* ActNorm init */
    ct_tensor *h_m = ct_randn(CT_SHAPE(B, d), CT_F64, s.g);                   /* (B, d) */
    ct_tensor *u = fl_dnf_decode(s.model, h_m, c);                            /* (B, D) */
    cr_assert_not_null(u, "%s", ct_last_error());
    /* its definition: F⁻¹([h_m, 0]) */
    ct_tensor *want = fl_dnf_inverse(s.model, ct_cat2(h_m, ct_zeros(CT_SHAPE(B, D - d), CT_F64), 1), c);
    double e1 = ct_max_abs_diff(u, want);
    cr_expect_lt(e1, 1e-12, "decode(h_m) differs from F⁻¹([h_m, 0]) by %g", e1);
    /* and F takes it back to [h_m, 0]: the point lies on the decoded manifold */
    ct_tensor *h = fl_dnf_forward(s.model, u, c, NULL);                       /* (B, D) */
    double e2 = ct_max_abs_diff(ct_narrow(h, 1, 0, d), h_m);
    double e3 = ct_item(ct_max_all(ct_abs(ct_narrow(h, 1, d, D - d))));
    cr_expect_lt(e2, 1e-6, "F(decode(h_m)) has a manifold part off h_m by %g", e2);
    cr_expect_lt(e3, 1e-6, "F(decode(h_m)) has an orthogonal part of %g", e3);
    ct_scope_end(sc);
    small_free(&s);
    ct_set_float_dtype(prev);
}

/* Sum over the rows of x² (B, n) -> (B,) */
static ct_tensor *sqnorm(const ct_tensor *x) { return ct_sum_dim(ct_square(x), 1, false); }

Test(injective, dnf_loss_is_the_inflated_nll_plus_the_weighted_reconstruction)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    const int B = 9, D = 5, d = 2, C = 2;
    const double sigma = 0.3, w = 7;
    const char *const o[] = {"dnf.blocks=2", "dnf.hidden=16", "dnf.latent=2", "dnf.sigma=0.3",
                             "dnf.rec_weight=7", NULL};
    small_model s = small_new("dnf", D, C, o);
    ct_scope *sc = ct_scope_begin();
    ct_tensor *u = ct_randn(CT_SHAPE(B, D), CT_F64, s.g);                     /* (B, D) */
    ct_tensor *z = ct_randn(CT_SHAPE(B, C), CT_F64, s.g);                     /* (B, C) */
    fl_dnf_forward(s.model, u, z, NULL);                                      /* ActNorm init */
    ct_gen *g1 = ct_gen_new(99), *g2 = ct_gen_new(99);
    fl_terms terms = {0};
    ct_tensor *loss = s.fam->loss(s.model, u, z, g1, &terms);
    cr_assert_not_null(loss, "%s", fl_error());
    /* the same noise, by hand */
    ct_tensor *u_t = ct_axpy(u, sigma, ct_randn_like(u, g2));
    ct_tensor *ld = NULL;
    ct_tensor *h = fl_dnf_forward(s.model, u_t, z, &ld);
    ct_tensor *h_m = ct_narrow(h, 1, 0, d), *h_p = ct_narrow(h, 1, d, D - d);
    double nll = ct_item(ct_mean(ct_sub(
        ct_adds(ct_axpy(ct_muls(sqnorm(h_m), 0.5), 0.5 / (sigma * sigma), sqnorm(h_p)),
                0.5 * D * log(2 * M_PI) + (D - d) * log(sigma)),
        ld)));
    double rec = ct_item(ct_mean(sqnorm(ct_sub(fl_dnf_decode(s.model, h_m, z), u))));
    cr_expect_lt(fabs(ct_item(loss) - (nll + w * rec)), 1e-9, "loss %.12g, want %.12g + %g · %.12g",
                 ct_item(loss), nll, w, rec);
    cr_expect_eq(terms.n, 2);
    cr_expect_str_eq(terms.name[0], "nll");
    cr_expect_str_eq(terms.name[1], "rec");
    cr_expect_lt(fabs(terms.value[0] - nll), 1e-9);
    cr_expect_lt(fabs(terms.value[1] - rec), 1e-9);
    ct_gen_free(g1);
    ct_gen_free(g2);
    ct_scope_end(sc);
    small_free(&s);
    ct_set_float_dtype(prev);
}

Test(injective, mlf_loss_is_the_split_nll_plus_the_weighted_zero_padded_reconstruction)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    const int B = 9, D = 6, d = 2, C = 3;
    const double w = 4;
    const char *const o[] = {"mlf.blocks=2", "mlf.detail_blocks=1", "mlf.hidden=16", "mlf.latent=2",
                             "mlf.coarse_weight=4", NULL};
    small_model s = small_new("mlf", D, C, o);
    ct_scope *sc = ct_scope_begin();
    ct_tensor *u = ct_randn(CT_SHAPE(B, D), CT_F64, s.g);                     /* (B, D) */
    ct_tensor *z = ct_randn(CT_SHAPE(B, C), CT_F64, s.g);                     /* (B, C) */
    fl_terms terms = {0};
    ct_tensor *loss = s.fam->loss(s.model, u, z, NULL, &terms);
    cr_assert_not_null(loss, "%s", fl_error());
    ct_tensor *ld = NULL;
    ct_tensor *base = fl_mlf_forward(s.model, u, z, &ld);                     /* (B, D) */
    ct_tensor *h_c = ct_narrow(base, 1, 0, d), *e_d = ct_narrow(base, 1, d, D - d);
    double nll = ct_item(ct_mean(ct_sub(
        ct_adds(ct_muls(ct_add(sqnorm(h_c), sqnorm(e_d)), 0.5), 0.5 * D * log(2 * M_PI)), ld)));
    /* the zero-padded decoding, by its definition */
    ct_tensor *padded = ct_cat2(h_c, ct_zeros(CT_SHAPE(B, D - d), CT_F64), 1);
    double coarse = ct_item(ct_mean(sqnorm(ct_sub(fl_mlf_inverse(s.model, padded, z), u))));
    cr_expect_lt(fabs(ct_item(loss) - (nll + w * coarse)), 1e-9, "loss %.12g, want %.12g + %g · %.12g",
                 ct_item(loss), nll, w, coarse);
    cr_expect_eq(terms.n, 2);
    cr_expect_str_eq(terms.name[0], "nll");
    cr_expect_str_eq(terms.name[1], "coarse");
    cr_expect_lt(fabs(terms.value[1] - coarse), 1e-9);
    ct_scope_end(sc);
    small_free(&s);
    ct_set_float_dtype(prev);
}

/* ---- (b) a conditional circle in 3-D ---------------------------------------------------- */

/* u = (r cos θ, r sin θ, r/2) with r = z ∈ [0.5, 1.5], θ ~ U[−ARC, ARC], plus
 * N(0, noise²): given z the data lie on an arc of a circle, a 1-dim manifold in 3-D. An
 * arc, not the whole circle: a flow's 1-dim latent is ℝ, which no continuous bijection
 * maps onto a closed circle, and the cut would dominate the reconstruction error. */
#define ARC (0.8 * M_PI)
static void circle_data(int64_t n, double noise, uint64_t seed, ct_tensor **u, ct_tensor **z)
{
    ct_gen *g = ct_gen_new(seed);
    ct_scope *s = ct_scope_begin();
    ct_tensor *r = ct_adds(ct_rand(CT_SHAPE(n, 1), CT_F32, g), 0.5);                    /* (N, 1) */
    ct_tensor *th = ct_adds(ct_muls(ct_rand(CT_SHAPE(n, 1), CT_F32, g), 2 * ARC), -ARC); /* (N, 1) */
    ct_tensor *x = ct_cat((const ct_tensor *[]){ct_mul(r, ct_cos(th)), ct_mul(r, ct_sin(th)),
                                                ct_muls(r, 0.5)}, 3, 1);                /* (N, 3) */
    if (noise > 0) x = ct_axpy(x, noise, ct_randn_like(x, g));
    *u = ct_unscope(ct_scope_keep(s, x));
    *z = ct_unscope(ct_scope_keep(s, r));
    ct_scope_end(s);
    ct_gen_free(g);
}

/* Distance of each row of u (B, 3) to the circle of radius z (B, 1) at height z/2: (B,) */
static ct_tensor *circle_distance(const ct_tensor *u, const ct_tensor *z)
{
    ct_tensor *zr = ct_squeeze(z, 1);                                                   /* (B,) */
    ct_tensor *rho = ct_sqrt(ct_add(ct_square(ct_select(u, 1, 0)), ct_square(ct_select(u, 1, 1))));
    return ct_sqrt(ct_add(ct_square(ct_sub(rho, zr)),
                          ct_square(ct_sub(ct_select(u, 1, 2), ct_muls(zr, 0.5)))));
}

/* Trains family on the circle with the shared loop (λ = 0) and returns the model; the
 * condition statistics stay identity, so the family sees z as it is. */
static fl_fiber *fit_circle(const char *const *overrides, fl_latents *train)
{
    static const char *const base[] = {
        "vae.latent=3", "train.steps=600", "train.batch_size=64", "train.lr=3e-3",
        "train.val_every=0", "train.checkpoint_every=0", "train.lambda=0", "train.latent_noise=0",
        "threads=1", "seed=0", NULL};
    fl_config *c = test_config("cache", base);
    for (; *overrides; overrides++)
        cr_assert_eq(fl_config_override(c, *overrides), 0, "%s: %s", *overrides, fl_error());
    circle_data(4096, 0.01, 1, &train->u, &train->z);
    fl_fiber *m = fl_fiber_create(c, 3, 1);
    cr_assert_not_null(m, "%s", fl_error());
    fl_subject *subj = fl_subject_custom("none", 1, NULL, NULL, NULL);   /* λ = 0: unused */
    fl_fiber_train_opts fo;
    fl_fiber_train_opts_from_config(&fo, c);
    fl_train_result tr;
    cr_assert_eq(fl_fiber_train(m, c, &fo, NULL, subj, train, NULL, NULL, &tr), 0, "%s", fl_error());
    cr_expect_eq(tr.steps_done, 600);
    fl_train_result_free(&tr);
    fl_subject_free(subj);
    fl_config_free(c);
    return m;
}

/* Samples of m at 512 test conditions: mean distance to the circle below tol, and all
 * along the arc (each quarter of it gets at least 15% of the samples; uniform: 25%). */
static void expect_samples_on_the_circle(fl_fiber *m, double tol)
{
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u0, *z;
    circle_data(512, 0, 2, &u0, &z);
    ct_gen *g = ct_gen_new(3);
    fl_sample_opts o = {.steps = 0, .temperature = 1, .keep_graph = false};
    ct_tensor *u = fl_fiber_sample_space(m, z, &o, g);                                  /* (B, 3) */
    cr_assert_not_null(u, "%s", fl_error());
    double dist = ct_item(ct_mean(circle_distance(u, z)));
    ct_tensor *th = ct_atan2(ct_select(u, 1, 1), ct_select(u, 1, 0));                   /* (B,) */
    double frac[4];
    for (int q = 0; q < 4; q++) {
        double lo = -ARC + q * ARC / 2, hi = lo + ARC / 2;
        frac[q] = ct_item(ct_mean(ct_to_dtype(ct_mul(ct_gts(th, lo), ct_lts(th, hi)), CT_F32)));
    }
    fl_info("samples: mean distance to the circle %.4f; quarters of the arc %.2f %.2f %.2f %.2f",
            dist, frac[0], frac[1], frac[2], frac[3]);
    cr_expect_lt(dist, tol, "samples lie %.4f from the circle on average (tolerance %g)", dist, tol);
    for (int q = 0; q < 4; q++)
        cr_expect_gt(frac[q], 0.15, "quarter %d of the arc got %.2f of the samples", q, frac[q]);
    ct_gen_free(g);
    ct_free(u0);
    ct_free(z);
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
}

Test(injective, mlf_fits_a_conditional_arc_reconstructs_it_and_samples_along_it)
{
    const char *const o[] = {"model.family=mlf", "mlf.latent=1", "mlf.blocks=3", "mlf.detail_blocks=1",
                             "mlf.hidden=32", "mlf.details=zero", NULL};
    fl_latents train = {0};
    fl_fiber *m = fit_circle(o, &train);
    /* reconstruction from the coarse part alone: F⁻¹([h_c, 0]) on clean test points */
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u, *z;
    circle_data(512, 0, 4, &u, &z);
    ct_tensor *base = fl_mlf_forward(fl_fiber_model(m), u, z, NULL);                    /* (B, 3) */
    ct_tensor *u_hat = fl_mlf_decode(fl_fiber_model(m), ct_narrow(base, 1, 0, 1), z);   /* (B, 3) */
    cr_assert_not_null(u_hat, "%s", ct_last_error());
    double rms = sqrt(ct_item(ct_mean(ct_square(ct_sub(u_hat, u)))));
    fl_info("mlf: reconstruction RMS from the coarse part %.4f", rms);
    cr_expect_lt(rms, 0.05, "F⁻¹([h_c, 0]) reconstructs the circle with an RMS error of %.4f", rms);
    ct_free(u);
    ct_free(z);
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    expect_samples_on_the_circle(m, 0.05);
    fl_fiber_free(m);
    fl_latents_free(&train);
}

Test(injective, dnf_fits_a_conditional_arc_reconstructs_it_and_samples_along_it)
{
    const char *const o[] = {"model.family=dnf", "dnf.latent=1", "dnf.blocks=3", "dnf.hidden=32",
                             "dnf.sigma=0.05", NULL};
    fl_latents train = {0};
    fl_fiber *m = fit_circle(o, &train);
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u, *z;
    circle_data(512, 0, 4, &u, &z);
    ct_tensor *h = fl_dnf_forward(fl_fiber_model(m), u, z, NULL);                       /* (B, 3) */
    ct_tensor *u_hat = fl_dnf_decode(fl_fiber_model(m), ct_narrow(h, 1, 0, 1), z);      /* (B, 3) */
    cr_assert_not_null(u_hat, "%s", ct_last_error());
    double rms = sqrt(ct_item(ct_mean(ct_square(ct_sub(u_hat, u)))));
    fl_info("dnf: reconstruction RMS F⁻¹([h_m, 0]) %.4f", rms);
    cr_expect_lt(rms, 0.05, "F⁻¹([h_m, 0]) reconstructs the circle with an RMS error of %.4f", rms);
    ct_free(u);
    ct_free(z);
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    expect_samples_on_the_circle(m, 0.05);
    fl_fiber_free(m);
    fl_latents_free(&train);
}

/* ---- (c) λ > 0 lowers the fiber loss -------------------------------------------------- */

/* Both families in one test: the second run reuses the subject and VAE the first trained. */
Test(injective, lambda_lowers_the_fiber_loss_of_mlf_and_of_dnf)
{
    const char *const families[2] = {"mlf", "dnf"};
    const char *const extra[2][4] = {{"mlf.blocks=2", "mlf.detail_blocks=1", "mlf.hidden=32", NULL},
                                     {"dnf.blocks=2", "dnf.hidden=32", NULL}};
    for (int i = 0; i < 2; i++) {
        double f0, f1;
        lambda_fixture_run(families[i], 30, extra[i], &f0, &f1);
        fl_info("%s: fiber loss %.4f at λ = 0, %.4f at λ = 30", families[i], f0, f1);
        cr_expect_lt(f1, f0, "%s: λ = 30 gave a fiber loss of %.4f, λ = 0 %.4f", families[i], f1, f0);
    }
}

/* ---- (d) refused settings ------------------------------------------------------------- */

/* fl_fiber_check refuses the settings with a message that contains each of want. */
static void expect_refused(const char *const *overrides, const char *want1, const char *want2)
{
    fl_config *c = fl_config_default();
    for (; *overrides; overrides++)
        cr_assert_eq(fl_config_override(c, *overrides), 0, "%s: %s", *overrides, fl_error());
    cr_expect_neq(fl_fiber_check(c, 0), 0, "accepted (%s)", want1);
    cr_expect(strstr(fl_error(), want1) && strstr(fl_error(), want2), "message: %s", fl_error());
    fl_config_free(c);
}

Test(injective, a_latent_not_below_the_data_dimension_is_refused_naming_the_key)
{
    expect_refused((const char *const[]){"model.family=mlf", "mlf.latent=60", NULL},
                   "mlf.latent: 60 is not below the latent dimension 54 (vae.latent)", "");
    expect_refused((const char *const[]){"model.family=mlf", "mlf.latent=54", NULL}, "mlf.latent: 54", "vae.latent");
    expect_refused((const char *const[]){"model.family=mlf", "vae.latent=8", "mlf.latent=7", NULL},
                   "mlf.latent: 7", "details flow needs at least 2");
    expect_refused((const char *const[]){"model.family=dnf", "dnf.latent=54", NULL},
                   "dnf.latent: 54 is not below the latent dimension 54 (vae.latent)", "");
    /* the defaults pass */
    fl_config *c = fl_config_default();
    cr_expect_eq(fl_config_override(c, "model.family=mlf"), 0);
    cr_expect_eq(fl_fiber_check(c, 0), 0, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "model.family=dnf"), 0);
    cr_expect_eq(fl_fiber_check(c, 0), 0, "%s", fl_error());
    fl_config_free(c);
}

Test(injective, a_sigma_not_above_zero_is_refused_naming_the_key)
{
    expect_refused((const char *const[]){"model.family=dnf", "dnf.sigma=0", NULL}, "dnf.sigma: 0", "above 0");
    fl_config *c = fl_config_default();
    cr_expect_neq(fl_config_override(c, "dnf.sigma=-0.1"), 0, "a negative σ was accepted");
    cr_expect(strstr(fl_error(), "dnf.sigma"), "message: %s", fl_error());
    fl_config_free(c);
}

Test(injective, a_sweep_refuses_a_bad_injective_cell_before_any_work)
{
    const char *const o[] = {"sweep.families=nf,mlf,dnf", "sweep.lambdas=0", "dnf.sigma=0",
                             "data.path=/nonexistent/digits", NULL};
    fl_config *c = test_config("cache", o);
    char kv[400];
    snprintf(kv, sizeof kv, "out_dir=%s/results", tmp);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    fl_sweep_summary sum;
    cr_expect_neq(fl_sweep_run(c, &sum), 0, "the sweep ran");
    cr_expect(strstr(fl_error(), "dnf.sigma"), "message: %s", fl_error());
    fl_config_free(c);
}
