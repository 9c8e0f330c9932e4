/* DNF: the denoising normalizing flow of Horvat & Pfister (2021) on the D-dim latent u,
 * conditioned on z (DESIGN.md §3). The data are inflated with Gaussian noise of σ, and a
 * conditional INN F maps them to a manifold part h_m (d = dnf.latent) and an orthogonal
 * part h_⊥ (D − d) that holds the noise:
 *     ũ = u + σ ε,  [h_m, h_⊥] = F(ũ; z)
 *     −log p(ũ | z) = ½‖h_m‖² + ½‖h_⊥‖²/σ² + (D/2) log 2π + (D − d) log σ − log|det ∂F/∂ũ|
 *     L = −log p(ũ | z) + dnf.rec_weight · ‖F⁻¹([h_m, 0]; z) − u‖²   (terms "nll", "rec")
 * The reconstruction denoises: the manifold point of the noisy ũ must be the clean u.
 * Sampling decodes h_m = T·ε with h_⊥ = 0: u = F⁻¹([h_m, 0]; z), a point of the learned
 * d-dimensional manifold. σ is fixed, 0.1 by default (the authors used 0.01, which stalls
 * training on the standardized latent: DNF at λ = 0 scored 8.08 with it, 1.54 with 0.1);
 * no annealing. */
#include <math.h>
#include <stdlib.h>

#include "architectures/inn.h"
#include "core/log.h"
#include "trainers/family.h"
#include "trainers/injective.h"

const fl_key fl_keys_dnf[] = {
    {"dnf.blocks", FL_KEY_INT, "8", 1, 256, NULL, "Coupling steps ([ActNorm,] coupling, mixing)."},
    {"dnf.latent", FL_KEY_INT, "6", 1, 65536, NULL,
     "Dimensions of the manifold part h_m, the latent the decoding keeps (below vae.latent)."},
    {"dnf.sigma", FL_KEY_NUM, "0.1", 0, 10, NULL,
     "Standard deviation of the inflation noise, and of the orthogonal part's law (> 0), in "
     "the units of the standardized latent (the authors: 0.01, at which the 1/σ² term "
     "stalls training at the demo's size)."},
    {"dnf.rec_weight", FL_KEY_NUM, "10", 0, 1e6, NULL,
     "Weight of the reconstruction ‖F⁻¹([h_m, 0]) − u‖² of the clean point from the noisy one."},
    FL_INN_KEYS("dnf"),
    FL_KEYS_END,
};

typedef struct {
    fl_inn *flow;   /* F: D dimensions given z */
    int dim, latent;
    double sigma, rec_weight;
} dnf_model;

static int dnf_check(const fl_config *c, int u_dim, int z_dim)
{
    (void)z_dim;
    int64_t d = fl_cfg_int(c, "dnf.latent");
    if (d >= u_dim)
        return fl_fail("dnf.latent: %lld is not below the latent dimension %d (vae.latent)",
                       (long long)d, u_dim);
    double sigma = fl_cfg_num(c, "dnf.sigma");
    if (!(sigma > 0))
        return fl_fail("dnf.sigma: %g; the inflation noise needs a standard deviation above 0", sigma);
    return 0;
}

static void *dnf_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    if (dnf_check(c, u_dim, z_dim)) return NULL;
    dnf_model *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    m->dim = u_dim;
    m->latent = (int)fl_cfg_int(c, "dnf.latent");
    m->sigma = fl_cfg_num(c, "dnf.sigma");
    m->rec_weight = fl_cfg_num(c, "dnf.rec_weight");
    fl_inn_spec s = fl_family_inn_spec(c, "dnf", u_dim, z_dim, (int)fl_cfg_int(c, "dnf.blocks"));
    m->flow = fl_inn_new(ps, "dnf", &s, g);
    if (!m->flow) {
        free(m);
        return NULL;
    }
    return m;
}

static void dnf_destroy(void *model)
{
    dnf_model *m = model;
    if (!m) return;
    fl_inn_free(m->flow);
    free(m);
}

ct_tensor *fl_dnf_forward(void *dnf, const ct_tensor *u, const ct_tensor *z, ct_tensor **logdet)
{
    dnf_model *m = dnf;
    return fl_inn_forward(m->flow, u, z, logdet);                                 /* (B, D) */
}

ct_tensor *fl_dnf_inverse(void *dnf, const ct_tensor *h, const ct_tensor *z)
{
    dnf_model *m = dnf;
    return fl_inn_inverse(m->flow, h, z);                                         /* (B, D) */
}

/* F⁻¹([h_m, 0]) given the flow's prepared condition. */
static ct_tensor *decode(dnf_model *m, const ct_tensor *h_m, const fl_inn_cond *k)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h_p = ct_zeros(CT_SHAPE(ct_size(h_m, 0), m->dim - m->latent), ct_dtype_of(h_m));
    ct_tensor *u = ct_scope_keep(s, fl_inn_inverse_cond(m->flow, ct_cat2(h_m, h_p, 1), k)); /* (B, D) */
    ct_scope_end(s);
    return u;
}

ct_tensor *fl_dnf_decode(void *dnf, const ct_tensor *h_m, const ct_tensor *z)
{
    dnf_model *m = dnf;
    ct_scope *s = ct_scope_begin();
    fl_inn_cond *k = fl_inn_condition(m->flow, z);
    ct_tensor *u = ct_scope_keep(s, k ? decode(m, h_m, k) : NULL);              /* (B, D) */
    fl_inn_cond_free(k);
    ct_scope_end(s);
    return u;
}

static ct_tensor *dnf_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                           fl_terms *terms)
{
    dnf_model *m = model;
    const int D = m->dim, d = m->latent;
    ct_scope *s = ct_scope_begin();
    ct_tensor *u_t = ct_axpy(u, m->sigma, ct_randn_like(u, g));                   /* (B, D) */
    ct_tensor *logdet = NULL;
    fl_inn_cond *k = fl_inn_condition(m->flow, z);   /* for the forward pass and the decoding */
    ct_tensor *h = k ? fl_inn_forward_cond(m->flow, u_t, k, &logdet) : NULL;     /* (B, D) */
    ct_tensor *h_m = ct_narrow(h, 1, 0, d);                                       /* (B, d) */
    ct_tensor *h_p = ct_narrow(h, 1, d, D - d);                                   /* (B, D − d) */
    ct_tensor *sq = ct_axpy(ct_sum_dim(ct_square(h_m), 1, false), 1.0 / (m->sigma * m->sigma),
                            ct_sum_dim(ct_square(h_p), 1, false));                /* (B,) */
    ct_tensor *nll = ct_mean(ct_sub(
        ct_adds(ct_muls(sq, 0.5), 0.5 * D * log(2 * M_PI) + (D - d) * log(m->sigma)),
        logdet));                                                                 /* () */
    ct_tensor *u_hat = k ? decode(m, h_m, k) : NULL;                              /* (B, D) */
    fl_inn_cond_free(k);
    ct_tensor *rec = ct_mean(ct_sum_dim(ct_square(ct_sub(u_hat, u)), 1, false));  /* () */
    ct_tensor *loss = ct_scope_keep(s, ct_axpy(nll, m->rec_weight, rec));
    double v_nll = nll ? ct_item(nll) : NAN, v_rec = rec ? ct_item(rec) : NAN;
    ct_scope_end(s);
    if (loss && terms) {
        fl_terms_add(terms, "nll", v_nll);
        fl_terms_add(terms, "rec", v_rec);
    }
    return loss;
}

static ct_tensor *dnf_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    dnf_model *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *h_m = ct_randn(CT_SHAPE(ct_size(z, 0), m->latent), ct_dtype_of(z), g); /* (B, d) */
    if (o->temperature != 1.0) h_m = ct_muls(h_m, o->temperature);
    ct_tensor *u = ct_scope_keep(s, fl_dnf_decode(m, h_m, z));                    /* (B, D) */
    ct_scope_end(s);
    return u;
}

const fl_family fl_family_dnf = {
    .name = "dnf",
    .summary = "denoising normalizing flow (Horvat & Pfister 2021), decoded with h_⊥ = 0",
    .keys = fl_keys_dnf,
    .space = FL_SPACE_LATENT,
    .check = dnf_check,
    .create = dnf_create,
    .destroy = dnf_destroy,
    .loss = dnf_loss,
    .sample = dnf_sample,
};
