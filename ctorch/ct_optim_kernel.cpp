// Fused optimizer kernels (see ct_optim_kernel.hpp). Compiled with -O3 -fno-math-errno
// so that the loops vectorize (sqrt included); arithmetic follows torch.optim.Adam.
#include "ct_optim_kernel.hpp"
#include "ct_internal.hpp"

#include <ATen/Parallel.h>

#include <cmath>

namespace ct {

// The loops, built for AVX-512, AVX2 and the x86-64 baseline (CT_CLONES, ct_internal.hpp).
// Called per chunk from inside parallel_for's lambda, which itself is built for the
// baseline.

namespace {

template <typename T>
inline __attribute__((always_inline)) void adam_range(T *__restrict p, const T *__restrict g,
                                                      T *__restrict m, T *__restrict v,
                                                      int64_t begin, int64_t end,
                                                      const adam_step &s) {
    const T b1 = (T)s.beta1, b2 = (T)s.beta2, a1 = (T)(1 - s.beta1), a2 = (T)(1 - s.beta2);
    const T step_size = (T)(s.lr / s.bias_correction1);
    const T bc2_sqrt = (T)std::sqrt(s.bias_correction2);
    const T eps = (T)s.eps, scale = (T)s.grad_scale, wd = (T)s.weight_decay;
    const T decay = (T)(1 - s.lr * s.weight_decay);
    const bool decoupled = s.decoupled && s.weight_decay != 0;
    const bool coupled = !s.decoupled && s.weight_decay != 0;
    for (int64_t i = begin; i < end; i++) {
        T gi = g[i] * scale;
        T pi = p[i];
        if (decoupled) pi = pi * decay;
        if (coupled) gi = gi + wd * pi;
        T mi = m[i] * b1 + a1 * gi;
        T vi = v[i] * b2 + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    }
}

CT_CLONES void adam_range_f32(float *p, const float *g, float *m, float *v, int64_t b, int64_t e,
                              const adam_step &s) {
    adam_range<float>(p, g, m, v, b, e, s);
}
CT_CLONES void adam_range_f64(double *p, const double *g, double *m, double *v, int64_t b,
                              int64_t e, const adam_step &s) {
    adam_range<double>(p, g, m, v, b, e, s);
}
void adam_chunk(float *p, const float *g, float *m, float *v, int64_t b, int64_t e,
                const adam_step &s) {
    adam_range_f32(p, g, m, v, b, e, s);
}
void adam_chunk(double *p, const double *g, double *m, double *v, int64_t b, int64_t e,
                const adam_step &s) {
    adam_range_f64(p, g, m, v, b, e, s);
}

// blocks summed in double, independent lanes so the loop vectorizes
template <typename T>
inline __attribute__((always_inline)) double squares_range(const T *__restrict g, int64_t begin,
                                                           int64_t end) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc = 0;
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
        for (int k = 0; k < 8; k++) lane[k] += (double)g[i + k] * (double)g[i + k];
    for (; i < end; i++) lane[0] += (double)g[i] * (double)g[i];
    for (int k = 0; k < 8; k++) acc += lane[k];
    return acc;
}
CT_CLONES double squares_f32(const float *g, int64_t b, int64_t e) { return squares_range<float>(g, b, e); }
CT_CLONES double squares_f64(const double *g, int64_t b, int64_t e) { return squares_range<double>(g, b, e); }
double squares_chunk(const float *g, int64_t b, int64_t e) { return squares_f32(g, b, e); }
double squares_chunk(const double *g, int64_t b, int64_t e) { return squares_f64(g, b, e); }

}  // namespace

template <typename T>
void fused_adam(T *__restrict p, const T *__restrict g, T *__restrict m, T *__restrict v,
                int64_t n, const adam_step &s) {
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
        adam_chunk(p, g, m, v, begin, end, s);
    });
}

template <typename T>
double sum_squares(const T *__restrict g, int64_t n) {
    return at::parallel_reduce(
        0, n, 65536, 0.0,
        [&](int64_t begin, int64_t end, double acc) { return acc + squares_chunk(g, begin, end); },
        [](double a, double b) { return a + b; });
}

template void fused_adam<float>(float *, const float *, float *, float *, int64_t, const adam_step &);
template void fused_adam<double>(double *, const double *, double *, double *, int64_t,
                                 const adam_step &);
template double sum_squares<float>(const float *, int64_t);
template double sum_squares<double>(const double *, int64_t);

}  // namespace ct
