/* A conditional fiber model (DESIGN.md §3): a family's p_θ(u | z) on the points u of its
 * space (the standardized VAE latent, or the pixels), given subject representations z,
 * trained with
 *     L = L_family(u; z) + λ · mean_batch L_fib(image(g_θ(ε; z)); z)
 * where image() decodes through the frozen VAE (latent families) or is the identity
 * (pixel families), and L_fib goes through the frozen subject. The network sees z
 * standardized with the training set's statistics (stored with the model); the fiber
 * loss uses raw z. With train.ema_decay > 0 an exponential moving average of the
 * weights is kept, and sampling for the evaluation and the saved model use it. */
#ifndef FL_FIBER_MODEL_H
#define FL_FIBER_MODEL_H

#include "core/config.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "trainers/family.h"
#include "trainers/loop.h"
#include "trainers/sampler.h"
#include "trainers/subject.h"
#include "trainers/vae.h"

/* Training pairs of a split: u = the points of the space (latent: the VAE's
 * standardized encoder means; pixels: the colored images flattened to (N, 3·28·28)),
 * z = the subject's representations of the same colored images. With colorings K > 1
 * every digit appears K times: with its stored colors, then with K − 1 colorings drawn
 * from the dataset's variant (seeded by the dataset's seed and k), so the model sees
 * several points of each fiber. Rows are coloring-major: (K·n, ·). vae may be NULL for
 * the pixel space. */
typedef struct {
    ct_tensor *u;   /* (N, D) */
    ct_tensor *z;   /* (N, d) */
} fl_latents;
int fl_latents_compute(fl_space space, fl_vae *vae, fl_subject *subj, const fl_dataset *ds,
                       fl_split s, int colorings, fl_latents *out);
void fl_latents_free(fl_latents *l);   /* frees the tensors; NULL fields are fine */

/* The dimension of a family's space under config c (latent: vae.latent; pixels: 3·28·28). */
int fl_space_dim(fl_space space, const fl_config *c);

/* Settings of a fiber-model training, read once from the config (train.*, seed). */
typedef struct {
    double lambda;          /* train.lambda */
    int64_t batch;          /* train.batch_size */
    int64_t fiber_batch;    /* train.fiber_batch; 0: the whole batch */
    int fiber_steps;        /* train.fiber_steps: solver steps of the differentiable sampler */
    double latent_noise;    /* train.latent_noise */
    double warmup;          /* train.fiber_warmup · train.steps: steps over which λ rises */
    double ema_decay;       /* train.ema_decay; 0: no EMA */
    uint64_t seed;
} fl_fiber_train_opts;
void fl_fiber_train_opts_from_config(fl_fiber_train_opts *o, const fl_config *c);
/* The evaluation sampler's options: eval.steps, eval.temperature, no graph. */
fl_sample_opts fl_sample_opts_eval(const fl_config *c);

typedef struct fl_fiber fl_fiber;

/* A new, untrained model of the family model.family for points of u_dim and conditions
 * of z_dim, its initialisation drawn from `seed`. The condition statistics are
 * identity until fl_fiber_set_condition_stats. NULL and a message. */
fl_fiber *fl_fiber_create(const fl_config *c, int u_dim, int z_dim);
/* The same, with the condition statistics of train->z. */
fl_fiber *fl_fiber_new(const fl_config *c, const fl_latents *train);
int fl_fiber_set_condition_stats(fl_fiber *m, const ct_tensor *z);   /* z (N, d) */
void fl_fiber_free(fl_fiber *m);   /* NULL is a no-op */
const fl_family *fl_fiber_family(const fl_fiber *m);
ct_params *fl_fiber_params(fl_fiber *m);   /* borrowed: the trained set */
/* The family's own model (what its create returned; borrowed), for code that checks a
 * family's internals; it sees the condition standardized. */
void *fl_fiber_model(fl_fiber *m);
/* The EMA shadow of the parameters, or NULL (no EMA, or not trained yet); borrowed. */
ct_params *fl_fiber_ema(fl_fiber *m);
/* Puts the EMA weights into the model for sampling (once training is over). No-op
 * without EMA. */
int fl_fiber_use_ema(fl_fiber *m);

/* Trains m with the shared loop (the loop settings of train.*, o for the rest).
 * checkpoint: where the loop keeps its state, or NULL; it is resumed when it was
 * written with the same model key and discarded otherwise. The validation loss is the
 * family loss plus λ times the fiber loss on val, with fixed noise. */
int fl_fiber_train(fl_fiber *m, const fl_config *c, const fl_fiber_train_opts *o, fl_vae *vae,
                   fl_subject *subj, const fl_latents *train, const fl_latents *val,
                   const char *checkpoint, fl_train_result *res);

/* One point of the space per row of z (raw representations, (B, d)) -> (B, D). */
ct_tensor *fl_fiber_sample_space(fl_fiber *m, const ct_tensor *z, const fl_sample_opts *o,
                                 ct_gen *g);
/* Points of m's space (B, D) -> images (B, 3, 28, 28) in [0, 1]: the fiber-loss path,
 * differentiable (vae may be NULL for the pixel space). */
ct_tensor *fl_fiber_to_images(const fl_fiber *m, fl_vae *vae, const ct_tensor *u);
/* fl_fiber_sample_space, then fl_fiber_to_images. */
ct_tensor *fl_fiber_sample(fl_fiber *m, fl_vae *vae, const ct_tensor *z, const fl_sample_opts *o,
                           ct_gen *g);
/* m as an evaluation sampler with options o (borrows m and vae; fl_sampler_free frees
 * its context). */
void fl_fiber_sampler(fl_fiber *m, fl_vae *vae, const fl_sample_opts *o, fl_sampler *out);

/* The model store. A saved model holds the sampling weights (the EMA ones when there
 * are), the settings it was trained with (its config as JSON), its model key, its
 * dimensions and the training result — everything needed to score it again without
 * training. Written atomically. */
int fl_fiber_save(fl_fiber *m, const fl_config *c, const fl_train_result *tr, const char *path);
/* Opens a saved model: *config gets its settings (caller frees), tr (may be NULL) its
 * training result. NULL and "PATH: what" on failure. */
fl_fiber *fl_fiber_open_saved(const char *path, fl_config **config, fl_train_result *tr);
/* The model key (16 hex digits) a saved model was trained under; -1 when path is not a
 * readable saved model. */
int fl_fiber_saved_key(const char *path, char key[17]);

/* Checks what can be checked of a fiber-model training before any work: the family's
 * own settings against the dimensions (z_dim 0: not known yet). */
int fl_fiber_check(const fl_config *c, int z_dim);

extern const fl_key fl_keys_fiber[];   /* train.fiber_steps, train.ema_decay */

#endif
