/* The VAE (trainers/vae.h): a tiny one trains into the cache and is reused bit for bit;
 * its encoder means are standardized on the training set; decode is differentiable in
 * u with the VAE frozen and gives images in [0, 1]; more training lowers the error. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"

#include "ctorch/ct.h"
#include "datasets/batch.h"
#include "datasets/store.h"
#include "trainers/vae.h"

TestSuite(vae, .init = make_tmp, .fini = remove_tmp, .timeout = 300);

static fl_config *tiny_config(const char *const *extra)
{
    static const char *const base[] = {"vae.widths=[8, 16]", "vae.latent=12", "vae.hidden=32",
                                       "vae.steps=40", "vae.batch_size=32", "threads=1", NULL};
    fl_config *c = idx_config("cache", base);
    for (; extra && *extra; extra++) cr_assert_eq(fl_config_override(c, *extra), 0, "%s", fl_error());
    return c;
}

Test(vae, trains_into_the_cache_and_is_reused)
{
    put_source(160, 40, 1);
    fl_config *c = tiny_config(NULL);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_vae *v;
    cr_assert_eq(fl_vae_open(c, ds, &v), 0, "%s", fl_error());
    const fl_vae_report *r = fl_vae_report_of(v);
    cr_expect(r->trained);
    cr_expect_eq(fl_vae_dim(v), 12);
    cr_expect(isfinite(r->recon_rmse) && r->recon_rmse > 0 && r->recon_rmse < 0.5, "RMSE %g", r->recon_rmse);
    cr_expect(isfinite(r->kl) && r->kl >= 0, "KL %g", r->kl);
    char path[4096];
    cr_assert_eq(fl_vae_cache_path(c, path, sizeof path), 0);
    cr_expect_str_eq(fl_vae_path(v), path);
    cr_expect(strstr(path, "/models/vae-") != NULL);
    cr_expect_eq(access(path, R_OK), 0);

    ct_scope *sc = ct_scope_begin();
    fl_batch b;
    cr_assert_eq(fl_dataset_slice(ds, FL_TEST, 0, 5, &b), 0);
    ct_tensor *u1 = fl_vae_encode(v, b.colored);                             /* (5, 12) */
    cr_assert_not_null(u1, "%s", ct_last_error());
    ct_tensor *x1 = fl_vae_decode(v, u1);                                    /* (5, 3, 28, 28) */
    cr_assert_not_null(x1, "%s", ct_last_error());
    cr_expect_eq(ct_max_abs_diff(x1, fl_vae_reconstruct(v, b.colored)), 0.0);

    fl_config *c2 = tiny_config((const char *const[]){"seed=0", "subject.dim=7", NULL});
    fl_vae *v2;
    cr_assert_eq(fl_vae_open(c2, NULL, &v2), 0, "%s", fl_error());
    cr_expect_not(fl_vae_report_of(v2)->trained, "a subject key retrained the VAE");
    cr_expect_eq(fl_vae_report_of(v2)->recon_rmse, r->recon_rmse);
    cr_expect_eq(ct_max_abs_diff(u1, fl_vae_encode(v2, b.colored)), 0.0);
    cr_expect_eq(ct_max_abs_diff(x1, fl_vae_decode(v2, u1)), 0.0);
    ct_scope_end(sc);
    fl_vae_free(v2);
    fl_config_free(c2);
    /* the train.* fallbacks its loop reads and the dataset's seed are in its key */
    const char *other[] = {"train.schedule=constant", "train.clip_grad=1", "train.optimizer=adamw",
                           "data.seed=5", "vae.seed=1"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        fl_config *c3 = tiny_config((const char *const[]){other[i], NULL});
        char p3[4096];
        cr_assert_eq(fl_vae_cache_path(c3, p3, sizeof p3), 0);
        cr_expect_str_neq(p3, path, "%s did not change the VAE's key", other[i]);
        fl_config_free(c3);
    }
    fl_vae_free(v);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(vae, latents_are_standardized_and_decode_is_differentiable_in_u)
{
    put_source(160, 40, 2);
    fl_config *c = tiny_config(NULL);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    long handles = ct_live_handles();
    fl_vae *v;
    cr_assert_eq(fl_vae_open(c, ds, &v), 0, "%s", fl_error());
    ct_scope *sc = ct_scope_begin();
    fl_batch tr;
    cr_assert_eq(fl_dataset_slice(ds, FL_TRAIN, 0, fl_dataset_count(ds, FL_TRAIN), &tr), 0);
    ct_tensor *u = fl_vae_encode_all(v, tr.colored, 64);                     /* (160, 12) */
    cr_assert_not_null(u, "%s", ct_last_error());
    cr_assert_eq(ct_size(u, 0), 160);
    double m = ct_item(ct_max_all(ct_abs(ct_mean_dim(u, 0, false))));
    double s = ct_item(ct_max_all(ct_abs(ct_adds(ct_std_dim(u, 0, false, false), -1.0))));
    cr_expect(m < 1e-4, "largest |mean| of a standardized latent %g", m);
    cr_expect(s < 1e-3, "largest |std − 1| of a standardized latent %g", s);

    ct_tensor *uu = ct_clone(ct_narrow(u, 0, 0, 4));
    ct_set_requires_grad(uu, true);
    ct_tensor *x = fl_vae_decode(v, uu);
    cr_assert_eq(ct_ndim(x), 4);
    cr_expect_eq(ct_size(x, 1), 3);
    cr_expect(ct_item(ct_min_all(x)) >= 0 && ct_item(ct_max_all(x)) <= 1);
    cr_assert_eq(ct_backward(ct_sum(x), false), CT_OK, "%s", ct_last_error());
    cr_expect_not_null(ct_grad_of(uu), "no gradient reached u");
    ct_tensor *gen_x = fl_vae_sample_prior(v, 6, NULL);
    cr_expect_eq(ct_size(gen_x, 0), 6);
    cr_expect(ct_item(ct_min_all(gen_x)) >= 0 && ct_item(ct_max_all(gen_x)) <= 1);
    cr_expect_eq(ct_size(fl_vae_prior_u(v, 6, NULL), 1), 12);
    ct_scope_end(sc);
    fl_vae_free(v);
    cr_expect_eq(ct_live_handles(), handles, "%ld handles leaked by training and using the VAE",
                 ct_live_handles() - handles);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(vae, more_training_lowers_the_reconstruction_error)
{
    put_source(160, 40, 3);
    fl_config *few = tiny_config((const char *const[]){"vae.steps=3", NULL});
    fl_config *more = tiny_config((const char *const[]){"vae.steps=200", "vae.lr=5e-3", NULL});
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(few, &ds), 0, "%s", fl_error());
    fl_vae *a, *b;
    cr_assert_eq(fl_vae_open(few, ds, &a), 0, "%s", fl_error());
    cr_assert_eq(fl_vae_open(more, ds, &b), 0, "%s", fl_error());
    double ra = fl_vae_report_of(a)->recon_rmse, rb = fl_vae_report_of(b)->recon_rmse;
    cr_expect_lt(rb, 0.9 * ra, "RMSE after 200 steps %g, after 3 steps %g", rb, ra);
    fl_vae_free(a);
    fl_vae_free(b);
    fl_dataset_free(ds);
    fl_config_free(few);
    fl_config_free(more);
}
