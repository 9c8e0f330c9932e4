/* Color MNIST (DESIGN.md §1): the color variants, colorize, the background estimate b̂
 * and the analytic inverse decolorize — on plain float arrays (building the dataset,
 * batches) and on ctorch tensors (differentiable: subject models start with
 * decolorize and fiber-loss gradients flow through it).
 *
 *   colored x̃_k = (1 − x) · b_k + x · f_k,          b = c, f_k = (c_k + 0.5) mod 1
 *   b̂_k = mean over rows of x̃_k(·, 0)               (the left pixel column)
 *   decolorize(x̃) = mean_k (x̃_k − b̂_k) / (f(b̂_k) − b̂_k)
 *
 * decolorize(colorize(x, c)) = x whenever the left column of x is blank (0). */
#ifndef FL_COLORMNIST_H
#define FL_COLORMNIST_H

#include <stdint.h>

#include "core/colorlaw.h"
#include "ctorch/ct.h"

typedef enum {
    FL_VARIANT_CORRELATED = 0, /* c ~ p per channel, f = (c + 0.5) mod 1 (the benchmark) */
    FL_VARIANT_OOD,            /* background and foreground drawn independently from p */
    FL_VARIANT_FIXED,          /* one constant c for every image (the leakage test) */
    FL_VARIANT_COUNT
} fl_variant;
#define FL_VARIANTS "correlated|ood|fixed"
const char *fl_variant_name(fl_variant v);
int fl_variant_parse(const char *name, fl_variant *out); /* -1 and a message if unknown */

/* The foreground of background b: (b + 0.5) mod 1. */
double fl_color_fg(double b);

/* Background and foreground colors of n images, (n, 3) each, for a variant: draws
 * from law with r in image order (correlated: c_R, c_G, c_B; ood: the three
 * background then the three foreground channels; fixed: no draw, fixed[3]).
 * Colors are rounded to float (the precision of the stored images) and kept in
 * [0, 1), so that the left column of an image holds c exactly and b̂ recovers it. */
void fl_draw_colors(fl_variant v, const fl_colorlaw *law, const double fixed[3], fl_rng *r,
                    int64_t n, float *bg, float *fg);

/* ---- plain arrays (row-major, float; arithmetic in double) -------------------------- */
/* gray (n, h, w) in [0, 1], bg and fg (n, 3) -> out (n, 3, h, w). */
void fl_colorize_f32(const float *gray, const float *bg, const float *fg, int64_t n, int h,
                     int w, float *out);
/* img (n, 3, h, w) -> bg (n, 3): the mean of each channel's left column. */
void fl_background_f32(const float *img, int64_t n, int h, int w, float *bg);
/* img (n, 3, h, w) -> gray (n, h, w). */
void fl_decolorize_f32(const float *img, int64_t n, int h, int w, float *gray);

/* The exact pixel distance of an image to the true fiber of gray digit x* (DESIGN.md
 * §5): the fiber is {colorize(x*, c) : c ∈ [0, 1)³}, and per channel colorize is affine
 * in c on each half of [0, 1) (c < 0.5: c + 0.5·x*; c ≥ 0.5: c − 0.5·x*), so the best c
 * of each channel is a clipped mean on each branch, the smaller residual wins:
 *     d_fib(x̂) = sqrt( Σ_k min_c ‖x̂_k − colorize_k(x*, c)‖² / (3·h·w) ).
 * img (3, h, w), gray (h, w); the minimising colors go to c_best[3] (may be NULL): a
 * second, whole-image color estimate. Branch ends count as reached (the fiber's
 * closure: c → 0.5⁻ and c → 1⁻). Arithmetic in double. */
double fl_fiber_distance_f32(const float *img, const float *gray, int h, int w, double c_best[3]);

/* ---- ctorch tensors, differentiable (any float dtype, any device) ------------------- *
 * Results follow ctorch's rules: owned by the innermost open scope, else by the caller;
 * NULL and ct_last_error() on a NULL input or a wrong shape. b̂ is averaged in double,
 * so it is exact on colorized images even in float32. */
ct_tensor *fl_background(const ct_tensor *x);  /* (B, 3, H, W) -> (B, 3) */
ct_tensor *fl_decolorize(const ct_tensor *x);  /* (B, 3, H, W) -> (B, 1, H, W) */
/* How a subject decolorizes (subject.decolorize). All three equal decolorize on every
 * colorized image; they differ off the fiber:
 *   signed    mean_k (x̃_k − b̂_k) / (f(b̂_k) − b̂_k) (DESIGN.md §1): jumps where b̂_k crosses
 *             0.5 — f(b̂_k) − b̂_k changes sign and that channel's digit turns negative;
 *   abs       mean_k |x̃_k − b̂_k| / 0.5 (the authors', DESIGN.md §7): continuous, but it
 *             rectifies noise, so a noisy background decolorizes to a positive gray;
 *   contrast  mean_k s_k (x̃_k − b̂_k) / 0.5 with s_k the sign of Σ_ij (x̃_k − b̂_k), the
 *             channel's polarity read off its own contrast: linear in x̃ (noise averages
 *             out), and its only jump is at images without contrast in a channel. */
typedef enum { FL_DECOLORIZE_SIGNED = 0, FL_DECOLORIZE_ABS, FL_DECOLORIZE_CONTRAST, FL_DECOLORIZE_COUNT } fl_decolorize_mode;
#define FL_DECOLORIZE_MODES "signed|abs|contrast"
const char *fl_decolorize_mode_name(fl_decolorize_mode m);
int fl_decolorize_mode_parse(const char *name, fl_decolorize_mode *out); /* -1 + message */
ct_tensor *fl_decolorize_as(const ct_tensor *x, fl_decolorize_mode m);  /* (B, 3, H, W) -> (B, 1, H, W) */
/* gray (B, 1, H, W), bg (B, 3), fg (B, 3) -> (B, 3, H, W). */
ct_tensor *fl_colorize(const ct_tensor *gray, const ct_tensor *bg, const ct_tensor *fg);
ct_tensor *fl_color_fg_t(const ct_tensor *bg);  /* (b + 0.5) mod 1, any shape */

#endif
