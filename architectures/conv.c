/* Convolutional encoder/decoder (see conv.h). */
#include "architectures/conv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

int fl_conv2d_init(fl_conv2d *l, ct_params *ps, const char *name, int in, int out, int k,
                   int stride, int pad, bool transposed, ct_gen *g)
{
    char key[256];
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    l->k = k;
    l->stride = stride;
    l->pad = pad;
    l->transposed = transposed;
    /* torch computes fan_in from weight.size(1): in for Conv2d, out for ConvTranspose2d */
    double bound = 1.0 / sqrt((double)(transposed ? out : in) * k * k);
    ct_shape ws = transposed ? CT_SHAPE(in, out, k, k) : CT_SHAPE(out, in, k, k);
    snprintf(key, sizeof key, "%.200s.weight", name);
    l->w = ct_params_add(ps, key, fl_uniform(ws, bound, g));
    snprintf(key, sizeof key, "%.200s.bias", name);
    l->b = ct_params_add(ps, key, fl_uniform(CT_SHAPE(out), bound, g));
    if (!l->w || !l->b) return fl_fail_ctx("%s", name);
    return 0;
}

ct_tensor *fl_conv2d_forward(const fl_conv2d *l, const ct_tensor *x)
{
    if (l->transposed)
        return ct_conv_transpose2d(x, l->w, l->b, l->stride, l->pad, l->out_pad, 1);
    return ct_conv2d(x, l->w, l->b, l->stride, l->pad, 1);
}

static int check_spec(const char *name, const fl_conv_spec *s)
{
    if (s->n_stages < 1 || s->n_stages > FL_CONV_MAX_STAGES)
        return fl_fail("%s: %d stages, expected 1 to %d", name, s->n_stages, FL_CONV_MAX_STAGES);
    if (s->extra < 0 || s->extra > 2)
        return fl_fail("%s: %d extra convolutions per stage, at most 2", name, s->extra);
    if (s->channels < 1 || s->dim < 1 || s->height < 2 || s->width < 2)
        return fl_fail("%s: bad sizes (channels %d, code %d, image %d × %d)", name, s->channels,
                       s->dim, s->height, s->width);
    for (int i = 0; i < s->n_stages; i++)
        if (s->widths[i] < 1) return fl_fail("%s: stage %d has %d channels", name, i, s->widths[i]);
    if (s->res_blocks > 0 && s->hidden < 1)
        return fl_fail("%s: %d residual blocks need a hidden width (hidden is 0)", name, s->res_blocks);
    return 0;
}

/* Spatial sizes after each stage: sizes[0] = the image, sizes[i + 1] after stage i. */
static void stage_sizes(int n, int stages, int *sizes)
{
    sizes[0] = n;
    for (int i = 0; i < stages; i++) sizes[i + 1] = fl_conv_down_size(sizes[i]);
}

int fl_conv_encoder_init(fl_conv_encoder *e, ct_params *ps, const char *name,
                         const fl_conv_spec *spec, int out_mult, ct_gen *g)
{
    char key[256];
    memset(e, 0, sizeof *e);
    if (check_spec(name, spec)) return -1;
    e->spec = *spec;
    int hs[FL_CONV_MAX_STAGES + 1], ws[FL_CONV_MAX_STAGES + 1];
    stage_sizes(spec->height, spec->n_stages, hs);
    stage_sizes(spec->width, spec->n_stages, ws);
    int in = spec->channels;
    for (int i = 0; i < spec->n_stages; i++) {
        snprintf(key, sizeof key, "%.200s.down%d", name, i);
        if (fl_conv2d_init(&e->down[i], ps, key, in, spec->widths[i], 3, 2, 1, false, g)) return -1;
        for (int j = 0; j < spec->extra; j++) {
            snprintf(key, sizeof key, "%.200s.conv%d_%d", name, i, j);
            if (fl_conv2d_init(&e->extra[i][j], ps, key, spec->widths[i], spec->widths[i], 3, 1, 1,
                               false, g))
                return -1;
        }
        in = spec->widths[i];
    }
    e->flat = in * hs[spec->n_stages] * ws[spec->n_stages];
    int fc_in = e->flat;
    if (spec->hidden > 0) {
        snprintf(key, sizeof key, "%.200s.hidden", name);
        if (fl_linear_init(&e->fc_hidden, ps, key, e->flat, spec->hidden, false, g)) return -1;
        fc_in = spec->hidden;
    }
    if (spec->res_blocks > 0) {
        snprintf(key, sizeof key, "%.200s.res", name);
        if (fl_res_stack_init(&e->res, ps, key, spec->hidden, spec->res_blocks, spec->res_layers,
                              spec->act, g))
            return -1;
    }
    snprintf(key, sizeof key, "%.200s.out", name);
    return fl_linear_init(&e->fc_out, ps, key, fc_in, out_mult * spec->dim, false, g);
}

ct_tensor *fl_conv_encoder_forward(const fl_conv_encoder *e, const ct_tensor *x)
{
    const fl_conv_spec *sp = &e->spec;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *h = x;                                              /* (B, C, H, W) */
    for (int i = 0; i < sp->n_stages; i++) {
        h = fl_act_apply(sp->act, fl_conv2d_forward(&e->down[i], h));    /* (B, w_i, H/2, W/2) */
        for (int j = 0; j < sp->extra; j++)
            h = fl_act_apply(sp->act, fl_conv2d_forward(&e->extra[i][j], h));
    }
    ct_tensor *f = ct_flatten(h, 1);                                     /* (B, flat) */
    if (sp->hidden > 0) f = fl_act_apply(sp->act, fl_linear_forward(&e->fc_hidden, f)); /* (B, hidden) */
    if (sp->res_blocks > 0) f = fl_res_stack_forward(&e->res, f);       /* (B, hidden) */
    ct_tensor *y = ct_scope_keep(s, fl_linear_forward(&e->fc_out, f));   /* (B, out_mult·dim) */
    ct_scope_end(s);
    return y;
}

int fl_conv_decoder_init(fl_conv_decoder *d, ct_params *ps, const char *name,
                         const fl_conv_spec *spec, ct_gen *g)
{
    char key[256];
    memset(d, 0, sizeof *d);
    if (check_spec(name, spec)) return -1;
    d->spec = *spec;
    int hs[FL_CONV_MAX_STAGES + 1], ws[FL_CONV_MAX_STAGES + 1];
    stage_sizes(spec->height, spec->n_stages, hs);
    stage_sizes(spec->width, spec->n_stages, ws);
    int last = spec->n_stages - 1;
    d->h0 = hs[spec->n_stages];
    d->w0 = ws[spec->n_stages];
    int in = spec->dim;
    if (spec->hidden > 0) {
        snprintf(key, sizeof key, "%.200s.hidden", name);
        if (fl_linear_init(&d->fc_hidden, ps, key, spec->dim, spec->hidden, false, g)) return -1;
        in = spec->hidden;
    }
    if (spec->res_blocks > 0) {
        snprintf(key, sizeof key, "%.200s.res", name);
        if (fl_res_stack_init(&d->res, ps, key, spec->hidden, spec->res_blocks, spec->res_layers,
                              spec->act, g))
            return -1;
    }
    snprintf(key, sizeof key, "%.200s.in", name);
    if (fl_linear_init(&d->fc_in, ps, key, in, spec->widths[last] * d->h0 * d->w0, false, g))
        return -1;
    for (int i = last; i >= 0; i--) {
        for (int j = 0; j < spec->extra; j++) {
            snprintf(key, sizeof key, "%.200s.conv%d_%d", name, i, j);
            if (fl_conv2d_init(&d->extra[i][j], ps, key, spec->widths[i], spec->widths[i], 3, 1, 1,
                               false, g))
                return -1;
        }
        int out = i > 0 ? spec->widths[i - 1] : spec->channels;
        snprintf(key, sizeof key, "%.200s.up%d", name, i);
        if (fl_conv2d_init(&d->up[i], ps, key, spec->widths[i], out, 3, 2, 1, true, g)) return -1;
        /* (n − 1)·2 − 2 + 3 + out_pad = target */
        int oph = hs[i] - (2 * hs[i + 1] - 1), opw = ws[i] - (2 * ws[i + 1] - 1);
        if (oph != opw || oph < 0 || oph > 1)
            return fl_fail("%s: cannot mirror a %d × %d image with stride-2 stages", name,
                           spec->height, spec->width);
        d->up[i].out_pad = oph;
    }
    return 0;
}

ct_tensor *fl_conv_decoder_forward(const fl_conv_decoder *d, const ct_tensor *z)
{
    const fl_conv_spec *sp = &d->spec;
    int last = sp->n_stages - 1;
    ct_scope *s = ct_scope_begin();
    const ct_tensor *h = z;                                              /* (B, dim) */
    if (sp->hidden > 0) h = fl_act_apply(sp->act, fl_linear_forward(&d->fc_hidden, h)); /* (B, hidden) */
    if (sp->res_blocks > 0) h = fl_res_stack_forward(&d->res, h);       /* (B, hidden) */
    h = fl_act_apply(sp->act, fl_linear_forward(&d->fc_in, h));          /* (B, w_last·h0·w0) */
    h = ct_reshape(h, CT_SHAPE(-1, sp->widths[last], d->h0, d->w0));     /* (B, w_last, h0, w0) */
    for (int i = last; i >= 0; i--) {
        for (int j = 0; j < sp->extra; j++)
            h = fl_act_apply(sp->act, fl_conv2d_forward(&d->extra[i][j], h));
        h = fl_conv2d_forward(&d->up[i], h);                            /* (B, w_{i-1}, 2h, 2w) */
        if (i > 0) h = fl_act_apply(sp->act, h);
    }
    ct_tensor *y = ct_scope_keep(s, (ct_tensor *)h);                     /* (B, C, H, W) */
    ct_scope_end(s);
    return y;
}

int fl_conv_spec_from_config(const fl_config *c, const char *section, int channels, int dim,
                             fl_conv_spec *out)
{
    char key[128];
    memset(out, 0, sizeof *out);
    out->channels = channels;
    out->height = out->width = 28;
    out->dim = dim;
    snprintf(key, sizeof key, "%s.widths", section);
    out->n_stages = fl_cfg_len(c, key);
    if (out->n_stages < 1 || out->n_stages > FL_CONV_MAX_STAGES)
        return fl_fail("%s: %d stages, expected 1 to %d channel counts", key, out->n_stages,
                       FL_CONV_MAX_STAGES);
    for (int i = 0; i < out->n_stages; i++) out->widths[i] = (int)fl_cfg_list_num(c, key, i);
    snprintf(key, sizeof key, "%s.extra", section);
    out->extra = (int)fl_cfg_int(c, key);
    snprintf(key, sizeof key, "%s.hidden", section);
    out->hidden = (int)fl_cfg_int(c, key);
    snprintf(key, sizeof key, "%s.activation", section);
    int act = fl_act_parse(fl_cfg_str(c, key));
    if (act < 0) return fl_fail("%s: unknown activation '%s'", key, fl_cfg_str(c, key));
    out->act = (fl_act)act;
    return 0;
}
