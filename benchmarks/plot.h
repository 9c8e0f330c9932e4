/* The paper's figure: fidelity (fiber loss) against consistency (mean KL of the colors),
 * one marker per cell, a line per family through its λ values, error bars the 95%
 * intervals of the cells (docs/evaluation.md), horizontal reference lines; the same per
 * color channel; loss curves. PNG and SVG through PLplot's cairo drivers, each written to
 * a temporary and renamed, so a failed plot leaves nothing. */
#ifndef FL_PLOT_H
#define FL_PLOT_H

typedef struct {
    const char *label;       /* legend entry, e.g. "NF" */
    int n;                   /* points, in λ order */
    const double *lambda;    /* (n) the λ of each point, written next to it */
    const char *param;       /* the name written before it: NULL "λ", or e.g. "γ" */
    const double *kl, *kl_lo, *kl_hi;     /* (n) mean KL over R,G,B and its interval (the
                                             bounds may be NULL or NaN: no bar) */
    const double *fib, *fib_lo, *fib_hi;  /* (n) the y value (the mean fiber loss, or
                                             d_fib) and its interval */
    const double *kl_rgb[3], *w1_rgb[3];  /* (n) KL and W1 of each channel (fl_plot_channels) */
} fl_plot_series;

typedef struct {
    const char *label;       /* e.g. "nearest neighbour" */
    double value;            /* its y value */
} fl_plot_hline;

/* Writes the plot to path; the format follows the extension (.png or .svg). The file is
 * written to a temporary name and renamed, so a failed plot leaves nothing. ylabel names
 * the y axis (NULL: the fiber loss). */
int fl_plot_fidelity_consistency(const char *path, const char *title, const char *ylabel,
                                 const fl_plot_series *series, int n_series,
                                 const fl_plot_hline *lines, int n_lines);

/* The per-channel panels: the fiber loss against the KL of R, G and B (top row) and
 * against their W1 (bottom row), each series' kl_rgb and w1_rgb; no x error bars. */
int fl_plot_channels(const char *path, const char *title, const fl_plot_series *series, int n_series,
                     const fl_plot_hline *lines, int n_lines);

/* Loss curves: a panel per set (a family), a line per entry (a λ) of y against x. */
typedef struct {
    const char *label;    /* legend entry, e.g. "λ=10" */
    int n;
    const double *x, *y;  /* (n) steps and values */
} fl_plot_curve;
typedef struct {
    const char *label;    /* the panel's title, e.g. "NF" */
    const char *ylabel;   /* NULL: "loss" */
    int n_lines;
    const fl_plot_curve *lines;
} fl_plot_curves_set;
int fl_plot_curves(const char *path, const char *title, const fl_plot_curves_set *sets, int n_sets);

#endif
