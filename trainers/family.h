/* A fiber-model family: a conditional generative model p_θ(u | z) of VAE latents u
 * (B, D) given subject representations z (B, C). A family supplies only its loss and
 * its sampler; training (trainers/loop.h), the fiber-loss path (trainers/fiber.h),
 * checkpoints and evaluation are shared. */
#ifndef FL_FAMILY_H
#define FL_FAMILY_H

#include "core/config.h"
#include "ctorch/ct.h"
#include "trainers/loop.h"

typedef struct fl_family {
    const char *name;          /* "nf", … : the value of model.family */
    const char *summary;
    /* Builds a model whose parameters and buffers go into ps; NULL + fl_error(). */
    void *(*create)(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g);
    void (*destroy)(void *model);
    /* The family's loss on a batch, averaged over it (grad mode decides whether it is
     * differentiable); adds its terms (e.g. "nll"). */
    ct_tensor *(*loss)(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                       fl_terms *terms);
    /* One sample u ~ p_θ(u | z) per row of z, differentiable with respect to θ when grad
     * mode is on (the fiber loss trains through it). */
    ct_tensor *(*sample)(void *model, const ct_tensor *z, ct_gen *g);
} fl_family;

/* The family names, as the choices of model.family and sweep.families. */
#define FL_FAMILY_NAMES "nf"

/* The family named name, or NULL. */
const fl_family *fl_family_find(const char *name);
/* "nf|…" — the names, for messages and the schema. */
const char *fl_family_names(void);

extern const fl_family fl_family_nf;   /* trainers/nf.c */

extern const fl_key fl_keys_model[];   /* trainers/family.c */
extern const fl_key fl_keys_nf[];      /* trainers/nf.c */

#endif
