// Fused elementwise chains as custom autograd functions: one node and one pass over the
// data where autograd would record a chain of small ops. On the CPU in float32/float64
// forward and backward are single loops; elsewhere (CUDA, other dtypes, forward-mode AD,
// a backward that must itself be differentiable) the same formulas run as ATen ops, so
// every derivative that the composed chain has still exists.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "ct_internal.hpp"

using namespace ct;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// ---- the affine coupling: y = x ⊙ exp(σ(s)) + t, h = [s, t] ------------------------------

// σ(s) = c·(2/π)·atan(s/c) (c > 0; the identity for c <= 0) and its derivative.
struct Clamp {
    double c;
    template <class T> T sigma(T s) const {
        return c > 0 ? (T)(c * M_2_PI) * std::atan(s / (T)c) : s;
    }
    template <class T> T dsigma(T s) const {
        if (c <= 0) return (T)1;
        T u = s / (T)c;
        return (T)M_2_PI / ((T)1 + u * u);
    }
    at::Tensor sigma(const at::Tensor &s) const {
        return c > 0 ? at::atan(s / c) * (c * M_2_PI) : s;
    }
    at::Tensor dsigma(const at::Tensor &s) const {
        if (c <= 0) return at::ones_like(s);
        at::Tensor u = s / c;
        return at::reciprocal(u * u + 1) * M_2_PI;
    }
};

// The composed chain (differentiable in every mode): {out, logdet}.
std::vector<at::Tensor> coupling_composed(const at::Tensor &in, const at::Tensor &h, Clamp cl,
                                          bool inverse) {
    int64_t d = in.size(1);
    at::Tensor s = cl.sigma(h.narrow(1, 0, d)), t = h.narrow(1, d, d);
    if (inverse) return {(in - t) * at::exp(-s), -s.sum(1)};
    return {in * at::exp(s) + t, s.sum(1)};
}

// The gradients {g_in, g_h} of the chain as ATen ops on the saved inputs (so that they
// are differentiable again when the backward pass builds a graph).
std::vector<at::Tensor> coupling_backward_composed(const at::Tensor &in, const at::Tensor &h,
                                                   Clamp cl, bool inverse, const at::Tensor &gy,
                                                   const at::Tensor &gld) {
    int64_t d = in.size(1);
    at::Tensor sr = h.narrow(1, 0, d), t = h.narrow(1, d, d);
    at::Tensor s = cl.sigma(sr), ds = cl.dsigma(sr);
    at::Tensor gl = gld.unsqueeze(1);
    if (inverse) {
        at::Tensor e = at::exp(-s), x = (in - t) * e;
        at::Tensor g_in = gy * e;
        at::Tensor gs = -(gy * x) - gl;
        return {g_in, at::cat({gs * ds, -g_in}, 1)};
    }
    at::Tensor e = at::exp(s);
    at::Tensor g_in = gy * e;
    at::Tensor gs = g_in * in + gl;
    return {g_in, at::cat({gs * ds, gy}, 1)};
}

// Rows of in (B, d) and h (B, 2d) with unit stride along dim 1.
bool loop_ok(const at::Tensor &in, const at::Tensor &h) {
    return in.device().is_cpu() && h.device().is_cpu() && in.scalar_type() == h.scalar_type() &&
           (in.scalar_type() == at::kFloat || in.scalar_type() == at::kDouble) &&
           in.stride(1) == 1 && h.stride(1) == 1 && ct_fwad_active_level() < 0;
}

// A grain of about 16k elements per thread: mini-batches of the latent families run on one.
int64_t grain(int64_t d) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)); }

template <class T>
void coupling_forward_loop(const at::Tensor &in, const at::Tensor &h, Clamp cl, bool inverse,
                           at::Tensor &out, at::Tensor &ld) {
    int64_t B = in.size(0), d = in.size(1);
    const T *pi = in.data_ptr<T>(), *ph = h.data_ptr<T>();
    T *po = out.data_ptr<T>(), *pl = ld.data_ptr<T>();
    int64_t si = in.stride(0), sh = h.stride(0);
    at::parallel_for(0, B, grain(d), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; b++) {
            const T *x = pi + b * si, *s = ph + b * sh, *t = s + d;
            T *y = po + b * d, acc = 0;
            for (int64_t j = 0; j < d; j++) {
                T sj = cl.sigma(s[j]);
                acc += sj;
                y[j] = inverse ? (x[j] - t[j]) * std::exp(-sj) : x[j] * std::exp(sj) + t[j];
            }
            pl[b] = inverse ? -acc : acc;
        }
    });
}

template <class T>
void coupling_backward_loop(const at::Tensor &in, const at::Tensor &h, Clamp cl, bool inverse,
                            const at::Tensor &gy, const at::Tensor &gld, at::Tensor &g_in,
                            at::Tensor &g_h) {
    int64_t B = in.size(0), d = in.size(1);
    const T *pi = in.data_ptr<T>(), *ph = h.data_ptr<T>();
    const T *pg = gy.defined() ? gy.data_ptr<T>() : nullptr;
    const T *pl = gld.defined() ? gld.data_ptr<T>() : nullptr;
    T *pgi = g_in.data_ptr<T>(), *pgh = g_h.data_ptr<T>();
    int64_t si = in.stride(0), sh = h.stride(0);
    at::parallel_for(0, B, grain(d), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; b++) {
            const T *x = pi + b * si, *sr = ph + b * sh, *t = sr + d;
            const T *g = pg ? pg + b * d : nullptr;
            T gl = pl ? pl[b] : (T)0;
            T *gi = pgi + b * d, *gs = pgh + b * 2 * d, *gt = gs + d;
            for (int64_t j = 0; j < d; j++) {
                T sj = cl.sigma(sr[j]), dsj = cl.dsigma(sr[j]), gj = g ? g[j] : (T)0;
                if (inverse) {
                    T e = std::exp(-sj), xo = (x[j] - t[j]) * e;
                    gi[j] = gj * e;
                    gs[j] = (-gj * xo - gl) * dsj;
                    gt[j] = -gj * e;
                } else {
                    T e = std::exp(sj);
                    gi[j] = gj * e;
                    gs[j] = (gj * x[j] * e + gl) * dsj;
                    gt[j] = gj;
                }
            }
        }
    });
}

struct AffineCoupling : public torch::autograd::Function<AffineCoupling> {
    static variable_list forward(AutogradContext *actx, const at::Tensor &in, const at::Tensor &h,
                                 double clamp, bool inverse) {
        actx->save_for_backward({in, h});
        actx->saved_data["clamp"] = clamp;
        actx->saved_data["inverse"] = inverse;
        Clamp cl{clamp};
        at::Tensor out = at::empty(in.sizes(), in.options());
        at::Tensor ld = at::empty({in.size(0)}, in.options());
        AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "ct_affine_coupling", [&] {
            coupling_forward_loop<scalar_t>(in, h, cl, inverse, out, ld);
        });
        return {out, ld};
    }

    static variable_list backward(AutogradContext *actx, variable_list g) {
        variable_list saved = actx->get_saved_variables();
        const at::Tensor &in = saved[0], &h = saved[1];
        Clamp cl{actx->saved_data["clamp"].toDouble()};
        bool inverse = actx->saved_data["inverse"].toBool();
        at::Tensor gy = g[0], gld = g[1];
        if (!gy.defined() && !gld.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
        if (c10::GradMode::is_enabled()) {   // a backward pass that builds a graph
            if (!gy.defined()) gy = at::zeros_like(in);
            if (!gld.defined()) gld = at::zeros({in.size(0)}, in.options());
            auto r = coupling_backward_composed(in, h, cl, inverse, gy, gld);
            return {r[0], r[1], at::Tensor(), at::Tensor()};
        }
        if (gy.defined()) gy = gy.contiguous();
        if (gld.defined()) gld = gld.contiguous();
        at::Tensor g_in = at::empty(in.sizes(), in.options());
        at::Tensor g_h = at::empty(h.sizes(), h.options());
        AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "ct_affine_coupling_backward", [&] {
            coupling_backward_loop<scalar_t>(in, h, cl, inverse, gy, gld, g_in, g_h);
        });
        return {g_in, g_h, at::Tensor(), at::Tensor()};
    }
};

// ---- ActNorm: y = (x + b) ⊙ exp(s) per column, logdet Σ s ------------------------------

std::vector<at::Tensor> actnorm_composed(const at::Tensor &in, const at::Tensor &b,
                                         const at::Tensor &s, bool inverse) {
    at::Tensor ld = s.sum().expand({in.size(0)});
    if (inverse) return {in * at::exp(-s) - b, -ld};
    return {(in + b) * at::exp(s), ld};
}

// {g_in, g_b, g_s} as ATen ops on the saved inputs (differentiable again).
std::vector<at::Tensor> actnorm_backward_composed(const at::Tensor &in, const at::Tensor &b,
                                                  const at::Tensor &s, bool inverse,
                                                  const at::Tensor &gy, const at::Tensor &gld) {
    at::Tensor gl = gld.sum();
    if (inverse) {
        at::Tensor e = at::exp(-s), g_in = gy * e;
        return {g_in, -gy.sum(0), -(g_in * in).sum(0) - gl};
    }
    at::Tensor e = at::exp(s), g_in = gy * e;
    return {g_in, g_in.sum(0), (g_in * (in + b)).sum(0) + gl};
}

bool actnorm_loop_ok(const at::Tensor &in, const at::Tensor &b, const at::Tensor &s) {
    return in.device().is_cpu() && b.device().is_cpu() && s.device().is_cpu() &&
           in.scalar_type() == b.scalar_type() && in.scalar_type() == s.scalar_type() &&
           (in.scalar_type() == at::kFloat || in.scalar_type() == at::kDouble) &&
           in.stride(1) == 1 && b.is_contiguous() && s.is_contiguous() && ct_fwad_active_level() < 0;
}

template <class T>
void actnorm_forward_loop(const at::Tensor &in, const at::Tensor &bias, const at::Tensor &logs,
                          bool inverse, at::Tensor &out, at::Tensor &ld) {
    int64_t B = in.size(0), D = in.size(1), si = in.stride(0);
    const T *px = in.data_ptr<T>(), *pb = bias.data_ptr<T>(), *ps = logs.data_ptr<T>();
    T *py = out.data_ptr<T>(), *pl = ld.data_ptr<T>();
    std::vector<T> e((size_t)D);
    T sum = 0;
    for (int64_t j = 0; j < D; j++) {
        e[(size_t)j] = std::exp(inverse ? -ps[j] : ps[j]);
        sum += ps[j];
    }
    for (int64_t r = 0; r < B; r++) {
        const T *x = px + r * si;
        T *y = py + r * D;
        for (int64_t j = 0; j < D; j++)
            y[j] = inverse ? x[j] * e[(size_t)j] - pb[j] : (x[j] + pb[j]) * e[(size_t)j];
        pl[r] = inverse ? -sum : sum;
    }
}

template <class T>
void actnorm_backward_loop(const at::Tensor &in, const at::Tensor &bias, const at::Tensor &logs,
                           bool inverse, const at::Tensor &gy, const at::Tensor &gld,
                           at::Tensor &g_in, at::Tensor &g_b, at::Tensor &g_s) {
    int64_t B = in.size(0), D = in.size(1), si = in.stride(0);
    const T *px = in.data_ptr<T>(), *pb = bias.data_ptr<T>(), *ps = logs.data_ptr<T>();
    const T *pg = gy.defined() ? gy.data_ptr<T>() : nullptr;
    T *gi = g_in.data_ptr<T>(), *gb = g_b.data_ptr<T>(), *gs = g_s.data_ptr<T>();
    T gl = 0;
    if (gld.defined()) {
        const T *pl = gld.data_ptr<T>();
        for (int64_t r = 0; r < B; r++) gl += pl[r];
    }
    std::vector<T> e((size_t)D);
    for (int64_t j = 0; j < D; j++) {
        e[(size_t)j] = std::exp(inverse ? -ps[j] : ps[j]);
        gb[j] = 0;
        gs[j] = 0;
    }
    for (int64_t r = 0; r < B; r++) {
        const T *x = px + r * si, *g = pg ? pg + r * D : nullptr;
        T *o = gi + r * D;
        for (int64_t j = 0; j < D; j++) {
            T gj = g ? g[j] : (T)0, ge = gj * e[(size_t)j];
            o[j] = ge;
            if (inverse) {
                gb[j] -= gj;
                gs[j] -= ge * x[j];
            } else {
                gb[j] += ge;
                gs[j] += ge * (x[j] + pb[j]);
            }
        }
    }
    for (int64_t j = 0; j < D; j++) gs[j] += inverse ? -gl : gl;
}

struct ActNorm : public torch::autograd::Function<ActNorm> {
    static variable_list forward(AutogradContext *actx, const at::Tensor &in, const at::Tensor &b,
                                 const at::Tensor &s, bool inverse) {
        actx->save_for_backward({in, b, s});
        actx->saved_data["inverse"] = inverse;
        at::Tensor out = at::empty(in.sizes(), in.options());
        at::Tensor ld = at::empty({in.size(0)}, in.options());
        AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "ct_actnorm", [&] {
            actnorm_forward_loop<scalar_t>(in, b, s, inverse, out, ld);
        });
        return {out, ld};
    }

    static variable_list backward(AutogradContext *actx, variable_list g) {
        variable_list saved = actx->get_saved_variables();
        const at::Tensor &in = saved[0], &b = saved[1], &s = saved[2];
        bool inverse = actx->saved_data["inverse"].toBool();
        at::Tensor gy = g[0], gld = g[1];
        if (!gy.defined() && !gld.defined())
            return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
        if (c10::GradMode::is_enabled()) {   // a backward pass that builds a graph
            if (!gy.defined()) gy = at::zeros_like(in);
            if (!gld.defined()) gld = at::zeros({in.size(0)}, in.options());
            auto r = actnorm_backward_composed(in, b, s, inverse, gy, gld);
            return {r[0], r[1], r[2], at::Tensor()};
        }
        if (gy.defined()) gy = gy.contiguous();
        if (gld.defined()) gld = gld.contiguous();
        at::Tensor g_in = at::empty(in.sizes(), in.options());
        at::Tensor g_b = at::empty(b.sizes(), b.options()), g_s = at::empty(s.sizes(), s.options());
        AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "ct_actnorm_backward", [&] {
            actnorm_backward_loop<scalar_t>(in, b, s, inverse, gy, gld, g_in, g_b, g_s);
        });
        return {g_in, g_b, g_s, at::Tensor()};
    }
};

// ---- the transposed convolution, its input gradient as a convolution ------------------
// libtorch 1.13 runs a CPU transposed convolution with slow_conv_transpose2d (oneDNN's
// deconvolution is not in it), whose backward unfolds the gradient one sample at a time.
// The gradient with respect to the input of y = conv_transpose2d(x, w) is the forward
// convolution conv2d(∂y, w) with the same stride, padding and groups (output_padding
// only widens y), which runs on oneDNN: 1.6x faster for the fiber VAE decoder's first
// stage at batch 256 (NDTM's inner loop differentiates through it; docs/performance.md).
// The weight and bias gradients stay libtorch's. Only the formula for ∂x is new; a
// backward that builds a graph records these same ops, so it stays differentiable.
struct ConvTranspose2d : public torch::autograd::Function<ConvTranspose2d> {
    static at::Tensor forward(AutogradContext *actx, const at::Tensor &x, const at::Tensor &w,
                              const at::Tensor &b, int64_t stride, int64_t padding, int64_t out_pad,
                              int64_t groups) {
        actx->save_for_backward({x, w});
        actx->saved_data["stride"] = stride;
        actx->saved_data["padding"] = padding;
        actx->saved_data["out_pad"] = out_pad;
        actx->saved_data["groups"] = groups;
        actx->saved_data["has_bias"] = b.defined();
        return at::conv_transpose2d(x, w, b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt,
                                    {stride, stride}, {padding, padding}, {out_pad, out_pad}, groups,
                                    {1, 1});
    }

    static variable_list backward(AutogradContext *actx, variable_list g) {
        variable_list saved = actx->get_saved_variables();
        const at::Tensor &x = saved[0], &w = saved[1];
        int64_t s = actx->saved_data["stride"].toInt(), p = actx->saved_data["padding"].toInt();
        int64_t op = actx->saved_data["out_pad"].toInt(), groups = actx->saved_data["groups"].toInt();
        bool has_bias = actx->saved_data["has_bias"].toBool();
        at::Tensor gy = g[0], gx, gw, gb;
        if (!gy.defined()) return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
        if (actx->needs_input_grad(0))
            gx = at::conv2d(gy, w, c10::nullopt, {s, s}, {p, p}, {1, 1}, groups);   // (B, C, H, W)
        bool need_w = actx->needs_input_grad(1), need_b = has_bias && actx->needs_input_grad(2);
        if (need_w || need_b) {
            std::vector<int64_t> bias_sizes{w.size(1) * groups};
            auto r = at::convolution_backward(gy, x, w, has_bias ? at::OptionalIntArrayRef(bias_sizes) : c10::nullopt,
                                              {s, s}, {p, p}, {1, 1}, true, {op, op}, groups,
                                              {false, need_w, need_b});
            if (need_w) gw = std::get<1>(r);
            if (need_b) gb = std::get<2>(r);
        }
        return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

// ---- a plain MLP as one node --------------------------------------------------------------
//
// h_i = a_i W_iᵀ + b_i (at::addmm, as at::linear does for 2-D inputs), a_{i+1} = act(h_i),
// y = h_{n−1}. Forward and backward call the ATen kernels that autograd would call for the
// composed chain (addmm; silu / relu / tanh / gelu / leaky_relu and their *_backward; the
// mm's of AddmmBackward with its choice by the weight's layout; sum_to for the bias), so
// values and gradients are bit-identical to it; what goes is the chain's 3n − 1 nodes
// (AddmmBackward, TBackward, the activation's) and their bookkeeping.

at::Tensor act_forward(int act, const at::Tensor &h) {
    switch (act) {
    case CT_ACT_SILU: return at::silu(h);
    case CT_ACT_RELU: return at::relu(h);
    case CT_ACT_TANH: return at::tanh(h);
    case CT_ACT_GELU: return at::gelu(h);
    default: return at::leaky_relu(h, 0.01);
    }
}

// g ⊙ act'(h), a = act(h): the activation's backward as autograd runs it.
at::Tensor act_backward(int act, const at::Tensor &g, const at::Tensor &h, const at::Tensor &a) {
    switch (act) {
    case CT_ACT_SILU: return at::silu_backward(g, h);
    case CT_ACT_RELU: return at::threshold_backward(g, a, 0);
    case CT_ACT_TANH: return at::tanh_backward(g, a);
    case CT_ACT_GELU: return at::gelu_backward(g, h);
    default: return at::leaky_relu_backward(g, h, 0.01, false);
    }
}

at::Tensor mlp_composed(const at::Tensor &x, at::TensorList ws, at::TensorList bs, int act) {
    at::Tensor a = x;
    int64_t n = (int64_t)ws.size();
    for (int64_t i = 0; i < n; i++) {
        at::Tensor h = at::addmm(bs[i], a, ws[i].t());
        a = i < n - 1 ? act_forward(act, h) : h;
    }
    return a;
}

struct Mlp : public torch::autograd::Function<Mlp> {
    static variable_list forward(AutogradContext *actx, const at::Tensor &x, at::TensorList ws,
                                 at::TensorList bs, int64_t act) {
        int64_t n = (int64_t)ws.size();
        std::vector<at::Tensor> hs, as;   // pre-activations and activations of the hidden layers
        at::Tensor a = x;
        for (int64_t i = 0; i < n; i++) {
            at::Tensor h = at::addmm(bs[i], a, ws[i].t());
            if (i == n - 1) {
                a = h;
                break;
            }
            a = act_forward((int)act, h);
            hs.push_back(h);
            as.push_back(a);
        }
        std::vector<at::Tensor> inputs{x};
        inputs.insert(inputs.end(), ws.begin(), ws.end());
        inputs.insert(inputs.end(), bs.begin(), bs.end());
        actx->save_for_backward(inputs);
        actx->saved_data["h"] = hs;
        actx->saved_data["a"] = as;
        actx->saved_data["act"] = act;
        return {a};
    }

    static variable_list backward(AutogradContext *actx, variable_list g) {
        variable_list saved = actx->get_saved_variables();
        int64_t n = ((int64_t)saved.size() - 1) / 2;
        int act = (int)actx->saved_data["act"].toInt();
        variable_list out((size_t)(2 * n + 2));
        at::Tensor gy = g[0];
        if (!gy.defined()) return out;
        const at::Tensor &x = saved[0];
        std::vector<at::Tensor> ws(saved.begin() + 1, saved.begin() + 1 + n);
        std::vector<at::Tensor> bs(saved.begin() + 1 + n, saved.end());
        if (c10::GradMode::is_enabled()) {
            // a backward that builds a graph: the chain again from the saved inputs, with
            // autograd, so that every path of the second derivative is there
            at::Tensor y = mlp_composed(x, ws, bs, act);
            std::vector<at::Tensor> need;
            std::vector<size_t> where;
            for (size_t k = 0; k < saved.size(); k++)
                if (saved[k].requires_grad() && actx->needs_input_grad(k)) need.push_back(saved[k]), where.push_back(k);
            if (need.empty()) return out;
            auto gr = torch::autograd::grad({y}, need, {gy}, true, true, true);
            for (size_t k = 0; k < need.size(); k++) out[where[k]] = gr[k];
            return out;
        }
        c10::List<at::Tensor> hl = actx->saved_data["h"].toTensorList();
        c10::List<at::Tensor> al = actx->saved_data["a"].toTensorList();
        at::Tensor gh = gy;
        for (int64_t i = n - 1; i >= 0; i--) {
            const at::Tensor in = i == 0 ? x : al.get((size_t)(i - 1));
            const at::Tensor &w = ws[(size_t)i];
            if (actx->needs_input_grad((size_t)(1 + i))) {
                // AddmmBackward's grad of mat2 = wᵀ, then TBackward's transpose
                at::Tensor wt = w.t();
                bool col_major = wt.stride(0) == 1 && wt.stride(1) == wt.size(0);
                out[(size_t)(1 + i)] = col_major ? gh.t().mm(in) : in.t().mm(gh).t();
            }
            if (actx->needs_input_grad((size_t)(1 + n + i))) out[(size_t)(1 + n + i)] = at::sum_to(gh, bs[(size_t)i].sizes());
            if (i == 0 && !actx->needs_input_grad(0)) break;
            at::Tensor gin = gh.mm(w);   // AddmmBackward's grad of mat1 (row-major inputs)
            if (i == 0) {
                out[0] = gin;
                break;
            }
            gh = act_backward(act, gin, hl.get((size_t)(i - 1)), al.get((size_t)(i - 1)));
        }
        return out;
    }
};

}  // namespace

extern "C" ct_tensor *ct_conv_transpose2d(const ct_tensor *x, const ct_tensor *w, const ct_tensor *b,
                                          int stride, int padding, int output_padding, int groups) {
    if (!x || !w) return null_input("ct_conv_transpose2d"), nullptr;
    return guard("ct_conv_transpose2d", [&] {
        const at::Tensor &xt = x->t, &wt = w->t;
        at::Tensor bt = b ? b->t : at::Tensor();
        // float32 on the CPU, no forward-mode AD (the function has no JVP): the custom
        // backward; else (and for an output padding conv2d's shapes cannot absorb) libtorch's
        bool fast = xt.device().is_cpu() && xt.scalar_type() == at::kFloat && wt.scalar_type() == at::kFloat &&
                    ct_fwad_active_level() < 0 && output_padding < stride;
        if (!fast)
            return at::conv_transpose2d(xt, wt, b ? c10::optional<at::Tensor>(bt) : c10::nullopt,
                                        {stride, stride}, {padding, padding},
                                        {output_padding, output_padding}, groups, {1, 1});
        return ConvTranspose2d::apply(xt, wt, bt, stride, padding, output_padding, groups);
    });
}

extern "C" {

ct_tensor *ct_mlp(const ct_tensor *x, const ct_tensor *const *ws, const ct_tensor *const *bs, int n,
                  ct_act act) {
    if (!x || !ws || !bs || n < 1) return null_input("ct_mlp"), nullptr;
    for (int i = 0; i < n; i++)
        if (!ws[i] || !bs[i]) return null_input("ct_mlp"), nullptr;
    return guard("ct_mlp", [&] {
        TORCH_CHECK(act >= 0 && act < CT_ACT_COUNT, "unknown activation ", (int)act);
        std::vector<at::Tensor> w, b;
        for (int i = 0; i < n; i++) w.push_back(ws[i]->t), b.push_back(bs[i]->t);
        const at::Tensor &xt = x->t;
        TORCH_CHECK(xt.dim() == 2, "x must be (B, in); got ", xt.sizes());
        bool any_grad = xt.requires_grad();
        bool row_major = xt.stride(1) == 1 || xt.size(1) == 1;
        for (int i = 0; i < n; i++) {
            TORCH_CHECK(w[(size_t)i].dim() == 2 && (b[(size_t)i].dim() == 1 || (i == 0 && b[0].dim() == 2)),
                        "layer ", i, ": weight ", w[(size_t)i].sizes(), ", bias ", b[(size_t)i].sizes());
            any_grad = any_grad || w[(size_t)i].requires_grad() || b[(size_t)i].requires_grad();
        }
        // one node where it pays and is exact: with a graph to record, no forward-mode
        // level, inputs in rows (AddmmBackward's other branch is not mirrored)
        if (c10::GradMode::is_enabled() && any_grad && row_major && ct_fwad_active_level() < 0)
            return Mlp::apply(xt, at::TensorList(w), at::TensorList(b), (int64_t)act)[0];
        return mlp_composed(xt, w, b, (int)act);
    });
}

ct_tensor *ct_affine_coupling(const ct_tensor *x, const ct_tensor *h, double clamp, bool inverse,
                              ct_tensor **logdet) {
    if (logdet) *logdet = nullptr;
    if (!x || !h) return null_input("ct_affine_coupling"), nullptr;
    at::Tensor ld;
    ct_tensor *y = guard("ct_affine_coupling", [&] {
        const at::Tensor &xt = x->t, &ht = h->t;
        TORCH_CHECK(xt.dim() == 2 && ht.dim() == 2 && ht.size(0) == xt.size(0) &&
                        ht.size(1) == 2 * xt.size(1),
                    "x must be (B, d) and h (B, 2d); got x ", xt.sizes(), " and h ", ht.sizes());
        // off the loop's ground (CUDA, another dtype, forward-mode AD, a column stride):
        // the composed chain, recorded op by op as any other
        auto r = loop_ok(xt, ht) ? AffineCoupling::apply(xt, ht, clamp, inverse)
                                 : coupling_composed(xt, ht, Clamp{clamp}, inverse);
        ld = r[1];
        return r[0];
    });
    if (y && logdet) *logdet = wrap(ld);
    return y;
}

}  // extern "C"

extern "C" ct_tensor *ct_actnorm(const ct_tensor *x, const ct_tensor *bias, const ct_tensor *logs,
                                 bool inverse, ct_tensor **logdet) {
    if (logdet) *logdet = nullptr;
    if (!x || !bias || !logs) return null_input("ct_actnorm"), nullptr;
    at::Tensor ld;
    ct_tensor *y = guard("ct_actnorm", [&] {
        const at::Tensor &xt = x->t, &bt = bias->t, &st = logs->t;
        TORCH_CHECK(xt.dim() == 2 && bt.dim() == 1 && st.dim() == 1 && bt.size(0) == xt.size(1) &&
                        st.size(0) == xt.size(1),
                    "x must be (B, D), bias and logs (D); got ", xt.sizes(), ", ", bt.sizes(),
                    " and ", st.sizes());
        auto r = actnorm_loop_ok(xt, bt, st) ? ActNorm::apply(xt, bt, st, inverse)
                                             : actnorm_composed(xt, bt, st, inverse);
        ld = r[1];
        return r[0];
    });
    if (y && logdet) *logdet = wrap(ld);
    return y;
}

// ---- Rational-quadratic spline with linear tails (Durkan et al. 2019) -------------------
// Composed of ATen ops (autograd records it). Notation of the paper: knots (x_k, y_k),
// bin width w_k, height h_k, slope s_k = h_k / w_k, knot derivatives δ_k, δ_{k+1}.

namespace {

// Knot positions (B, d, K+1) on [−bound, bound] from unnormalised sizes (B, d, K): a
// softmax, each bin at least min_share of the interval, the ends pinned exactly.
at::Tensor spline_knots(const at::Tensor &u, double bound, double min_share) {
    int64_t K = u.size(-1);
    at::Tensor w = min_share + (1 - min_share * (double)K) * at::softmax(u, -1);
    at::Tensor inner = 2 * bound * at::cumsum(w, -1).narrow(-1, 0, K - 1) - bound;
    std::vector<int64_t> end_shape(u.sizes().begin(), u.sizes().end());
    end_shape.back() = 1;
    return at::cat({at::full(end_shape, -bound, u.options()), inner,
                    at::full(end_shape, bound, u.options())}, -1);
}

// v (B, d, n) at the bins idx (B, d): (B, d).
at::Tensor at_bin(const at::Tensor &v, const at::Tensor &idx) {
    return v.gather(-1, idx.unsqueeze(-1)).squeeze(-1);
}

std::vector<at::Tensor> rq_spline(const at::Tensor &in, const at::Tensor &h, int64_t K, double bound,
                                  bool inverse) {
    const double min_share = 1e-3, min_deriv = 1e-3;
    int64_t B = in.size(0), d = in.size(1);
    at::Tensor p = h.reshape({B, d, 3 * K - 1});
    at::Tensor xs = spline_knots(p.narrow(2, 0, K), bound, min_share);        // (B, d, K+1)
    at::Tensor ys = spline_knots(p.narrow(2, K, K), bound, min_share);
    // derivatives: min + softplus(u + c0) with c0 so that u = 0 gives 1; ends fixed at 1
    const double c0 = std::log(std::expm1(1 - min_deriv));
    at::Tensor dv = min_deriv + at::softplus(at::constant_pad_nd(p.narrow(2, 2 * K, K - 1), {1, 1}, 0.0) + c0);
    at::Tensor inside = in.abs() < bound;
    at::Tensor v = at::clamp(in, -bound, bound);
    // bin of v among the knots of the side it lives on (no gradient flows through an index)
    at::Tensor edges = (inverse ? ys : xs).detach();
    at::Tensor idx = at::clamp((v.detach().unsqueeze(-1) >= edges).sum(-1) - 1, 0, K - 1);
    at::Tensor xk = at_bin(xs, idx), wk = at_bin(xs, idx + 1) - xk;
    at::Tensor yk = at_bin(ys, idx), hk = at_bin(ys, idx + 1) - yk;
    at::Tensor d0 = at_bin(dv, idx), d1 = at_bin(dv, idx + 1), s = hk / wk;
    at::Tensor curv = d1 + d0 - 2 * s;
    at::Tensor theta;
    at::Tensor out;
    if (!inverse) {
        theta = (v - xk) / wk;
    } else {   // θ is the root in [0, 1] of a θ² + b θ + c = 0 (the stable form)
        at::Tensor dy = v - yk;
        at::Tensor a = hk * (s - d0) + dy * curv, b = hk * d0 - dy * curv, c = -s * dy;
        at::Tensor disc = at::clamp_min(b * b - 4 * a * c, 0);
        theta = 2 * c / (-b - at::sqrt(disc));
    }
    at::Tensor t1 = theta * (1 - theta), den = s + curv * t1;
    if (!inverse) out = yk + hk * (s * theta * theta + d0 * t1) / den;
    else out = xk + theta * wk;
    at::Tensor dnum = s * s * (d1 * theta * theta + 2 * s * t1 + d0 * (1 - theta) * (1 - theta));
    at::Tensor ld = at::log(dnum) - 2 * at::log(den);
    ld = at::where(inside, ld, at::zeros_like(ld)).sum(1);
    return {at::where(inside, out, in), inverse ? -ld : ld};
}

}  // namespace

extern "C" ct_tensor *ct_rq_spline(const ct_tensor *x, const ct_tensor *h, int bins, double bound,
                                   bool inverse, ct_tensor **logdet) {
    if (logdet) *logdet = nullptr;
    if (!x || !h) return null_input("ct_rq_spline"), nullptr;
    at::Tensor ld;
    ct_tensor *y = guard("ct_rq_spline", [&] {
        const at::Tensor &xt = x->t, &ht = h->t;
        TORCH_CHECK(bins >= 2 && bound > 0, "a spline needs bins >= 2 and bound > 0; got bins ", bins,
                    " and bound ", bound);
        TORCH_CHECK(xt.dim() == 2 && ht.dim() == 2 && ht.size(0) == xt.size(0) &&
                        ht.size(1) == xt.size(1) * (3 * (int64_t)bins - 1),
                    "x must be (B, d) and h (B, d·(3·bins − 1)) with bins ", bins, "; got x ",
                    xt.sizes(), " and h ", ht.sizes());
        auto r = rq_spline(xt, ht, bins, bound, inverse);
        ld = r[1];
        return r[0];
    });
    if (y && logdet) *logdet = wrap(ld);
    return y;
}
