// TorchScript modules: how users bring a subject model exported from Python.
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ct_internal.hpp"

using namespace ct;

struct ct_script {
    torch::jit::Module m;
};

extern "C" {

ct_script *ct_script_load(const char *path, ct_device d) {
    if (!path) return null_input("ct_script_load"), nullptr;
    FILE *f = fopen(path, "rb");
    if (!f) {
        ct_set_error("%s: cannot open: %s", path, strerror(errno));
        return nullptr;
    }
    fclose(f);
    try {
        auto *s = new ct_script{torch::jit::load(path, to_device(d))};
        live++;
        s->m.eval();
        for (auto p : s->m.parameters()) p.requires_grad_(false);
        return s;
    } catch (const c10::Error &e) {
        set_error(path, e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error(path, e.what());
    } catch (...) {
        set_error(path, "unknown C++ exception");
    }
    return nullptr;
}

void ct_script_free(ct_script *m) {
    if (!m) return;
    delete m;
    live--;
}

ct_tensor *ct_script_forward(ct_script *m, const ct_tensor *x) {
    if (!m || !x) return null_input("ct_script_forward"), nullptr;
    return guard("ct_script_forward", [&] {
        c10::IValue out = m->m.forward({x->t});
        if (!out.isTensor())
            throw std::runtime_error("module returned " + out.tagKind() + ", not a tensor");
        return out.toTensor();
    });
}

}  // extern "C"
