// Autograd: backward, torch.autograd.grad (VJPs, double-VJP JVPs) and forward-mode
// dual numbers.
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/forward_grad.h>

#include <mutex>

#include "ct_internal.hpp"

using namespace ct;

// The one forward-AD level ctorch has entered and not yet exited (-1: none). libtorch
// keeps levels in a process-wide list and refuses a second one.
static std::mutex fwad_mutex;
static int64_t fwad_active = -1;

extern "C" {

ct_status ct_backward(const ct_tensor *loss, bool retain_graph) {
    if (!loss) return null_input("ct_backward"), CT_ERR_ARG;
    return guard_status("ct_backward", [&] {
        if (loss->t.numel() != 1) {
            ct_set_error("ct_backward: loss has %lld elements, not 1",
                         (long long)loss->t.numel());
            return CT_ERR_ARG;
        }
        loss->t.backward({}, retain_graph, false);
        return CT_OK;
    });
}

ct_tensor *ct_grad_of(const ct_tensor *leaf) {
    if (!leaf) return null_input("ct_grad_of"), nullptr;
    const at::Tensor &g = leaf->t.grad();
    if (!g.defined()) return nullptr;
    return wrap(g);
}

ct_status ct_zero_grad(ct_tensor *leaf) {
    if (!leaf) return null_input("ct_zero_grad"), CT_ERR_ARG;
    return guard_status("ct_zero_grad", [&] {
        leaf->t.mutable_grad().reset();
        return CT_OK;
    });
}

ct_status ct_grad(const ct_tensor *const *outputs, const ct_tensor *const *grad_outputs,
                  int n_out, const ct_tensor *const *inputs, int n_in, ct_tensor **grads,
                  bool retain_graph, bool create_graph, bool allow_unused) {
    if (!outputs || !inputs || !grads || n_out <= 0 || n_in <= 0)
        return null_input("ct_grad"), CT_ERR_ARG;
    for (int i = 0; i < n_in; i++) grads[i] = nullptr;
    for (int i = 0; i < n_out; i++)
        if (!outputs[i] || (grad_outputs && !grad_outputs[i]))
            return null_input("ct_grad"), CT_ERR_ARG;
    for (int i = 0; i < n_in; i++)
        if (!inputs[i]) return null_input("ct_grad"), CT_ERR_ARG;
    return guard_status("ct_grad", [&] {
        torch::autograd::variable_list outs, gouts, ins;
        for (int i = 0; i < n_out; i++) {
            outs.push_back(outputs[i]->t);
            gouts.push_back(grad_outputs ? grad_outputs[i]->t : at::Tensor());
        }
        for (int i = 0; i < n_in; i++) ins.push_back(inputs[i]->t);
        auto res = torch::autograd::grad(outs, ins, gouts, retain_graph, create_graph,
                                         allow_unused);
        for (int i = 0; i < n_in; i++) {
            at::Tensor g = res[i].defined() ? res[i] : at::zeros_like(inputs[i]->t);
            grads[i] = wrap(g);
        }
        return CT_OK;
    });
}

ct_tensor *ct_vjp(const ct_tensor *y, const ct_tensor *x, const ct_tensor *v, bool create_graph) {
    if (!y || !x || !v) return null_input("ct_vjp"), nullptr;
    return guard("ct_vjp", [&] {
        auto res = torch::autograd::grad({y->t}, {x->t}, {v->t}, /*retain*/ true, create_graph,
                                         /*allow_unused*/ true);
        return res[0].defined() ? res[0] : at::zeros_like(x->t);
    });
}

ct_tensor *ct_jvp_double_vjp(const ct_tensor *y, const ct_tensor *x, const ct_tensor *v,
                             bool create_graph) {
    if (!y || !x || !v) return null_input("ct_jvp_double_vjp"), nullptr;
    return guard("ct_jvp_double_vjp", [&] {
        // g(u) = J^T u is linear in u; its VJP with v is J v.
        at::Tensor u = at::zeros_like(y->t).requires_grad_(true);
        auto g = torch::autograd::grad({y->t}, {x->t}, {u}, /*retain*/ true,
                                       /*create_graph*/ true, /*allow_unused*/ true);
        if (!g[0].defined() || !g[0].requires_grad()) return at::zeros_like(y->t);
        auto jv = torch::autograd::grad({g[0]}, {u}, {v->t}, /*retain*/ true, create_graph,
                                        /*allow_unused*/ true);
        return jv[0].defined() ? jv[0] : at::zeros_like(y->t);
    });
}

int64_t ct_fwad_enter(void) {
    std::lock_guard<std::mutex> lock(fwad_mutex);
    if (fwad_active >= 0) {
        ct_set_error("ct_fwad_enter: forward-AD level %lld is still active (entered and never "
                     "exited; libtorch 1.13 has no nested levels): exit it with "
                     "ct_fwad_exit(ct_fwad_active_level()) first",
                     (long long)fwad_active);
        return -1;
    }
    try {
        fwad_active = (int64_t)torch::autograd::ForwardADLevel::get_next_idx();
        return fwad_active;
    } catch (const c10::Error &e) {
        set_error("ct_fwad_enter", e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error("ct_fwad_enter", e.what());
    }
    return -1;
}

void ct_fwad_exit(int64_t level) {
    if (level < 0) return;
    std::lock_guard<std::mutex> lock(fwad_mutex);
    try {
        torch::autograd::ForwardADLevel::release_idx((uint64_t)level);
        if (level == fwad_active) fwad_active = -1;
    } catch (const c10::Error &e) {
        set_error("ct_fwad_exit", e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error("ct_fwad_exit", e.what());
    }
}

int64_t ct_fwad_active_level(void) {
    std::lock_guard<std::mutex> lock(fwad_mutex);
    return fwad_active;
}

ct_tensor *ct_jvp_fwad(ct_tensor *(*fn)(void *ctx, const ct_tensor *x), void *ctx,
                       const ct_tensor *x, const ct_tensor *v, ct_tensor **y_out) {
    if (y_out) *y_out = nullptr;
    if (!fn || !x || !v) return null_input("ct_jvp_fwad"), nullptr;
    int64_t level = ct_fwad_enter();
    if (level < 0) return nullptr;
    // fn's temporaries live in a scope of their own: they hold dual tensors of this
    // level, which must not outlive it in the caller's scope
    ct_scope *inner = ct_scope_begin();
    at::Tensor tangent, primal;
    bool ok = false;
    try {
        ct_tensor *dual = ct_fwad_make_dual(x, v, level);
        ct_tensor *y = dual ? fn(ctx, dual) : nullptr;
        if (!y) {
            null_input("ct_jvp_fwad");  // keeps fn's message; else says fn gave NULL
        } else {
            auto pt = at::_unpack_dual(y->t, level);
            primal = std::get<0>(pt).clone();
            tangent = std::get<1>(pt).defined() ? std::get<1>(pt).clone()
                                                : at::zeros_like(primal);
            ok = true;
        }
    } catch (const c10::Error &e) {
        set_error("ct_jvp_fwad", e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error("ct_jvp_fwad", e.what());
    } catch (...) {
        set_error("ct_jvp_fwad", "unknown C++ exception");
    }
    ct_scope_end(inner);
    std::string msg = ct_last_error();
    ct_fwad_exit(level);
    if (!ok) {
        ct_set_error("%s", msg.c_str());  // an exit error must not hide the cause
        return nullptr;
    }
    if (ct_fwad_active_level() >= 0) return nullptr;  // the exit failed: its message
    ct_tensor *t = wrap(tangent);
    if (y_out) *y_out = wrap(primal);
    return t;
}

ct_tensor *ct_fwad_make_dual(const ct_tensor *primal, const ct_tensor *tangent, int64_t level) {
    if (!primal || !tangent) return null_input("ct_fwad_make_dual"), nullptr;
    return guard("ct_fwad_make_dual",
                 [&] { return at::_make_dual(primal->t, tangent->t, level); });
}

ct_tensor *ct_fwad_tangent(const ct_tensor *dual, int64_t level) {
    if (!dual) return null_input("ct_fwad_tangent"), nullptr;
    return guard("ct_fwad_tangent", [&] {
        at::Tensor tg = std::get<1>(at::_unpack_dual(dual->t, level));
        return tg.defined() ? tg.clone() : at::zeros_like(dual->t);
    });
}

ct_tensor *ct_fwad_primal(const ct_tensor *dual, int64_t level) {
    if (!dual) return null_input("ct_fwad_primal"), nullptr;
    return guard("ct_fwad_primal",
                 [&] { return std::get<0>(at::_unpack_dual(dual->t, level)); });
}

}  // extern "C"
