/* The solvers of the two iterative families, for their tests and benchmarks: DIFF's
 * DDIM sampler and its inversion (trainers/diff.c) and FM's ODE solvers
 * (trainers/fm.c). The families themselves are fl_family_diff and fl_family_fm; their
 * create() returns the fl_diff / fl_fm these functions take.
 *
 * Truncated backpropagation, grad_steps = k > 0: with grad mode on, only the last k
 * solver steps are recorded; the earlier ones run with grad mode off, so their result
 * enters the recorded steps as a constant (detached). k = 0, or k ≥ the steps, records
 * every step. With grad mode off nothing is recorded anyway.
 *
 * Activation checkpointing, checkpoint = true: each recorded step goes through
 * ct_checkpoint, which keeps only the step's inputs (x, z and, for DDIM at η > 0, the
 * step's noise, drawn outside it) and runs the step again in the backward pass. The
 * samples and the gradients (through ct_backward) are those of checkpoint = false, the
 * generator draws the same numbers; the graph holds one (B, D) tensor a step instead of
 * the network's activations. ct_grad / ct_vjp cannot go through it (see ct_checkpoint). */
#ifndef FL_DIFFUSION_H
#define FL_DIFFUSION_H

#include "architectures/timenet.h"
#include "ctorch/ct.h"

/* ---- DIFF: DDPM training, DDIM sampling --------------------------------------------- */
typedef struct fl_diff fl_diff;

/* What the network predicts (diff.prediction); fl_diff_eps converts it to ε̂, so the
 * samplers see an ε-network whatever it is. With x_t = √ᾱ x0 + √(1−ᾱ) ε:
 *   EPS  ε itself (DDPM);
 *   V    v = √ᾱ ε − √(1−ᾱ) x0 (Salimans & Ho 2022): ε̂ = √(1−ᾱ) x_t + √ᾱ v̂;
 *   X0   x0: ε̂ = (x_t − √ᾱ x̂0) / √(1−ᾱ).
 * An error δ in the output moves the sampler's x̂0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ by
 * δ √(1−ᾱ)/√ᾱ (EPS: unbounded as ᾱ → 0, at the high noise where the condition decides the
 * sample), by δ √(1−ᾱ) (V) or by δ (X0). */
typedef enum { FL_DIFF_EPS = 0, FL_DIFF_V, FL_DIFF_X0, FL_DIFF_PREDICTION_COUNT } fl_diff_prediction;
/* Parses "eps", "v", "x0"; -1 when unknown. */
int fl_diff_prediction_parse(const char *name);
/* The network's target for x0 and ε (B, D) at ᾱ_t ab: a number, or per row ab_t (B, 1)
 * when not NULL -> (B, D). */
ct_tensor *fl_diff_target(fl_diff_prediction p, const ct_tensor *x0, const ct_tensor *eps,
                          const ct_tensor *ab_t, double ab);
/* ε̂ from the network's output out (B, D) at x_t (B, D), ᾱ_t ab (ab_t (B, 1) when not
 * NULL) -> (B, D); EPS returns out itself (a new handle). */
ct_tensor *fl_diff_eps_from(fl_diff_prediction p, const ct_tensor *x_t, const ct_tensor *out,
                            const ct_tensor *ab_t, double ab);

/* What a diffusion model is made of, without the config: the family builds one from
 * diff.*, the NDTM prior (trainers/prior.h) from prior.*. */
typedef struct {
    fl_timenet_spec net;  /* ε_θ: dim D, cond_dim C (0: unconditional), … */
    int T;                /* diffusion steps of training */
    bool cosine;          /* the cosine ᾱ of Nichol & Dhariwal; else β linear from 1e-4 */
    double beta_max;      /* the end of the linear β, the clip of the cosine one */
    int steps;            /* default DDIM steps */
    double eta;           /* default DDIM η */
    int grad_steps;       /* diff.grad_steps */
    bool checkpoint;      /* diff.checkpoint */
    fl_diff_prediction prediction;   /* diff.prediction; 0 (EPS) unless set */
} fl_diff_spec;

/* A model whose parameters ("<name>.…") go into ps; NULL and a message. fl_diff_free. */
fl_diff *fl_diff_new(const fl_diff_spec *s, ct_params *ps, const char *name, ct_gen *g);
void fl_diff_free(fl_diff *m);   /* NULL is a no-op */

/* ᾱ_0 … ᾱ_T (ᾱ_0 = 1) of a schedule into abar[T + 1]: the cosine ᾱ of Nichol & Dhariwal
 * (β clipped at beta_max), else β linear from 1e-4 to beta_max. */
void fl_noise_schedule_fill(double *abar, int T, bool cosine, double beta_max);

int fl_diff_T(const fl_diff *m);                 /* diffusion steps T */
int fl_diff_dim(const fl_diff *m);               /* D */
double fl_diff_alpha_bar(const fl_diff *m, int t);   /* ᾱ_t, t = 0 … T (ᾱ_0 = 1) */
const double *fl_diff_abar(const fl_diff *m);        /* ᾱ_0 … ᾱ_T: T + 1 entries */
/* ε̂(x, t/T, z): the network's output as ε (fl_diff_eps_from): x (B, D) at step
 * t ∈ [1, T], z (B, C) (C = 0: a (B, 0) tensor) -> (B, D). */
ct_tensor *fl_diff_eps(const fl_diff *m, const ct_tensor *x, int t, const ct_tensor *z);
/* An unconditional ε-network as the samplers of any prior see it: x (B, D) at step
 * t ∈ [1, T] -> (B, D), differentiable w.r.t. x; ctorch's ownership rules. */
typedef ct_tensor *(*fl_eps_fn)(void *ctx, const ct_tensor *x, int t);
/* fl_diff_eps of an unconditional fl_diff (ctx) with the empty condition: an fl_eps_fn. */
ct_tensor *fl_diff_eps_uncond(void *m, const ct_tensor *x, int t);
/* DDPM's loss on a batch u (B, D): t ~ U{1 … T}, ε ~ N(0, I), the mean of
 * (net(√ᾱ_t u + √(1−ᾱ_t) ε, t/T, z) − target)², the target that of the prediction
 * (fl_diff_target: ε, v or u) -> (). */
ct_tensor *fl_diff_ddpm_loss(const fl_diff *m, const ct_tensor *u, const ct_tensor *z, ct_gen *g);

/* The time grids of a DDIM sampler of S steps, τ_S > … > τ_1 > τ_0 = 0 in 1 … T:
 *   ROUND    τ_i = round(i T / S), from τ_S = T (DIFF's);
 *   LEADING  τ_i = ⌊(i − 1) T / S⌋ + 1 — in the 0-based step numbering of the DDIM and
 *            NDTM code (t = 990, 980, …, 0 at T = 1000, S = 100) τ_i − 1. */
typedef enum { FL_DDIM_ROUND = 0, FL_DDIM_LEADING, FL_DDIM_GRID_COUNT } fl_ddim_grid;
int fl_ddim_tau(int i, int S, int T, fl_ddim_grid grid);
/* σ of the DDIM step from t to s < t at η, on the schedule abar (ᾱ_0 … ᾱ_T):
 * η √((1 − ᾱ_s)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_s)). */
double fl_ddim_sigma(const double *abar, int t, int s, double eta);
/* The DDIM update to step s: √ᾱ_s x̂0 + √(1 − ᾱ_s − σ²) ε + σ noise (noise (B, D), or
 * NULL when σ = 0) -> (B, D). */
ct_tensor *fl_ddim_update(const double *abar, const ct_tensor *x0, const ct_tensor *eps, int s,
                          double sigma, const ct_tensor *noise);
/* Plain DDIM of any unconditional ε-network on the schedule abar of T steps: from x_T
 * (B, D) with S steps at η on grid (fresh noise from g, drawn before each step's network
 * call) to x_0 (B, D), each x̂0 clamped to [−clamp, clamp] when clamp > 0 (pixels); the
 * graph as the grad mode says. The same ops as fl_diff_ddim, so that an fl_diff through
 * fl_diff_eps_uncond with clamp 0 gives its result bit for bit. NULL and a message when S
 * is not in [1, T]. */
ct_tensor *fl_ddim_sample(fl_eps_fn eps, void *ctx, const double *abar, int T, const ct_tensor *x_T,
                          int S, double eta, fl_ddim_grid grid, double clamp, ct_gen *g);

typedef struct {
    int steps;        /* DDIM steps S, 1 ≤ S ≤ T: the times of grid */
    double eta;       /* η: 0 deterministic DDIM, 1 the DDPM posterior variance */
    int grad_steps;   /* k: see above */
    bool checkpoint;  /* see above */
    fl_ddim_grid grid;   /* FL_DDIM_ROUND unless set */
} fl_ddim_opts;

/* One DDIM step, i of S (S ≥ i ≥ 1) on the ROUND grid: x at τ_i (B, D) -> x at τ_{i−1}
 * (B, D), given the conditions z (B, C); g draws the fresh noise when η > 0 (unused at
 * η = 0). */
ct_tensor *fl_diff_ddim_step(const fl_diff *m, const ct_tensor *x, const ct_tensor *z, int i,
                             int S, double eta, ct_gen *g);
/* The DDIM sampler from the given noise x_T (B, D) at τ_S = T to a sample at τ_0 = 0
 * (B, D): steps S, …, 1. At η = 0 the result is a function of x_T and z alone. NULL and
 * a message when S is not in [1, T]. */
ct_tensor *fl_diff_ddim(const fl_diff *m, const ct_tensor *x_T, const ct_tensor *z,
                        const fl_ddim_opts *o, ct_gen *g);
/* DDIM inversion: x_0 (B, D) -> x_T (B, D) along the η = 0 sampler run backwards with S
 * steps (the step from τ_{i−1} to τ_i uses ε̂(x_{τ_{i−1}}, τ_i)); generating from the
 * result with the same S returns x_0 up to the discretisation error. */
ct_tensor *fl_diff_ddim_invert(const fl_diff *m, const ct_tensor *x0, const ct_tensor *z, int steps);

/* ---- FM: the ODE dx/dt = v(x, t; z) from t0 to t1 ----------------------------------- */
typedef struct fl_fm fl_fm;

/* A velocity field: x (B, D), t, z (B, C) -> (B, D). */
typedef ct_tensor *(*fl_velocity_fn)(void *ctx, const ct_tensor *x, double t, const ct_tensor *z);

typedef enum { FL_ODE_EULER = 0, FL_ODE_MIDPOINT, FL_ODE_COUNT } fl_ode_solver;
/* Parses "euler", "midpoint"; -1 when unknown. */
int fl_ode_solver_parse(const char *name);

typedef struct {
    fl_ode_solver solver;
    int steps;         /* N ≥ 1 equal steps */
    int grad_steps;    /* k: see above */
    bool checkpoint;   /* see above; v and ctx must then stay valid until the backward pass */
    double t0, t1;
} fl_ode_opts;

/* One step from (x, t) over dt: Euler x + dt v(x, t); midpoint x + dt v(x + dt/2 v(x, t),
 * t + dt/2). */
ct_tensor *fl_ode_step(fl_velocity_fn v, void *ctx, const ct_tensor *x, const ct_tensor *z,
                       double t, double dt, fl_ode_solver solver);
/* x(t1) from x(t0) = x0 (B, D) in o->steps steps -> (B, D). */
ct_tensor *fl_ode_solve(fl_velocity_fn v, void *ctx, const ct_tensor *x0, const ct_tensor *z,
                        const fl_ode_opts *o);
/* The velocity network of an FM model (ctx: the fl_fm), as a velocity field. */
ct_tensor *fl_fm_velocity(void *ctx, const ct_tensor *x, double t, const ct_tensor *z);

#endif
