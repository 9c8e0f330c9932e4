/* The conditional encoder/decoder pair of the free-form flows and their Hutchinson
 * volume-change surrogate (see freeform.h). */
#include "architectures/freeform.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

int fl_ff_noise_parse(const char *name)
{
    if (strcmp(name, "gaussian") == 0) return FL_FF_GAUSSIAN;
    if (strcmp(name, "rademacher") == 0) return FL_FF_RADEMACHER;
    return -1;
}

ct_tensor *fl_ff_jvp(fl_ff_map map, void *ctx, const ct_tensor *x, const ct_tensor *v,
                     ct_tensor **y_out)
{
    return ct_jvp_fwad(map, ctx, x, v, y_out);
}

ct_tensor *fl_ff_vjp(const ct_tensor *y, const ct_tensor *x, const ct_tensor *v, bool create_graph)
{
    return ct_vjp(y, x, v, create_graph);
}

ct_tensor *fl_ff_hutchinson_vectors(ct_shape s, ct_dtype dt, fl_ff_noise noise, ct_gen *g)
{
    if (noise == FL_FF_GAUSSIAN) return ct_randn(s, dt, g);
    ct_scope *sc = ct_scope_begin();
    /* ±1 with probability ½ each: 2·[U < ½] − 1 */
    ct_tensor *r = ct_adds(ct_muls(ct_to_dtype(ct_lts(ct_rand(s, dt, g), 0.5), dt), 2.0), -1.0);
    ct_tensor *v = ct_scope_keep(sc, r);
    ct_scope_end(sc);
    return v;
}

int fl_ff_surrogate(fl_ff_map enc, void *enc_ctx, fl_ff_map dec, void *dec_ctx,
                    const ct_tensor *u, int k, fl_ff_noise noise, ct_gen *g, fl_ff_pass *out)
{
    memset(out, 0, sizeof *out);
    if (!ct_grad_enabled()) return fl_fail("free-form surrogate: grad mode is off");
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_detach(u);                                   /* (B, D), a leaf */
    ct_set_requires_grad(x, true);
    ct_tensor *h = enc(enc_ctx, x);                                /* (B, d) */
    ct_tensor *u_rec = NULL, *surr = NULL;
    for (int i = 0; i < k && h; i++) {
        ct_tensor *v = fl_ff_hutchinson_vectors(ct_shape_of(h), ct_dtype_of(h), noise, g); /* (B, d) */
        /* g′(h) v, forward mode; the first pass also gives g(h) with its reverse graph */
        ct_tensor *gv = fl_ff_jvp(dec, dec_ctx, h, v, i == 0 ? &u_rec : NULL);   /* (B, D) */
        ct_tensor *vf = fl_ff_vjp(h, x, v, true);                                /* (B, D) */
        ct_tensor *t = ct_sum_dim(ct_mul(vf, ct_detach(gv)), 1, false);         /* (B,) */
        surr = surr ? ct_add(surr, t) : t;
        if (!t) break;
    }
    if (surr && k > 1) surr = ct_muls(surr, 1.0 / k);
    if (!h || !u_rec || !surr) {
        ct_scope_end(s);
        return fl_fail("free-form surrogate: %s", ct_last_error());
    }
    out->h = ct_scope_keep(s, h);
    out->u_rec = ct_scope_keep(s, u_rec);
    out->surrogate = ct_scope_keep(s, surr);
    ct_scope_end(s);
    return 0;
}

/* ---- the conditional pair ------------------------------------------------------------- */

fl_freeform_spec fl_freeform_spec_read(const fl_config *c, const char *sec, int dim, int latent,
                                       int cond_dim)
{
    char k[64];
#define KEY_(name) (snprintf(k, sizeof k, "%s." name, sec), k)
    fl_freeform_spec s = {.dim = dim, .latent = latent, .cond_dim = cond_dim};
    s.hidden = (int)fl_cfg_int(c, KEY_("hidden"));
    s.n_blocks = (int)fl_cfg_int(c, KEY_("blocks"));
    s.n_layers = (int)fl_cfg_int(c, KEY_("layers"));
    s.act = fl_act_parse(fl_cfg_str(c, KEY_("activation")));
#undef KEY_
    return s;
}

fl_ff_opts fl_ff_opts_read(const fl_config *c, const char *sec)
{
    char k[64];
    fl_ff_opts o;
    snprintf(k, sizeof k, "%s.beta", sec);
    o.beta = fl_cfg_num(c, k);
    snprintf(k, sizeof k, "%s.hutchinson", sec);
    o.hutchinson = (int)fl_cfg_int(c, k);
    snprintf(k, sizeof k, "%s.noise", sec);
    o.noise = fl_ff_noise_parse(fl_cfg_str(c, k));
    return o;
}

int fl_freeform_init(fl_freeform *n, ct_params *ps, const char *name, const fl_freeform_spec *s,
                     ct_gen *g)
{
    char key[256];
    n->dim = s->dim;
    n->latent = s->latent;
    n->cond_dim = s->cond_dim;
    fl_mlp_spec e = {.in = s->dim + s->cond_dim, .out = s->latent, .hidden = s->hidden,
                     .n_blocks = s->n_blocks, .n_layers = s->n_layers, .act = s->act};
    fl_mlp_spec d = e;
    d.in = s->latent + s->cond_dim;
    d.out = s->dim;
    snprintf(key, sizeof key, "%.200s.enc", name);
    if (fl_mlp_init(&n->enc, ps, key, &e, g)) return -1;
    snprintf(key, sizeof key, "%.200s.dec", name);
    return fl_mlp_init(&n->dec, ps, key, &d, g);
}

/* An MLP on [x, z] (B, n + C) -> (B, out). */
static ct_tensor *mlp_on_cat(const fl_mlp *m, const ct_tensor *x, const ct_tensor *z)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *y = ct_scope_keep(s, fl_mlp_forward(m, ct_cat2(x, z, 1)));
    ct_scope_end(s);
    return y;
}

ct_tensor *fl_freeform_encode(const fl_freeform *n, const ct_tensor *u, const ct_tensor *z)
{
    return mlp_on_cat(&n->enc, u, z);
}

ct_tensor *fl_freeform_decode(const fl_freeform *n, const ct_tensor *h, const ct_tensor *z)
{
    return mlp_on_cat(&n->dec, h, z);
}

ct_tensor *fl_freeform_encoder_jacobian(const fl_freeform *n, const ct_tensor *u, const ct_tensor *z)
{
    int64_t b = ct_size(u, 0);
    int d = n->latent, D = n->dim;
    bool grad = ct_set_grad_enabled(true);
    ct_scope *s = ct_scope_begin();
    /* block i of the repeated batch carries the cotangent e_i: one reverse pass gives
     * row i of ∂f/∂u for every sample */
    ct_tensor *x = ct_repeat(ct_detach(u), CT_SHAPE(d, 1));                     /* (d·B, D) */
    ct_set_requires_grad(x, true);
    ct_tensor *y = fl_freeform_encode(n, x, ct_repeat(z, CT_SHAPE(d, 1)));      /* (d·B, d) */
    ct_tensor *e = ct_repeat_interleave(ct_eye(d, ct_dtype_of(u)), b, 0);       /* (d·B, d) */
    ct_tensor *rows = ct_vjp(y, x, e, false);                                   /* (d·B, D) */
    ct_tensor *j = ct_transpose(ct_reshape(rows, CT_SHAPE(d, b, D)), 0, 1);     /* (B, d, D) */
    ct_tensor *r = ct_scope_keep(s, ct_contiguous(j));
    ct_scope_end(s);
    ct_set_grad_enabled(grad);
    return r;
}

/* ---- the loss and the sampler --------------------------------------------------------- */

typedef struct {
    const fl_freeform *n;
    const ct_tensor *z;
} pair_ctx;

static ct_tensor *enc_map(void *ctx, const ct_tensor *x)
{
    pair_ctx *p = ctx;
    return fl_freeform_encode(p->n, x, p->z);
}

static ct_tensor *dec_map(void *ctx, const ct_tensor *h)
{
    pair_ctx *p = ctx;
    return fl_freeform_decode(p->n, h, p->z);
}

ct_tensor *fl_freeform_loss(const fl_freeform *n, const ct_tensor *u, const ct_tensor *z,
                            const fl_ff_opts *o, ct_gen *g, fl_ff_parts *parts, ct_tensor **h_out)
{
    bool grad = ct_set_grad_enabled(true);   /* the surrogate needs its reverse passes */
    ct_scope *s = ct_scope_begin();
    pair_ctx p = {n, z};
    fl_ff_pass f;
    ct_tensor *loss = NULL;
    if (fl_ff_surrogate(enc_map, &p, dec_map, &p, u, o->hutchinson, o->noise, g, &f) == 0) {
        ct_tensor *rec = ct_sum_dim(ct_square(ct_sub(u, f.u_rec)), 1, false);            /* (B,) */
        ct_tensor *nll_z = ct_adds(ct_muls(ct_sum_dim(ct_square(f.h), 1, false), 0.5),
                                   0.5 * n->latent * log(2 * M_PI));                     /* (B,) */
        ct_tensor *l = ct_mean(ct_sub(ct_axpy(nll_z, o->beta, rec), f.surrogate));      /* () */
        if (l && parts) {
            parts->rec = ct_item(ct_mean(rec));
            parts->nll_z = ct_item(ct_mean(nll_z));
            parts->volume = -ct_item(ct_mean(f.surrogate));
        }
        if (l && h_out) *h_out = ct_scope_keep(s, ct_detach(f.h));
        loss = ct_scope_keep(s, grad ? l : ct_detach(l));
        if (!loss) fl_fail("free-form loss: %s", ct_last_error());
    }
    ct_scope_end(s);
    ct_set_grad_enabled(grad);
    return loss;
}

ct_tensor *fl_freeform_sample(const fl_freeform *n, const ct_tensor *z, double temperature, ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h = ct_randn(CT_SHAPE(ct_size(z, 0), n->latent), ct_dtype_of(z), g);    /* (B, d) */
    if (temperature != 1.0) h = ct_muls(h, temperature);
    ct_tensor *u = ct_scope_keep(s, fl_freeform_decode(n, h, z));                      /* (B, D) */
    ct_scope_end(s);
    return u;
}
