/* Confidence intervals (core/stats.h) and the bootstrap of a run's means
 * (fl_eval_relate): Student-t quantiles against tabulated values, a Student-t interval
 * by hand, the percentile rule, the bootstrap's coverage of a known mean over repeated
 * draws, and the relative fiber loss against a nearest-neighbour line. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/eval.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rng.h"
#include "core/stats.h"

Test(stats, t_quantiles_match_the_tables)
{
    /* two-sided 95% critical values (any statistics table; scipy.stats.t.ppf(0.975, df)) */
    static const struct { double df, t; } tab[] = {
        {1, 12.706204736}, {2, 4.302652730}, {4, 2.776445105}, {9, 2.262157163},
        {30, 2.042272456}, {1e6, 1.959966},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        double q = fl_t_quantile(0.975, tab[i].df);
        cr_expect(fabs(q - tab[i].t) < 1e-6 * tab[i].t, "df %g: %.9f, table %.9f", tab[i].df, q, tab[i].t);
        cr_expect(fabs(fl_t_quantile(0.025, tab[i].df) + q) < 1e-12, "symmetry at df %g", tab[i].df);
        cr_expect(fabs(fl_t_cdf(q, tab[i].df) - 0.975) < 1e-9);
    }
    cr_expect(fabs(fl_t_quantile(0.95, 3) - 2.353363435) < 1e-6);   /* one-sided 95%, df 3 */
    cr_expect(isnan(fl_t_quantile(1.0, 3)) && isnan(fl_t_quantile(0.5, 0)));
    cr_expect_eq(fl_t_quantile(0.5, 7), 0);
}

Test(stats, student_t_interval_by_hand)
{
    const double x[5] = {1, 2, 3, 4, 5};
    fl_ci ci = fl_ci_student_t(x, 5, 0.95);
    /* s = sqrt(2.5), s/√5 = sqrt(0.5), t(0.975, 4) = 2.776445105 */
    double half = 2.776445105 * sqrt(0.5);
    cr_expect(fabs(ci.mean - 3) < 1e-12);
    cr_expect(fabs(ci.lo - (3 - half)) < 1e-8 && fabs(ci.hi - (3 + half)) < 1e-8, "[%g, %g]", ci.lo, ci.hi);
    ci = fl_ci_student_t(x, 1, 0.95);
    cr_expect(ci.mean == 1 && isnan(ci.lo) && isnan(ci.hi), "one value: the mean alone");
    const double bad[2] = {1, NAN};
    cr_expect(isnan(fl_ci_student_t(bad, 2, 0.95).mean));
}

Test(stats, percentile_interval_is_numpys_linear_quantile)
{
    double d[101];
    for (int i = 0; i < 101; i++) d[i] = 100 - i;   /* sorted in place */
    fl_ci ci = fl_ci_percentile(50, d, 101, 0.95);
    cr_expect(fabs(ci.lo - 2.5) < 1e-12 && fabs(ci.hi - 97.5) < 1e-12, "[%g, %g]", ci.lo, ci.hi);
    cr_expect_eq(ci.mean, 50);
    char buf[64];
    cr_expect_str_eq(fl_ci_format(&ci, 2, buf, sizeof buf), "50.00 [2.50, 97.50]");
    fl_ci none = fl_ci_none(NAN);
    cr_expect_str_eq(fl_ci_format(&none, 2, buf, sizeof buf), "n/a");
}

/* A result of N targets × k samples: losses from (1 + target effect) · Exp(1), colors
 * from the exact law. */
static void synthetic(fl_eval_result *r, int64_t N, int k, fl_rng *g, double target_sd)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "synthetic");
    int64_t n = N * k;
    r->n_targets = N, r->n_samples = n, r->k = k;
    r->target_index = malloc((size_t)N * sizeof *r->target_index);
    r->target_loss = malloc((size_t)N * sizeof *r->target_loss);
    r->sample_target = malloc((size_t)n * sizeof *r->sample_target);
    r->loss = malloc((size_t)n * sizeof *r->loss);
    r->colors = malloc((size_t)n * 3 * sizeof *r->colors);
    r->dfib = malloc((size_t)n * sizeof *r->dfib);
    fl_colorlaw law = fl_colorlaw_paper();
    for (int64_t t = 0; t < N; t++) {
        r->target_index[t] = 3 * t + 1;
        double effect = 1 + target_sd * fl_rng_normal(g), s = 0;
        for (int j = 0; j < k; j++) {
            int64_t i = t * k + j;
            r->sample_target[i] = r->target_index[t];
            r->loss[i] = (float)(fabs(effect) * -log(1 - fl_rng_uniform(g)));
            r->dfib[i] = r->loss[i] / 10;
            for (int c = 0; c < 3; c++) r->colors[3 * i + c] = (float)fl_colorlaw_sample(&law, g);
            s += r->loss[i];
        }
        r->target_loss[t] = (float)(s / k);
    }
    r->has_dfib = true;
    double sd;
    fl_mean_std(r->loss, n, &r->fiber_mean, &sd);
    fl_mean_std(r->dfib, n, &r->dfib_mean, &sd);
    r->kl_bins = 20;
    fl_color_metrics_of(&law, r->colors, n, r->kl_bins, &r->color);
    r->tail_loss = 5;
    int64_t tail = 0;
    for (int64_t i = 0; i < n; i++) tail += r->loss[i] > 5;
    r->tail_share = (double)tail / (double)n;
}

Test(stats, bootstrap_covers_a_known_mean_at_about_the_nominal_rate)
{
    fl_config *c = fl_config_default();
    cr_assert_eq(fl_config_override(c, "eval.bootstrap=250"), 0);
    fl_rng g;
    fl_rng_seed(&g, 2024);
    /* the population mean of a loss: E|1 + 0.3 Z| · E Exp(1) = E|1 + 0.3 Z| (≈ 1, exactly
     * computed: for Z ~ N(0,1), E|a + bZ| = a(1 − 2Φ(−a/b)) + 2bφ(a/b)) */
    double a = 1, b = 0.3, phi = exp(-0.5 * (a / b) * (a / b)) / sqrt(2 * M_PI);
    double truth = a * (1 - erfc(a / b / sqrt(2))) + 2 * b * phi;
    int reps = 100, covered = 0, covered_dfib = 0;
    for (int rep = 0; rep < reps; rep++) {
        fl_eval_result r;
        synthetic(&r, 60, 4, &g, b);
        cr_assert_eq(fl_eval_relate(c, &r, NULL), 0, "%s", fl_error());
        cr_assert(r.ci.fiber.lo < r.fiber_mean && r.fiber_mean < r.ci.fiber.hi);
        covered += r.ci.fiber.lo <= truth && truth <= r.ci.fiber.hi;
        covered_dfib += r.ci.dfib.lo <= truth / 10 && truth / 10 <= r.ci.dfib.hi;
        cr_assert(isnan(r.rel_mean) && isnan(r.ci.rel.lo), "no line: no relative loss");
        cr_assert(r.ci.kl.lo <= r.ci.kl.hi && r.ci.w1.lo <= r.ci.w1.hi);
        fl_eval_result_free(&r);
    }
    /* nominal 95%; the percentile bootstrap of a skewed mean from 60 targets undercovers a
     * little; 120 repetitions have a binomial sd of 2% */
    cr_expect(covered >= 0.86 * reps && covered <= 0.995 * reps, "covered %d of %d", covered, reps);
    cr_expect(covered_dfib >= 0.86 * reps, "d_fib covered %d of %d", covered_dfib, reps);
    fl_config_free(c);
}

Test(stats, relative_loss_pairs_each_target_with_its_nearest_neighbour)
{
    fl_config *c = fl_config_default();
    cr_assert_eq(fl_config_override(c, "eval.bootstrap=200"), 0);
    fl_rng g;
    fl_rng_seed(&g, 7);
    fl_eval_result r, nn;
    synthetic(&r, 40, 5, &g, 0.2);
    synthetic(&nn, 40, 1, &g, 0.2);
    /* the line's targets in another order: matched by test index, not by position */
    for (int64_t t = 0; t < 20; t++) {
        int64_t u = 39 - t, ti = nn.target_index[t];
        float tl = nn.target_loss[t];
        nn.target_index[t] = nn.target_index[u], nn.target_loss[t] = nn.target_loss[u];
        nn.target_index[u] = ti, nn.target_loss[u] = tl;
    }
    cr_assert_eq(fl_eval_relate(c, &r, &nn), 0, "%s", fl_error());
    double s = 0;
    for (int64_t t = 0; t < 40; t++) s += nn.target_loss[t];
    cr_expect(fabs(r.nn_mean - s / 40) < 1e-6 * r.nn_mean);
    cr_expect(fabs(r.rel_mean - r.fiber_mean / r.nn_mean) < 1e-12);
    cr_expect(r.ci.rel.lo < r.rel_mean && r.rel_mean < r.ci.rel.hi);
    /* per sample: its loss over its own target's neighbour */
    for (int64_t t = 0; t < 40; t++)
        if (nn.target_index[t] == r.sample_target[7])
            cr_expect(fabs(r.rel_loss[7] - r.loss[7] / nn.target_loss[t]) < 1e-6);
    /* a line without one of the targets is an error that says so */
    nn.n_targets = 39;
    cr_expect_neq(fl_eval_relate(c, &r, &nn), 0);
    cr_expect(strstr(fl_error(), "39 of its 40 targets"), "%s", fl_error());
    fl_eval_result_free(&r);
    fl_eval_result_free(&nn);
    fl_config_free(c);
}

Test(stats, resampled_color_metrics_match_the_exact_ones_on_the_full_set)
{
    fl_rng g;
    fl_rng_seed(&g, 11);
    fl_colorlaw law = fl_colorlaw_paper();
    int64_t n = 3000;
    float *col = malloc((size_t)n * 3 * sizeof *col);
    double *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < 3 * n; i++) col[i] = (float)fl_rng_uniform(&g);
    for (int64_t i = 0; i < n; i++) w[i] = 1 + (i % 3 == 0);   /* every third counted twice */
    fl_color_resampler *cr = fl_color_resampler_new(&law, col, n, 50);
    cr_assert(cr);
    fl_color_metrics a, b;
    fl_color_resampler_eval(cr, w, &a);
    /* the same multiset written out */
    float *dup = malloc((size_t)(n + n / 3 + 1) * 3 * sizeof *dup);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        for (int r = 0; r < (int)w[i]; r++, m++) memcpy(dup + 3 * m, col + 3 * i, 3 * sizeof *dup);
    cr_assert_eq(fl_color_metrics_of(&law, dup, m, 50, &b), 0);
    for (int k = 0; k < 3; k++) {
        cr_expect(fabs(a.kl[k] - b.kl[k]) < 1e-12, "KL %d: %g vs %g", k, a.kl[k], b.kl[k]);
        cr_expect(fabs(a.w1[k] - b.w1[k]) < 2.0 / FL_W1_RESAMPLE_CELLS, "W1 %d: %g vs %g", k, a.w1[k], b.w1[k]);
    }
    fl_color_resampler_free(cr);
    free(col);
    free(w);
    free(dup);
}
