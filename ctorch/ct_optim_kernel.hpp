// The fused Adam/AdamW update and the gradient sum of squares: one pass over memory per
// parameter instead of the eight elementwise kernels of torch.optim's single-tensor
// path (the optimizer step is memory-bound at the batch sizes fiber models train with).
#pragma once

#include <cstdint>

namespace ct {

struct adam_step {
    double lr, beta1, beta2, eps, weight_decay;
    double bias_correction1, bias_correction2;  // 1 - beta^step
    double grad_scale;                          // gradient clipping folded in (1: none)
    bool decoupled;                             // AdamW
};

// p, g, m, v: n contiguous elements of T (float or double).
template <typename T>
void fused_adam(T *p, const T *g, T *m, T *v, int64_t n, const adam_step &s);
// Σ g², accumulated in double.
template <typename T>
double sum_squares(const T *g, int64_t n);

}  // namespace ct
