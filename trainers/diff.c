/* DIFF: conditional diffusion on the points u of the latent (Ho et al. 2020; Song et al.
 * 2021). A network net_θ(x_t, t/T, z) predicting ε (DDPM), v (Salimans & Ho 2022) or u
 * itself (diff.prediction), trained with E_{t, ε} ‖net_θ(√ᾱ_t u + √(1−ᾱ_t) ε, t/T, z) −
 * target‖² (t uniform in 1 … T, mean over the elements), sampled with DDIM on the ε̂ its
 * output converts to. The fiber-loss term backpropagates through the sampler
 * (the last diff.grad_steps of its steps), with diff.checkpoint each of those steps
 * recomputed in the backward pass instead of kept (ct_checkpoint). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "architectures/timenet.h"
#include "core/log.h"
#include "trainers/diffusion.h"
#include "trainers/family.h"

const fl_key fl_keys_diff[] = {
    FL_TIMENET_KEYS("diff"),
    {"diff.prediction", FL_KEY_STR, "\"eps\"", FL_NO_BOUNDS, "eps|v|x0",
     "What the network predicts: eps the noise ε (DDPM), v = √ᾱ ε − √(1−ᾱ) u (Salimans & Ho "
     "2022), x0 the point u itself; the samplers convert it to ε. The loss is the MSE on the "
     "predicted quantity; an error δ in it moves the sampler's estimate of u by δ √(1−ᾱ)/√ᾱ "
     "with eps (unbounded at high noise, where the condition decides the sample), δ √(1−ᾱ) "
     "with v, δ with x0."},
    {"diff.schedule", FL_KEY_STR, "\"linear\"", FL_NO_BOUNDS, "linear|cosine",
     "Noise schedule: β linear from 1e-4 to diff.beta_max, or the cosine ᾱ of Nichol & "
     "Dhariwal (2021) with β clipped at diff.beta_max."},
    {"diff.beta_max", FL_KEY_NUM, "0.02", 1e-4, 0.999, NULL,
     "Largest β: the end of the linear schedule, the clip of the cosine one (DDPM: 0.02; the "
     "authors: 0.04, whose ᾱ_T = 2e-9 makes few-step DDIM amplify the network's error 1/√ᾱ_T)."},
    {"diff.T", FL_KEY_INT, "1000", 1, 100000, NULL, "Diffusion steps T of training."},
    {"diff.steps", FL_KEY_INT, "50", 1, 100000, NULL,
     "DDIM steps of the sampler when no other number is asked for (train.fiber_steps or "
     "eval.steps 0); at most diff.T."},
    {"diff.eta", FL_KEY_NUM, "0", 0, 1, NULL,
     "DDIM η: 0 is the deterministic sampler, 1 adds DDPM's posterior noise at each step."},
    {"diff.grad_steps", FL_KEY_INT, "0", 0, 100000, NULL,
     "Sampler steps the fiber-loss term backpropagates through: the last k (the earlier "
     "ones run without a graph); 0: all."},
    {"diff.checkpoint", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "Activation checkpointing of the fiber-loss sampler: each differentiated step keeps only "
     "its input in the graph and runs again in the backward pass (less memory; its network "
     "calls run twice); the same gradient."},
    FL_KEYS_END,
};

struct fl_diff {
    fl_timenet net;
    int dim, T, steps, grad_steps;
    bool checkpoint;
    fl_diff_prediction prediction;
    double eta;
    double *abar;          /* ᾱ_t, t = 0 … T */
    ct_tensor *abar_t;     /* ᾱ_1 … ᾱ_T (T) in the float dtype, for training; owned */
};

void fl_noise_schedule_fill(double *abar, int T, bool cosine, double beta_max)
{
    const double s = 0.008, beta_1 = beta_max < 1e-4 ? beta_max : 1e-4;
    abar[0] = 1;
    for (int t = 1; t <= T; t++) {
        double beta;
        if (cosine) {
            double f = cos(((double)t / T + s) / (1 + s) * M_PI / 2);
            double fp = cos(((double)(t - 1) / T + s) / (1 + s) * M_PI / 2);
            beta = 1 - (f * f) / (fp * fp);   /* ᾱ_t / ᾱ_{t−1} = f(t)² / f(t−1)² */
        } else {
            beta = T == 1 ? beta_max : beta_1 + (beta_max - beta_1) * (t - 1) / (T - 1);
        }
        if (beta > beta_max) beta = beta_max;
        abar[t] = abar[t - 1] * (1 - beta);
    }
}

int fl_diff_prediction_parse(const char *name)
{
    static const char *const names[FL_DIFF_PREDICTION_COUNT] = {"eps", "v", "x0"};
    for (int i = 0; i < FL_DIFF_PREDICTION_COUNT; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

ct_tensor *fl_diff_target(fl_diff_prediction p, const ct_tensor *x0, const ct_tensor *eps,
                          const ct_tensor *ab_t, double ab)
{
    if (p == FL_DIFF_EPS) return ct_ref(eps);
    if (p == FL_DIFF_X0) return ct_ref(x0);
    ct_scope *s = ct_scope_begin();
    ct_tensor *v = ab_t ? ct_sub(ct_mul(ct_sqrt(ab_t), eps), ct_mul(ct_sqrt(ct_rsubs(ab_t, 1)), x0))
                        : ct_axpy(ct_muls(eps, sqrt(ab)), -sqrt(1 - ab), x0);    /* (B, D) */
    ct_tensor *r = ct_scope_keep(s, v);
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_diff_eps_from(fl_diff_prediction p, const ct_tensor *x_t, const ct_tensor *out,
                            const ct_tensor *ab_t, double ab)
{
    if (p == FL_DIFF_EPS) return ct_ref(out);
    ct_scope *s = ct_scope_begin();
    ct_tensor *e;                                                                 /* (B, D) */
    if (p == FL_DIFF_V)   /* ε̂ = √(1−ᾱ) x_t + √ᾱ v̂ */
        e = ab_t ? ct_add(ct_mul(ct_sqrt(ct_rsubs(ab_t, 1)), x_t), ct_mul(ct_sqrt(ab_t), out))
                 : ct_axpy(ct_muls(x_t, sqrt(1 - ab)), sqrt(ab), out);
    else                  /* ε̂ = (x_t − √ᾱ x̂0) / √(1−ᾱ) */
        e = ab_t ? ct_div(ct_sub(x_t, ct_mul(ct_sqrt(ab_t), out)), ct_sqrt(ct_rsubs(ab_t, 1)))
                 : ct_muls(ct_axpy(x_t, -sqrt(ab), out), 1 / sqrt(1 - ab));
    ct_tensor *r = ct_scope_keep(s, e);
    ct_scope_end(s);
    return r;
}

static int diff_check(const fl_config *c, int u_dim, int z_dim)
{
    (void)u_dim, (void)z_dim;
    int T = (int)fl_cfg_int(c, "diff.T"), steps = (int)fl_cfg_int(c, "diff.steps");
    int fiber_steps = (int)fl_cfg_int(c, "train.fiber_steps");
    int eval_steps = (int)fl_cfg_int(c, "eval.steps");
    int k = (int)fl_cfg_int(c, "diff.grad_steps");
    int64_t blocks = fl_cfg_int(c, "diff.blocks"), layers = fl_cfg_int(c, "diff.layers");
    if ((blocks > 0 ? blocks * layers : layers) > FL_MLP_MAX)
        return fl_fail("diff.blocks: %lld blocks of %lld layers, at most %d layers in all",
                       (long long)blocks, (long long)layers, FL_MLP_MAX);
    if (fl_cfg_int(c, "diff.time_embed") % 2)
        return fl_fail("diff.time_embed: %lld is odd (sin and cos pairs)",
                       (long long)fl_cfg_int(c, "diff.time_embed"));
    if (steps > T) return fl_fail("diff.steps: %d DDIM steps, more than diff.T = %d", steps, T);
    if (fiber_steps > T)
        return fl_fail("train.fiber_steps: %d DDIM steps, more than diff.T = %d", fiber_steps, T);
    if (eval_steps > T) return fl_fail("eval.steps: %d DDIM steps, more than diff.T = %d", eval_steps, T);
    int train_steps = fiber_steps > 0 ? fiber_steps : steps;
    if (k > train_steps)
        return fl_fail("diff.grad_steps: %d, more than the %d steps of the fiber-loss sampler "
                       "(train.fiber_steps, or diff.steps when it is 0)", k, train_steps);
    double *abar = malloc(((size_t)T + 1) * sizeof *abar);
    if (!abar) return fl_fail("out of memory");
    fl_noise_schedule_fill(abar, T, strcmp(fl_cfg_str(c, "diff.schedule"), "cosine") == 0,
                  fl_cfg_num(c, "diff.beta_max"));
    double last = abar[T];
    free(abar);
    /* sampling starts from N(0, I): the data must be all but gone at t = T */
    if (last > 0.01)
        return fl_fail("diff.beta_max: ᾱ_T = %.3g leaves %.0f %% of the data's scale at t = T "
                       "(at most 10 %%); raise diff.beta_max or diff.T", last, 100 * sqrt(last));
    return 0;
}

void fl_diff_free(fl_diff *m)
{
    if (!m) return;
    free(m->abar);
    ct_free(m->abar_t);
    free(m);
}

static void diff_destroy(void *model) { fl_diff_free(model); }

fl_diff *fl_diff_new(const fl_diff_spec *sp, ct_params *ps, const char *name, ct_gen *g)
{
    fl_diff *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    m->dim = sp->net.dim;
    m->T = sp->T;
    m->steps = sp->steps;
    m->grad_steps = sp->grad_steps;
    m->checkpoint = sp->checkpoint;
    m->prediction = sp->prediction;
    m->eta = sp->eta;
    m->abar = malloc(((size_t)m->T + 1) * sizeof *m->abar);
    if (!m->abar) {
        fl_diff_free(m);
        return fl_fail("out of memory"), NULL;
    }
    fl_noise_schedule_fill(m->abar, m->T, sp->cosine, sp->beta_max);
    ct_tensor *a = ct_from_data(m->abar + 1, CT_SHAPE(m->T), CT_F64);           /* (T) */
    m->abar_t = ct_unscope(ct_to_dtype(a, ct_float_dtype()));
    ct_free(a);
    if (!m->abar_t || fl_timenet_init(&m->net, ps, name, &sp->net, g)) {
        fl_fail_ctx("%s network", name);
        fl_diff_free(m);
        return NULL;
    }
    return m;
}

static void *diff_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    fl_diff_spec s = {.net = {.dim = u_dim,
                              .cond_dim = z_dim,
                              .embed = (int)fl_cfg_int(c, "diff.time_embed"),
                              .hidden = (int)fl_cfg_int(c, "diff.hidden"),
                              .n_blocks = (int)fl_cfg_int(c, "diff.blocks"),
                              .n_layers = (int)fl_cfg_int(c, "diff.layers"),
                              .act = fl_act_parse(fl_cfg_str(c, "diff.activation"))},
                      .T = (int)fl_cfg_int(c, "diff.T"),
                      .cosine = strcmp(fl_cfg_str(c, "diff.schedule"), "cosine") == 0,
                      .beta_max = fl_cfg_num(c, "diff.beta_max"),
                      .steps = (int)fl_cfg_int(c, "diff.steps"),
                      .eta = fl_cfg_num(c, "diff.eta"),
                      .grad_steps = (int)fl_cfg_int(c, "diff.grad_steps"),
                      .checkpoint = fl_cfg_bool(c, "diff.checkpoint"),
                      .prediction = fl_diff_prediction_parse(fl_cfg_str(c, "diff.prediction"))};
    return fl_diff_new(&s, ps, "diff.eps", g);
}

int fl_diff_T(const fl_diff *m) { return m->T; }
int fl_diff_dim(const fl_diff *m) { return m->dim; }
double fl_diff_alpha_bar(const fl_diff *m, int t) { return t >= 0 && t <= m->T ? m->abar[t] : NAN; }
const double *fl_diff_abar(const fl_diff *m) { return m->abar; }

ct_tensor *fl_diff_eps(const fl_diff *m, const ct_tensor *x, int t, const ct_tensor *z)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *tt = ct_full(CT_SHAPE(ct_size(x, 0), 1), (double)t / m->T, ct_dtype_of(x)); /* (B, 1) */
    ct_tensor *out = fl_timenet_forward(&m->net, x, tt, z);                       /* (B, D) */
    ct_tensor *eps = ct_scope_keep(s, out ? fl_diff_eps_from(m->prediction, x, out, NULL, m->abar[t]) : NULL);
    ct_scope_end(s);
    return eps;
}

ct_tensor *fl_diff_eps_uncond(void *m, const ct_tensor *x, int t)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *none = ct_zeros(CT_SHAPE(ct_size(x, 0), 0), ct_dtype_of(x));     /* (B, 0) */
    ct_tensor *eps = ct_scope_keep(s, fl_diff_eps(m, x, t, none));
    ct_scope_end(s);
    return eps;
}

ct_tensor *fl_diff_ddpm_loss(const fl_diff *m, const ct_tensor *u, const ct_tensor *z, ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    int64_t b = ct_size(u, 0);
    ct_tensor *t = ct_randint(m->T, CT_SHAPE(b), g);                  /* (B) I64: t − 1 */
    ct_tensor *ab = ct_unsqueeze(ct_index_select(m->abar_t, 0, t), 1);            /* (B, 1) */
    ct_tensor *eps = ct_randn_like(u, g);                                         /* (B, D) */
    ct_tensor *x_t = ct_add(ct_mul(ct_sqrt(ab), u), ct_mul(ct_sqrt(ct_rsubs(ab, 1)), eps));
    ct_tensor *tt = ct_muls(ct_adds(ct_unsqueeze(ct_to_dtype(t, ct_dtype_of(u)), 1), 1),
                            1.0 / m->T);                                          /* (B, 1) */
    ct_tensor *pred = fl_timenet_forward(&m->net, x_t, tt, z);                    /* (B, D) */
    ct_tensor *target = fl_diff_target(m->prediction, u, eps, ab, 0);             /* (B, D) */
    ct_tensor *loss = ct_scope_keep(s, ct_mse(pred, target));
    ct_scope_end(s);
    return loss;
}

/* The DDPM loss: t ~ U{1 … T}, ε ~ N(0, I), MSE between net_θ(x_t, t/T, z) and its
 * target (ε, v or u). */
static ct_tensor *diff_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                            fl_terms *terms)
{
    ct_tensor *loss = fl_diff_ddpm_loss(model, u, z, g);
    if (loss && terms) fl_terms_add(terms, "mse", ct_item(loss));
    return loss;
}

int fl_ddim_tau(int i, int S, int T, fl_ddim_grid grid)
{
    if (i <= 0) return 0;
    if (grid == FL_DDIM_LEADING) return (int)(((int64_t)(i - 1) * T) / S) + 1;
    return (int)(((int64_t)i * T + S / 2) / S);   /* distinct for S ≤ T, τ_S = T */
}

double fl_ddim_sigma(const double *abar, int t, int s, double eta)
{
    double a = abar[t], ap = abar[s];
    return eta * sqrt((1 - ap) / (1 - a) * (1 - a / ap));
}

ct_tensor *fl_ddim_update(const double *abar, const ct_tensor *x0, const ct_tensor *eps, int s,
                          double sigma, const ct_tensor *noise)
{
    double ap = abar[s];
    double dir = 1 - ap - sigma * sigma;
    ct_scope *sc = ct_scope_begin();
    ct_tensor *y = ct_axpy(ct_muls(x0, sqrt(ap)), sqrt(dir > 0 ? dir : 0), eps);  /* (B, D) */
    if (sigma > 0) y = ct_axpy(y, sigma, noise);
    ct_tensor *r = ct_scope_keep(sc, y);
    ct_scope_end(sc);
    return r;
}

/* σ of step i of S at η: the scale of the fresh noise. */
static double ddim_sigma(const fl_diff *m, int i, int S, double eta, fl_ddim_grid grid)
{
    return fl_ddim_sigma(m->abar, fl_ddim_tau(i, S, m->T, grid), fl_ddim_tau(i - 1, S, m->T, grid), eta);
}

/* The DDIM move from t to tp given the network's ε at x (B, D), x̂0 clamped to
 * [−clamp, clamp] when clamp > 0. */
static ct_tensor *ddim_move(const double *abar, const ct_tensor *x, const ct_tensor *eps, int t, int tp,
                            double sigma, const ct_tensor *noise, double clamp)
{
    double a = abar[t];
    ct_scope *s = ct_scope_begin();
    ct_tensor *x0 = ct_muls(ct_axpy(x, -sqrt(1 - a), eps), 1 / sqrt(a));          /* (B, D) */
    if (clamp > 0) x0 = ct_clamp(x0, -clamp, clamp);
    ct_tensor *r = ct_scope_keep(s, fl_ddim_update(abar, x0, eps, tp, sigma, noise));
    ct_scope_end(s);
    return r;
}

/* The step with its fresh noise given: noise (B, D), or NULL when σ = 0. */
static ct_tensor *ddim_step_noised(const fl_diff *m, const ct_tensor *x, const ct_tensor *z, int i,
                                   int S, double eta, fl_ddim_grid grid, const ct_tensor *noise)
{
    int t = fl_ddim_tau(i, S, m->T, grid), tp = fl_ddim_tau(i - 1, S, m->T, grid);
    ct_scope *s = ct_scope_begin();
    ct_tensor *eps = fl_diff_eps(m, x, t, z);                                     /* (B, D) */
    ct_tensor *r = ct_scope_keep(s, eps ? ddim_move(m->abar, x, eps, t, tp, ddim_sigma(m, i, S, eta, grid), noise, 0)
                                        : NULL);
    ct_scope_end(s);
    return r;
}

/* A step as ct_checkpoint runs it: inputs x, z and, when σ > 0, its noise. */
typedef struct {
    const fl_diff *m;
    int i, S;
    double eta;
    fl_ddim_grid grid;
} ddim_step_args;

static ct_tensor *ddim_step_fn(const void *ctx, const ct_tensor *const *in, int n)
{
    const ddim_step_args *a = ctx;
    return ddim_step_noised(a->m, in[0], in[1], a->i, a->S, a->eta, a->grid, n > 2 ? in[2] : NULL);
}

/* A step whose noise comes from g, under ct_checkpoint or not: the noise is drawn
 * outside the checkpointed function, so that its recomputation adds the same. */
static ct_tensor *ddim_step(const fl_diff *m, const ct_tensor *x, const ct_tensor *z, int i, int S,
                            double eta, fl_ddim_grid grid, ct_gen *g, bool checkpoint)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *noise = ddim_sigma(m, i, S, eta, grid) > 0 ? ct_randn_like(x, g) : NULL; /* (B, D) */
    ddim_step_args a = {m, i, S, eta, grid};
    const ct_tensor *in[3] = {x, z, noise};
    ct_tensor *y = checkpoint ? ct_checkpoint(ddim_step_fn, &a, sizeof a, in, noise ? 3 : 2)
                              : ddim_step_noised(m, x, z, i, S, eta, grid, noise);
    ct_tensor *r = ct_scope_keep(s, y);
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_diff_ddim_step(const fl_diff *m, const ct_tensor *x, const ct_tensor *z, int i,
                             int S, double eta, ct_gen *g)
{
    return ddim_step(m, x, z, i, S, eta, FL_DDIM_ROUND, g, false);
}

ct_tensor *fl_diff_ddim(const fl_diff *m, const ct_tensor *x_T, const ct_tensor *z,
                        const fl_ddim_opts *o, ct_gen *g)
{
    int S = o->steps;
    if (S < 1 || S > m->T) return fl_fail("DDIM: %d steps, not in [1, T = %d]", S, m->T), NULL;
    bool grad = ct_grad_enabled();
    int k = o->grad_steps > 0 && o->grad_steps < S ? o->grad_steps : S;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *x = x_T;                                                      /* (B, D) */
    for (int i = S; i >= 1 && x; i--) {
        ct_set_grad_enabled(grad && i <= k);   /* steps S … k+1 without a graph */
        ct_tensor *y = ddim_step(m, x, z, i, S, o->eta, o->grid, g, o->checkpoint);
        if (x != x_T) ct_free((ct_tensor *)x);
        x = y;
    }
    ct_set_grad_enabled(grad);
    ct_tensor *r = ct_scope_keep(s, (ct_tensor *)x);
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_ddim_sample(fl_eps_fn eps, void *ctx, const double *abar, int T, const ct_tensor *x_T,
                          int S, double eta, fl_ddim_grid grid, double clamp, ct_gen *g)
{
    if (S < 1 || S > T) return fl_fail("DDIM: %d steps, not in [1, T = %d]", S, T), NULL;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *x = x_T;                                                      /* (B, D) */
    for (int i = S; i >= 1 && x; i--) {
        int t = fl_ddim_tau(i, S, T, grid), tp = fl_ddim_tau(i - 1, S, T, grid);
        double sigma = fl_ddim_sigma(abar, t, tp, eta);
        ct_scope *si = ct_scope_begin();
        ct_tensor *noise = sigma > 0 ? ct_randn_like(x, g) : NULL;               /* (B, D) */
        ct_tensor *e = eps(ctx, x, t);                                           /* (B, D) */
        ct_tensor *y = ct_scope_keep(si, e ? ddim_move(abar, x, e, t, tp, sigma, noise, clamp) : NULL);
        ct_scope_end(si);
        if (x != x_T) ct_free((ct_tensor *)x);
        x = y;
    }
    ct_tensor *r = ct_scope_keep(s, (ct_tensor *)x);
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_diff_ddim_invert(const fl_diff *m, const ct_tensor *x0, const ct_tensor *z, int S)
{
    if (S < 1 || S > m->T) return fl_fail("DDIM inversion: %d steps, not in [1, T = %d]", S, m->T), NULL;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *x = x0;                                                       /* (B, D) */
    for (int i = 1; i <= S && x; i++) {
        int t = fl_ddim_tau(i, S, m->T, FL_DDIM_ROUND), tp = fl_ddim_tau(i - 1, S, m->T, FL_DDIM_ROUND);
        double a = m->abar[t], ap = m->abar[tp];
        ct_scope *si = ct_scope_begin();
        ct_tensor *eps = fl_diff_eps(m, x, t, z);                                 /* (B, D) */
        ct_tensor *xh = ct_muls(ct_axpy(x, -sqrt(1 - ap), eps), 1 / sqrt(ap));    /* x̂_0 */
        ct_tensor *y = ct_scope_keep(si, ct_axpy(ct_muls(xh, sqrt(a)), sqrt(1 - a), eps));
        ct_scope_end(si);
        if (x != x0) ct_free((ct_tensor *)x);
        x = y;
    }
    ct_tensor *r = ct_scope_keep(s, (ct_tensor *)x);
    ct_scope_end(s);
    return r;
}

/* DDIM from x_T = temperature · ε; o->steps or diff.steps; the graph through the last
 * diff.grad_steps steps (checkpointed with diff.checkpoint) when o->keep_graph. */
static ct_tensor *diff_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    fl_diff *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *x_T = ct_muls(ct_randn(CT_SHAPE(ct_size(z, 0), m->dim), ct_dtype_of(z), g),
                             o->temperature);                                     /* (B, D) */
    fl_ddim_opts d = {.steps = o->steps > 0 ? o->steps : m->steps,
                      .eta = m->eta,
                      .grad_steps = o->keep_graph ? m->grad_steps : 0,
                      .checkpoint = o->keep_graph && m->checkpoint};
    ct_tensor *u = ct_scope_keep(s, fl_diff_ddim(m, x_T, z, &d, g));
    ct_scope_end(s);
    return u;
}

const fl_family fl_family_diff = {
    .name = "diff",
    .summary = "conditional diffusion (DDPM training, DDIM sampling)",
    .keys = fl_keys_diff,
    .space = FL_SPACE_LATENT,
    .check = diff_check,
    .create = diff_create,
    .destroy = diff_destroy,
    .loss = diff_loss,
    .sample = diff_sample,
};
