/* The free-form flows' shared half (FFF, trainers/fff.c; FIF, trainers/fif.c): a
 * conditional encoder f(u; z) and decoder g(h; z) pair of residual MLPs and the
 * Hutchinson estimate of the volume change from one VJP of f and one JVP of g
 * (Draxler et al. 2024; Sorrenson et al. 2023). One copy for both families; the
 * families add what differs (FFF's exact NLL monitor, FIF's latent dimension). */
#ifndef FL_FREEFORM_H
#define FL_FREEFORM_H

#include <stdbool.h>

#include "architectures/nn.h"
#include "core/config.h"
#include "ctorch/ct.h"

/* The keys both families have, in section sec ("fff", "fif"): one place for their
 * defaults. CPU-sized: the authors used 3 residual blocks of [512, 512]. */
#define FL_FREEFORM_KEYS(sec)                                                                 \
    {sec ".hidden", FL_KEY_INT, "128", 1, 65536, NULL,                                        \
     "Width of the encoder's and the decoder's hidden layers (the authors: 512)."},           \
    {sec ".blocks", FL_KEY_INT, "2", 0, 16, NULL,                                             \
     "Residual blocks of the encoder and of the decoder (the authors: 3); 0 gives a plain MLP."}, \
    {sec ".layers", FL_KEY_INT, "2", 1, 16, NULL,                                             \
     "Linear layers per residual block (or hidden layers of a plain MLP; the authors: 2)."},  \
    {sec ".activation", FL_KEY_STR, "\"silu\"", FL_NO_BOUNDS, "silu|relu|tanh|gelu|leaky_relu", \
     "Activation of the encoder and the decoder."},                                           \
    {sec ".beta", FL_KEY_NUM, "10", 0, 1e6, NULL,                                             \
     "Weight β of the reconstruction term β‖u − g(f(u))‖² (the authors: 10)."},               \
    {sec ".hutchinson", FL_KEY_INT, "1", 1, 64, NULL,                                         \
     "Hutchinson vectors per sample in the volume-change estimate (the authors: 1)."},        \
    {sec ".noise", FL_KEY_STR, "\"gaussian\"", FL_NO_BOUNDS, "gaussian|rademacher",           \
     "Law of the Hutchinson vectors v, both with E[vvᵀ] = I: N(0, I) or uniform on {−1, 1}ⁿ."}

typedef enum { FL_FF_GAUSSIAN = 0, FL_FF_RADEMACHER, FL_FF_NOISE_COUNT } fl_ff_noise;
/* "gaussian", "rademacher"; -1 when unknown. */
int fl_ff_noise_parse(const char *name);

/* A map x (B, n) -> (B, m) with its context (e.g. the condition z): what the JVP,
 * the VJP and the surrogate differentiate. */
typedef ct_tensor *(*fl_ff_map)(void *ctx, const ct_tensor *x);

/* J v of map at x by forward-mode AD (ct_jvp_fwad): x (B, n), v (B, n) -> (B, m);
 * *y_out (may be NULL) gets map(x), differentiable in reverse mode where x is. New
 * handles (scope-owned inside a scope); NULL and ct_last_error() on failure. */
ct_tensor *fl_ff_jvp(fl_ff_map map, void *ctx, const ct_tensor *x, const ct_tensor *v,
                     ct_tensor **y_out);
/* vᵀ ∂y/∂x of y (B, m) computed from x (B, n) with a graph, v (B, m) -> (B, n);
 * create_graph keeps it differentiable (the encoder's gradient goes through it). */
ct_tensor *fl_ff_vjp(const ct_tensor *y, const ct_tensor *x, const ct_tensor *v, bool create_graph);
/* Hutchinson vectors of shape s with E[vvᵀ] = I, drawn from g. */
ct_tensor *fl_ff_hutchinson_vectors(ct_shape s, ct_dtype dt, fl_ff_noise noise, ct_gen *g);

/* The volume-change surrogate of an encoder/decoder pair at u (B, D): with h = f(u)
 * (B, d) and k vectors v (B, d),
 *     surrogate = (1/k) Σ_v  vᵀ f′(u) · stopgrad(g′(h) v)          (B,)
 * whose gradient with respect to f's parameters estimates that of tr(f′ g′) in the
 * latent space — that of log|det f′(u)| when g = f⁻¹ (d = D), of −½ log det(g′ᵀ g′)
 * when g is the injective decoder and f its left inverse (d < D). vᵀ f′ is a reverse
 * pass with create_graph, g′ v a forward-mode JVP (timed against the double VJP in
 * benchmarks/perf/bench_freeform.c). Fills *h (B, d) and *u_rec = g(h) (B, D), both
 * differentiable in f's and g's parameters; the caller owns the three results (scoped
 * inside a scope). Grad mode must be on. -1 and a message on failure. */
typedef struct {
    ct_tensor *h, *u_rec, *surrogate;
} fl_ff_pass;
int fl_ff_surrogate(fl_ff_map enc, void *enc_ctx, fl_ff_map dec, void *dec_ctx,
                    const ct_tensor *u, int k, fl_ff_noise noise, ct_gen *g, fl_ff_pass *out);

/* The conditional pair: f: [u, z] (B, D + C) -> (B, d), g: [h, z] (B, d + C) -> (B, D),
 * residual MLPs of the same shape. Parameters "<name>.enc.…", "<name>.dec.…". */
typedef struct {
    int dim, latent, cond_dim;   /* D, d, C */
    int hidden, n_blocks, n_layers;
    fl_act act;
} fl_freeform_spec;
typedef struct {
    fl_mlp enc, dec;
    int dim, latent, cond_dim;
} fl_freeform;
/* The spec from the FL_FREEFORM_KEYS of section sec, for D = dim, d = latent, C. */
fl_freeform_spec fl_freeform_spec_read(const fl_config *c, const char *sec, int dim, int latent,
                                       int cond_dim);
int fl_freeform_init(fl_freeform *n, ct_params *ps, const char *name, const fl_freeform_spec *s,
                     ct_gen *g);
ct_tensor *fl_freeform_encode(const fl_freeform *n, const ct_tensor *u, const ct_tensor *z); /* (B, d) */
ct_tensor *fl_freeform_decode(const fl_freeform *n, const ct_tensor *h, const ct_tensor *z); /* (B, D) */
/* ∂f/∂u of the encoder at u (B, D) given z (B, C): (B, d, D), without a graph; one
 * forward and one reverse pass on the batch repeated d times. */
ct_tensor *fl_freeform_encoder_jacobian(const fl_freeform *n, const ct_tensor *u, const ct_tensor *z);

/* The loss settings both families share, read from FL_FREEFORM_KEYS. */
typedef struct {
    double beta;
    int hutchinson;
    fl_ff_noise noise;
} fl_ff_opts;
fl_ff_opts fl_ff_opts_read(const fl_config *c, const char *sec);

/* The batch means of the loss's parts, for the families' terms. */
typedef struct {
    double rec;       /* ‖u − g(f(u))‖² */
    double nll_z;     /* −log p_Z(f(u)) = ½‖h‖² + (d/2) log 2π */
    double volume;    /* −surrogate */
} fl_ff_parts;
/* The free-form loss, averaged over the batch:
 *     L = β‖u − g(f(u))‖² − log p_Z(f(u)) − surrogate,   p_Z = N(0, I_d).
 * With grad mode off (validation) it computes the same estimate with a graph of its
 * own and returns it detached. parts and h_out (f(u) (B, d), detached) may be NULL.
 * NULL and a message on failure. */
ct_tensor *fl_freeform_loss(const fl_freeform *n, const ct_tensor *u, const ct_tensor *z,
                            const fl_ff_opts *o, ct_gen *g, fl_ff_parts *parts, ct_tensor **h_out);
/* u = g(h; z), h ~ N(0, T² I_d): one sample per row of z (B, C) -> (B, D). */
ct_tensor *fl_freeform_sample(const fl_freeform *n, const ct_tensor *z, double temperature, ct_gen *g);

#endif
