/* The exact pixel distance to the true fiber (fl_fiber_distance_f32, DESIGN.md §5):
 * zero for exact recolorings of the digit at the branch ends of colorize (0, just below
 * and above 0.5, just below 1), equal to a brute-force minimum over a fine grid of
 * colors for arbitrary images, and large for another digit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "datasets/colormnist.h"

#define H 28
#define W 28
#define PX (H * W)

/* A digit-like stroke image: a ring (shape 0) or a bar (shape 1), soft edges, a blank
 * left column. */
static void digit(int shape, float *g)
{
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            double v;
            if (shape == 0) {
                double d = hypot(r - 13.5, c - 13.5);
                v = exp(-0.5 * (d - 8) * (d - 8) / 2.0);
            } else {
                v = exp(-0.5 * (c - 14) * (c - 14) / 2.0) * (r > 4 && r < 24);
            }
            g[r * W + c] = c == 0 ? 0.0f : (float)v;
        }
}

static void recolor(const float *g, const float bg[3], float *img)
{
    float fg[3];
    for (int k = 0; k < 3; k++) fg[k] = (float)fl_color_fg(bg[k]);
    fl_colorize_f32(g, bg, fg, 1, H, W, img);
}

Test(dfib, exact_recolorings_are_on_the_fiber_at_every_branch_end)
{
    float g[PX], img[3 * PX];
    digit(0, g);
    const float below_half = nextafterf(0.5f, 0.0f), above_half = nextafterf(0.5f, 1.0f),
                below_one = nextafterf(1.0f, 0.0f);
    const float colors[][3] = {
        {0.0f, 0.0f, 0.0f},         {below_half, above_half, below_one}, {0.5f, 0.25f, 0.75f},
        {0.7f, 0.5f, 0.1f},         {above_half, below_one, 0.0f},       {0.123f, 0.987f, 0.4999f},
    };
    for (size_t i = 0; i < sizeof colors / sizeof colors[0]; i++) {
        recolor(g, colors[i], img);
        double c[3];
        double d = fl_fiber_distance_f32(img, g, H, W, c);
        cr_expect(d < 1e-7, "colors %zu: d_fib %g", i, d);
        for (int k = 0; k < 3; k++)
            cr_expect(fabs(c[k] - colors[i][k]) < 1e-6, "colors %zu channel %d: fit %.9f, true %.9f", i, k,
                      c[k], (double)colors[i][k]);
    }
}

/* min over c on a grid of m points in [0, 1) of the per-channel residual, and d_fib. */
static double brute_force(const float *img, const float *g, int m)
{
    double total = 0;
    for (int k = 0; k < 3; k++) {
        double best = INFINITY;
        for (int i = 0; i <= m; i++) {
            double c = (double)i / m;
            if (c >= 1) c = 1 - 1e-12;   /* the closure's end: c → 1⁻ */
            double f = fl_color_fg(c), r = 0;
            for (int j = 0; j < PX; j++) {
                double x = (1 - g[j]) * c + g[j] * f, e = img[k * PX + j] - x;
                r += e * e;
            }
            best = r < best ? r : best;
        }
        /* the other side of 0.5: c → 0.5⁻ (f → 1) */
        double r = 0;
        for (int j = 0; j < PX; j++) {
            double x = 0.5 + 0.5 * g[j], e = img[k * PX + j] - x;
            r += e * e;
        }
        total += r < best ? r : best;
    }
    return sqrt(total / (3.0 * PX));
}

Test(dfib, equals_a_brute_force_minimum_over_colors)
{
    fl_rng r;
    fl_rng_seed(&r, 99);
    float g[PX], img[3 * PX];
    digit(0, g);
    for (int trial = 0; trial < 6; trial++) {
        /* a recoloring with noise, or pure noise */
        float bg[3] = {(float)fl_rng_uniform(&r), (float)fl_rng_uniform(&r), (float)fl_rng_uniform(&r)};
        recolor(g, bg, img);
        double amp = trial < 3 ? 0.1 * (trial + 1) : 0;
        for (int j = 0; j < 3 * PX; j++) {
            double v = trial < 3 ? img[j] + amp * (fl_rng_uniform(&r) - 0.5) : fl_rng_uniform(&r);
            img[j] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
        }
        double d = fl_fiber_distance_f32(img, g, H, W, NULL), b = brute_force(img, g, 20000);
        /* the grid's minimum is at least the true one and within its spacing of it */
        cr_expect(d <= b + 1e-9, "trial %d: closed form %.9f above the grid's %.9f", trial, d, b);
        cr_expect(b - d < 1e-6, "trial %d: closed form %.9f, grid %.9f", trial, d, b);
    }
}

Test(dfib, another_digit_is_far_from_the_fiber)
{
    float ring[PX], bar[PX], img[3 * PX];
    digit(0, ring);
    digit(1, bar);
    const float bg[3] = {0.7f, 0.5f, 0.1f};
    recolor(bar, bg, img);
    double d = fl_fiber_distance_f32(img, ring, H, W, NULL);
    cr_expect(d > 0.1, "a bar against the ring's fiber: d_fib %g", d);
    cr_expect(fl_fiber_distance_f32(img, bar, H, W, NULL) < 1e-7);
}
