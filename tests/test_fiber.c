/* The fiber loss (core/fiber.h): the RMS of docs/design.md §2 per sample, its gradient
 * against the closed form and finite differences, a finite (zero) gradient on the
 * fiber, and clear errors on wrong shapes and on a subject that failed. */
#include <criterion/criterion.h>
#include <math.h>

#include "core/fiber.h"
#include "ctorch/ct.h"
#include "trainers/subject.h"

#define B 5
#define D 7

static void fill(double *a, int n, double scale, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        a[i] = scale * (((seed >> 8) & 0xffff) / 65536.0 - 0.5);
    }
}

/* The definition, written out: sqrt((1/d) Σ_j (a_j − b_j)²). */
static double direct(const double *a, const double *b)
{
    double s = 0;
    for (int j = 0; j < D; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
    return sqrt(s / D);
}

Test(fiber, loss_is_the_rms_over_the_representation)
{
    double a[B * D], b[B * D], got[B];
    fill(a, B * D, 4.0, 1);
    fill(b, B * D, 4.0, 2);
    ct_scope *s = ct_scope_begin();
    ct_tensor *l = fl_fiber_loss(ct_from_data(a, CT_SHAPE(B, D), CT_F64), ct_from_data(b, CT_SHAPE(B, D), CT_F64));
    cr_assert_not_null(l, "%s", ct_last_error());
    cr_assert_eq(ct_ndim(l), 1);
    cr_assert_eq(ct_size(l, 0), B);
    cr_assert_eq(ct_to_data(l, got, sizeof got), CT_OK);
    for (int i = 0; i < B; i++) {
        double want = direct(a + i * D, b + i * D);
        cr_expect(fabs(got[i] - want) < 1e-14 * want, "sample %d: %.17g, direct %.17g", i, got[i], want);
    }
    double mean = ct_item(fl_fiber_loss_mean(ct_from_data(a, CT_SHAPE(B, D), CT_F64),
                                             ct_from_data(b, CT_SHAPE(B, D), CT_F64)));
    double want = 0;
    for (int i = 0; i < B; i++) want += got[i] / B;
    cr_expect(fabs(mean - want) < 1e-14, "batch mean %.17g, mean of the losses %.17g", mean, want);
    /* a broadcast target (1, d) is the same target for every sample */
    ct_tensor *l1 = fl_fiber_loss(ct_from_data(a, CT_SHAPE(B, D), CT_F64), ct_from_data(b, CT_SHAPE(1, D), CT_F64));
    cr_assert_not_null(l1, "%s", ct_last_error());
    double g1[B];
    ct_to_data(l1, g1, sizeof g1);
    for (int i = 0; i < B; i++) cr_expect(fabs(g1[i] - direct(a + i * D, b)) < 1e-14);
    ct_scope_end(s);
}

Test(fiber, gradient_matches_the_closed_form_and_finite_differences)
{
    double a[B * D], b[B * D], w[B];
    fill(a, B * D, 2.0, 3);
    fill(b, B * D, 2.0, 4);
    fill(w, B, 2.0, 5);
    ct_scope *s = ct_scope_begin();
    ct_tensor *za = ct_from_data(a, CT_SHAPE(B, D), CT_F64), *zb = ct_from_data(b, CT_SHAPE(B, D), CT_F64);
    ct_tensor *tw = ct_from_data(w, CT_SHAPE(B), CT_F64);
    ct_set_requires_grad(za, true);
    ct_set_requires_grad(zb, true);
    /* J = Σ_i w_i L_i */
    ct_tensor *J = ct_sum(ct_mul(fl_fiber_loss(za, zb), tw));
    const ct_tensor *in[2] = {za, zb};
    ct_tensor *g[2];
    cr_assert_eq(ct_grad((const ct_tensor *const[]){J}, NULL, 1, in, 2, g, false, false, false), CT_OK,
                 "%s", ct_last_error());
    double ga[B * D], gb[B * D];
    ct_to_data(g[0], ga, sizeof ga);
    ct_to_data(g[1], gb, sizeof gb);
    double max_closed = 0, max_fd = 0;
    for (int i = 0; i < B; i++) {
        double L = direct(a + i * D, b + i * D);
        for (int j = 0; j < D; j++) {
            int k = i * D + j;
            double closed = w[i] * (a[k] - b[k]) / (D * L);   /* ∂L_i/∂a_ij = (a − b)/(d L) */
            max_closed = fmax(max_closed, fabs(ga[k] - closed));
            cr_expect(fabs(gb[k] + closed) < 1e-13, "d/dz at (%d, %d): %g, closed form %g", i, j, gb[k], -closed);
            double h = 1e-6, ap[D], am[D];
            for (int m = 0; m < D; m++) ap[m] = am[m] = a[i * D + m];
            ap[j] += h;
            am[j] -= h;
            double fd = w[i] * (direct(ap, b + i * D) - direct(am, b + i * D)) / (2 * h);
            max_fd = fmax(max_fd, fabs(ga[k] - fd));
        }
    }
    cr_expect(max_closed < 1e-13, "largest difference to the closed-form gradient %g", max_closed);
    cr_expect(max_fd < 1e-8, "largest difference to central finite differences %g", max_fd);
    ct_scope_end(s);
}

Test(fiber, a_sample_on_the_fiber_has_zero_loss_and_a_finite_gradient)
{
    double a[B * D];
    fill(a, B * D, 3.0, 6);
    for (int j = 0; j < D; j++) a[2 * D + j] += 0.5;   /* one sample off the fiber */
    double b[B * D];
    fill(b, B * D, 3.0, 6);
    ct_scope *s = ct_scope_begin();
    ct_tensor *za = ct_to_dtype(ct_from_data(a, CT_SHAPE(B, D), CT_F64), CT_F32);   /* float32 */
    ct_tensor *zb = ct_to_dtype(ct_from_data(b, CT_SHAPE(B, D), CT_F64), CT_F32);
    ct_set_requires_grad(za, true);
    ct_tensor *l = fl_fiber_loss(za, zb);
    float lv[B];
    ct_to_data(l, lv, sizeof lv);
    for (int i = 0; i < B; i++)
        if (i != 2) cr_expect_eq(lv[i], 0.0f, "sample %d: loss %g on the fiber", i, lv[i]);
    cr_expect(fabsf(lv[2] - 0.5f) < 1e-6f, "sample 2: loss %g, expected 0.5", lv[2]);
    cr_assert_eq(ct_backward(ct_sum(l), false), CT_OK, "%s", ct_last_error());
    float g[B * D];
    ct_to_data(ct_grad_of(za), g, sizeof g);
    for (int k = 0; k < B * D; k++) {
        cr_expect(isfinite(g[k]), "gradient %d is %g", k, g[k]);
        if (k / D != 2) cr_expect_eq(g[k], 0.0f, "gradient %d on the fiber is %g", k, g[k]);
        else cr_expect(fabsf(g[k] - 1.0f / D) < 1e-6f, "gradient %d is %g, expected 1/d", k, g[k]);
    }
    ct_scope_end(s);
}

Test(fiber, a_nan_representation_gives_a_nan_loss)
{
    double a[2 * D], b[2 * D];
    fill(a, 2 * D, 1.0, 7);
    fill(b, 2 * D, 1.0, 8);
    a[D + 3] = NAN;
    ct_scope *s = ct_scope_begin();
    double l[2];
    ct_to_data(fl_fiber_loss(ct_from_data(a, CT_SHAPE(2, D), CT_F64), ct_from_data(b, CT_SHAPE(2, D), CT_F64)),
               l, sizeof l);
    cr_expect(isfinite(l[0]));
    cr_expect(isnan(l[1]), "a NaN representation scored %g", l[1]);
    ct_scope_end(s);
}

Test(fiber, wrong_shapes_fail_with_a_message)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *l = fl_fiber_loss(ct_zeros(CT_SHAPE(2, 3, 4), CT_F32), ct_zeros(CT_SHAPE(2, 3, 4), CT_F32));
    cr_expect_null(l);
    cr_expect(strstr(ct_last_error(), "(B, d)") != NULL, "message: %s", ct_last_error());
    l = fl_fiber_loss(ct_zeros(CT_SHAPE(2, 3), CT_F32), ct_zeros(CT_SHAPE(2, 4), CT_F32));
    cr_expect_null(l);
    cr_expect_null(fl_fiber_loss(NULL, ct_zeros(CT_SHAPE(2, 3), CT_F32)));
    ct_scope_end(s);
}

static ct_tensor *broken_subject(void *ctx, const ct_tensor *x)
{
    (void)ctx;
    (void)x;
    ct_set_error("subject broken: its weights file is gone");
    return NULL;
}

Test(fiber, a_failed_subject_keeps_its_own_error_in_the_message)
{
    fl_subject *subj = fl_subject_custom("broken", D, broken_subject, NULL, NULL);
    cr_assert_not_null(subj, "%s", ct_last_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_zeros(CT_SHAPE(2, 3, 28, 28), CT_F32), *z = ct_zeros(CT_SHAPE(2, D), CT_F32);
    cr_expect_null(fl_fiber_loss(fl_subject_forward(subj, x), z));
    const char *m = ct_last_error();
    cr_expect(strstr(m, "fl_fiber_loss") && strstr(m, "its weights file is gone"), "message: %s", m);
    cr_expect_null(fl_fiber_loss_mean(fl_subject_forward(subj, x), z));
    m = ct_last_error();
    cr_expect(strstr(m, "its weights file is gone") && !strstr(m, "NULL input"), "message: %s", m);
    /* a NULL that no failure explains is still said as such */
    ct_clear_error();
    cr_expect_null(fl_fiber_loss(z, NULL));
    cr_expect(strstr(ct_last_error(), "NULL z") != NULL, "message: %s", ct_last_error());
    ct_scope_end(s);
    fl_subject_free(subj);
}
