/* bench_families' Python twin of NDTM (benchmarks/perf/bench_families.py) computes what
 * ndtm/ndtm.c computes, on the benchmark's models (the latent prior's ε-network at the
 * prior.* default sizes, the VAE-decoder and subject stand-ins at the vae.* and subject.*
 * defaults) with weights saved here: the cost C(u) and its gradient at a fixed
 * (x_t, u, target), and whole guided trajectories (the ndtm.* defaults: 100 DDIM steps,
 * 50 of them guided with 6 Adam steps; and on a gentler schedule with a terminal weight of
 * 1e4, under which the per-sample gradient rescaling acts) from the same x_T with the same DDIM noise, in
 * float64 (tests/fixtures/check_ndtm_twin.py compares). A missing python3-torch or h5py
 * fails the test. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "architectures/conv.h"
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

Test(ndtm_pytorch, the_python_twin_gives_the_same_cost_gradient_and_trajectory)
{
    ct_dtype prev_dtype = ct_set_float_dtype(CT_F64);
    fl_config *c = fl_config_default();
    ct_params *ps = ct_params_new();
    ct_gen *g = ct_gen_new(17);
    fl_diff_spec sp = fl_prior_latent_spec(c, DIM);   /* steps 100, η 0.25: the prior.* defaults */
    fl_diff *prior = fl_diff_new(&sp, ps, "prior.eps", g);
    cr_assert_not_null(prior, "%s", fl_error());
    fl_conv_spec vs, ss;
    fl_conv_decoder dec;
    fl_conv_encoder enc;
    cr_assert_eq(fl_conv_spec_from_config(c, "vae", 3, DIM, &vs), 0, "%s", fl_error());
    cr_assert_eq(fl_conv_decoder_init(&dec, ps, "vae.dec", &vs, g), 0, "%s", fl_error());
    cr_assert_eq(fl_conv_spec_from_config(c, "subject", 3, COND, &ss), 0, "%s", fl_error());
    cr_assert_eq(fl_conv_encoder_init(&enc, ps, "subject.enc", &ss, 1, g), 0, "%s", fl_error());
    ct_params_set_trainable(ps, false);
    fl_subject *f = fl_subject_custom("conv stand-in", COND, subject_fn, &enc, NULL);
    fl_ndtm_prior p = {.eps = fl_diff_eps_uncond, .eps_ctx = prior, .abar = fl_diff_abar(prior), .T = sp.T,
                       .dim = DIM, .decode = decode, .ctx = &dec, .latent = true};
    fl_ndtm_opts o;
    cr_assert_eq(fl_ndtm_opts_from_config(c, sp.T, &o), 0, "%s", fl_error());
    char weights[400], ref[400];
    snprintf(weights, sizeof weights, "%s/ndtm_weights.h5", tmp);
    snprintf(ref, sizeof ref, "%s/ndtm_reference.h5", tmp);
    cr_assert_eq(ct_params_save(ps, weights), CT_OK, "%s", ct_last_error());

    ct_scope *sc = ct_scope_begin();
    ct_archive *a = ct_archive_new();
    ct_tensor *img = ct_rand(CT_SHAPE(B, 3, 28, 28), CT_F64, g);                      /* (B, 3, 28, 28) */
    bool gm = ct_set_grad_enabled(false);
    ct_tensor *z = fl_subject_forward(f, img);                                       /* (B, 48) */
    put(a, "targets", img);
    put(a, "z", z);

    /* the cost with every term, at a time inside the γ ramp */
    const int t0 = 400;
    const double gamma = 0.7;
    fl_ndtm_opts oc = o;
    oc.w_score = 0.5, oc.w_control = 0.3;
    ct_tensor *x_t = ct_randn(CT_SHAPE(B, DIM), CT_F64, g);
    ct_tensor *u = ct_muls(ct_randn(CT_SHAPE(B, DIM), CT_F64, g), 0.1);
    ct_tensor *eps_t = fl_diff_eps(prior, x_t, t0 + 1, fl_prior_no_cond(B));
    ct_set_grad_enabled(true);
    ct_set_requires_grad(u, true);
    ct_tensor *cost = fl_ndtm_cost(&p, f, x_t, t0, eps_t, u, z, gamma, &oc);         /* (B,) */
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
    cr_assert_eq(ct_archive_put_i64(a, "t0", t0), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "gamma", gamma), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "w_score", oc.w_score), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "w_control", oc.w_control), CT_OK);

    /* a whole trajectory with the defaults; the sampler draws its DDIM noise from g1 (the
     * static target draws nothing), one (B, D) tensor before each step but the last (σ = 0
     * at t = 0): the same draws from a generator of the same seed are Python's noise */
    ct_tensor *x_T = ct_randn(CT_SHAPE(B, DIM), CT_F64, g);
    ct_gen *g1 = ct_gen_new(23), *g2 = ct_gen_new(23);
    ct_tensor *x0 = fl_ndtm_sample(&p, f, x_T, img, z, &o, g1);
    cr_assert_not_null(x0, "%s", fl_error());
    ct_tensor *noise[1000];
    cr_assert_leq(o.steps, 1000);
    for (int i = 0; i < o.steps - 1; i++) noise[i] = ct_randn_like(x_T, g2);
    /* again where the per-sample gradient rescaling acts: the untrained networks'
     * gradients have norms near 3e-4 (and the untrained ε-network leaves x̂0 far out,
     * |x_0| ~ 1e3 above, the decoder saturated); on the schedule of β_max = 0.002
     * (ᾱ_T = 0.37) x̂0 stays near the data's scale, and a terminal weight of 1e4 lifts the
     * gradients over norm 1 */
    double abar_small[1001];
    cr_assert_leq(sp.T, 1000);
    fl_noise_schedule_fill(abar_small, sp.T, false, 0.002);
    fl_ndtm_prior ps_small = p;
    ps_small.abar = abar_small;
    fl_ndtm_opts ow = o;
    ow.w_terminal = 1e4;
    ct_gen *g3 = ct_gen_new(23);
    put(a, "x0_w", fl_ndtm_sample(&ps_small, f, x_T, img, z, &ow, g3));
    cr_assert_eq(ct_archive_put_f64(a, "w_terminal_large", ow.w_terminal), CT_OK);
    cr_assert_eq(ct_archive_put_f64(a, "beta_max_small", 0.002), CT_OK);
    ct_gen_free(g3);
    put(a, "x_T", x_T);
    put(a, "noise", ct_stack((const ct_tensor *const *)noise, o.steps - 1, 0));       /* (S − 1, B, D) */
    put(a, "x0", x0);
    cr_assert_eq(ct_archive_write(a, ref), CT_OK, "%s", ct_last_error());
    ct_set_grad_enabled(gm);
    ct_archive_free(a);
    ct_free(grad);
    ct_gen_free(g1), ct_gen_free(g2);
    ct_scope_end(sc);

    char out[4096];
    int st = run_python_check("check_ndtm_twin.py", weights, ref, out, sizeof out);
    cr_expect_eq(st, 0, "the Python twin differs:\n%s", out);
    cr_log_info("%s", out);
    fl_subject_free(f);
    fl_diff_free(prior);
    ct_params_free(ps);
    ct_gen_free(g);
    fl_config_free(c);
    ct_set_float_dtype(prev_dtype);
}
