/* The exact color law of the color-MNIST benchmark (DESIGN.md §1): a wrapped Gaussian
 * mixture on [0, 1) for each channel's background color c_k, and the exact quantities
 * the metrics need from it (density, CDF, bin probabilities). */
#ifndef FL_COLORLAW_H
#define FL_COLORLAW_H

#include <stdint.h>

#include "core/rng.h"

#define FL_COLOR_COMPONENTS 3
typedef struct {
    int k;                              /* number of mixture components */
    double w[FL_COLOR_COMPONENTS];      /* weights, sum 1 */
    double mu[FL_COLOR_COMPONENTS];
    double sigma[FL_COLOR_COMPONENTS];
} fl_colorlaw;

/* The paper's law: w = (0.60, 0.35, 0.05), μ = (0.70, 0.50, 0.10),
 * σ = (0.080, 0.015, 0.020). */
fl_colorlaw fl_colorlaw_paper(void);

/* Density of the wrapped mixture at c ∈ [0, 1) (sums the wraps n ∈ ℤ that matter). */
double fl_colorlaw_pdf(const fl_colorlaw *law, double c);
/* P(C ≤ c) for c ∈ [0, 1]; 0 at 0 and 1 at 1. */
double fl_colorlaw_cdf(const fl_colorlaw *law, double c);
/* Exact probabilities of nbins equal bins on [0, 1) (integrals of the density,
 * from the CDF), written to p[nbins]; they sum to 1. */
void fl_colorlaw_bins(const fl_colorlaw *law, int nbins, double *p);
/* One draw: pick component j with probability w_j, draw N(μ_j, σ_j²), wrap into [0, 1). */
double fl_colorlaw_sample(const fl_colorlaw *law, fl_rng *r);

/* Histogram of n colors c[i * stride] on nbins equal bins of [0, 1), as fractions
 * (they sum to 1) written to q[nbins]; values outside [0, 1) count in the end bins. */
void fl_color_hist(const double *c, int64_t n, int stride, int nbins, double *q);
/* KL(q ‖ p) = Σ q_i log(q_i / p_i) between the histogram q of n colors c[i * stride]
 * and the exact bin probabilities p of law (DESIGN.md §5); empty bins contribute 0.
 * NAN when n ≤ 0 or out of memory. */
double fl_colorlaw_kl(const fl_colorlaw *law, const double *c, int64_t n, int stride,
                      int nbins);

#endif
