/* The priors of NDTM (DESIGN.md §4, issue 14): unconditional ε-prediction diffusion
 * models whose samples are images, guided by ndtm/ without training per subject.
 * - The latent prior: p(u) on the fiber VAE's standardized latent u (a fl_diff with no
 *   condition: linear β from 1e-4 to prior.beta_max, T = prior.T), trained with DDPM's
 *   objective on the VAE means of `correlated` (or prior.variant) color MNIST (fresh
 *   colors every epoch, as the VAE), its weights an EMA (prior.ema_decay); decoded through
 *   the VAE. Cached like the VAE (trainers/model_cache.h):
 *   <cache_dir>/models/prior-latent-<key>.ckpt, the key over data.*, prior.*, vae.* (its
 *   data are the VAE's latents) and the train.* keys its training reads.
 * - The pixel prior (prior.space = pixel), the paper's: the UNet of architectures/unet.h
 *   (sized by prior.unet.*) on the images scaled to [−1, 1], same schedule, DDPM's
 *   objective, prior.variant and EMA as the latent prior; trained by its own keys
 *   (prior.unet.steps, .lr, .batch_size, .seed). Cached as
 *   <cache_dir>/models/prior-pixel-<key>.ckpt, the key over data.*, prior.unet.*, the
 *   prior.* keys it reads (T, beta_max, ema_decay, report_*, variant) and the train.* keys
 *   its training reads; no VAE.
 * - A user's prior (prior.script): a TorchScript module ε(x, t) in pixel space, x
 *   (B, 3, 28, 28) in [−1, 1] and t (B,) int64 the 0-based step t − 1 ∈ [0, T), on the
 *   linear β schedule from 1e-4 to prior.beta_max of prior.T steps. Not trained; its
 *   colors are measured on demand (fl_prior_measure, `fiberlab train-prior`).
 * Every prior is seen through one interface: states x are flattened (B, D), ε(x, t) takes
 * the 1-based t, and fl_prior_decode maps states to images (B, 3, 28, 28) in [0, 1]. A
 * trained prior reports the color KL and W1 of prior.report_samples decoded samples
 * (DDIM, prior.report_steps steps, η = prior.report_eta, the leading grid t = 990 … 0)
 * against the exact color law. */
#ifndef FL_PRIOR_H
#define FL_PRIOR_H

#include <stdbool.h>
#include <stdint.h>

#include "architectures/unet.h"
#include "core/config.h"
#include "core/metrics.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "trainers/diffusion.h"
#include "trainers/vae.h"

/* Where a prior's states live: the VAE's latent (D = vae.latent), or pixels (D = 3·28·28,
 * x = 2·image − 1; x̂0 is clamped to [−1, 1]). */
typedef enum { FL_PRIOR_LATENT = 0, FL_PRIOR_PIXEL } fl_prior_space;

typedef struct {
    bool trained;            /* trained by this open (else loaded) */
    bool measured;           /* color holds its samples' metrics (a script prior: once measured) */
    int64_t steps;
    double train_seconds;
    fl_color_metrics color;  /* KL and W1 per channel of its decoded samples, and means */
} fl_prior_report;

typedef struct fl_prior fl_prior;

/* The prior of c: the user's TorchScript file when prior.script is set (a file that is
 * missing, fails on a (1, 3, 28, 28) batch or returns another shape is refused in one line
 * naming it), else the prior of prior.space (the latent one of vae, or the pixel one)
 * loaded from the cache or trained into it on ds. vae is borrowed and must outlive the
 * prior (it may be NULL with a script or a pixel prior). *out is new (fl_prior_free); -1
 * and a message (a bad prior.unet.* size names its key). */
int fl_prior_open(const fl_config *c, const fl_dataset *ds, fl_vae *vae, fl_prior **out);
/* The prior of c as fl_prior_open builds it, but with its network's initial weights:
 * neither looked up in the cache nor trained (benchmarks and tests set its parameters,
 * fl_prior_params). A script prior is fl_prior_open's. -1 and a message. */
int fl_prior_new(const fl_config *c, fl_vae *vae, fl_prior **out);
/* The parameters of its network (the latent prior's ε-network, the pixel prior's UNet);
 * NULL for a script prior. Borrowed. */
ct_params *fl_prior_params(const fl_prior *p);
/* The pixel prior's UNet as prior.unet.* sizes it, for 3 × 28 × 28 images: -1 and a
 * message naming the key when it cannot be built. */
int fl_prior_unet_spec(const fl_config *c, fl_unet_spec *s);
/* The prior's settings that the schema's bounds cannot check (with prior.space=pixel the
 * UNet's size), before anything is trained: -1 and a message naming the key.
 * fl_prior_open checks them too. */
int fl_prior_check(const fl_config *c);
/* The latent prior's ε-network and schedule as prior.* sets them, on a latent of dim:
 * unconditional, linear β to prior.beta_max, prior.report_steps and prior.report_eta as
 * its DDIM defaults. */
fl_diff_spec fl_prior_latent_spec(const fl_config *c, int dim);
/* Where the prior of c is (or would be) cached; a script prior: its file. */
int fl_prior_cache_path(const fl_config *c, char *buf, size_t n);
void fl_prior_free(fl_prior *p);   /* NULL is a no-op */

fl_prior_space fl_prior_space_of(const fl_prior *p);
int fl_prior_T(const fl_prior *p);                 /* diffusion steps T */
int64_t fl_prior_dim(const fl_prior *p);           /* D of the flattened states */
const double *fl_prior_abar(const fl_prior *p);    /* ᾱ_0 … ᾱ_T */
/* ε(x, t): x (B, D) at the 1-based step t ∈ [1, T] -> (B, D), differentiable w.r.t. x. Its
 * signature is an fl_eps_fn's (trainers/diffusion.h) with ctx the prior. */
ct_tensor *fl_prior_eps(void *p, const ct_tensor *x, int t);
/* States (B, D) -> images (B, 3, 28, 28) in [0, 1], differentiable; and images -> states. */
ct_tensor *fl_prior_decode(const fl_prior *p, const ct_tensor *x);
ct_tensor *fl_prior_encode(const fl_prior *p, const ct_tensor *img);
/* DDPM's loss of a trained prior on images img (B, 3, 28, 28) in [0, 1], in its space
 * (t ~ U{1 … T}, ε ~ N(0, I) from g; the loss it trains on) -> (); NULL and a message for
 * a script prior. */
ct_tensor *fl_prior_ddpm_loss(const fl_prior *p, const ct_tensor *img, ct_gen *g);
/* The clamp of x̂0 in the prior's space: 1 in pixels, 0 (none) in the latent. */
double fl_prior_clamp(const fl_prior *p);
fl_vae *fl_prior_vae(const fl_prior *p);           /* NULL for a script prior opened without */
/* Samples the prior's report (colors against the law) when it has none yet: the script
 * prior's, measured on demand. 0, or -1 and a message. */
int fl_prior_measure(fl_prior *p);
/* The empty condition (B, 0) of an unconditional ε-network. */
ct_tensor *fl_prior_no_cond(int64_t b);
const char *fl_prior_path(const fl_prior *p);
const fl_prior_report *fl_prior_report_of(const fl_prior *p);

/* n unconditional samples (n, D) in the prior's space: plain DDIM from x_T ~ N(0, I)
 * with S steps at η on the leading grid (the NDTM sampler at γ = 0). */
ct_tensor *fl_prior_sample(const fl_prior *p, int64_t n, int S, double eta, ct_gen *g);

extern const fl_key fl_keys_prior[];

#endif
