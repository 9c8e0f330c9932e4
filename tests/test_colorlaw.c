/* The exact color law (core/colorlaw.h): density, CDF and bins agree with each other
 * and integrate to 1; the sampler follows the bins (and a shifted law does not). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/colorlaw.h"

/* Laws that exercise the wrap: the paper's, a wide one near 1, a narrow one at 0. */
static fl_colorlaw test_law(int i)
{
    if (i == 0) return fl_colorlaw_paper();
    if (i == 1) return (fl_colorlaw){.k = 2, .w = {0.3, 0.7}, .mu = {0.95, 0.2}, .sigma = {0.3, 0.1}};
    return (fl_colorlaw){.k = 1, .w = {1}, .mu = {0.001}, .sigma = {0.004}};
}

/* Composite Simpson of the density on [a, b] with m (even) intervals. */
static double simpson(const fl_colorlaw *law, double a, double b, int m)
{
    double h = (b - a) / m, s = fl_colorlaw_pdf(law, a) + fl_colorlaw_pdf(law, b);
    for (int i = 1; i < m; i++) s += (i % 2 ? 4 : 2) * fl_colorlaw_pdf(law, a + i * h);
    return s * h / 3;
}

Test(colorlaw, density_integrates_to_one)
{
    for (int i = 0; i < 3; i++) {
        fl_colorlaw law = test_law(i);
        double integral = simpson(&law, 0, 1, 400000);
        cr_expect(fabs(integral - 1) < 1e-9, "law %d: integral of the density %.15f", i, integral);
    }
}

Test(colorlaw, density_is_continuous_across_the_wrap)
{
    for (int i = 0; i < 3; i++) {
        fl_colorlaw law = test_law(i);
        double a = fl_colorlaw_pdf(&law, 0.0), b = fl_colorlaw_pdf(&law, 1.0 - 1e-12);
        cr_expect(fabs(a - b) <= 1e-6 * fmax(1, a), "law %d: p(0) = %g, p(1-) = %g", i, a, b);
    }
}

Test(colorlaw, cdf_is_the_integral_of_the_density)
{
    for (int i = 0; i < 3; i++) {
        fl_colorlaw law = test_law(i);
        cr_expect_eq(fl_colorlaw_cdf(&law, 0), 0.0);
        cr_expect_eq(fl_colorlaw_cdf(&law, 1), 1.0);
        double prev = 0;
        for (double x = 0.05; x < 1; x += 0.1) {
            double F = fl_colorlaw_cdf(&law, x), I = simpson(&law, 0, x, 200000);
            cr_expect(fabs(F - I) < 1e-9, "law %d: F(%g) = %.12f, integral %.12f", i, x, F, I);
            cr_expect(F >= prev, "law %d: the CDF decreases at %g", i, x);
            prev = F;
        }
    }
}

Test(colorlaw, bin_probabilities_sum_to_one_and_match_the_cdf)
{
    int sizes[] = {1, 7, 100, 1000};
    for (int i = 0; i < 3; i++) {
        fl_colorlaw law = test_law(i);
        for (int s = 0; s < 4; s++) {
            int nb = sizes[s];
            double *p = malloc(nb * sizeof *p), sum = 0;
            fl_colorlaw_bins(&law, nb, p);
            for (int b = 0; b < nb; b++) {
                cr_expect(p[b] >= 0, "law %d: negative bin %d", i, b);
                sum += p[b];
                double d = fl_colorlaw_cdf(&law, (b + 1.0) / nb) - fl_colorlaw_cdf(&law, (double)b / nb);
                cr_expect(fabs(p[b] - d) < 1e-12, "law %d, %d bins: bin %d = %g, CDF gives %g", i,
                          nb, b, p[b], d);
            }
            cr_expect(fabs(sum - 1) < 1e-12, "law %d, %d bins sum to %.15f", i, nb, sum);
            free(p);
        }
    }
}

Test(colorlaw, samples_stay_in_the_unit_interval)
{
    fl_colorlaw law = test_law(2);   /* narrow at 0.001: half its draws wrap */
    fl_rng r;
    fl_rng_seed(&r, 3);
    int wrapped = 0;
    for (int i = 0; i < 200000; i++) {
        double c = fl_colorlaw_sample(&law, &r);
        cr_assert(c >= 0 && c < 1, "sample %.17g outside [0, 1)", c);
        wrapped += c > 0.5;
    }
    cr_expect(wrapped > 50000, "only %d of 200000 draws wrapped below 0", wrapped);
}

/* 10^6 draws from law, their 100-bin KL against the exact bins of ref. */
static double sample_kl(const fl_colorlaw *law, const fl_colorlaw *ref, uint64_t seed)
{
    enum { N = 1000000 };
    double *c = malloc(N * sizeof *c);
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (int i = 0; i < N; i++) c[i] = fl_colorlaw_sample(law, &r);
    double kl = fl_colorlaw_kl(ref, c, N, 1, 100);
    free(c);
    return kl;
}

Test(colorlaw, a_million_samples_match_the_bins)
{
    for (int i = 0; i < 3; i++) {
        fl_colorlaw law = test_law(i);
        double kl = sample_kl(&law, &law, 42 + i);
        cr_expect(kl < 1e-3, "law %d: KL of 10^6 samples against the bins = %g", i, kl);
    }
}

Test(colorlaw, a_shifted_law_fails_the_kl_test)
{
    fl_colorlaw law = fl_colorlaw_paper(), shifted = law;
    for (int j = 0; j < law.k; j++) shifted.mu[j] = fmod(law.mu[j] + 0.02, 1.0);
    double kl = sample_kl(&shifted, &law, 7);
    cr_expect(kl > 0.05, "a law shifted by 0.02 passes: KL = %g", kl);
    fl_colorlaw wider = law;
    wider.sigma[1] *= 1.5;
    kl = sample_kl(&wider, &law, 8);
    cr_expect(kl > 1e-2, "a law with a wider middle mode passes: KL = %g", kl);
}

Test(colorlaw, histogram_counts_every_sample_once)
{
    double c[] = {0.0, 0.005, 0.5, 0.999, 0.999999999, 1.0, -0.1};
    double q[100], s = 0;
    fl_color_hist(c, 7, 1, 100, q);
    for (int i = 0; i < 100; i++) s += q[i];
    cr_expect(fabs(s - 1) < 1e-15);
    cr_expect(fabs(q[0] - 3.0 / 7) < 1e-15, "bin 0 holds %g", q[0]);    /* 0, 0.005, -0.1 */
    cr_expect(fabs(q[99] - 3.0 / 7) < 1e-15, "bin 99 holds %g", q[99]); /* 0.999.., 1.0 */
}
