/* The pixel prior (trainers/prior.h, prior.space = pixel): a tiny UNet trains into the
 * cache as prior-pixel-<key>.ckpt with its DDPM loss falling, reports its colors, is
 * reused, and is seen through the prior interface (ε on flat states, decode to [0, 1]);
 * a bad prior.space or UNet size is refused naming the key. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "store_fixture.h"
#include "trainers/prior.h"

TestSuite(prior_pixel, .init = make_tmp, .fini = remove_tmp, .timeout = 300);

/* A tiny pixel prior: two levels of 8 channels, few steps, a short report. */
static fl_config *pixel_config(const char *steps)
{
    const char *const base[] = {"prior.space=pixel", "prior.unet.widths=[8, 8]", "prior.unet.groups=4",
                                "prior.unet.time_embed=8", "prior.unet.batch_size=16",
                                "prior.unet.lr=2e-3", "prior.ema_decay=0", "threads=1",
                                "prior.report_samples=32", "prior.report_steps=5", steps, NULL};
    return idx_config("cache", base);
}

/* DDPM's loss of p on the first 64 test images, with fixed t and noise. */
static double test_loss(const fl_prior *p, fl_dataset *ds)
{
    ct_scope *s = ct_scope_begin();
    int64_t n = fl_dataset_count(ds, FL_TEST);
    n = n < 64 ? n : 64;
    ct_tensor *img = ct_from_data(fl_dataset_colored(ds, FL_TEST), CT_SHAPE(n, 3, 28, 28), CT_F32);
    ct_gen *g = ct_gen_new(99);
    bool prev = ct_set_grad_enabled(false);
    double loss = ct_item(fl_prior_ddpm_loss(p, ct_to_dtype(img, ct_float_dtype()), g));
    ct_set_grad_enabled(prev);
    ct_gen_free(g);
    ct_scope_end(s);
    return loss;
}

Test(prior_pixel, trains_with_a_falling_loss_into_the_cache_and_is_reused)
{
    put_source(160, 64, 1);
    fl_config *c1 = pixel_config("prior.unet.steps=2"), *c = pixel_config("prior.unet.steps=150");
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    char path[4096], path1[4096];
    cr_assert_eq(fl_prior_cache_path(c, path, sizeof path), 0, "%s", fl_error());
    cr_assert_eq(fl_prior_cache_path(c1, path1, sizeof path1), 0, "%s", fl_error());
    cr_expect(strstr(path, "/models/prior-pixel-") != NULL, "%s", path);
    cr_expect_str_neq(path, path1, "the steps are part of the key");
    /* not trained and no data: one line naming the file */
    fl_prior *p = NULL;
    cr_expect_neq(fl_prior_open(c, NULL, NULL, &p), 0);
    cr_expect(strstr(fl_error(), path) != NULL, "%s", fl_error());
    cr_expect_null(strchr(fl_error(), '\n'), "%s", fl_error());
    /* no VAE needed */
    fl_prior *p1 = NULL;
    cr_assert_eq(fl_prior_open(c1, ds, NULL, &p1), 0, "%s", fl_error());
    cr_assert_eq(fl_prior_open(c, ds, NULL, &p), 0, "%s", fl_error());
    const fl_prior_report *r = fl_prior_report_of(p);
    cr_expect(r->trained);
    cr_expect_eq(r->steps, 150);
    cr_expect_str_eq(fl_prior_path(p), path);
    cr_expect(isfinite(r->color.kl_mean) && r->color.kl_mean > 0, "KL %g", r->color.kl_mean);
    cr_expect(isfinite(r->color.w1_mean) && r->color.w1_mean > 0, "W1 %g", r->color.w1_mean);
    /* the loss fell: at 2 steps the zero-initialised UNet gives ε̂ ≈ √(1 − ᾱ) x_t (the
     * v-parametrisation), whose loss is the mean of ᾱ_t v² (≈ 0.24 on these images) */
    double l1 = test_loss(p1, ds), l = test_loss(p, ds);
    cr_log_info("DDPM test loss after 2 steps %.4f, after 150 steps %.4f", l1, l);
    cr_expect_lt(l, 0.6 * l1, "after 150 steps %g, after 2 %g", l, l1);
    /* the interface: pixel space, flat states of 3·28·28, samples decode into [0, 1] */
    cr_expect_eq(fl_prior_space_of(p), FL_PRIOR_PIXEL);
    cr_expect_eq(fl_prior_dim(p), 3 * 28 * 28);
    cr_expect_eq(fl_prior_T(p), 1000);
    cr_expect_eq(fl_prior_clamp(p), 1.0);
    cr_expect_float_eq(fl_prior_abar(p)[1], 1 - 1e-4, 1e-12);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(1);
    ct_tensor *x = ct_randn(CT_SHAPE(4, 3 * 28 * 28), ct_float_dtype(), g);
    ct_tensor *eps = fl_prior_eps(p, x, 500);
    cr_assert_not_null(eps, "%s", ct_last_error());
    cr_expect(ct_ndim(eps) == 2 && ct_size(eps, 0) == 4 && ct_size(eps, 1) == 3 * 28 * 28);
    ct_tensor *img = fl_prior_decode(p, fl_prior_sample(p, 5, 10, 0.25, g));
    cr_assert_not_null(img, "%s", ct_last_error());
    cr_expect(ct_size(img, 0) == 5 && ct_size(img, 1) == 3 && ct_size(img, 2) == 28);
    cr_expect_geq(ct_item(ct_min_all(img)), 0.0);
    cr_expect_leq(ct_item(ct_max_all(img)), 1.0);
    ct_gen_free(g);
    ct_scope_end(s);
    /* reused: the same report, no training, no data needed */
    fl_prior *p2 = NULL;
    cr_assert_eq(fl_prior_open(c, NULL, NULL, &p2), 0, "%s", fl_error());
    cr_expect_not(fl_prior_report_of(p2)->trained);
    cr_expect_eq(fl_prior_report_of(p2)->steps, 150);
    cr_expect_eq(fl_prior_report_of(p2)->color.kl_mean, r->color.kl_mean);
    cr_expect_eq(test_loss(p2, ds), l, "the reused weights are the trained ones");
    fl_prior_free(p2);
    fl_prior_free(p1);
    fl_prior_free(p);
    fl_dataset_free(ds);
    fl_config_free(c1);
    fl_config_free(c);
}

/* fl_prior_check and fl_prior_open refuse c in one line naming key. */
static void expect_refused(const char *override, const char *key)
{
    fl_config *c = pixel_config(override);
    cr_expect_neq(fl_prior_check(c), 0, "%s passed the check", override);
    cr_expect(strstr(fl_error(), key) != NULL, "%s: '%s' should name %s", override, fl_error(), key);
    fl_prior *p = NULL;
    cr_expect_neq(fl_prior_open(c, NULL, NULL, &p), 0, "%s was accepted", override);
    cr_expect_null(p);
    cr_expect(strstr(fl_error(), key) != NULL, "%s: '%s' should name %s", override, fl_error(), key);
    cr_expect_null(strchr(fl_error(), '\n'), "%s", fl_error());
    fl_config_free(c);
}

Test(prior_pixel, refuses_a_bad_space_or_unet_size_naming_the_key)
{
    fl_config *c = fl_config_default();
    cr_expect_neq(fl_config_override(c, "prior.space=pixels"), 0);
    cr_expect(strstr(fl_error(), "prior.space") != NULL, "%s", fl_error());
    cr_expect_neq(fl_config_override(c, "prior.unet.blocks=0"), 0);
    cr_expect(strstr(fl_error(), "prior.unet.blocks") != NULL, "%s", fl_error());
    fl_config_free(c);
    expect_refused("prior.unet.widths=[8, 8, 8, 8]", "prior.unet.widths");  /* 28 → 3.5 */
    expect_refused("prior.unet.widths=[8, 6]", "prior.unet.groups");        /* 6 % 4 */
    expect_refused("prior.unet.time_embed=7", "prior.unet.time_embed");
    /* the latent prior does not read them */
    fl_config *ok = pixel_config("prior.unet.time_embed=7");
    cr_assert_eq(fl_config_override(ok, "prior.space=latent"), 0);
    cr_expect_eq(fl_prior_check(ok), 0, "%s", fl_error());
    fl_config_free(ok);
}
