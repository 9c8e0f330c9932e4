/* bench_families' Python twin of NDTM (benchmarks/perf/bench_families.py) computes what
 * ndtm/ndtm.c computes, on the benchmark's models with weights saved here, in float64
 * (tests/fixtures/check_ndtm_twin.py compares): the cost C(u) and its gradient at a fixed
 * (x_t, u, target), and whole guided trajectories from the same x_T with the same DDIM
 * noise.
 * - The latent prior: its ε-network at the prior.* default sizes, the VAE-decoder and
 *   subject stand-ins at the vae.* and subject.* defaults; trajectories with the ndtm.*
 *   defaults (100 DDIM steps, 50 of them guided with 6 Adam steps) and on a gentler
 *   schedule with a terminal weight of 1e4, under which the per-sample gradient
 *   rescaling acts.
 * - The pixel prior (prior.space = pixel) as fiberlab ndtm sees it (fl_prior_new,
 *   fl_ndtm_prior_of: the UNet's v-parametrised ε, x = 2·image − 1, x̂0 clamped to
 *   [−1, 1]), a tiny UNet with every weight perturbed, the same subject; a trajectory of
 *   20 DDIM steps (10 guided), the ndtm.* defaults otherwise.
 * A missing python3-torch or h5py fails the test. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "architectures/conv.h"
#include "architectures/unet.h"
#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "ndtm/ndtm.h"
#include "python_check.h"
#include "store_fixture.h"
#include "trainers/diffusion.h"
#include "trainers/prior.h"
#include "trainers/subject.h"

TestSuite(ndtm_pytorch, .init = make_tmp, .fini = remove_tmp, .timeout = 120);

#define DIM 54
#define COND 48
#define B 4

static ct_tensor *decode(void *ctx, const ct_tensor *u)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_scope_keep(s, ct_sigmoid(fl_conv_decoder_forward(ctx, u)));  /* (B, 3, 28, 28) */
    ct_scope_end(s);
    return x;
}

static ct_tensor *subject_fn(void *ctx, const ct_tensor *x) { return fl_conv_encoder_forward(ctx, x); }

static void put(ct_archive *a, const char *name, const ct_tensor *t)
{
    cr_assert_not_null(t, "%s: %s", name, ct_last_error());
    cr_assert_eq(ct_archive_put(a, name, t), CT_OK, "%s: %s", name, ct_last_error());
}

/* The benchmark's latent prior and stand-ins (float64), frozen, saved to `weights` (the
 * names bench_families.py's ndtm_models reads). */
typedef struct {
    ct_params *ps;
    fl_diff *prior;
    fl_conv_decoder dec;
    fl_conv_encoder enc;
    fl_subject *f;
} models;

static void models_new(models *m, const fl_config *c, ct_gen *g, const char *weights)
{
    m->ps = ct_params_new();
    fl_diff_spec sp = fl_prior_latent_spec(c, DIM);   /* steps 100, η 0.25: the prior.* defaults */
    m->prior = fl_diff_new(&sp, m->ps, "prior.eps", g);
    cr_assert_not_null(m->prior, "%s", fl_error());
    fl_conv_spec vs, ss;
    cr_assert_eq(fl_conv_spec_from_config(c, "vae", 3, DIM, &vs), 0, "%s", fl_error());
    cr_assert_eq(fl_conv_decoder_init(&m->dec, m->ps, "vae.dec", &vs, g), 0, "%s", fl_error());
    cr_assert_eq(fl_conv_spec_from_config(c, "subject", 3, COND, &ss), 0, "%s", fl_error());
    cr_assert_eq(fl_conv_encoder_init(&m->enc, m->ps, "subject.enc", &ss, 1, g), 0, "%s", fl_error());
    ct_params_set_trainable(m->ps, false);
    m->f = fl_subject_custom("conv stand-in", COND, subject_fn, &m->enc, NULL);
    cr_assert_eq(ct_params_save(m->ps, weights), CT_OK, "%s", ct_last_error());
}

static void models_free(models *m)
{
    fl_subject_free(m->f);
    fl_diff_free(m->prior);
    ct_params_free(m->ps);
}

/* The cost with every term (w_score 0.5, w_control 0.3) at a time inside the γ ramp, its
 * gradient w.r.t. u, and their inputs, into a. */
static void put_cost(ct_archive *a, const fl_ndtm_prior *p, fl_subject *f, const fl_ndtm_opts *o,
                     const ct_tensor *z, ct_gen *g)
{
    const int t0 = 400;
    const double gamma = 0.7;
    fl_ndtm_opts oc = *o;
    oc.w_score = 0.5, oc.w_control = 0.3;
    ct_tensor *x_t = ct_randn(CT_SHAPE(B, p->dim), CT_F64, g);
    ct_tensor *u = ct_muls(ct_randn(CT_SHAPE(B, p->dim), CT_F64, g), 0.1);
    ct_tensor *eps_t = p->eps(p->eps_ctx, x_t, t0 + 1);
    ct_set_grad_enabled(true);
    ct_set_requires_grad(u, true);
    ct_tensor *cost = fl_ndtm_cost(p, f, x_t, t0, eps_t, u, z, gamma, &oc);          /* (B,) */
    ct_tensor *total = ct_sum(cost), *grad = NULL;
    const ct_tensor *in[1] = {u};
    cr_assert_eq(ct_grad((const ct_tensor *const *)&total, NULL, 1, in, 1, &grad, false, false, false), 0,
                 "%s", ct_last_error());
    ct_set_grad_enabled(false);
    put(a, "x_t", x_t);
    put(a, "u", ct_detach(u));
    put(a, "eps_t", eps_t);
    put(a, "cost", ct_detach(cost));
    put(a, "grad", grad);
    ct_free(grad);
    cr_assert_eq(ct_archive_put_i64(a, "t0", t0), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "gamma", gamma), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "w_score", oc.w_score), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "w_control", oc.w_control), CT_OK);
}

/* A whole trajectory from x_T (into a as `name`) and, once, x_T and the noise Python is
 * to use: the sampler draws its DDIM noise from a generator of seed 23 (the static target
 * draws nothing), one (B, D) tensor before each step but the last (σ = 0 at t = 0): the
 * same draws from a generator of the same seed are Python's noise. */
static void put_trajectory(ct_archive *a, const char *name, const fl_ndtm_prior *p, fl_subject *f,
                           const fl_ndtm_opts *o, const ct_tensor *x_T, const ct_tensor *img,
                           const ct_tensor *z, bool with_noise)
{
    ct_gen *g1 = ct_gen_new(23);
    ct_tensor *x0 = fl_ndtm_sample(p, f, x_T, img, z, o, g1);
    cr_assert_not_null(x0, "%s", fl_error());
    put(a, name, x0);
    ct_gen_free(g1);
    if (!with_noise) return;
    ct_tensor *noise[1000];
    cr_assert_leq(o->steps, 1000);
    ct_gen *g2 = ct_gen_new(23);
    for (int i = 0; i < o->steps - 1; i++) noise[i] = ct_randn_like(x_T, g2);
    ct_gen_free(g2);
    put(a, "x_T", x_T);
    put(a, "noise", ct_stack((const ct_tensor *const *)noise, o->steps - 1, 0));      /* (S − 1, B, D) */
    cr_assert_eq(ct_archive_put_i64(a, "steps", o->steps), CT_OK);
}

static void run_twin(const char *weights, const char *ref)
{
    char out[4096];
    int st = run_python_check("check_ndtm_twin.py", weights, ref, out, sizeof out);
    cr_expect_eq(st, 0, "the Python twin differs:\n%s", out);
    cr_log_info("%s", out);
}

Test(ndtm_pytorch, the_python_twin_gives_the_same_cost_gradient_and_trajectory)
{
    ct_dtype prev_dtype = ct_set_float_dtype(CT_F64);
    fl_config *c = fl_config_default();
    ct_gen *g = ct_gen_new(17);
    char weights[400], ref[400];
    snprintf(weights, sizeof weights, "%s/ndtm_weights.h5", tmp);
    snprintf(ref, sizeof ref, "%s/ndtm_reference.h5", tmp);
    models m;
    models_new(&m, c, g, weights);
    fl_ndtm_prior p = {.eps = fl_diff_eps_uncond, .eps_ctx = m.prior, .abar = fl_diff_abar(m.prior),
                       .T = fl_diff_T(m.prior), .dim = DIM, .decode = decode, .ctx = &m.dec, .latent = true};
    fl_ndtm_opts o;
    cr_assert_eq(fl_ndtm_opts_from_config(c, p.T, &o), 0, "%s", fl_error());

    ct_scope *sc = ct_scope_begin();
    ct_archive *a = ct_archive_new();
    ct_tensor *img = ct_rand(CT_SHAPE(B, 3, 28, 28), CT_F64, g);                      /* (B, 3, 28, 28) */
    bool gm = ct_set_grad_enabled(false);
    ct_tensor *z = fl_subject_forward(m.f, img);                                     /* (B, 48) */
    put(a, "targets", img);
    put(a, "z", z);
    put_cost(a, &p, m.f, &o, z, g);

    /* a whole trajectory with the defaults, and again where the per-sample gradient
     * rescaling acts: the untrained networks' gradients have norms near 3e-4 (and the
     * untrained ε-network leaves x̂0 far out, |x_0| ~ 1e3 above, the decoder saturated);
     * on the schedule of β_max = 0.002 (ᾱ_T = 0.37) x̂0 stays near the data's scale, and a
     * terminal weight of 1e4 lifts the gradients over norm 1 */
    ct_tensor *x_T = ct_randn(CT_SHAPE(B, DIM), CT_F64, g);
    put_trajectory(a, "x0", &p, m.f, &o, x_T, img, z, true);
    double abar_small[1001];
    cr_assert_leq(p.T, 1000);
    fl_noise_schedule_fill(abar_small, p.T, false, 0.002);
    fl_ndtm_prior ps_small = p;
    ps_small.abar = abar_small;
    fl_ndtm_opts ow = o;
    ow.w_terminal = 1e4;
    put_trajectory(a, "x0_w", &ps_small, m.f, &ow, x_T, img, z, false);
    cr_assert_eq(ct_archive_put_f64(a, "w_terminal_large", ow.w_terminal), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "beta_max_small", 0.002), CT_OK);
    cr_assert_eq(ct_archive_write(a, ref), CT_OK, "%s", ct_last_error());
    ct_set_grad_enabled(gm);
    ct_archive_free(a);
    ct_scope_end(sc);

    run_twin(weights, ref);
    models_free(&m);
    ct_gen_free(g);
    fl_config_free(c);
    ct_set_float_dtype(prev_dtype);
}

Test(ndtm_pytorch, the_python_twin_of_the_pixel_prior_gives_the_same_cost_gradient_and_trajectory)
{
    ct_dtype prev_dtype = ct_set_float_dtype(CT_F64);
    fl_config *c = fl_config_default();
    ct_gen *g = ct_gen_new(19);
    char weights[400], ref[400];
    snprintf(weights, sizeof weights, "%s/ndtm_weights.h5", tmp);
    snprintf(ref, sizeof ref, "%s/ndtm_pixel_reference.h5", tmp);
    models m;
    models_new(&m, c, g, weights);
    /* the pixel prior as fiberlab ndtm builds it, a tiny UNet (two levels of 8 channels) */
    const char *const sets[] = {"prior.space=pixel", "prior.unet.widths=[8, 8]", "prior.unet.groups=4",
                                "prior.unet.time_embed=8", "ndtm.steps=20"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        cr_assert_eq(fl_config_override(c, sets[i]), 0, "%s: %s", sets[i], fl_error());
    fl_prior *pp;
    cr_assert_eq(fl_prior_new(c, NULL, &pp), 0, "%s", fl_error());
    ct_params *ups = fl_prior_params(pp);
    /* every weight moved from its initialisation (DDPM's zero convs: ε would be
     * √(1 − ᾱ) x and every block the identity) */
    for (int i = 0; i < ct_params_count(ups); i++) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *w = ct_params_at(ups, i);
        cr_assert_eq(ct_copy_(w, ct_add(w, ct_muls(ct_randn_like(w, g), 0.1))), CT_OK, "%s", ct_last_error());
        ct_scope_end(s);
    }
    ct_params_set_trainable(ups, false);
    fl_ndtm_prior p = fl_ndtm_prior_of(pp);
    cr_expect(p.clamp == 1 && !p.latent && p.dim == 3 * 28 * 28);
    fl_ndtm_opts o;
    cr_assert_eq(fl_ndtm_opts_from_config(c, p.T, &o), 0, "%s", fl_error());

    ct_scope *sc = ct_scope_begin();
    ct_archive *a = ct_archive_new();
    fl_unet_spec us;
    cr_assert_eq(fl_prior_unet_spec(c, &us), 0, "%s", fl_error());
    cr_assert_eq(fl_unet_spec_put(&us, a, "spec/"), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_params_put(ups, a, "params/"), CT_OK, "%s", ct_last_error());
    ct_tensor *img = ct_rand(CT_SHAPE(B, 3, 28, 28), CT_F64, g);                      /* (B, 3, 28, 28) */
    bool gm = ct_set_grad_enabled(false);
    ct_tensor *z = fl_subject_forward(m.f, img);                                     /* (B, 48) */
    put(a, "targets", img);
    put(a, "z", z);
    put_cost(a, &p, m.f, &o, z, g);
    put_trajectory(a, "x0", &p, m.f, &o, ct_randn(CT_SHAPE(B, p.dim), CT_F64, g), img, z, true);
    cr_assert_eq(ct_archive_write(a, ref), CT_OK, "%s", ct_last_error());
    ct_set_grad_enabled(gm);
    ct_archive_free(a);
    ct_scope_end(sc);

    run_twin(weights, ref);
    fl_prior_free(pp);
    models_free(&m);
    ct_gen_free(g);
    fl_config_free(c);
    ct_set_float_dtype(prev_dtype);
}
