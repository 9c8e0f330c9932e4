/* The latent prior of NDTM (DESIGN.md §4, issue 14): an unconditional ε-prediction
 * diffusion model p(u) on the fiber VAE's standardized latent u (a fl_diff with no
 * condition: linear β from 1e-4 to prior.beta_max, T = prior.T), trained with DDPM's
 * objective on the VAE means of `correlated` color MNIST (fresh colors every epoch, as
 * the VAE), its weights an EMA (prior.ema_decay). Decoded through the VAE its samples
 * are images; guiding it needs no training per subject (ndtm/ndtm.h).
 * Cached like the VAE (trainers/model_cache.h): <cache_dir>/models/prior-latent-<key>.ckpt,
 * the key over data.*, prior.*, vae.* (its data are the VAE's latents) and the train.*
 * keys its training reads. It reports the color KL and W1 of prior.report_samples
 * decoded samples (DDIM, prior.report_steps steps, η = prior.report_eta, the leading
 * grid t = 990 … 0) against the exact color law. */
#ifndef FL_PRIOR_H
#define FL_PRIOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/metrics.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "trainers/diffusion.h"
#include "trainers/vae.h"

typedef struct {
    bool trained;            /* trained by this open (else loaded) */
    int64_t steps;
    double train_seconds;
    fl_color_metrics color;  /* KL and W1 per channel of its decoded samples, and means */
} fl_prior_report;

typedef struct fl_prior fl_prior;

/* The prior of c on the latent of vae (borrowed; it must outlive the prior): loaded from
 * the cache or trained into it on ds. *out is new (fl_prior_free); -1 and a message. */
int fl_prior_open(const fl_config *c, const fl_dataset *ds, fl_vae *vae, fl_prior **out);
/* Where the prior of c is (or would be) cached. */
int fl_prior_cache_path(const fl_config *c, char *buf, size_t n);
void fl_prior_free(fl_prior *p);   /* NULL is a no-op */

const fl_diff *fl_prior_diff(const fl_prior *p);   /* its ε-network and schedule */
fl_vae *fl_prior_vae(const fl_prior *p);
const char *fl_prior_path(const fl_prior *p);
const fl_prior_report *fl_prior_report_of(const fl_prior *p);

/* n unconditional samples (n, D) of the standardized latent: plain DDIM from x_T ~ N(0, I)
 * with S steps at η on the leading grid (the NDTM sampler at γ = 0). */
ct_tensor *fl_prior_sample(const fl_prior *p, int64_t n, int S, double eta, ct_gen *g);
/* The empty condition (B, 0) of an unconditional ε-network. */
ct_tensor *fl_prior_no_cond(int64_t b);

extern const fl_key fl_keys_prior[];

#endif
