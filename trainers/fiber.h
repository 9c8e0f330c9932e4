/* A conditional fiber model (DESIGN.md §3): a family's p_θ(u | z) on the standardized
 * VAE latents u, given subject representations z, trained with
 *     L = L_family(u; z) + λ · mean_batch L_fib(Dec(g_θ(ε; z)); z)
 * through the frozen VAE decoder and subject. The network sees z standardized with
 * the training set's statistics (stored with the model); the fiber loss uses raw z. */
#ifndef FL_FIBER_MODEL_H
#define FL_FIBER_MODEL_H

#include "benchmarks/eval.h"
#include "core/config.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "trainers/family.h"
#include "trainers/loop.h"
#include "trainers/subject.h"
#include "trainers/vae.h"

/* Training pairs of a split: u = the VAE's standardized encoder means, z = the
 * subject's representations of the same colored images. With colorings K > 1 every
 * digit appears K times: with its stored colors, then with K − 1 colorings drawn from
 * the dataset's variant (seeded by the dataset's seed and k), so the model sees several
 * points of each fiber. Rows are coloring-major: (K·n, ·). */
typedef struct {
    ct_tensor *u;   /* (N, D) */
    ct_tensor *z;   /* (N, d) */
} fl_latents;
int fl_latents_compute(fl_vae *vae, fl_subject *subj, const fl_dataset *ds, fl_split s,
                       int colorings, fl_latents *out);
void fl_latents_free(fl_latents *l);   /* frees the tensors; NULL fields are fine */

typedef struct fl_fiber fl_fiber;

/* A new, untrained model of the family model.family, its initialisation drawn from
 * `seed`; the condition statistics come from train->z. NULL and a message. */
fl_fiber *fl_fiber_new(const fl_config *c, const fl_latents *train);
void fl_fiber_free(fl_fiber *m);   /* NULL is a no-op */
const fl_family *fl_fiber_family(const fl_fiber *m);
ct_params *fl_fiber_params(fl_fiber *m);   /* borrowed */

/* Trains m with the shared loop (train.* keys, λ = train.lambda). checkpoint: where the
 * loop keeps its state, or NULL; it is resumed when it was written with the same
 * settings (every key but sweep.*) and discarded otherwise. The validation loss is the
 * family loss plus λ times the fiber loss on val, with fixed noise. */
int fl_fiber_train(fl_fiber *m, const fl_config *c, fl_vae *vae, fl_subject *subj,
                   const fl_latents *train, const fl_latents *val, const char *checkpoint,
                   fl_train_result *res);

/* One latent sample per row of z (raw representations, (B, d)) -> u (B, D). */
ct_tensor *fl_fiber_sample_latent(fl_fiber *m, const ct_tensor *z, ct_gen *g);
/* The same decoded to images (B, 3, 28, 28) in [0, 1]. */
ct_tensor *fl_fiber_sample(fl_fiber *m, fl_vae *vae, const ct_tensor *z, ct_gen *g);
/* m as an evaluation sampler (borrows m and vae; fl_sampler_free frees its context). */
void fl_fiber_sampler(fl_fiber *m, fl_vae *vae, fl_sampler *out);

/* The trained parameters (and condition statistics) alone, written atomically; load
 * requires a model made with the same settings. */
int fl_fiber_save(const fl_fiber *m, const char *path);
int fl_fiber_load(fl_fiber *m, const char *path);

#endif
