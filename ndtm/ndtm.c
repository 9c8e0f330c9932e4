/* The NDTM sampler: settings, γ_t and learning-rate schedules, terminal targets, the
 * inner optimisation of the control, the guided DDIM loop, refinement and the
 * evaluation's sampler. */
#include "ndtm/ndtm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fiber.h"
#include "core/log.h"

const fl_key fl_keys_ndtm[] = {
    {"ndtm.steps", FL_KEY_INT, "100", 1, 100000, NULL,
     "DDIM steps of the guided sampler, t = T − T/S, …, 0 in the authors' 0-based numbering "
     "(the authors: 100, t = 990 … 0); at most prior.T."},
    {"ndtm.inner", FL_KEY_INT, "6", 0, 10000, NULL,
     "Adam steps N on the control u at each DDIM step (the authors: 6); 0: plain DDIM."},
    {"ndtm.u_lr", FL_KEY_NUM, "0.002", 0, 100, NULL,
     "Adam's learning rate on u at the first DDIM step, decaying linearly: u_lr (1 − i/S) at "
     "step i = 0 … S−1 (the authors: 0.002)."},
    {"ndtm.w_score", FL_KEY_NUM, "0", 0, 1e9, NULL,
     "Weight of the score cost ‖ε(x_t) − ε(x_t + γ_t u)‖² (the authors: 0)."},
    {"ndtm.w_control", FL_KEY_NUM, "3e-4", 0, 1e9, NULL,
     "Weight of the control cost ‖γ_t u‖² (the authors: 3e-4)."},
    {"ndtm.w_terminal", FL_KEY_NUM, "1", 0, 1e9, NULL,
     "Weight of the terminal cost ‖z* − f(x̂0)‖ (the authors: 1)."},
    {"ndtm.squared", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "Square the terminal cost's norm (as the NDTM paper's own code; the authors of the fiber "
     "paper: not squared)."},
    {"ndtm.eta", FL_KEY_NUM, "0.25", 0, 1, NULL, "DDIM η of the guided sampler (the authors: 0.25)."},
    {"ndtm.variance", FL_KEY_STR, "\"ddim\"", FL_NO_BOUNDS, "ddim|large",
     "The fresh noise's scale: ddim, σ = η √((1 − ᾱ_s)/(1 − ᾱ_t) (1 − ᾱ_t/ᾱ_s)) (DESIGN.md §4's "
     "c1); large, σ = η √(1 − ᾱ_t/ᾱ_s)."},
    {"ndtm.gamma_schedule", FL_KEY_STR, "\"cosine\"", FL_NO_BOUNDS, "zero|cosine|constant",
     "γ_t: zero (no guidance: plain DDIM), cosine (0 for t > ndtm.ramp_start, a cosine ramp "
     "to ndtm.gamma at ndtm.ramp_end, then ndtm.gamma; the authors'), constant. The inner loop "
     "is skipped while γ_t = 0."},
    {"ndtm.gamma", FL_KEY_NUM, "1", 0, 1e6, NULL, "γ, the largest weight of the control in x_t + γ_t u."},
    {"ndtm.ramp_start", FL_KEY_INT, "500", 0, 100000, NULL,
     "Time t (0-based) where the cosine γ_t leaves 0 (the authors: 500)."},
    {"ndtm.ramp_end", FL_KEY_INT, "300", 0, 100000, NULL,
     "Time t where the cosine γ_t reaches ndtm.gamma (the authors: 300); below ndtm.ramp_start."},
    {"ndtm.target", FL_KEY_STR, "\"static\"", FL_NO_BOUNDS, "static|renoised",
     "Terminal target: static, z* = f(x̃*); renoised, f of the Tweedie estimate of the "
     "target re-noised to the current t (the paper's §3.2; for the latent prior the target's "
     "VAE latent is noised)."},
    {"ndtm.batch", FL_KEY_INT, "500", 1, 1e6, NULL, "Samples guided at once (the authors: 500)."},
    {"ndtm.refine_steps", FL_KEY_INT, "100", 1, 100000, NULL,
     "Adam steps of the refinement of fiberlab ndtm --refine (the paper's appendix A: up to "
     "100)."},
    {"ndtm.refine_lr", FL_KEY_NUM, "0.05", 0, 100, NULL,
     "Adam's learning rate of the refinement (the paper: 0.05)."},
    {"ndtm.refine_space", FL_KEY_STR, "\"latent\"", FL_NO_BOUNDS, "latent|pixels",
     "What the refinement moves: latent, each sample's fiber-VAE latent (the paper's "
     "appendix A; a pixel prior's samples are encoded first), or pixels, the image itself "
     "(kept in [0, 1]) — to compare: it lowers the fiber loss without staying near the data."},
    FL_KEYS_END,
};

int fl_ndtm_opts_from_config(const fl_config *c, int T, fl_ndtm_opts *o)
{
    const char *g = fl_cfg_str(c, "ndtm.gamma_schedule");
    *o = (fl_ndtm_opts){
        .steps = (int)fl_cfg_int(c, "ndtm.steps"),
        .inner = (int)fl_cfg_int(c, "ndtm.inner"),
        .u_lr = fl_cfg_num(c, "ndtm.u_lr"),
        .w_score = fl_cfg_num(c, "ndtm.w_score"),
        .w_control = fl_cfg_num(c, "ndtm.w_control"),
        .w_terminal = fl_cfg_num(c, "ndtm.w_terminal"),
        .squared = fl_cfg_bool(c, "ndtm.squared"),
        .eta = fl_cfg_num(c, "ndtm.eta"),
        .large = strcmp(fl_cfg_str(c, "ndtm.variance"), "large") == 0,
        .gamma = strcmp(g, "zero") == 0 ? FL_GAMMA_ZERO : strcmp(g, "constant") == 0 ? FL_GAMMA_CONSTANT : FL_GAMMA_COSINE,
        .gamma_max = fl_cfg_num(c, "ndtm.gamma"),
        .ramp_start = (int)fl_cfg_int(c, "ndtm.ramp_start"),
        .ramp_end = (int)fl_cfg_int(c, "ndtm.ramp_end"),
        .target = strcmp(fl_cfg_str(c, "ndtm.target"), "renoised") == 0 ? FL_TARGET_RENOISED : FL_TARGET_STATIC,
        .batch = (int)fl_cfg_int(c, "ndtm.batch"),
        .refine_steps = 0,
        .refine_lr = fl_cfg_num(c, "ndtm.refine_lr"),
        .refine_pixels = strcmp(fl_cfg_str(c, "ndtm.refine_space"), "pixels") == 0,
    };
    if (o->steps > T) return fl_fail("ndtm.steps: %d DDIM steps, more than the prior's T = %d", o->steps, T);
    if (o->gamma == FL_GAMMA_COSINE && o->ramp_end >= o->ramp_start)
        return fl_fail("ndtm.ramp_end: %d, not below ndtm.ramp_start = %d", o->ramp_end, o->ramp_start);
    return 0;
}

double fl_ndtm_gamma(const fl_ndtm_opts *o, int t)
{
    switch (o->gamma) {
    case FL_GAMMA_CONSTANT: return o->gamma_max;
    case FL_GAMMA_COSINE:
        if (t >= o->ramp_start) return 0;
        if (t <= o->ramp_end) return o->gamma_max;
        return o->gamma_max * 0.5 * (1 - cos(M_PI * (o->ramp_start - t) / (double)(o->ramp_start - o->ramp_end)));
    default: return 0;
    }
}

double fl_ndtm_lr(const fl_ndtm_opts *o, int i) { return o->u_lr * (1 - (double)i / o->steps); }

/* DDIM step i = 0 … S−1 runs from the leading grid's τ_{S−i} (1-based ᾱ index) down. */
int fl_ndtm_time(const fl_ndtm_opts *o, int T, int i)
{
    return i >= o->steps ? -1 : fl_ddim_tau(o->steps - i, o->steps, T, FL_DDIM_LEADING) - 1;
}

/* Tweedie's estimate (x − √(1 − ᾱ) ε)/√ᾱ, clamped as the prior says. The same ops as
 * the plain DDIM step (trainers/diff.c), so that γ = 0 reproduces it bit for bit. */
static ct_tensor *tweedie(const fl_ndtm_prior *p, const ct_tensor *x, const ct_tensor *eps, double a)
{
    ct_tensor *x0 = ct_muls(ct_axpy(x, -sqrt(1 - a), eps), 1 / sqrt(a));
    return p->clamp > 0 ? ct_clamp(x0, -p->clamp, p->clamp) : x0;
}

ct_tensor *fl_ndtm_target(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_target,
                          const ct_tensor *z_target, int t, const fl_ndtm_opts *o, ct_gen *g)
{
    if (o->target == FL_TARGET_STATIC) return ct_ref(z_target);
    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    double a = p->abar[t + 1];
    ct_tensor *x = p->encode(p->ctx, x_target);                                   /* (B, D) */
    ct_tensor *xt = ct_axpy(ct_muls(x, sqrt(a)), sqrt(1 - a), ct_randn_like(x, g));
    ct_tensor *eps = t >= 0 ? p->eps(p->eps_ctx, xt, t + 1) : ct_zeros_like(x);  /* (B, D) */
    ct_tensor *z = ct_scope_keep(s, fl_subject_forward(f, p->decode(p->ctx, tweedie(p, xt, eps, a))));
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    return z;
}

ct_tensor *fl_ndtm_cost(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_t, int t,
                        const ct_tensor *eps_t, const ct_tensor *u, const ct_tensor *z, double gamma,
                        const fl_ndtm_opts *o)
{
    ct_scope *s = ct_scope_begin();
    double a = p->abar[t + 1];
    ct_tensor *gu = ct_muls(u, gamma);                                            /* (B, D) */
    ct_tensor *x_c = ct_add(x_t, gu);
    ct_tensor *eps_c = p->eps(p->eps_ctx, x_c, t + 1);
    ct_tensor *zf = fl_subject_forward(f, p->decode(p->ctx, tweedie(p, x_c, eps_c, a)));  /* (B, d) */
    ct_tensor *term = ct_sum_dim(ct_square(ct_sub(z, zf)), 1, false);             /* (B,) */
    if (!o->squared) term = ct_sqrt(term);
    ct_tensor *c = ct_muls(term, o->w_terminal);
    if (o->w_control > 0) c = ct_axpy(c, o->w_control, ct_sum_dim(ct_square(gu), 1, false));
    if (o->w_score > 0)
        c = ct_axpy(c, o->w_score, ct_sum_dim(ct_square(ct_sub(eps_t, eps_c)), 1, false));
    ct_tensor *r = ct_scope_keep(s, c);
    ct_scope_end(s);
    return r;
}

/* Adam (torch.optim.Adam, β = (0.9, 0.999), ε = 1e-8) on the control, in place: state m, v,
 * step k ≥ 1. https://pytorch.org/docs/stable/generated/torch.optim.Adam.html */
static int adam_step(ct_tensor *u, ct_tensor *m, ct_tensor *v, const ct_tensor *grad, int k, double lr)
{
    const double b1 = 0.9, b2 = 0.999, e = 1e-8;
    ct_scope *s = ct_scope_begin();
    ct_tensor *m1 = ct_add(ct_muls(m, b1), ct_muls(grad, 1 - b1));
    ct_tensor *v1 = ct_add(ct_muls(v, b2), ct_muls(ct_square(grad), 1 - b2));
    ct_tensor *den = ct_adds(ct_muls(ct_sqrt(v1), 1 / sqrt(1 - pow(b2, k))), e);
    ct_tensor *u1 = ct_sub(u, ct_muls(ct_div(m1, den), lr / (1 - pow(b1, k))));
    int rc = !u1 || ct_copy_(m, m1) || ct_copy_(v, v1) || ct_copy_(u, u1) ? -1 : 0;
    ct_scope_end(s);
    return rc;
}

/* The optimised control u* (B, D) at x_t, time t, with γ. */
static ct_tensor *optimise_control(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_t, int t,
                                   const ct_tensor *z, double gamma, double lr, const fl_ndtm_opts *o)
{
    ct_scope *s = ct_scope_begin();
    ct_set_grad_enabled(false);
    /* the unguided ε(x_t) only where the score cost reads it (a UNet forward per step) */
    ct_tensor *eps_t = o->w_score > 0 ? p->eps(p->eps_ctx, x_t, t + 1) : NULL;  /* (B, D) */
    ct_tensor *u = ct_zeros_like(x_t), *m = ct_zeros_like(x_t), *v = ct_zeros_like(x_t);
    int rc = (eps_t || o->w_score <= 0) && u && m && v ? 0 : -1;
    for (int k = 1; k <= o->inner && !rc; k++) {
        ct_scope *si = ct_scope_begin();
        ct_set_grad_enabled(true);
        ct_tensor *leaf = ct_detach(u);
        ct_set_requires_grad(leaf, true);
        ct_tensor *c = ct_sum(fl_ndtm_cost(p, f, x_t, t, eps_t, leaf, z, gamma, o));  /* () */
        ct_tensor *grad = NULL;
        const ct_tensor *in[1] = {leaf};
        rc = !c || ct_grad((const ct_tensor *const *)&c, NULL, 1, in, 1, &grad, false, false, false) ? -1 : 0;
        ct_set_grad_enabled(false);
        if (!rc) {
            /* each sample's gradient to a norm of at most 1: g · min(1, 1/(‖g‖ + 1e-6)) */
            ct_tensor *n = ct_norm_dim(grad, 1, true);                            /* (B, 1) */
            ct_tensor *scale = ct_clamp(ct_reciprocal(ct_adds(n, 1e-6)), 0, 1);
            rc = adam_step(u, m, v, ct_mul(grad, scale), k, lr);
        }
        ct_free(grad);
        ct_scope_end(si);
    }
    ct_tensor *r = rc ? NULL : ct_scope_keep(s, u);
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_ndtm_sample(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_T,
                          const ct_tensor *x_target, const ct_tensor *z_target,
                          const fl_ndtm_opts *o, ct_gen *g)
{
    int T = p->T, S = o->steps;
    if (S < 1 || S > T) return fl_fail("ndtm.steps: %d, not in [1, T = %d]", S, T), NULL;
    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    const ct_tensor *x = x_T;                                                     /* (B, D) */
    for (int i = 0; i < S && x; i++) {
        ct_scope *si = ct_scope_begin();
        int t = fl_ndtm_time(o, T, i), sn = fl_ndtm_time(o, T, i + 1);
        double a = p->abar[t + 1], as = p->abar[sn + 1];
        double sigma = o->large ? o->eta * sqrt(1 - a / as) : fl_ddim_sigma(p->abar, t + 1, sn + 1, o->eta);
        ct_tensor *noise = sigma > 0 ? ct_randn_like(x, g) : NULL;   /* drawn first, as DDIM does */
        double gamma = fl_ndtm_gamma(o, t);
        const ct_tensor *x_c = x;
        if (gamma != 0 && o->inner > 0) {
            ct_tensor *z = fl_ndtm_target(p, f, x_target, z_target, t, o, g);
            ct_tensor *u = optimise_control(p, f, x, t, z, gamma, fl_ndtm_lr(o, i), o);
            x_c = u ? ct_axpy(x, gamma, u) : NULL;
        }
        ct_tensor *eps = x_c ? p->eps(p->eps_ctx, x_c, t + 1) : NULL;             /* (B, D) */
        ct_tensor *y = eps ? fl_ddim_update(p->abar, tweedie(p, x_c, eps, a), eps, sn + 1, sigma, noise) : NULL;
        y = ct_scope_keep(si, y);
        ct_scope_end(si);
        if (x != x_T) ct_free((ct_tensor *)x);
        x = y;
    }
    ct_tensor *r = ct_scope_keep(s, (ct_tensor *)x);
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    if (!r) fl_fail_ctx("ndtm");
    return r;
}

/* o->refine_steps Adam steps on x lowering the fiber loss of decode(ctx, x) against z;
 * clamp01: x is put back into [0, 1] after each step (pixels). */
static ct_tensor *refine(ct_tensor *(*decode)(void *, const ct_tensor *), void *ctx, fl_subject *f,
                         const ct_tensor *x, const ct_tensor *z, const fl_ndtm_opts *o, bool clamp01)
{
    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    ct_tensor *u = ct_clone(x), *m = ct_zeros_like(x), *v = ct_zeros_like(x);
    int rc = u && m && v ? 0 : -1;
    for (int k = 1; k <= o->refine_steps && !rc; k++) {
        ct_scope *si = ct_scope_begin();
        ct_set_grad_enabled(true);
        ct_tensor *leaf = ct_detach(u);
        ct_set_requires_grad(leaf, true);
        /* the sum of the per-sample fiber losses: each sample's gradient is its own */
        ct_tensor *c = ct_sum(fl_fiber_loss(fl_subject_forward(f, decode(ctx, leaf)), z));
        ct_tensor *grad = NULL;
        const ct_tensor *in[1] = {leaf};
        rc = !c || ct_grad((const ct_tensor *const *)&c, NULL, 1, in, 1, &grad, false, false, false) ? -1 : 0;
        ct_set_grad_enabled(false);
        if (!rc) rc = adam_step(u, m, v, grad, k, o->refine_lr);
        if (!rc && clamp01) rc = ct_copy_(u, ct_clamp(u, 0, 1)) ? -1 : 0;
        ct_free(grad);
        ct_scope_end(si);
    }
    ct_tensor *r = rc ? NULL : ct_scope_keep(s, u);
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    if (!r) fl_fail_ctx("ndtm: refinement");
    return r;
}

ct_tensor *fl_ndtm_refine(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x,
                          const ct_tensor *z, const fl_ndtm_opts *o)
{
    return refine(p->decode, p->ctx, f, x, z, o, false);
}

static ct_tensor *identity(void *ctx, const ct_tensor *x) { return (void)ctx, ct_ref(x); }
static ct_tensor *vae_decode(void *ctx, const ct_tensor *x) { return fl_vae_decode(ctx, x); }

ct_tensor *fl_ndtm_refine_images(fl_vae *vae, fl_subject *f, const ct_tensor *img,
                                 const ct_tensor *z, const fl_ndtm_opts *o)
{
    if (o->refine_pixels) return refine(identity, NULL, f, img, z, o, true);
    if (!vae) return fl_fail("ndtm.refine_space=latent: refining in the latent needs the fiber VAE"), NULL;
    ct_scope *s = ct_scope_begin();
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *lat = fl_vae_encode(vae, img);                                    /* (B, D) */
    ct_set_grad_enabled(prev);
    ct_tensor *r = lat ? refine(vae_decode, vae, f, lat, z, o, false) : NULL;
    prev = ct_set_grad_enabled(false);
    r = ct_scope_keep(s, r ? fl_vae_decode(vae, r) : NULL);                     /* (B, 3, 28, 28) */
    ct_set_grad_enabled(prev);
    ct_scope_end(s);
    return r;
}

/* ---- the priors of trainers/prior.h ----------------------------------------------------- */

static ct_tensor *prior_decode(void *ctx, const ct_tensor *x) { return fl_prior_decode(ctx, x); }
static ct_tensor *prior_encode(void *ctx, const ct_tensor *img) { return fl_prior_encode(ctx, img); }

fl_ndtm_prior fl_ndtm_prior_of(const fl_prior *p)
{
    return (fl_ndtm_prior){.eps = fl_prior_eps,
                           .eps_ctx = (void *)p,
                           .abar = fl_prior_abar(p),
                           .T = fl_prior_T(p),
                           .dim = fl_prior_dim(p),
                           .decode = prior_decode,
                           .encode = prior_encode,
                           .ctx = (void *)p,
                           .clamp = fl_prior_clamp(p),
                           .latent = fl_prior_space_of(p) == FL_PRIOR_LATENT,
                           .vae = fl_prior_vae(p)};
}

/* ---- the evaluation's sampler --------------------------------------------------------- */

typedef struct {
    fl_ndtm_prior p;
    fl_subject *f;
    fl_ndtm_opts o;
    char name[64];
} sampler_ctx;

static ct_tensor *sample_fn(void *ctx, const ct_tensor *x_targets, const ct_tensor *z_targets, int k, ct_gen *g)
{
    sampler_ctx *sc = ctx;
    int64_t n = ct_size(x_targets, 0) * k;
    ct_scope *s = ct_scope_begin();
    ct_tensor *xt = ct_repeat_interleave(x_targets, k, 0);                       /* (n, 3, 28, 28) */
    ct_tensor *zt = ct_repeat_interleave(z_targets, k, 0);                       /* (n, d) */
    int64_t nb = (n + sc->o.batch - 1) / sc->o.batch;
    ct_tensor **parts = calloc((size_t)(nb ? nb : 1), sizeof *parts);
    fl_progress *bar = fl_progress_new(sc->name, n, "samples");
    bool ok = parts != NULL;
    for (int64_t j = 0; j < nb && ok; j++) {
        int64_t at = j * sc->o.batch, len = at + sc->o.batch > n ? n - at : sc->o.batch;
        ct_tensor *x_T = ct_randn(CT_SHAPE(len, sc->p.dim), ct_float_dtype(), g); /* (len, D) */
        ct_tensor *zj = ct_narrow(zt, 0, at, len);
        ct_tensor *x0 = fl_ndtm_sample(&sc->p, sc->f, x_T, ct_narrow(xt, 0, at, len), zj, &sc->o, g);
        bool in_latent = sc->o.refine_steps > 0 && !sc->o.refine_pixels && sc->p.latent;
        if (x0 && in_latent) x0 = fl_ndtm_refine(&sc->p, sc->f, x0, zj, &sc->o);
        ct_tensor *img = x0 ? sc->p.decode(sc->p.ctx, x0) : NULL;              /* (len, 3, 28, 28) */
        if (img && sc->o.refine_steps > 0 && !in_latent) img = fl_ndtm_refine_images(sc->p.vae, sc->f, img, zj, &sc->o);
        parts[j] = img;
        ok = parts[j] != NULL;
        fl_progress_update(bar, at + len, NULL);
    }
    fl_progress_free(bar);
    ct_tensor *out = ok ? ct_cat((const ct_tensor *const *)parts, (int)nb, 0) : NULL;
    free(parts);
    out = ct_scope_keep(s, out);
    ct_scope_end(s);
    return out;
}

int fl_ndtm_sampler(const fl_ndtm_prior *p, fl_subject *f, const fl_ndtm_opts *o, fl_sampler *out)
{
    sampler_ctx *sc = calloc(1, sizeof *sc);
    if (!sc) return fl_fail("out of memory");
    sc->p = *p;
    sc->f = f;
    sc->o = *o;
    snprintf(sc->name, sizeof sc->name, "ndtm-%s%s", o->target == FL_TARGET_RENOISED ? "renoised" : "static",
             o->refine_steps <= 0 ? "" : o->refine_pixels ? "-refined-pixels" : "-refined");
    *out = (fl_sampler){sc->name, sc, sample_fn, free};
    return 0;
}
