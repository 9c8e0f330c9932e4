/* FIF: the free-form injective flow of Sorrenson et al. (2023) on the D-dim latent u,
 * conditioned on z: an encoder f(u; z) -> (B, d) and a decoder g(h; z) -> (B, D) with
 * d = fif.latent < D (the authors: 3), the pair of architectures/freeform.h. The model
 * density lives on the decoder's d-dim manifold,
 *     −log p(u | z) = −log p_Z(f(u)) + ½ log det(g′ᵀ g′)    at u = g(f(u)),
 * and the volume term is estimated as in the paper, in the latent space: with f the left
 * inverse of g (f(g(h)) = h, so g′ ≈ f′⁺ = f′ᵀ(f′ f′ᵀ)⁻¹), ½ log det(g′ᵀ g′) ≈
 * −½ log det(f′ f′ᵀ), whose gradient in f's parameters is −tr(∂f′ f′⁺) ≈
 * −∂ tr(f′ stopgrad(g′)) = −∂ E_v[vᵀ f′(u) · stopgrad(g′(h) v)], v (B, d) Hutchinson
 * vectors: FFF's surrogate (fl_ff_surrogate), traced over d instead of D dimensions.
 * The reconstruction term β‖u − g(f(u))‖² pulls the manifold onto the data:
 *     L = β‖u − g(f(u))‖² − log p_Z(f(u)) − vᵀ f′(u) · stopgrad(g′(f(u)) v).
 * Sampling: h ~ N(0, T² I_d), u = g(h; z). */
#include <stdlib.h>

#include "architectures/freeform.h"
#include "core/log.h"
#include "trainers/family.h"
#include "trainers/freeflow.h"

const fl_key fl_keys_fif[] = {
    FL_FREEFORM_KEYS("fif"),
    {"fif.latent", FL_KEY_INT, "3", 1, 65536, NULL,
     "Dimension d of the manifold the decoder spans (below vae.latent; the authors: 3)."},
    FL_KEYS_END,
};

typedef struct {
    fl_freeform net;
    fl_ff_opts opts;
} fif_model;

static int fif_check(const fl_config *c, int u_dim, int z_dim)
{
    (void)z_dim;
    int64_t d = fl_cfg_int(c, "fif.latent");
    if (d >= u_dim)
        return fl_fail("fif.latent: %lld is not below the latent dimension %d (vae.latent)",
                       (long long)d, u_dim);
    return 0;
}

static void *fif_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    if (fif_check(c, u_dim, z_dim)) return NULL;
    fif_model *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    fl_freeform_spec s = fl_freeform_spec_read(c, "fif", u_dim, (int)fl_cfg_int(c, "fif.latent"), z_dim);
    m->opts = fl_ff_opts_read(c, "fif");
    if (fl_freeform_init(&m->net, ps, "fif", &s, g)) {
        fl_fail_ctx("fif network");
        free(m);
        return NULL;
    }
    return m;
}

static void fif_destroy(void *model) { free(model); }

const fl_freeform *fl_fif_net(const void *model) { return &((const fif_model *)model)->net; }

static ct_tensor *fif_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                           fl_terms *terms)
{
    fif_model *m = model;
    fl_ff_parts p;
    ct_tensor *loss = fl_freeform_loss(&m->net, u, z, &m->opts, g, &p, NULL);
    if (loss && terms) {
        fl_terms_add(terms, "rec", p.rec);
        fl_terms_add(terms, "nll_z", p.nll_z);
        fl_terms_add(terms, "volume", p.volume);
    }
    return loss;
}

/* One decoder pass: o->steps does not apply. */
static ct_tensor *fif_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    fif_model *m = model;
    return fl_freeform_sample(&m->net, z, o->temperature, g);
}

const fl_family fl_family_fif = {
    .name = "fif",
    .summary = "free-form injective flow (Sorrenson et al. 2023): a d-dim manifold, decoded h ~ N(0, I_d)",
    .keys = fl_keys_fif,
    .space = FL_SPACE_LATENT,
    .check = fif_check,
    .create = fif_create,
    .destroy = fif_destroy,
    .loss = fif_loss,
    .sample = fif_sample,
};
