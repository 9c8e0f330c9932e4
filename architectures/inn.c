/* Invertible blocks (ActNorm, Glow coupling, permutation, orthogonal mixing) and the
 * conditional INN made of them. */
#include "architectures/inn.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"

struct fl_block {
    fl_block_kind kind;
    int dim, d1, d2;
    /* ActNorm */
    ct_tensor *bias, *logs, *initialized;     /* borrowed; (D), (D), () */
    /* coupling: subnet1 maps [x1, c] to (s, t) for x2; subnet2 [y2, c] to those of x1 */
    fl_mlp net1, net2;
    double clamp;
    /* mixing */
    ct_tensor *perm, *inv_perm, *q;          /* borrowed buffers */
};

fl_block *fl_block_new(fl_block_kind kind, ct_params *ps, const char *name, int dim,
                       int cond_dim, const fl_coupling_spec *cs, ct_gen *g)
{
    char key[256];
    fl_block *b = calloc(1, sizeof *b);
    if (!b) return fl_fail("out of memory"), NULL;
    b->kind = kind;
    b->dim = dim;
    ct_dtype ft = ct_float_dtype();
    switch (kind) {
    case FL_BLOCK_ACTNORM:
        snprintf(key, sizeof key, "%.200s.bias", name);
        b->bias = ct_params_add(ps, key, ct_zeros(CT_SHAPE(dim), ft));
        snprintf(key, sizeof key, "%.200s.logs", name);
        b->logs = ct_params_add(ps, key, ct_zeros(CT_SHAPE(dim), ft));
        snprintf(key, sizeof key, "%.200s.initialized", name);
        b->initialized = ct_params_add_buffer(ps, key, ct_scalar(0, ft));
        if (!b->bias || !b->logs || !b->initialized) goto fail;
        break;
    case FL_BLOCK_COUPLING: {
        if (!cs || dim < 2) {
            fl_fail("%s: a coupling needs dim >= 2 and a subnet spec", name);
            goto fail;
        }
        b->d1 = dim / 2;
        b->d2 = dim - b->d1;
        b->clamp = cs->clamp;
        fl_mlp_spec s1 = {b->d1 + cond_dim, 2 * b->d2, cs->hidden, cs->n_blocks, cs->n_layers,
                          cs->act, true};
        fl_mlp_spec s2 = {b->d2 + cond_dim, 2 * b->d1, cs->hidden, cs->n_blocks, cs->n_layers,
                          cs->act, true};
        snprintf(key, sizeof key, "%.200s.net1", name);
        if (fl_mlp_init(&b->net1, ps, key, &s1, g)) goto fail;
        snprintf(key, sizeof key, "%.200s.net2", name);
        if (fl_mlp_init(&b->net2, ps, key, &s2, g)) goto fail;
        break;
    }
    case FL_BLOCK_PERMUTE: {
        ct_scope *s = ct_scope_begin();
        ct_tensor *p = ct_randperm(dim, g);
        ct_tensor *inv = ct_argsort(p, 0);
        snprintf(key, sizeof key, "%.200s.perm", name);
        b->perm = ct_params_add_buffer(ps, key, ct_scope_keep(s, p));
        snprintf(key, sizeof key, "%.200s.inv_perm", name);
        b->inv_perm = ct_params_add_buffer(ps, key, ct_scope_keep(s, inv));
        ct_scope_end(s);
        if (!b->perm || !b->inv_perm) goto fail;
        break;
    }
    case FL_BLOCK_ORTHOGONAL: {
        ct_scope *s = ct_scope_begin();
        ct_tensor *q = ct_qr_q(ct_randn(CT_SHAPE(dim, dim), CT_F64, g));
        snprintf(key, sizeof key, "%.200s.q", name);
        b->q = ct_params_add_buffer(ps, key, ct_scope_keep(s, ct_to_dtype(q, ft)));
        ct_scope_end(s);
        if (!b->q) goto fail;
        break;
    }
    default:
        fl_fail("%s: unknown block kind %d", name, (int)kind);
        goto fail;
    }
    return b;
fail:
    fl_fail_ctx("%s", name);
    free(b);
    return NULL;
}

void fl_block_free(fl_block *b) { free(b); }

/* s ↦ clamp·(2/π)·atan(s/clamp): smooth, bounded log-scales (FrEIA's soft clamp). */
static ct_tensor *soft_clamp(const ct_tensor *s, double clamp)
{
    return ct_muls(ct_atan(ct_muls(s, 1.0 / clamp)), clamp * 2.0 / M_PI);
}

/* (s, t) for the half of size d from subnet(input). */
static void scale_shift(const fl_mlp *net, const ct_tensor *in, int d, double clamp,
                        ct_tensor **s, ct_tensor **t)
{
    ct_tensor *h = fl_mlp_forward(net, in);                      /* (B, 2d) */
    *s = soft_clamp(ct_narrow(h, 1, 0, d), clamp);
    *t = ct_narrow(h, 1, d, d);
}

static ct_tensor *cond_cat(const ct_tensor *x, const ct_tensor *c)
{
    return c ? ct_cat2(x, c, 1) : ct_ref(x);
}

/* The first forward pass in grad mode sets bias and scale from the batch, so that the
 * output starts with zero mean and unit variance per dimension (Kingma & Dhariwal). */
static void actnorm_init(fl_block *b, const ct_tensor *x)
{
    if (ct_item(b->initialized) != 0 || !ct_grad_enabled() || ct_size(x, 0) < 2) return;
    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    ct_tensor *mean = ct_mean_dim(x, 0, false);
    ct_tensor *std = ct_std_dim(x, 0, false, false);
    ct_copy_(b->bias, ct_neg(mean));
    ct_copy_(b->logs, ct_neg(ct_log(ct_adds(std, 1e-6))));
    ct_fill_(b->initialized, 1);
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
}

ct_tensor *fl_block_forward(fl_block *b, const ct_tensor *x, const ct_tensor *c,
                            ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *y = NULL, *ld = NULL;
    int64_t batch = ct_size(x, 0);
    switch (b->kind) {
    case FL_BLOCK_ACTNORM:
        actnorm_init(b, x);
        y = ct_mul(ct_add(x, b->bias), ct_exp(b->logs));
        ld = ct_expand(ct_sum(b->logs), CT_SHAPE(batch));
        break;
    case FL_BLOCK_COUPLING: {
        ct_tensor *x1 = ct_narrow(x, 1, 0, b->d1), *x2 = ct_narrow(x, 1, b->d1, b->d2);
        ct_tensor *s1, *t1, *s2, *t2;
        scale_shift(&b->net1, cond_cat(x1, c), b->d2, b->clamp, &s1, &t1);
        ct_tensor *y2 = ct_add(ct_mul(x2, ct_exp(s1)), t1);       /* (B, d2) */
        scale_shift(&b->net2, cond_cat(y2, c), b->d1, b->clamp, &s2, &t2);
        ct_tensor *y1 = ct_add(ct_mul(x1, ct_exp(s2)), t2);       /* (B, d1) */
        y = ct_cat2(y1, y2, 1);
        ld = ct_add(ct_sum_dim(s1, 1, false), ct_sum_dim(s2, 1, false));
        break;
    }
    case FL_BLOCK_PERMUTE:
        y = ct_index_select(x, 1, b->perm);
        break;
    case FL_BLOCK_ORTHOGONAL:
        y = ct_linear(x, b->q, NULL);                              /* x Qᵀ */
        break;
    default: break;
    }
    if (logdet) *logdet = ct_scope_keep(s, ld ? ld : ct_zeros(CT_SHAPE(batch), ct_dtype_of(x)));
    y = ct_scope_keep(s, y);
    ct_scope_end(s);
    return y;
}

ct_tensor *fl_block_inverse(fl_block *b, const ct_tensor *y, const ct_tensor *c)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = NULL;
    switch (b->kind) {
    case FL_BLOCK_ACTNORM:
        x = ct_sub(ct_mul(y, ct_exp(ct_neg(b->logs))), b->bias);
        break;
    case FL_BLOCK_COUPLING: {
        ct_tensor *y1 = ct_narrow(y, 1, 0, b->d1), *y2 = ct_narrow(y, 1, b->d1, b->d2);
        ct_tensor *s1, *t1, *s2, *t2;
        scale_shift(&b->net2, cond_cat(y2, c), b->d1, b->clamp, &s2, &t2);
        ct_tensor *x1 = ct_mul(ct_sub(y1, t2), ct_exp(ct_neg(s2)));
        scale_shift(&b->net1, cond_cat(x1, c), b->d2, b->clamp, &s1, &t1);
        ct_tensor *x2 = ct_mul(ct_sub(y2, t1), ct_exp(ct_neg(s1)));
        x = ct_cat2(x1, x2, 1);
        break;
    }
    case FL_BLOCK_PERMUTE:
        x = ct_index_select(y, 1, b->inv_perm);
        break;
    case FL_BLOCK_ORTHOGONAL:
        x = ct_matmul(y, b->q);                                     /* y Q */
        break;
    default: break;
    }
    x = ct_scope_keep(s, x);
    ct_scope_end(s);
    return x;
}

struct fl_inn {
    int n;
    fl_block **blocks;
};

fl_inn *fl_inn_new(ct_params *ps, const char *name, const fl_inn_spec *sp, ct_gen *g)
{
    int per_step = (sp->actnorm ? 1 : 0) + 2;
    if (sp->n_steps < 1 || sp->n_steps > INT_MAX / per_step)
        return fl_fail("%s: n_steps = %d; an INN needs at least one step", name, sp->n_steps), NULL;
    fl_inn *n = calloc(1, sizeof *n);
    if (!n) return fl_fail("out of memory"), NULL;
    n->blocks = calloc((size_t)sp->n_steps * (size_t)per_step, sizeof *n->blocks);
    if (!n->blocks) {
        free(n);
        return fl_fail("out of memory"), NULL;
    }
    char key[256];
    for (int i = 0; i < sp->n_steps; i++) {
        if (sp->actnorm) {
            snprintf(key, sizeof key, "%s.%d.actnorm", name, i);
            if (!(n->blocks[n->n++] = fl_block_new(FL_BLOCK_ACTNORM, ps, key, sp->dim, 0, NULL, g)))
                goto fail;
        }
        snprintf(key, sizeof key, "%s.%d.coupling", name, i);
        if (!(n->blocks[n->n++] = fl_block_new(FL_BLOCK_COUPLING, ps, key, sp->dim,
                                               sp->cond_dim, &sp->coupling, g)))
            goto fail;
        snprintf(key, sizeof key, "%s.%d.mix", name, i);
        fl_block_kind mk = sp->mixing == FL_MIX_ORTHOGONAL ? FL_BLOCK_ORTHOGONAL : FL_BLOCK_PERMUTE;
        if (!(n->blocks[n->n++] = fl_block_new(mk, ps, key, sp->dim, 0, NULL, g))) goto fail;
    }
    return n;
fail:
    n->n--;
    fl_inn_free(n);
    return NULL;
}

void fl_inn_free(fl_inn *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) fl_block_free(n->blocks[i]);
    free(n->blocks);
    free(n);
}

int fl_inn_n_blocks(const fl_inn *n) { return n->n; }
fl_block *fl_inn_block(fl_inn *n, int i) { return i >= 0 && i < n->n ? n->blocks[i] : NULL; }

ct_tensor *fl_inn_forward(fl_inn *n, const ct_tensor *x, const ct_tensor *c, ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h = (ct_tensor *)x, *total = NULL;
    for (int i = 0; i < n->n; i++) {
        ct_tensor *ld = NULL;
        h = fl_block_forward(n->blocks[i], h, c, &ld);
        total = total ? ct_add(total, ld) : ld;
    }
    if (logdet) *logdet = ct_scope_keep(s, total ? total : ct_zeros(CT_SHAPE(ct_size(x, 0)), ct_dtype_of(x)));
    h = ct_scope_keep(s, h == x ? ct_ref(x) : h);
    ct_scope_end(s);
    return h;
}

ct_tensor *fl_inn_inverse(fl_inn *n, const ct_tensor *y, const ct_tensor *c)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h = (ct_tensor *)y;
    for (int i = n->n - 1; i >= 0; i--) h = fl_block_inverse(n->blocks[i], h, c);
    h = ct_scope_keep(s, h == y ? ct_ref(y) : h);
    ct_scope_end(s);
    return h;
}
