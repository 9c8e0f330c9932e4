/* Subject models (trainers/subject.h): a tiny decolorize_ae trains on the shared loop,
 * lands in the cache under the data + subject hash (not the general seed) and is
 * reused bit for bit; it cannot tell recolorings apart and is differentiable in x
 * with its own parameters frozen; more training lowers its reconstruction error; the
 * classifier learns real digits; a TorchScript subject computes what PyTorch does. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"

#include "ctorch/ct.h"
#include "datasets/batch.h"
#include "datasets/store.h"
#include "trainers/subject.h"

TestSuite(subject, .init = make_tmp, .fini = remove_tmp, .timeout = 300);

/* A tiny autoencoder on the synthetic source (160 train, 40 test images). */
static fl_config *tiny_config(const char *const *extra)
{
    static const char *const base[] = {"subject.widths=[8, 16]", "subject.dim=16", "subject.steps=40",
                                       "subject.batch_size=32", "subject.lr=3e-3", "threads=1", NULL};
    fl_config *c = idx_config("cache", base);
    for (; extra && *extra; extra++) cr_assert_eq(fl_config_override(c, *extra), 0, "%s", fl_error());
    return c;
}

static fl_dataset *open_data(const fl_config *c)
{
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    return ds;
}

Test(subject, decolorize_ae_trains_into_the_cache_and_is_reused)
{
    put_source(160, 40, 1);
    fl_config *c = tiny_config(NULL);
    fl_dataset *ds = open_data(c);
    fl_subject *s;
    cr_assert_eq(fl_subject_open(c, ds, &s), 0, "%s", fl_error());
    const fl_subject_report *r = fl_subject_report_of(s);
    cr_expect(r->trained);
    cr_expect_eq(r->steps, 40);
    cr_expect_eq(fl_subject_dim(s), 16);
    cr_expect(isfinite(r->recon_rmse) && r->recon_rmse > 0 && r->recon_rmse < 0.5, "RMSE %g", r->recon_rmse);
    cr_expect(isfinite(r->recon_fiber) && isfinite(r->other_fiber) && r->other_fiber > 0);
    cr_expect(isnan(r->accuracy));
    char path[4096];
    cr_assert_eq(fl_subject_cache_path(c, path, sizeof path), 0);
    cr_expect_str_eq(fl_subject_path(s), path);
    cr_expect(strstr(path, "/models/subject-decolorize_ae-") != NULL, "path %s", path);
    cr_expect_eq(access(path, R_OK), 0, "no cached subject at %s", path);
    char train_ckpt[4200];
    snprintf(train_ckpt, sizeof train_ckpt, "%s.train", path);
    cr_expect_neq(access(train_ckpt, F_OK), 0, "the training checkpoint was left behind");

    ct_scope *sc = ct_scope_begin();
    fl_batch b;
    cr_assert_eq(fl_dataset_slice(ds, FL_TEST, 0, 8, &b), 0, "%s", fl_error());
    ct_tensor *z1 = fl_subject_forward(s, b.colored);                  /* (8, 16) */
    cr_assert_not_null(z1, "%s", ct_last_error());
    double rmse = r->recon_rmse;

    /* the general seed does not enter the hash; subject.seed does */
    fl_config *c2 = tiny_config((const char *const[]){"seed=7", NULL});
    char path2[4096];
    cr_assert_eq(fl_subject_cache_path(c2, path2, sizeof path2), 0);
    cr_expect_str_eq(path2, path, "the general seed changed the subject's hash");
    fl_config *c3 = tiny_config((const char *const[]){"subject.seed=7", NULL});
    char path3[4096];
    cr_assert_eq(fl_subject_cache_path(c3, path3, sizeof path3), 0);
    cr_expect_str_neq(path3, path);
    fl_config_free(c3);
    fl_config_free(c2);
    /* nor do keys its training does not read */
    const char *same[] = {"train.lambda=3", "train.steps=7", "train.lr=0.5", "eval.temperature=0.5",
                          "vae.latent=9", "threads=1"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        fl_config *c4 = tiny_config((const char *const[]){same[i], NULL});
        char path4[4096];
        cr_assert_eq(fl_subject_cache_path(c4, path4, sizeof path4), 0);
        cr_expect_str_eq(path4, path, "%s changed the subject's key", same[i]);
        fl_config_free(c4);
    }
    /* but the train.* fallbacks its loop reads and the dataset's seed do */
    const char *other[] = {"train.schedule=constant", "train.pct_start=0.5", "train.div_factor=10",
                           "train.final_div_factor=100", "train.optimizer=adamw",
                           "train.weight_decay=0.01", "train.clip_grad=1", "data.seed=3",
                           "data.recolor_each_epoch=true"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        fl_config *c5 = tiny_config((const char *const[]){other[i], NULL});
        char path5[4096];
        cr_assert_eq(fl_subject_cache_path(c5, path5, sizeof path5), 0);
        cr_expect_str_neq(path5, path, "%s did not change the subject's key", other[i]);
        fl_config_free(c5);
    }

    fl_subject *s2;
    cr_assert_eq(fl_subject_open(c, NULL, &s2), 0, "%s", fl_error());   /* no dataset needed */
    cr_expect_not(fl_subject_report_of(s2)->trained);
    cr_expect_eq(fl_subject_report_of(s2)->recon_rmse, rmse);
    ct_tensor *z2 = fl_subject_forward(s2, b.colored);
    cr_expect_eq(ct_max_abs_diff(z1, z2), 0.0, "the reloaded subject differs");
    ct_scope_end(sc);
    fl_subject_free(s2);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(subject, decolorize_ae_cannot_tell_recolorings_apart_and_is_differentiable_in_x)
{
    put_source(160, 40, 2);
    fl_config *c = tiny_config(NULL);
    fl_dataset *ds = open_data(c);
    long handles = ct_live_handles();
    fl_subject *s;
    cr_assert_eq(fl_subject_open(c, ds, &s), 0, "%s", fl_error());
    ct_scope *sc = ct_scope_begin();
    fl_batch b;
    cr_assert_eq(fl_dataset_slice(ds, FL_TEST, 0, 6, &b), 0);
    float bg[18], fg[18];
    for (int i = 0; i < 18; i++) {
        bg[i] = (float)((i * 0.137 + 0.05) - floor(i * 0.137 + 0.05));
        fg[i] = (float)fl_color_fg(bg[i]);
    }
    ct_tensor *x2 = fl_colorize(b.gray, ct_from_data(bg, CT_SHAPE(6, 3), CT_F32),
                                ct_from_data(fg, CT_SHAPE(6, 3), CT_F32));        /* (6, 3, 28, 28) */
    ct_tensor *z1 = fl_subject_forward(s, b.colored), *z2 = fl_subject_forward(s, x2);
    double scale = ct_item(ct_max_all(ct_abs(z1)));
    double d = ct_max_abs_diff(z1, z2);
    cr_expect(d < 1e-5 * fmax(scale, 1), "recolored digits move z by %g (|z| up to %g)", d, scale);

    ct_tensor *x = ct_clone(b.colored);
    ct_set_requires_grad(x, true);
    ct_tensor *z = fl_subject_forward(s, x);
    cr_assert_eq(ct_backward(ct_sum(ct_square(z)), false), CT_OK, "%s", ct_last_error());
    ct_tensor *gx = ct_grad_of(x);
    cr_assert_not_null(gx, "no gradient reached x");
    cr_expect_gt(ct_item(ct_norm(gx)), 0.0);
    cr_expect(isfinite(ct_item(ct_norm(gx))));
    ct_scope_end(sc);
    fl_subject_free(s);
    cr_expect_eq(ct_live_handles(), handles, "%ld handles leaked by training and using a subject",
                 ct_live_handles() - handles);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(subject, more_training_lowers_the_reconstruction_error)
{
    put_source(160, 40, 3);
    fl_config *few = tiny_config((const char *const[]){"subject.steps=3", NULL});
    fl_config *more = tiny_config((const char *const[]){"subject.steps=150", NULL});
    fl_dataset *ds = open_data(few);
    fl_subject *a, *b;
    cr_assert_eq(fl_subject_open(few, ds, &a), 0, "%s", fl_error());
    cr_assert_eq(fl_subject_open(more, ds, &b), 0, "%s", fl_error());
    double ra = fl_subject_report_of(a)->recon_rmse, rb = fl_subject_report_of(b)->recon_rmse;
    cr_expect_lt(rb, 0.8 * ra, "RMSE after 150 steps %g, after 3 steps %g", rb, ra);
    cr_expect_str_neq(fl_subject_path(a), fl_subject_path(b));
    fl_subject_free(a);
    fl_subject_free(b);
    fl_dataset_free(ds);
    fl_config_free(few);
    fl_config_free(more);
}

Test(subject, classifier_learns_real_digits)
{
    if (access(NPM_DIR "/0.json", R_OK) != 0) cr_skip_test("the npm digits are not fetched (scripts/setup.sh)");
    static const char *const o[] = {"data.path=" NPM_DIR, "data.n_train=2000", "data.n_test=400",
                                    "subject.kind=classifier", "subject.widths=[8, 16]",
                                    "subject.steps=150", "subject.batch_size=64", "subject.lr=5e-3",
                                    "threads=1", NULL};
    fl_config *c = test_config("cache", o);
    fl_dataset *ds = open_data(c);
    fl_subject *s;
    cr_assert_eq(fl_subject_open(c, ds, &s), 0, "%s", fl_error());
    const fl_subject_report *r = fl_subject_report_of(s);
    cr_expect_eq(fl_subject_dim(s), 10);
    cr_expect_gt(r->accuracy, 0.75, "test accuracy %g after 150 steps", r->accuracy);
    cr_expect(isnan(r->recon_rmse));
    char path[4096];
    fl_subject_cache_path(c, path, sizeof path);
    cr_expect(strstr(path, "subject-classifier-") != NULL);
    ct_scope *sc = ct_scope_begin();
    cr_expect_null(fl_subject_decode(s, ct_zeros(CT_SHAPE(1, 10), CT_F32)));
    ct_scope_end(sc);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

#ifdef CT_FIXTURE_DIR
Test(subject, torchscript_subject_computes_what_pytorch_does)
{
    static const char *const o[] = {"subject.kind=torchscript",
                                    "subject.path=" CT_FIXTURE_DIR "/subject_scripted.pt", NULL};
    fl_config *c = test_config("cache", o);
    fl_subject *s;
    cr_assert_eq(fl_subject_open(c, NULL, &s), 0, "%s", fl_error());
    cr_expect_eq(fl_subject_dim(s), 10);
    cr_expect_eq(fl_subject_kind_of(s), FL_SUBJECT_TORCHSCRIPT);
    ct_archive *a = ct_archive_read(CT_FIXTURE_DIR "/subject_io.h5");
    cr_assert_not_null(a, "%s", ct_last_error());
    ct_scope *sc = ct_scope_begin();
    ct_tensor *x = ct_archive_get(a, "x"), *y = ct_archive_get(a, "y");
    ct_tensor *z = fl_subject_forward(s, x);
    cr_assert_not_null(z, "%s", ct_last_error());
    double d = ct_max_abs_diff(z, y);
    cr_expect(d < 1e-5, "TorchScript subject differs from PyTorch by %g", d);
    /* gradients reach the input */
    ct_tensor *xg = ct_clone(x);
    ct_set_requires_grad(xg, true);
    cr_assert_eq(ct_backward(ct_sum(fl_subject_forward(s, xg)), false), CT_OK, "%s", ct_last_error());
    cr_expect_not_null(ct_grad_of(xg));
    ct_scope_end(sc);
    ct_archive_free(a);
    fl_subject_free(s);
    fl_config_free(c);
}
#endif

Test(subject, torchscript_errors_name_the_key_and_file)
{
    fl_config *c = test_config("cache", (const char *const[]){"subject.kind=torchscript", NULL});
    fl_subject *s = (fl_subject *)1;
    cr_expect_eq(fl_subject_open(c, NULL, &s), -1);
    cr_expect_null(s);
    cr_expect(strstr(fl_error(), "subject.path") != NULL, "message: %s", fl_error());
    cr_assert_eq(fl_config_override(c, "subject.path=/nonexistent/model.pt"), 0);
    cr_expect_eq(fl_subject_open(c, NULL, &s), -1);
    cr_expect(strstr(fl_error(), "/nonexistent/model.pt") != NULL, "message: %s", fl_error());
    char p[400];
    snprintf(p, sizeof p, "%s/junk.pt", tmp);
    FILE *f = fopen(p, "w");
    fputs("not a TorchScript archive", f);
    fclose(f);
    char kv[500];
    snprintf(kv, sizeof kv, "subject.path=%s", p);
    cr_assert_eq(fl_config_override(c, kv), 0);
    cr_expect_eq(fl_subject_open(c, NULL, &s), -1);
    cr_expect(strstr(fl_error(), "junk.pt") != NULL, "message: %s", fl_error());
    fl_config_free(c);
}

Test(subject, an_untrained_subject_without_data_is_an_error)
{
    fl_config *c = tiny_config(NULL);
    fl_subject *s;
    cr_expect_eq(fl_subject_open(c, NULL, &s), -1);
    cr_expect(strstr(fl_error(), "not trained") != NULL, "message: %s", fl_error());
    fl_config_free(c);
}
