// Activation checkpointing: a custom autograd function whose forward runs a C step
// function without a graph and whose backward runs it again with one (PyTorch's
// reentrant torch.utils.checkpoint).
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/engine.h>

#include <cstring>
#include <stdexcept>

#include "ct_internal.hpp"

using namespace ct;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

static std::atomic<long> recomputes{0};

namespace {

// What the node keeps besides the inputs: fn, and a copy of its context bytes.
struct Call {
    ct_step_fn fn;
    at::Tensor ctx;   // U8 CPU (ctx_size), undefined when ctx_size is 0
};

const void *ctx_bytes(const at::Tensor &ctx) { return ctx.defined() ? ctx.data_ptr() : nullptr; }

// Closes the scope of one call of fn on every path.
struct ScopeGuard {
    ct_scope *s;
    ~ScopeGuard() { ct_scope_end(s); }
};

// Why fn returned NULL: its message, if it left one.
std::string step_failure() {
    const char *m = ct_last_error();
    return m[0] ? m : "the step function returned NULL";
}

// fn on handles to ts, in a scope of its own; its result, or a throw with its message.
at::Tensor run_step(ct_step_fn fn, const void *ctx, const std::vector<at::Tensor> &ts) {
    ScopeGuard g{ct_scope_begin()};
    std::vector<const ct_tensor *> hs;
    for (const at::Tensor &t : ts) hs.push_back(wrap(t));
    ct_tensor *y = fn(ctx, hs.data(), (int)hs.size());
    if (!y) throw std::runtime_error(step_failure());
    return y->t;
}

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
    // inputs: fn's n inputs, then a scalar that requires grad (so that the node exists)
    static at::Tensor forward(AutogradContext *actx, at::TensorList inputs, const Call *call) {
        actx->save_for_backward(inputs.vec());
        actx->saved_data["fn"] = (int64_t)reinterpret_cast<intptr_t>(call->fn);
        if (call->ctx.defined()) actx->saved_data["ctx"] = call->ctx;
        std::vector<at::Tensor> in(inputs.begin(), inputs.end() - 1);
        return run_step(call->fn, ctx_bytes(call->ctx), in);
    }

    static variable_list backward(AutogradContext *actx, variable_list grad_out) {
        // ct_grad's pass asks for some gradients only: the inner backward below would
        // put the parameters' into .grad instead (PyTorch refuses it the same way)
        if (!torch::autograd::Engine::get_default_engine().is_checkpoint_valid())
            throw std::runtime_error("ct_checkpoint: only ct_backward goes through a "
                                     "checkpoint, not ct_grad or ct_vjp");
        variable_list saved = actx->get_saved_variables();
        saved.pop_back();   // the scalar
        auto fn = reinterpret_cast<ct_step_fn>((intptr_t)actx->saved_data["fn"].toInt());
        at::Tensor ctx;
        auto it = actx->saved_data.find("ctx");
        if (it != actx->saved_data.end()) ctx = it->second.toTensor();
        std::vector<at::Tensor> in;
        for (const at::Tensor &t : saved) {
            at::Tensor d = t.detach();
            if (t.requires_grad()) d.requires_grad_(true);
            in.push_back(d);
        }
        at::Tensor y;
        {
            c10::AutoGradMode on(true);
            y = run_step(fn, ctx_bytes(ctx), in);
        }
        recomputes++;
        // nothing fn used requires grad (frozen parameters, no input needing one)
        if (y.requires_grad()) torch::autograd::backward({y}, {grad_out[0]});
        variable_list grads;
        for (const at::Tensor &d : in) grads.push_back(d.requires_grad() ? d.grad() : at::Tensor());
        grads.push_back(at::Tensor());   // the scalar
        grads.push_back(at::Tensor());   // call
        return grads;
    }
};

}  // namespace

extern "C" {

ct_tensor *ct_checkpoint(ct_step_fn fn, const void *ctx, size_t ctx_size,
                         const ct_tensor *const *inputs, int n) {
    if (!fn || !inputs || n < 1 || (ctx_size > 0 && !ctx)) return null_input("ct_checkpoint"), nullptr;
    for (int i = 0; i < n; i++)
        if (!inputs[i]) return null_input("ct_checkpoint"), nullptr;
    if (!ct_grad_enabled()) {   // no graph to save memory in: one plain call
        ct_scope *s = ct_scope_begin();
        ct_tensor *y = ct_scope_keep(s, fn(ctx_size > 0 ? ctx : nullptr, inputs, n));
        ct_scope_end(s);
        if (!y) set_error("ct_checkpoint", step_failure());
        return y;
    }
    return guard("ct_checkpoint", [&] {
        Call call{fn, at::Tensor()};
        if (ctx_size > 0) {
            call.ctx = at::empty({(int64_t)ctx_size}, at::TensorOptions().dtype(at::kByte));
            std::memcpy(call.ctx.data_ptr(), ctx, ctx_size);
        }
        std::vector<at::Tensor> in;
        for (int i = 0; i < n; i++) in.push_back(inputs[i]->t);
        in.push_back(at::zeros({}, at::TensorOptions().dtype(at::kFloat)).requires_grad_(true));
        return Checkpoint::apply(at::TensorList(in), &call);
    });
}

long ct_checkpoint_recomputes(void) { return recomputes.load(); }

}  // extern "C"
