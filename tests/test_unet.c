/* The pixel UNet (architectures/unet.h): its shapes, the specs it refuses, a PyTorch twin
 * (tests/fixtures/check_unet.py) that computes the same ε and the same gradients in
 * float64, and a finite-difference check of the gradients. */
#include <sys/wait.h>

#include "python_check.h"
#include "test_ctorch_util.h"

#include "architectures/unet.h"
#include "core/log.h"

/* 3 × 28 × 28, three levels (28, 14, 7), tiny widths. */
static fl_unet_spec tiny(void)
{
    return (fl_unet_spec){.channels = 3, .height = 28, .width = 28, .levels = 3,
                          .widths = {8, 16, 12}, .blocks = 1, .groups = 4, .embed = 8,
                          .time_dim = 16};
}

/* Every parameter moved away from its initialisation (the zero-initialised convs too),
 * so that every gradient is non-trivial. */
static void perturb(ct_params *ps, ct_gen *g, double scale)
{
    for (int i = 0; i < ct_params_count(ps); i++) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *p = ct_params_at(ps, i);
        cr_assert_eq(ct_copy_(p, ct_add(p, ct_muls(ct_randn_like(p, g), scale))), CT_OK, "%s",
                     ct_last_error());
        ct_scope_end(s);
    }
}

CT_TEST(unet, maps_images_to_images_of_the_same_shape_and_starts_at_zero)
{
    fl_unet_spec sp = tiny();
    ct_gen *g = ct_gen_new(1);
    ct_params *ps = ct_params_new();
    fl_unet *u = fl_unet_new(&sp, ps, "unet", g);
    cr_assert_not_null(u, "%s", fl_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(5, 3, 28, 28), ct_float_dtype(), g);
    ct_tensor *t = ct_rand(CT_SHAPE(5, 1), ct_float_dtype(), g);
    ct_tensor *y = fl_unet_forward(u, x, t);
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_expect_eq(ct_ndim(y), 4);
    for (int d = 0; d < 4; d++) cr_expect_eq(ct_size(y, d), ct_size(x, d), "dim %d", d);
    /* DDPM's zero-initialised output conv: ε = 0 before training */
    cr_expect_eq(ct_item(ct_max_all(ct_abs(y))), 0.0);
    perturb(ps, g, 0.1);
    y = fl_unet_forward(u, x, t);
    cr_expect_gt(ct_item(ct_max_all(ct_abs(y))), 0.0);
    cr_expect(isfinite(ct_item(ct_sum(y))));
    /* and two levels at 8 × 8, two blocks a level: other sizes build and run too */
    fl_unet_spec sp2 = {.channels = 1, .height = 8, .width = 8, .levels = 2, .widths = {4, 8},
                        .blocks = 2, .groups = 2, .embed = 4, .time_dim = 8};
    fl_unet *u2 = fl_unet_new(&sp2, ps, "unet2", g);
    cr_assert_not_null(u2, "%s", fl_error());
    ct_tensor *y2 = fl_unet_forward(u2, ct_randn(CT_SHAPE(2, 1, 8, 8), ct_float_dtype(), g),
                                    ct_rand(CT_SHAPE(2, 1), ct_float_dtype(), g));
    cr_assert_not_null(y2, "%s", ct_last_error());
    cr_expect(ct_size(y2, 0) == 2 && ct_size(y2, 1) == 1 && ct_size(y2, 2) == 8 && ct_size(y2, 3) == 8);
    ct_scope_end(s);
    fl_unet_free(u2);
    fl_unet_free(u);
    ct_params_free(ps);
    ct_gen_free(g);
}

/* The spec is refused with a message naming the network and what is wrong. */
static void expect_refused(fl_unet_spec sp, const char *what)
{
    ct_params *ps = ct_params_new();
    ct_gen *g = ct_gen_new(0);
    fl_unet *u = fl_unet_new(&sp, ps, "prior.eps", g);
    cr_expect_null(u, "a spec with %s was built", what);
    cr_expect(strstr(fl_error(), "prior.eps") && strstr(fl_error(), what), "'%s' should name '%s'",
              fl_error(), what);
    fl_unet_free(u);
    ct_params_free(ps);
    ct_gen_free(g);
}

CT_TEST(unet, refuses_specs_it_cannot_build)
{
    fl_unet_spec sp = tiny();
    sp.levels = 4;   /* 28 → 14 → 7 → 3.5 */
    expect_refused(sp, "cannot be halved");
    sp = tiny();
    sp.widths[1] = 10;   /* not a multiple of 4 groups */
    expect_refused(sp, "GroupNorm");
    sp = tiny();
    sp.embed = 7;
    expect_refused(sp, "not even");
    sp = tiny();
    sp.blocks = 0;
    expect_refused(sp, "blocks per level");
    sp = tiny();
    sp.levels = 0;
    expect_refused(sp, "levels");
}

/* Writes what the twin needs: spec, weights, inputs, output and gradients of <v, y>. */
static void write_reference(const char *path, const fl_unet_spec *sp, ct_params *ps,
                            const ct_tensor *x, const ct_tensor *t, const ct_tensor *v,
                            const ct_tensor *y, const ct_tensor *grad_x, double y_shift)
{
    ct_scope *s = ct_scope_begin();
    ct_archive *a = ct_archive_new();
    char key[256];
    cr_assert_eq(fl_unet_spec_put(sp, a, "spec/"), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_params_put(ps, a, "params/"), CT_OK, "%s", ct_last_error());
    for (int i = 0; i < ct_params_count(ps); i++) {
        ct_tensor *gr = ct_grad_of(ct_params_at(ps, i));
        cr_assert_not_null(gr, "no gradient for %s", ct_params_name(ps, i));
        snprintf(key, sizeof key, "grad/%s", ct_params_name(ps, i));
        cr_assert_eq(ct_archive_put(a, key, gr), CT_OK, "%s", ct_last_error());
    }
    cr_assert(!ct_archive_put(a, "x", x) && !ct_archive_put(a, "t", t) && !ct_archive_put(a, "v", v) &&
              !ct_archive_put(a, "y", ct_adds(y, y_shift)) && !ct_archive_put(a, "grad_x", grad_x) &&
              !ct_archive_write(a, path), "%s", ct_last_error());
    ct_archive_free(a);
    ct_scope_end(s);
}

static int run_twin(const char *path)
{
    char out[4096];
    int rc = run_python_check("check_unet.py", path, NULL, out, sizeof out);
    cr_log_info("%s", out);
    return rc;
}

CT_TEST(unet, a_pytorch_twin_computes_the_same_eps_and_gradients_in_float64)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    fl_unet_spec sp = tiny();
    sp.blocks = 2;
    ct_gen *g = ct_gen_new(77);
    ct_params *ps = ct_params_new();
    fl_unet *u = fl_unet_new(&sp, ps, "unet", g);
    cr_assert_not_null(u, "%s", fl_error());
    perturb(ps, g, 0.2);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(3, 3, 28, 28), CT_F64, g);        /* (B, C, H, W) */
    cr_assert_eq(ct_set_requires_grad(x, true), CT_OK);
    ct_tensor *t = ct_rand(CT_SHAPE(3, 1), CT_F64, g);                 /* (B, 1) */
    ct_tensor *v = ct_randn(CT_SHAPE(3, 3, 28, 28), CT_F64, g);        /* the cotangent */
    ct_tensor *y = fl_unet_forward(u, x, t);
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_assert_eq(ct_backward(ct_sum(ct_mul(y, v)), false), CT_OK, "%s", ct_last_error());
    ct_tensor *gx = ct_grad_of(x);
    cr_assert_not_null(gx);
    char path[512];
    ct_test_tmp_path(path, sizeof path, "unet_twin.h5");
    write_reference(path, &sp, ps, x, t, v, ct_detach(y), gx, 0);
    int rc = run_twin(path);
    cr_expect_eq(rc, 0, "%s tests/fixtures/check_unet.py exited with %d: the PyTorch twin does not "
                 "compute what fiberlab computed (or torch or h5py is missing)", FL_TORCH_PYTHON, rc);
    /* and the comparison can fail: an output off by 1e-8 is told apart */
    write_reference(path, &sp, ps, x, t, v, ct_detach(y), gx, 1e-8);
    cr_expect_eq(run_twin(path), 1, "the twin accepted an output off by 1e-8");
    remove(path);
    ct_scope_end(s);
    fl_unet_free(u);
    ct_params_free(ps);
    ct_gen_free(g);
    ct_set_float_dtype(prev);
}

/* <v, ε(x, t)> in float64 with grad off. */
static double inner(const fl_unet *u, const ct_tensor *x, const ct_tensor *t, const ct_tensor *v)
{
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    double r = ct_item(ct_sum(ct_mul(fl_unet_forward(u, x, t), v)));
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    return r;
}

/* Adds h to element k of p (in place). */
static void bump(ct_tensor *p, int64_t k, double h)
{
    ct_scope *s = ct_scope_begin();
    int64_t n = ct_numel(p);
    double *buf = malloc((size_t)n * sizeof *buf);
    cr_assert_eq(ct_to_data(p, buf, (size_t)n * sizeof *buf), CT_OK);
    buf[k] += h;
    cr_assert_eq(ct_copy_(p, ct_reshape(ct_from_data(buf, CT_SHAPE(n), CT_F64), ct_shape_of(p))), CT_OK,
                 "%s", ct_last_error());
    free(buf);
    ct_scope_end(s);
}

static double element(const ct_tensor *p, int64_t k)
{
    ct_scope *s = ct_scope_begin();
    double r = ct_item(ct_select(ct_reshape(p, CT_SHAPE(-1)), 0, k));
    ct_scope_end(s);
    return r;
}

CT_TEST(unet, gradients_match_central_differences_in_float64)
{
    ct_dtype prev = ct_set_float_dtype(CT_F64);
    fl_unet_spec sp = tiny();
    ct_gen *g = ct_gen_new(5);
    ct_params *ps = ct_params_new();
    fl_unet *u = fl_unet_new(&sp, ps, "unet", g);
    cr_assert_not_null(u, "%s", fl_error());
    perturb(ps, g, 0.2);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(2, 3, 28, 28), CT_F64, g);
    cr_assert_eq(ct_set_requires_grad(x, true), CT_OK);
    ct_tensor *t = ct_rand(CT_SHAPE(2, 1), CT_F64, g);
    ct_tensor *v = ct_randn(CT_SHAPE(2, 3, 28, 28), CT_F64, g);
    cr_assert_eq(ct_backward(ct_sum(ct_mul(fl_unet_forward(u, x, t), v)), false), CT_OK, "%s",
                 ct_last_error());
    /* one weight deep in the way down, one in the way up, one of the time MLP, one pixel */
    const char *names[] = {"unet.down1.0.conv1.weight", "unet.up1.1.skip.weight", "unet.time0.weight"};
    const double h = 1e-5;
    for (int i = 0; i < 4; i++) {
        ct_tensor *p = i < 3 ? ct_params_find(ps, names[i]) : x;
        cr_assert_not_null(p, "%s", ct_last_error());
        int64_t k = ct_numel(p) / 3;
        double analytic = element(ct_grad_of(p), k);
        bump(p, k, h);
        double fp = inner(u, x, t, v);
        bump(p, k, -2 * h);
        double fm = inner(u, x, t, v);
        bump(p, k, h);
        double numeric = (fp - fm) / (2 * h);
        cr_expect(fabs(numeric - analytic) <= 1e-6 * fmax(1.0, fabs(analytic)),
                  "%s[%lld]: autograd %.10g, central difference %.10g", i < 3 ? names[i] : "x",
                  (long long)k, analytic, numeric);
    }
    ct_scope_end(s);
    fl_unet_free(u);
    ct_params_free(ps);
    ct_gen_free(g);
    ct_set_float_dtype(prev);
}
