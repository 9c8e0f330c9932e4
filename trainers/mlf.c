/* MLF: a multilevel (split) conditional INN on the D-dim latent u (DESIGN.md §3):
 *     h = F₁(u; z) = [h_c, h_d]            mlf.blocks coupling steps on all D dimensions,
 *                                          split into the coarse part h_c (d = mlf.latent)
 *                                          and the details h_d (D − d)
 *     h_c | z ~ N(0, I)                    the coarse part, standard normal given z
 *     e_d = F₂(h_d; [h_c, z]) ~ N(0, I)    the details, given the coarse part and z
 *     −log p(u | z) = ½‖h_c‖² + ½‖e_d‖² + (D/2) log 2π − log|det ∂F₁| − log|det ∂F₂|
 * The injective decoding pads the base point with zeros: G(h_c; z) = F⁻¹([h_c, 0]; z),
 * i.e. the details at their mode F₂⁻¹(0; [h_c, z]).
 * Coarse supervision, the "coarse" term: mlf.coarse_weight · ‖G(h_c(u); z) − u‖² (as DNF's).
 * The authors tied their coarse part to the condition by regressing it onto z: their
 * coarse part had z's dimension, sampling set it to z, and the condition with the sampled
 * latent then determined the data. Here z enters every coupling, and a regression between
 * the coarse part and z can only fight the density (z from h_c forces z into the d
 * dimensions that must hold the fiber, while h_c is standard normal whatever z is) or do
 * nothing (a mean of h_c regressed from z: F₁ absorbs any shift it learns). That variant
 * was tried: on the conditional circle of tests/test_injective.c the coarse part then did
 * not hold the angle (zero-padded reconstruction RMS 0.54, radius ≈ 1). So the term
 * supervises what the tie has to deliver: the coarse part together with the condition
 * determines u, so the zero-padded decoding lands on the data.
 * Sampling: h_c = T·ε, e_d = T·ε′ (mlf.details = sample) or 0 (zero, the injective
 * decoding), u = F₁⁻¹([h_c, F₂⁻¹(e_d; [h_c, z])]; z). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "architectures/inn.h"
#include "core/log.h"
#include "trainers/family.h"
#include "trainers/injective.h"

const fl_key fl_keys_mlf[] = {
    {"mlf.blocks", FL_KEY_INT, "8", 1, 256, NULL,
     "Coupling steps on all D dimensions before the split."},
    {"mlf.detail_blocks", FL_KEY_INT, "4", 1, 256, NULL,
     "Coupling steps of the details flow, given the coarse part and the condition."},
    {"mlf.latent", FL_KEY_INT, "6", 1, 65536, NULL,
     "Dimensions of the coarse part, the latent the injective decoding keeps (below vae.latent)."},
    {"mlf.coarse_weight", FL_KEY_NUM, "10", 0, 1e6, NULL,
     "Weight of the coarse supervision: the zero-padded decoding F⁻¹([h_c, 0]) must give back u."},
    {"mlf.details", FL_KEY_STR, "\"zero\"", FL_NO_BOUNDS, "sample|zero",
     "Sampling of the details: drawn from their flow, or its base point set to zero (injective)."},
    FL_INN_KEYS("mlf"),
    FL_KEYS_END,
};

typedef struct {
    fl_inn *flow;        /* F₁: D dimensions given z */
    fl_inn *details;     /* F₂: D − d dimensions given [h_c, z] */
    int dim, latent;
    double coarse_weight;
    bool zero_details;
} mlf_model;

static int mlf_check(const fl_config *c, int u_dim, int z_dim)
{
    (void)z_dim;
    int64_t d = fl_cfg_int(c, "mlf.latent");
    if (d >= u_dim)
        return fl_fail("mlf.latent: %lld is not below the latent dimension %d (vae.latent)",
                       (long long)d, u_dim);
    if (u_dim - d < 2)
        return fl_fail("mlf.latent: %lld leaves %lld detail dimension of the %d of vae.latent; "
                       "the details flow needs at least 2", (long long)d, (long long)(u_dim - d), u_dim);
    return 0;
}

static void mlf_destroy(void *model)
{
    mlf_model *m = model;
    if (!m) return;
    fl_inn_free(m->flow);
    fl_inn_free(m->details);
    free(m);
}

static void *mlf_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    if (mlf_check(c, u_dim, z_dim)) return NULL;
    mlf_model *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    m->dim = u_dim;
    m->latent = (int)fl_cfg_int(c, "mlf.latent");
    m->coarse_weight = fl_cfg_num(c, "mlf.coarse_weight");
    m->zero_details = strcmp(fl_cfg_str(c, "mlf.details"), "zero") == 0;
    fl_inn_spec s1 = fl_family_inn_spec(c, "mlf", u_dim, z_dim, (int)fl_cfg_int(c, "mlf.blocks"));
    fl_inn_spec s2 = fl_family_inn_spec(c, "mlf", u_dim - m->latent, m->latent + z_dim,
                                        (int)fl_cfg_int(c, "mlf.detail_blocks"));
    m->flow = fl_inn_new(ps, "mlf.flow", &s1, g);
    if (m->flow) m->details = fl_inn_new(ps, "mlf.details", &s2, g);
    if (!m->details) {
        mlf_destroy(m);
        return NULL;
    }
    return m;
}

/* The two flows' prepared conditions: the flow's from z, the details' from [h_c, z]. */
typedef struct {
    fl_inn_cond *flow, *details;
} mlf_cond;

static void mlf_cond_free(mlf_cond *k)
{
    fl_inn_cond_free(k->flow);
    fl_inn_cond_free(k->details);
}

/* The details' condition once h_c is known (in the open scope); -1 on failure. */
static int details_condition(mlf_model *m, const ct_tensor *h_c, const ct_tensor *z, mlf_cond *k)
{
    k->details = fl_inn_condition(m->details, ct_cat2(h_c, z, 1));
    return k->details ? 0 : -1;
}

/* The forward pass; k->flow given, k->details set here (both in the caller's scope). */
static ct_tensor *forward(mlf_model *m, const ct_tensor *u, const ct_tensor *z, mlf_cond *k,
                          ct_tensor **logdet)
{
    ct_tensor *ld1 = NULL, *ld2 = NULL;
    ct_tensor *h = fl_inn_forward_cond(m->flow, u, k->flow, &ld1);               /* (B, D) */
    ct_tensor *h_c = ct_narrow(h, 1, 0, m->latent);                               /* (B, d) */
    ct_tensor *h_d = ct_narrow(h, 1, m->latent, m->dim - m->latent);              /* (B, D − d) */
    if (!h || details_condition(m, h_c, z, k)) return NULL;
    ct_tensor *e_d = fl_inn_forward_cond(m->details, h_d, k->details, &ld2);      /* (B, D − d) */
    if (logdet) *logdet = ct_add(ld1, ld2);                                       /* (B,) */
    return ct_cat2(h_c, e_d, 1);                                                  /* (B, D) */
}

/* The inverse pass of base = [h_c, e_d] given both prepared conditions. */
static ct_tensor *inverse(mlf_model *m, const ct_tensor *base, const mlf_cond *k)
{
    ct_tensor *h_c = ct_narrow(base, 1, 0, m->latent);                            /* (B, d) */
    ct_tensor *e_d = ct_narrow(base, 1, m->latent, m->dim - m->latent);           /* (B, D − d) */
    ct_tensor *h_d = fl_inn_inverse_cond(m->details, e_d, k->details);            /* (B, D − d) */
    return fl_inn_inverse_cond(m->flow, ct_cat2(h_c, h_d, 1), k->flow);           /* (B, D) */
}

/* F⁻¹([h_c, 0]) given both prepared conditions. */
static ct_tensor *decode(mlf_model *m, const ct_tensor *h_c, const mlf_cond *k)
{
    ct_tensor *e_d = ct_zeros(CT_SHAPE(ct_size(h_c, 0), m->dim - m->latent), ct_dtype_of(h_c));
    return inverse(m, ct_cat2(h_c, e_d, 1), k);                                   /* (B, D) */
}

ct_tensor *fl_mlf_forward(void *mlf, const ct_tensor *u, const ct_tensor *z, ct_tensor **logdet)
{
    mlf_model *m = mlf;
    ct_scope *s = ct_scope_begin();
    mlf_cond k = {fl_inn_condition(m->flow, z), NULL};
    ct_tensor *ld = NULL, *base = k.flow ? forward(m, u, z, &k, &ld) : NULL;
    if (logdet) *logdet = ct_scope_keep(s, ld);
    base = ct_scope_keep(s, base);
    mlf_cond_free(&k);
    ct_scope_end(s);
    return base;
}

ct_tensor *fl_mlf_inverse(void *mlf, const ct_tensor *base, const ct_tensor *z)
{
    mlf_model *m = mlf;
    ct_scope *s = ct_scope_begin();
    mlf_cond k = {fl_inn_condition(m->flow, z), NULL};
    ct_tensor *u = k.flow && !details_condition(m, ct_narrow(base, 1, 0, m->latent), z, &k)
                       ? inverse(m, base, &k) : NULL;
    u = ct_scope_keep(s, u);
    mlf_cond_free(&k);
    ct_scope_end(s);
    return u;
}

ct_tensor *fl_mlf_decode(void *mlf, const ct_tensor *h_c, const ct_tensor *z)
{
    mlf_model *m = mlf;
    ct_scope *s = ct_scope_begin();
    mlf_cond k = {fl_inn_condition(m->flow, z), NULL};
    ct_tensor *u = k.flow && !details_condition(m, h_c, z, &k) ? decode(m, h_c, &k) : NULL;
    u = ct_scope_keep(s, u);
    mlf_cond_free(&k);
    ct_scope_end(s);
    return u;
}

static ct_tensor *mlf_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                           fl_terms *terms)
{
    (void)g;
    mlf_model *m = model;
    ct_scope *s = ct_scope_begin();
    ct_tensor *logdet = NULL;
    /* both flows' conditions prepared once, for the forward pass and the decoding */
    mlf_cond k = {fl_inn_condition(m->flow, z), NULL};
    ct_tensor *base = k.flow ? forward(m, u, z, &k, &logdet) : NULL;              /* (B, D) */
    ct_tensor *h_c = ct_narrow(base, 1, 0, m->latent);                            /* (B, d) */
    ct_tensor *e_d = ct_narrow(base, 1, m->latent, m->dim - m->latent);           /* (B, D − d) */
    ct_tensor *sq = ct_add(ct_sum_dim(ct_square(h_c), 1, false),
                           ct_sum_dim(ct_square(e_d), 1, false));                 /* (B,) */
    ct_tensor *nll = ct_mean(ct_sub(ct_adds(ct_muls(sq, 0.5), 0.5 * m->dim * log(2 * M_PI)),
                                    logdet));                                     /* () */
    ct_tensor *u_hat = base ? decode(m, h_c, &k) : NULL;                          /* (B, D) */
    mlf_cond_free(&k);
    ct_tensor *coarse = ct_mean(ct_sum_dim(ct_square(ct_sub(u_hat, u)), 1, false)); /* () */
    ct_tensor *loss = ct_scope_keep(s, ct_axpy(nll, m->coarse_weight, coarse));
    double v_nll = nll ? ct_item(nll) : NAN, v_coarse = coarse ? ct_item(coarse) : NAN;
    ct_scope_end(s);
    if (loss && terms) {
        fl_terms_add(terms, "nll", v_nll);
        fl_terms_add(terms, "coarse", v_coarse);
    }
    return loss;
}

static ct_tensor *mlf_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    mlf_model *m = model;
    ct_scope *s = ct_scope_begin();
    int64_t b = ct_size(z, 0);
    ct_dtype dt = ct_dtype_of(z);
    ct_tensor *h_c = ct_muls(ct_randn(CT_SHAPE(b, m->latent), dt, g), o->temperature); /* (B, d) */
    ct_tensor *e_d = m->zero_details
                         ? ct_zeros(CT_SHAPE(b, m->dim - m->latent), dt)
                         : ct_muls(ct_randn(CT_SHAPE(b, m->dim - m->latent), dt, g),
                                   o->temperature);                               /* (B, D − d) */
    ct_tensor *u = ct_scope_keep(s, fl_mlf_inverse(m, ct_cat2(h_c, e_d, 1), z));  /* (B, D) */
    ct_scope_end(s);
    return u;
}

const fl_family fl_family_mlf = {
    .name = "mlf",
    .summary = "multilevel (split) conditional INN with a coarse latent and zero-padded decoding",
    .keys = fl_keys_mlf,
    .space = FL_SPACE_LATENT,
    .check = mlf_check,
    .create = mlf_create,
    .destroy = mlf_destroy,
    .loss = mlf_loss,
    .sample = mlf_sample,
};
