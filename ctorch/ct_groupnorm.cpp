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
//
// ct_group_norm_silu is y = SiLU(GroupNorm(x + s)) with s (N, C) added to every pixel of
// a channel (a UNet block's time embedding) in the same node: the shift only moves each
// channel's mean (the sums above are taken about shifted origins, so they do not change),
// z = x a_c + (b_c + s_c a_c) and y = z σ(z) are written in the affine pass, and the
// backward pass computes ∂z = ∂y σ(z) (1 + z (1 − σ(z))) from z recomputed from x inside
// its sums pass (writing ∂z where ∂x goes), then ∂x over it in place and
//   ∂s_c = Σ_p ∂x = r_g w_c Σ_p ∂z + k1_g Σ_p x_c + P (k0_g + s_c k1_g)
// from Σ_p x_c kept by the forward pass. That saves SiLU's and the add's passes over the
// activations, forward and backward, and their nodes and buffers.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "ct_internal.hpp"

using namespace ct;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// e^x, vectorisable (float): x = n ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor
// polynomial to r^7 (truncation below 6e-9 relative), 2^n from the exponent bits; x held
// to [−87, 88], where 2^n is a normal float. Double: std::exp (the checks' precision).
inline __attribute__((always_inline)) float exp_v(float x) {
    x = std::min(std::max(x, -87.0f), 88.0f);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
    float e = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
              r * (1.0f / 720 + r * (1.0f / 5040)))))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float two_n;
    __builtin_memcpy(&two_n, &bits, sizeof two_n);
    return e * two_n;
}
inline __attribute__((always_inline)) double exp_v(double x) { return std::exp(x); }

// σ(z) = 1 / (1 + e^−z)
template <class T>
inline __attribute__((always_inline)) T sigmoid_v(T z) {
    return (T)1 / ((T)1 + exp_v(-z));
}

// a[p, c] given by av(p · C + c, c): the input itself, or ∂z computed from ∂y and x
template <class T>
struct plain_at {
    const T *__restrict a;
    inline __attribute__((always_inline)) T operator()(int64_t i, int64_t) const { return a[i]; }
};
// ∂z = ∂y σ(z) (1 + z (1 − σ(z))), z = x k_c + k0_c, also written to out
template <class T>
struct silu_grad_at {
    const T *__restrict gy, *__restrict x, *__restrict k, *__restrict k0;
    T *__restrict out;
    inline __attribute__((always_inline)) T operator()(int64_t i, int64_t c) const {
        T z = x[i] * k[c] + k0[c], sg = sigmoid_v(z);
        T g = gy[i] * (sg * ((T)1 + z * ((T)1 - sg)));
        out[i] = g;
        return g;
    }
};

// s1[c] = Σ_p (a[p, c] − ka[c]), s2[c] = Σ_p (a[p, c] − ka[c]) (b[p, c] − kb[c]); a, b
// (P, C), a read through av. The shifts (each channel's first value) keep the sums of
// squares free of the cancellation a large mean would cause.
template <class T, class A>
inline __attribute__((always_inline)) void sums(A av, const T *__restrict b, int64_t P, int64_t C,
                                                const double *__restrict ka, const double *__restrict kb,
                                                double *__restrict s1, double *__restrict s2) {
    // blocks of 16 channels with their sums in local arrays (registers), two pixels at a
    // time in separate accumulators (the adds' latency); the rest one channel at a time
    constexpr int64_t L = 16;
    int64_t c0 = 0;
    for (; c0 + L <= C; c0 += L) {
        double u1[L] = {0}, u2[L] = {0}, v1[L] = {0}, v2[L] = {0}, oa[L], ob[L];
        for (int64_t j = 0; j < L; j++) oa[j] = ka[c0 + j], ob[j] = kb[c0 + j];
        int64_t p = 0;
        for (; p + 2 <= P; p += 2) {
            const int64_t ia = p * C + c0;
            const T *rb = b + ia;
            for (int64_t j = 0; j < L; j++) {
                double x0 = (double)av(ia + j, c0 + j) - oa[j], x1 = (double)av(ia + C + j, c0 + j) - oa[j];
                u1[j] += x0;
                u2[j] += x0 * ((double)rb[j] - ob[j]);
                v1[j] += x1;
                v2[j] += x1 * ((double)rb[C + j] - ob[j]);
            }
        }
        for (; p < P; p++) {
            const int64_t ia = p * C + c0;
            const T *rb = b + ia;
            for (int64_t j = 0; j < L; j++) {
                double x0 = (double)av(ia + j, c0 + j) - oa[j];
                u1[j] += x0;
                u2[j] += x0 * ((double)rb[j] - ob[j]);
            }
        }
        for (int64_t j = 0; j < L; j++) s1[c0 + j] = u1[j] + v1[j], s2[c0 + j] = u2[j] + v2[j];
    }
    for (int64_t c = c0; c < C; c++) {
        double t1 = 0, t2 = 0;
        for (int64_t p = 0; p < P; p++) {
            double u = (double)av(p * C + c, c) - ka[c];
            t1 += u;
            t2 += u * ((double)b[p * C + c] - kb[c]);
        }
        s1[c] = t1, s2[c] = t2;
    }
}

// y[p, c] = a[p, c] k[c] + (b ? b[p, c] k1[c] : 0) + k0[c], then y ← y σ(y) if silu; y
// may alias a or b.
template <class T>
inline __attribute__((always_inline)) void affine(const T *a, const T *b, int64_t P, int64_t C,
                                                  const T *__restrict k, const T *__restrict k1,
                                                  const T *__restrict k0, T *y, bool silu) {
    for (int64_t p = 0; p < P; p++) {
        const T *ra = a + p * C, *rb = b ? b + p * C : nullptr;
        T *ry = y + p * C;
        if (rb)
            for (int64_t c = 0; c < C; c++) ry[c] = ra[c] * k[c] + rb[c] * k1[c] + k0[c];
        else if (silu)
            for (int64_t c = 0; c < C; c++) {
                T z = ra[c] * k[c] + k0[c];
                ry[c] = z * sigmoid_v(z);
            }
        else
            for (int64_t c = 0; c < C; c++) ry[c] = ra[c] * k[c] + k0[c];
    }
}

// built for AVX-512, AVX2 and the baseline (CT_CLONES, ct_internal.hpp)
CT_CLONES void sums_f32(const float *a, const float *b, int64_t P, int64_t C, const double *ka,
                        const double *kb, double *s1, double *s2) {
    sums(plain_at<float>{a}, b, P, C, ka, kb, s1, s2);
}
CT_CLONES void sums_f64(const double *a, const double *b, int64_t P, int64_t C, const double *ka,
                        const double *kb, double *s1, double *s2) {
    sums(plain_at<double>{a}, b, P, C, ka, kb, s1, s2);
}
CT_CLONES void silu_sums_f32(const float *gy, const float *x, const float *k, const float *k0, float *gz,
                             int64_t P, int64_t C, const double *ka, const double *kb, double *s1, double *s2) {
    sums(silu_grad_at<float>{gy, x, k, k0, gz}, x, P, C, ka, kb, s1, s2);
}
CT_CLONES void silu_sums_f64(const double *gy, const double *x, const double *k, const double *k0,
                             double *gz, int64_t P, int64_t C, const double *ka, const double *kb, double *s1,
                             double *s2) {
    sums(silu_grad_at<double>{gy, x, k, k0, gz}, x, P, C, ka, kb, s1, s2);
}
CT_CLONES void affine_f32(const float *a, const float *b, int64_t P, int64_t C, const float *k,
                          const float *k1, const float *k0, float *y, bool silu) {
    affine(a, b, P, C, k, k1, k0, y, silu);
}
CT_CLONES void affine_f64(const double *a, const double *b, int64_t P, int64_t C, const double *k,
                          const double *k1, const double *k0, double *y, bool silu) {
    affine(a, b, P, C, k, k1, k0, y, silu);
}
void sums_t(const float *a, const float *b, int64_t P, int64_t C, const double *ka,
            const double *kb, double *s1, double *s2) {
    sums_f32(a, b, P, C, ka, kb, s1, s2);
}
void sums_t(const double *a, const double *b, int64_t P, int64_t C, const double *ka,
            const double *kb, double *s1, double *s2) {
    sums_f64(a, b, P, C, ka, kb, s1, s2);
}
void silu_sums_t(const float *gy, const float *x, const float *k, const float *k0, float *gz, int64_t P,
                 int64_t C, const double *ka, const double *kb, double *s1, double *s2) {
    silu_sums_f32(gy, x, k, k0, gz, P, C, ka, kb, s1, s2);
}
void silu_sums_t(const double *gy, const double *x, const double *k, const double *k0, double *gz,
                 int64_t P, int64_t C, const double *ka, const double *kb, double *s1, double *s2) {
    silu_sums_f64(gy, x, k, k0, gz, P, C, ka, kb, s1, s2);
}
void affine_t(const float *a, const float *b, int64_t P, int64_t C, const float *k, const float *k1,
              const float *k0, float *y, bool silu = false) {
    affine_f32(a, b, P, C, k, k1, k0, y, silu);
}
void affine_t(const double *a, const double *b, int64_t P, int64_t C, const double *k,
              const double *k1, const double *k0, double *y, bool silu = false) {
    affine_f64(a, b, P, C, k, k1, k0, y, silu);
}

// a_c = r_g w_c and z's offset b_c + (s_c − μ_g) a_c of one sample; s may be null
template <class T>
void coefficients(int64_t C, int64_t Cg, const double *m, const double *r, const T *pw, const T *pb,
                  const T *ps, T *k, T *k0) {
    for (int64_t c = 0; c < C; c++) {
        int64_t g = c / Cg;
        double a = r[g] * (pw ? (double)pw[c] : 1.0);
        k[c] = (T)a;
        k0[c] = (T)((pb ? (double)pb[c] : 0.0) + ((ps ? (double)ps[c] : 0.0) - m[g]) * a);
    }
}

// x (N, C, H, W) channels-last, s (N, C) or empty; mean, rstd (N, G) double out, xsum
// (N, C) double out (Σ_p x) or empty; y like x: GroupNorm(x + s), then SiLU if silu.
template <class T>
void gn_forward(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b, const at::Tensor &s,
                int64_t G, double eps, bool silu, at::Tensor &y, at::Tensor &mean, at::Tensor &rstd,
                at::Tensor &xsum) {
    int64_t N = x.size(0), C = x.size(1), P = x.size(2) * x.size(3), Cg = C / G;
    const T *px = x.data_ptr<T>(), *pw = w.defined() ? w.data_ptr<T>() : nullptr;
    const T *pb = b.defined() ? b.data_ptr<T>() : nullptr, *ps = s.numel() ? s.data_ptr<T>() : nullptr;
    T *py = y.data_ptr<T>();
    double *pm = mean.data_ptr<double>(), *pr = rstd.data_ptr<double>();
    double *pxs = xsum.numel() ? xsum.data_ptr<double>() : nullptr;
    at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
        std::vector<double> s1((size_t)C), s2((size_t)C), K((size_t)C);
        std::vector<T> k((size_t)C), k0((size_t)C);
        for (int64_t n = n0; n < n1; n++) {
            const T *xn = px + n * P * C, *sn = ps ? ps + n * C : nullptr;
            for (int64_t c = 0; c < C; c++) K[(size_t)c] = (double)xn[c];
            sums_t(xn, xn, P, C, K.data(), K.data(), s1.data(), s2.data());
            if (pxs)
                for (int64_t c = 0; c < C; c++) pxs[n * C + c] = (double)P * K[(size_t)c] + s1[(size_t)c];
            for (int64_t g = 0; g < G; g++) {
                // each channel's mean (the shift moves it) and sum of squared deviations,
                // then the group's (Chan et al.'s pairwise combination)
                double m = 0, q = 0, M = (double)(P * Cg);
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                    m += K[(size_t)c] + (sn ? (double)sn[c] : 0.0) + s1[(size_t)c] / (double)P;
                m /= (double)Cg;
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    double mc = K[(size_t)c] + (sn ? (double)sn[c] : 0.0) + s1[(size_t)c] / (double)P;
                    q += s2[(size_t)c] - s1[(size_t)c] * s1[(size_t)c] / (double)P + (double)P * (mc - m) * (mc - m);
                }
                double var = std::max(q / M, 0.0), r = 1 / std::sqrt(var + eps);
                pm[n * G + g] = m, pr[n * G + g] = r;
            }
            coefficients(C, Cg, pm + n * G, pr + n * G, pw, pb, sn, k.data(), k0.data());
            affine_t(xn, (const T *)nullptr, P, C, k.data(), (const T *)nullptr, k0.data(), py + n * P * C, silu);
        }
    });
}

// gy, x channels-last; gx like x, gw, gb (C), gs (N, C): each undefined when not wanted.
template <class T>
void gn_backward(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b, const at::Tensor &s,
                 const at::Tensor &mean, const at::Tensor &rstd, const at::Tensor &xsum, const at::Tensor &gy,
                 int64_t G, bool silu, at::Tensor &gx, at::Tensor &gw, at::Tensor &gb, at::Tensor &gs) {
    int64_t N = x.size(0), C = x.size(1), P = x.size(2) * x.size(3), Cg = C / G;
    const T *px = x.data_ptr<T>(), *pw = w.defined() ? w.data_ptr<T>() : nullptr;
    const T *pb = b.defined() ? b.data_ptr<T>() : nullptr, *ps = s.numel() ? s.data_ptr<T>() : nullptr;
    const T *pg = gy.data_ptr<T>();
    T *pgx = gx.defined() ? gx.data_ptr<T>() : nullptr, *pgs = gs.defined() ? gs.data_ptr<T>() : nullptr;
    const double *pm = mean.data_ptr<double>(), *pr = rstd.data_ptr<double>();
    const double *pxs = xsum.numel() ? xsum.data_ptr<double>() : nullptr;
    // with SiLU, ∂z is written where ∂x goes (then ∂x over it), or to a buffer of its own
    at::Tensor gz = silu ? (pgx ? gx : at::empty_like(x, at::MemoryFormat::ChannelsLast)) : at::Tensor();
    T *pgz = silu ? gz.data_ptr<T>() : nullptr;
    // per sample and channel: Σ_p ∂z and Σ_p ∂z (x + s − μ_g), for the weight's and bias's
    // gradients too (summed from Σ_p ∂z (x − K_c) with the forward pass's shifts K_c)
    std::vector<double> db((size_t)(N * C)), ds((size_t)(N * C));
    at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
        std::vector<T> k((size_t)C), k1((size_t)C), k0((size_t)C);
        std::vector<double> K((size_t)C), zero((size_t)C, 0.0);
        for (int64_t n = n0; n < n1; n++) {
            const T *xn = px + n * P * C, *gn = pg + n * P * C, *sn = ps ? ps + n * C : nullptr;
            double *dbn = db.data() + n * C, *dsn = ds.data() + n * C;
            for (int64_t c = 0; c < C; c++) K[(size_t)c] = (double)xn[c];
            if (silu) {   // ∂z from ∂y and z = x a_c + (b_c + (s_c − μ_g) a_c)
                coefficients(C, Cg, pm + n * G, pr + n * G, pw, pb, sn, k.data(), k0.data());
                silu_sums_t(gn, xn, k.data(), k0.data(), pgz + n * P * C, P, C, zero.data(), K.data(), dbn, dsn);
                gn = pgz + n * P * C;
            } else {
                sums_t(gn, xn, P, C, zero.data(), K.data(), dbn, dsn);
            }
            for (int64_t c = 0; c < C; c++)
                dsn[c] += (K[(size_t)c] + (sn ? (double)sn[c] : 0.0) - pm[n * G + c / Cg]) * dbn[c];
            if (!pgx && !pgs) continue;
            for (int64_t g = 0; g < G; g++) {
                double m = pm[n * G + g], r = pr[n * G + g], A = 0, S = 0, M = (double)(P * Cg);
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    double wc = pw ? (double)pw[c] : 1.0;
                    A += wc * dbn[c];
                    S += wc * dsn[c];
                }
                double c1 = -r * r * r * S / M, c0 = -r * A / M - m * c1;
                for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                    double rw = r * (pw ? (double)pw[c] : 1.0), off = c0 + (sn ? (double)sn[c] : 0.0) * c1;
                    k[(size_t)c] = (T)rw;
                    k1[(size_t)c] = (T)c1;
                    k0[(size_t)c] = (T)off;
                    if (pgs) pgs[n * C + c] = (T)(rw * dbn[c] + c1 * pxs[n * C + c] + (double)P * off);
                }
            }
            if (pgx) affine_t(gn, xn, P, C, k.data(), k1.data(), k0.data(), pgx + n * P * C);
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

// {∂x, ∂w, ∂b, ∂s} as ATen ops on the saved inputs (a backward pass that builds a graph).
variable_list gn_backward_composed(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b,
                                   const at::Tensor &s, int64_t G, double eps, bool silu, const at::Tensor &gy) {
    int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Cg = C / G;
    at::Tensor xs = s.numel() ? x + s.view({N, C, 1, 1}) : x, gz = gy;
    if (silu) {
        at::Tensor z = at::group_norm(xs, G, w, b, eps), sg = at::sigmoid(z);
        gz = gy * sg * (1 + z * (1 - sg));
    }
    at::Tensor xv = xs.permute({0, 2, 3, 1}).reshape({N, H * W, G, Cg});
    at::Tensor gv = gz.permute({0, 2, 3, 1}).reshape({N, H * W, G, Cg});
    at::Tensor m = xv.mean({1, 3}, true), d = xv - m;
    at::Tensor r = at::rsqrt((d * d).mean({1, 3}, true) + eps), xh = d * r;
    at::Tensor gh = w.defined() ? gv * w.view({1, 1, G, Cg}) : gv;
    at::Tensor gx = r * (gh - gh.mean({1, 3}, true) - xh * (gh * xh).mean({1, 3}, true));
    gx = gx.reshape({N, H, W, C}).permute({0, 3, 1, 2});
    return {gx, (gv * xh).sum(at::IntArrayRef{0, 1}).reshape({C}), gv.sum(at::IntArrayRef{0, 1}).reshape({C}),
            gx.sum(at::IntArrayRef{2, 3})};
}

// y = [SiLU](GroupNorm(x + s)); s (N, C), or empty for none.
struct GroupNormCL : public torch::autograd::Function<GroupNormCL> {
    static at::Tensor forward(AutogradContext *actx, const at::Tensor &x, const at::Tensor &w,
                              const at::Tensor &b, const at::Tensor &s, int64_t groups, double eps, bool silu) {
        at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
        at::Tensor mean = at::empty({x.size(0), groups}, x.options().dtype(at::kDouble));
        at::Tensor rstd = at::empty_like(mean);
        at::Tensor xsum = at::empty({s.numel() ? x.size(0) : 0, x.size(1)}, mean.options());
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ct_group_norm", [&] {
            gn_forward<scalar_t>(x, w, b, s, groups, eps, silu, y, mean, rstd, xsum);
        });
        actx->save_for_backward({x, w, b, s, mean, rstd, xsum});
        actx->saved_data["groups"] = groups;
        actx->saved_data["eps"] = eps;
        actx->saved_data["silu"] = silu;
        return y;
    }

    static variable_list backward(AutogradContext *actx, variable_list g) {
        variable_list saved = actx->get_saved_variables();
        const at::Tensor &x = saved[0], &w = saved[1], &b = saved[2], &s = saved[3], &mean = saved[4],
                         &rstd = saved[5], &xsum = saved[6];
        int64_t groups = actx->saved_data["groups"].toInt();
        double eps = actx->saved_data["eps"].toDouble();
        bool silu = actx->saved_data["silu"].toBool();
        at::Tensor gy = g[0], gx, gw, gb, gs;
        if (!gy.defined()) return {gx, gw, gb, gs, at::Tensor(), at::Tensor(), at::Tensor()};
        bool need_x = actx->needs_input_grad(0), need_w = actx->needs_input_grad(1);
        bool need_b = actx->needs_input_grad(2), need_s = s.numel() && actx->needs_input_grad(3);
        if (c10::GradMode::is_enabled()) {   // a backward pass that builds a graph
            auto r = gn_backward_composed(x, w, b, s, groups, eps, silu, gy);
            return {need_x ? r[0] : gx, need_w ? r[1] : gw, need_b ? r[2] : gb, need_s ? r[3] : gs,
                    at::Tensor(), at::Tensor(), at::Tensor()};
        }
        gy = gy.contiguous(at::MemoryFormat::ChannelsLast);
        if (need_x) gx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
        if (need_w) gw = at::empty({x.size(1)}, x.options());
        if (need_b) gb = at::empty({x.size(1)}, x.options());
        if (need_s) gs = at::empty_like(s);
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ct_group_norm_backward", [&] {
            gn_backward<scalar_t>(x, w, b, s, mean, rstd, xsum, gy, groups, silu, gx, gw, gb, gs);
        });
        return {gx, gw, gb, gs, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

bool param_ok(const ct_tensor *p, const at::Tensor &x) {
    return !p || (p->t.dim() == 1 && p->t.size(0) == x.size(1) && p->t.is_contiguous() &&
                  p->t.device().is_cpu() && p->t.scalar_type() == x.scalar_type());
}

// The layout and types the loops take; anything else goes to at::group_norm.
bool fused_ok(const at::Tensor &x, int groups, const ct_tensor *w, const ct_tensor *b, const ct_tensor *s) {
    return x.dim() == 4 && x.device().is_cpu() &&
           (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) && groups > 0 &&
           x.size(1) % groups == 0 && x.numel() > 0 &&
           x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous() &&
           param_ok(w, x) && param_ok(b, x) && ct_fwad_active_level() < 0 &&
           (!s || (s->t.dim() == 2 && s->t.size(0) == x.size(0) && s->t.size(1) == x.size(1) &&
                   s->t.is_contiguous() && s->t.device().is_cpu() && s->t.scalar_type() == x.scalar_type()));
}

at::Tensor group_norm_impl(const ct_tensor *x, const ct_tensor *s, int groups, const ct_tensor *w,
                           const ct_tensor *b, double eps, bool silu) {
    if (!fused_ok(x->t, groups, w, b, s)) {
        at::Tensor xs = s ? x->t + s->t.unsqueeze(-1).unsqueeze(-1) : x->t;
        at::Tensor y = at::group_norm(xs, groups, w ? c10::optional<at::Tensor>(w->t) : c10::nullopt,
                                      b ? c10::optional<at::Tensor>(b->t) : c10::nullopt, eps);
        return silu ? at::silu(y) : y;
    }
    // (a custom function's inputs must be defined: without w or b, 1 and 0; without s, empty)
    at::Tensor wt = w ? w->t : at::ones({x->t.size(1)}, x->t.options());
    at::Tensor bt = b ? b->t : at::zeros({x->t.size(1)}, x->t.options());
    at::Tensor st = s ? s->t : at::empty({0}, x->t.options());
    return GroupNormCL::apply(x->t, wt, bt, st, (int64_t)groups, eps, silu);
}

}  // namespace

extern "C" ct_tensor *ct_group_norm(const ct_tensor *x, int groups, const ct_tensor *w,
                                    const ct_tensor *b, double eps) {
    if (!x) return null_input("ct_group_norm"), nullptr;
    return guard("ct_group_norm", [&] { return group_norm_impl(x, nullptr, groups, w, b, eps, false); });
}

extern "C" ct_tensor *ct_group_norm_silu(const ct_tensor *x, const ct_tensor *shift, int groups,
                                         const ct_tensor *w, const ct_tensor *b, double eps) {
    if (!x) return null_input("ct_group_norm_silu"), nullptr;
    return guard("ct_group_norm_silu", [&] { return group_norm_impl(x, shift, groups, w, b, eps, true); });
}
