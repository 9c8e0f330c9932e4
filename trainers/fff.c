/* FFF: the free-form flow of Draxler et al. (2024) on the D-dim latent u, conditioned on
 * z: an encoder f(u; z) -> (B, D) and a decoder g(h; z) -> (B, D), free residual MLPs
 * (architectures/freeform.h; CPU-sized defaults of 2 blocks × [128, 128], the authors
 * 3 × [512, 512]), trained with
 *     L = β‖u − g(f(u))‖² − log p_Z(f(u)) − vᵀ f′(u) · stopgrad(g′(f(u)) v),
 * v Hutchinson vectors (E[vvᵀ] = I), p_Z = N(0, I_D); the last term's gradient in f is
 * that of log|det f′(u)| while g ≈ f⁻¹.
 * The JVP/VJP pair: vᵀ f′(u) is one reverse pass with create_graph (its gradient must
 * reach f's parameters); g′(h) v is detached and comes from forward-mode AD, not the
 * double-VJP trick. Measured with benchmarks/perf/bench_freeform.c (loss + backward,
 * D = 54, C = 48, these defaults, float32, 1 thread, on a 2-core AMD EPYC shared with
 * other jobs): B = 512, 55.3 / 57.9 ms per step forward mode against 54.4 / 58.1 ms for
 * the double VJP (two runs: equal within the noise); B = 128, 21.9 / 19.8 ms against
 * 19.8 / 38.1 ms. Neither is faster here, so the choice rests on the rest: the forward-
 * mode pass also yields g(h) with its reverse graph, so the decoder is evaluated once
 * and no create_graph graph through it is kept alive (the double VJP needs one, with a
 * dummy cotangent, for its second reverse pass).
 * The exact NLL monitor: for D ≤ fff.exact_nll_max_dim the "nll_exact" term is
 * −log p(u) = −log p_Z(f(u)) − log|det f′(u)| with the full Jacobian (one reverse pass
 * on the batch repeated D times); a term of the curves, not of the loss.
 * Sampling: h ~ N(0, T² I), u = g(h; z). */
#include <math.h>
#include <stdlib.h>

#include "architectures/freeform.h"
#include "core/log.h"
#include "trainers/family.h"
#include "trainers/freeflow.h"

const fl_key fl_keys_fff[] = {
    FL_FREEFORM_KEYS("fff"),
    {"fff.exact_nll_max_dim", FL_KEY_INT, "16", 0, 4096, NULL,
     "Largest latent dimension at which the exact NLL (full Jacobian of f) is a loss-curve "
     "term \"nll_exact\"; 0: never."},
    FL_KEYS_END,
};

typedef struct {
    fl_freeform net;
    fl_ff_opts opts;
    int exact_max;
} fff_model;

static void *fff_create(const fl_config *c, int u_dim, int z_dim, ct_params *ps, ct_gen *g)
{
    fff_model *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    fl_freeform_spec s = fl_freeform_spec_read(c, "fff", u_dim, u_dim, z_dim);
    m->opts = fl_ff_opts_read(c, "fff");
    m->exact_max = (int)fl_cfg_int(c, "fff.exact_nll_max_dim");
    if (fl_freeform_init(&m->net, ps, "fff", &s, g)) {
        fl_fail_ctx("fff network");
        free(m);
        return NULL;
    }
    return m;
}

static void fff_destroy(void *model) { free(model); }

const fl_freeform *fl_fff_net(const void *model) { return &((const fff_model *)model)->net; }

ct_tensor *fl_fff_exact_nll(const void *model, const ct_tensor *u, const ct_tensor *z)
{
    const fff_model *m = model;
    ct_scope *s = ct_scope_begin();
    bool grad = ct_set_grad_enabled(false);
    ct_tensor *h = fl_freeform_encode(&m->net, u, z);                                  /* (B, D) */
    ct_set_grad_enabled(grad);
    ct_tensor *jac = fl_freeform_encoder_jacobian(&m->net, u, z);                      /* (B, D, D) */
    ct_tensor *nll = ct_sub(ct_adds(ct_muls(ct_sum_dim(ct_square(h), 1, false), 0.5),
                                    0.5 * m->net.dim * log(2 * M_PI)),
                            ct_slogdet_abs(jac));                                      /* (B,) */
    ct_tensor *r = ct_scope_keep(s, nll);
    ct_scope_end(s);
    return r;
}

static ct_tensor *fff_loss(void *model, const ct_tensor *u, const ct_tensor *z, ct_gen *g,
                           fl_terms *terms)
{
    fff_model *m = model;
    fl_ff_parts p;
    ct_tensor *loss = fl_freeform_loss(&m->net, u, z, &m->opts, g, &p, NULL);
    if (!loss || !terms) return loss;
    fl_terms_add(terms, "rec", p.rec);
    fl_terms_add(terms, "nll_z", p.nll_z);
    fl_terms_add(terms, "volume", p.volume);
    if (m->exact_max > 0 && m->net.dim <= m->exact_max) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *nll = fl_fff_exact_nll(m, u, z);
        double v = nll ? ct_item(ct_mean(nll)) : NAN;
        ct_scope_end(s);
        if (!nll) {
            ct_free(loss);
            return fl_fail("fff exact NLL: %s", ct_last_error()), NULL;
        }
        fl_terms_add(terms, "nll_exact", v);
    }
    return loss;
}

/* One decoder pass: o->steps does not apply. */
static ct_tensor *fff_sample(void *model, const ct_tensor *z, const fl_sample_opts *o, ct_gen *g)
{
    fff_model *m = model;
    return fl_freeform_sample(&m->net, z, o->temperature, g);
}

const fl_family fl_family_fff = {
    .name = "fff",
    .summary = "free-form flow (Draxler et al. 2024): free encoder/decoder, Hutchinson volume term",
    .keys = fl_keys_fff,
    .space = FL_SPACE_LATENT,
    .create = fff_create,
    .destroy = fff_destroy,
    .loss = fff_loss,
    .sample = fff_sample,
};
