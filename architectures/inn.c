/* Invertible blocks (ActNorm, affine or spline coupling, permutation, orthogonal mixing) and the
 * conditional INN made of them. */
#include "architectures/inn.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct fl_block {
    fl_block_kind kind;
    int dim, d1, d2, cond_dim;
    /* ActNorm */
    ct_tensor *bias, *logs, *initialized;     /* borrowed; (D), (D), () */
    /* coupling: subnet1 maps [x1, c] to (s, t) for x2; subnet2 [y2, c] to those of x1 */
    fl_mlp net1, net2;
    double clamp;
    fl_coupling_transform transform;
    int bins;
    double bound;
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
        if (cs->transform == FL_COUPLING_SPLINE && (cs->bins < 2 || !(cs->bound > 0))) {
            fl_fail("%s: a spline coupling needs bins >= 2 and bound > 0 (got %d and %g)", name,
                    cs->bins, cs->bound);
            goto fail;
        }
        b->d1 = dim / 2;
        b->d2 = dim - b->d1;
        b->cond_dim = cond_dim;
        b->clamp = cs->clamp;
        b->transform = cs->transform;
        b->bins = cs->bins;
        b->bound = cs->bound;
        /* per transformed dimension: (s, t), or the spline's widths, heights, derivatives */
        int per = cs->transform == FL_COUPLING_SPLINE ? 3 * cs->bins - 1 : 2;
        fl_mlp_spec s1 = {b->d1 + cond_dim, per * b->d2, cs->hidden, cs->n_blocks, cs->n_layers,
                          cs->act, true};
        fl_mlp_spec s2 = {b->d2 + cond_dim, per * b->d1, cs->hidden, cs->n_blocks, cs->n_layers,
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

/* A coupling's two subnets with their condition applied: the in-layer weights' views
 * W_x (for the half each net sees) and the pre-activations c W_cᵀ + b (B, hidden), or
 * NULL without a condition (W_x is then the whole in-layer weight). */
typedef struct {
    ct_tensor *wx[2], *pre[2];
} coupling_cond;

/* The condition's share of n couplings' 2n subnet in-layers in one product: c (B, C)
 * against their W_c stacked (2n·hidden, C), then cut into 2n (B, hidden) slices. The
 * tensors live in the caller's scope; -1 and a message on failure. */
static int couplings_condition(fl_block *const *cs, int n, const ct_tensor *c, coupling_cond *out)
{
    memset(out, 0, (size_t)n * sizeof *out);
    if (!c || n == 0) {
        for (int i = 0; i < n; i++) {
            out[i].wx[0] = cs[i]->net1.in_layer.w;
            out[i].wx[1] = cs[i]->net2.in_layer.w;
        }
        return 0;
    }
    int m = 2 * n, rc = -1;
    const ct_tensor **wc = malloc((size_t)m * sizeof *wc), **bias = malloc((size_t)m * sizeof *bias);
    int64_t *sizes = malloc((size_t)m * sizeof *sizes);
    ct_tensor **pre = malloc((size_t)m * sizeof *pre);
    if (!wc || !bias || !sizes || !pre) {
        fl_fail("out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const fl_block *b = cs[i];
        ct_tensor *w1c, *w2c;
        if (fl_mlp_split_in(&b->net1, b->d1, &out[i].wx[0], &w1c) ||
            fl_mlp_split_in(&b->net2, b->d2, &out[i].wx[1], &w2c))
            goto done;
        wc[2 * i] = w1c, wc[2 * i + 1] = w2c;
        bias[2 * i] = b->net1.in_layer.b, bias[2 * i + 1] = b->net2.in_layer.b;
        sizes[2 * i] = b->net1.hidden, sizes[2 * i + 1] = b->net2.hidden;
    }
    ct_tensor *all = ct_linear(c, ct_cat((const ct_tensor *const *)wc, m, 0),
                               ct_cat((const ct_tensor *const *)bias, m, 0)); /* (B, 2n·hidden) */
    if (!all || ct_split(all, 1, sizes, m, pre)) goto done;
    for (int i = 0; i < n; i++) out[i].pre[0] = pre[2 * i], out[i].pre[1] = pre[2 * i + 1];
    rc = 0;
done:
    free(wc), free(bias), free(sizes), free(pre);
    return rc;
}

/* The half x given the other half `in` through subnet k, with h = net([in, c]): the
 * affine coupling (soft clamp of the log-scales, FrEIA's; one fused ctorch op) or the
 * rational-quadratic spline. */
static ct_tensor *couple(const fl_block *b, const coupling_cond *k, int net, const ct_tensor *in,
                         const ct_tensor *x, bool inverse, ct_tensor **logdet)
{
    const fl_mlp *m = net == 0 ? &b->net1 : &b->net2;
    ct_tensor *h = fl_mlp_forward_pre(m, in, k->wx[net], k->pre[net]);
    if (b->transform == FL_COUPLING_SPLINE) return ct_rq_spline(x, h, b->bins, b->bound, inverse, logdet);
    return ct_affine_coupling(x, h, b->clamp, inverse, logdet);
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

/* x's two halves (B, d1), (B, d2) as views whose gradients come back in one node. */
static int halves(const fl_block *b, const ct_tensor *x, ct_tensor **h)
{
    return ct_split(x, 1, (const int64_t[]){b->d1, b->d2}, 2, h) ? -1 : 0;
}

/* One block given its prepared condition k (couplings only; NULL for the others). */
static ct_tensor *block_forward(fl_block *b, const ct_tensor *x, const coupling_cond *k,
                                ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *y = NULL, *ld = NULL;
    int64_t batch = ct_size(x, 0);
    switch (b->kind) {
    case FL_BLOCK_ACTNORM:
        actnorm_init(b, x);
        y = ct_actnorm(x, b->bias, b->logs, false, &ld);
        break;
    case FL_BLOCK_COUPLING: {
        ct_tensor *h[2];
        if (halves(b, x, h)) break;
        ct_tensor *x1 = h[0], *x2 = h[1], *ld1, *ld2;
        ct_tensor *y2 = couple(b, k, 0, x1, x2, false, &ld1);                /* (B, d2) */
        ct_tensor *y1 = couple(b, k, 1, y2, x1, false, &ld2);                /* (B, d1) */
        y = ct_cat2(y1, y2, 1);
        ld = ct_add(ld1, ld2);
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

static ct_tensor *block_inverse(fl_block *b, const ct_tensor *y, const coupling_cond *k)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = NULL;
    switch (b->kind) {
    case FL_BLOCK_ACTNORM:
        x = ct_actnorm(y, b->bias, b->logs, true, NULL);
        break;
    case FL_BLOCK_COUPLING: {
        ct_tensor *h[2];
        if (halves(b, y, h)) break;
        ct_tensor *y1 = h[0], *y2 = h[1];
        ct_tensor *x1 = couple(b, k, 1, y2, y1, true, NULL);
        ct_tensor *x2 = couple(b, k, 0, x1, y2, true, NULL);
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

/* A coupling's condition of its own (a block used alone), in the open scope. */
static int block_condition(fl_block *b, const ct_tensor *c, coupling_cond *k)
{
    memset(k, 0, sizeof *k);
    return b->kind == FL_BLOCK_COUPLING ? couplings_condition(&b, 1, b->cond_dim ? c : NULL, k) : 0;
}

ct_tensor *fl_block_forward(fl_block *b, const ct_tensor *x, const ct_tensor *c,
                            ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    coupling_cond k;
    ct_tensor *ld = NULL, *y = block_condition(b, c, &k) ? NULL : block_forward(b, x, &k, &ld);
    if (logdet) *logdet = ct_scope_keep(s, ld);
    y = ct_scope_keep(s, y);
    ct_scope_end(s);
    return y;
}

ct_tensor *fl_block_inverse(fl_block *b, const ct_tensor *y, const ct_tensor *c)
{
    ct_scope *s = ct_scope_begin();
    coupling_cond k;
    ct_tensor *x = block_condition(b, c, &k) ? NULL : block_inverse(b, y, &k);
    x = ct_scope_keep(s, x);
    ct_scope_end(s);
    return x;
}

struct fl_inn {
    int n, n_couplings;
    fl_block **blocks;
    fl_block **couplings;   /* the coupling blocks among them, in order */
};

struct fl_inn_cond {
    int n;                  /* couplings */
    coupling_cond *k;       /* one per coupling; tensors in the scope open at preparation */
};

fl_inn *fl_inn_new(ct_params *ps, const char *name, const fl_inn_spec *sp, ct_gen *g)
{
    int per_step = (sp->actnorm ? 1 : 0) + 2;
    if (sp->n_steps < 1 || sp->n_steps > INT_MAX / per_step)
        return fl_fail("%s: n_steps = %d; an INN needs at least one step", name, sp->n_steps), NULL;
    fl_inn *n = calloc(1, sizeof *n);
    if (!n) return fl_fail("out of memory"), NULL;
    n->blocks = calloc((size_t)sp->n_steps * (size_t)per_step, sizeof *n->blocks);
    n->couplings = calloc((size_t)sp->n_steps, sizeof *n->couplings);
    if (!n->blocks || !n->couplings) {
        free(n->blocks);
        free(n->couplings);
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
        n->couplings[n->n_couplings++] = n->blocks[n->n - 1];
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
    free(n->couplings);
    free(n);
}

int fl_inn_n_blocks(const fl_inn *n) { return n->n; }
fl_block *fl_inn_block(fl_inn *n, int i) { return i >= 0 && i < n->n ? n->blocks[i] : NULL; }

fl_inn_cond *fl_inn_condition(fl_inn *n, const ct_tensor *c)
{
    fl_inn_cond *k = calloc(1, sizeof *k);
    if (k) k->k = calloc((size_t)n->n_couplings + 1, sizeof *k->k);
    if (!k || !k->k) {
        if (k) free(k);
        return fl_fail("out of memory"), NULL;
    }
    k->n = n->n_couplings;
    bool conditional = n->n_couplings > 0 && n->couplings[0]->cond_dim > 0;
    if (couplings_condition(n->couplings, n->n_couplings, conditional ? c : NULL, k->k)) {
        fl_inn_cond_free(k);
        return NULL;
    }
    return k;
}

void fl_inn_cond_free(fl_inn_cond *k)
{
    if (!k) return;
    free(k->k);
    free(k);
}

ct_tensor *fl_inn_forward_cond(fl_inn *n, const ct_tensor *x, const fl_inn_cond *k,
                               ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h = (ct_tensor *)x, *total = NULL;
    for (int i = 0, j = 0; i < n->n; i++) {
        ct_tensor *ld = NULL;
        const coupling_cond *kc = n->blocks[i]->kind == FL_BLOCK_COUPLING ? &k->k[j++] : NULL;
        h = block_forward(n->blocks[i], h, kc, &ld);
        total = total ? ct_add(total, ld) : ld;
    }
    if (logdet) *logdet = ct_scope_keep(s, total ? total : ct_zeros(CT_SHAPE(ct_size(x, 0)), ct_dtype_of(x)));
    h = ct_scope_keep(s, h == x ? ct_ref(x) : h);
    ct_scope_end(s);
    return h;
}

ct_tensor *fl_inn_inverse_cond(fl_inn *n, const ct_tensor *y, const fl_inn_cond *k)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *h = (ct_tensor *)y;
    for (int i = n->n - 1, j = k->n - 1; i >= 0; i--) {
        const coupling_cond *kc = n->blocks[i]->kind == FL_BLOCK_COUPLING ? &k->k[j--] : NULL;
        h = block_inverse(n->blocks[i], h, kc);
    }
    h = ct_scope_keep(s, h == y ? ct_ref(y) : h);
    ct_scope_end(s);
    return h;
}

ct_tensor *fl_inn_forward(fl_inn *n, const ct_tensor *x, const ct_tensor *c, ct_tensor **logdet)
{
    ct_scope *s = ct_scope_begin();
    fl_inn_cond *k = fl_inn_condition(n, c);
    ct_tensor *ld = NULL, *y = k ? fl_inn_forward_cond(n, x, k, &ld) : NULL;
    fl_inn_cond_free(k);
    if (logdet) *logdet = ct_scope_keep(s, ld);
    y = ct_scope_keep(s, y);
    ct_scope_end(s);
    return y;
}

ct_tensor *fl_inn_inverse(fl_inn *n, const ct_tensor *y, const ct_tensor *c)
{
    ct_scope *s = ct_scope_begin();
    fl_inn_cond *k = fl_inn_condition(n, c);
    ct_tensor *x = k ? fl_inn_inverse_cond(n, y, k) : NULL;
    fl_inn_cond_free(k);
    x = ct_scope_keep(s, x);
    ct_scope_end(s);
    return x;
}
