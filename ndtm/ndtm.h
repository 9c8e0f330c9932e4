/* NDTM (DESIGN.md §4; Pandey et al. 2025 as the authors adapted it to color MNIST):
 * training-free fiber sampling. A pretrained unconditional diffusion prior is sampled
 * with DDIM, and at each step t a control u is optimised (N Adam steps) so that the
 * Tweedie estimate x̂0 of the controlled state x_c = x_t + γ_t u lands on the fiber:
 *     C(u) = w_score ‖ε(x_t) − ε(x_c)‖² + w_control ‖γ_t u‖² + w_terminal ‖z* − f(D(x̂0))‖
 * (the terminal norm squared with ndtm.squared), each sample's gradient rescaled to a
 * norm of at most 1; then the DDIM step from x_c. D maps the prior's space to images (the
 * VAE decoder for the latent prior). The target z* is f(x̃*) (static) or f of the Tweedie
 * estimate of the target re-noised to t (renoised: the paper's §3.2).
 * Times are written in the 0-based numbering of the authors' code: t = 990, 980, …, 0 for
 * T = 1000 and 100 steps, ᾱ of t being fl_diff_alpha_bar(t + 1). */
#ifndef FL_NDTM_H
#define FL_NDTM_H

#include <stdbool.h>

#include "core/config.h"
#include "ctorch/ct.h"
#include "trainers/diffusion.h"
#include "trainers/prior.h"
#include "trainers/sampler.h"
#include "trainers/subject.h"

/* A prior as the sampler sees it: its unconditional ε-network on flattened states (B, D)
 * and its schedule, and the maps between its space and images (B, 3, 28, 28) in [0, 1]. */
typedef struct {
    fl_eps_fn eps;       /* ε(x, t), t 1-based (trainers/diffusion.h) */
    void *eps_ctx;
    const double *abar;  /* ᾱ_0 … ᾱ_T */
    int T;
    int64_t dim;         /* D */
    /* x (B, D) -> images, differentiable w.r.t. x; ctorch's ownership rules */
    ct_tensor *(*decode)(void *ctx, const ct_tensor *x);
    /* images -> x (B, D) (the re-noised target's starting point) */
    ct_tensor *(*encode)(void *ctx, const ct_tensor *img);
    void *ctx;
    double clamp;        /* x̂0 clamped to [−clamp, clamp] (pixels in [−1, 1]: 1); 0: none */
    bool latent;         /* the states are the fiber VAE's latent (decode is vae's) */
    fl_vae *vae;         /* the fiber VAE, for latent refinement of a pixel prior; may be NULL */
} fl_ndtm_prior;

/* Any prior of trainers/prior.h: the latent one through its VAE (no clamp), a pixel one
 * (a script) through x = 2·image − 1 with x̂0 clamped to [−1, 1]. */
fl_ndtm_prior fl_ndtm_prior_of(const fl_prior *p);

typedef enum { FL_GAMMA_ZERO = 0, FL_GAMMA_COSINE, FL_GAMMA_CONSTANT, FL_GAMMA_COUNT } fl_gamma_kind;
typedef enum { FL_TARGET_STATIC = 0, FL_TARGET_RENOISED, FL_TARGET_COUNT } fl_target_kind;

typedef struct {
    int steps;            /* DDIM steps S (the leading grid) */
    int inner;            /* N Adam steps on u per DDIM step */
    double u_lr;          /* Adam's lr at the first step; × (1 − i/S) at step i = 0 … S−1 */
    double w_score, w_control, w_terminal;
    bool squared;         /* the terminal cost ‖·‖² instead of ‖·‖ */
    double eta;
    bool large;           /* σ = η √(1 − ᾱ_t/ᾱ_s) (the "large" variance) instead of DDIM's */
    fl_gamma_kind gamma;
    double gamma_max;     /* γ */
    int ramp_start, ramp_end;   /* cosine: γ_t = 0 for t > start, γ for t < end */
    fl_target_kind target;
    int batch;            /* samples guided at once */
    int refine_steps;     /* refinement (appendix A): Adam steps; 0: none */
    double refine_lr;
    bool refine_pixels;   /* refine the pixels of each sample, not its VAE latent */
} fl_ndtm_opts;

/* The ndtm.* settings (checked against a prior of T steps). -1 and a message naming the key. */
int fl_ndtm_opts_from_config(const fl_config *c, int T, fl_ndtm_opts *o);
/* γ_t (t 0-based): zero 0; constant γ; cosine 0 for t ≥ start, γ (1 − cos(π (start − t)/
 * (start − end)))/2 between, γ for t ≤ end. */
double fl_ndtm_gamma(const fl_ndtm_opts *o, int t);
/* Adam's learning rate at DDIM step i = 0 … S−1 (t = 990 is i = 0): u_lr (1 − i/S). */
double fl_ndtm_lr(const fl_ndtm_opts *o, int i);
/* The 0-based time of DDIM step i (t_0 = 990 at T = 1000, S = 100); −1 after the last. */
int fl_ndtm_time(const fl_ndtm_opts *o, int T, int i);

/* The terminal target at 0-based time t for targets x_target (B, 3, 28, 28) and
 * z_target = f(x_target) (B, d): static: z_target; renoised: f(D(x̂*)), x̂* the Tweedie
 * estimate of √ᾱ x* + √(1 − ᾱ) ε, x* = encode(x_target), ε from g; t = −1 means ᾱ = 1
 * (no noise). Grad mode off inside. */
ct_tensor *fl_ndtm_target(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_target,
                          const ct_tensor *z_target, int t, const fl_ndtm_opts *o, ct_gen *g);
/* The cost C(u) per sample (B,) at state x_t (B, D), 0-based time t, the unguided
 * ε_t (B, D; read only when o->w_score > 0, else it may be NULL), the target z (B, d) and
 * γ. Differentiable w.r.t. u. */
ct_tensor *fl_ndtm_cost(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_t, int t,
                        const ct_tensor *eps_t, const ct_tensor *u, const ct_tensor *z, double gamma,
                        const fl_ndtm_opts *o);

/* The guided sampler from x_T (B, D) to x_0 (B, D) for targets (B, 3, 28, 28) with
 * representations (B, d); g draws the DDIM noise (and the re-noised targets' noise). With
 * γ = 0 throughout it is fl_diff_ddim on the leading grid, bit for bit. Called with any
 * grad mode; restores it. NULL and a message. */
ct_tensor *fl_ndtm_sample(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x_T,
                          const ct_tensor *x_target, const ct_tensor *z_target,
                          const fl_ndtm_opts *o, ct_gen *g);
/* Refinement in the prior's space: o->refine_steps Adam steps (lr o->refine_lr) on x
 * (B, D) lowering the fiber loss of D(x) against z (B, d) -> the refined x (B, D). */
ct_tensor *fl_ndtm_refine(const fl_ndtm_prior *p, fl_subject *f, const ct_tensor *x,
                          const ct_tensor *z, const fl_ndtm_opts *o);
/* Refinement of images (B, 3, 28, 28) (appendix A, after any sampler) -> refined images:
 * o->refine_pixels: Adam on the pixels, each step followed by clamping to [0, 1]; else
 * Adam on the fiber VAE's latent of each image (vae's encoding), decoded. */
ct_tensor *fl_ndtm_refine_images(fl_vae *vae, fl_subject *f, const ct_tensor *img,
                                 const ct_tensor *z, const fl_ndtm_opts *o);

/* The evaluation's sampler (trainers/sampler.h): k guided samples per target, decoded,
 * refined when o->refine_steps > 0 (a latent prior's samples in their own latent, a pixel
 * prior's through p->vae's encoding; pixels with o->refine_pixels); name "ndtm-static" /
 * "ndtm-renoised" (+ "-refined" or "-refined-pixels").
 * p, f are borrowed and must outlive it; seed seeds its generator... the evaluation's g. */
int fl_ndtm_sampler(const fl_ndtm_prior *p, fl_subject *f, const fl_ndtm_opts *o, fl_sampler *out);

extern const fl_key fl_keys_ndtm[];

#endif
