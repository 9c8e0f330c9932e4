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

#include "ctorch/ct.h"

/* ---- DIFF: DDPM training, DDIM sampling --------------------------------------------- */
typedef struct fl_diff fl_diff;

int fl_diff_T(const fl_diff *m);                 /* diffusion steps T */
double fl_diff_alpha_bar(const fl_diff *m, int t);   /* ᾱ_t, t = 0 … T (ᾱ_0 = 1) */

typedef struct {
    int steps;        /* DDIM steps S, 1 ≤ S ≤ T: the times τ_i = round(i T / S) */
    double eta;       /* η: 0 deterministic DDIM, 1 the DDPM posterior variance */
    int grad_steps;   /* k: see above */
    bool checkpoint;  /* see above */
} fl_ddim_opts;

/* One DDIM step, i of S (S ≥ i ≥ 1): x at τ_i (B, D) -> x at τ_{i−1} (B, D), given the
 * conditions z (B, C); g draws the fresh noise when η > 0 (unused at η = 0). */
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
