/* Consistency metrics of the evaluation (DESIGN.md §5): how far the colors of a set of
 * samples are from the exact color law p, per channel R, G, B.
 *
 *   KL(q ‖ p) = Σ_i q_i log(q_i / p_i) on nbins equal bins of [0, 1): q the samples'
 *       histogram, p the exact bin probabilities (integrals of the density); empty
 *       bins of q contribute 0.
 *   W1(q, p) = ∫₀¹ |F_q(c) − F_p(c)| dc: F_q the empirical CDF of the samples, F_p the
 *       exact CDF; integrated piecewise between the samples (and a fine grid), split
 *       where the two CDFs cross, so the result is exact to ~1e-12. */
#ifndef FL_METRICS_H
#define FL_METRICS_H

#include <stdint.h>

#include "core/colorlaw.h"

/* KL(q ‖ p) of n colors c[i * stride] (values outside [0, 1) count in the end bins);
 * NAN when n ≤ 0. The same as fl_colorlaw_kl. */
double fl_metric_kl(const fl_colorlaw *law, const double *c, int64_t n, int stride, int nbins);
/* W1 between the n colors c[i * stride] (clamped into [0, 1]) and law; NAN when n ≤ 0
 * or out of memory. */
double fl_metric_w1(const fl_colorlaw *law, const double *c, int64_t n, int stride);

/* Both metrics for every channel of n colors (n, 3) row-major, and their means. */
typedef struct {
    double kl[3], kl_mean;
    double w1[3], w1_mean;
} fl_color_metrics;
/* -1 and a message when n ≤ 0 or out of memory; a channel with a non-finite color gets
 * NaN metrics (and NaN means). */
int fl_color_metrics_of(const fl_colorlaw *law, const float *colors, int64_t n, int nbins,
                        fl_color_metrics *out);

/* The color metrics of weighted copies of one fixed set of n colors (n, 3), for the
 * bootstrap: after an O(n) set-up each call costs O(n + nbins + W1 cells), so a
 * thousand resamples of ten thousand samples take a fraction of a second. KL is
 * exact (the same bins as fl_color_metrics_of); W1 is a Riemann sum on
 * FL_W1_RESAMPLE_CELLS cells (error ≤ one cell width, 1.2e-4) — resamples are only
 * ever compared with each other and with the same sum on the original set. */
#define FL_W1_RESAMPLE_CELLS 8192
typedef struct fl_color_resampler fl_color_resampler;
/* NULL and a message when n ≤ 0 or out of memory. colors is copied. */
fl_color_resampler *fl_color_resampler_new(const fl_colorlaw *law, const float *colors, int64_t n,
                                           int nbins);
/* The metrics of the multiset holding color i w[i] ≥ 0 times (not all zero); a channel
 * with a non-finite color gets NaN. */
void fl_color_resampler_eval(const fl_color_resampler *r, const double *w, fl_color_metrics *out);
void fl_color_resampler_free(fl_color_resampler *r);   /* NULL is a no-op */

/* Mean and population standard deviation (ddof 0) of n values; NAN when n ≤ 0. */
void fl_mean_std(const float *x, int64_t n, double *mean, double *std);
/* Median of n values (numpy's: the mean of the two middle ones when n is even); NAN when
 * n ≤ 0, out of memory, or a value is NaN. */
double fl_median(const float *x, int64_t n);

#endif
