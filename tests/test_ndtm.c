/* NDTM (ndtm/ndtm.h) and its latent prior (trainers/prior.h): with γ = 0 the guided
 * sampler is plain DDIM of the prior bit for bit; the gradient of the inner cost with
 * respect to the control matches finite differences in float64; guidance lowers the
 * fiber loss of a tiny prior and subject against γ = 0; the γ_t schedule, the learning-
 * rate decay and the time grid sit on their anchor points; the re-noised target without
 * noise is the static one; latent refinement lowers the fiber loss; the prior trains into
 * the cache with EMA weights and reports its colors, and a missing prior with no data to
 * train it on fails naming its file. The tiny prior lives in pixel space (D = 3·28·28,
 * x = 2·image − 1) with an untrained ε-network, the subject is a fixed random projection. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/fiber.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "ndtm/ndtm.h"
#include "store_fixture.h"
#include "trainers/diffusion.h"
#include "trainers/prior.h"
#include "trainers/subject.h"
#include "trainers/vae.h"

#define D (3 * 28 * 28)

static ct_tensor *pix_decode(void *ctx, const ct_tensor *x)
{
    (void)ctx;
    return ct_reshape(ct_muls(ct_adds(x, 1), 0.5), CT_SHAPE(-1, 3, 28, 28));
}
static ct_tensor *pix_encode(void *ctx, const ct_tensor *img)
{
    (void)ctx;
    return ct_adds(ct_muls(ct_flatten(img, 1), 2), -1);
}

static ct_tensor *proj_forward(void *ctx, const ct_tensor *x)
{
    return ct_mm(ct_flatten(x, 1), ctx);          /* (B, D) (D, 8) -> (B, 8) */
}
static void proj_free(void *ctx) { ct_free(ctx); }

typedef struct {
    fl_diff *m;
    ct_params *ps;
    fl_subject *f;
    fl_ndtm_prior p;
} tiny;

static void tiny_new(tiny *t, double clamp)
{
    t->ps = ct_params_new();
    ct_gen *g = ct_gen_new(3);
    fl_diff_spec s = {.net = {.dim = D, .cond_dim = 0, .embed = 8, .hidden = 16, .n_blocks = 0,
                              .n_layers = 1, .act = fl_act_parse("silu")},
                      .T = 1000, .beta_max = 0.02, .steps = 100, .eta = 0.25};
    t->m = fl_diff_new(&s, t->ps, "tiny", g);
    cr_assert_not_null(t->m, "%s", fl_error());
    ct_params_set_trainable(t->ps, false);
    ct_scope *sc = ct_scope_begin();   /* the draw is a temporary; only w outlives it */
    ct_tensor *w = ct_unscope(ct_muls(ct_randn(CT_SHAPE(D, 8), ct_float_dtype(), g), 0.05));
    ct_scope_end(sc);
    t->f = fl_subject_custom("projection", 8, proj_forward, w, proj_free);
    ct_gen_free(g);
    t->p = (fl_ndtm_prior){.eps = fl_diff_eps_uncond, .eps_ctx = t->m, .abar = fl_diff_abar(t->m),
                           .T = fl_diff_T(t->m), .dim = D, .decode = pix_decode, .encode = pix_encode,
                           .clamp = clamp};
}

static void tiny_free(tiny *t)
{
    fl_subject_free(t->f);
    fl_diff_free(t->m);
    ct_params_free(t->ps);
}

static fl_ndtm_opts default_opts(void)
{
    fl_config *c = fl_config_default();
    fl_ndtm_opts o;
    cr_assert_eq(fl_ndtm_opts_from_config(c, 1000, &o), 0, "%s", fl_error());
    fl_config_free(c);
    return o;
}

/* Target images with values k/256, exact through x = 2·image − 1 and back. */
static ct_tensor *targets(int64_t b, ct_gen *g)
{
    return ct_muls(ct_floor(ct_muls(ct_rand(CT_SHAPE(b, 3, 28, 28), ct_float_dtype(), g), 256)), 1.0 / 256);
}

TestSuite(ndtm, .timeout = 120);

Test(ndtm, gamma_zero_is_plain_ddim_bit_for_bit)
{
    tiny t;
    tiny_new(&t, 0);
    ct_scope *s = ct_scope_begin();
    fl_ndtm_opts o = default_opts();
    o.gamma = FL_GAMMA_ZERO;
    ct_gen *g0 = ct_gen_new(11), *g1 = ct_gen_new(5), *g2 = ct_gen_new(5);
    ct_tensor *x_T = ct_randn(CT_SHAPE(4, D), ct_float_dtype(), g0);
    ct_tensor *img = targets(4, g0);
    ct_tensor *z = fl_subject_forward(t.f, img);
    ct_tensor *a = fl_ndtm_sample(&t.p, t.f, x_T, img, z, &o, g1);
    cr_assert_not_null(a, "%s", fl_error());
    fl_ddim_opts d = {.steps = o.steps, .eta = o.eta, .grid = FL_DDIM_LEADING};
    ct_tensor *b = fl_diff_ddim(t.m, x_T, fl_prior_no_cond(4), &d, g2);
    cr_assert_not_null(b, "%s", fl_error());
    double diff = ct_item(ct_max_all(ct_abs(ct_sub(a, b))));
    cr_expect_eq(diff, 0.0, "γ = 0 differs from DDIM by %g", diff);
    /* and it is not a trivial match: η > 0 drew noise, the samples moved from x_T */
    cr_expect_gt(ct_item(ct_max_all(ct_abs(ct_sub(a, x_T)))), 0.1);
    ct_gen_free(g0), ct_gen_free(g1), ct_gen_free(g2);
    ct_scope_end(s);
    tiny_free(&t);
}

Test(ndtm, inner_cost_gradient_matches_finite_differences_in_float64)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    tiny t;
    tiny_new(&t, 0);
    ct_scope *s = ct_scope_begin();
    fl_ndtm_opts o = default_opts();
    o.w_score = 0.5, o.w_control = 0.3;   /* every term of the cost */
    ct_gen *g = ct_gen_new(2);
    const int t0 = 200;
    double gamma = 0.7;
    ct_tensor *x_t = ct_randn(CT_SHAPE(3, D), CT_F64, g);
    ct_tensor *eps_t = fl_diff_eps(t.m, x_t, t0 + 1, fl_prior_no_cond(3));
    ct_tensor *z = ct_randn(CT_SHAPE(3, 8), CT_F64, g);
    ct_tensor *u = ct_muls(ct_randn(CT_SHAPE(3, D), CT_F64, g), 0.1);
    bool gm = ct_set_grad_enabled(true);
    ct_set_requires_grad(u, true);
    ct_tensor *c = ct_sum(fl_ndtm_cost(&t.p, t.f, x_t, t0, eps_t, u, z, gamma, &o));
    ct_tensor *grad = NULL;
    const ct_tensor *in[1] = {u};
    cr_assert_eq(ct_grad((const ct_tensor *const *)&c, NULL, 1, in, 1, &grad, false, false, false), 0, "%s",
                 ct_last_error());
    ct_set_grad_enabled(false);
    double gd[3 * D];
    cr_assert_eq(ct_to_data(grad, gd, sizeof gd), 0);
    const int64_t probe[] = {0, 17, 999, D + 5, 2 * D + 2000, 3 * D - 1};
    double worst = 0;
    for (int k = 0; k < 6; k++) {
        const double h = 1e-6;
        double v[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double e[3 * D];
            memset(e, 0, sizeof e);
            e[probe[k]] = sgn ? -h : h;
            ct_tensor *up = ct_add(u, ct_from_data(e, CT_SHAPE(3, D), CT_F64));
            v[sgn] = ct_item(ct_sum(fl_ndtm_cost(&t.p, t.f, x_t, t0, eps_t, up, z, gamma, &o)));
        }
        double fd = (v[0] - v[1]) / (2 * h), an = gd[probe[k]];
        double err = fabs(fd - an) / fmax(1e-6, fabs(fd) + fabs(an));
        if (err > worst) worst = err;
        cr_expect_lt(err, 1e-5, "∂C/∂u[%lld]: autograd %.10g, finite differences %.10g",
                     (long long)probe[k], an, fd);
    }
    cr_log_info("largest relative difference %.3g", worst);
    ct_set_grad_enabled(gm);
    ct_gen_free(g);
    ct_scope_end(s);
    tiny_free(&t);
    ct_set_float_dtype(prev);
}

/* The mean fiber loss of guided samples of 8 targets, decoded. */
static double fiber_of(tiny *t, const fl_ndtm_opts *o, bool refine)
{
    ct_scope *s = ct_scope_begin();
    ct_gen *g0 = ct_gen_new(21), *g1 = ct_gen_new(9);
    ct_tensor *x_T = ct_randn(CT_SHAPE(8, D), ct_float_dtype(), g0);
    ct_tensor *img = targets(8, g0);
    ct_tensor *z = fl_subject_forward(t->f, img);
    ct_tensor *x0 = fl_ndtm_sample(&t->p, t->f, x_T, img, z, o, g1);
    cr_assert_not_null(x0, "%s", fl_error());
    if (refine) x0 = fl_ndtm_refine(&t->p, t->f, x0, z, o);
    cr_assert_not_null(x0, "%s", fl_error());
    double l = ct_item(fl_fiber_loss_mean(fl_subject_forward(t->f, t->p.decode(NULL, x0)), z));
    ct_gen_free(g0), ct_gen_free(g1);
    ct_scope_end(s);
    return l;
}

Test(ndtm, guidance_lowers_the_fiber_loss)
{
    tiny t;
    tiny_new(&t, 1);
    fl_ndtm_opts o = default_opts();
    o.steps = 20;
    o.u_lr = 0.02;
    double guided = fiber_of(&t, &o, false);
    fl_ndtm_opts r = o;
    r.target = FL_TARGET_RENOISED;
    double renoised = fiber_of(&t, &r, false);
    o.gamma = FL_GAMMA_ZERO;
    double plain = fiber_of(&t, &o, false);
    cr_log_info("fiber loss: γ = 0 %.4f, static %.4f, re-noised %.4f", plain, guided, renoised);
    cr_expect_lt(guided, 0.8 * plain, "static target: %.4f, γ = 0: %.4f", guided, plain);
    cr_expect_lt(renoised, 0.8 * plain, "re-noised target: %.4f, γ = 0: %.4f", renoised, plain);
    o.refine_steps = 20;
    double refined = fiber_of(&t, &o, true);
    cr_expect_lt(refined, 0.8 * plain, "refined: %.4f, unrefined %.4f", refined, plain);
    tiny_free(&t);
}

/* Pixel refinement (o.refine_pixels) of plain DDIM samples: the fiber loss falls, the
 * images stay in [0, 1]. */
Test(ndtm, pixel_refinement_lowers_the_fiber_loss_within_the_pixel_range)
{
    tiny t;
    tiny_new(&t, 1);
    ct_scope *s = ct_scope_begin();
    fl_ndtm_opts o = default_opts();
    o.steps = 20;
    o.gamma = FL_GAMMA_ZERO;
    o.refine_steps = 30;
    o.refine_lr = 0.02;
    o.refine_pixels = true;
    ct_gen *g0 = ct_gen_new(21), *g1 = ct_gen_new(9);
    ct_tensor *img = targets(8, g0);
    ct_tensor *z = fl_subject_forward(t.f, img);
    ct_tensor *x0 = fl_ndtm_sample(&t.p, t.f, ct_randn(CT_SHAPE(8, D), ct_float_dtype(), g0), img, z, &o, g1);
    ct_tensor *before = t.p.decode(NULL, x0);
    ct_tensor *after = fl_ndtm_refine_images(NULL, t.f, before, z, &o);
    cr_assert_not_null(after, "%s", fl_error());
    double l0 = ct_item(fl_fiber_loss_mean(fl_subject_forward(t.f, before), z));
    double l1 = ct_item(fl_fiber_loss_mean(fl_subject_forward(t.f, after), z));
    cr_log_info("pixel refinement: fiber loss %.4f -> %.4f", l0, l1);
    cr_expect_lt(l1, 0.5 * l0, "fiber loss %.4f -> %.4f", l0, l1);
    cr_expect_geq(ct_item(ct_min_all(after)), 0.0);
    cr_expect_leq(ct_item(ct_max_all(after)), 1.0);
    /* latent refinement needs the VAE: one line saying so */
    o.refine_pixels = false;
    cr_expect_null(fl_ndtm_refine_images(NULL, t.f, before, z, &o));
    cr_expect(strstr(fl_error(), "ndtm.refine_space") != NULL, "%s", fl_error());
    ct_gen_free(g0), ct_gen_free(g1);
    ct_scope_end(s);
    tiny_free(&t);
}

Test(ndtm, schedules_sit_on_their_anchor_points)
{
    fl_ndtm_opts o = default_opts();
    o.gamma_max = 2;
    cr_expect_eq(fl_ndtm_gamma(&o, 990), 0.0);
    cr_expect_eq(fl_ndtm_gamma(&o, 500), 0.0);
    cr_expect_float_eq(fl_ndtm_gamma(&o, 400), 1.0, 1e-12);          /* half way: (1 − cos π/2)/2 */
    cr_expect_float_eq(fl_ndtm_gamma(&o, 450), 2 * (1 - cos(M_PI / 4)) / 2, 1e-12);
    cr_expect_eq(fl_ndtm_gamma(&o, 300), 2.0);
    cr_expect_eq(fl_ndtm_gamma(&o, 0), 2.0);
    o.gamma = FL_GAMMA_CONSTANT;
    cr_expect_eq(fl_ndtm_gamma(&o, 990), 2.0);
    o.gamma = FL_GAMMA_ZERO;
    cr_expect_eq(fl_ndtm_gamma(&o, 0), 0.0);
    cr_expect_eq(fl_ndtm_lr(&o, 0), 0.002);
    cr_expect_float_eq(fl_ndtm_lr(&o, 50), 0.001, 1e-15);
    cr_expect_float_eq(fl_ndtm_lr(&o, 99), 0.002 * 0.01, 1e-15);
    cr_expect_eq(fl_ndtm_time(&o, 1000, 0), 990);
    cr_expect_eq(fl_ndtm_time(&o, 1000, 1), 980);
    cr_expect_eq(fl_ndtm_time(&o, 1000, 99), 0);
    cr_expect_eq(fl_ndtm_time(&o, 1000, 100), -1);
    /* a ramp that ends before it starts is refused naming the key */
    fl_config *c = fl_config_default();
    cr_assert_eq(fl_config_override(c, "ndtm.ramp_end=600"), 0, "%s", fl_error());
    cr_expect_neq(fl_ndtm_opts_from_config(c, 1000, &o), 0);
    cr_expect(strstr(fl_error(), "ndtm.ramp_end") != NULL, "%s", fl_error());
    fl_config_free(c);
}

Test(ndtm, renoised_target_without_noise_is_the_static_target)
{
    tiny t;
    tiny_new(&t, 1);
    ct_scope *s = ct_scope_begin();
    fl_ndtm_opts o = default_opts();
    o.target = FL_TARGET_RENOISED;
    ct_gen *g = ct_gen_new(4);
    ct_tensor *img = targets(3, g);
    ct_tensor *z = fl_subject_forward(t.f, img);
    ct_tensor *z0 = fl_ndtm_target(&t.p, t.f, img, z, -1, &o, g);   /* ᾱ = 1 */
    cr_assert_not_null(z0, "%s", fl_error());
    cr_expect_eq(ct_item(ct_max_all(ct_abs(ct_sub(z0, z)))), 0.0);
    ct_tensor *z5 = fl_ndtm_target(&t.p, t.f, img, z, 500, &o, g);   /* noised: another target */
    cr_expect_gt(ct_item(ct_max_all(ct_abs(ct_sub(z5, z)))), 1e-3);
    ct_gen_free(g);
    ct_scope_end(s);
    tiny_free(&t);
}

/* ---- the latent prior through the cache ------------------------------------------- */

TestSuite(prior, .init = make_tmp, .fini = remove_tmp, .timeout = 300);

static fl_config *prior_config(void)
{
    static const char *const base[] = {"vae.widths=[8, 16]", "vae.latent=12", "vae.hidden=32",
                                       "vae.steps=40", "vae.batch_size=32", "threads=1",
                                       "prior.steps=60", "prior.batch_size=32", "prior.hidden=32",
                                       "prior.blocks=1", "prior.ema_decay=0.9",
                                       "prior.report_samples=64", "prior.report_steps=10", NULL};
    return idx_config("cache", base);
}

Test(prior, trains_into_the_cache_reports_and_is_reused)
{
    put_source(160, 40, 1);
    fl_config *c = prior_config();
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_vae *v;
    cr_assert_eq(fl_vae_open(c, ds, &v), 0, "%s", fl_error());
    char path[4096];
    cr_assert_eq(fl_prior_cache_path(c, path, sizeof path), 0, "%s", fl_error());
    /* not trained and no data: one line naming the file */
    fl_prior *p = NULL;
    cr_expect_neq(fl_prior_open(c, NULL, v, &p), 0);
    cr_expect(strstr(fl_error(), path) != NULL, "%s", fl_error());
    cr_expect_null(strchr(fl_error(), '\n'), "%s", fl_error());
    cr_assert_eq(fl_prior_open(c, ds, v, &p), 0, "%s", fl_error());
    const fl_prior_report *r = fl_prior_report_of(p);
    cr_expect(r->trained);
    cr_expect_eq(r->steps, 60);
    cr_expect_str_eq(fl_prior_path(p), path);
    cr_expect(isfinite(r->color.kl_mean) && r->color.kl_mean > 0, "KL %g", r->color.kl_mean);
    cr_expect(isfinite(r->color.w1_mean) && r->color.w1_mean > 0, "W1 %g", r->color.w1_mean);
    /* reused: the same report, no training */
    fl_prior *p2 = NULL;
    cr_assert_eq(fl_prior_open(c, NULL, v, &p2), 0, "%s", fl_error());
    cr_expect_not(fl_prior_report_of(p2)->trained);
    cr_expect_eq(fl_prior_report_of(p2)->color.kl_mean, r->color.kl_mean);
    /* the latent prior's samples decode to images in [0, 1] */
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(1);
    ct_tensor *img = fl_vae_decode(v, fl_prior_sample(p2, 5, 10, 0.25, g));
    cr_assert_not_null(img, "%s", ct_last_error());
    cr_expect_eq(ct_size(img, 1), 3);
    cr_expect_geq(ct_item(ct_min_all(img)), 0.0);
    cr_expect_leq(ct_item(ct_max_all(img)), 1.0);
    ct_gen_free(g);
    ct_scope_end(s);
    fl_prior_free(p2);
    fl_prior_free(p);
    fl_vae_free(v);
    fl_dataset_free(ds);
    fl_config_free(c);
}

#ifdef CT_FIXTURE_DIR
/* A TorchScript subject that expects gray (B, 1, 28, 28) images cannot score NDTM's
 * colored samples: it is refused when opened, in one line naming its file. */
Test(ndtm, subject_of_another_input_shape_fails_naming_the_file)
{
    fl_config *c = fl_config_default();
    const char *path = CT_FIXTURE_DIR "/subject_gray.pt";
    char kv[4200];
    snprintf(kv, sizeof kv, "subject.path=%s", path);
    cr_assert_eq(fl_config_override(c, "subject.kind=torchscript"), 0, "%s", fl_error());
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    fl_subject *s = NULL;
    cr_expect_neq(fl_subject_open(c, NULL, &s), 0);
    cr_expect_null(s);
    cr_expect(strstr(fl_error(), path) != NULL, "%s", fl_error());
    cr_expect_null(strchr(fl_error(), '\n'), "more than one line: %s", fl_error());
    fl_config_free(c);
}

/* A config with prior.script = the fixture file name. */
static fl_config *script_config(const char *file)
{
    fl_config *c = fl_config_default();
    char kv[4200];
    snprintf(kv, sizeof kv, "prior.script=%s/%s", CT_FIXTURE_DIR, file);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    return c;
}

/* The user's TorchScript prior: its ε equals Python's on the same input (t passed as the
 * 0-based step), and NDTM at γ = 0 on it is the prior's own DDIM sampler (clamped x̂0 in
 * pixels) bit for bit. */
Test(ndtm, script_prior_matches_python_and_gamma_zero_is_its_ddim)
{
    fl_config *c = script_config("prior_pixel.pt");
    fl_prior *p = NULL;
    cr_assert_eq(fl_prior_open(c, NULL, NULL, &p), 0, "%s", fl_error());
    cr_expect_eq(fl_prior_space_of(p), FL_PRIOR_PIXEL);
    cr_expect_eq(fl_prior_dim(p), D);
    cr_expect_eq(fl_prior_T(p), 1000);
    cr_expect_not(fl_prior_report_of(p)->measured);
    ct_scope *s = ct_scope_begin();
    static float in[2 * D], ref[2 * D];
    for (int i = 0; i < 2 * D; i++) in[i] = (float)(fmodf((float)i, 97.0f) / 48.5f - 1.0f);
    FILE *f = fopen(CT_FIXTURE_DIR "/prior_pixel_ref.bin", "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(ref, sizeof ref[0], 2 * D, f), (size_t)(2 * D));
    fclose(f);
    ct_tensor *e = fl_prior_eps(p, ct_from_data(in, CT_SHAPE(2, D), CT_F32), 124);   /* t − 1 = 123 */
    cr_assert_not_null(e, "%s", fl_error());
    double worst = ct_max_abs_diff(e, ct_from_data(ref, CT_SHAPE(2, D), CT_F32));
    cr_expect_lt(worst, 1e-5, "ε differs from Python's by %g", worst);
    /* γ = 0: NDTM is plain DDIM of this prior */
    fl_ndtm_prior np = fl_ndtm_prior_of(p);
    cr_expect_eq(np.clamp, 1.0);
    fl_ndtm_opts o = default_opts();
    o.gamma = FL_GAMMA_ZERO;
    o.steps = 10;
    ct_gen *g0 = ct_gen_new(3), *g1 = ct_gen_new(5), *g2 = ct_gen_new(5);
    ct_tensor *img = targets(2, g0);
    ct_tensor *x_T = ct_randn(CT_SHAPE(2, D), ct_float_dtype(), g1);
    ct_tensor *a = fl_ndtm_sample(&np, NULL, x_T, img, NULL, &o, g1);
    cr_assert_not_null(a, "%s", fl_error());
    ct_tensor *b = fl_prior_sample(p, 2, 10, o.eta, g2);
    cr_assert_not_null(b, "%s", fl_error());
    cr_expect_eq(ct_max_abs_diff(a, b), 0.0, "γ = 0 differs from the prior's DDIM by %g", ct_max_abs_diff(a, b));
    /* its samples decode to images in [0, 1] (x̂0 clamped) */
    ct_tensor *im = fl_prior_decode(p, b);
    cr_expect_eq(ct_ndim(im), 4);
    cr_expect_geq(ct_item(ct_min_all(im)), -1e-6);
    cr_expect_leq(ct_item(ct_max_all(im)), 1 + 1e-6);
    ct_gen_free(g0), ct_gen_free(g1), ct_gen_free(g2);
    ct_scope_end(s);
    fl_prior_free(p);
    fl_config_free(c);
}

/* A missing file, a module whose forward takes one argument, and one that returns another
 * shape are each refused when opened, in one line naming the file. */
Test(ndtm, bad_script_priors_fail_naming_the_file)
{
    static const char *const files[] = {"no_such_prior.pt", "prior_onearg.pt", "prior_flat.pt"};
    for (int i = 0; i < 3; i++) {
        fl_config *c = script_config(files[i]);
        fl_prior *p = NULL;
        cr_expect_neq(fl_prior_open(c, NULL, NULL, &p), 0, "%s was accepted", files[i]);
        cr_expect_null(p);
        cr_expect(strstr(fl_error(), files[i]) != NULL, "%s: %s", files[i], fl_error());
        cr_expect(strstr(fl_error(), "prior.script") != NULL, "%s: %s", files[i], fl_error());
        cr_expect_null(strchr(fl_error(), '\n'), "%s: more than one line: %s", files[i], fl_error());
        fl_config_free(c);
    }
}
#endif

#ifdef FL_BIN
#include <sys/wait.h>
#include <unistd.h>

/* fiberlab ndtm with a bad setting: exit status 1, one line naming the key, no --out file,
 * and nothing trained (the check comes first). */
Test(prior, ndtm_command_refuses_bad_settings_in_one_line)
{
    static const char *const cases[][2] = {
        {"ndtm.ramp_end=600", "ndtm.ramp_end"},
        {"ndtm.steps=2000", "ndtm.steps"},
        {"ndtm.target=tweedie", "ndtm.target"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[2400], ep[400], out[400], err[4096];
        snprintf(ep, sizeof ep, "%s/stderr.txt", tmp);
        snprintf(out, sizeof out, "%s/out.h5", tmp);
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' ndtm cache_dir='%s/cache' %s --out '%s' >/dev/null 2>'%s'",
                 tmp, FL_BIN, tmp, cases[i][0], out, ep);
        int st = system(cmd);
        FILE *f = fopen(ep, "r");
        size_t n = f ? fread(err, 1, sizeof err - 1, f) : 0;
        err[n] = 0;
        if (f) fclose(f);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: status %d", cases[i][0], st);
        cr_expect(strstr(err, cases[i][1]) != NULL, "%s: %s", cases[i][0], err);
        cr_expect(n > 0 && strchr(err, '\n') == err + n - 1, "%s: not one line: %s", cases[i][0], err);
        cr_expect_neq(access(out, F_OK), 0, "%s: left %s", cases[i][0], out);
    }
    char models[400];
    snprintf(models, sizeof models, "%s/cache/models", tmp);
    cr_expect_neq(access(models, F_OK), 0, "a bad setting trained something");
}
#endif
