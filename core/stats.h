/* Confidence intervals (DESIGN.md §5 "Beyond the paper"): every mean fiberlab reports
 * comes with a 95% interval —
 *   within a run   a percentile bootstrap over the evaluation targets (the samples of a
 *                  target are not independent of each other; the targets are);
 *   across seeds   Student-t: mean ± t_{(1+level)/2, n−1} · s / √n, s with ddof 1.
 * An interval that cannot be formed (one seed, no resamples) is NaN, NaN. */
#ifndef FL_STATS_H
#define FL_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double mean, lo, hi;
} fl_ci;

/* A CI with no interval: mean, NaN, NaN. */
fl_ci fl_ci_none(double mean);

/* The p-quantile (0 < p < 1) of Student's t with df > 0 degrees of freedom; NaN outside. */
double fl_t_quantile(double p, double df);
/* The CDF of Student's t with df degrees of freedom at t. */
double fl_t_cdf(double t, double df);

/* Student-t interval of the mean of n values at level (e.g. 0.95); NaN bounds when
 * n < 2 (the mean alone), NaN mean when n < 1 or a value is not finite. */
fl_ci fl_ci_student_t(const double *x, int64_t n, double level);

/* The percentile interval of n bootstrap draws (sorted in place) around the point
 * estimate mean: the (1 − level)/2 and (1 + level)/2 quantiles, linear between order
 * statistics (numpy's default). Non-finite draws make the bounds NaN. */
fl_ci fl_ci_percentile(double mean, double *draws, int64_t n, double level);

/* "1.2345 [1.2001, 1.2712]" with digits decimals (the mean alone without an interval,
 * "n/a" for a NaN mean) into buf; returns buf. */
const char *fl_ci_format(const fl_ci *ci, int digits, char *buf, size_t n);

#endif
