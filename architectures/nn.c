/* Linear layers and (residual) MLPs. */
#include "architectures/nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

int fl_act_parse(const char *name)
{
    static const char *names[] = {"silu", "relu", "tanh", "gelu", "leaky_relu"};
    for (int i = 0; i < FL_ACT_COUNT; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

ct_tensor *fl_act_apply(fl_act a, const ct_tensor *x)
{
    switch (a) {
    case FL_ACT_SILU: return ct_silu(x);
    case FL_ACT_RELU: return ct_relu(x);
    case FL_ACT_TANH: return ct_tanh(x);
    case FL_ACT_GELU: return ct_gelu(x);
    case FL_ACT_LEAKY: return ct_leaky_relu(x, 0.01);
    default: return NULL;
    }
}

ct_tensor *fl_uniform(ct_shape s, double bound, ct_gen *g)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *u = ct_muls(ct_adds(ct_rand(s, ct_float_dtype(), g), -0.5), 2.0 * bound);
    ct_tensor *r = ct_scope_keep(sc, u);
    ct_scope_end(sc);
    return r;
}

int fl_linear_init(fl_linear *l, ct_params *ps, const char *name, int in, int out,
                   bool zero_init, ct_gen *g)
{
    char key[256];
    double bound = 1.0 / sqrt((double)in);
    l->in = in;
    l->out = out;
    snprintf(key, sizeof key, "%.200s.weight", name);
    l->w = ct_params_add(ps, key, zero_init ? ct_zeros(CT_SHAPE(out, in), ct_float_dtype())
                                            : fl_uniform(CT_SHAPE(out, in), bound, g));
    snprintf(key, sizeof key, "%.200s.bias", name);
    l->b = ct_params_add(ps, key, zero_init ? ct_zeros(CT_SHAPE(out), ct_float_dtype())
                                            : fl_uniform(CT_SHAPE(out), bound, g));
    if (!l->w || !l->b) return fl_fail_ctx("%s", name);
    return 0;
}

ct_tensor *fl_linear_forward(const fl_linear *l, const ct_tensor *x)
{
    return ct_linear(x, l->w, l->b);
}

int fl_res_stack_init(fl_res_stack *r, ct_params *ps, const char *name, int width, int n_blocks,
                      int n_layers, fl_act act, ct_gen *g)
{
    char key[256];
    memset(r, 0, sizeof *r);
    if (n_blocks < 0 || n_layers < 0 || (n_blocks > 0 && n_layers < 1))
        return fl_fail("%s: %d blocks of %d layers", name, n_blocks, n_layers);
    int n_linear = n_blocks > 0 ? n_blocks * n_layers : n_layers;
    if (n_linear > FL_MLP_MAX) return fl_fail("%s: %d hidden layers, at most %d", name, n_linear, FL_MLP_MAX);
    r->n_blocks = n_blocks;
    r->n_layers = n_layers;
    r->width = width;
    r->act = act;
    for (int i = 0; i < n_linear; i++) {
        snprintf(key, sizeof key, "%.200s.h%d", name, i);
        if (fl_linear_init(&r->layers[i], ps, key, width, width, false, g)) return -1;
    }
    return 0;
}

ct_tensor *fl_res_stack_forward(const fl_res_stack *r, const ct_tensor *x)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h = (ct_tensor *)x;                                             /* (B, width) */
    if (r->n_blocks > 0) {
        for (int b = 0; b < r->n_blocks; b++) {
            ct_tensor *t = h;
            for (int l = 0; l < r->n_layers; l++)
                t = fl_act_apply(r->act, fl_linear_forward(&r->layers[b * r->n_layers + l], t));
            h = ct_add(h, t);                                                  /* skip */
        }
    } else {
        for (int l = 0; l < r->n_layers; l++)
            h = fl_act_apply(r->act, fl_linear_forward(&r->layers[l], h));
    }
    /* x itself when there are no layers: a new handle to it, like any op's result */
    ct_tensor *y = ct_scope_keep(s, h == x ? ct_ref(x) : h);                 /* (B, width) */
    ct_scope_end(s);
    return y;
}

int fl_mlp_init(fl_mlp *m, ct_params *ps, const char *name, const fl_mlp_spec *s, ct_gen *g)
{
    char key[256];
    memset(m, 0, sizeof *m);
    m->hidden = s->hidden;
    m->act = s->act;
    snprintf(key, sizeof key, "%.200s.in", name);
    if (fl_linear_init(&m->in_layer, ps, key, s->in, s->hidden, false, g)) return -1;
    if (fl_res_stack_init(&m->body, ps, name, s->hidden, s->n_blocks, s->n_layers, s->act, g)) return -1;
    snprintf(key, sizeof key, "%.200s.out", name);
    return fl_linear_init(&m->out_layer, ps, key, s->hidden, s->out, s->zero_last, g);
}

/* A plain MLP (no residual blocks) on x with in-layer weight w0 and bias b0 (b0 may be
 * the per-row (B, hidden) pre-activation share of another input): ctorch's one-node MLP,
 * the same kernels and numbers as the layers op by op (ctorch/ct.h, ct_mlp). */
static ct_tensor *mlp_plain(const fl_mlp *m, const ct_tensor *x, const ct_tensor *w0, const ct_tensor *b0)
{
    const ct_tensor *ws[FL_MLP_MAX + 2], *bs[FL_MLP_MAX + 2];
    int n = 0;
    ws[n] = w0, bs[n++] = b0;
    for (int l = 0; l < m->body.n_layers; l++) ws[n] = m->body.layers[l].w, bs[n++] = m->body.layers[l].b;
    ws[n] = m->out_layer.w, bs[n++] = m->out_layer.b;
    _Static_assert((int)FL_ACT_SILU == (int)CT_ACT_SILU && (int)FL_ACT_RELU == (int)CT_ACT_RELU &&
                       (int)FL_ACT_TANH == (int)CT_ACT_TANH && (int)FL_ACT_GELU == (int)CT_ACT_GELU &&
                       (int)FL_ACT_LEAKY == (int)CT_ACT_LEAKY_RELU,
                   "fl_act and ct_act differ");
    return ct_mlp(x, ws, bs, n, (ct_act)m->act);
}

/* The network after its in-layer's pre-activation h (B, hidden). */
static ct_tensor *mlp_rest(const fl_mlp *m, const ct_tensor *h)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = fl_res_stack_forward(&m->body, fl_act_apply(m->act, h)); /* (B, hidden) */
    ct_tensor *y = ct_scope_keep(s, fl_linear_forward(&m->out_layer, a));  /* (B, out) */
    ct_scope_end(s);
    return y;
}

ct_tensor *fl_mlp_forward(const fl_mlp *m, const ct_tensor *x)
{
    if (m->body.n_blocks == 0) return mlp_plain(m, x, m->in_layer.w, m->in_layer.b);
    ct_scope *s = ct_scope_begin();
    ct_tensor *y = ct_scope_keep(s, mlp_rest(m, fl_linear_forward(&m->in_layer, x)));
    ct_scope_end(s);
    return y;
}

int fl_mlp_split_in(const fl_mlp *m, int k, ct_tensor **wx, ct_tensor **wc)
{
    *wx = *wc = NULL;
    if (k < 1 || k >= m->in_layer.in)
        return fl_fail("fl_mlp_split_in: column %d of an in-layer of %d inputs", k, m->in_layer.in);
    ct_tensor *parts[2];
    int64_t sizes[2] = {k, m->in_layer.in - k};
    if (ct_split(m->in_layer.w, 1, sizes, 2, parts)) return -1;   /* ctorch's message */
    *wx = parts[0];
    *wc = parts[1];
    return 0;
}

ct_tensor *fl_mlp_forward_pre(const fl_mlp *m, const ct_tensor *x, const ct_tensor *wx,
                              const ct_tensor *pre)
{
    if (m->body.n_blocks == 0) return mlp_plain(m, x, wx, pre ? pre : m->in_layer.b);
    ct_scope *s = ct_scope_begin();
    /* x W_xᵀ + pre: one addmm, pre in the bias's place */
    ct_tensor *h = ct_linear(x, wx, pre ? pre : m->in_layer.b);                /* (B, hidden) */
    ct_tensor *y = ct_scope_keep(s, mlp_rest(m, h));
    ct_scope_end(s);
    return y;
}
