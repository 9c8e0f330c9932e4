/* The VAE (trainers/vae.h): a tiny one trains into the cache and is reused bit for bit;
 * its encoder means are standardized on the training set; decode is differentiable in
 * u with the VAE frozen and gives images in [0, 1]; more training lowers the error. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"

#include "architectures/conv.h"
#include "architectures/nn.h"
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
                           "data.seed=5", "vae.seed=1", "vae.res_blocks=1", "vae.res_layers=3",
                           "vae.input_noise=0.01", "vae.recolor=true"};
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

/* The authors' residual MLP between the convolutions and the latent: res_blocks blocks of
 * res_layers (hidden × hidden) layers in the encoder and in the decoder, nothing else
 * changes, and the networks keep their shapes. */
Test(vae, residual_blocks_add_their_layers_to_encoder_and_decoder)
{
    fl_conv_spec spec = {.channels = 3, .height = 28, .width = 28, .n_stages = 2,
                         .widths = {8, 16}, .hidden = 32, .dim = 12, .act = FL_ACT_SILU};
    int64_t numel[2];
    for (int k = 0; k < 2; k++) {
        spec.res_blocks = k ? 2 : 0;
        spec.res_layers = 3;
        ct_params *ps = ct_params_new();
        ct_gen *g = ct_gen_new(1);
        fl_conv_encoder e;
        fl_conv_decoder d;
        cr_assert_eq(fl_conv_encoder_init(&e, ps, "enc", &spec, 2, g), 0, "%s", fl_error());
        cr_assert_eq(fl_conv_decoder_init(&d, ps, "dec", &spec, g), 0, "%s", fl_error());
        numel[k] = ct_params_numel(ps);
        cr_expect_eq(ct_params_find(ps, "enc.res.h5.weight") != NULL, k == 1);
        cr_expect_eq(ct_params_find(ps, "dec.res.h5.bias") != NULL, k == 1);
        cr_expect_null(ct_params_find(ps, "enc.res.h6.weight"));
        ct_scope *sc = ct_scope_begin();
        ct_tensor *x = ct_rand(CT_SHAPE(5, 3, 28, 28), ct_float_dtype(), g);
        ct_tensor *h = fl_conv_encoder_forward(&e, x);                      /* (5, 24) */
        cr_assert_not_null(h, "%s", ct_last_error());
        cr_expect_eq(ct_size(h, 0), 5);
        cr_expect_eq(ct_size(h, 1), 24);
        ct_tensor *y = fl_conv_decoder_forward(&d, ct_narrow(h, 1, 0, 12)); /* (5, 3, 28, 28) */
        cr_assert_not_null(y, "%s", ct_last_error());
        cr_expect_eq(ct_size(y, 1), 3);
        cr_expect_eq(ct_size(y, 2), 28);
        cr_expect_eq(ct_size(y, 3), 28);
        ct_scope_end(sc);
        ct_gen_free(g);
        ct_params_free(ps);
    }
    cr_expect_eq(numel[1] - numel[0], 2 * 2 * 3 * (32 * 32 + 32), "%lld parameters added",
                 (long long)(numel[1] - numel[0]));
}

Test(vae, a_residual_stack_without_layers_is_the_identity)
{
    ct_params *ps = ct_params_new();
    fl_res_stack r;
    cr_assert_eq(fl_res_stack_init(&r, ps, "r", 16, 0, 0, FL_ACT_SILU, NULL), 0, "%s", fl_error());
    cr_expect_eq(ct_params_count(ps), 0);
    ct_scope *sc = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(4, 16), ct_float_dtype(), NULL);
    cr_expect_eq(ct_max_abs_diff(fl_res_stack_forward(&r, x), x), 0.0);
    ct_scope_end(sc);
    cr_expect_neq(fl_res_stack_init(&r, ps, "r", 16, 11, 3, FL_ACT_SILU, NULL), 0, "33 layers accepted");
    ct_params_free(ps);
}

Test(vae, bad_residual_settings_fail_naming_the_key)
{
    put_source(40, 10, 4);
    const char *bad[][3] = {{"vae.res_blocks=2", "vae.hidden=0", "vae.res_blocks"},
                            {"vae.res_blocks=11", "vae.res_layers=3", "vae.res_blocks × vae.res_layers"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fl_config *c = tiny_config((const char *const[]){bad[i][0], bad[i][1], NULL});
        fl_dataset *ds;
        cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
        fl_vae *v = NULL;
        cr_expect_neq(fl_vae_open(c, ds, &v), 0, "%s %s accepted", bad[i][0], bad[i][1]);
        cr_expect_null(v);
        cr_expect(strstr(fl_error(), bad[i][2]) != NULL, "message '%s' does not name %s", fl_error(),
                  bad[i][2]);
        fl_dataset_free(ds);
        fl_config_free(c);
    }
}

/* A VAE with residual blocks, recoloring and input noise trains like the plain one. */
Test(vae, trains_with_residual_blocks_recoloring_and_input_noise)
{
    put_source(160, 40, 5);
    fl_config *c = tiny_config((const char *const[]){"vae.res_blocks=1", "vae.recolor=true",
                                                     "vae.input_noise=0.01", "vae.steps=120", NULL});
    fl_config *plain = tiny_config((const char *const[]){"vae.res_blocks=1", "vae.input_noise=0.01",
                                                         "vae.steps=120", NULL});
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_vae *v, *w;
    cr_assert_eq(fl_vae_open(c, ds, &v), 0, "%s", fl_error());
    cr_assert_eq(fl_vae_open(plain, ds, &w), 0, "%s", fl_error());
    double r = fl_vae_report_of(v)->recon_rmse, rp = fl_vae_report_of(w)->recon_rmse;
    cr_expect(isfinite(r) && r > 0 && r < 0.5, "RMSE %g", r);
    /* the recolored batches are other images: the training differs */
    cr_expect_neq(r, rp, "recoloring changed nothing (RMSE %g)", r);
    fl_vae_free(v);
    fl_vae_free(w);
    fl_dataset_free(ds);
    fl_config_free(c);
    fl_config_free(plain);
}
