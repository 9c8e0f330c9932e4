/* The consistency metrics (core/metrics.h) against values computed by hand: KL(q ‖ p)
 * on bins of a (numerically exact) uniform law, empty bins contributing 0; W1 of
 * point masses against uniform and narrow Gaussian laws; the paper's law scored on its
 * own samples (small) and on uniform ones (large). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/metrics.h"
#include "core/rng.h"

/* A wrapped normal of σ = 10 is uniform on [0, 1) to far below double precision
 * (its Fourier coefficients are exp(−2π²σ²) = e^−1974). */
static fl_colorlaw uniform_law(void)
{
    return (fl_colorlaw){.k = 1, .w = {1}, .mu = {0.5}, .sigma = {10}};
}

Test(metrics, kl_matches_hand_computed_values)
{
    fl_colorlaw u = uniform_law();
    /* 4 colors in 2 of 100 bins: q = (1/2, 1/2), p_i = 1/100: KL = log 50 */
    double c1[] = {0.101, 0.105, 0.902, 0.909};
    double kl = fl_metric_kl(&u, c1, 4, 1, 100);
    cr_expect(fabs(kl - log(50.0)) < 1e-10, "KL %.12f, by hand log 50 = %.12f", kl, log(50.0));
    /* q = (3/4, 1/4) on 4 bins of 1/4: 3/4 log 3 + 1/4 log 1 */
    double c2[] = {0.01, 0.02, 0.2, 0.6};
    kl = fl_metric_kl(&u, c2, 4, 1, 4);
    cr_expect(fabs(kl - 0.75 * log(3.0)) < 1e-10, "KL %.12f, by hand %.12f", kl, 0.75 * log(3.0));
    /* one color in every bin: q = p, KL 0 (empty bins would be skipped, none are) */
    double c3[10];
    for (int i = 0; i < 10; i++) c3[i] = (i + 0.5) / 10;
    cr_expect(fabs(fl_metric_kl(&u, c3, 10, 1, 10)) < 1e-12);
    /* stride picks one channel of (n, 3) rows */
    double rows[] = {0.101, 9, 9, 0.105, 9, 9, 0.902, 9, 9, 0.909, 9, 9};
    cr_expect(fabs(fl_metric_kl(&u, rows, 4, 3, 100) - log(50.0)) < 1e-10);
    /* against a non-uniform law: bins p from the CDF, by hand */
    fl_colorlaw g = {.k = 1, .w = {1}, .mu = {0.3}, .sigma = {0.1}};
    double p0 = fl_colorlaw_cdf(&g, 0.5), p1 = 1 - p0;
    double c4[] = {0.1, 0.2, 0.3, 0.7};
    double want = 0.75 * log(0.75 / p0) + 0.25 * log(0.25 / p1);
    kl = fl_metric_kl(&g, c4, 4, 1, 2);
    cr_expect(fabs(kl - want) < 1e-12, "KL %.15f, by hand %.15f", kl, want);
    cr_expect(isnan(fl_metric_kl(&u, c1, 0, 1, 100)));
}

Test(metrics, w1_matches_hand_computed_values)
{
    fl_colorlaw u = uniform_law();
    /* all mass at 1/2: ∫₀^½ c dc + ∫_½^1 (1 − c) dc = 1/4 */
    double half[] = {0.5, 0.5, 0.5};
    double w = fl_metric_w1(&u, half, 3, 1);
    cr_expect(fabs(w - 0.25) < 1e-12, "W1 %.15f, by hand 0.25", w);
    /* {1/4, 3/4}: four triangles of area 1/32 */
    double two[] = {0.25, 0.75};
    w = fl_metric_w1(&u, two, 2, 1);
    cr_expect(fabs(w - 0.125) < 1e-12, "W1 %.15f, by hand 0.125", w);
    /* everything at 0: ∫ (1 − c) = 1/2; at 1: ∫ c = 1/2 */
    double zero[] = {0.0}, one[] = {1.0};
    cr_expect(fabs(fl_metric_w1(&u, zero, 1, 1) - 0.5) < 1e-12);
    cr_expect(fabs(fl_metric_w1(&u, one, 1, 1) - 0.5) < 1e-12);
    /* a narrow Gaussian against a point mass at its mean: E|X − μ| = σ √(2/π) */
    fl_colorlaw g = {.k = 1, .w = {1}, .mu = {0.4}, .sigma = {0.02}};
    double at_mu[] = {0.4};
    w = fl_metric_w1(&g, at_mu, 1, 1);
    double want = 0.02 * sqrt(2 / M_PI);
    cr_expect(fabs(w - want) < 1e-10, "W1 %.15f, by hand σ√(2/π) = %.15f", w, want);
    /* … and shifted by δ ≫ σ: δ */
    double off[] = {0.6};
    w = fl_metric_w1(&g, off, 1, 1);
    cr_expect(fabs(w - 0.2) < 1e-10, "W1 %.15f, by hand 0.2", w);
    cr_expect(isnan(fl_metric_w1(&u, half, 0, 1)));
}

Test(metrics, the_law_scores_its_own_samples_well_and_uniform_colors_badly)
{
    fl_colorlaw p = fl_colorlaw_paper();
    int64_t n = 20000;
    float *own = malloc(n * 3 * sizeof *own), *flat = malloc(n * 3 * sizeof *flat);
    fl_rng r;
    fl_rng_seed(&r, 7);
    for (int64_t i = 0; i < 3 * n; i++) {
        own[i] = (float)fl_colorlaw_sample(&p, &r);
        flat[i] = (float)fl_rng_uniform(&r);
    }
    fl_color_metrics a, b;
    cr_assert_eq(fl_color_metrics_of(&p, own, n, 100, &a), 0);
    cr_assert_eq(fl_color_metrics_of(&p, flat, n, 100, &b), 0);
    for (int k = 0; k < 3; k++) {
        /* sampling noise alone: E KL ≈ (bins − 1) / 2n = 0.0025 */
        cr_expect_lt(a.kl[k], 0.01, "channel %d: KL of exact samples %g", k, a.kl[k]);
        cr_expect_lt(a.w1[k], 0.01, "channel %d: W1 of exact samples %g", k, a.w1[k]);
        cr_expect_gt(b.kl[k], 0.5, "channel %d: KL of uniform colors only %g", k, b.kl[k]);
        cr_expect_gt(b.w1[k], 0.05, "channel %d: W1 of uniform colors only %g", k, b.w1[k]);
    }
    cr_expect(fabs(a.kl_mean - (a.kl[0] + a.kl[1] + a.kl[2]) / 3) < 1e-15);
    cr_expect(fabs(a.w1_mean - (a.w1[0] + a.w1[1] + a.w1[2]) / 3) < 1e-15);
    cr_expect_eq(fl_color_metrics_of(&p, own, 0, 100, &a), -1);
    free(own);
    free(flat);
}

Test(metrics, mean_and_std_are_numpys)
{
    float x[] = {1, 2, 3, 4};
    double m, s;
    fl_mean_std(x, 4, &m, &s);
    cr_expect(fabs(m - 2.5) < 1e-15);
    cr_expect(fabs(s - sqrt(1.25)) < 1e-15, "std %.15f (ddof 0: sqrt(1.25))", s);
    fl_mean_std(x, 0, &m, &s);
    cr_expect(isnan(m) && isnan(s));
}

Test(metrics, median_is_numpys)
{
    float odd[] = {7, -1, 3, 100, 2}, even[] = {4, 1, 3, 2}, one[] = {5}, bad[] = {1, NAN, 2};
    cr_expect_eq(fl_median(odd, 5), 3.0);        /* np.median([7,-1,3,100,2]) */
    cr_expect_eq(fl_median(even, 4), 2.5);       /* np.median([4,1,3,2]) */
    cr_expect_eq(fl_median(one, 1), 5.0);
    cr_expect(isnan(fl_median(bad, 3)));
    cr_expect(isnan(fl_median(even, 0)));
    cr_expect_eq(even[0], 4.0f, "the input is left as it was");
}
