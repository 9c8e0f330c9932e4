// The libtorch side of bench_ctorch: the same calls made directly in C++, with no
// ctorch handle in between, so the C side can time both the same way.
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>

namespace {
at::Tensor big_a, big_b, tiny_a, tiny_b;
volatile float sink;
}  // namespace

extern "C" {

// Copies the operands: (n, n) float32 a and b for matmul, one-element x and y for add.
void bench_aten_setup(const float *a, const float *b, int64_t n, float x, float y) {
    big_a = at::from_blob(const_cast<float *>(a), {n, n}, at::kFloat).clone();
    big_b = at::from_blob(const_cast<float *>(b), {n, n}, at::kFloat).clone();
    tiny_a = at::full({1}, x, at::kFloat);
    tiny_b = at::full({1}, y, at::kFloat);
}

void bench_aten_teardown(void) {
    big_a.reset();
    big_b.reset();
    tiny_a.reset();
    tiny_b.reset();
}

// One matmul; the result is freed on return, as the C side frees its handle.
void bench_aten_matmul(void) {
    at::Tensor c = at::matmul(big_a, big_b);
    sink = c.data_ptr<float>()[0];
}

// Copies the matmul result into out (n * n floats), for checking the two paths agree.
void bench_aten_matmul_into(float *out) {
    at::Tensor c = at::matmul(big_a, big_b).contiguous();
    std::memcpy(out, c.data_ptr<float>(), c.numel() * sizeof(float));
}

// k one-element additions, each result freed at once.
void bench_aten_add(int k) {
    for (int i = 0; i < k; i++) {
        at::Tensor c = at::add(tiny_a, tiny_b);
        (void)c;
    }
}

}  // extern "C"
