/* The family registry and interface (trainers/family.h): a toy family defined only here
 * — a conditional Gaussian in pixel space — registers at run time, and then trains,
 * sweeps, is saved to and scored from the model store without a line elsewhere; the
 * registry's lists (model.family's choices, the schema) follow it; EMA weights are what
 * is sampled and saved. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "benchmarks/eval.h"
#include "benchmarks/sweep.h"
#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "store_fixture.h"
#include "trainers/family.h"
#include "trainers/fiber.h"

/* u | z ~ N(W z + b, diag exp(2 s)): the mean an affine map of the condition. */
static const fl_key toy_keys[] = {
    {"gauss.init_scale", FL_KEY_NUM, "0.01", 0, 10, NULL, "Scale of W's initialisation."},
    FL_KEYS_END,
};

typedef struct {
    ct_tensor *w, *b, *s;   /* (D, C), (D), (D): borrowed from the parameter set */
    int dim;
    int64_t after_steps;    /* calls of the after-step hook */
} gauss;

static int toy_checks;

static int gauss_check(const fl_config *c, int u_dim, int z_dim)
{
    toy_checks++;
    return u_dim == 3 * 28 * 28 ? 0 : fl_fail("gauss: a pixel family got %d dimensions", u_dim);
}

static void *gauss_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    gauss *m = calloc(1, sizeof *m);
    m->dim = u_dim;
    double scale = fl_cfg_num(c, "gauss.init_scale");
    m->w = ct_params_add(ps, "gauss.w", ct_muls(ct_randn(CT_SHAPE(u_dim, z_dim), ct_float_dtype(), g), scale));
    m->b = ct_params_add(ps, "gauss.b", ct_full(CT_SHAPE(u_dim), 0.5, ct_float_dtype()));
    m->s = ct_params_add(ps, "gauss.s", ct_full(CT_SHAPE(u_dim), -1.0, ct_float_dtype()));
    if (!m->w || !m->b || !m->s) {
        free(m);
        return NULL;
    }
    return m;
}

static void gauss_destroy(void *model) { free(model); }

static ct_tensor *gauss_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                             fl_terms *terms)
{
    gauss *m = model;
    ct_scope *sc = ct_scope_begin();
    ct_tensor *mean = ct_linear(z, m->w, m->b);                                /* (B, D) */
    ct_tensor *e = ct_mul(ct_sub(u, mean), ct_exp(ct_neg(m->s)));             /* (B, D) */
    ct_tensor *nll = ct_add(ct_muls(ct_sum_dim(ct_square(e), 1, false), 0.5), ct_sum(m->s)); /* (B,) */
    ct_tensor *loss = ct_scope_keep(sc, ct_mean(nll));
    ct_scope_end(sc);
    if (loss && terms) fl_terms_add(terms, "nll", ct_item(loss));
    return loss;
}

static ct_tensor *gauss_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    gauss *m = model;
    ct_scope *sc = ct_scope_begin();
    ct_tensor *mean = ct_linear(z, m->w, m->b);                                /* (B, D) */
    ct_tensor *e = ct_muls(ct_randn_like(mean, g), o->temperature);
    ct_tensor *u = ct_scope_keep(sc, ct_clamp(ct_add(mean, ct_mul(e, ct_exp(m->s))), 0, 1));
    ct_scope_end(sc);
    return u;
}

static int gauss_after_step(void *model, int64_t step, int64_t total)
{
    gauss *m = model;
    m->after_steps++;
    return step >= 1 && step <= total ? 0 : fl_fail("gauss: step %lld of %lld", (long long)step, (long long)total);
}

static const fl_family toy_family = {
    .name = "gauss",
    .summary = "conditional Gaussian in pixel space (a test's toy)",
    .keys = toy_keys,
    .space = FL_SPACE_PIXELS,
    .check = gauss_check,
    .create = gauss_create,
    .destroy = gauss_destroy,
    .loss = gauss_loss,
    .sample = gauss_sample,
    .after_step = gauss_after_step,
};

static void setup(void)
{
    make_tmp();
    if (!fl_family_find("gauss")) cr_assert_eq(fl_family_register(&toy_family), 0, "%s", fl_error());
}

TestSuite(family, .init = setup, .fini = remove_tmp, .timeout = 600);

Test(family, a_registered_family_joins_the_lists_that_derive_from_the_registry)
{
    cr_expect_eq(fl_family_find("gauss"), &toy_family);
    cr_expect(strstr(fl_family_names(), "nf") && strstr(fl_family_names(), "gauss"), "%s", fl_family_names());
    cr_expect_str_eq(fl_config_choices("sweep.families"), fl_family_names());
    fl_config *c = fl_config_default();
    cr_expect_eq(fl_config_override(c, "model.family=gauss"), 0, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "gauss.init_scale=0.5"), 0, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "sweep.families=nf,gauss"), 0, "%s", fl_error());
    cr_expect_eq(fl_config_role("gauss.init_scale"), FL_ROLE_MODEL);
    cr_expect_neq(fl_config_override(c, "model.family=gan"), 0);
    cr_expect(strstr(fl_error(), "gauss"), "the message does not list the families: %s", fl_error());
    cr_expect_neq(fl_family_register(&toy_family), 0, "registered twice");
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    fl_config_write_doc(f);
    fclose(f);
    cr_expect(strstr(doc, "`gauss.init_scale`"), "config --doc lacks the family's keys");
    free(doc);
    /* every built-in family is in the registry with its own section */
    for (int i = 0; i < fl_family_count(); i++) {
        const fl_family *fam = fl_family_at(i);
        cr_expect_eq(fl_family_find(fam->name), fam);
        for (const fl_key *k = fam->keys; k && k->key; k++)
            cr_expect(strncmp(k->key, fam->name, strlen(fam->name)) == 0 && k->key[strlen(fam->name)] == '.',
                      "%s: key %s outside its section", fam->name, k->key);
    }
    fl_config_free(c);
}

/* A small color-MNIST setting (synthetic digits) and the toy family. */
static fl_config *toy_config(const char *const *extra)
{
    static const char *const base[] = {
        "model.family=gauss", "sweep.families=gauss", "sweep.lambdas=0", "sweep.name=toy",
        "subject.widths=[8, 16]", "subject.dim=8", "subject.steps=40", "subject.batch_size=32",
        "vae.widths=[8, 16]", "vae.hidden=32", "vae.latent=6", "vae.steps=20", "vae.batch_size=32",
        "train.steps=60", "train.batch_size=32", "train.lr=1e-2", "train.val_every=20",
        "train.checkpoint_every=20", "eval.n_targets=10", "eval.samples_per_target=3",
        "eval.n_aug=2", "eval.n_random=2", "eval.store_samples=2", "sweep.grid_targets=2",
        "threads=1", NULL};
    fl_config *c = idx_config("cache", base);
    char out_dir[400];
    snprintf(out_dir, sizeof out_dir, "out_dir=%s/results", tmp);
    cr_assert_eq(fl_config_override(c, out_dir), 0, "%s", fl_error());
    for (; extra && *extra; extra++) cr_assert_eq(fl_config_override(c, *extra), 0, "%s", fl_error());
    return c;
}

Test(family, a_toy_family_trains_sweeps_and_is_scored_from_the_model_store)
{
    put_source(200, 40, 3);
    fl_config *c = toy_config(NULL);
    toy_checks = 0;
    fl_sweep_summary sum;
    cr_assert_eq(fl_sweep_run(c, &sum), 0, "%s", fl_error());
    cr_expect_eq(sum.runs_trained, 1);
    cr_expect_gt(toy_checks, 0, "the family's check was not called before the work");
    char model[4300], run[4300];
    snprintf(model, sizeof model, "%s/models/gauss_lam0_seed0.h5", sum.dir);
    snprintf(run, sizeof run, "%s/runs/gauss_lam0_seed0.h5", sum.dir);
    cr_assert_eq(access(model, R_OK), 0, "no saved model %s", model);
    cr_assert_eq(access(run, R_OK), 0, "no run file %s", run);

    /* the saved model: its settings, its training result and its samples */
    fl_config *saved = NULL;
    fl_train_result tr;
    fl_fiber *m = fl_fiber_open_saved(model, &saved, &tr);
    cr_assert_not_null(m, "%s", fl_error());
    cr_expect_str_eq(fl_fiber_family(m)->name, "gauss");
    cr_expect_eq(tr.steps_done, 60);
    char k1[17], k2[17];
    fl_config_hash_role(saved, FL_ROLE_MODEL, k1);
    fl_config_hash_role(c, FL_ROLE_MODEL, k2);
    cr_expect_str_eq(k1, k2, "the saved settings differ from the run's");
    fl_train_result_free(&tr);

    /* evaluation with other settings, from the store alone: as fiberlab eval --model */
    fl_dataset *ds;
    fl_subject *subj;
    cr_assert_eq(fl_dataset_open(saved, &ds), 0, "%s", fl_error());
    cr_assert_eq(fl_subject_open(saved, NULL, &subj), 0, "%s", fl_error());   /* cached */
    cr_assert_eq(fl_config_override(saved, "eval.n_targets=5"), 0);
    fl_sample_opts so = fl_sample_opts_eval(saved);
    fl_sampler smp;
    fl_fiber_sampler(m, NULL, &so, &smp);   /* pixels: no VAE */
    fl_eval_result er;
    cr_assert_eq(fl_evaluate(saved, ds, subj, &smp, &er), 0, "%s", fl_error());
    cr_expect_eq(er.n_samples, 5 * 3);
    cr_expect(isfinite(er.fiber_mean) && er.fiber_mean > 0, "fiber loss %g", er.fiber_mean);
    fl_eval_result_free(&er);
    fl_sampler_free(&smp);
    fl_subject_free(subj);
    fl_dataset_free(ds);
    fl_fiber_free(m);
    fl_config_free(saved);

    /* a rerun with other evaluation settings trains nothing */
    fl_config *c2 = toy_config((const char *const[]){"eval.n_targets=5", NULL});
    cr_assert_eq(fl_sweep_run(c2, &sum), 0, "%s", fl_error());
    cr_expect_eq(sum.runs_trained, 0);
    cr_expect_eq(sum.runs_rescored, 1);
    fl_config_free(c2);
    /* another training setting trains again */
    fl_config *c3 = toy_config((const char *const[]){"eval.n_targets=5", "gauss.init_scale=0.1", NULL});
    cr_assert_eq(fl_sweep_run(c3, &sum), 0, "%s", fl_error());
    cr_expect_eq(sum.runs_trained, 1);
    fl_config_free(c3);
    fl_config_free(c);
}

Test(family, ema_weights_are_the_ones_sampled_and_saved)
{
    fl_config *c = toy_config((const char *const[]){"train.ema_decay=0.9", NULL});
    /* pairs without a dataset: images of two classes */
    const int n = 64, d = 2, D = 3 * 28 * 28;
    ct_scope *sc = ct_scope_begin();
    ct_gen *g = ct_gen_new(1);
    fl_latents train = {ct_unscope(ct_rand(CT_SHAPE(n, D), CT_F32, g)),
                        ct_unscope(ct_randn(CT_SHAPE(n, d), CT_F32, g))};
    ct_gen_free(g);
    fl_fiber *m = fl_fiber_new(c, &train);
    cr_assert_not_null(m, "%s", fl_error());
    fl_subject *subj = fl_subject_custom("none", d, NULL, NULL, NULL);
    fl_fiber_train_opts fo;
    fl_fiber_train_opts_from_config(&fo, c);
    fl_train_result tr;
    cr_assert_eq(fl_fiber_train(m, c, &fo, NULL, subj, &train, NULL, NULL, &tr), 0, "%s", fl_error());
    cr_expect_eq(tr.steps_done, 60);
    ct_params *ema = fl_fiber_ema(m), *ps = fl_fiber_params(m);
    cr_assert_not_null(ema, "no EMA weights after training with train.ema_decay");
    ct_tensor *w_live = ct_clone(ct_params_find(ps, "gauss.w"));
    double diff = ct_max_abs_diff(ct_params_find(ema, "gauss.w"), w_live);
    cr_expect_gt(diff, 0, "the average equals the last weights");
    char path[600];
    snprintf(path, sizeof path, "%s/ema_model.h5", tmp);
    cr_assert_eq(fl_fiber_save(m, c, &tr, path), 0, "%s", fl_error());
    fl_config *saved;
    fl_fiber *m2 = fl_fiber_open_saved(path, &saved, NULL);
    cr_assert_not_null(m2, "%s", fl_error());
    cr_expect_eq(ct_max_abs_diff(ct_params_find(fl_fiber_params(m2), "gauss.w"),
                                 ct_params_find(ema, "gauss.w")), 0.0, "the saved weights are not the EMA ones");
    cr_assert_eq(fl_fiber_use_ema(m), 0);
    cr_expect_eq(ct_max_abs_diff(ct_params_find(ps, "gauss.w"), ct_params_find(ema, "gauss.w")), 0.0);
    ct_scope_end(sc);
    fl_train_result_free(&tr);
    fl_fiber_free(m2);
    fl_config_free(saved);
    fl_subject_free(subj);
    fl_fiber_free(m);
    fl_latents_free(&train);
    fl_config_free(c);
}
