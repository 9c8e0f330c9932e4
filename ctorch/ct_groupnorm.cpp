// GroupNorm on channels-last CPU tensors as one autograd node with its own loops.
//
// libtorch 1.13 runs a convolution on channels-last (NHWC) tensors faster than on NCHW
// ones (oneDNN reorders neither the input nor the output), but its GroupNorm in that
// layout is several times slower than in NCHW (9× in a profile of the pixel UNet at batch
// 256, docs/performance.md), which took away what the convolutions gained. In NHWC the
// channels of one pixel are adjacent, so GroupNorm is two passes over the data, each a
// loop over the channels: the per-channel sums (then the group statistics), and
// y = x a_c + b_c with a_c = r_g w_c, b_c = β_c − μ_g a_c. The backward pass likewise:
// the per-channel sums of ∂y and ∂y (x − μ), then ∂x = ∂y (r_g w_c) + x k1_g + k0_g with
//   A = Σ_{c∈g} w_c Σ_p ∂y,  S = Σ_{c∈g} w_c Σ_p ∂y (x − μ_g),  M = |g| · H · W,
//   k1 = −r³ S / M,  k0 = −r A / M − μ k1.
// Statistics are accumulated in double. A backward pass that builds a graph (double
// backward) runs the same formulas as ATen ops on the saved input, so it is
// differentiable again; ct_group_norm uses at::group_norm for every other case (NCHW,
// CUDA, other dtypes, forward-mode AD).
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "ct_internal.hpp"

using namespace ct;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// s1[c] = Σ_p (a[p, c] − ka[c]), s2[c] = Σ_p (a[p, c] − ka[c]) (b[p, c] − kb[c]); a, b
// (P, C). The shifts (each channel's first value) keep the sums of squares free of the
// cancellation a large mean would cause.
template <class T>
inline __attribute__((always_inline)) void sums(const T *__restrict a, const T *__restrict b,
                                                int64_t P, int64_t C, const double *__restrict ka,
                                                const double *__restrict kb, double *__restrict s1,
                                                double *__restrict s2) {
    // blocks of 16 channels with their sums in local arrays (registers), two pixels at a
    // time in separate accumulators (the adds' latency); the rest one channel at a time
    constexpr int64_t L = 16;
    int64_t c0 = 0;
    for (; c0 + L <= C; c0 += L) {
        double u1[L] = {0}, u2[L] = {0}, v1[L] = {0}, v2[L] = {0}, oa[L], ob[L];
        for (int64_t j = 0; j < L; j++) oa[j] = ka[c0 + j], ob[j] = kb[c0 + j];
        int64_t p = 0;
        for (; p + 2 <= P; p += 2) {
            const T *ra = a + p * C + c0, *rb = b + p * C + c0;
            for (int64_t j = 0; j < L; j++) {
                double x0 = (double)ra[j] - oa[j], x1 = (double)ra[C + j] - oa[j];
                u1[j] += x0;
                u2[j] += x0 * ((double)rb[j] - ob[j]);
                v1[j] += x1;
                v2[j] += x1 * ((double)rb[C + j] - ob[j]);
            }
        }
        for (; p < P; p++) {
            const T *ra = a + p * C + c0, *rb = b + p * C + c0;
            for (int64_t j = 0; j < L; j++) {
                double x0 = (double)ra[j] - oa[j];
                u1[j] += x0;
                u2[j] += x0 * ((double)rb[j] - ob[j]);
            }
        }
        for (int64_t j = 0; j < L; j++) s1[c0 + j] = u1[j] + v1[j], s2[c0 + j] = u2[j] + v2[j];
    }
    for (int64_t c = c0; c < C; c++) {
        double t1 = 0, t2 = 0;
        for (int64_t p = 0; p < P; p++) {
            double u = (double)a[p * C + c] - ka[c];
            t1 += u;
            t2 += u * ((double)b[p * C + c] - kb[c]);
        }
        s1[c] = t1, s2[c] = t2;
    }
}

// y[p, c] = a[p, c] k[c] + (b ? b[p, c] k1[c] : 0) + k0[c]; y may alias a or b.
template <class T>
inline __attribute__((always_inline)) void affine(const T *a, const T *b, int64_t P, int64_t C,
                                                  const T *__restrict k, const T *__restrict k1,
                                                  const T *__restrict k0, T *y) {
    for (int64_t p = 0; p < P; p++) {
        const T *ra = a + p * C, *rb = b ? b + p * C : nullptr;
        T *ry = y + p * C;
        if (rb)
            for (int64_t c = 0; c < C; c++) ry[c] = ra[c] * k[c] + rb[c] * k1[c] + k0[c];
        else
            for (int64_t c = 0; c < C; c++) ry[c] = ra[c] * k[c] + k0[c];
    }
}

// built for AVX-512, AVX2 and the baseline (CT_CLONES, ct_internal.hpp)
CT_CLONES void sums_f32(const float *a, const float *b, int64_t P, int64_t C, const double *ka,
                        const double *kb, double *s1, double *s2) {
    sums(a, b, P, C, ka, kb, s1, s2);
}
CT_CLONES void sums_f64(const double *a, const double *b, int64_t P, int64_t C, const double *ka,
                        const double *kb, double *s1, double *s2) {
    sums(a, b, P, C, ka, kb, s1, s2);
}
CT_CLONES void affine_f32(const float *a, const float *b, int64_t P, int64_t C, const float *k,
                          const float *k1, const float *k0, float *y) {
    affine(a, b, P, C, k, k1, k0, y);
}
CT_CLONES void affine_f64(const double *a, const double *b, int64_t P, int64_t C, const double *k,
                          const double *k1, const double *k0, double *y) {
    affine(a, b, P, C, k, k1, k0, y);
}
void sums_t(const float *a, const float *b, int64_t P, int64_t C, const double *ka,
            const double *kb, double *s1, double *s2) {
    sums_f32(a, b, P, C, ka, kb, s1, s2);
}
void sums_t(const double *a, const double *b, int64_t P, int64_t C, const double *ka,
            const double *kb, double *s1, double *s2) {
    sums_f64(a, b, P, C, ka, kb, s1, s2);
}
void affine_t(const float *a, const float *b, int64_t P, int64_t C, const float *k, const float *k1,
              const float *k0, float *y) {
    affine_f32(a, b, P, C, k, k1, k0, y);
}
void affine_t(const double *a, const double *b, int64_t P, int64_t C, const double *k,
              const double *k1, const double *k0, double *y) {
    affine_f64(a, b, P, C, k, k1, k0, y);
}

// x (N, C, H, W) channels-last; mean, rstd (N, G) double out; y like x.
template <class T>
void gn_forward(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b, int64_t G,
                double eps, at::Tensor &y, at::Tensor &mean, at::Tensor &rstd) {
    int64_t N = x.size(0), C = x.size(1), P = x.size(2) * x.size(3), Cg = C / G;
    const T *px = x.data_ptr<T>(), *pw = w.defined() ? w.data_ptr<T>() : nullptr;
    const T *pb = b.defined() ? b.data_ptr<T>() : nullptr;
    T *py = y.data_ptr<T>();
    double *pm = mean.data_ptr<double>(), *pr = rstd.data_ptr<double>();
    at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
        std::vector<double> s1((size_t)C), s2((size_t)C), K((size_t)C);
        std::vector<T> k((size_t)C), k0((size_t)C);
        for (int64_t n = n0; n < n1; n++) {
            const T *xn = px + n * P * C;
            for (int64_t c = 0; c < C; c++) K[(size_t)c] = (double)xn[c];
            sums_t(xn, xn, P, C, K.data(), K.data(), s1.data(), s2.data());
            for (int64_t g = 0; g < G; g++) {
                // each channel's mean and sum of squared deviations, then the group's
                // (Chan et al.'s pairwise combination)
                double m = 0, q = 0, M = (double)(P * Cg);
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) m += K[(size_t)c] + s1[(size_t)c] / (double)P;
                m /= (double)Cg;
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    double mc = K[(size_t)c] + s1[(size_t)c] / (double)P;
                    q += s2[(size_t)c] - s1[(size_t)c] * s1[(size_t)c] / (double)P + (double)P * (mc - m) * (mc - m);
                }
                double var = std::max(q / M, 0.0), r = 1 / std::sqrt(var + eps);
                pm[n * G + g] = m, pr[n * G + g] = r;
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    double a = r * (pw ? (double)pw[c] : 1.0);
                    k[(size_t)c] = (T)a;
                    k0[(size_t)c] = (T)((pb ? (double)pb[c] : 0.0) - m * a);
                }
            }
            affine_t(xn, (const T *)nullptr, P, C, k.data(), (const T *)nullptr, k0.data(), py + n * P * C);
        }
    });
}

// gy, x channels-last; gx like x; gw, gb (C) or undefined.
template <class T>
void gn_backward(const at::Tensor &x, const at::Tensor &w, const at::Tensor &mean,
                 const at::Tensor &rstd, const at::Tensor &gy, int64_t G, at::Tensor &gx,
                 at::Tensor &gw, at::Tensor &gb) {
    int64_t N = x.size(0), C = x.size(1), P = x.size(2) * x.size(3), Cg = C / G;
    const T *px = x.data_ptr<T>(), *pw = w.defined() ? w.data_ptr<T>() : nullptr;
    const T *pg = gy.data_ptr<T>();
    T *pgx = gx.defined() ? gx.data_ptr<T>() : nullptr;
    const double *pm = mean.data_ptr<double>(), *pr = rstd.data_ptr<double>();
    // per sample and channel: Σ_p ∂y and Σ_p ∂y (x − μ_g), for the weight's and bias's
    // gradients too (summed from Σ_p ∂y (x − K_c) with the forward pass's shifts K_c)
    std::vector<double> db((size_t)(N * C)), ds((size_t)(N * C));
    at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
        std::vector<T> k((size_t)C), k1((size_t)C), k0((size_t)C);
        std::vector<double> K((size_t)C), zero((size_t)C, 0.0);
        for (int64_t n = n0; n < n1; n++) {
            const T *xn = px + n * P * C, *gn = pg + n * P * C;
            double *dbn = db.data() + n * C, *dsn = ds.data() + n * C;
            for (int64_t c = 0; c < C; c++) K[(size_t)c] = (double)xn[c];
            sums_t(gn, xn, P, C, zero.data(), K.data(), dbn, dsn);
            for (int64_t c = 0; c < C; c++) dsn[c] += (K[(size_t)c] - pm[n * G + c / Cg]) * dbn[c];
            if (!pgx) continue;
            for (int64_t g = 0; g < G; g++) {
                double m = pm[n * G + g], r = pr[n * G + g], A = 0, S = 0, M = (double)(P * Cg);
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    double wc = pw ? (double)pw[c] : 1.0;
                    A += wc * dbn[c];
                    S += wc * dsn[c];
                }
                double c1 = -r * r * r * S / M, c0 = -r * A / M - m * c1;
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    k[(size_t)c] = (T)(r * (pw ? (double)pw[c] : 1.0));
                    k1[(size_t)c] = (T)c1;
                    k0[(size_t)c] = (T)c0;
                }
            }
            affine_t(gn, xn, P, C, k.data(), k1.data(), k0.data(), pgx + n * P * C);
        }
    });
    if (!gw.defined() && !gb.defined()) return;
    T *pgw = gw.defined() ? gw.data_ptr<T>() : nullptr, *pgb = gb.defined() ? gb.data_ptr<T>() : nullptr;
    for (int64_t c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int64_t n = 0; n < N; n++) {
            int64_t g = c / Cg;
            sw += ds[(size_t)(n * C + c)] * pr[n * G + g];
            sb += db[(size_t)(n * C + c)];
        }
        if (pgw) pgw[c] = (T)sw;
        if (pgb) pgb[c] = (T)sb;
    }
}

// {∂x, ∂w, ∂b} as ATen ops on the saved input (a backward pass that builds a graph).
variable_list gn_backward_composed(const at::Tensor &x, const at::Tensor &w, int64_t G, double eps,
                                   const at::Tensor &gy) {
    int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Cg = C / G;
    at::Tensor xv = x.permute({0, 2, 3, 1}).reshape({N, H * W, G, Cg});
    at::Tensor gv = gy.permute({0, 2, 3, 1}).reshape({N, H * W, G, Cg});
    at::Tensor m = xv.mean({1, 3}, true), d = xv - m;
    at::Tensor r = at::rsqrt((d * d).mean({1, 3}, true) + eps), xh = d * r;
    at::Tensor gh = w.defined() ? gv * w.view({1, 1, G, Cg}) : gv;
    at::Tensor gx = r * (gh - gh.mean({1, 3}, true) - xh * (gh * xh).mean({1, 3}, true));
    gx = gx.reshape({N, H, W, C}).permute({0, 3, 1, 2});
    return {gx, (gv * xh).sum(at::IntArrayRef{0, 1}).reshape({C}), gv.sum(at::IntArrayRef{0, 1}).reshape({C})};
}

struct GroupNormCL : public torch::autograd::Function<GroupNormCL> {
    static at::Tensor forward(AutogradContext *actx, const at::Tensor &x, const at::Tensor &w,
                              const at::Tensor &b, int64_t groups, double eps) {
        at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
        at::Tensor mean = at::empty({x.size(0), groups}, x.options().dtype(at::kDouble));
        at::Tensor rstd = at::empty_like(mean);
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ct_group_norm", [&] {
            gn_forward<scalar_t>(x, w, b, groups, eps, y, mean, rstd);
        });
        actx->save_for_backward({x, w, mean, rstd});
        actx->saved_data["groups"] = groups;
        actx->saved_data["eps"] = eps;
        actx->saved_data["has_b"] = b.defined();
        return y;
    }

    static variable_list backward(AutogradContext *actx, variable_list g) {
        variable_list saved = actx->get_saved_variables();
        const at::Tensor &x = saved[0], &w = saved[1], &mean = saved[2], &rstd = saved[3];
        int64_t groups = actx->saved_data["groups"].toInt();
        double eps = actx->saved_data["eps"].toDouble();
        bool has_b = actx->saved_data["has_b"].toBool();
        at::Tensor gy = g[0], gx, gw, gb;
        if (!gy.defined()) return {gx, gw, gb, at::Tensor(), at::Tensor()};
        bool need_x = actx->needs_input_grad(0), need_w = w.defined() && actx->needs_input_grad(1);
        bool need_b = has_b && actx->needs_input_grad(2);
        if (c10::GradMode::is_enabled()) {   // a backward pass that builds a graph
            auto r = gn_backward_composed(x, w, groups, eps, gy);
            return {need_x ? r[0] : gx, need_w ? r[1] : gw, need_b ? r[2] : gb, at::Tensor(), at::Tensor()};
        }
        gy = gy.contiguous(at::MemoryFormat::ChannelsLast);
        if (need_x) gx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
        if (need_w) gw = at::empty({x.size(1)}, x.options());
        if (need_b) gb = at::empty({x.size(1)}, x.options());
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ct_group_norm_backward", [&] {
            gn_backward<scalar_t>(x, w, mean, rstd, gy, groups, gx, gw, gb);
        });
        return {gx, gw, gb, at::Tensor(), at::Tensor()};
    }
};

bool param_ok(const ct_tensor *p, const at::Tensor &x) {
    return !p || (p->t.dim() == 1 && p->t.size(0) == x.size(1) && p->t.is_contiguous() &&
                  p->t.device().is_cpu() && p->t.scalar_type() == x.scalar_type());
}

// The layout and types the loops take; anything else goes to at::group_norm.
bool fused_ok(const at::Tensor &x, int groups, const ct_tensor *w, const ct_tensor *b) {
    return x.dim() == 4 && x.device().is_cpu() &&
           (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) && groups > 0 &&
           x.size(1) % groups == 0 && x.numel() > 0 &&
           x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous() &&
           param_ok(w, x) && param_ok(b, x) && ct_fwad_active_level() < 0;
}

}  // namespace

extern "C" ct_tensor *ct_group_norm(const ct_tensor *x, int groups, const ct_tensor *w,
                                    const ct_tensor *b, double eps) {
    if (!x) return null_input("ct_group_norm"), nullptr;
    return guard("ct_group_norm", [&] {
        if (!fused_ok(x->t, groups, w, b))
            return at::group_norm(x->t, groups, w ? c10::optional<at::Tensor>(w->t) : c10::nullopt,
                                  b ? c10::optional<at::Tensor>(b->t) : c10::nullopt, eps);
        // (a custom function's inputs must be defined: without w or b, 1 and 0)
        at::Tensor wt = w ? w->t : at::ones({x->t.size(1)}, x->t.options());
        at::Tensor bt = b ? b->t : at::zeros({x->t.size(1)}, x->t.options());
        return GroupNormCL::apply(x->t, wt, bt, (int64_t)groups, eps);
    });
}
