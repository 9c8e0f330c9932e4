/* A fiber-model family: a conditional generative model p_θ(u | z) of points u (B, D) of
 * its space — the VAE latent, or the pixels themselves — given subject representations
 * z (B, C). A family supplies its network, its loss and its sampler; training
 * (trainers/loop.h), the fiber-loss path space → image → subject, EMA weights,
 * checkpoints, the model store and evaluation are shared (trainers/fiber.h).
 *
 * The registry: the built-in families come from trainers/families.h; fl_family_register
 * adds one at run time (a test's toy family, a plug-in) with its keys and its name in
 * the choices of model.family and sweep.families. */
#ifndef FL_FAMILY_H
#define FL_FAMILY_H

#include <stdbool.h>
#include <stdint.h>

#include "architectures/inn.h"
#include "core/config.h"
#include "ctorch/ct.h"
#include "trainers/families.h"
#include "trainers/loop.h"

/* Where a family's points live. */
typedef enum {
    FL_SPACE_LATENT = 0,  /* the fiber VAE's standardized latent; images are decoded */
    FL_SPACE_PIXELS,      /* colored images in [0, 1], flattened to (B, 3·28·28) */
    FL_SPACE_COUNT
} fl_space;
const char *fl_space_name(fl_space s);   /* "latent", "pixels" */

/* How one call draws samples. */
typedef struct {
    int steps;            /* solver steps of an iterative sampler; 0: the family's own
                             default (ignored by one-shot samplers such as NF) */
    double temperature;   /* scale of the base noise; 1: the trained distribution */
    bool keep_graph;      /* true: the samples are differentiable with respect to θ (the
                             fiber-loss term; called with grad mode on); false: called
                             with grad mode off (evaluation) */
} fl_sample_opts;

typedef struct fl_family {
    const char *name;          /* "nf", …: the value of model.family */
    const char *summary;
    const fl_key *keys;        /* its own section <name>.*; NULL when it has none */
    fl_space space;
    /* Checks the family's settings against the dimensions before any work; -1 and a
     * message naming the key. May be NULL. */
    int (*check)(const fl_config *c, int u_dim, int z_dim);
    /* Builds a model whose parameters and buffers go into ps; NULL + fl_error(). */
    void *(*create)(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g);
    void (*destroy)(void *model);
    /* The family's loss on a batch, averaged over it (grad mode decides whether it is
     * differentiable); adds its terms (e.g. "nll"). */
    ct_tensor *(*loss)(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                       fl_terms *terms);
    /* One sample u ~ p_θ(u | z) per row of z (B, C) -> (B, D), drawn as o says. */
    ct_tensor *(*sample)(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g);
    /* Called after every applied optimizer step (step: steps done, of total): noise
     * annealing and other schedules. May be NULL. -1 and a message stop training. */
    int (*after_step)(void *model, int64_t step, int64_t total);
} fl_family;

/* The family named name (built in or registered), or NULL. */
const fl_family *fl_family_find(const char *name);
int fl_family_count(void);
const fl_family *fl_family_at(int i);
/* "nf|…": the names of every family, for messages. */
const char *fl_family_names(void);
/* Adds f (borrowed: it must outlive every use) to the registry, its keys to the schema
 * and its name to the choices of model.family and sweep.families. Before the first
 * config is made. -1 and a message on a duplicate name or key. */
int fl_family_register(const fl_family *f);

/* The subnet and mixing keys of a family built on the coupling INN of
 * architectures/inn.h, in its section P (a string literal): P.hidden, P.layers, P.clamp,
 * P.mixing, P.actnorm, P.activation. The family adds its own step counts. */
#define FL_INN_KEYS(P)                                                                      \
    {P ".hidden", FL_KEY_INT, "256", 1, 65536, NULL, "Width of the coupling subnetworks."},  \
    {P ".layers", FL_KEY_INT, "2", 1, 16, NULL, "Hidden layers of each coupling subnetwork."}, \
    {P ".coupling", FL_KEY_STR, "\"affine\"", FL_NO_BOUNDS, "affine|spline",                 \
     "What each coupling applies to its half: the affine map (RealNVP/Glow) or a monotone "  \
     "rational-quadratic spline with linear tails (neural spline flows)."},                  \
    {P ".clamp", FL_KEY_NUM, "2", 0.1, 100, NULL,                                           \
     "Affine couplings: soft clamp of the log-scales, s ↦ clamp·(2/π)·atan(s/clamp)."},     \
    {P ".bins", FL_KEY_INT, "8", 2, 64, NULL,                                               \
     "Spline couplings: bins of each spline on [-bound, bound]."},                          \
    {P ".bound", FL_KEY_NUM, "5", 0.1, 100, NULL,                                           \
     "Spline couplings: the spline acts on [-bound, bound], the identity outside."},        \
    {P ".mixing", FL_KEY_STR, "\"orthogonal\"", FL_NO_BOUNDS, "permute|orthogonal",          \
     "Fixed mixing between couplings: a random permutation or a random orthogonal matrix."}, \
    {P ".actnorm", FL_KEY_BOOL, "true", FL_NO_BOUNDS, NULL,                                 \
     "ActNorm before each coupling, initialised from the first batch."},                    \
    {P ".activation", FL_KEY_STR, "\"silu\"", FL_NO_BOUNDS, "silu|relu|tanh|gelu|leaky_relu", \
     "Activation of the subnetworks."}
/* The INN of n_steps on dim dimensions given cond_dim, its subnets and mixing read from
 * the FL_INN_KEYS of section (e.g. "nf"). */
fl_inn_spec fl_family_inn_spec(const fl_config *c, const char *section, int dim, int cond_dim,
                               int n_steps);

#define FL_FAMILY_DECL_(id, summary) extern const fl_family fl_family_##id;
FL_FAMILIES(FL_FAMILY_DECL_)

extern const fl_key fl_keys_model[];   /* trainers/family.c */

#endif
