// Tensor ops: elementwise, reductions, shapes, linear algebra and functional nn ops.
// Each mirrors the PyTorch op of the same name (see the comments in ct.h).
#include "ct_internal.hpp"

using namespace ct;

#define CT_UNARY(name, expr)                                    \
    ct_tensor *name(const ct_tensor *a) {                       \
        if (!a) return null_input(#name), nullptr;              \
        return guard(#name, [&] { const at::Tensor &x = a->t; return (expr); }); \
    }
#define CT_BINARY(name, expr)                                   \
    ct_tensor *name(const ct_tensor *a, const ct_tensor *b) {   \
        if (!a || !b) return null_input(#name), nullptr;        \
        return guard(#name, [&] { const at::Tensor &x = a->t, &y = b->t; return (expr); }); \
    }
#define CT_SCALAR_OP(name, expr)                                \
    ct_tensor *name(const ct_tensor *a, double s) {             \
        if (!a) return null_input(#name), nullptr;              \
        return guard(#name, [&] { const at::Tensor &x = a->t; return (expr); }); \
    }
#define CT_DIM_OP(name, expr)                                   \
    ct_tensor *name(const ct_tensor *a, int dim, bool keepdim) { \
        if (!a) return null_input(#name), nullptr;              \
        return guard(#name, [&] { const at::Tensor &x = a->t; return (expr); }); \
    }

// A NULL element is a NULL input (the error of whatever made it stays the message);
// check with has_null before building the list.
static bool has_null(const ct_tensor *const *ts, int n) {
    for (int i = 0; ts && i < n; i++)
        if (!ts[i]) return true;
    return false;
}
static std::vector<at::Tensor> tensor_list(const ct_tensor *const *ts, int n) {
    if (!ts || n <= 0) throw std::invalid_argument("empty tensor list");
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
    return v;
}

extern "C" {

/* ---- elementwise ---------------------------------------------------------------- */
CT_BINARY(ct_add, x + y)
CT_BINARY(ct_sub, x - y)
CT_BINARY(ct_mul, x * y)
CT_BINARY(ct_div, x / y)
CT_BINARY(ct_pow, at::pow(x, y))
CT_BINARY(ct_maximum, at::maximum(x, y))
CT_BINARY(ct_minimum, at::minimum(x, y))
CT_BINARY(ct_remainder, at::remainder(x, y))
CT_BINARY(ct_atan2, at::atan2(x, y))
CT_SCALAR_OP(ct_adds, x + s)
CT_SCALAR_OP(ct_muls, x * s)
CT_SCALAR_OP(ct_pows, at::pow(x, s))
CT_SCALAR_OP(ct_rsubs, at::rsub(x, s))
CT_SCALAR_OP(ct_remainders, at::remainder(x, s))
CT_SCALAR_OP(ct_clamp_min, at::clamp_min(x, s))
CT_SCALAR_OP(ct_lts, x.lt(s))
CT_SCALAR_OP(ct_gts, x.gt(s))

ct_tensor *ct_clamp(const ct_tensor *a, double lo, double hi) {
    if (!a) return null_input("ct_clamp"), nullptr;
    return guard("ct_clamp", [&] { return at::clamp(a->t, lo, hi); });
}
ct_tensor *ct_axpy(const ct_tensor *a, double alpha, const ct_tensor *b) {
    if (!a || !b) return null_input("ct_axpy"), nullptr;
    return guard("ct_axpy", [&] { return at::add(a->t, b->t, alpha); });
}

CT_UNARY(ct_neg, -x)
CT_UNARY(ct_exp, at::exp(x))
CT_UNARY(ct_log, at::log(x))
CT_UNARY(ct_log1p, at::log1p(x))
CT_UNARY(ct_expm1, at::expm1(x))
CT_UNARY(ct_sqrt, at::sqrt(x))
CT_UNARY(ct_rsqrt, at::rsqrt(x))
CT_UNARY(ct_square, at::square(x))
CT_UNARY(ct_abs, at::abs(x))
CT_UNARY(ct_sign, at::sign(x))
CT_UNARY(ct_sin, at::sin(x))
CT_UNARY(ct_cos, at::cos(x))
CT_UNARY(ct_tanh, at::tanh(x))
CT_UNARY(ct_atan, at::atan(x))
CT_UNARY(ct_sigmoid, at::sigmoid(x))
CT_UNARY(ct_floor, at::floor(x))
CT_UNARY(ct_reciprocal, at::reciprocal(x))
CT_UNARY(ct_isfinite, at::isfinite(x))

CT_BINARY(ct_lt, x.lt(y))
CT_BINARY(ct_gt, x.gt(y))
CT_BINARY(ct_eq, x.eq(y))
ct_tensor *ct_where(const ct_tensor *c, const ct_tensor *a, const ct_tensor *b) {
    if (!c || !a || !b) return null_input("ct_where"), nullptr;
    return guard("ct_where", [&] { return at::where(c->t, a->t, b->t); });
}

/* ---- reductions ----------------------------------------------------------------- */
CT_UNARY(ct_sum, x.sum())
CT_UNARY(ct_mean, x.mean())
CT_UNARY(ct_max_all, x.max())
CT_UNARY(ct_min_all, x.min())
CT_UNARY(ct_norm, at::norm(x))
CT_UNARY(ct_sum_rows, x.dim() <= 1 ? x.clone() : x.flatten(1).sum(1))
CT_DIM_OP(ct_sum_dim, x.sum(dim, keepdim))
CT_DIM_OP(ct_mean_dim, x.mean(dim, keepdim))
CT_DIM_OP(ct_max_dim, std::get<0>(x.max(dim, keepdim)))
CT_DIM_OP(ct_min_dim, std::get<0>(x.min(dim, keepdim)))
CT_DIM_OP(ct_argmax, x.argmax(dim, keepdim))
CT_DIM_OP(ct_argmin, x.argmin(dim, keepdim))
CT_DIM_OP(ct_logsumexp, at::logsumexp(x, dim, keepdim))
ct_tensor *ct_argsort(const ct_tensor *a, int dim) {
    if (!a) return null_input("ct_argsort"), nullptr;
    return guard("ct_argsort", [&] { return at::argsort(a->t, (int64_t)dim, false); });
}
CT_DIM_OP(ct_norm_dim, at::norm(x, 2, dim, keepdim))
ct_tensor *ct_std_dim(const ct_tensor *a, int dim, bool unbiased, bool keepdim) {
    if (!a) return null_input("ct_std_dim"), nullptr;
    return guard("ct_std_dim", [&] { return a->t.std(dim, unbiased, keepdim); });
}
ct_tensor *ct_var_dim(const ct_tensor *a, int dim, bool unbiased, bool keepdim) {
    if (!a) return null_input("ct_var_dim"), nullptr;
    return guard("ct_var_dim", [&] { return a->t.var(dim, unbiased, keepdim); });
}

/* ---- shapes --------------------------------------------------------------------- */
ct_tensor *ct_reshape(const ct_tensor *a, ct_shape s) {
    if (!a) return null_input("ct_reshape"), nullptr;
    return guard("ct_reshape", [&] { return a->t.reshape(dims(s)); });
}
ct_tensor *ct_flatten(const ct_tensor *a, int start_dim) {
    if (!a) return null_input("ct_flatten"), nullptr;
    return guard("ct_flatten", [&] { return a->t.flatten(start_dim); });
}
ct_tensor *ct_transpose(const ct_tensor *a, int d0, int d1) {
    if (!a) return null_input("ct_transpose"), nullptr;
    return guard("ct_transpose", [&] { return a->t.transpose(d0, d1); });
}
ct_tensor *ct_permute(const ct_tensor *a, ct_shape order) {
    if (!a) return null_input("ct_permute"), nullptr;
    return guard("ct_permute", [&] { return a->t.permute(dims(order)); });
}
ct_tensor *ct_unsqueeze(const ct_tensor *a, int dim) {
    if (!a) return null_input("ct_unsqueeze"), nullptr;
    return guard("ct_unsqueeze", [&] { return a->t.unsqueeze(dim); });
}
ct_tensor *ct_squeeze(const ct_tensor *a, int dim) {
    if (!a) return null_input("ct_squeeze"), nullptr;
    return guard("ct_squeeze", [&] { return a->t.squeeze(dim); });
}
ct_tensor *ct_expand(const ct_tensor *a, ct_shape s) {
    if (!a) return null_input("ct_expand"), nullptr;
    return guard("ct_expand", [&] { return a->t.expand(dims(s)); });
}
ct_tensor *ct_repeat(const ct_tensor *a, ct_shape reps) {
    if (!a) return null_input("ct_repeat"), nullptr;
    return guard("ct_repeat", [&] { return a->t.repeat(dims(reps)); });
}
ct_tensor *ct_repeat_interleave(const ct_tensor *a, int64_t reps, int dim) {
    if (!a) return null_input("ct_repeat_interleave"), nullptr;
    return guard("ct_repeat_interleave",
                 [&] { return at::repeat_interleave(a->t, reps, (int64_t)dim); });
}
ct_tensor *ct_narrow(const ct_tensor *a, int dim, int64_t start, int64_t len) {
    if (!a) return null_input("ct_narrow"), nullptr;
    return guard("ct_narrow", [&] { return a->t.narrow(dim, start, len); });
}
ct_tensor *ct_select(const ct_tensor *a, int dim, int64_t index) {
    if (!a) return null_input("ct_select"), nullptr;
    return guard("ct_select", [&] { return a->t.select(dim, index); });
}
ct_tensor *ct_index_select(const ct_tensor *a, int dim, const ct_tensor *idx) {
    if (!a || !idx) return null_input("ct_index_select"), nullptr;
    return guard("ct_index_select", [&] { return a->t.index_select(dim, idx->t); });
}
ct_tensor *ct_gather(const ct_tensor *a, int dim, const ct_tensor *idx) {
    if (!a || !idx) return null_input("ct_gather"), nullptr;
    return guard("ct_gather", [&] { return a->t.gather(dim, idx->t); });
}
ct_tensor *ct_masked_select(const ct_tensor *a, const ct_tensor *mask) {
    if (!a || !mask) return null_input("ct_masked_select"), nullptr;
    return guard("ct_masked_select", [&] { return a->t.masked_select(mask->t); });
}
ct_status ct_split(const ct_tensor *x, int dim, const int64_t *sizes, int n, ct_tensor **out) {
    if (!out || n < 1) return set_error("ct_split", "no output slots"), CT_ERR_ARG;
    for (int i = 0; i < n; i++) out[i] = nullptr;
    if (!x || !sizes) return null_input("ct_split"), CT_ERR_ARG;
    return guard_status("ct_split", [&] {
        std::vector<at::Tensor> parts =
            at::split_with_sizes(x->t, at::IntArrayRef(sizes, (size_t)n), dim);
        for (int i = 0; i < n; i++) out[i] = wrap(parts[(size_t)i]);
        return CT_OK;
    });
}

ct_tensor *ct_cat(const ct_tensor *const *ts, int n, int dim) {
    if (has_null(ts, n)) return null_input("ct_cat"), nullptr;
    return guard("ct_cat", [&] { return at::cat(tensor_list(ts, n), dim); });
}
ct_tensor *ct_cat2(const ct_tensor *a, const ct_tensor *b, int dim) {
    if (!a || !b) return null_input("ct_cat2"), nullptr;
    return guard("ct_cat2", [&] { return at::cat({a->t, b->t}, dim); });
}
ct_tensor *ct_stack(const ct_tensor *const *ts, int n, int dim) {
    if (has_null(ts, n)) return null_input("ct_stack"), nullptr;
    return guard("ct_stack", [&] { return at::stack(tensor_list(ts, n), dim); });
}
ct_tensor *ct_flip(const ct_tensor *a, int dim) {
    if (!a) return null_input("ct_flip"), nullptr;
    return guard("ct_flip", [&] { return a->t.flip({dim}); });
}
ct_tensor *ct_roll(const ct_tensor *a, int64_t shift, int dim) {
    if (!a) return null_input("ct_roll"), nullptr;
    return guard("ct_roll", [&] { return a->t.roll({shift}, {dim}); });
}
ct_status ct_copy_(ct_tensor *dst, const ct_tensor *src) {
    if (!dst || !src) return null_input("ct_copy_"), CT_ERR_ARG;
    return guard_status("ct_copy_", [&] {
        c10::NoGradGuard ng;
        dst->t.copy_(src->t);
        return CT_OK;
    });
}
ct_status ct_fill_(ct_tensor *dst, double v) {
    if (!dst) return null_input("ct_fill_"), CT_ERR_ARG;
    return guard_status("ct_fill_", [&] {
        c10::NoGradGuard ng;
        dst->t.fill_(v);
        return CT_OK;
    });
}
ct_status ct_zero_(ct_tensor *t) { return ct_fill_(t, 0.0); }
ct_status ct_index_copy_(ct_tensor *dst, int dim, const ct_tensor *idx, const ct_tensor *src) {
    if (!dst || !idx || !src) return null_input("ct_index_copy_"), CT_ERR_ARG;
    return guard_status("ct_index_copy_", [&] {
        c10::NoGradGuard ng;
        dst->t.index_copy_(dim, idx->t, src->t);
        return CT_OK;
    });
}

/* ---- linear algebra ------------------------------------------------------------- */
CT_BINARY(ct_matmul, at::matmul(x, y))
CT_BINARY(ct_mm, at::mm(x, y))
CT_BINARY(ct_bmm, at::bmm(x, y))
CT_BINARY(ct_outer, at::outer(x, y))
CT_BINARY(ct_cdist, at::cdist(x, y))
CT_UNARY(ct_inverse, at::linalg_inv(x))
CT_UNARY(ct_slogdet_abs, std::get<1>(at::linalg_slogdet(x)))
CT_UNARY(ct_qr_q, std::get<0>(at::linalg_qr(x, "reduced")))
CT_UNARY(ct_matrix_exp, at::linalg_matrix_exp(x))

/* ---- functional nn -------------------------------------------------------------- */
static c10::optional<at::Tensor> opt(const ct_tensor *t) {
    return t ? c10::optional<at::Tensor>(t->t) : c10::nullopt;
}

ct_tensor *ct_linear(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b) {
    if (!x || !w) return null_input("ct_linear"), nullptr;
    return guard("ct_linear", [&] { return at::linear(x->t, w->t, opt(b)); });
}
ct_tensor *ct_conv2d(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b, int stride,
                     int padding, int groups) {
    if (!x || !w) return null_input("ct_conv2d"), nullptr;
    return guard("ct_conv2d", [&] {
        return at::conv2d(x->t, w->t, opt(b), {stride, stride}, {padding, padding}, {1, 1},
                          groups);
    });
}
// ct_conv_transpose2d: ct_fused.cpp (its input gradient as a convolution)
// ct_group_norm: ct_groupnorm.cpp (its own loops for channels-last CPU tensors)
ct_tensor *ct_layer_norm(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b, double eps) {
    if (!x) return null_input("ct_layer_norm"), nullptr;
    return guard("ct_layer_norm", [&] {
        return at::layer_norm(x->t, {x->t.size(-1)}, opt(w), opt(b), eps);
    });
}
CT_UNARY(ct_relu, at::relu(x))
CT_UNARY(ct_silu, at::silu(x))
CT_UNARY(ct_gelu, at::gelu(x))
CT_UNARY(ct_softplus, at::softplus(x))
CT_UNARY(ct_elu, at::elu(x))
CT_SCALAR_OP(ct_leaky_relu, at::leaky_relu(x, s))
ct_tensor *ct_softmax(const ct_tensor *x, int dim) {
    if (!x) return null_input("ct_softmax"), nullptr;
    return guard("ct_softmax", [&] { return at::softmax(x->t, dim); });
}
ct_tensor *ct_log_softmax(const ct_tensor *x, int dim) {
    if (!x) return null_input("ct_log_softmax"), nullptr;
    return guard("ct_log_softmax", [&] { return at::log_softmax(x->t, dim); });
}
ct_tensor *ct_dropout(const ct_tensor *x, double p, bool train) {
    if (!x) return null_input("ct_dropout"), nullptr;
    return guard("ct_dropout", [&] { return at::dropout(x->t, p, train); });
}
ct_tensor *ct_avg_pool2d(const ct_tensor *x, int k, int stride) {
    if (!x) return null_input("ct_avg_pool2d"), nullptr;
    return guard("ct_avg_pool2d", [&] { return at::avg_pool2d(x->t, {k, k}, {stride, stride}); });
}
ct_tensor *ct_max_pool2d(const ct_tensor *x, int k, int stride) {
    if (!x) return null_input("ct_max_pool2d"), nullptr;
    return guard("ct_max_pool2d", [&] { return at::max_pool2d(x->t, {k, k}, {stride, stride}); });
}
ct_tensor *ct_adaptive_avg_pool2d(const ct_tensor *x, int oh, int ow) {
    if (!x) return null_input("ct_adaptive_avg_pool2d"), nullptr;
    return guard("ct_adaptive_avg_pool2d", [&] { return at::adaptive_avg_pool2d(x->t, {oh, ow}); });
}
ct_tensor *ct_upsample_nearest2d(const ct_tensor *x, int scale) {
    if (!x) return null_input("ct_upsample_nearest2d"), nullptr;
    return guard("ct_upsample_nearest2d", [&] {
        return at::upsample_nearest2d(x->t, {x->t.size(2) * scale, x->t.size(3) * scale});
    });
}
ct_tensor *ct_upsample_bilinear2d(const ct_tensor *x, int oh, int ow) {
    if (!x) return null_input("ct_upsample_bilinear2d"), nullptr;
    return guard("ct_upsample_bilinear2d",
                 [&] { return at::upsample_bilinear2d(x->t, {oh, ow}, false); });
}
ct_tensor *ct_affine_warp(const ct_tensor *x, const ct_tensor *theta) {
    if (!x || !theta) return null_input("ct_affine_warp"), nullptr;
    return guard("ct_affine_warp", [&] {
        at::Tensor grid = at::affine_grid_generator(theta->t.to(x->t.scalar_type()),
                                                    x->t.sizes(), false);
        return at::grid_sampler(x->t, grid, /*bilinear*/ 0, /*zeros*/ 0, false);
    });
}
ct_tensor *ct_cross_entropy(const ct_tensor *logits, const ct_tensor *target) {
    if (!logits || !target) return null_input("ct_cross_entropy"), nullptr;
    return guard("ct_cross_entropy", [&] {
        return at::cross_entropy_loss(logits->t, target->t, {}, at::Reduction::Mean, -100, 0.0);
    });
}
CT_BINARY(ct_mse, at::mse_loss(x, y, at::Reduction::Mean))

}  // extern "C"
