// Internals shared by the ctorch translation units: the handle structs, wrapping of
// at::Tensor results into scope-owned handles, and the exception guard.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <atomic>
#include <string>
#include <vector>

#include "ct.h"

// A loop function built for AVX-512, AVX2 and the x86-64 baseline (target_clones: the
// loader picks the widest the CPU has; Debian builds for the baseline, whose SSE2 loops
// ran the Adam pass 3-4 times slower on a Zen 5). Not under clang or the sanitizers.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CT_CLONES
#endif

struct ct_tensor {
    at::Tensor t;
    ct_scope *scope;  // owning scope, or nullptr when the caller owns the handle
    size_t slot;      // index in scope->items
};

struct ct_scope {
    std::vector<ct_tensor *> items;
    ct_scope *parent;
};

struct ct_gen {
    at::Generator g;
};

namespace ct {

extern std::atomic<long> live;

// Records msg as the thread's last error (first line only, prefixed by op).
void set_error(const char *op, const std::string &msg);
// For a NULL input: keeps an earlier message, else says which op got NULL.
void null_input(const char *op);
// For a getter given a NULL handle: its own message ("op: NULL what"), with the earlier
// message, if any, kept after it as the likely cause.
void getter_null(const char *op, const char *what);
// False, with a message naming op, for a device that is not there (CUDA without CUDA,
// an index past the last GPU).
bool check_device(const char *op, ct_device d);

// Wraps a result in a new handle, registered in the innermost open scope.
ct_tensor *wrap(at::Tensor t);

at::ScalarType to_scalar(ct_dtype dt);
bool from_scalar(at::ScalarType st, ct_dtype *out);
at::Device to_device(ct_device d);
at::TensorOptions options(ct_dtype dt);  // dtype on the default device
std::vector<int64_t> dims(ct_shape s);

// Runs f (returning at::Tensor) and wraps the result; any exception becomes an
// error message and NULL.
template <class F>
ct_tensor *guard(const char *op, F &&f) {
    try {
        return wrap(f());
    } catch (const c10::Error &e) {
        set_error(op, e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error(op, e.what());
    } catch (...) {
        set_error(op, "unknown C++ exception");
    }
    return nullptr;
}

// Same for calls that return a ct_status.
template <class F>
ct_status guard_status(const char *op, F &&f) {
    try {
        return f();
    } catch (const c10::Error &e) {
        set_error(op, e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error(op, e.what());
    } catch (...) {
        set_error(op, "unknown C++ exception");
    }
    return CT_ERR_TORCH;
}

}  // namespace ct
