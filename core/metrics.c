/* KL and Wasserstein-1 of sample colors against the exact color law. */
#include "core/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/log.h"

double fl_metric_kl(const fl_colorlaw *law, const double *c, int64_t n, int stride, int nbins)
{
    return fl_colorlaw_kl(law, c, n, stride, nbins);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ∫_a^b F_p by 5-point Gauss–Legendre: the pieces are at most 1/W1_GRID wide, far
 * below the narrowest component (σ = 0.015), so this is exact to rounding. */
static double int_cdf(const fl_colorlaw *law, double a, double b)
{
    static const double x[5] = {0.0, -0.5384693101056831, 0.5384693101056831,
                                -0.9061798459386640, 0.9061798459386640};
    static const double w[5] = {0.5688888888888889, 0.4786286704993665, 0.4786286704993665,
                                0.2369268850561891, 0.2369268850561891};
    double m = 0.5 * (a + b), h = 0.5 * (b - a), s = 0;
    for (int i = 0; i < 5; i++) s += w[i] * fl_colorlaw_cdf(law, m + h * x[i]);
    return s * h;
}

/* ∫_a^b |q − F_p| where q is constant: F_p is increasing, so q − F_p changes sign at
 * most once; find that point by bisection and integrate each side without the |·|. */
static double piece(const fl_colorlaw *law, double a, double b, double q)
{
    if (b <= a) return 0;
    double fa = fl_colorlaw_cdf(law, a) - q, fb = fl_colorlaw_cdf(law, b) - q;
    if (fa >= 0) return int_cdf(law, a, b) - q * (b - a);      /* F_p ≥ q throughout */
    if (fb <= 0) return q * (b - a) - int_cdf(law, a, b);      /* F_p ≤ q throughout */
    double lo = a, hi = b;
    for (int i = 0; i < 60 && hi - lo > 1e-15; i++) {
        double m = 0.5 * (lo + hi);
        if (fl_colorlaw_cdf(law, m) < q) lo = m;
        else hi = m;
    }
    double x = 0.5 * (lo + hi);
    return (q * (x - a) - int_cdf(law, a, x)) + (int_cdf(law, x, b) - q * (b - x));
}

#define W1_GRID 1024
double fl_metric_w1(const fl_colorlaw *law, const double *c, int64_t n, int stride)
{
    if (n <= 0) return NAN;
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return NAN;
    for (int64_t i = 0; i < n; i++) {
        double x = c[i * stride];
        v[i] = x < 0 ? 0 : x > 1 ? 1 : x;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    /* walk the merged breakpoints: the samples and the grid k / W1_GRID */
    double total = 0, a = 0;
    int64_t i = 0;   /* samples ≤ a counted so far */
    int k = 1;
    while (i < n && v[i] <= 0) i++;
    while (a < 1) {
        double next_grid = (double)k / W1_GRID;
        double next = i < n && v[i] < next_grid ? v[i] : next_grid;
        total += piece(law, a, next, (double)i / (double)n);
        a = next;
        if (next == next_grid) k++;
        while (i < n && v[i] <= a) i++;
    }
    free(v);
    return total;
}

int fl_color_metrics_of(const fl_colorlaw *law, const float *colors, int64_t n, int nbins,
                        fl_color_metrics *out)
{
    if (n <= 0) return fl_fail("color metrics: no samples");
    double *c = malloc((size_t)n * 3 * sizeof *c);
    if (!c) return fl_fail("out of memory");
    bool finite[3] = {true, true, true};
    for (int64_t i = 0; i < 3 * n; i++) {
        c[i] = colors[i];
        if (!isfinite(c[i])) finite[i % 3] = false;
    }
    out->kl_mean = out->w1_mean = 0;
    int rc = 0;
    for (int k = 0; k < 3; k++) {
        /* a NaN color (a sampler that gave NaN images) makes its channel's metrics NaN */
        out->kl[k] = finite[k] ? fl_metric_kl(law, c + k, n, 3, nbins) : NAN;
        out->w1[k] = finite[k] ? fl_metric_w1(law, c + k, n, 3) : NAN;
        if (finite[k] && (isnan(out->kl[k]) || isnan(out->w1[k]))) rc = fl_fail("color metrics: out of memory");
        out->kl_mean += out->kl[k] / 3;
        out->w1_mean += out->w1[k] / 3;
    }
    free(c);
    return rc;
}

struct fl_color_resampler {
    int64_t n;
    int nbins;
    bool finite[3];
    int32_t *bin;       /* (n, 3) KL bin of each color */
    int32_t *cell;      /* (n, 3) W1 cell of each color */
    double *p;          /* (nbins) exact bin probabilities */
    double *fp;         /* (cells) F_p at the right edge of each cell */
    double *acc;        /* scratch: (max(nbins, cells)) */
};

fl_color_resampler *fl_color_resampler_new(const fl_colorlaw *law, const float *colors, int64_t n,
                                           int nbins)
{
    if (n <= 0) {
        fl_fail("color metrics: no samples");
        return NULL;
    }
    fl_color_resampler *r = calloc(1, sizeof *r);
    int scratch = nbins > FL_W1_RESAMPLE_CELLS ? nbins : FL_W1_RESAMPLE_CELLS;
    if (r) {
        r->bin = malloc((size_t)n * 3 * sizeof *r->bin);
        r->cell = malloc((size_t)n * 3 * sizeof *r->cell);
        r->p = malloc((size_t)nbins * sizeof *r->p);
        r->fp = malloc(FL_W1_RESAMPLE_CELLS * sizeof *r->fp);
        r->acc = malloc((size_t)scratch * sizeof *r->acc);
    }
    if (!r || !r->bin || !r->cell || !r->p || !r->fp || !r->acc) {
        fl_color_resampler_free(r);
        fl_fail("out of memory");
        return NULL;
    }
    r->n = n;
    r->nbins = nbins;
    r->finite[0] = r->finite[1] = r->finite[2] = true;
    for (int64_t i = 0; i < 3 * n; i++) {
        double c = colors[i];
        if (!isfinite(c)) {
            r->finite[i % 3] = false;
            c = 0;
        }
        int b = (int)floor(c * nbins);   /* outside [0, 1): the end bins, as fl_color_hist */
        r->bin[i] = b < 0 ? 0 : b >= nbins ? nbins - 1 : b;
        int k = (int)floor(c * FL_W1_RESAMPLE_CELLS);
        r->cell[i] = k < 0 ? 0 : k >= FL_W1_RESAMPLE_CELLS ? FL_W1_RESAMPLE_CELLS - 1 : k;
    }
    fl_colorlaw_bins(law, nbins, r->p);
    for (int k = 0; k < FL_W1_RESAMPLE_CELLS; k++)
        r->fp[k] = fl_colorlaw_cdf(law, (double)(k + 1) / FL_W1_RESAMPLE_CELLS);
    return r;
}

void fl_color_resampler_eval(const fl_color_resampler *r, const double *w, fl_color_metrics *out)
{
    double total = 0;
    for (int64_t i = 0; i < r->n; i++) total += w[i];
    out->kl_mean = out->w1_mean = 0;
    for (int k = 0; k < 3; k++) {
        double kl = NAN, w1 = NAN;
        if (r->finite[k] && total > 0) {
            double *h = r->acc;
            for (int b = 0; b < r->nbins; b++) h[b] = 0;
            for (int64_t i = 0; i < r->n; i++) h[r->bin[3 * i + k]] += w[i];
            kl = 0;
            for (int b = 0; b < r->nbins; b++)
                if (h[b] > 0) kl += h[b] / total * log(h[b] / total / r->p[b]);
            for (int c = 0; c < FL_W1_RESAMPLE_CELLS; c++) h[c] = 0;
            for (int64_t i = 0; i < r->n; i++) h[r->cell[3 * i + k]] += w[i];
            double fq = 0;
            w1 = 0;
            for (int c = 0; c < FL_W1_RESAMPLE_CELLS; c++) {
                fq += h[c] / total;
                w1 += fabs(fq - r->fp[c]);
            }
            w1 /= FL_W1_RESAMPLE_CELLS;
        }
        out->kl[k] = kl;
        out->w1[k] = w1;
        out->kl_mean += kl / 3;
        out->w1_mean += w1 / 3;
    }
}

void fl_color_resampler_free(fl_color_resampler *r)
{
    if (!r) return;
    free(r->bin);
    free(r->cell);
    free(r->p);
    free(r->fp);
    free(r->acc);
    free(r);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double fl_median(const float *x, int64_t n)
{
    if (n <= 0) return NAN;
    float *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    double med = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i])) med = NAN;
        s[i] = x[i];
    }
    if (!isnan(med)) {
        qsort(s, (size_t)n, sizeof *s, cmp_float);
        med = n % 2 ? s[n / 2] : 0.5 * ((double)s[n / 2 - 1] + (double)s[n / 2]);
    }
    free(s);
    return med;
}

void fl_mean_std(const float *x, int64_t n, double *mean, double *std)
{
    if (n <= 0) {
        *mean = *std = NAN;
        return;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double m = s / (double)n, v = 0;
    for (int64_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = sqrt(v / (double)n);
}
