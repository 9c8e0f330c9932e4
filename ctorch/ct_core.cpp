// Handles, errors, scopes, global state, generators, creation and properties.
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>  // the device count through libtorch, the same across versions

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "ct_internal.hpp"

namespace ct {

std::atomic<long> live{0};
static thread_local std::string tl_error;
static thread_local ct_scope *tl_scope = nullptr;
static ct_device g_default_device = {CT_CPU, 0};
static ct_dtype g_float_dtype = CT_F32;

void set_error(const char *op, const std::string &msg) {
    std::string first = msg.substr(0, msg.find('\n'));
    tl_error = std::string(op) + ": " + first;
}

void null_input(const char *op) {
    if (tl_error.empty()) tl_error = std::string(op) + ": NULL input";
}

static const char kEarlier[] = " (earlier error: ";

void getter_null(const char *op, const char *what) {
    std::string earlier = tl_error;
    // a getter after a getter: keep the first cause, not a chain of them
    size_t at = earlier.find(kEarlier);
    if (at != std::string::npos && !earlier.empty() && earlier.back() == ')')
        earlier = earlier.substr(at + sizeof kEarlier - 1,
                                 earlier.size() - at - (sizeof kEarlier - 1) - 1);
    tl_error = std::string(op) + ": NULL " + what;
    if (!earlier.empty()) tl_error += kEarlier + earlier + ")";
}

bool check_device(const char *op, ct_device d) {
    char name[32];
    ct_device_name(d, name, sizeof name);
    if (d.kind == CT_CPU) return true;
    if (d.kind != CT_CUDA || d.index < 0) {
        ct_set_error("%s: unknown device (kind %d, index %d)", op, (int)d.kind, d.index);
        return false;
    }
    int n = ct_cuda_device_count();
    if (n == 0) {
        ct_set_error("%s: %s requested but CUDA is not available (libtorch %s without CUDA "
                     "support, or no GPU visible)", op, name, ct_torch_version());
        return false;
    }
    if (d.index >= n) {
        ct_set_error("%s: %s requested but there %s only %d CUDA device%s", op, name,
                     n == 1 ? "is" : "are", n, n == 1 ? "" : "s");
        return false;
    }
    return true;
}

static void scope_attach(ct_tensor *h, ct_scope *s) {
    h->scope = s;
    if (s) {
        h->slot = s->items.size();
        s->items.push_back(h);
    }
}

static void scope_detach(ct_tensor *h) {
    if (h->scope) {
        h->scope->items[h->slot] = nullptr;
        h->scope = nullptr;
    }
}

ct_tensor *wrap(at::Tensor t) {
    auto *h = new ct_tensor{std::move(t), nullptr, 0};
    live++;
    scope_attach(h, tl_scope);
    return h;
}

at::ScalarType to_scalar(ct_dtype dt) {
    switch (dt) {
    case CT_F32: return at::kFloat;
    case CT_F64: return at::kDouble;
    case CT_I64: return at::kLong;
    case CT_I32: return at::kInt;
    case CT_U8: return at::kByte;
    case CT_BOOL: return at::kBool;
    default: throw std::invalid_argument("unknown ct_dtype " + std::to_string((int)dt));
    }
}

bool from_scalar(at::ScalarType st, ct_dtype *out) {
    switch (st) {
    case at::kFloat: *out = CT_F32; return true;
    case at::kDouble: *out = CT_F64; return true;
    case at::kLong: *out = CT_I64; return true;
    case at::kInt: *out = CT_I32; return true;
    case at::kByte: *out = CT_U8; return true;
    case at::kBool: *out = CT_BOOL; return true;
    default: return false;
    }
}

at::Device to_device(ct_device d) {
    if (d.kind == CT_CUDA) return at::Device(at::kCUDA, (c10::DeviceIndex)d.index);
    return at::Device(at::kCPU);
}

at::TensorOptions options(ct_dtype dt) {
    return at::TensorOptions().dtype(to_scalar(dt)).device(to_device(g_default_device));
}

std::vector<int64_t> dims(ct_shape s) {
    if (s.ndim < 0 || s.ndim > CT_MAX_DIMS)
        throw std::invalid_argument("shape has " + std::to_string(s.ndim) + " dims");
    return std::vector<int64_t>(s.d, s.d + s.ndim);
}

}  // namespace ct

using namespace ct;

// Random tensors come from the given generator on its device (a CPU one, unless made
// with ct_gen_new_on), then move to the default device: the same seed gives the same
// numbers on every default device.
template <class F>
static at::Tensor random_on_device(ct_gen *gen, ct_dtype dt, F &&draw) {
    // a named empty optional: copying a temporary one trips GCC 12's
    // -Wmaybe-uninitialized inside c10::intrusive_ptr
    static const c10::optional<at::Generator> no_generator;
    if (!gen) return draw(no_generator, options(dt));
    at::Tensor t = draw(c10::optional<at::Generator>(gen->g),
                        at::TensorOptions().dtype(to_scalar(dt)).device(gen->g.device()));
    return t.to(to_device(ct::g_default_device));
}


extern "C" {

/* ---- errors --------------------------------------------------------------------- */
const char *ct_last_error(void) { return tl_error.c_str(); }
void ct_clear_error(void) { tl_error.clear(); }
void ct_set_error(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    tl_error = buf;
}
long ct_live_handles(void) { return live.load(); }

/* ---- scopes --------------------------------------------------------------------- */
ct_scope *ct_scope_begin(void) {
    auto *s = new ct_scope{{}, tl_scope};
    s->items.reserve(64);
    tl_scope = s;
    live++;
    return s;
}

ct_tensor *ct_scope_keep(ct_scope *s, ct_tensor *t) {
    if (!t) return nullptr;
    scope_detach(t);
    scope_attach(t, s ? s->parent : nullptr);
    return t;
}

ct_tensor *ct_unscope(ct_tensor *t) {
    if (t) scope_detach(t);
    return t;
}

void ct_scope_end(ct_scope *s) {
    if (!s) return;
    if (s != tl_scope) {
        fprintf(stderr, "%s:%d: ct_scope_end: not the innermost open scope\n", __FILE__,
                __LINE__);
        abort();
    }
    for (ct_tensor *h : s->items) {
        if (h) {
            delete h;
            live--;
        }
    }
    tl_scope = s->parent;
    delete s;
    live--;
}

/* ---- global state --------------------------------------------------------------- */
void ct_manual_seed(uint64_t seed) {
    try {
        at::manual_seed(seed);
    } catch (...) {
    }
}
void ct_set_num_threads(int n) {
    if (n <= 0) return;
    try {  // the native thread pool refuses once parallel work has started
        at::set_num_threads(n);
    } catch (const std::exception &e) {
        set_error("ct_set_num_threads", e.what());
    }
}
int ct_get_num_threads(void) {
    try {
        return at::get_num_threads();
    } catch (...) {
        return 1;
    }
}
const char *ct_torch_version(void) {
#ifdef CT_TORCH_VERSION
    return CT_TORCH_VERSION;
#else
    return "unknown";
#endif
}
bool ct_cuda_available(void) {
    try {
        return at::hasCUDA() && torch::cuda::device_count() > 0;
    } catch (...) {
        return false;
    }
}
int ct_cuda_device_count(void) {
    try {
        return at::hasCUDA() ? (int)torch::cuda::device_count() : 0;
    } catch (...) {
        return 0;
    }
}
ct_status ct_device_parse(const char *s, ct_device *out) {
    if (!s || !out) {
        null_input("ct_device_parse");
        return CT_ERR_ARG;
    }
    if (strcmp(s, "cpu") == 0) {
        *out = {CT_CPU, 0};
        return CT_OK;
    }
    if (strncmp(s, "cuda", 4) == 0) {
        int idx = 0;
        if (s[4] == ':') {
            char *end;
            if (s[5] < '0' || s[5] > '9') goto bad;   /* strtol takes " 1", "+1" */
            long v = strtol(s + 5, &end, 10);
            if (*end || v > 1 << 20) goto bad;
            idx = (int)v;
        } else if (s[4]) {
            goto bad;
        }
        *out = {CT_CUDA, idx};
        return CT_OK;
    }
bad:
    ct_set_error("unknown device '%s' (expected cpu, cuda or cuda:N)", s);
    return CT_ERR_ARG;
}
void ct_device_name(ct_device d, char *buf, size_t n) {
    if (d.kind == CT_CUDA)
        snprintf(buf, n, "cuda:%d", d.index);
    else
        snprintf(buf, n, "cpu");
}
ct_device ct_default_device(void) { return g_default_device; }
void ct_set_default_device(ct_device d) { g_default_device = d; }
bool ct_grad_enabled(void) { return c10::GradMode::is_enabled(); }
bool ct_set_grad_enabled(bool on) {
    bool prev = c10::GradMode::is_enabled();
    c10::GradMode::set_enabled(on);
    return prev;
}
ct_dtype ct_float_dtype(void) { return g_float_dtype; }
ct_dtype ct_set_float_dtype(ct_dtype dt) {
    ct_dtype prev = g_float_dtype;
    if (dt == CT_F32 || dt == CT_F64) g_float_dtype = dt;
    return prev;
}
static std::unique_ptr<torch::autograd::profiler::RecordProfile> g_profile;
static std::mutex g_profile_mutex;

ct_status ct_profile_begin(const char *path) {
    if (!path) return null_input("ct_profile_begin"), CT_ERR_ARG;
    std::lock_guard<std::mutex> lock(g_profile_mutex);
    if (g_profile) return set_error("ct_profile_begin", "a profile is running already"), CT_ERR_ARG;
    return guard_status("ct_profile_begin", [&] {
        g_profile = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(path));
        return CT_OK;
    });
}

ct_status ct_profile_end(void) {
    std::lock_guard<std::mutex> lock(g_profile_mutex);
    if (!g_profile) return set_error("ct_profile_end", "no profile is running"), CT_ERR_ARG;
    return guard_status("ct_profile_end", [&] {
        g_profile.reset();   // writes the trace
        return CT_OK;
    });
}

const char *ct_dtype_name(ct_dtype d) {
    static const char *names[] = {"f32", "f64", "i64", "i32", "u8", "bool"};
    return (d >= 0 && d < CT_DTYPE_COUNT) ? names[d] : "?";
}
size_t ct_dtype_size(ct_dtype dt) {
    static const size_t sz[] = {4, 8, 8, 4, 1, 1};
    return (dt >= 0 && dt < CT_DTYPE_COUNT) ? sz[dt] : 0;
}

/* ---- generators ----------------------------------------------------------------- */
ct_gen *ct_gen_new(uint64_t seed) {
    try {
        auto *g = new ct_gen{at::make_generator<at::CPUGeneratorImpl>(seed)};
        live++;
        return g;
    } catch (const std::exception &e) {
        set_error("ct_gen_new", e.what());
        return nullptr;
    }
}
ct_gen *ct_gen_new_on(uint64_t seed, ct_device d) {
    if (d.kind == CT_CPU) return ct_gen_new(seed);
    if (!check_device("ct_gen_new_on", d)) return nullptr;
    try {
        // a copy of the device's default generator (CUDA generators are made by
        // libtorch_cuda, which this C++ does not link against directly), reseeded
        at::Generator def = at::globalContext().defaultGenerator(to_device(d));
        at::Generator g;
        {
            std::lock_guard<std::mutex> lock(def.mutex());
            g = def.clone();
        }
        g.set_current_seed(seed);
        auto *h = new ct_gen{g};
        live++;
        return h;
    } catch (const c10::Error &e) {
        set_error("ct_gen_new_on", e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error("ct_gen_new_on", e.what());
    }
    return nullptr;
}
ct_device ct_gen_device(const ct_gen *g) {
    if (!g) return getter_null("ct_gen_device", "generator"), ct_device{CT_DEVICE_KIND_COUNT, -1};
    at::Device d = g->g.device();
    if (d.is_cuda()) return {CT_CUDA, d.has_index() ? (int)d.index() : 0};
    return {CT_CPU, 0};
}
void ct_gen_free(ct_gen *g) {
    if (!g) return;
    delete g;
    live--;
}
ct_tensor *ct_gen_get_state(const ct_gen *g) {
    if (!g) return null_input("ct_gen_get_state"), nullptr;
    return guard("ct_gen_get_state", [&] {
        at::Generator gen = g->g;  // shares the generator impl
        std::lock_guard<std::mutex> lock(gen.mutex());
        return gen.get_state();
    });
}
ct_status ct_gen_set_state(ct_gen *g, const ct_tensor *state) {
    if (!g || !state) return null_input("ct_gen_set_state"), CT_ERR_ARG;
    return guard_status("ct_gen_set_state", [&] {
        std::lock_guard<std::mutex> lock(g->g.mutex());
        /* libtorch's own message on a wrong size names its implementation classes */
        int64_t want = g->g.get_state().numel();
        if (state->t.scalar_type() != at::kByte || state->t.dim() != 1 || state->t.numel() != want) {
            ct_set_error("ct_gen_set_state: an RNG state of %lld bytes (%s), expected %lld bytes of uint8",
                         (long long)state->t.numel(), c10::toString(state->t.scalar_type()),
                         (long long)want);
            return CT_ERR_ARG;
        }
        g->g.set_state(state->t);
        return CT_OK;
    });
}

/* ---- creation ------------------------------------------------------------------- */
void ct_free(ct_tensor *t) {
    if (!t) return;
    scope_detach(t);
    delete t;
    live--;
}
ct_tensor *ct_ref(const ct_tensor *t) {
    if (!t) return null_input("ct_ref"), nullptr;
    return wrap(t->t);
}
ct_tensor *ct_zeros(ct_shape s, ct_dtype dt) {
    return guard("ct_zeros", [&] { return at::zeros(dims(s), options(dt)); });
}
ct_tensor *ct_ones(ct_shape s, ct_dtype dt) {
    return guard("ct_ones", [&] { return at::ones(dims(s), options(dt)); });
}
ct_tensor *ct_full(ct_shape s, double v, ct_dtype dt) {
    return guard("ct_full", [&] { return at::full(dims(s), v, options(dt)); });
}
ct_tensor *ct_scalar(double v, ct_dtype dt) {
    return guard("ct_scalar", [&] { return at::scalar_tensor(v, options(dt)); });
}
ct_tensor *ct_eye(int64_t n, ct_dtype dt) {
    return guard("ct_eye", [&] { return at::eye(n, options(dt)); });
}
ct_tensor *ct_arange(int64_t n, ct_dtype dt) {
    return guard("ct_arange", [&] { return at::arange(n, options(dt)); });
}
ct_tensor *ct_linspace(double a, double b, int64_t n, ct_dtype dt) {
    return guard("ct_linspace", [&] { return at::linspace(a, b, n, options(dt)); });
}

ct_tensor *ct_randn(ct_shape s, ct_dtype dt, ct_gen *gen) {
    return guard("ct_randn", [&] {
        return random_on_device(gen, dt, [&](c10::optional<at::Generator> g, at::TensorOptions o) {
            return at::randn(dims(s), g, o);
        });
    });
}
ct_tensor *ct_rand(ct_shape s, ct_dtype dt, ct_gen *gen) {
    return guard("ct_rand", [&] {
        return random_on_device(gen, dt, [&](c10::optional<at::Generator> g, at::TensorOptions o) {
            return at::rand(dims(s), g, o);
        });
    });
}
ct_tensor *ct_randint(int64_t high, ct_shape s, ct_gen *gen) {
    return guard("ct_randint", [&] {
        return random_on_device(gen, CT_I64, [&](c10::optional<at::Generator> g, at::TensorOptions o) {
            return at::randint(high, dims(s), g, o);
        });
    });
}
ct_tensor *ct_randperm(int64_t n, ct_gen *gen) {
    return guard("ct_randperm", [&] {
        return random_on_device(gen, CT_I64, [&](c10::optional<at::Generator> g, at::TensorOptions o) {
            return at::randperm(n, g, o);
        });
    });
}
ct_tensor *ct_zeros_like(const ct_tensor *t) {
    if (!t) return null_input("ct_zeros_like"), nullptr;
    return guard("ct_zeros_like", [&] { return at::zeros_like(t->t); });
}
ct_tensor *ct_ones_like(const ct_tensor *t) {
    if (!t) return null_input("ct_ones_like"), nullptr;
    return guard("ct_ones_like", [&] { return at::ones_like(t->t); });
}
ct_tensor *ct_randn_like(const ct_tensor *t, ct_gen *gen) {
    if (!t) return null_input("ct_randn_like"), nullptr;
    return guard("ct_randn_like", [&] {
        if (!gen) return at::randn_like(t->t);
        return at::randn(t->t.sizes(), gen->g, t->t.options().device(gen->g.device()))
            .to(t->t.device());
    });
}
ct_tensor *ct_from_data(const void *data, ct_shape s, ct_dtype dt) {
    if (!data) return null_input("ct_from_data"), nullptr;
    return guard("ct_from_data", [&] {
        at::Tensor src = at::from_blob(const_cast<void *>(data), dims(s),
                                       at::TensorOptions().dtype(to_scalar(dt)));
        return src.to(to_device(g_default_device), /*non_blocking=*/false, /*copy=*/true);
    });
}
ct_status ct_to_data(const ct_tensor *t, void *data, size_t nbytes) {
    if (!t || !data) return null_input("ct_to_data"), CT_ERR_ARG;
    return guard_status("ct_to_data", [&] {
        at::Tensor c = t->t.detach().to(at::kCPU).contiguous();
        size_t need = (size_t)c.numel() * c.element_size();
        if (need != nbytes) {
            ct_set_error("ct_to_data: tensor has %zu bytes, buffer %zu", need, nbytes);
            return CT_ERR_ARG;
        }
        if (need) memcpy(data, c.data_ptr(), need);
        return CT_OK;
    });
}
double ct_item(const ct_tensor *t) {
    if (!t) return getter_null("ct_item", "tensor"), NAN;
    try {
        if (t->t.numel() != 1) {
            ct_set_error("ct_item: tensor has %lld elements, not 1", (long long)t->t.numel());
            return NAN;
        }
        return t->t.item().toDouble();
    } catch (const c10::Error &e) {
        set_error("ct_item", e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error("ct_item", e.what());
    }
    return NAN;
}

/* ---- properties ----------------------------------------------------------------- */
int ct_ndim(const ct_tensor *t) {
    if (!t) return getter_null("ct_ndim", "tensor"), -1;
    if (!t->t.defined()) return ct_set_error("ct_ndim: undefined tensor"), -1;
    return (int)t->t.dim();
}
int64_t ct_size(const ct_tensor *t, int dim) {
    if (!t) return getter_null("ct_size", "tensor"), -1;
    if (!t->t.defined()) return ct_set_error("ct_size: undefined tensor"), -1;
    int n = (int)t->t.dim();
    if (dim < -n || dim >= n) {
        ct_set_error("ct_size: dim %d out of range for a tensor of %d dim%s", dim, n,
                     n == 1 ? "" : "s");
        return -1;
    }
    return t->t.size(dim < 0 ? dim + n : dim);
}
ct_shape ct_shape_of(const ct_tensor *t) {
    ct_shape s = {-1, {0}};
    if (!t) return getter_null("ct_shape_of", "tensor"), s;
    if (!t->t.defined()) return ct_set_error("ct_shape_of: undefined tensor"), s;
    if (t->t.dim() > CT_MAX_DIMS) {
        ct_set_error("ct_shape_of: tensor has %lld dims, more than CT_MAX_DIMS = %d",
                     (long long)t->t.dim(), CT_MAX_DIMS);
        return s;
    }
    s.ndim = (int)t->t.dim();
    for (int i = 0; i < s.ndim; i++) s.d[i] = t->t.size(i);
    return s;
}
int64_t ct_numel(const ct_tensor *t) {
    if (!t) return getter_null("ct_numel", "tensor"), -1;
    if (!t->t.defined()) return ct_set_error("ct_numel: undefined tensor"), -1;
    return t->t.numel();
}
ct_dtype ct_dtype_of(const ct_tensor *t) {
    ct_dtype d = CT_DTYPE_COUNT;
    if (!t) return getter_null("ct_dtype_of", "tensor"), d;
    if (!t->t.defined()) return ct_set_error("ct_dtype_of: undefined tensor"), d;
    if (!from_scalar(t->t.scalar_type(), &d))
        ct_set_error("ct_dtype_of: dtype %s has no ct_dtype", c10::toString(t->t.scalar_type()));
    return d;
}
ct_device ct_device_of(const ct_tensor *t) {
    ct_device d = {CT_DEVICE_KIND_COUNT, -1};
    if (!t) return getter_null("ct_device_of", "tensor"), d;
    if (!t->t.defined()) return ct_set_error("ct_device_of: undefined tensor"), d;
    if (t->t.is_cuda()) return {CT_CUDA, (int)t->t.device().index()};
    if (t->t.is_cpu()) return {CT_CPU, 0};
    ct_set_error("ct_device_of: tensor on %s, neither cpu nor cuda",
                 t->t.device().str().c_str());
    return d;
}
bool ct_requires_grad(const ct_tensor *t) {
    if (!t) return getter_null("ct_requires_grad", "tensor"), false;
    return t->t.requires_grad();
}
ct_status ct_set_requires_grad(ct_tensor *t, bool on) {
    if (!t) return null_input("ct_set_requires_grad"), CT_ERR_ARG;
    return guard_status("ct_set_requires_grad", [&] {
        t->t.requires_grad_(on);
        return CT_OK;
    });
}
bool ct_is_defined(const ct_tensor *t) { return t && t->t.defined(); }
void ct_describe(const ct_tensor *t, char *buf, size_t n) {
    if (!n) return;
    if (!t) {
        snprintf(buf, n, "NULL");
        return;
    }
    std::string s = "(";
    for (int64_t i = 0; i < t->t.dim(); i++)
        s += (i ? ", " : "") + std::to_string(t->t.size(i));
    if (t->t.dim() == 1) s += ",";
    s += ") ";
    s += ct_dtype_name(ct_dtype_of(t));
    s += t->t.is_cuda() ? " cuda" : " cpu";
    snprintf(buf, n, "%s", s.c_str());
}
ct_tensor *ct_to_dtype(const ct_tensor *t, ct_dtype dt) {
    if (!t) return null_input("ct_to_dtype"), nullptr;
    return guard("ct_to_dtype", [&] { return t->t.to(to_scalar(dt)); });
}
ct_tensor *ct_to_device(const ct_tensor *t, ct_device d) {
    if (!t) return null_input("ct_to_device"), nullptr;
    if (!check_device("ct_to_device", d)) return nullptr;
    return guard("ct_to_device", [&] { return t->t.to(to_device(d)); });
}
ct_tensor *ct_detach(const ct_tensor *t) {
    if (!t) return null_input("ct_detach"), nullptr;
    return guard("ct_detach", [&] { return t->t.detach(); });
}
ct_tensor *ct_clone(const ct_tensor *t) {
    if (!t) return null_input("ct_clone"), nullptr;
    return guard("ct_clone", [&] { return t->t.clone(); });
}
ct_tensor *ct_contiguous(const ct_tensor *t) {
    if (!t) return null_input("ct_contiguous"), nullptr;
    return guard("ct_contiguous", [&] { return t->t.contiguous(); });
}
ct_tensor *ct_to_channels_last(const ct_tensor *t) {
    if (!t) return null_input("ct_to_channels_last"), nullptr;
    return guard("ct_to_channels_last", [&] {
        TORCH_CHECK(t->t.dim() == 4, "expected a 4-D tensor (B, C, H, W), got ", t->t.sizes());
        return t->t.contiguous(at::MemoryFormat::ChannelsLast);
    });
}
bool ct_is_channels_last(const ct_tensor *t) {
    return t && t->t.defined() && t->t.dim() == 4 && t->t.is_contiguous(at::MemoryFormat::ChannelsLast) &&
           !t->t.is_contiguous();
}

double ct_max_abs_diff(const ct_tensor *a, const ct_tensor *b) {
    if (!a || !b) return null_input("ct_max_abs_diff"), NAN;
    try {
        if (a->t.sizes() != b->t.sizes()) {
            ct_set_error("ct_max_abs_diff: shapes differ");
            return NAN;
        }
        if (a->t.numel() == 0) return 0.0;
        return (a->t.detach().to(at::kDouble) - b->t.detach().to(at::kDouble).to(a->t.device()))
            .abs()
            .max()
            .item<double>();
    } catch (const std::exception &e) {
        set_error("ct_max_abs_diff", e.what());
        return NAN;
    }
}

void ct_print(const char *label, const ct_tensor *t) {
    char d[256];
    ct_describe(t, d, sizeof d);
    fprintf(stderr, "%s %s:", label ? label : "", d);
    if (t) {
        try {
            at::Tensor c = t->t.detach().to(at::kCPU).to(at::kDouble).flatten();
            int64_t n = std::min<int64_t>(c.numel(), 8);
            for (int64_t i = 0; i < n; i++) fprintf(stderr, " %.6g", c[i].item<double>());
            if (c.numel() > n) fprintf(stderr, " …");
        } catch (...) {
        }
    }
    fprintf(stderr, "\n");
}

}  // extern "C"
