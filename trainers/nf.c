/* NF: a conditional coupling INN (RealNVP/Glow style) on the VAE latent,
 * L = −log p_θ(u | z) = ½‖F(u; z)‖² + (D/2) log 2π − log|det ∂F/∂u|, per sample. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "architectures/inn.h"
#include "core/log.h"
#include "trainers/family.h"

const fl_key fl_keys_nf[] = {
    {"nf.blocks", FL_KEY_INT, "8", 1, 256, NULL, "Coupling steps ([ActNorm,] coupling, mixing)."},
    FL_INN_KEYS("nf"),
    FL_KEYS_END,
};

typedef struct {
    fl_inn *inn;
    int dim;
} nf_model;

static void *nf_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    nf_model *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    fl_inn_spec s = fl_family_inn_spec(c, "nf", u_dim, z_dim, (int)fl_cfg_int(c, "nf.blocks"));
    m->dim = u_dim;
    m->inn = fl_inn_new(ps, "nf", &s, g);
    if (!m->inn) {
        free(m);
        return NULL;
    }
    return m;
}

static void nf_destroy(void *model)
{
    nf_model *m = model;
    if (!m) return;
    fl_inn_free(m->inn);
    free(m);
}

static ct_tensor *nf_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                          fl_terms *terms)
{
    nf_model *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *logdet = NULL;
    ct_tensor *e = fl_inn_forward(m->inn, u, z, &logdet);                    /* (B, D) */
    ct_tensor *nll = ct_sub(ct_adds(ct_muls(ct_sum_dim(ct_square(e), 1, false), 0.5),
                                    0.5 * m->dim * log(2 * M_PI)),
                            logdet);                                         /* (B,) */
    ct_tensor *loss = ct_scope_keep(s, ct_mean(nll));
    ct_scope_end(s);
    if (loss && terms) fl_terms_add(terms, "nll", ct_item(loss));
    return loss;
}

/* One pass of the inverse flow: o->steps does not apply. */
static ct_tensor *nf_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    nf_model *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *e = ct_randn(CT_SHAPE(ct_size(z, 0), m->dim), ct_dtype_of(z), g);   /* (B, D) */
    if (o->temperature != 1.0) e = ct_muls(e, o->temperature);
    ct_tensor *u = ct_scope_keep(s, fl_inn_inverse(m->inn, e, z));
    ct_scope_end(s);
    return u;
}

const fl_family fl_family_nf = {
    .name = "nf",
    .summary = "conditional normalizing flow (affine coupling INN)",
    .keys = fl_keys_nf,
    .space = FL_SPACE_LATENT,
    .create = nf_create,
    .destroy = nf_destroy,
    .loss = nf_loss,
    .sample = nf_sample,
};
