/* FM: conditional flow matching on the points u of the latent (Lipman et al. 2023) on the
 * linear (OT) path x_t = (1 − t) x_0 + t x_1 from x_0 ~ N(0, I) to the data x_1 = u: a
 * velocity network v_θ(x_t, t, z) trained with E_{t, x_0} ‖v_θ(x_t, t, z) − (x_1 − x_0)‖²
 * (t uniform in [0, 1], mean over the elements), sampled by integrating dx/dt = v_θ from
 * t = 0 to 1 with Euler or midpoint steps. The fiber-loss term backpropagates through
 * the solver (the last fm.grad_steps of its steps), with fm.checkpoint each of those
 * steps recomputed in the backward pass instead of kept (ct_checkpoint). */
#include <stdlib.h>
#include <string.h>

#include "architectures/timenet.h"
#include "core/log.h"
#include "trainers/diffusion.h"
#include "trainers/family.h"

const fl_key fl_keys_fm[] = {
    FL_TIMENET_KEYS("fm"),
    {"fm.solver", FL_KEY_STR, "\"midpoint\"", FL_NO_BOUNDS, "euler|midpoint",
     "ODE solver of the sampler: Euler (one network call a step) or midpoint (two, second order)."},
    {"fm.steps", FL_KEY_INT, "20", 1, 100000, NULL,
     "Solver steps of the sampler when no other number is asked for (train.fiber_steps or "
     "eval.steps 0)."},
    {"fm.grad_steps", FL_KEY_INT, "0", 0, 100000, NULL,
     "Solver steps the fiber-loss term backpropagates through: the last k (the earlier "
     "ones run without a graph); 0: all."},
    {"fm.checkpoint", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "Activation checkpointing of the fiber-loss sampler: each differentiated step keeps only "
     "its input in the graph and runs again in the backward pass (less memory; its network "
     "calls run twice); the same gradient."},
    FL_KEYS_END,
};

struct fl_fm {
    fl_timenet net;
    int dim, steps, grad_steps;
    bool checkpoint;
    fl_ode_solver solver;
};

int fl_ode_solver_parse(const char *name)
{
    if (strcmp(name, "euler") == 0) return FL_ODE_EULER;
    if (strcmp(name, "midpoint") == 0) return FL_ODE_MIDPOINT;
    return -1;
}

ct_tensor *fl_ode_step(fl_velocity_fn v, void *ctx, const ct_tensor *x, const ct_tensor *z,
                       double t, double dt, fl_ode_solver solver)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *k1 = v(ctx, x, t, z);                                              /* (B, D) */
    ct_tensor *y = solver == FL_ODE_MIDPOINT
                       ? ct_axpy(x, dt, v(ctx, ct_axpy(x, dt / 2, k1), t + dt / 2, z))
                       : ct_axpy(x, dt, k1);                                      /* (B, D) */
    ct_tensor *r = ct_scope_keep(s, y);
    ct_scope_end(s);
    return r;
}

/* A step as ct_checkpoint runs it: inputs x and, when there are conditions, z. */
typedef struct {
    fl_velocity_fn v;
    void *ctx;
    double t, dt;
    fl_ode_solver solver;
} ode_step_args;

static ct_tensor *ode_step_fn(const void *ctx, const ct_tensor *const *in, int n)
{
    const ode_step_args *a = ctx;
    return fl_ode_step(a->v, a->ctx, in[0], n > 1 ? in[1] : NULL, a->t, a->dt, a->solver);
}

ct_tensor *fl_ode_solve(fl_velocity_fn v, void *ctx, const ct_tensor *x0, const ct_tensor *z,
                        const fl_ode_opts *o)
{
    int n = o->steps;
    if (n < 1) return fl_fail("ODE solver: %d steps", n), NULL;
    bool grad = ct_grad_enabled();
    int k = o->grad_steps > 0 && o->grad_steps < n ? o->grad_steps : n;
    double dt = (o->t1 - o->t0) / n;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *x = x0;                                                       /* (B, D) */
    for (int i = 0; i < n && x; i++) {
        ct_set_grad_enabled(grad && i >= n - k);   /* steps 0 … n−k−1 without a graph */
        ct_tensor *y;
        if (o->checkpoint) {
            ode_step_args a = {v, ctx, o->t0 + i * dt, dt, o->solver};
            const ct_tensor *in[2] = {x, z};
            y = ct_checkpoint(ode_step_fn, &a, sizeof a, in, z ? 2 : 1);
        } else {
            y = fl_ode_step(v, ctx, x, z, o->t0 + i * dt, dt, o->solver);
        }
        if (x != x0) ct_free((ct_tensor *)x);
        x = y;
    }
    ct_set_grad_enabled(grad);
    ct_tensor *r = ct_scope_keep(s, (ct_tensor *)x);
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_fm_velocity(void *ctx, const ct_tensor *x, double t, const ct_tensor *z)
{
    fl_fm *m = ctx;
    ct_scope *s = ct_scope_begin();
    ct_tensor *tt = ct_full(CT_SHAPE(ct_size(x, 0), 1), t, ct_dtype_of(x));          /* (B, 1) */
    ct_tensor *r = ct_scope_keep(s, fl_timenet_forward(&m->net, x, tt, z));          /* (B, D) */
    ct_scope_end(s);
    return r;
}

static int fm_check(const fl_config *c, int u_dim, int z_dim)
{
    (void)u_dim, (void)z_dim;
    int64_t blocks = fl_cfg_int(c, "fm.blocks"), layers = fl_cfg_int(c, "fm.layers");
    if ((blocks > 0 ? blocks * layers : layers) > FL_MLP_MAX)
        return fl_fail("fm.blocks: %lld blocks of %lld layers, at most %d layers in all",
                       (long long)blocks, (long long)layers, FL_MLP_MAX);
    if (fl_cfg_int(c, "fm.time_embed") % 2)
        return fl_fail("fm.time_embed: %lld is odd (sin and cos pairs)",
                       (long long)fl_cfg_int(c, "fm.time_embed"));
    int fiber_steps = (int)fl_cfg_int(c, "train.fiber_steps");
    int train_steps = fiber_steps > 0 ? fiber_steps : (int)fl_cfg_int(c, "fm.steps");
    int k = (int)fl_cfg_int(c, "fm.grad_steps");
    if (k > train_steps)
        return fl_fail("fm.grad_steps: %d, more than the %d steps of the fiber-loss sampler "
                       "(train.fiber_steps, or fm.steps when it is 0)", k, train_steps);
    return 0;
}

static void *fm_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    fl_fm *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    m->dim = u_dim;
    m->steps = (int)fl_cfg_int(c, "fm.steps");
    m->grad_steps = (int)fl_cfg_int(c, "fm.grad_steps");
    m->checkpoint = fl_cfg_bool(c, "fm.checkpoint");
    m->solver = (fl_ode_solver)fl_ode_solver_parse(fl_cfg_str(c, "fm.solver"));
    fl_timenet_spec s = {.dim = u_dim,
                         .cond_dim = z_dim,
                         .embed = (int)fl_cfg_int(c, "fm.time_embed"),
                         .hidden = (int)fl_cfg_int(c, "fm.hidden"),
                         .n_blocks = (int)fl_cfg_int(c, "fm.blocks"),
                         .n_layers = (int)fl_cfg_int(c, "fm.layers"),
                         .act = fl_act_parse(fl_cfg_str(c, "fm.activation"))};
    if (fl_timenet_init(&m->net, ps, "fm.v", &s, g)) {
        fl_fail_ctx("fm network");
        free(m);
        return NULL;
    }
    return m;
}

static void fm_destroy(void *model) { free(model); }

/* t ~ U[0, 1], x_0 ~ N(0, I), x_t = x_0 + t (x_1 − x_0): MSE between v_θ(x_t, t, z) and
 * x_1 − x_0. */
static ct_tensor *fm_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                          fl_terms *terms)
{
    fl_fm *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *x0 = ct_randn_like(u, g);                                          /* (B, D) */
    ct_tensor *t = ct_rand(CT_SHAPE(ct_size(u, 0), 1), ct_dtype_of(u), g);        /* (B, 1) */
    ct_tensor *target = ct_sub(u, x0);                                            /* (B, D) */
    ct_tensor *x_t = ct_add(x0, ct_mul(t, target));                               /* (B, D) */
    ct_tensor *loss = ct_scope_keep(s, ct_mse(fl_timenet_forward(&m->net, x_t, t, z), target));
    ct_scope_end(s);
    if (loss && terms) fl_terms_add(terms, "mse", ct_item(loss));
    return loss;
}

/* x(1) from x(0) = temperature · ε with o->steps or fm.steps; the graph through the last
 * fm.grad_steps steps (checkpointed with fm.checkpoint) when o->keep_graph. */
static ct_tensor *fm_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    fl_fm *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *x0 = ct_muls(ct_randn(CT_SHAPE(ct_size(z, 0), m->dim), ct_dtype_of(z), g),
                            o->temperature);                                      /* (B, D) */
    fl_ode_opts d = {.solver = m->solver,
                     .steps = o->steps > 0 ? o->steps : m->steps,
                     .grad_steps = o->keep_graph ? m->grad_steps : 0,
                     .checkpoint = o->keep_graph && m->checkpoint,
                     .t0 = 0,
                     .t1 = 1};
    ct_tensor *u = ct_scope_keep(s, fl_ode_solve(fl_fm_velocity, m, x0, z, &d));
    ct_scope_end(s);
    return u;
}

const fl_family fl_family_fm = {
    .name = "fm",
    .summary = "conditional flow matching (linear path, Euler/midpoint ODE sampling)",
    .keys = fl_keys_fm,
    .space = FL_SPACE_LATENT,
    .check = fm_check,
    .create = fm_create,
    .destroy = fm_destroy,
    .loss = fm_loss,
    .sample = fm_sample,
};
