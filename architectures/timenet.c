/* The time-conditioned residual MLP of the diffusion and flow-matching families. */
#include "architectures/timenet.h"

#include <math.h>

#include "core/log.h"

ct_tensor *fl_time_embedding(const ct_tensor *t, int dim)
{
    int half = dim / 2;
    ct_scope *s = ct_scope_begin();
    /* ω_k = exp(−log(10000) k / half)   https://pytorch.org/docs/stable/generated/torch.exp.html */
    ct_tensor *k = ct_to_dtype(ct_arange(half, CT_I64), ct_dtype_of(t));          /* (half) */
    ct_tensor *w = ct_exp(ct_muls(k, -log(10000.0) / half));                     /* (half) */
    ct_tensor *a = ct_mul(ct_muls(t, 1000.0), ct_unsqueeze(w, 0));               /* (B, half) */
    ct_tensor *e = ct_scope_keep(s, ct_cat2(ct_sin(a), ct_cos(a), 1));          /* (B, 2·half) */
    ct_scope_end(s);
    return e;
}

int fl_timenet_init(fl_timenet *n, ct_params *ps, const char *name, const fl_timenet_spec *s,
                    ct_gen *g)
{
    if (s->embed < 2 || s->embed % 2) return fl_fail("%s: time embedding %d is not even", name, s->embed);
    n->embed = s->embed;
    fl_mlp_spec m = {.in = s->dim + s->cond_dim + s->embed,
                     .out = s->dim,
                     .hidden = s->hidden,
                     .n_blocks = s->n_blocks,
                     .n_layers = s->n_layers,
                     .act = s->act,
                     .zero_last = false};
    return fl_mlp_init(&n->mlp, ps, name, &m, g);
}

ct_tensor *fl_timenet_forward(const fl_timenet *n, const ct_tensor *x, const ct_tensor *t,
                              const ct_tensor *z)
{
    ct_scope *s = ct_scope_begin();
    const ct_tensor *parts[3] = {x, z, fl_time_embedding(t, n->embed)};
    ct_tensor *h = ct_cat(parts, 3, 1);                                          /* (B, D + C + E) */
    ct_tensor *y = ct_scope_keep(s, fl_mlp_forward(&n->mlp, h));                 /* (B, D) */
    ct_scope_end(s);
    return y;
}
