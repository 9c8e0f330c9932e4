/* The wrapped Gaussian mixture of DESIGN.md §1, in double. Every wrap n ∈ ℤ whose
 * Gaussian puts mass above ~1e-25 on [0, 1) is summed, so the results are exact to
 * rounding for any μ and σ (not only the paper's). Differences of normal CDFs go
 * through erfc on the side of the tail, so bins far out keep their relative precision. */
#include "core/colorlaw.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

fl_colorlaw fl_colorlaw_paper(void)
{
    return (fl_colorlaw){
        .k = 3,
        .w = {0.60, 0.35, 0.05},
        .mu = {0.70, 0.50, 0.10},
        .sigma = {0.080, 0.015, 0.020},
    };
}

/* Wraps n with c + n − μ within ±span of 0: n ∈ [lo, hi]. */
#define FL_TAIL_SIGMAS 11.0
static void wrap_range(double mu, double sigma, double a, double b, int *lo, int *hi)
{
    /* terms for x ∈ [a, b]: |x + n − μ| ≤ 11σ for some x */
    double span = FL_TAIL_SIGMAS * sigma;
    *lo = (int)floor(mu - b - span);
    *hi = (int)ceil(mu - a + span);
}

static double norm_pdf(double z) { return 0.3989422804014327 * exp(-0.5 * z * z); }

/* Φ(b) − Φ(a) for a ≤ b, accurate in both tails. */
static double norm_mass(double a, double b)
{
    if (a >= 0) return 0.5 * (erfc(a * M_SQRT1_2) - erfc(b * M_SQRT1_2));
    if (b <= 0) return 0.5 * (erfc(-b * M_SQRT1_2) - erfc(-a * M_SQRT1_2));
    return 1.0 - 0.5 * (erfc(-a * M_SQRT1_2) + erfc(b * M_SQRT1_2));
}

double fl_colorlaw_pdf(const fl_colorlaw *law, double c)
{
    double p = 0;
    for (int j = 0; j < law->k; j++) {
        int lo, hi;
        wrap_range(law->mu[j], law->sigma[j], c, c, &lo, &hi);
        double s = 0;
        for (int n = lo; n <= hi; n++) s += norm_pdf((c + n - law->mu[j]) / law->sigma[j]);
        p += law->w[j] * s / law->sigma[j];
    }
    return p;
}

/* P(a < C ≤ b) for 0 ≤ a ≤ b ≤ 1: the mass every wrap puts on [a, b]. */
static double mass(const fl_colorlaw *law, double a, double b)
{
    double p = 0;
    for (int j = 0; j < law->k; j++) {
        int lo, hi;
        wrap_range(law->mu[j], law->sigma[j], a, b, &lo, &hi);
        double s = 0;
        for (int n = lo; n <= hi; n++)
            s += norm_mass((a + n - law->mu[j]) / law->sigma[j],
                           (b + n - law->mu[j]) / law->sigma[j]);
        p += law->w[j] * s;
    }
    return p;
}

double fl_colorlaw_cdf(const fl_colorlaw *law, double c)
{
    if (c <= 0) return 0;
    if (c >= 1) return 1;
    return mass(law, 0, c);
}

void fl_colorlaw_bins(const fl_colorlaw *law, int nbins, double *p)
{
    assert(nbins > 0);
    for (int i = 0; i < nbins; i++)
        p[i] = mass(law, (double)i / nbins, (double)(i + 1) / nbins);
}

double fl_colorlaw_sample(const fl_colorlaw *law, fl_rng *r)
{
    double u = fl_rng_uniform(r), acc = 0;
    int j = law->k - 1;
    for (int i = 0; i < law->k - 1; i++) {
        acc += law->w[i];
        if (u < acc) {
            j = i;
            break;
        }
    }
    double c = law->mu[j] + law->sigma[j] * fl_rng_normal(r);
    c -= floor(c);
    return c < 1.0 ? c : 0.0; /* −1e-17 − floor(−1e-17) rounds to 1 */
}

void fl_color_hist(const double *c, int64_t n, int stride, int nbins, double *q)
{
    assert(nbins > 0 && stride > 0);
    for (int i = 0; i < nbins; i++) q[i] = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = c[i * stride];
        int b = (int)floor(x * nbins);
        q[b < 0 ? 0 : b >= nbins ? nbins - 1 : b] += 1;
    }
    for (int i = 0; i < nbins; i++) q[i] = n > 0 ? q[i] / (double)n : 0;
}

double fl_colorlaw_kl(const fl_colorlaw *law, const double *c, int64_t n, int stride,
                      int nbins)
{
    double *p = malloc(2 * (size_t)nbins * sizeof *p);
    if (!p || n <= 0) {
        free(p);
        return NAN;
    }
    double *q = p + nbins;
    fl_colorlaw_bins(law, nbins, p);
    fl_color_hist(c, n, stride, nbins, q);
    double kl = 0;
    for (int i = 0; i < nbins; i++)
        if (q[i] > 0) kl += q[i] * log(q[i] / p[i]);
    free(p);
    return kl;
}
