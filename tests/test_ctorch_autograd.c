/* Autograd through ctorch: gradients of single ops and of composite functions match
 * central finite differences in float64; VJPs, double-VJP JVPs and forward-mode JVPs
 * of a small MLP match its explicit Jacobian; higher-order gradients work. */
#include "test_ctorch_util.h"

/* ---- a finite-difference checker ---------------------------------------------------- */

/* A scalar function of n inputs (all F64). */
typedef ct_tensor *(*scalar_fn)(ct_tensor *const *in, int n, const void *ctx);

/* Compares the gradient of f w.r.t. every element of every input with central
 * differences of step h; returns the largest |fd - analytic| / max(1, |analytic|),
 * and prints the elements that are off unless quiet. */
static double fd_check(scalar_fn f, ct_tensor *const *in, int n, const void *ctx, double h,
                       const char *what, bool quiet)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *leaves[8];
    cr_assert(n <= 8);
    for (int i = 0; i < n; i++) {
        leaves[i] = ct_detach(in[i]);
        ct_set_requires_grad(leaves[i], true);
    }
    ct_tensor *y = f(leaves, n, ctx);
    cr_assert_not_null(y, "%s: forward failed: %s", what, ct_last_error());
    ct_tensor *grads[8];
    cr_assert_eq(ct_grad((const ct_tensor *const[]){y}, NULL, 1,
                         (const ct_tensor *const *)leaves, n, grads, false, false, true),
                 CT_OK, "%s: %s", what, ct_last_error());
    bool prev = ct_set_grad_enabled(false);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        int64_t m = ct_numel(in[i]);
        ct_shape sh = ct_shape_of(in[i]);
        double *x = malloc((size_t)m * sizeof *x), *g = malloc((size_t)m * sizeof *g);
        ct_to_data(in[i], x, (size_t)m * sizeof *x);
        ct_to_data(grads[i], g, (size_t)m * sizeof *g);
        for (int64_t j = 0; j < m; j++) {
            double v[2], x0 = x[j];
            for (int k = 0; k < 2; k++) {
                ct_scope *e = ct_scope_begin();
                ct_tensor *args[8];
                x[j] = x0 + (k ? -h : h);
                for (int q = 0; q < n; q++) args[q] = (q == i) ? ct_from_data(x, sh, CT_F64) : leaves[q];
                v[k] = ct_item(f(args, n, ctx));
                ct_scope_end(e);
            }
            x[j] = x0;
            double fd = (v[0] - v[1]) / (2 * h);
            double err = fabs(fd - g[j]) / fmax(1.0, fabs(g[j]));
            if (!(err <= worst)) {
                worst = err;
                if (!(err < 1e-6) && !quiet)
                    cr_log_error("%s: input %d element %lld: fd %.12g, autograd %.12g", what,
                                 i, (long long)j, fd, g[j]);
            }
        }
        free(x);
        free(g);
    }
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    return worst;
}

static ct_tensor *randn64(ct_shape s, ct_gen *g) { return ct_randn(s, CT_F64, g); }

/* ---- single ops ----------------------------------------------------------------------- */

typedef ct_tensor *(*unary_op)(const ct_tensor *);
typedef ct_tensor *(*binary_op)(const ct_tensor *, const ct_tensor *);

static ct_tensor *op_leaky_relu(const ct_tensor *x) { return ct_leaky_relu(x, 0.1); }
static ct_tensor *op_softmax(const ct_tensor *x) { return ct_softmax(x, -1); }
static ct_tensor *op_log_softmax(const ct_tensor *x) { return ct_log_softmax(x, 0); }
static ct_tensor *op_logsumexp(const ct_tensor *x) { return ct_logsumexp(x, 1, true); }
static ct_tensor *op_std(const ct_tensor *x) { return ct_std_dim(x, 1, true, false); }
static ct_tensor *op_var(const ct_tensor *x) { return ct_var_dim(x, 0, false, true); }
static ct_tensor *op_max_dim(const ct_tensor *x) { return ct_max_dim(x, 1, false); }
static ct_tensor *op_min_dim(const ct_tensor *x) { return ct_min_dim(x, 0, false); }
static ct_tensor *op_norm_dim(const ct_tensor *x) { return ct_norm_dim(x, 1, false); }
static ct_tensor *op_clamp(const ct_tensor *x) { return ct_clamp(x, -0.7, 0.9); }
static ct_tensor *op_clamp_min(const ct_tensor *x) { return ct_clamp_min(x, 0.3); }
static ct_tensor *op_pows(const ct_tensor *x) { return ct_pows(x, 2.5); }
static ct_tensor *op_muls(const ct_tensor *x) { return ct_muls(x, -1.5); }
static ct_tensor *op_adds(const ct_tensor *x) { return ct_square(ct_adds(x, 0.5)); }
static ct_tensor *op_rsubs(const ct_tensor *x) { return ct_square(ct_rsubs(x, 2.0)); }
static ct_tensor *op_remainders(const ct_tensor *x) { return ct_remainders(x, 0.37); }
static ct_tensor *op_flip(const ct_tensor *x) { return ct_mul(ct_flip(x, 1), x); }
static ct_tensor *op_roll(const ct_tensor *x) { return ct_mul(ct_roll(x, 2, 1), x); }
static ct_tensor *op_transpose(const ct_tensor *x) { return ct_matmul(ct_transpose(x, 0, 1), x); }
static ct_tensor *op_permute(const ct_tensor *x) { return ct_contiguous(ct_permute(x, CT_SHAPE(1, 0))); }
static ct_tensor *op_reshape(const ct_tensor *x) { return ct_square(ct_reshape(x, CT_SHAPE(-1, 2))); }
static ct_tensor *op_repeat(const ct_tensor *x) { return ct_square(ct_repeat(x, CT_SHAPE(2, 1))); }
static ct_tensor *op_repeat_interleave(const ct_tensor *x) { return ct_square(ct_repeat_interleave(x, 3, 1)); }
static ct_tensor *op_expand(const ct_tensor *x) { return ct_square(ct_expand(ct_unsqueeze(x, 0), CT_SHAPE(3, -1, -1))); }
static ct_tensor *op_squeeze(const ct_tensor *x) { return ct_square(ct_squeeze(ct_unsqueeze(x, 1), 1)); }
static ct_tensor *op_select(const ct_tensor *x) { return ct_exp(ct_select(x, 1, 2)); }
static ct_tensor *op_cat(const ct_tensor *x) { return ct_cat((const ct_tensor *const[]){x, ct_exp(x), x}, 3, 0); }
static ct_tensor *op_stack(const ct_tensor *x) { return ct_stack((const ct_tensor *const[]){x, ct_sin(x)}, 2, 2); }
static ct_tensor *op_flatten(const ct_tensor *x) { return ct_square(ct_flatten(x, 0)); }
static ct_tensor *op_sum_rows(const ct_tensor *x) { return ct_square(ct_sum_rows(x)); }
static ct_tensor *op_mean(const ct_tensor *x) { return ct_square(ct_mean(x)); }
static ct_tensor *op_mean_dim(const ct_tensor *x) { return ct_square(ct_mean_dim(x, 0, false)); }
static ct_tensor *op_sum(const ct_tensor *x) { return ct_square(ct_sum(x)); }
static ct_tensor *op_max_all(const ct_tensor *x) { return ct_max_all(x); }
static ct_tensor *op_min_all(const ct_tensor *x) { return ct_min_all(x); }
static ct_tensor *op_norm(const ct_tensor *x) { return ct_norm(x); }
static ct_tensor *op_inverse(const ct_tensor *x) { return ct_inverse(ct_adds(ct_matmul(ct_transpose(x, 0, 1), x), 0.5)); }
static ct_tensor *op_slogdet(const ct_tensor *x) { return ct_slogdet_abs(ct_narrow(x, 0, 0, 5)); }
static ct_tensor *op_qr_q(const ct_tensor *x) { return ct_qr_q(x); }
static ct_tensor *op_matrix_exp(const ct_tensor *x) { return ct_matrix_exp(ct_muls(ct_narrow(x, 0, 1, 5), 0.3)); }
static ct_tensor *op_layer_norm(const ct_tensor *x) { return ct_layer_norm(x, NULL, NULL, 1e-5); }
static ct_tensor *op_dropout_eval(const ct_tensor *x) { return ct_dropout(x, 0.5, false); }
static ct_tensor *op_contiguous(const ct_tensor *x) { return ct_square(ct_contiguous(ct_transpose(x, 0, 1))); }
static ct_tensor *op_clone(const ct_tensor *x) { return ct_square(ct_clone(x)); }
static ct_tensor *op_half_detached(const ct_tensor *x) { return ct_mul(x, ct_detach(x)); }
static ct_tensor *op_to_f32_and_back(const ct_tensor *x) { return ct_to_dtype(ct_muls(ct_to_dtype(x, CT_F64), 2.0), CT_F64); }

static const struct {
    const char *name;
    unary_op op;
    bool positive;  /* the op needs x > 0 */
} unary_ops[] = {
    {"neg", ct_neg, false}, {"exp", ct_exp, false}, {"log", ct_log, true}, {"log1p", ct_log1p, true},
    {"expm1", ct_expm1, false}, {"sqrt", ct_sqrt, true}, {"rsqrt", ct_rsqrt, true},
    {"square", ct_square, false}, {"abs", ct_abs, false}, {"sin", ct_sin, false}, {"cos", ct_cos, false},
    {"tanh", ct_tanh, false}, {"atan", ct_atan, false}, {"sigmoid", ct_sigmoid, false},
    {"reciprocal", ct_reciprocal, true}, {"relu", ct_relu, false}, {"leaky_relu", op_leaky_relu, false},
    {"silu", ct_silu, false}, {"gelu", ct_gelu, false}, {"softplus", ct_softplus, false}, {"elu", ct_elu, false},
    {"softmax", op_softmax, false}, {"log_softmax", op_log_softmax, false}, {"logsumexp", op_logsumexp, false},
    {"std_dim", op_std, false}, {"var_dim", op_var, false}, {"max_dim", op_max_dim, false},
    {"min_dim", op_min_dim, false}, {"norm_dim", op_norm_dim, false}, {"clamp", op_clamp, false},
    {"clamp_min", op_clamp_min, false}, {"pows", op_pows, true}, {"muls", op_muls, false},
    {"adds", op_adds, false}, {"rsubs", op_rsubs, false}, {"remainders", op_remainders, false},
    {"flip", op_flip, false}, {"roll", op_roll, false}, {"transpose", op_transpose, false},
    {"permute", op_permute, false}, {"reshape", op_reshape, false}, {"repeat", op_repeat, false},
    {"repeat_interleave", op_repeat_interleave, false}, {"expand", op_expand, false},
    {"squeeze", op_squeeze, false}, {"select", op_select, false}, {"cat", op_cat, false}, {"stack", op_stack, false},
    {"flatten", op_flatten, false}, {"sum_rows", op_sum_rows, false}, {"mean", op_mean, false},
    {"mean_dim", op_mean_dim, false}, {"sum", op_sum, false}, {"max_all", op_max_all, false},
    {"min_all", op_min_all, false}, {"norm", op_norm, false}, {"inverse", op_inverse, false},
    {"slogdet_abs", op_slogdet, false}, {"qr_q", op_qr_q, false}, {"matrix_exp", op_matrix_exp, false},
    {"layer_norm", op_layer_norm, false}, {"dropout_eval", op_dropout_eval, false},
    {"contiguous", op_contiguous, false}, {"clone", op_clone, false}, {"to_dtype", op_to_f32_and_back, false},
};

/* sum(op(x) * r) with fixed random weights r. */
static ct_tensor *weighted_unary(ct_tensor *const *in, int n, const void *ctx)
{
    unary_op op = *(const unary_op *)ctx;
    ct_tensor *y = op(in[0]);
    ct_gen *g = ct_gen_new(99);
    ct_tensor *r = y ? ct_randn_like(y, g) : NULL;
    ct_gen_free(g);
    return ct_sum(ct_mul(y, r));
}

CT_TEST(grad, every_unary_op_matches_finite_differences)
{
    ct_gen *g = ct_gen_new(11);
    ct_scope *s = ct_scope_begin();
    /* (6, 5), |x| in [0.3, 1.7]: away from kinks (abs, relu, clamp) and ties (max) */
    ct_tensor *u = ct_rand(CT_SHAPE(6, 5), CT_F64, g);
    ct_tensor *mag = ct_adds(ct_muls(u, 1.4), 0.3);
    ct_tensor *sign = ct_sign(ct_randn(CT_SHAPE(6, 5), CT_F64, g));
    ct_tensor *x_any = ct_mul(mag, sign), *x_pos = mag;
    for (size_t i = 0; i < sizeof unary_ops / sizeof unary_ops[0]; i++) {
        ct_tensor *x = unary_ops[i].positive ? x_pos : x_any;
        double err =
            fd_check(weighted_unary, &x, 1, &unary_ops[i].op, 1e-6, unary_ops[i].name, false);
        cr_expect(err < 1e-6, "%s: relative error %.3g", unary_ops[i].name, err);
    }
    ct_scope_end(s);
    ct_gen_free(g);
}

static ct_tensor *op_pow(const ct_tensor *a, const ct_tensor *b) { return ct_pow(ct_abs(a), b); }
static ct_tensor *op_div(const ct_tensor *a, const ct_tensor *b) { return ct_div(a, ct_adds(ct_square(b), 0.5)); }
static ct_tensor *op_axpy(const ct_tensor *a, const ct_tensor *b) { return ct_square(ct_axpy(a, -0.7, b)); }
static ct_tensor *op_matmul(const ct_tensor *a, const ct_tensor *b) { return ct_matmul(a, ct_transpose(b, 0, 1)); }
static ct_tensor *op_mm(const ct_tensor *a, const ct_tensor *b) { return ct_mm(ct_transpose(a, 0, 1), b); }
static ct_tensor *op_bmm(const ct_tensor *a, const ct_tensor *b)
{
    return ct_bmm(ct_reshape(a, CT_SHAPE(2, 3, 5)), ct_reshape(b, CT_SHAPE(2, 5, 3)));
}
static ct_tensor *op_outer(const ct_tensor *a, const ct_tensor *b) { return ct_outer(ct_flatten(a, 0), ct_select(b, 0, 1)); }
static ct_tensor *op_cdist(const ct_tensor *a, const ct_tensor *b) { return ct_cdist(a, ct_narrow(b, 0, 0, 4)); }
static ct_tensor *op_mse(const ct_tensor *a, const ct_tensor *b) { return ct_mse(a, b); }
static ct_tensor *op_cat2(const ct_tensor *a, const ct_tensor *b) { return ct_square(ct_cat2(a, b, 1)); }
static ct_tensor *op_where(const ct_tensor *a, const ct_tensor *b) { return ct_where(ct_gt(a, b), ct_exp(a), ct_sin(b)); }
static ct_tensor *op_index_select(const ct_tensor *a, const ct_tensor *b)
{
    int64_t idx[] = {4, 0, 0, 2};
    ct_tensor *i = ct_from_data(idx, CT_SHAPE(4), CT_I64);
    return ct_mul(ct_index_select(a, 0, i), ct_index_select(b, 0, i));
}
static ct_tensor *op_gather(const ct_tensor *a, const ct_tensor *b)
{
    ct_tensor *i = ct_argmax(b, 1, true);
    return ct_gather(a, 1, i);
}
static ct_tensor *op_masked_select(const ct_tensor *a, const ct_tensor *b) { return ct_masked_select(a, ct_gts(b, 0.0)); }

static const struct {
    const char *name;
    binary_op op;
} binary_ops[] = {
    {"add", ct_add}, {"sub", ct_sub}, {"mul", ct_mul}, {"div", op_div}, {"pow", op_pow},
    {"maximum", ct_maximum}, {"minimum", ct_minimum}, {"atan2", ct_atan2},
    {"axpy", op_axpy}, {"matmul", op_matmul}, {"mm", op_mm}, {"bmm", op_bmm},
    {"outer", op_outer}, {"cdist", op_cdist}, {"mse", op_mse}, {"cat2", op_cat2},
    {"where", op_where}, {"index_select", op_index_select}, {"gather", op_gather},
    {"masked_select", op_masked_select},
};

static ct_tensor *weighted_binary(ct_tensor *const *in, int n, const void *ctx)
{
    binary_op op = *(const binary_op *)ctx;
    ct_tensor *y = op(in[0], in[1]);
    ct_gen *g = ct_gen_new(98);
    ct_tensor *r = y ? ct_randn_like(y, g) : NULL;
    ct_gen_free(g);
    return ct_sum(ct_mul(y, r));
}

CT_TEST(grad, every_binary_op_matches_finite_differences)
{
    ct_gen *g = ct_gen_new(12);
    ct_scope *s = ct_scope_begin();
    ct_tensor *in[2] = {randn64(CT_SHAPE(6, 5), g), randn64(CT_SHAPE(6, 5), g)};
    for (size_t i = 0; i < sizeof binary_ops / sizeof binary_ops[0]; i++) {
        double err =
            fd_check(weighted_binary, in, 2, &binary_ops[i].op, 1e-6, binary_ops[i].name, false);
        cr_expect(err < 1e-6, "%s: relative error %.3g", binary_ops[i].name, err);
    }
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- composite functions ----------------------------------------------------------- */

/* An image model: conv, group norm, silu, transposed conv, pooling, resampling,
 * narrow/cat, linear, and a loss of exp/log/logsumexp/layer norm.
 * Inputs: x (2,3,6,6), conv w (4,3,3,3), conv b (4), gn w (4), gn b (4),
 *         deconv w (4,2,2,2), linear w (5,36), linear b (5). */
static ct_tensor *image_model(ct_tensor *const *in, int n, const void *ctx)
{
    const ct_tensor *theta = ctx;                                          /* (2, 2, 3) */
    ct_tensor *h = ct_conv2d(in[0], in[1], in[2], 1, 1, 1);                /* (2,4,6,6) */
    h = ct_silu(ct_group_norm(h, 2, in[3], in[4], 1e-5));
    ct_tensor *up = ct_conv_transpose2d(h, in[5], NULL, 2, 0, 0, 2);       /* (2,4,12,12) */
    ct_tensor *p = ct_avg_pool2d(ct_tanh(up), 2, 2);                       /* (2,4,6,6) */
    ct_tensor *q = ct_max_pool2d(ct_add(p, h), 2, 2);                      /* (2,4,3,3) */
    ct_tensor *r = ct_upsample_bilinear2d(ct_adaptive_avg_pool2d(h, 2, 2), 3, 3);
    ct_tensor *w = ct_affine_warp(ct_avg_pool2d(ct_upsample_nearest2d(q, 2), 2, 2), theta);
    ct_tensor *f = ct_flatten(ct_add(ct_add(w, r), q), 1);                 /* (2,36) */
    ct_tensor *a = ct_narrow(f, 1, 0, 18), *b = ct_narrow(f, 1, 18, 18);
    ct_tensor *c = ct_cat2(ct_tanh(a), ct_softplus(b), 1);                 /* (2,36) */
    ct_tensor *z = ct_linear(c, in[6], in[7]);                             /* (2,5) */
    ct_tensor *t1 = ct_mean(ct_log(ct_adds(ct_exp(z), 1.0)));
    ct_tensor *t2 = ct_sum(ct_logsumexp(z, 1, false));
    ct_tensor *t3 = ct_sum(ct_mul(ct_layer_norm(z, NULL, NULL, 1e-5), z));
    return ct_add(ct_add(t1, t2), ct_muls(t3, 0.1));
}

CT_TEST(grad, image_model_gradients_match_finite_differences)
{
    ct_gen *g = ct_gen_new(5);
    ct_scope *s = ct_scope_begin();
    ct_tensor *in[8] = {
        randn64(CT_SHAPE(2, 3, 6, 6), g), ct_muls(randn64(CT_SHAPE(4, 3, 3, 3), g), 0.3),
        randn64(CT_SHAPE(4), g),          ct_adds(randn64(CT_SHAPE(4), g), 1.0),
        randn64(CT_SHAPE(4), g),          ct_muls(randn64(CT_SHAPE(4, 2, 2, 2), g), 0.5),
        ct_muls(randn64(CT_SHAPE(5, 36), g), 0.2), randn64(CT_SHAPE(5), g),
    };
    double th[12] = {0.9, 0.1, 0.05, -0.1, 0.8, 0.0, 1.0, 0.0, 0.1, 0.0, 1.1, -0.05};
    ct_tensor *theta = ct_from_data(th, CT_SHAPE(2, 2, 3), CT_F64);
    double err = fd_check(image_model, in, 8, theta, 1e-5, "image model", false);
    cr_expect(err < 1e-6, "relative error %.3g", err);
    ct_scope_end(s);
    ct_gen_free(g);
}

/* A matrix model: linear algebra, normalizations and the losses.
 * Inputs: a (4,4), b (4,3), logits (5,3). */
static ct_tensor *matrix_model(ct_tensor *const *in, int n, const void *ctx)
{
    const ct_tensor *target = ctx;                                         /* I64 (5,) */
    ct_tensor *spd = ct_matmul(in[0], ct_transpose(in[0], 0, 1));
    spd = ct_add(spd, ct_muls(ct_eye(4, CT_F64), 2.0));                    /* SPD (4,4) */
    ct_tensor *sol = ct_matmul(ct_inverse(spd), in[1]);                    /* (4,3) */
    ct_tensor *t1 = ct_slogdet_abs(spd);
    ct_tensor *t2 = ct_sum(ct_mul(ct_qr_q(in[1]), sol));
    ct_tensor *t3 = ct_sum(ct_matrix_exp(ct_muls(in[0], 0.2)));
    ct_tensor *t4 = ct_cross_entropy(in[2], target);
    ct_tensor *t5 = ct_mse(ct_softmax(in[2], 1), ct_sigmoid(in[2]));
    ct_tensor *t6 = ct_sum(ct_std_dim(ct_gelu(sol), 0, true, false));
    ct_tensor *t7 = ct_norm(ct_elu(in[1]));
    ct_tensor *t8 = ct_sum(ct_cdist(ct_transpose(sol, 0, 1), ct_transpose(in[1], 0, 1)));
    ct_tensor *terms[] = {t1, t2, t3, t4, t5, t6, t7, t8};
    return ct_sum(ct_stack((const ct_tensor *const *)terms, 8, 0));
}

CT_TEST(grad, matrix_model_gradients_match_finite_differences)
{
    ct_gen *g = ct_gen_new(6);
    ct_scope *s = ct_scope_begin();
    ct_tensor *in[3] = {randn64(CT_SHAPE(4, 4), g), randn64(CT_SHAPE(4, 3), g),
                        randn64(CT_SHAPE(5, 3), g)};
    int64_t tg[5] = {0, 2, 1, 1, 0};
    ct_tensor *target = ct_from_data(tg, CT_SHAPE(5), CT_I64);
    double err = fd_check(matrix_model, in, 3, target, 1e-5, "matrix model", false);
    cr_expect(err < 1e-6, "relative error %.3g", err);
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(grad, finite_difference_check_catches_a_wrong_gradient)
{
    /* The checker itself can fail: x * detach(x) hides a factor from autograd, so the
     * analytic gradient misses half of it and the check must report a large error. */
    ct_gen *g = ct_gen_new(7);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = randn64(CT_SHAPE(4), g);
    unary_op op = op_half_detached;
    double err = fd_check(weighted_unary, &x, 1, &op, 1e-6, "detach", true);
    cr_expect(err > 0.1, "relative error %.3g", err);
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- backward, accumulation, higher order ----------------------------------------- */

CT_TEST(grad, backward_accumulates_until_zero_grad)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_full(CT_SHAPE(3), 2.0, CT_F64);
    ct_set_requires_grad(x, true);
    ct_tensor *loss = ct_sum(ct_pows(x, 3.0));              /* d/dx = 3 x^2 = 12 */
    cr_assert_eq(ct_backward(loss, true), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_item(ct_sum(ct_grad_of(x))), 36.0);
    cr_assert_eq(ct_backward(loss, false), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_item(ct_sum(ct_grad_of(x))), 72.0, "a second pass adds");
    cr_expect_eq(ct_zero_grad(x), CT_OK);
    ct_clear_error();
    cr_expect_null(ct_grad_of(x));
    cr_expect_eq(ct_last_error()[0], '\0', "no gradient is not an error");
    ct_scope_end(s);
}

CT_TEST(grad, second_derivatives_through_create_graph)
{
    ct_scope *s = ct_scope_begin();
    double xv[3] = {0.5, -1.0, 2.0};
    ct_tensor *x = ct_from_data(xv, CT_SHAPE(3), CT_F64);
    ct_set_requires_grad(x, true);
    ct_tensor *y = ct_sum(ct_mul(ct_pows(x, 3.0), ct_sin(x)));    /* sum x^3 sin x */
    ct_tensor *g1[1], *g2[1];
    cr_assert_eq(ct_grad((const ct_tensor *const[]){y}, NULL, 1, (const ct_tensor *const[]){x},
                         1, g1, true, true, false), CT_OK, "%s", ct_last_error());
    cr_expect(ct_requires_grad(g1[0]), "create_graph makes the gradient differentiable");
    cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(g1[0])}, NULL, 1,
                         (const ct_tensor *const[]){x}, 1, g2, false, false, false), CT_OK);
    double h[3];
    ct_to_data(g2[0], h, sizeof h);
    for (int i = 0; i < 3; i++) {
        double v = xv[i];  /* d2/dx2 x^3 sin x = 6x sin x + 6x^2 cos x - x^3 sin x */
        double want = 6 * v * sin(v) + 6 * v * v * cos(v) - v * v * v * sin(v);
        cr_expect(fabs(h[i] - want) < 1e-12, "x=%g: %.15g vs %.15g", v, h[i], want);
    }
    ct_scope_end(s);
}

/* ---- VJP and JVP against the explicit Jacobian -------------------------------------- */

typedef struct {
    ct_tensor *w1, *b1, *w2, *b2, *w3, *b3;
} mlp;

/* (B, 4) -> (B, 3): linear-silu-linear-tanh-linear-softplus. */
static ct_tensor *mlp_forward(const mlp *m, const ct_tensor *x)
{
    ct_tensor *h = ct_silu(ct_linear(x, m->w1, m->b1));       /* (B, 6) */
    h = ct_tanh(ct_linear(h, m->w2, m->b2));                  /* (B, 5) */
    return ct_softplus(ct_linear(h, m->w3, m->b3));           /* (B, 3) */
}

static mlp mlp_new(ct_gen *g)
{
    mlp m = {randn64(CT_SHAPE(6, 4), g), randn64(CT_SHAPE(6), g),
             randn64(CT_SHAPE(5, 6), g), randn64(CT_SHAPE(5), g),
             randn64(CT_SHAPE(3, 5), g), randn64(CT_SHAPE(3), g)};
    return m;
}

/* J (3, 4) of the MLP at x (1, 4), row by row: row i = e_iᵀ J = grad of y_i. */
static ct_tensor *mlp_jacobian(const mlp *m, const ct_tensor *x)
{
    ct_tensor *xl = ct_detach(x);
    ct_set_requires_grad(xl, true);
    ct_tensor *y = mlp_forward(m, xl);
    ct_tensor *rows[3];
    for (int i = 0; i < 3; i++) {
        double e[3] = {0, 0, 0};
        e[i] = 1;
        ct_tensor *ei = ct_from_data(e, CT_SHAPE(1, 3), CT_F64);
        ct_tensor *g[1];
        cr_assert_eq(ct_grad((const ct_tensor *const[]){y}, (const ct_tensor *const[]){ei}, 1,
                             (const ct_tensor *const[]){xl}, 1, g, true, false, false),
                     CT_OK, "%s", ct_last_error());
        rows[i] = ct_reshape(g[0], CT_SHAPE(4));
    }
    return ct_stack((const ct_tensor *const *)rows, 3, 0);
}

CT_TEST(jacobian, explicit_jacobian_matches_finite_differences)
{
    ct_gen *g = ct_gen_new(21);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    double xv[4] = {0.3, -0.7, 1.1, 0.2};
    ct_tensor *J = mlp_jacobian(&m, ct_from_data(xv, CT_SHAPE(1, 4), CT_F64));
    double Jd[12];
    ct_to_data(J, Jd, sizeof Jd);
    double h = 1e-6;
    for (int j = 0; j < 4; j++) {
        double xp[4], xm[4], yp[3], ym[3];
        memcpy(xp, xv, sizeof xv);
        memcpy(xm, xv, sizeof xv);
        xp[j] += h;
        xm[j] -= h;
        ct_to_data(mlp_forward(&m, ct_from_data(xp, CT_SHAPE(1, 4), CT_F64)), yp, sizeof yp);
        ct_to_data(mlp_forward(&m, ct_from_data(xm, CT_SHAPE(1, 4), CT_F64)), ym, sizeof ym);
        for (int i = 0; i < 3; i++) {
            double fd = (yp[i] - ym[i]) / (2 * h);
            cr_expect(fabs(fd - Jd[i * 4 + j]) < 1e-7, "J[%d][%d]: fd %.12g, autograd %.12g", i,
                      j, fd, Jd[i * 4 + j]);
        }
    }
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, vjp_is_v_transpose_times_the_jacobian)
{
    ct_gen *g = ct_gen_new(22);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *v = randn64(CT_SHAPE(1, 3), g);
    ct_tensor *J = mlp_jacobian(&m, x);
    ct_tensor *want = ct_matmul(v, J);                       /* (1, 4) */
    ct_tensor *xl = ct_detach(x);
    ct_set_requires_grad(xl, true);
    ct_tensor *got = ct_vjp(mlp_forward(&m, xl), xl, v, false);
    cr_assert_not_null(got, "%s", ct_last_error());
    ct_expect_close("vjp", got, want, 1e-12);
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, double_vjp_jvp_is_the_jacobian_times_u)
{
    ct_gen *g = ct_gen_new(23);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *u = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *J = mlp_jacobian(&m, x);
    ct_tensor *want = ct_transpose(ct_matmul(J, ct_transpose(u, 0, 1)), 0, 1);  /* (1, 3) */
    ct_tensor *xl = ct_detach(x);
    ct_set_requires_grad(xl, true);
    ct_tensor *got = ct_jvp_double_vjp(mlp_forward(&m, xl), xl, u, false);
    cr_assert_not_null(got, "%s", ct_last_error());
    ct_expect_close("double-vjp jvp", got, want, 1e-12);
    cr_expect(!ct_requires_grad(got), "no graph unless asked for");
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, forward_mode_jvp_is_the_jacobian_times_u)
{
    ct_gen *g = ct_gen_new(24);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *u = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *J = mlp_jacobian(&m, x);
    ct_tensor *want = ct_transpose(ct_matmul(J, ct_transpose(u, 0, 1)), 0, 1);
    int64_t level = ct_fwad_enter();
    cr_assert(level >= 0, "%s", ct_last_error());
    ct_tensor *dual = ct_fwad_make_dual(x, u, level);
    ct_tensor *y = mlp_forward(&m, dual);
    ct_tensor *tangent = ct_fwad_tangent(y, level);
    ct_tensor *primal = ct_fwad_primal(y, level);
    cr_assert_not_null(tangent, "%s", ct_last_error());
    ct_expect_close("forward-mode jvp", tangent, want, 1e-12);
    ct_expect_close("primal", primal, mlp_forward(&m, x), 0.0);
    ct_fwad_exit(level);
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, batched_jvps_agree_between_the_two_methods)
{
    ct_gen *g = ct_gen_new(25);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(16, 4), g);
    ct_tensor *u = randn64(CT_SHAPE(16, 4), g);
    ct_tensor *xl = ct_detach(x);
    ct_set_requires_grad(xl, true);
    ct_tensor *by_vjp = ct_jvp_double_vjp(mlp_forward(&m, xl), xl, u, false);
    int64_t level = ct_fwad_enter();
    ct_tensor *by_fwad = ct_fwad_tangent(mlp_forward(&m, ct_fwad_make_dual(x, u, level)), level);
    ct_fwad_exit(level);
    cr_assert_not_null(by_vjp, "%s", ct_last_error());
    cr_assert_not_null(by_fwad, "%s", ct_last_error());
    ct_expect_close("batched jvp", by_fwad, by_vjp, 1e-12);
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, double_vjp_jvp_with_create_graph_is_differentiable)
{
    /* y = sin(x) elementwise: J u = cos(x) u, and d/dx sum(J u) = -sin(x) u. */
    ct_gen *g = ct_gen_new(26);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = randn64(CT_SHAPE(5), g);
    ct_tensor *u = randn64(CT_SHAPE(5), g);
    ct_set_requires_grad(x, true);
    ct_tensor *jv = ct_jvp_double_vjp(ct_sin(x), x, u, true);
    cr_assert(ct_requires_grad(jv));
    ct_expect_close("J u", jv, ct_mul(ct_cos(x), u), 1e-14);
    ct_tensor *gx[1];
    cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(jv)}, NULL, 1,
                         (const ct_tensor *const[]){x}, 1, gx, false, false, false), CT_OK,
                 "%s", ct_last_error());
    ct_expect_close("d/dx sum(J u)", gx[0], ct_neg(ct_mul(ct_sin(x), u)), 1e-14);
    ct_scope_end(s);
    ct_gen_free(g);
}

/* Forward-mode derivatives per op, against the double-VJP JVP. In libtorch 1.13 every
 * op of ct.h has one except ct_cdist (_cdist_forward) and ct_affine_warp
 * (grid_sampler_2d): those fail with a message (see the next test), and have no
 * double-VJP JVP either (no derivatives of _cdist_backward, grid_sampler_2d_backward). */
static ct_tensor *fw_linear(const ct_tensor *x, const void *c) { return ct_linear(x, ((ct_tensor *const *)c)[0], ((ct_tensor *const *)c)[1]); }
static ct_tensor *fw_conv(const ct_tensor *x, const void *c) { return ct_conv2d(ct_reshape(x, CT_SHAPE(2, 3, 4, 4)), ((ct_tensor *const *)c)[2], NULL, 1, 1, 1); }
static ct_tensor *fw_group_norm(const ct_tensor *x, const void *c) { return ct_group_norm(ct_reshape(x, CT_SHAPE(2, 4, 3, 4)), 2, NULL, NULL, 1e-5); }
static ct_tensor *fw_layer_norm(const ct_tensor *x, const void *c) { return ct_layer_norm(x, NULL, NULL, 1e-5); }
static ct_tensor *fw_softmax(const ct_tensor *x, const void *c) { return ct_softmax(x, 1); }
static ct_tensor *fw_logsumexp(const ct_tensor *x, const void *c) { return ct_logsumexp(x, 1, false); }
static ct_tensor *fw_silu(const ct_tensor *x, const void *c) { return ct_silu(x); }
static ct_tensor *fw_tanh(const ct_tensor *x, const void *c) { return ct_tanh(x); }
static ct_tensor *fw_softplus(const ct_tensor *x, const void *c) { return ct_softplus(x); }
static ct_tensor *fw_gelu(const ct_tensor *x, const void *c) { return ct_gelu(x); }
static ct_tensor *fw_exp_log(const ct_tensor *x, const void *c) { return ct_log(ct_adds(ct_exp(x), 1.0)); }
static ct_tensor *fw_cat_narrow(const ct_tensor *x, const void *c) { return ct_cat2(ct_narrow(x, 1, 0, 3), ct_square(x), 1); }
static ct_tensor *fw_matmul(const ct_tensor *x, const void *c) { return ct_matmul(x, ct_transpose(x, 0, 1)); }
static ct_tensor *fw_sum_mean(const ct_tensor *x, const void *c) { return ct_add(ct_sum_dim(x, 1, false), ct_mean_dim(x, 1, false)); }
static ct_tensor *fw_pool(const ct_tensor *x, const void *c) { return ct_avg_pool2d(ct_reshape(x, CT_SHAPE(2, 3, 4, 4)), 2, 2); }
static ct_tensor *fw_upsample(const ct_tensor *x, const void *c) { return ct_upsample_bilinear2d(ct_reshape(x, CT_SHAPE(2, 3, 4, 4)), 5, 5); }

/* the fused coupling, forward and inverse: x the first 16 columns, h the next 32 */
static ct_tensor *fw_coupling_dir(const ct_tensor *x, bool inverse)
{
    ct_tensor *ld = NULL;
    ct_tensor *y = ct_affine_coupling(ct_narrow(x, 1, 0, 16), ct_narrow(x, 1, 16, 32), 2.0, inverse, &ld);
    return ct_cat2(y, ct_unsqueeze(ld, 1), 1);
}
static ct_tensor *fw_coupling(const ct_tensor *x, const void *c) { return fw_coupling_dir(x, false); }
static ct_tensor *fw_coupling_inv(const ct_tensor *x, const void *c) { return fw_coupling_dir(x, true); }

/* the fused ActNorm: x the first 16 columns, bias and logs the rows of the next 16 */
static ct_tensor *fw_actnorm_dir(const ct_tensor *x, bool inverse)
{
    ct_tensor *ld = NULL, *p = ct_narrow(x, 1, 16, 16);
    ct_tensor *y = ct_actnorm(ct_narrow(x, 1, 0, 16), ct_select(p, 0, 0), ct_select(p, 0, 1), inverse, &ld);
    return ct_cat2(y, ct_unsqueeze(ld, 1), 1);
}
static ct_tensor *fw_actnorm(const ct_tensor *x, const void *c) { return fw_actnorm_dir(x, false); }
static ct_tensor *fw_actnorm_inv(const ct_tensor *x, const void *c) { return fw_actnorm_dir(x, true); }

typedef ct_tensor *(*fw_fn)(const ct_tensor *x, const void *ctx);

CT_TEST(jacobian, forward_mode_matches_double_vjp_for_each_supported_op)
{
    static const struct {
        const char *name;
        fw_fn f;
    } fw_ops[] = {
        {"linear", fw_linear}, {"conv2d", fw_conv}, {"group_norm", fw_group_norm},
        {"layer_norm", fw_layer_norm}, {"softmax", fw_softmax}, {"logsumexp", fw_logsumexp},
        {"silu", fw_silu}, {"tanh", fw_tanh}, {"softplus", fw_softplus}, {"gelu", fw_gelu},
        {"exp/log", fw_exp_log}, {"cat/narrow", fw_cat_narrow}, {"matmul", fw_matmul},
        {"sum/mean", fw_sum_mean}, {"avg_pool2d", fw_pool}, {"upsample_bilinear2d", fw_upsample},
        {"affine_coupling", fw_coupling}, {"affine_coupling inverse", fw_coupling_inv},
        {"actnorm", fw_actnorm}, {"actnorm inverse", fw_actnorm_inv},
    };
    ct_gen *g = ct_gen_new(27);
    ct_scope *s = ct_scope_begin();
    ct_tensor *ctx[3] = {randn64(CT_SHAPE(5, 48), g), randn64(CT_SHAPE(5), g),
                         randn64(CT_SHAPE(2, 3, 3, 3), g)};
    ct_tensor *x = randn64(CT_SHAPE(2, 48), g), *u = randn64(CT_SHAPE(2, 48), g);
    for (size_t i = 0; i < sizeof fw_ops / sizeof fw_ops[0]; i++) {
        ct_tensor *xl = ct_detach(x);
        ct_set_requires_grad(xl, true);
        ct_tensor *want = ct_jvp_double_vjp(fw_ops[i].f(xl, ctx), xl, u, false);
        int64_t level = ct_fwad_enter();
        ct_tensor *got = ct_fwad_tangent(fw_ops[i].f(ct_fwad_make_dual(x, u, level), ctx), level);
        ct_fwad_exit(level);
        cr_expect_not_null(got, "%s: %s", fw_ops[i].name, ct_last_error());
        cr_expect_not_null(want, "%s: %s", fw_ops[i].name, ct_last_error());
        if (got && want) ct_expect_close(fw_ops[i].name, got, want, 1e-12);
        ct_clear_error();
    }
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, ops_without_a_forward_derivative_fail_with_a_message)
{
    ct_gen *g = ct_gen_new(28);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = randn64(CT_SHAPE(2, 3, 4, 4), g), *u = randn64(CT_SHAPE(2, 3, 4, 4), g);
    double th[12] = {1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0};
    ct_tensor *theta = ct_from_data(th, CT_SHAPE(2, 2, 3), CT_F64);
    int64_t level = ct_fwad_enter();
    ct_tensor *dual = ct_fwad_make_dual(x, u, level);
    cr_expect_null(ct_affine_warp(dual, theta));
    ct_expect_error_mentions("ct_affine_warp");
    ct_expect_error_mentions("forward AD");
    ct_tensor *p = ct_flatten(dual, 1);
    cr_expect_null(ct_cdist(p, p));
    ct_expect_error_mentions("ct_cdist");
    ct_fwad_exit(level);
    /* Nor has either a double backward (_cdist_backward, grid_sampler_2d_backward have
     * no derivatives in libtorch 1.13), so the double-VJP JVP fails on them too. */
    ct_tensor *pl = ct_detach(ct_flatten(x, 1));
    ct_set_requires_grad(pl, true);
    cr_expect_null(ct_jvp_double_vjp(ct_cdist(pl, pl), pl, ct_flatten(u, 1), false));
    ct_expect_error_mentions("_cdist_backward");
    ct_tensor *xl = ct_detach(x);
    ct_set_requires_grad(xl, true);
    cr_expect_null(ct_jvp_double_vjp(ct_affine_warp(xl, theta), xl, u, false));
    ct_expect_error_mentions("ct_jvp_double_vjp");
    ct_expect_error_mentions("grid_sampler_2d_backward");
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jacobian, tangent_of_a_plain_tensor_is_zero)
{
    ct_scope *s = ct_scope_begin();
    int64_t level = ct_fwad_enter();
    ct_tensor *t = ct_fwad_tangent(ct_ones(CT_SHAPE(3), CT_F64), level);
    cr_assert_not_null(t, "%s", ct_last_error());
    cr_expect_eq(ct_item(ct_sum(ct_abs(t))), 0.0);
    ct_fwad_exit(level);
    ct_scope_end(s);
}

/* ---- ct_jvp_fwad: a forward-mode section that always exits its level ---------------- */

static ct_tensor *jvp_mlp(void *ctx, const ct_tensor *x) { return mlp_forward(ctx, x); }
/* cdist has no forward derivative: the op fails inside the dual section */
static ct_tensor *jvp_cdist(void *ctx, const ct_tensor *x) { return ct_sum_rows(ct_cdist(x, x)); }
static ct_tensor *jvp_null(void *ctx, const ct_tensor *x) { return NULL; }

/* J u of the MLP at x (1, 4) by the explicit Jacobian (1, 3). */
static ct_tensor *mlp_ju(const mlp *m, const ct_tensor *x, const ct_tensor *u)
{
    return ct_transpose(ct_matmul(mlp_jacobian(m, x), ct_transpose(u, 0, 1)), 0, 1);
}

CT_TEST(jvp_fwad, is_the_jacobian_times_u_and_gives_the_output)
{
    ct_gen *g = ct_gen_new(31);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g), *u = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *y = NULL;
    long live = ct_live_handles();
    ct_tensor *jv = ct_jvp_fwad(jvp_mlp, &m, x, u, &y);
    cr_assert_not_null(jv, "%s", ct_last_error());
    cr_assert_not_null(y);
    cr_expect_eq(ct_live_handles(), live + 2, "fn's temporaries are freed, two results kept");
    cr_expect_eq(ct_fwad_active_level(), -1, "the level is exited");
    ct_expect_close("J u", jv, mlp_ju(&m, x, u), 1e-12);
    ct_expect_close("y", y, mlp_forward(&m, x), 0.0);
    /* y is an ordinary tensor afterwards: no tangent at a new level */
    ct_tensor *again = ct_jvp_fwad(jvp_mlp, &m, x, u, NULL);
    ct_expect_close("J u again, no y_out", again, jv, 0.0);
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jvp_fwad, an_op_without_forward_derivative_fails_and_ad_stays_usable)
{
    ct_gen *g = ct_gen_new(32);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g), *u = randn64(CT_SHAPE(1, 4), g);
    ct_tensor *y = ct_ones(CT_SHAPE(1), CT_F64);  /* overwritten with NULL */
    cr_expect_null(ct_jvp_fwad(jvp_cdist, NULL, ct_repeat(x, CT_SHAPE(3, 1)),
                               ct_repeat(u, CT_SHAPE(3, 1)), &y));
    cr_expect_null(y);
    ct_expect_error_mentions("ct_cdist");
    cr_expect_eq(ct_fwad_active_level(), -1, "the level is exited on the error path");
    /* forward mode works again, raw and safe, and gives the right answer */
    ct_clear_error();
    ct_tensor *jv = ct_jvp_fwad(jvp_mlp, &m, x, u, NULL);
    cr_assert_not_null(jv, "%s", ct_last_error());
    ct_expect_close("J u after the failure", jv, mlp_ju(&m, x, u), 1e-12);
    int64_t level = ct_fwad_enter();
    cr_expect(level >= 0, "%s", ct_last_error());
    ct_fwad_exit(level);
    /* and so does reverse mode on the same input */
    ct_tensor *xl = ct_detach(x);
    ct_set_requires_grad(xl, true);
    cr_assert_eq(ct_backward(ct_sum(mlp_forward(&m, xl)), false), CT_OK, "%s", ct_last_error());
    cr_expect_not_null(ct_grad_of(xl));
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jvp_fwad, fn_returning_null_or_a_bad_tangent_exits_the_level)
{
    ct_gen *g = ct_gen_new(33);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g), *u = randn64(CT_SHAPE(1, 4), g);
    cr_expect_null(ct_jvp_fwad(jvp_null, NULL, x, u, NULL));
    ct_expect_error_mentions("ct_jvp_fwad");
    cr_expect_eq(ct_fwad_active_level(), -1);
    /* libtorch raises: a tangent of another shape */
    ct_clear_error();
    cr_expect_null(ct_jvp_fwad(jvp_mlp, &m, x, randn64(CT_SHAPE(2, 4), g), NULL));
    ct_expect_error_mentions("ct_fwad_make_dual");
    cr_expect_eq(ct_fwad_active_level(), -1);
    ct_tensor *jv = ct_jvp_fwad(jvp_mlp, &m, x, u, NULL);
    cr_assert_not_null(jv, "%s", ct_last_error());
    ct_expect_close("J u after the failures", jv, mlp_ju(&m, x, u), 1e-12);
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(jvp_fwad, a_leaked_level_is_refused_with_a_message_until_exited)
{
    ct_gen *g = ct_gen_new(34);
    ct_scope *s = ct_scope_begin();
    mlp m = mlp_new(g);
    ct_tensor *x = randn64(CT_SHAPE(1, 4), g), *u = randn64(CT_SHAPE(1, 4), g);
    int64_t leaked = ct_fwad_enter();           /* a section that forgets to exit */
    cr_assert(leaked >= 0, "%s", ct_last_error());
    cr_expect_eq(ct_fwad_active_level(), leaked);
    cr_expect_eq(ct_fwad_enter(), -1);
    ct_expect_error_mentions("ct_fwad_enter");
    ct_expect_error_mentions("still active");
    ct_clear_error();
    cr_expect_null(ct_jvp_fwad(jvp_mlp, &m, x, u, NULL));
    ct_expect_error_mentions("still active");
    cr_expect_eq(ct_fwad_active_level(), leaked, "ct_jvp_fwad leaves a level it did not enter");
    ct_fwad_exit(ct_fwad_active_level());       /* the documented way out */
    cr_expect_eq(ct_fwad_active_level(), -1);
    ct_tensor *jv = ct_jvp_fwad(jvp_mlp, &m, x, u, NULL);
    cr_assert_not_null(jv, "%s", ct_last_error());
    ct_expect_close("J u after the leak is exited", jv, mlp_ju(&m, x, u), 1e-12);
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- the fused affine coupling against its composed chain ---------------------------- */

/* σ(s) = clamp·(2/π)·atan(s/clamp), or s for clamp <= 0. */
static ct_tensor *soft(const ct_tensor *s, double clamp)
{
    return clamp > 0 ? ct_muls(ct_atan(ct_muls(s, 1.0 / clamp)), clamp * 2.0 / M_PI) : ct_ref(s);
}

/* The chain ct_affine_coupling fuses, written with single ops: y and *ld. */
static ct_tensor *coupling_ref(const ct_tensor *x, const ct_tensor *h, double clamp, bool inverse,
                               ct_tensor **ld)
{
    int64_t d = ct_size(x, 1);
    ct_tensor *s = soft(ct_narrow(h, 1, 0, d), clamp), *t = ct_narrow(h, 1, d, d);
    *ld = ct_sum_dim(s, 1, false);
    if (inverse) {
        *ld = ct_neg(*ld);
        return ct_mul(ct_sub(x, t), ct_exp(ct_neg(s)));
    }
    return ct_add(ct_mul(x, ct_exp(s)), t);
}

typedef struct {
    double clamp;
    bool inverse, reference;
    const ct_tensor *wy, *wl;   /* weights of the scalar: Σ wy ⊙ y + Σ wl ⊙ ld */
} coupling_case;

/* in[0]: a (B, d + 1) tensor whose columns 1.. are x (a strided view, as the INN passes
 * halves); in[1]: h (B, 2d). */
static ct_tensor *coupling_scalar(ct_tensor *const *in, int n, const void *ctx)
{
    const coupling_case *k = ctx;
    int64_t d = ct_size(in[1], 1) / 2;
    ct_tensor *x = ct_narrow(in[0], 1, 1, d), *ld = NULL;
    ct_tensor *y = k->reference ? coupling_ref(x, in[1], k->clamp, k->inverse, &ld)
                                : ct_affine_coupling(x, in[1], k->clamp, k->inverse, &ld);
    return ct_add(ct_sum(ct_mul(y, k->wy)), ct_sum(ct_mul(ld, k->wl)));
}

CT_TEST(fused, affine_coupling_equals_its_chain_and_finite_differences)
{
    ct_gen *g = ct_gen_new(41);
    ct_scope *s = ct_scope_begin();
    ct_tensor *xs = randn64(CT_SHAPE(5, 4), g), *h = ct_muls(randn64(CT_SHAPE(5, 6), g), 1.5);
    ct_tensor *wy = randn64(CT_SHAPE(5, 3), g), *wl = randn64(CT_SHAPE(5), g);
    const double clamps[2] = {2.0, 0.0};
    for (int inv = 0; inv < 2; inv++)
        for (int c = 0; c < 2; c++) {
            coupling_case k = {clamps[c], inv == 1, false, wy, wl};
            char what[64];
            snprintf(what, sizeof what, "coupling %s clamp %g", inv ? "inverse" : "forward", clamps[c]);
            ct_tensor *x = ct_narrow(xs, 1, 1, 3), *ld = NULL, *ld_ref = NULL;
            ct_tensor *y = ct_affine_coupling(x, h, k.clamp, k.inverse, &ld);
            ct_tensor *y_ref = coupling_ref(x, h, k.clamp, k.inverse, &ld_ref);
            cr_assert_not_null(y, "%s: %s", what, ct_last_error());
            ct_expect_close(what, y, y_ref, 1e-14);
            ct_expect_close(what, ld, ld_ref, 1e-14);
            double err = fd_check(coupling_scalar, (ct_tensor *const[]){xs, h}, 2, &k, 1e-6, what, false);
            cr_expect(err < 1e-7, "%s: relative error %.3g against finite differences", what, err);
            /* the gradient of a gradient: through the composed formulas of its backward */
            ct_tensor *hl = ct_detach(h), *xl = ct_detach(xs);
            ct_set_requires_grad(hl, true), ct_set_requires_grad(xl, true);
            ct_tensor *gg[2];
            for (int r = 0; r < 2; r++) {
                k.reference = r == 1;
                ct_tensor *gh;
                cr_assert_eq(ct_grad((const ct_tensor *const[]){coupling_scalar((ct_tensor *const[]){xl, hl}, 2, &k)},
                                     NULL, 1, (const ct_tensor *const[]){hl}, 1, &gh, false, true, false),
                             CT_OK, "%s: %s", what, ct_last_error());
                cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_square(gh))}, NULL, 1,
                                     (const ct_tensor *const[]){xl}, 1, &gg[r], false, false, false),
                             CT_OK, "%s: %s", what, ct_last_error());
            }
            ct_expect_close("second derivative", gg[0], gg[1], 1e-12);
        }
    ct_scope_end(s);
    ct_gen_free(g);
}

CT_TEST(fused, affine_coupling_in_float32_and_without_logdet)
{
    ct_gen *g = ct_gen_new(42);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(64, 27), CT_F32, g), *h = ct_randn(CT_SHAPE(64, 54), CT_F32, g);
    ct_set_requires_grad(x, true), ct_set_requires_grad(h, true);
    for (int inv = 0; inv < 2; inv++) {
        ct_tensor *ld = NULL, *ld_ref = NULL;
        ct_tensor *y = ct_affine_coupling(x, h, 2.0, inv, &ld);
        ct_tensor *y_ref = coupling_ref(x, h, 2.0, inv, &ld_ref);
        ct_expect_close("float32 y", y, y_ref, 1e-5);
        ct_expect_close("float32 logdet", ld, ld_ref, 1e-5);
        /* only y used (logdet NULL): its gradient alone */
        ct_tensor *gy[2], *gr[2];
        ct_tensor *y2 = ct_affine_coupling(x, h, 2.0, inv, NULL);
        cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_square(y2))}, NULL, 1,
                             (const ct_tensor *const[]){x, h}, 2, gy, false, false, false), CT_OK);
        cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_square(y_ref))}, NULL, 1,
                             (const ct_tensor *const[]){x, h}, 2, gr, false, false, false), CT_OK);
        ct_expect_close("float32 grad x", gy[0], gr[0], 1e-4);
        ct_expect_close("float32 grad h", gy[1], gr[1], 1e-4);
    }
    cr_expect_null(ct_affine_coupling(x, ct_narrow(h, 1, 0, 50), 2.0, false, NULL));
    ct_expect_error_mentions("ct_affine_coupling");
    ct_clear_error();
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ct_split: views of the given sizes whose gradients come back as those of narrows. */
CT_TEST(fused, split_gives_views_and_their_gradients)
{
    ct_gen *g = ct_gen_new(43);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = randn64(CT_SHAPE(4, 7), g), *w = randn64(CT_SHAPE(4, 7), g);
    ct_set_requires_grad(x, true);
    ct_tensor *parts[3], *gs, *gn;
    cr_assert_eq(ct_split(x, 1, (const int64_t[]){2, 4, 1}, 3, parts), CT_OK, "%s", ct_last_error());
    ct_tensor *ws[3];
    cr_assert_eq(ct_split(w, 1, (const int64_t[]){2, 4, 1}, 3, ws), CT_OK);
    int64_t off = 0, sz[3] = {2, 4, 1};
    ct_tensor *fs = NULL, *fn = NULL;
    for (int i = 0; i < 3; i++) {
        ct_expect_close("part", parts[i], ct_narrow(x, 1, off, sz[i]), 0);
        ct_tensor *a = ct_sum(ct_mul(ct_exp(parts[i]), ws[i]));
        ct_tensor *b = ct_sum(ct_mul(ct_exp(ct_narrow(x, 1, off, sz[i])), ct_narrow(w, 1, off, sz[i])));
        fs = fs ? ct_add(fs, a) : a;
        fn = fn ? ct_add(fn, b) : b;
        off += sz[i];
    }
    cr_assert_eq(ct_grad((const ct_tensor *const[]){fs}, NULL, 1, (const ct_tensor *const[]){x}, 1, &gs, false, false, false), CT_OK);
    cr_assert_eq(ct_grad((const ct_tensor *const[]){fn}, NULL, 1, (const ct_tensor *const[]){x}, 1, &gn, false, false, false), CT_OK);
    ct_expect_close("split gradient", gs, gn, 1e-15);
    cr_expect_eq(ct_split(x, 1, (const int64_t[]){2, 4}, 2, parts), CT_ERR_TORCH);
    ct_expect_error_mentions("ct_split");
    cr_expect_null(parts[0]);
    ct_clear_error();
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- the fused ActNorm against its composed chain ------------------------------------ */

static ct_tensor *actnorm_ref(const ct_tensor *x, const ct_tensor *b, const ct_tensor *ls,
                              bool inverse, ct_tensor **ld)
{
    *ld = ct_expand(ct_sum(ls), CT_SHAPE(ct_size(x, 0)));
    if (inverse) {
        *ld = ct_neg(*ld);
        return ct_sub(ct_mul(x, ct_exp(ct_neg(ls))), b);
    }
    return ct_mul(ct_add(x, b), ct_exp(ls));
}

/* in[0]: (B, D + 1) whose columns 1.. are x; in[1], in[2]: bias, logs (D). */
static ct_tensor *actnorm_scalar(ct_tensor *const *in, int n, const void *ctx)
{
    const coupling_case *k = ctx;
    int64_t d = ct_size(in[1], 0);
    ct_tensor *x = ct_narrow(in[0], 1, 1, d), *ld = NULL;
    ct_tensor *y = k->reference ? actnorm_ref(x, in[1], in[2], k->inverse, &ld)
                                : ct_actnorm(x, in[1], in[2], k->inverse, &ld);
    return ct_add(ct_sum(ct_mul(y, k->wy)), ct_sum(ct_mul(ld, k->wl)));
}

CT_TEST(fused, actnorm_equals_its_chain_and_finite_differences)
{
    ct_gen *g = ct_gen_new(44);
    ct_scope *s = ct_scope_begin();
    ct_tensor *xs = randn64(CT_SHAPE(5, 4), g), *b = randn64(CT_SHAPE(3), g);
    ct_tensor *ls = ct_muls(randn64(CT_SHAPE(3), g), 0.5);
    ct_tensor *wy = randn64(CT_SHAPE(5, 3), g), *wl = randn64(CT_SHAPE(5), g);
    for (int inv = 0; inv < 2; inv++) {
        coupling_case k = {0, inv == 1, false, wy, wl};
        const char *what = inv ? "actnorm inverse" : "actnorm";
        ct_tensor *x = ct_narrow(xs, 1, 1, 3), *ld = NULL, *ld_ref = NULL;
        ct_tensor *y = ct_actnorm(x, b, ls, k.inverse, &ld);
        ct_tensor *y_ref = actnorm_ref(x, b, ls, k.inverse, &ld_ref);
        cr_assert_not_null(y, "%s: %s", what, ct_last_error());
        ct_expect_close(what, y, y_ref, 1e-14);
        ct_expect_close(what, ld, ld_ref, 1e-14);
        double err = fd_check(actnorm_scalar, (ct_tensor *const[]){xs, b, ls}, 3, &k, 1e-6, what, false);
        cr_expect(err < 1e-7, "%s: relative error %.3g against finite differences", what, err);
        ct_tensor *xl = ct_detach(xs), *bl = ct_detach(b), *sl = ct_detach(ls), *gg[2];
        ct_set_requires_grad(xl, true), ct_set_requires_grad(bl, true), ct_set_requires_grad(sl, true);
        for (int r = 0; r < 2; r++) {
            k.reference = r == 1;
            ct_tensor *gx;
            cr_assert_eq(ct_grad((const ct_tensor *const[]){actnorm_scalar((ct_tensor *const[]){xl, bl, sl}, 3, &k)},
                                 NULL, 1, (const ct_tensor *const[]){xl}, 1, &gx, false, true, false),
                         CT_OK, "%s: %s", what, ct_last_error());
            cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_square(gx))}, NULL, 1,
                                 (const ct_tensor *const[]){sl}, 1, &gg[r], false, false, false),
                         CT_OK, "%s: %s", what, ct_last_error());
        }
        ct_expect_close("second derivative", gg[0], gg[1], 1e-12);
    }
    cr_expect_null(ct_actnorm(xs, b, ls, false, NULL));
    ct_expect_error_mentions("ct_actnorm");
    ct_clear_error();
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- the one-node MLP against its layers op by op ------------------------------------- */

/* The layers of ct_mlp op by op: ct_linear and the activation. */
static ct_tensor *mlp_chain(const ct_tensor *x, ct_tensor *const *ws, ct_tensor *const *bs, int n, ct_act act)
{
    ct_tensor *(*f[CT_ACT_COUNT])(const ct_tensor *) = {ct_silu, ct_relu, ct_tanh, ct_gelu, NULL};
    const ct_tensor *a = x;
    for (int i = 0; i < n; i++) {
        ct_tensor *h = ct_linear(a, ws[i], bs[i]);
        a = i == n - 1 ? h : act == CT_ACT_LEAKY_RELU ? ct_leaky_relu(h, 0.01) : f[act](h);
    }
    return (ct_tensor *)a;
}

/* Values, and the gradients of Σ w ⊙ y with respect to x, every weight and bias, equal
 * the chain's bit for bit — in float32, for every activation, with the first layer's
 * weight a column view (as the INN's split in-layer) and its bias a per-row (B, h) tensor,
 * and x a column slice of a wider tensor. */
CT_TEST(fused, mlp_equals_its_layers_bit_for_bit)
{
    ct_gen *g = ct_gen_new(44);
    ct_scope *s = ct_scope_begin();
    const int B = 33, k = 7, H = 24, out = 10;
    ct_tensor *xs = ct_randn(CT_SHAPE(B, k + 3), CT_F32, g);
    ct_tensor *wfull = ct_randn(CT_SHAPE(H, k + 5), CT_F32, g), *pre = ct_randn(CT_SHAPE(B, H), CT_F32, g);
    ct_tensor *w1 = ct_randn(CT_SHAPE(H, H), CT_F32, g), *b1 = ct_randn(CT_SHAPE(H), CT_F32, g);
    ct_tensor *w2 = ct_randn(CT_SHAPE(out, H), CT_F32, g), *b2 = ct_randn(CT_SHAPE(out), CT_F32, g);
    ct_tensor *wy = ct_randn(CT_SHAPE(B, out), CT_F32, g);
    ct_tensor *leaves[6] = {xs, wfull, pre, w1, b1, w2};
    for (int i = 0; i < 6; i++) ct_set_requires_grad(leaves[i], true);
    ct_set_requires_grad(b2, true);
    for (int act = 0; act < CT_ACT_COUNT; act++) {
        ct_tensor *gr[2][7], *y[2];
        for (int r = 0; r < 2; r++) {
            ct_tensor *parts[2];
            cr_assert_eq(ct_split(wfull, 1, (const int64_t[]){k, 5}, 2, parts), CT_OK);
            ct_tensor *ws[3] = {parts[0], w1, w2}, *bs[3] = {pre, b1, b2};
            ct_tensor *x = ct_narrow(xs, 1, 2, k);
            y[r] = r ? mlp_chain(x, ws, bs, 3, (ct_act)act)
                     : ct_mlp(x, (const ct_tensor *const *)ws, (const ct_tensor *const *)bs, 3, (ct_act)act);
            cr_assert_not_null(y[r], "%s", ct_last_error());
            cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_mul(y[r], wy))}, NULL, 1,
                                 (const ct_tensor *const[]){xs, wfull, pre, w1, b1, w2, b2}, 7, gr[r], false,
                                 false, false),
                         CT_OK, "%s", ct_last_error());
        }
        char what[64];
        snprintf(what, sizeof what, "activation %d: y", act);
        ct_expect_close(what, y[0], y[1], 0);
        for (int i = 0; i < 7; i++) {
            snprintf(what, sizeof what, "activation %d: gradient %d", act, i);
            ct_expect_close(what, gr[0][i], gr[1][i], 0);
        }
    }
    /* without grad mode: the same values */
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *ws[2] = {w1, w2}, *bs[2] = {b1, b2};
    ct_tensor *a = ct_randn(CT_SHAPE(B, H), CT_F32, g);
    ct_expect_close("no grad", ct_mlp(a, (const ct_tensor *const *)ws, (const ct_tensor *const *)bs, 2, CT_ACT_SILU),
                    mlp_chain(a, ws, bs, 2, CT_ACT_SILU), 0);
    ct_set_grad_enabled(prev);
    /* a bias of the wrong rank is refused naming the op */
    ct_tensor *bad[2] = {ct_randn(CT_SHAPE(2, 2, 2), CT_F32, g), b2};
    cr_expect_null(ct_mlp(a, (const ct_tensor *const *)ws, (const ct_tensor *const *)bad, 2, CT_ACT_SILU));
    ct_expect_error_mentions("ct_mlp");
    ct_clear_error();
    ct_scope_end(s);
    ct_gen_free(g);
}

/* In float64: the gradient matches finite differences, and the gradient of a gradient
 * (a backward that builds a graph) equals the chain's. */
CT_TEST(fused, mlp_finite_differences_and_second_derivative)
{
    ct_gen *g = ct_gen_new(45);
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = randn64(CT_SHAPE(4, 3), g), *w0 = randn64(CT_SHAPE(5, 3), g), *b0 = randn64(CT_SHAPE(5), g);
    ct_tensor *w1 = randn64(CT_SHAPE(2, 5), g), *b1 = randn64(CT_SHAPE(2), g), *wy = randn64(CT_SHAPE(4, 2), g);
    ct_tensor *leaves[5] = {x, w0, b0, w1, b1};
    for (int i = 0; i < 5; i++) ct_set_requires_grad(leaves[i], true);
    for (int act = 0; act < CT_ACT_COUNT; act++) {
        if (act == CT_ACT_RELU || act == CT_ACT_LEAKY_RELU) continue;   /* kinks: no second derivative */
        ct_tensor *gg[2];
        for (int r = 0; r < 2; r++) {
            ct_tensor *ws[2] = {w0, w1}, *bs[2] = {b0, b1};
            ct_tensor *y = r ? mlp_chain(x, ws, bs, 2, (ct_act)act)
                             : ct_mlp(x, (const ct_tensor *const *)ws, (const ct_tensor *const *)bs, 2, (ct_act)act);
            ct_tensor *gx;
            cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_mul(y, wy))}, NULL, 1,
                                 (const ct_tensor *const[]){x}, 1, &gx, true, true, false),
                         CT_OK, "%s", ct_last_error());
            if (r == 0) {   /* ∂/∂w0[0, 1] of Σ wy ⊙ y against central differences */
                const double h = 1e-6;
                double v[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    bool pg = ct_set_grad_enabled(false);
                    ct_tensor *wp = ct_clone(w0);
                    ct_fill_(ct_narrow(ct_narrow(wp, 0, 0, 1), 1, 1, 1), ct_item(ct_narrow(ct_narrow(w0, 0, 0, 1), 1, 1, 1)) + (sgn ? -h : h));
                    ct_tensor *wsp[2] = {wp, w1};
                    v[sgn] = ct_item(ct_sum(ct_mul(mlp_chain(x, wsp, bs, 2, (ct_act)act), wy)));
                    ct_set_grad_enabled(pg);
                }
                ct_tensor *gw;
                cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_mul(y, wy))}, NULL, 1,
                                     (const ct_tensor *const[]){w0}, 1, &gw, false, false, false), CT_OK);
                double an = ct_item(ct_narrow(ct_narrow(gw, 0, 0, 1), 1, 1, 1)), fd = (v[0] - v[1]) / (2 * h);
                cr_expect(fabs(an - fd) < 1e-7 * fmax(1, fabs(fd)), "activation %d: ∂/∂w: %.12g, FD %.12g", act, an, fd);
            }
            cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_square(gx))}, NULL, 1,
                                 (const ct_tensor *const[]){w0}, 1, &gg[r], false, false, false),
                         CT_OK, "%s", ct_last_error());
        }
        ct_expect_close("second derivative", gg[0], gg[1], 1e-12);
    }
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- the transposed convolution's own backward (ct_fused.cpp) ----------------------- */

/* Σ gy ⊙ conv_transpose2d(x, w, b) and its gradients w.r.t. x, w, b in the dtype of the
 * inputs (float32: ctorch's backward, ∂x as a convolution; float64: libtorch's); w and b
 * get none unless with_w. */
static void convt_grads(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b, const ct_tensor *gy,
                        int stride, int pad, int out_pad, int groups, bool with_w, ct_tensor **out)
{
    ct_tensor *lx = ct_detach(x), *lw = ct_detach(w), *lb = ct_detach(b);
    ct_set_requires_grad(lx, true);
    ct_set_requires_grad(lw, with_w);
    ct_set_requires_grad(lb, with_w);
    ct_tensor *y = ct_conv_transpose2d(lx, lw, lb, stride, pad, out_pad, groups);
    cr_assert_not_null(y, "%s", ct_last_error());
    ct_tensor *c = ct_sum(ct_mul(y, ct_to_dtype(gy, ct_dtype_of(y))));
    const ct_tensor *in[3] = {lx, lw, lb};
    cr_assert_eq(ct_grad((const ct_tensor *const[]){c}, NULL, 1, in, with_w ? 3 : 1, out, false, false, false),
                 CT_OK, "%s", ct_last_error());
    out[3] = y;
}

CT_TEST(fused, conv_transpose2d_gradients_equal_libtorchs)
{
    ct_gen *g = ct_gen_new(43);
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(true);
    /* the fiber VAE decoder's stage (stride 2, padding 1, output padding 1), grouped, stride 1 */
    const int cfg[3][4] = {{2, 1, 1, 1}, {2, 1, 1, 2}, {1, 0, 0, 1}};
    for (int k = 0; k < 3; k++) {
        int stride = cfg[k][0], pad = cfg[k][1], op = cfg[k][2], groups = cfg[k][3];
        ct_tensor *x = randn64(CT_SHAPE(3, 4, 5, 5), g), *w = randn64(CT_SHAPE(4, 6 / groups, 3, 3), g);
        ct_tensor *b = randn64(CT_SHAPE(6), g);
        int64_t h = (5 - 1) * stride - 2 * pad + 3 + op;
        ct_tensor *gy = randn64(CT_SHAPE(3, 6, h, h), g);
        for (int with_w = 0; with_w < 2; with_w++) {
            ct_tensor *r64[4] = {0}, *r32[4] = {0};
            convt_grads(x, w, b, gy, stride, pad, op, groups, with_w, r64);
            convt_grads(ct_to_dtype(x, CT_F32), ct_to_dtype(w, CT_F32), ct_to_dtype(b, CT_F32), gy, stride, pad,
                        op, groups, with_w, r32);
            for (int i = 0; i < (with_w ? 3 : 1); i++) {
                double scale = ct_item(ct_max_all(ct_abs(r64[i])));
                double d = ct_item(ct_max_all(ct_abs(ct_sub(ct_to_dtype(r32[i], CT_F64), r64[i])))) / scale;
                cr_expect_lt(d, 1e-5, "stride %d padding %d output padding %d groups %d: gradient %d off by %g "
                             "(relative to its largest entry %g)", stride, pad, op, groups, i, d, scale);
                ct_free(r64[i]), ct_free(r32[i]);
            }
            double dy = ct_item(ct_max_all(ct_abs(ct_sub(ct_to_dtype(r32[3], CT_F64), r64[3]))));
            cr_expect_lt(dy, 1e-4, "the output is off by %g", dy);
        }
    }
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    ct_gen_free(g);
}

/* ---- GroupNorm on channels-last tensors (ct_groupnorm.cpp) ------------------------- */

/* y = group_norm(x) — or SiLU(group_norm(x + sh)) when silu (sh (N, C) or NULL) — the
 * gradients of Σ gy ⊙ y w.r.t. x, w, b and sh, and the gradient of Σ (∂x)² w.r.t. w (a
 * second derivative), with x in the channels-last layout or not:
 * out = {y, ∂x, ∂w, ∂b, ∂sh, ∂²}. w and b may be NULL (then only y, ∂x and ∂sh). */
static void gn_grads(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b, const ct_tensor *sh,
                     const ct_tensor *gy, int groups, bool cl, bool silu, ct_tensor **out)
{
    ct_tensor *lx = cl ? ct_to_channels_last(ct_detach(x)) : ct_detach(x);
    ct_tensor *lw = w ? ct_detach(w) : NULL, *lb = b ? ct_detach(b) : NULL, *ls = sh ? ct_detach(sh) : NULL;
    ct_set_requires_grad(lx, true);
    if (lw) ct_set_requires_grad(lw, true);
    if (lb) ct_set_requires_grad(lb, true);
    if (ls) ct_set_requires_grad(ls, true);
    cr_assert_eq(ct_is_channels_last(lx), cl);
    ct_tensor *y = silu ? ct_group_norm_silu(lx, ls, groups, lw, lb, 1e-5) : ct_group_norm(lx, groups, lw, lb, 1e-5);
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_expect_eq(ct_is_channels_last(y), cl, "the output keeps the input's layout");
    ct_tensor *c = ct_sum(ct_mul(y, ct_to_dtype(gy, ct_dtype_of(y))));
    const ct_tensor *in[4] = {lx, lw, lb, ls};
    ct_tensor *g[4] = {0};
    int n = w ? 3 : 1;
    /* the backward pass's loops (no graph), then its ATen formulas (a graph) */
    cr_assert_eq(ct_grad((const ct_tensor *const[]){c}, NULL, 1, in, n, g, true, false, false),
                 CT_OK, "%s", ct_last_error());
    if (ls) cr_assert_eq(ct_grad((const ct_tensor *const[]){c}, NULL, 1, (const ct_tensor *const[]){ls}, 1, g + 3,
                                 true, false, false), CT_OK, "%s", ct_last_error());
    out[0] = y, out[1] = g[0], out[2] = g[1], out[3] = g[2], out[4] = g[3];
    ct_tensor *gx;
    cr_assert_eq(ct_grad((const ct_tensor *const[]){c}, NULL, 1, in, 1, &gx, true, true, false),
                 CT_OK, "%s", ct_last_error());
    double scale = ct_item(ct_max_all(ct_abs(gx)));
    cr_expect_lt(ct_max_abs_diff(gx, out[1]) / scale, ct_dtype_of(x) == CT_F64 ? 1e-12 : 1e-5,
                 "∂x with and without a graph");
    if (w) {
        cr_assert_eq(ct_grad((const ct_tensor *const[]){ct_sum(ct_square(gx))}, NULL, 1,
                             (const ct_tensor *const[]){lw}, 1, out + 5, false, false, false),
                     CT_OK, "%s", ct_last_error());
    }
}

/* The fused loops (channels-last) against libtorch's ops (NCHW: at::group_norm, at::silu
 * and the add), float64 and float32: plain GroupNorm, then SiLU(GroupNorm(x)) and
 * SiLU(GroupNorm(x + sh)) (ct_group_norm_silu). */
CT_TEST(fused, group_norm_channels_last_equals_libtorchs)
{
    ct_gen *g = ct_gen_new(44);
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(true);
    const int groups[3] = {1, 2, 8};
    const char *kinds[3] = {"group_norm", "silu(group_norm)", "silu(group_norm(x + sh))"};
    for (int kind = 0; kind < 3; kind++)
        for (int k = 0; k < 3; k++)
            for (int affine = 0; affine < 2; affine++) {
                /* 40 channels: two blocks of 16 and 8 left; 15 pixels: one left after the pairs. An
                 * offset and a scale per channel, so that the means are far from 0 */
                ct_tensor *x = ct_add(ct_mul(randn64(CT_SHAPE(3, 40, 5, 3), g), ct_exp(randn64(CT_SHAPE(1, 40, 1, 1), g))),
                                      ct_mul(randn64(CT_SHAPE(1, 40, 1, 1), g), ct_full(CT_SHAPE(1), 3.0, CT_F64)));
                ct_tensor *w = affine ? randn64(CT_SHAPE(40), g) : NULL, *b = affine ? randn64(CT_SHAPE(40), g) : NULL;
                ct_tensor *sh = kind == 2 ? ct_mul(randn64(CT_SHAPE(3, 40), g), ct_full(CT_SHAPE(1), 2.0, CT_F64)) : NULL;
                ct_tensor *gy = randn64(CT_SHAPE(3, 40, 5, 3), g);
                ct_tensor *ref[6] = {0}, *got[6] = {0}, *f32[6] = {0};
                bool silu = kind > 0;
                gn_grads(x, w, b, sh, gy, groups[k], false, silu, ref);
                gn_grads(x, w, b, sh, gy, groups[k], true, silu, got);
                gn_grads(ct_to_dtype(x, CT_F32), w ? ct_to_dtype(w, CT_F32) : NULL, b ? ct_to_dtype(b, CT_F32) : NULL,
                         sh ? ct_to_dtype(sh, CT_F32) : NULL, gy, groups[k], true, silu, f32);
                const char *what[6] = {"output", "∂x", "∂w", "∂b", "∂sh", "∂²/∂w"};
                for (int i = 0; i < 6; i++) {
                    if ((i >= 2 && i <= 3 && !affine) || (i == 4 && !sh) || (i == 5 && !affine)) continue;
                    cr_assert_not_null(got[i], "%s: %s missing", kinds[kind], what[i]);
                    double scale = ct_item(ct_max_all(ct_abs(ref[i])));
                    double d = ct_max_abs_diff(got[i], ref[i]) / scale;
                    cr_expect_lt(d, 1e-12, "%s, %d groups, affine %d: %s off by %g (relative to %g)", kinds[kind],
                                 groups[k], affine, what[i], d, scale);
                    if (i < 5) {
                        double d32 = ct_max_abs_diff(ct_to_dtype(f32[i], CT_F64), ref[i]) / scale;
                        cr_expect_lt(d32, 2e-5, "%s, %d groups, affine %d, float32: %s off by %g", kinds[kind],
                                     groups[k], affine, what[i], d32);
                    }
                }
            }
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    ct_gen_free(g);
}

/* The float32 SiLU of the fused loops (its own vectorised e^x) against libtorch's silu in
 * float64, on pre-activations z from −95 to 95 in steps of 0.01: within a few float32
 * roundings wherever |SiLU(z)| > 1e-20 (z > −50; below, both are 0 to float32's
 * subnormals: the loops hold e^−z to e^88). */
CT_TEST(fused, group_norm_silu_float32_matches_silu)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *v = ct_to_dtype(ct_linspace(-95.0, 95.0, 19001, CT_F64), CT_F32);
    ct_tensor *x = ct_to_channels_last(ct_reshape(v, CT_SHAPE(1, 1, 19001, 1)));
    /* one channel and one group: z = (v − mean) r w, with w = the standard deviation (z ≈ v) */
    ct_tensor *w = ct_reshape(ct_sqrt(ct_mean(ct_square(v))), CT_SHAPE(1));
    ct_tensor *y = ct_group_norm_silu(x, NULL, 1, w, NULL, 0.0);
    ct_tensor *z = ct_group_norm(x, 1, w, NULL, 0.0);   /* the same loops without SiLU: the same z */
    cr_assert(y && z, "%s", ct_last_error());
    ct_tensor *zd = ct_to_dtype(z, CT_F64);
    cr_assert_lt(ct_item(ct_min_all(zd)), -94.0);
    cr_assert_gt(ct_item(ct_max_all(zd)), 94.0);
    ct_tensor *ref = ct_silu(zd);
    ct_tensor *err = ct_div(ct_abs(ct_sub(ct_to_dtype(y, CT_F64), ref)),
                            ct_add(ct_abs(ref), ct_full(CT_SHAPE(1), 1e-20, CT_F64)));
    double e = ct_item(ct_max_all(err));
    cr_expect_lt(e, 4e-7, "SiLU off by %g relative", e);
    ct_scope_end(s);
}
