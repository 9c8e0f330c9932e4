/* The evaluation protocol (benchmarks/eval.h). Three oracle samplers pin the metrics
 * down: the exact one (the target's digit in colors from the exact law) scores a
 * fiber loss of ~0 and a small KL; one with a wrong color law keeps the fiber loss and
 * loses on KL and W1; one that returns another digit gets a high fiber loss. A
 * samples file scores like the sampler that made it; the reference lines and the HDF5
 * layout; `fiberlab eval` on malformed samples files fails cleanly. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_fixture.h"

#include "benchmarks/eval.h"
#include "core/h5.h"
#include "ctorch/ct.h"
#include "datasets/batch.h"
#include "datasets/colormnist.h"
#include "datasets/store.h"
#include "trainers/subject.h"

TestSuite(eval, .init = make_tmp, .fini = remove_tmp, .timeout = 300);

/* A subject with known numerics: decolorize, then a fixed random projection 784 -> 32
 * (so the fiber is exactly the recolorings, as for decolorize_ae). */
static ct_tensor *proj_forward(void *ctx, const ct_tensor *x)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *z = ct_matmul(ct_flatten(fl_decolorize(x), 1), (ct_tensor *)ctx);   /* (B, 32) */
    z = ct_scope_keep(s, z);
    ct_scope_end(s);
    return z;
}
static void proj_free(void *ctx) { ct_free(ctx); }
static fl_subject *projection_subject(void)
{
    ct_gen *g = ct_gen_new(42);
    ct_scope *s = ct_scope_begin();
    ct_tensor *p = ct_scope_keep(s, ct_muls(ct_randn(CT_SHAPE(784, 32), CT_F32, g), 1.0 / 28.0));
    ct_scope_end(s);
    ct_gen_free(g);
    fl_subject *subj = fl_subject_custom("projection", 32, proj_forward, p, proj_free);
    fl_subject_declare_recoloring_fiber(subj);
    return subj;
}

static fl_config *eval_config(const char *const *extra)
{
    static const char *const base[] = {"eval.n_targets=60", "eval.samples_per_target=100",
                                       "eval.store_samples=2", "threads=1", NULL};
    fl_config *c = idx_config("cache", base);
    for (; extra && *extra; extra++) cr_assert_eq(fl_config_override(c, *extra), 0, "%s", fl_error());
    return c;
}

static void run_sampler(const fl_config *c, const fl_dataset *ds, fl_subject *s, const char *name,
                        fl_eval_result *r)
{
    fl_sampler smp;
    cr_assert_eq(fl_sampler_builtin(name, c, ds, NULL, &smp), 0, "%s", fl_error());
    cr_assert_eq(fl_evaluate(c, ds, s, &smp, r), 0, "%s: %s", name, fl_error());
    fl_sampler_free(&smp);
}

Test(eval, oracle_samplers_pin_the_metrics_down)
{
    put_source(300, 80, 1);
    fl_config *c = eval_config(NULL);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_subject *s = projection_subject();
    fl_eval_result ex, wl, wd;
    run_sampler(c, ds, s, "exact", &ex);
    run_sampler(c, ds, s, "wrong-law", &wl);
    run_sampler(c, ds, s, "wrong-digit", &wd);

    cr_expect_eq(ex.n_targets, 60);
    cr_expect_eq(ex.n_samples, 6000);
    cr_expect_eq(ex.k, 100);
    /* fidelity: exact and wrong-law stay on the fiber, wrong-digit leaves it */
    cr_expect(ex.fiber_mean < 1e-4 * wd.fiber_mean, "exact: fiber loss %g (wrong digit %g)", ex.fiber_mean, wd.fiber_mean);
    cr_expect(wl.fiber_mean < 1e-4 * wd.fiber_mean, "wrong law: fiber loss %g", wl.fiber_mean);
    cr_expect_gt(wd.fiber_mean, 0.1, "wrong digit: fiber loss only %g", wd.fiber_mean);
    /* consistency: exact and wrong-digit draw from p; wrong-law does not */
    for (int k = 0; k < 3; k++) {
        cr_expect_lt(ex.color.kl[k], 0.03, "exact: KL channel %d = %g", k, ex.color.kl[k]);
        cr_expect_lt(wd.color.kl[k], 0.03, "wrong digit: KL channel %d = %g", k, wd.color.kl[k]);
        cr_expect_gt(wl.color.kl[k], 20 * ex.color.kl[k], "wrong law: KL channel %d = %g, exact %g", k,
                     wl.color.kl[k], ex.color.kl[k]);
        cr_expect_lt(ex.color.w1[k], 0.01, "exact: W1 channel %d = %g", k, ex.color.w1[k]);
        cr_expect_gt(wl.color.w1[k], 5 * ex.color.w1[k], "wrong law: W1 channel %d = %g", k, wl.color.w1[k]);
    }
    /* per target and per sample */
    for (int64_t t = 0; t < ex.n_targets; t++) {
        cr_expect_eq(ex.target_index[t], t * 80 / 60, "targets spread over the test split");
        cr_expect_gt(wd.target_loss[t], 100 * ex.target_loss[t] + 1e-6);
    }
    cr_expect_eq(ex.sample_target[250], ex.target_index[2]);
    cr_expect_eq(ex.n_stored, 200);
    /* the colors are the samples' left columns, from the exact law's range */
    for (int64_t j = 0; j < ex.n_samples * 3; j++) cr_assert(ex.colors[j] >= 0 && ex.colors[j] < 1);
    cr_expect(ex.t_score > 0 && fl_eval_throughput(&ex) > 0);
    /* beyond the paper: d_fib is ~0 on the fiber (any colors) and large off it; the
     * intervals hold the means; no nearest-neighbour line, no relative loss */
    cr_expect(ex.has_dfib && wl.has_dfib && wd.has_dfib);
    cr_expect_lt(ex.dfib_mean, 1e-6, "exact: d_fib %g", ex.dfib_mean);
    cr_expect_lt(wl.dfib_mean, 1e-6, "wrong law: d_fib %g", wl.dfib_mean);
    cr_expect_gt(wd.dfib_mean, 0.05, "wrong digit: d_fib %g", wd.dfib_mean);
    for (int64_t j = 0; j < 30; j++)
        cr_expect(fabs(ex.fit_colors[j] - ex.colors[j]) < 1e-5, "the fit color is the true one");
    const fl_ci *cis[] = {&wd.ci.fiber, &wd.ci.dfib, &wd.ci.kl, &wd.ci.w1};
    for (int i = 0; i < 4; i++)
        cr_expect(cis[i]->lo <= cis[i]->mean && cis[i]->mean <= cis[i]->hi && cis[i]->lo < cis[i]->hi,
                  "interval %d: %g [%g, %g]", i, cis[i]->mean, cis[i]->lo, cis[i]->hi);
    cr_expect_eq(wd.ci.fiber.mean, wd.fiber_mean);
    cr_expect(isnan(wd.rel_mean) && !wd.rel_loss);
    cr_expect_eq(wd.tail_share, 0, "wrong digits stay below eval.tail_loss = 5");
    fl_eval_result_free(&ex);
    fl_eval_result_free(&wl);
    fl_eval_result_free(&wd);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(eval, decolorize_ae_subject_separates_exact_from_wrong_digit)
{
    put_source(300, 40, 2);
    static const char *const o[] = {"subject.widths=[8, 16]", "subject.dim=16", "subject.steps=60",
                                    "subject.batch_size=32", "eval.samples_per_target=20", NULL};
    fl_config *c = eval_config(o);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_subject *s;
    cr_assert_eq(fl_subject_open(c, ds, &s), 0, "%s", fl_error());
    fl_eval_result ex, wd;
    run_sampler(c, ds, s, "exact", &ex);
    run_sampler(c, ds, s, "wrong-digit", &wd);
    cr_expect_eq(ex.n_targets, 40, "n_targets is capped at the test split");
    cr_expect(ex.fiber_mean < 1e-3 * wd.fiber_mean, "exact %g, wrong digit %g", ex.fiber_mean, wd.fiber_mean);
    cr_expect(isfinite(fl_subject_report_of(s)->recon_fiber));
    cr_expect(ex.has_dfib && ex.dfib_mean < 1e-6 && wd.dfib_mean > 0.05, "decolorize_ae: d_fib %g / %g",
              ex.dfib_mean, wd.dfib_mean);
    fl_eval_result_free(&ex);
    fl_eval_result_free(&wd);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(eval, a_samples_file_scores_like_the_sampler_that_made_it)
{
    put_source(200, 30, 3);
    static const char *const o[] = {"eval.samples_per_target=3", "eval.store_samples=1000",
                                    "eval.n_targets=30", NULL};
    fl_config *c = eval_config(o);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_subject *s = projection_subject();
    fl_eval_result a, b;
    run_sampler(c, ds, s, "wrong-digit", &a);
    cr_assert_eq(a.n_stored, a.n_samples);
    /* write them as a user of h5py would, read and score */
    char path[400];
    snprintf(path, sizeof path, "%s/samples.h5", tmp);
    fl_h5w *w = fl_h5w_create(path);
    cr_assert_not_null(w);
    int64_t n = a.n_samples, di[1] = {n}, ds4[4] = {n, 3, 28, 28};
    cr_assert_eq(fl_h5w_write(w, "target_index", FL_I64, 1, di, a.stored_target), 0);
    cr_assert_eq(fl_h5w_write(w, "samples", FL_F32, 4, ds4, a.samples), 0);
    cr_assert_eq(fl_h5w_commit(w), 0, "%s", fl_error());
    int64_t *idx, m;
    float *smp;
    cr_assert_eq(fl_eval_read_samples(path, fl_dataset_count(ds, FL_TEST), &idx, &smp, &m), 0, "%s", fl_error());
    cr_assert_eq(m, n);
    cr_assert_eq(fl_eval_samples(c, ds, s, "file", idx, smp, m, &b), 0, "%s", fl_error());
    cr_expect_eq(b.n_targets, a.n_targets);
    cr_expect_eq(b.k, 3);
    double d = 0;
    for (int64_t j = 0; j < n; j++) d = fmax(d, fabs(a.loss[j] - b.loss[j]));
    cr_expect(d < 1e-5, "per-sample fiber losses differ by %g", d);
    cr_expect(fabs(a.fiber_mean - b.fiber_mean) < 1e-5);
    for (int k = 0; k < 3; k++) cr_expect_eq(a.color.kl[k], b.color.kl[k]);
    free(idx);
    free(smp);

    /* targets in any order and numbers: distinct targets in order of first appearance */
    int64_t ti[5] = {7, 2, 7, 7, 2};
    float *five = calloc(5 * 3 * 28 * 28, sizeof *five);
    for (int i = 0; i < 5; i++) memcpy(five + i * 2352, a.samples + (i * 17 % n) * 2352, 2352 * sizeof *five);
    fl_eval_result r5;
    cr_assert_eq(fl_eval_samples(c, ds, s, "five", ti, five, 5, &r5), 0, "%s", fl_error());
    cr_expect_eq(r5.n_targets, 2);
    cr_expect_eq(r5.target_index[0], 7);
    cr_expect_eq(r5.target_index[1], 2);
    cr_expect_eq(r5.k, 0, "unequal counts per target give k = 0");
    cr_expect(fabs(r5.target_loss[1] - (r5.loss[1] + r5.loss[4]) / 2) < 1e-6);
    free(five);
    fl_eval_result_free(&r5);
    fl_eval_result_free(&a);
    fl_eval_result_free(&b);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(eval, reference_lines_nearest_neighbour_and_augmentation)
{
    put_source(200, 30, 4);
    static const char *const o[] = {"eval.n_aug=4", "eval.aug_shift=0", "eval.aug_rotation=0",
                                    "eval.n_targets=30", NULL};
    fl_config *c = eval_config(o);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    long handles = ct_live_handles();
    fl_subject *s = projection_subject();
    fl_reference ref;
    cr_assert_eq(fl_reference_lines(c, ds, s, NULL, &ref), 0, "%s", fl_error());
    cr_expect_eq(ref.n, 2, "no VAE: two lines");
    const fl_eval_result *nn = fl_reference_find(&ref, "nearest_neighbour");
    const fl_eval_result *aug = fl_reference_find(&ref, "augmented");
    cr_assert_not_null(nn);
    cr_assert_not_null(aug);
    cr_expect_eq(nn->k, 1);
    cr_expect_eq(aug->k, 4);
    cr_expect(aug->fiber_mean < 1e-5, "identity augmentation: fiber loss %g", aug->fiber_mean);
    /* every line is related to the nearest neighbour: itself at exactly 1 */
    cr_expect(fabs(nn->rel_mean - 1) < 1e-12 && nn->ci.rel.lo == 1 && nn->ci.rel.hi == 1,
              "nearest neighbour relative to itself: %g [%g, %g]", nn->rel_mean, nn->ci.rel.lo, nn->ci.rel.hi);
    cr_expect(aug->rel_mean < 1e-3 && aug->rel_loss, "augmented: relative %g", aug->rel_mean);
    cr_expect(nn->dfib_mean > 0.01, "another training digit is off the target's fiber: d_fib %g", nn->dfib_mean);

    /* the nearest neighbour is the best of a brute-force search */
    ct_scope *sc = ct_scope_begin();
    fl_batch tr, te;
    cr_assert_eq(fl_dataset_slice(ds, FL_TRAIN, 0, 200, &tr), 0);
    cr_assert_eq(fl_dataset_slice(ds, FL_TEST, 0, 30, &te), 0);
    ct_tensor *ztr = fl_subject_forward(s, tr.colored), *zte = fl_subject_forward(s, te.colored);
    float a[200 * 32], b[30 * 32];
    ct_to_data(ztr, a, sizeof a);
    ct_to_data(zte, b, sizeof b);
    for (int t = 0; t < 30; t++) {
        double best = INFINITY;
        for (int i = 0; i < 200; i++) {
            double d2 = 0;
            for (int j = 0; j < 32; j++) d2 += (a[i * 32 + j] - b[t * 32 + j]) * (a[i * 32 + j] - b[t * 32 + j]);
            best = fmin(best, sqrt(d2 / 32));
        }
        cr_expect(fabs(nn->loss[t] - best) < 1e-4 * fmax(best, 1e-3), "target %d: line %g, brute force %g",
                  t, nn->loss[t], best);
    }
    ct_scope_end(sc);
    fl_reference_free(&ref);

    /* with shifts and rotations the augmented originals leave the fiber */
    cr_assert_eq(fl_config_override(c, "eval.aug_shift=2"), 0);
    cr_assert_eq(fl_config_override(c, "eval.aug_rotation=15"), 0);
    fl_sampler smp;
    fl_eval_result r;
    cr_assert_eq(fl_sampler_builtin("augment", c, ds, NULL, &smp), 0);
    cr_assert_eq(fl_evaluate_k(c, ds, s, &smp, 4, &r), 0, "%s", fl_error());
    cr_expect_gt(r.fiber_mean, 0.01, "augmented: fiber loss %g", r.fiber_mean);
    fl_sampler_free(&smp);
    fl_eval_result_free(&r);
    cr_expect_eq(fl_sampler_builtin("vae-recon", c, ds, NULL, &smp), -1, "vae-recon without a VAE");
    cr_expect_eq(fl_sampler_builtin("oracle", c, ds, NULL, &smp), -1);
    cr_expect(strstr(fl_error(), "oracle") != NULL);
    fl_subject_free(s);
    cr_expect_eq(ct_live_handles(), handles, "%ld tensor handles leaked", ct_live_handles() - handles);
    fl_dataset_free(ds);
    fl_config_free(c);
}

/* Misbehaving samplers: NaN images, a wrong shape. */
static ct_tensor *nan_sampler(void *ctx, const ct_tensor *x, const ct_tensor *z, int k, ct_gen *g)
{
    return ct_full(CT_SHAPE(ct_size(x, 0) * k, 3, 28, 28), NAN, CT_F32);
}
static ct_tensor *short_sampler(void *ctx, const ct_tensor *x, const ct_tensor *z, int k, ct_gen *g)
{
    return ct_zeros(CT_SHAPE(ct_size(x, 0), 3, 28, 28), CT_F32);
}

Test(eval, a_nan_sampler_scores_nan_and_a_wrong_shape_is_an_error)
{
    put_source(60, 20, 8);
    static const char *const o[] = {"eval.samples_per_target=2", "eval.n_targets=20", NULL};
    fl_config *c = eval_config(o);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_subject *s = projection_subject();
    fl_sampler bad = {"nan", NULL, nan_sampler, NULL};
    fl_eval_result r;
    cr_assert_eq(fl_evaluate(c, ds, s, &bad, &r), 0, "%s", fl_error());
    cr_expect(isnan(r.fiber_mean) && isnan(r.color.kl_mean) && isnan(r.color.w1[1]));
    fl_eval_result_free(&r);
    fl_sampler wrong = {"short", NULL, short_sampler, NULL};
    cr_expect_eq(fl_evaluate(c, ds, s, &wrong, &r), -1);
    cr_expect(strstr(fl_error(), "sampler short") && strstr(fl_error(), "expected (40, 3, 28, 28)"),
              "message: %s", fl_error());
    cr_expect_null(r.loss);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

Test(eval, results_are_written_in_the_documented_layout)
{
    put_source(100, 20, 5);
    static const char *const o[] = {"eval.samples_per_target=4", "eval.n_targets=20", NULL};
    fl_config *c = eval_config(o);
    fl_dataset *ds;
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_subject *s = projection_subject();
    fl_eval_result r;
    run_sampler(c, ds, s, "exact", &r);
    char path[400];
    snprintf(path, sizeof path, "%s/eval.h5", tmp);
    fl_h5w *w = fl_h5w_create(path);
    cr_assert_eq(fl_eval_write(w, "run/eval", &r), 0, "%s", fl_error());
    cr_assert_eq(fl_h5w_commit(w), 0, "%s", fl_error());
    fl_h5r *h = fl_h5r_open(path);
    cr_assert_not_null(h, "%s", fl_error());
    struct { const char *name; int ndim; int64_t d0, d1; } want[] = {
        {"run/eval/target_index", 1, 20, 0}, {"run/eval/target_loss", 1, 20, 0},
        {"run/eval/sample_target", 1, 80, 0}, {"run/eval/loss", 1, 80, 0},
        {"run/eval/colors", 2, 80, 3},       {"run/eval/kl", 1, 3, 0},
        {"run/eval/w1", 1, 3, 0},            {"run/eval/samples", 4, 8, 3},
        {"run/eval/samples_target", 1, 8, 0}, {"run/eval/dfib", 1, 80, 0},
        {"run/eval/fit_colors", 2, 80, 3},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int nd;
        int64_t d[8];
        cr_assert_eq(fl_h5r_dims(h, want[i].name, &nd, d), 0, "%s", fl_error());
        cr_expect_eq(nd, want[i].ndim, "%s", want[i].name);
        cr_expect_eq(d[0], want[i].d0, "%s", want[i].name);
        if (nd > 1) cr_expect_eq(d[1], want[i].d1, "%s", want[i].name);
    }
    double v;
    int64_t k;
    char name[64];
    cr_expect_eq(fl_h5r_attr_f64(h, "run/eval", "fiber_mean", &v), 0);
    cr_expect_eq(v, r.fiber_mean);
    cr_expect_eq(fl_h5r_attr_f64(h, "run/eval", "kl_mean", &v), 0);
    cr_expect_eq(v, r.color.kl_mean);
    cr_expect_eq(fl_h5r_attr_i64(h, "run/eval", "k", &k), 0);
    cr_expect_eq(k, 4);
    cr_expect_eq(fl_h5r_attr_f64(h, "run/eval", "fiber_lo", &v), 0);
    cr_expect_eq(v, r.ci.fiber.lo);
    cr_expect_eq(fl_h5r_attr_f64(h, "run/eval", "dfib_mean", &v), 0);
    cr_expect_eq(v, r.dfib_mean);
    cr_expect_eq(fl_h5r_attr_i64(h, "run/eval", "dfib_applies", &k), 0);
    cr_expect_eq(k, 1);
    cr_expect_eq(fl_h5r_attr_i64(h, "run/eval", "bootstrap", &k), 0);
    cr_expect_eq(k, 1000);
    cr_expect_eq(fl_h5r_attr_str(h, "run/eval", "name", name, sizeof name), 0);
    cr_expect_str_eq(name, "exact");
    float loss[80];
    cr_assert_eq(fl_h5r_read(h, "run/eval/loss", FL_F32, loss, sizeof loss), 0);
    cr_expect_eq(memcmp(loss, r.loss, sizeof loss), 0);
    fl_h5r_close(h);
    fl_eval_result_free(&r);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
}

/* ---- the command ------------------------------------------------------------------------ */

static char err[8192];

static int run(const char *args)
{
    char cmd[4096], ep[400];
    snprintf(ep, sizeof ep, "%s/stderr.txt", tmp);
    snprintf(cmd, sizeof cmd, "cd '%s' && FIBERLAB_CACHE='%s/cache' '%s' %s >/dev/null 2>'%s'", tmp, tmp,
             FL_BIN, args, ep);
    int st = system(cmd);
    FILE *f = fopen(ep, "r");
    size_t n = f ? fread(err, 1, sizeof err - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(ep);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The last line of stderr (progress and log lines may come before it). */
static const char *last_line(void)
{
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n') err[--n] = 0;
    const char *p = strrchr(err, '\n');
    return p ? p + 1 : err;
}

static int outputs_left(void)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' -maxdepth 1 -name 'out.h5*')\"", tmp);
    return system(cmd) != 0;
}

static void write_samples(const char *name, const char *idx_name, int64_t n, const int64_t *dims_s,
                          int nd_s, int64_t idx_value, float value)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    fl_h5w *w = fl_h5w_create(p);
    cr_assert_not_null(w);
    int64_t numel = 1;
    for (int i = 0; i < nd_s; i++) numel *= dims_s[i];
    float *x = malloc((size_t)numel * sizeof *x);
    for (int64_t i = 0; i < numel; i++) x[i] = value;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    for (int64_t i = 0; i < n; i++) idx[i] = i == n - 1 ? idx_value : i % 5;
    cr_assert_eq(fl_h5w_write(w, "samples", FL_F32, nd_s, dims_s, x), 0);
    if (idx_name) cr_assert_eq(fl_h5w_write(w, idx_name, FL_I64, 1, (int64_t[]){n}, idx), 0);
    cr_assert_eq(fl_h5w_commit(w), 0);
    free(x);
    free(idx);
}

static void expect_failure(const char *file, const char *what)
{
    char args[1024];
    snprintf(args, sizeof args, "eval --samples %s --out out.h5 data.source=idx data.path='%s/src' "
             "subject.steps=1", file, tmp);
    int rc = run(args);
    cr_expect_eq(rc, 1, "%s: exit code %d", file, rc);
    const char *line = last_line();
    char want[256];
    snprintf(want, sizeof want, "fiberlab eval: %s: ", file);
    cr_expect(strncmp(line, want, strlen(want)) == 0, "%s: stderr: %s", file, err);
    cr_expect(strstr(line, what) != NULL, "%s: the message does not say '%s': %s", file, what, line);
    cr_expect_not(outputs_left(), "%s: an output file was left", file);
    char models[400];
    snprintf(models, sizeof models, "%s/cache/models", tmp);
    cr_expect_neq(access(models, F_OK), 0, "%s: a subject was trained before the file was checked", file);
}

Test(eval, cli_rejects_malformed_samples_files_and_writes_nothing)
{
    put_source(60, 20, 6);
    write_samples("shape.h5", "target_index", 4, (int64_t[]){4, 28, 28}, 3, 0, 0.5f);
    expect_failure("shape.h5", "(n, 3, 28, 28)");
    write_samples("noindex.h5", NULL, 4, (int64_t[]){4, 3, 28, 28}, 4, 0, 0.5f);
    expect_failure("noindex.h5", "no dataset 'target_index'");
    write_samples("range.h5", "target_index", 4, (int64_t[]){4, 3, 28, 28}, 4, 20, 0.5f);
    expect_failure("range.h5", "target_index[3] = 20 is outside the test split [0, 20)");
    write_samples("count.h5", "target_index", 3, (int64_t[]){4, 3, 28, 28}, 4, 0, 0.5f);
    expect_failure("count.h5", "3 entries");
    write_samples("scale.h5", "target_index", 4, (int64_t[]){4, 3, 28, 28}, 4, 0, 255.0f);
    expect_failure("scale.h5", "[0, 1]");
    expect_failure("missing.h5", "missing.h5");
    /* a float index (0.7 would be read as 0) and a 2-D one */
    for (int k = 0; k < 2; k++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", tmp, k ? "index2d.h5" : "float.h5");
        float *x = calloc(4 * 3 * 28 * 28, sizeof *x);
        double fidx[4] = {0.7, 1, 2, 3};
        int64_t iidx[8] = {0};
        fl_h5w *w = fl_h5w_create(p);
        cr_assert_not_null(w);
        cr_assert_eq(fl_h5w_write(w, "samples", FL_F32, 4, (int64_t[]){4, 3, 28, 28}, x), 0);
        cr_assert_eq(k ? fl_h5w_write(w, "target_index", FL_I64, 2, (int64_t[]){4, 2}, iidx)
                       : fl_h5w_write(w, "target_index", FL_F64, 1, (int64_t[]){4}, fidx), 0);
        cr_assert_eq(fl_h5w_commit(w), 0);
        free(x);
    }
    expect_failure("float.h5", "'target_index' is not stored as integers");
    expect_failure("index2d.h5", "'target_index' has 2 dimensions, expected 1");
    cr_expect_eq(run("eval"), 1);
    cr_expect(strstr(err, "--sampler") != NULL, "%s", err);
    cr_expect_eq(run("eval --sampler nonsense"), 1);
    cr_expect(strstr(last_line(), "nonsense") != NULL, "%s", err);
    cr_expect_eq(run("eval --help"), 0);
}

Test(eval, cli_scores_a_sampler_and_a_samples_file_into_hdf5)
{
    put_source(120, 20, 7);
    char common[600];
    snprintf(common, sizeof common,
             "data.source=idx data.path='%s/src' subject.widths=8,16 subject.dim=16 subject.steps=30 "
             "subject.batch_size=32 eval.samples_per_target=3 eval.n_aug=2 threads=1", tmp);
    char args[1200];
    snprintf(args, sizeof args, "eval --sampler exact --out out.h5 %s", common);
    cr_assert_eq(run(args), 0, "%s", err);
    char p[400];
    snprintf(p, sizeof p, "%s/out.h5", tmp);
    fl_h5r *h = fl_h5r_open(p);
    cr_assert_not_null(h, "%s", fl_error());
    cr_expect(fl_h5r_has(h, "eval/loss"));
    cr_expect(fl_h5r_has(h, "reference/nearest_neighbour/loss"));
    cr_expect(fl_h5r_has(h, "reference/augmented/colors"));
    char s[64];
    cr_expect_eq(fl_h5r_attr_str(h, "/", "sampler", s, sizeof s), 0);
    cr_expect_str_eq(s, "exact");
    double fm;
    cr_expect_eq(fl_h5r_attr_f64(h, "eval", "fiber_mean", &fm), 0);
    cr_expect_lt(fm, 1e-3);
    fl_h5r_close(h);
    /* a file of samples from elsewhere: 2 per target */
    write_samples("ok.h5", "target_index", 10, (int64_t[]){10, 3, 28, 28}, 4, 4, 0.25f);
    snprintf(args, sizeof args, "eval --samples ok.h5 --no-reference --out out.h5 %s", common);
    cr_assert_eq(run(args), 0, "%s", err);
    h = fl_h5r_open(p);
    cr_assert_not_null(h);
    int64_t nt;
    cr_expect_eq(fl_h5r_attr_i64(h, "eval", "n_targets", &nt), 0);
    cr_expect_eq(nt, 5);
    cr_expect_not(fl_h5r_has(h, "reference"));
    fl_h5r_close(h);
}

/* The help text says how targets are chosen and how many bins the KL uses, with the
 * schema's defaults (not "the first N test images", not a fixed 100 bins). */
Test(eval, cli_help_states_the_target_choice_and_the_bins_with_their_defaults)
{
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "'%s' eval --help", FL_BIN);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_assert_eq(pclose(p), 0, "eval --help failed: %s", out);
    /* the help wraps lines; compare with runs of spaces and newlines as one space */
    char flat[8192];
    size_t m = 0;
    for (size_t i = 0; i < n && m < sizeof flat - 1; i++) {
        char ch = out[i] == '\n' ? ' ' : out[i];
        if (ch == ' ' && m > 0 && flat[m - 1] == ' ') continue;
        flat[m++] = ch;
    }
    flat[m] = 0;
    fl_config *c = fl_config_default();
    char want[3][160];
    snprintf(want[0], sizeof want[0], "eval.n_targets (default %lld) test images spread evenly over the test split",
             (long long)fl_cfg_int(c, "eval.n_targets"));
    snprintf(want[1], sizeof want[1], "eval.samples_per_target (default %lld) samples",
             (long long)fl_cfg_int(c, "eval.samples_per_target"));
    snprintf(want[2], sizeof want[2], "eval.kl_bins (default %lld) equal bins of [0, 1)",
             (long long)fl_cfg_int(c, "eval.kl_bins"));
    fl_config_free(c);
    for (int i = 0; i < 3; i++) cr_expect(strstr(flat, want[i]) != NULL, "the help does not say '%s':\n%s", want[i], out);
    cr_expect(strstr(flat, "target t is test image floor(t * n_test / N)") != NULL, "%s", out);
    cr_expect(strstr(flat, "first eval.n_targets") == NULL, "the help still says 'first': %s", out);
    cr_expect(strstr(flat, "100-bin") == NULL, "the help still fixes the bins at 100: %s", out);
}

/* tests/fuzz/crashes/samples/: a samples file whose stored element is 1 GiB (HDF5
 * allocated that for the conversion) is refused, naming the file and the dataset */
Test(eval, a_samples_file_of_1GiB_elements_is_refused_naming_the_dataset)
{
    const char *files[] = {FL_TEST_DIR "/fuzz/crashes/samples/samples_element_of_1GiB",
                           FL_TEST_DIR "/fuzz/crashes/samples/target_index_element_of_1GiB"};
    const char *names[] = {"dataset 'samples' is", "dataset 'target_index' is"};
    for (int k = 0; k < 2; k++) {
        int64_t *idx = NULL, m = 0;
        float *smp = NULL;
        cr_expect_eq(fl_eval_read_samples(files[k], 1000, &idx, &smp, &m), -1, "%s", files[k]);
        cr_expect(strstr(fl_error(), files[k]), "message does not name the file: %s", fl_error());
        cr_expect(strstr(fl_error(), names[k]) && strstr(fl_error(), "stored as"), "message: %s",
                  fl_error());
        cr_expect_null(idx);
        cr_expect_null(smp);
    }
}

/* tests/fuzz/crashes/samples/integer_bits_past_its_bytes (fuzz_samples): 'samples' stored
 * as 4-byte integers of 28,781 bits at bit offset 24,947. HDF5 1.10 converted them to
 * float without bounding the bit field and wrote past a stack variable (H5T__bit_get_d);
 * the reader now refuses a number type whose bits do not fill its bytes. */
Test(eval, a_samples_file_of_integers_with_impossible_bit_fields_is_refused)
{
    const char *file = FL_TEST_DIR "/fuzz/crashes/samples/integer_bits_past_its_bytes";
    int64_t *idx = NULL, m = 0;
    float *smp = NULL;
    cr_expect_eq(fl_eval_read_samples(file, 1000, &idx, &smp, &m), -1);
    cr_expect(strstr(fl_error(), file), "message does not name the file: %s", fl_error());
    cr_expect(strstr(fl_error(), "dataset 'samples' is stored as integers whose bits do not fill their bytes"),
              "message: %s", fl_error());
    cr_expect_null(idx);
    cr_expect_null(smp);
}
