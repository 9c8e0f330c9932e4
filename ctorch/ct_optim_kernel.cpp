// Fused optimizer kernels (see ct_optim_kernel.hpp). Compiled with -O3 -fno-math-errno
// so that the loops vectorize (sqrt included); arithmetic follows torch.optim.Adam.
#include "ct_optim_kernel.hpp"

#include <ATen/Parallel.h>

#include <cmath>

namespace ct {

template <typename T>
void fused_adam(T *__restrict p, const T *__restrict g, T *__restrict m, T *__restrict v,
                int64_t n, const adam_step &s) {
    const T b1 = (T)s.beta1, b2 = (T)s.beta2, a1 = (T)(1 - s.beta1), a2 = (T)(1 - s.beta2);
    const T step_size = (T)(s.lr / s.bias_correction1);
    const T bc2_sqrt = (T)std::sqrt(s.bias_correction2);
    const T eps = (T)s.eps, scale = (T)s.grad_scale, wd = (T)s.weight_decay;
    const T decay = (T)(1 - s.lr * s.weight_decay);
    const bool decoupled = s.decoupled && s.weight_decay != 0;
    const bool coupled = !s.decoupled && s.weight_decay != 0;
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
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
    });
}

template <typename T>
double sum_squares(const T *__restrict g, int64_t n) {
    // blocks summed in double, independent lanes so the loop vectorizes
    return at::parallel_reduce(
        0, n, 65536, 0.0,
        [&](int64_t begin, int64_t end, double acc) {
            double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t i = begin;
            for (; i + 8 <= end; i += 8)
                for (int k = 0; k < 8; k++) lane[k] += (double)g[i + k] * (double)g[i + k];
            for (; i < end; i++) lane[0] += (double)g[i] * (double)g[i];
            for (int k = 0; k < 8; k++) acc += lane[k];
            return acc;
        },
        [](double a, double b) { return a + b; });
}

template void fused_adam<float>(float *, const float *, float *, float *, int64_t, const adam_step &);
template void fused_adam<double>(double *, const double *, double *, double *, int64_t,
                                 const adam_step &);
template double sum_squares<float>(const float *, int64_t);
template double sum_squares<double>(const double *, int64_t);

}  // namespace ct
