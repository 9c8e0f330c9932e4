// Parameter sets and the Adam/AdamW optimizer, saved in archives (ct_archive.cpp).
#include <c10/util/irange.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <unistd.h>

#include "ct_archive.hpp"
#include "ct_optim_kernel.hpp"

using namespace ct;

/* ---- parameter sets ------------------------------------------------------------- */
struct ct_params {
    struct entry {
        std::string name;
        ct_tensor *t;
        bool buffer;
    };
    std::vector<entry> items;
    std::map<std::string, size_t> index;
};

// Consumes init in every case, so that ct_params_add(p, name, ct_randn(...)) leaks
// nothing when it fails.
// Σ of squared gradient entries in double: a fused pass for contiguous CPU floats.
static double grad_sum_squares(const std::vector<at::Tensor> &grads) {
    double sum = 0;
    for (const at::Tensor &g : grads) {
        if (g.device().is_cpu() && g.is_contiguous() && g.scalar_type() == at::kFloat)
            sum += ct::sum_squares(g.data_ptr<float>(), g.numel());
        else if (g.device().is_cpu() && g.is_contiguous() && g.scalar_type() == at::kDouble)
            sum += ct::sum_squares(g.data_ptr<double>(), g.numel());
        else
            sum += g.to(at::kDouble).square().sum().item<double>();
    }
    return sum;
}

static ct_tensor *params_add(ct_params *p, const char *name, ct_tensor *init, bool buffer) {
    const char *op = buffer ? "ct_params_add_buffer" : "ct_params_add";
    if (!p || !name || !init) {
        ct_free(init);
        return null_input(op), nullptr;
    }
    if (p->index.count(name)) {
        ct_set_error("%s: duplicate name '%s'", op, name);
        ct_free(init);
        return nullptr;
    }
    ct_unscope(init);
    try {
        at::Tensor leaf = init->t.detach();
        if (!buffer) leaf.requires_grad_(true);
        init->t = leaf;
    } catch (const std::exception &e) {
        set_error(op, e.what());
        ct_free(init);
        return nullptr;
    }
    p->index[name] = p->items.size();
    p->items.push_back({name, init, buffer});
    return init;
}

extern "C" {

ct_params *ct_params_new(void) {
    live++;
    return new ct_params();
}
void ct_params_free(ct_params *p) {
    if (!p) return;
    for (auto &e : p->items) ct_free(e.t);
    delete p;
    live--;
}
ct_tensor *ct_params_add(ct_params *p, const char *name, ct_tensor *init) {
    return params_add(p, name, init, false);
}
ct_tensor *ct_params_add_buffer(ct_params *p, const char *name, ct_tensor *init) {
    return params_add(p, name, init, true);
}
int ct_params_count(const ct_params *p) {
    if (!p) return getter_null("ct_params_count", "set"), 0;
    return (int)p->items.size();
}
// The entry i of p, or nullptr and a message naming op.
static const ct_params::entry *params_entry(const ct_params *p, int i, const char *op) {
    if (!p) return getter_null(op, "set"), nullptr;
    if (i < 0 || i >= (int)p->items.size()) {
        ct_set_error("%s: index %d out of range for a set of %d", op, i, (int)p->items.size());
        return nullptr;
    }
    return &p->items[i];
}
ct_tensor *ct_params_at(const ct_params *p, int i) {
    const ct_params::entry *e = params_entry(p, i, "ct_params_at");
    return e ? e->t : nullptr;
}
const char *ct_params_name(const ct_params *p, int i) {
    const ct_params::entry *e = params_entry(p, i, "ct_params_name");
    return e ? e->name.c_str() : nullptr;
}
bool ct_params_is_buffer(const ct_params *p, int i) {
    const ct_params::entry *e = params_entry(p, i, "ct_params_is_buffer");
    return e && e->buffer;
}
ct_tensor *ct_params_find(const ct_params *p, const char *name) {
    if (!p) return getter_null("ct_params_find", "set"), nullptr;
    if (!name) return getter_null("ct_params_find", "name"), nullptr;
    auto it = p->index.find(name);
    if (it == p->index.end()) {
        ct_set_error("ct_params_find: no parameter or buffer '%s' in a set of %d", name,
                     (int)p->items.size());
        return nullptr;
    }
    return p->items[it->second].t;
}
int64_t ct_params_numel(const ct_params *p) {
    if (!p) return getter_null("ct_params_numel", "set"), 0;
    int64_t n = 0;
    for (auto &e : p->items)
        if (!e.buffer) n += e.t->t.numel();
    return n;
}
void ct_params_zero_grad(ct_params *p) {
    if (!p) return;
    for (auto &e : p->items)
        if (!e.buffer) e.t->t.mutable_grad().reset();
}
double ct_params_clip_grad_norm(ct_params *p, double max_norm) {
    if (!p) return null_input("ct_params_clip_grad_norm"), NAN;
    try {
        c10::NoGradGuard ng;
        std::vector<at::Tensor> grads;
        for (auto &e : p->items)
            if (!e.buffer && e.t->t.grad().defined()) grads.push_back(e.t->t.grad());
        double total = std::sqrt(grad_sum_squares(grads));
        if (!std::isfinite(total)) return NAN;
        if (max_norm > 0 && total > max_norm) {
            double scale = max_norm / (total + 1e-6);
            for (auto &g : grads) g.mul_(scale);
        }
        return total;
    } catch (const std::exception &e) {
        set_error("ct_params_clip_grad_norm", e.what());
        return NAN;
    }
}
void ct_params_set_trainable(ct_params *p, bool on) {
    if (!p) return;
    for (auto &e : p->items)
        if (!e.buffer) e.t->t.requires_grad_(on);
}
ct_status ct_params_to_device(ct_params *p, ct_device d) {
    if (!p) return null_input("ct_params_to_device"), CT_ERR_ARG;
    if (!check_device("ct_params_to_device", d)) return CT_ERR_ARG;
    return guard_status("ct_params_to_device", [&] {
        at::Device dev = to_device(d);
        // all copies first: a failure half-way (out of memory) leaves the set as it was
        std::vector<at::Tensor> moved(p->items.size());
        for (size_t i = 0; i < p->items.size(); i++) {
            const at::Tensor &t = p->items[i].t->t;
            if (t.device() == dev) continue;  // stays, gradient and all
            moved[i] = t.detach().to(dev).requires_grad_(t.requires_grad());
            if (t.grad().defined()) moved[i].mutable_grad() = t.grad().to(dev);
        }
        for (size_t i = 0; i < p->items.size(); i++)
            if (moved[i].defined()) p->items[i].t->t = moved[i];
        return CT_OK;
    });
}
ct_status ct_params_copy_values(ct_params *dst, const ct_params *src) {
    if (!dst || !src) return null_input("ct_params_copy_values"), CT_ERR_ARG;
    for (auto &e : dst->items) {
        ct_tensor *s = ct_params_find(src, e.name.c_str());
        if (!s || s->t.sizes() != e.t->t.sizes()) {
            ct_set_error("ct_params_copy_values: '%s' missing or of another shape", e.name.c_str());
            return CT_ERR_ARG;
        }
    }
    return guard_status("ct_params_copy_values", [&] {
        c10::NoGradGuard ng;
        for (auto &e : dst->items) e.t->t.copy_(ct_params_find(src, e.name.c_str())->t);
        return CT_OK;
    });
}
ct_params *ct_params_clone(const ct_params *p) {
    if (!p) return null_input("ct_params_clone"), nullptr;
    ct_params *e = ct_params_new();
    bool prev = ct_set_grad_enabled(false);
    for (auto &it : p->items) {
        ct_tensor *copy = ct_unscope(ct_clone(it.t));
        if (!(it.buffer ? ct_params_add_buffer(e, it.name.c_str(), copy)
                        : ct_params_add(e, it.name.c_str(), copy))) {
            ct_params_free(e);
            e = nullptr;
            break;
        }
    }
    ct_set_grad_enabled(prev);
    return e;
}
ct_status ct_params_ema_update(ct_params *ema, const ct_params *src, double decay) {
    if (!ema || !src) return null_input("ct_params_ema_update"), CT_ERR_ARG;
    if (!(decay >= 0 && decay <= 1)) {
        ct_set_error("ct_params_ema_update: decay %g outside [0, 1]", decay);
        return CT_ERR_ARG;
    }
    // Everything checked before anything changes.
    for (auto &e : ema->items) {
        auto it = src->index.find(e.name);
        if (it == src->index.end()) {
            ct_set_error("ct_params_ema_update: '%s' is in the average but not in the source",
                         e.name.c_str());
            return CT_ERR_ARG;
        }
        const ct_params::entry &s = src->items[it->second];
        if (s.t->t.sizes() != e.t->t.sizes() || s.t->t.scalar_type() != e.t->t.scalar_type() ||
            s.buffer != e.buffer) {
            char want[128], got[128];
            ct_describe(e.t, want, sizeof want);
            ct_describe(s.t, got, sizeof got);
            ct_set_error("ct_params_ema_update: '%s' is a %s %s in the average, a %s %s in the "
                         "source", e.name.c_str(), want, e.buffer ? "buffer" : "parameter", got,
                         s.buffer ? "buffer" : "parameter");
            return CT_ERR_ARG;
        }
    }
    for (auto &s : src->items)
        if (!ema->index.count(s.name)) {
            ct_set_error("ct_params_ema_update: '%s' is in the source but not in the average",
                         s.name.c_str());
            return CT_ERR_ARG;
        }
    return guard_status("ct_params_ema_update", [&] {
        c10::NoGradGuard ng;
        for (auto &e : ema->items) {
            at::Tensor s = src->items[src->index.at(e.name)].t->t.to(e.t->t.device());
            if (e.buffer)
                e.t->t.copy_(s);
            else
                e.t->t.mul_(decay).add_(s, 1 - decay);
        }
        return CT_OK;
    });
}
ct_status ct_params_put(const ct_params *p, ct_archive *a, const char *prefix) {
    if (!p || !a) return null_input("ct_params_put"), CT_ERR_ARG;
    std::string pre = prefix ? prefix : "";
    for (auto &e : p->items) {
        ct_status st = ct_archive_put(a, (pre + e.name).c_str(), e.t);
        if (st) return st;
    }
    return CT_OK;
}
ct_status ct_params_get(ct_params *p, const ct_archive *a, const char *prefix) {
    if (!p || !a) return null_input("ct_params_get"), CT_ERR_ARG;
    std::string pre = prefix ? prefix : "";
    // Check everything first: a failed load changes nothing.
    for (auto &e : p->items) {
        std::string key = pre + e.name;
        auto it = a->index.find(key);
        if (it == a->index.end()) {
            ct_set_error("missing parameter '%s'", key.c_str());
            return CT_ERR_FORMAT;
        }
        const at::Tensor &s = a->entries[it->second].second;
        if (s.sizes() != e.t->t.sizes() || s.scalar_type() != e.t->t.scalar_type()) {
            char want[128], got[128];
            ct_describe(e.t, want, sizeof want);
            ct_tensor tmp{s, nullptr, 0};
            ct_describe(&tmp, got, sizeof got);
            ct_set_error("parameter '%s' is %s in the file, %s in the model", key.c_str(), got,
                         want);
            return CT_ERR_FORMAT;
        }
    }
    return guard_status("ct_params_get", [&] {
        c10::NoGradGuard ng;
        for (auto &e : p->items) e.t->t.copy_(a->entries[a->index.at(pre + e.name)].second);
        return CT_OK;
    });
}
ct_status ct_params_save(const ct_params *p, const char *path) {
    if (!p || !path) return null_input("ct_params_save"), CT_ERR_ARG;
    return save_file(path, [&](ct_archive *a) { return ct_params_put(p, a, ""); });
}
ct_status ct_params_load(ct_params *p, const char *path) {
    if (!p || !path) return null_input("ct_params_load"), CT_ERR_ARG;
    return load_file(path, [&](const ct_archive *a) { return ct_params_get(p, a, ""); });
}

}  // extern "C"

/* ---- optimizers ----------------------------------------------------------------- */
struct ct_optim {
    struct state {
        at::Tensor exp_avg, exp_avg_sq;
        int64_t step = 0;
    };
    struct group {
        std::vector<ct_tensor *> params;  // borrowed from the sets
        std::vector<state> st;
        ct_adam_opts o;
    };
    ct_optim_kind kind;
    std::vector<group> groups;
    int64_t steps = 0;
};

extern "C" {

ct_adam_opts ct_adam_defaults(void) { return {1e-3, 0.9, 0.999, 1e-8, 0.0}; }

ct_optim *ct_optim_new(ct_optim_kind kind) {
    if (kind < 0 || kind >= CT_OPTIM_KIND_COUNT) {
        ct_set_error("ct_optim_new: unknown optimizer kind %d", (int)kind);
        return nullptr;
    }
    live++;
    auto *o = new ct_optim();
    o->kind = kind;
    return o;
}
void ct_optim_free(ct_optim *o) {
    if (!o) return;
    delete o;
    live--;
}
int ct_optim_add_group(ct_optim *o, const ct_params *p, ct_adam_opts opts) {
    if (!o || !p) return null_input("ct_optim_add_group"), -1;
    // The checks of torch.optim.Adam (negated, so that NaN fails them too).
    const char *bad = !(opts.lr >= 0) ? "lr" : !(opts.eps >= 0) ? "eps"
                    : !(opts.beta1 >= 0 && opts.beta1 < 1) ? "beta1"
                    : !(opts.beta2 >= 0 && opts.beta2 < 1) ? "beta2"
                    : !(opts.weight_decay >= 0) ? "weight_decay" : nullptr;
    if (bad) {
        ct_set_error("ct_optim_add_group: invalid %s (lr %g, betas (%g, %g), eps %g, "
                     "weight decay %g)", bad, opts.lr, opts.beta1, opts.beta2, opts.eps,
                     opts.weight_decay);
        return -1;
    }
    ct_optim::group g;
    g.o = opts;
    for (auto &e : p->items)
        if (!e.buffer) g.params.push_back(e.t);
    g.st.resize(g.params.size());
    o->groups.push_back(std::move(g));
    return (int)o->groups.size() - 1;
}
int ct_optim_groups(const ct_optim *o) {
    if (!o) return getter_null("ct_optim_groups", "optimizer"), 0;
    return (int)o->groups.size();
}
ct_status ct_optim_set_lr(ct_optim *o, int group, double lr) {
    if (!o) return null_input("ct_optim_set_lr"), CT_ERR_ARG;
    if (group < -1 || group >= (int)o->groups.size()) {
        ct_set_error("ct_optim_set_lr: no group %d", group);
        return CT_ERR_ARG;
    }
    for (int i = 0; i < (int)o->groups.size(); i++)
        if (group < 0 || i == group) o->groups[i].o.lr = lr;
    return CT_OK;
}
double ct_optim_get_lr(const ct_optim *o, int group) {
    if (!o) return getter_null("ct_optim_get_lr", "optimizer"), NAN;
    if (group < 0 || group >= (int)o->groups.size()) {
        ct_set_error("ct_optim_get_lr: no group %d (the optimizer has %d)", group,
                     (int)o->groups.size());
        return NAN;
    }
    return o->groups[group].o.lr;
}
int64_t ct_optim_steps_taken(const ct_optim *o) {
    if (!o) return getter_null("ct_optim_steps_taken", "optimizer"), 0;
    return o->steps;
}
ct_status ct_optim_to_device(ct_optim *o, ct_device d) {
    if (!o) return null_input("ct_optim_to_device"), CT_ERR_ARG;
    if (!check_device("ct_optim_to_device", d)) return CT_ERR_ARG;
    return guard_status("ct_optim_to_device", [&] {
        at::Device dev = to_device(d);
        std::vector<std::pair<ct_optim::state *, ct_optim::state>> moved;
        for (auto &g : o->groups)
            for (auto &s : g.st)
                if (s.exp_avg.defined() && s.exp_avg.device() != dev)
                    moved.push_back({&s, {s.exp_avg.to(dev), s.exp_avg_sq.to(dev), s.step}});
        for (auto &m : moved) *m.first = m.second;  // all or nothing
        return CT_OK;
    });
}
void ct_optim_zero_grad(ct_optim *o) {
    if (!o) return;
    for (auto &g : o->groups)
        for (ct_tensor *p : g.params) p->t.mutable_grad().reset();
}

}  // extern "C"

// Can the fused kernel update this parameter in place?
static bool fusable(const at::Tensor &p, const at::Tensor &g, const at::Tensor &m) {
    auto st = p.scalar_type();
    return p.device().is_cpu() && (st == at::kFloat || st == at::kDouble) &&
           g.scalar_type() == st && p.is_contiguous() && g.is_contiguous() &&
           m.is_contiguous() && g.device().is_cpu();
}

// One Adam/AdamW step of every parameter with a gradient, gradients scaled by scale.
static ct_status optim_update(ct_optim *o, double scale) {
    c10::NoGradGuard ng;
    for (auto &g : o->groups) {
        const ct_adam_opts &h = g.o;
        for (size_t i = 0; i < g.params.size(); i++) {
            at::Tensor &param = g.params[i]->t;
            if (!param.grad().defined()) continue;
            at::Tensor grad = param.grad();
            auto &s = g.st[i];
            if (!s.exp_avg.defined()) {
                s.exp_avg = at::zeros_like(param, at::MemoryFormat::Contiguous);
                s.exp_avg_sq = at::zeros_like(param, at::MemoryFormat::Contiguous);
            } else if (s.exp_avg.device() != param.device()) {
                // the set moved (ct_params_to_device): the moments follow it
                s.exp_avg = s.exp_avg.to(param.device());
                s.exp_avg_sq = s.exp_avg_sq.to(param.device());
            }
            s.step++;
            double bc1 = 1 - std::pow(h.beta1, (double)s.step);
            double bc2 = 1 - std::pow(h.beta2, (double)s.step);
            if (fusable(param, grad, s.exp_avg)) {
                ct::adam_step k = {h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, bc1, bc2,
                                   scale, o->kind == CT_ADAMW};
                if (param.scalar_type() == at::kFloat)
                    ct::fused_adam(param.data_ptr<float>(), grad.data_ptr<float>(),
                                   s.exp_avg.data_ptr<float>(), s.exp_avg_sq.data_ptr<float>(),
                                   param.numel(), k);
                else
                    ct::fused_adam(param.data_ptr<double>(), grad.data_ptr<double>(),
                                   s.exp_avg.data_ptr<double>(), s.exp_avg_sq.data_ptr<double>(),
                                   param.numel(), k);
                continue;
            }
            // any other device or layout: torch.optim.Adam's single-tensor arithmetic
            if (scale != 1) grad = grad * scale;
            if (h.weight_decay != 0) {
                if (o->kind == CT_ADAMW)
                    param.mul_(1 - h.lr * h.weight_decay);
                else
                    grad = grad.add(param, h.weight_decay);
            }
            s.exp_avg.mul_(h.beta1).add_(grad, 1 - h.beta1);
            s.exp_avg_sq.mul_(h.beta2).addcmul_(grad, grad, 1 - h.beta2);
            at::Tensor denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(h.eps);
            param.addcdiv_(s.exp_avg, denom, -h.lr / bc1);
        }
    }
    o->steps++;
    return CT_OK;
}

extern "C" {

ct_status ct_optim_step(ct_optim *o) {
    if (!o) return null_input("ct_optim_step"), CT_ERR_ARG;
    return guard_status("ct_optim_step", [&] { return optim_update(o, 1.0); });
}

ct_status ct_optim_step_clipped(ct_optim *o, double max_norm, double *grad_norm) {
    if (!o) return null_input("ct_optim_step_clipped"), CT_ERR_ARG;
    return guard_status("ct_optim_step_clipped", [&] {
        std::vector<at::Tensor> grads;
        for (auto &g : o->groups)
            for (ct_tensor *p : g.params)
                if (p->t.grad().defined()) grads.push_back(p->t.grad());
        double norm = std::sqrt(grad_sum_squares(grads));
        if (grad_norm) *grad_norm = norm;
        if (!std::isfinite(norm)) return CT_OK;  // no update: the caller skips the step
        double scale = max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
        return optim_update(o, scale);
    });
}

ct_status ct_optim_put(const ct_optim *o, ct_archive *a, const char *prefix) {
    if (!o || !a) return null_input("ct_optim_put"), CT_ERR_ARG;
    std::string pre = prefix ? prefix : "";
    ct_status st = ct_archive_put_i64(a, (pre + "steps").c_str(), o->steps);
    for (size_t gi = 0; !st && gi < o->groups.size(); gi++) {
        const auto &g = o->groups[gi];
        std::string gp = pre + "g" + std::to_string(gi) + ".";
        st = ct_archive_put_f64(a, (gp + "lr").c_str(), g.o.lr);
        for (size_t i = 0; !st && i < g.params.size(); i++) {
            const auto &s = g.st[i];
            if (!s.exp_avg.defined()) continue;
            std::string pp = gp + "p" + std::to_string(i) + ".";
            ct_tensor m{s.exp_avg, nullptr, 0}, v{s.exp_avg_sq, nullptr, 0};
            st = ct_archive_put(a, (pp + "exp_avg").c_str(), &m);
            if (!st) st = ct_archive_put(a, (pp + "exp_avg_sq").c_str(), &v);
            if (!st) st = ct_archive_put_i64(a, (pp + "step").c_str(), s.step);
        }
    }
    return st;
}

ct_status ct_optim_get(ct_optim *o, const ct_archive *a, const char *prefix) {
    if (!o || !a) return null_input("ct_optim_get"), CT_ERR_ARG;
    std::string pre = prefix ? prefix : "";
    auto get = [&](const std::string &k) -> const at::Tensor * {
        auto it = a->index.find(k);
        return it == a->index.end() ? nullptr : &a->entries[it->second].second;
    };
    // Validate everything before changing anything.
    if (!get(pre + "steps")) {
        ct_set_error("optimizer state '%ssteps' missing", pre.c_str());
        return CT_ERR_FORMAT;
    }
    for (size_t gi = 0; gi < o->groups.size(); gi++) {
        const auto &g = o->groups[gi];
        std::string gp = pre + "g" + std::to_string(gi) + ".";
        if (!get(gp + "lr")) {
            ct_set_error("optimizer state '%slr' missing", gp.c_str());
            return CT_ERR_FORMAT;
        }
        for (size_t i = 0; i < g.params.size(); i++) {
            std::string pp = gp + "p" + std::to_string(i) + ".";
            const at::Tensor *m = get(pp + "exp_avg"), *v = get(pp + "exp_avg_sq");
            if (!m) continue;
            const at::Tensor &param = g.params[i]->t;
            if (!v || !get(pp + "step") || m->sizes() != param.sizes() ||
                v->sizes() != param.sizes() || m->scalar_type() != param.scalar_type() ||
                v->scalar_type() != param.scalar_type()) {
                ct_set_error("optimizer state '%s*' does not fit the model", pp.c_str());
                return CT_ERR_FORMAT;
            }
        }
        std::string more = gp + "p" + std::to_string(g.params.size()) + ".exp_avg";
        if (get(more)) {
            ct_set_error("optimizer state has more parameters than group %zu ('%s')", gi,
                         more.c_str());
            return CT_ERR_FORMAT;
        }
    }
    std::string extra = pre + "g" + std::to_string(o->groups.size()) + ".lr";
    if (get(extra)) {
        ct_set_error("optimizer state has more groups than the optimizer ('%s')", extra.c_str());
        return CT_ERR_FORMAT;
    }
    return guard_status("ct_optim_get", [&] {
        o->steps = get(pre + "steps")->item<int64_t>();
        for (size_t gi = 0; gi < o->groups.size(); gi++) {
            auto &g = o->groups[gi];
            std::string gp = pre + "g" + std::to_string(gi) + ".";
            g.o.lr = get(gp + "lr")->item<double>();
            for (size_t i = 0; i < g.params.size(); i++) {
                std::string pp = gp + "p" + std::to_string(i) + ".";
                auto &s = g.st[i];
                const at::Tensor *m = get(pp + "exp_avg");
                if (!m) {
                    s = ct_optim::state();
                    continue;
                }
                at::Device dev = g.params[i]->t.device();
                s.exp_avg = m->clone().to(dev);
                s.exp_avg_sq = get(pp + "exp_avg_sq")->clone().to(dev);
                s.step = get(pp + "step")->item<int64_t>();
            }
        }
        return CT_OK;
    });
}

ct_status ct_optim_save(const ct_optim *o, const char *path) {
    if (!o || !path) return null_input("ct_optim_save"), CT_ERR_ARG;
    return save_file(path, [&](ct_archive *a) { return ct_optim_put(o, a, ""); });
}
ct_status ct_optim_load(ct_optim *o, const char *path) {
    if (!o || !path) return null_input("ct_optim_load"), CT_ERR_ARG;
    return load_file(path, [&](const ct_archive *a) { return ct_optim_get(o, a, ""); });
}

}  // extern "C"
