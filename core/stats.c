/* Student-t quantiles (via the regularized incomplete beta function) and the two kinds
 * of confidence interval. */
#include "core/stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

fl_ci fl_ci_none(double mean) { return (fl_ci){mean, NAN, NAN}; }

/* The continued fraction of I_x(a, b) (modified Lentz), for x < (a + 1) / (a + b + 2). */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 500; m++) {
        double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1) * (a + m2));     /* even step */
        d = 1 + num * d;
        c = 1 + num / c;
        d = 1 / (fabs(d) < tiny ? tiny : d);
        c = fabs(c) < tiny ? tiny : c;
        h *= d * c;
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)); /* odd step */
        d = 1 + num * d;
        c = 1 + num / c;
        d = 1 / (fabs(d) < tiny ? tiny : d);
        c = fabs(c) < tiny ? tiny : c;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b), 0 ≤ x ≤ 1. */
static double inc_beta(double a, double b, double x)
{
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double lnf = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(lnf) * beta_cf(a, b, x) / a;
    return 1 - exp(lnf) * beta_cf(b, a, 1 - x) / b;
}

double fl_t_cdf(double t, double df)
{
    if (isnan(t) || !(df > 0)) return NAN;
    if (isinf(t)) return t > 0 ? 1 : 0;
    double tail = 0.5 * inc_beta(df / 2, 0.5, df / (df + t * t));   /* P(T > |t|) */
    return t > 0 ? 1 - tail : tail;
}

double fl_t_quantile(double p, double df)
{
    if (!(p > 0 && p < 1) || !(df > 0)) return NAN;
    if (p == 0.5) return 0;
    if (p < 0.5) return -fl_t_quantile(1 - p, df);
    /* bracket, then bisect: the CDF is monotone; 200 halvings reach double precision */
    double lo = 0, hi = 1;
    while (fl_t_cdf(hi, df) < p && hi < 1e300) hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (fl_t_cdf(mid, df) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

fl_ci fl_ci_student_t(const double *x, int64_t n, double level)
{
    if (n < 1) return fl_ci_none(NAN);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return fl_ci_none(NAN);
        sum += x[i];
    }
    double mean = sum / (double)n;
    if (n < 2) return fl_ci_none(mean);
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    double half = fl_t_quantile(0.5 * (1 + level), (double)(n - 1)) * sqrt(ss / (double)(n - 1) / (double)n);
    return (fl_ci){mean, mean - half, mean + half};
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of n sorted values, linear between order statistics. */
static double quantile_sorted(const double *v, int64_t n, double q)
{
    double pos = q * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

fl_ci fl_ci_percentile(double mean, double *draws, int64_t n, double level)
{
    if (n < 1) return fl_ci_none(mean);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(draws[i])) return fl_ci_none(mean);
    qsort(draws, (size_t)n, sizeof *draws, cmp_double);
    return (fl_ci){mean, quantile_sorted(draws, n, 0.5 * (1 - level)),
                   quantile_sorted(draws, n, 0.5 * (1 + level))};
}

const char *fl_ci_format(const fl_ci *ci, int digits, char *buf, size_t n)
{
    if (isnan(ci->mean)) snprintf(buf, n, "n/a");
    else if (isnan(ci->lo) || isnan(ci->hi)) snprintf(buf, n, "%.*f", digits, ci->mean);
    else snprintf(buf, n, "%.*f [%.*f, %.*f]", digits, ci->mean, digits, ci->lo, digits, ci->hi);
    return buf;
}
