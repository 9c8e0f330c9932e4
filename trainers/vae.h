/* The VAE of colored images (DESIGN.md §3) whose latent space the conditional fiber
 * models work in: a conv encoder to a Gaussian posterior N(μ(x), diag σ²(x)) of
 * vae.latent dimensions (54, as in the paper), a conv decoder with a sigmoid output,
 * trained on the colored training images with
 *     L = vae.recon_weight · Σ_pixels (x̂ − x)² + vae.kl_weight · KL(q(u|x) ‖ N(0, I)).
 * The fiber models see the *standardized* encoder mean u = (μ(x) − m) / s, with m and s
 * the per-dimension mean and standard deviation of μ over the training set, stored with
 * the VAE. Cached like the subject (trainers/model_cache.h): <cache_dir>/models/vae-<key>.ckpt,
 * the key over data.*, vae.* and the train.* keys its training reads (vae.seed is its own
 * seed). */
#ifndef FL_VAE_H
#define FL_VAE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ctorch/ct.h"
#include "datasets/store.h"

typedef struct {
    bool trained;            /* trained by this open (else loaded) */
    int64_t steps;
    double train_seconds;
    double recon_rmse;       /* RMS pixel error of decode(encode(x)) on the test split */
    double kl;               /* mean KL(q(u|x) ‖ N(0, I)) per test image, in nats */
} fl_vae_report;

typedef struct fl_vae fl_vae;

/* The VAE of a config: loaded from the cache or trained into it (atomically; an
 * interrupted training resumes from <path>.train). Parameters frozen. *out is new
 * (fl_vae_free); -1 and a message on failure. */
int fl_vae_open(const fl_config *c, const fl_dataset *ds, fl_vae **out);
/* Where the VAE of c is (or would be) cached. */
int fl_vae_cache_path(const fl_config *c, char *buf, size_t n);
void fl_vae_free(fl_vae *v);   /* NULL is a no-op */

int fl_vae_dim(const fl_vae *v);
const char *fl_vae_path(const fl_vae *v);
const fl_vae_report *fl_vae_report_of(const fl_vae *v);

/* x (B, 3, 28, 28) in [0, 1] -> u (B, D): the standardized encoder mean. */
ct_tensor *fl_vae_encode(fl_vae *v, const ct_tensor *x);
/* u (B, D) standardized -> x̂ (B, 3, 28, 28) in [0, 1]; differentiable w.r.t. u. */
ct_tensor *fl_vae_decode(fl_vae *v, const ct_tensor *u);
/* decode(encode(x)) (B, 3, 28, 28). */
ct_tensor *fl_vae_reconstruct(fl_vae *v, const ct_tensor *x);
/* n unconditional samples: decodes prior draws ε ~ N(0, I) of the VAE's own latent
 * (not standardized), (n, 3, 28, 28). */
ct_tensor *fl_vae_sample_prior(fl_vae *v, int64_t n, ct_gen *g);
/* The standardization as prior draws: the standardized u of ε ~ N(0, I), (n, D). */
ct_tensor *fl_vae_prior_u(fl_vae *v, int64_t n, ct_gen *g);
/* fl_vae_encode for a large set, in batches with grad off: (N, 3, 28, 28) -> (N, D). */
ct_tensor *fl_vae_encode_all(fl_vae *v, const ct_tensor *x, int64_t batch);

extern const fl_key fl_keys_vae[];

#endif
