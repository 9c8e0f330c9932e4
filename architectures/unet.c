/* The pixel UNet of the NDTM prior (see unet.h). */
#include "architectures/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "architectures/conv.h"
#include "architectures/nn.h"
#include "architectures/timenet.h"
#include "core/log.h"

#define GN_EPS 1e-5   /* torch.nn.GroupNorm's default */

/* GroupNorm's affine parameters: weight 1, bias 0 (torch.nn.GroupNorm). */
typedef struct {
    ct_tensor *w, *b;   /* borrowed */
} norm;

/* One residual block: in -> out channels, conditioned on the time embedding. */
typedef struct {
    norm n1, n2;
    fl_conv2d conv1, conv2, skip;
    fl_linear temb;
    int in, out;
} block;

/* Blocks down: blocks per level; up: blocks + 1 per level; the middle: two. */
struct fl_unet {
    fl_unet_spec spec;
    fl_linear t0, t1;                                   /* embed -> time_dim -> time_dim */
    fl_conv2d conv_in, conv_out;
    norm n_out;
    block down[FL_UNET_MAX_LEVELS][FL_UNET_MAX_BLOCKS];
    fl_conv2d downsample[FL_UNET_MAX_LEVELS];           /* after level i < levels − 1 */
    block mid[2];
    block up[FL_UNET_MAX_LEVELS][FL_UNET_MAX_BLOCKS + 1];
    fl_conv2d upsample[FL_UNET_MAX_LEVELS];             /* after level i > 0 */
};

int fl_unet_check(const fl_unet_spec *s, const char *name)
{
    if (s->levels < 1 || s->levels > FL_UNET_MAX_LEVELS)
        return fl_fail("%s: %d levels, expected 1 to %d", name, s->levels, FL_UNET_MAX_LEVELS);
    if (s->blocks < 1 || s->blocks > FL_UNET_MAX_BLOCKS)
        return fl_fail("%s: %d blocks per level, expected 1 to %d", name, s->blocks, FL_UNET_MAX_BLOCKS);
    if (s->channels < 1 || s->height < 1 || s->width < 1)
        return fl_fail("%s: bad image shape %d × %d × %d", name, s->channels, s->height, s->width);
    int f = 1 << (s->levels - 1);
    if (s->height % f || s->width % f)
        return fl_fail("%s: a %d × %d image cannot be halved %d times (levels %d)", name, s->height,
                       s->width, s->levels - 1, s->levels);
    if (s->groups < 1) return fl_fail("%s: %d GroupNorm groups", name, s->groups);
    for (int i = 0; i < s->levels; i++)
        if (s->widths[i] < 1 || s->widths[i] % s->groups)
            return fl_fail("%s: level %d has %d channels, not a multiple of the %d GroupNorm groups",
                           name, i, s->widths[i], s->groups);
    if (s->embed < 2 || s->embed % 2)
        return fl_fail("%s: time embedding %d is not even", name, s->embed);
    if (s->time_dim < 1) return fl_fail("%s: time MLP width %d", name, s->time_dim);
    return 0;
}

static int norm_init(norm *n, ct_params *ps, const char *name, int ch)
{
    char key[256];
    snprintf(key, sizeof key, "%.200s.weight", name);
    n->w = ct_params_add(ps, key, ct_ones(CT_SHAPE(ch), ct_float_dtype()));
    snprintf(key, sizeof key, "%.200s.bias", name);
    n->b = ct_params_add(ps, key, ct_zeros(CT_SHAPE(ch), ct_float_dtype()));
    return n->w && n->b ? 0 : fl_fail_ctx("%s", name);
}

/* A conv that starts at zero (DDPM's init_scale = 0). */
static int conv_zero_init(fl_conv2d *l, ct_params *ps, const char *name, int in, int out, ct_gen *g)
{
    if (fl_conv2d_init(l, ps, name, in, out, 3, 1, 1, false, g)) return -1;
    if (ct_zero_(l->w) || ct_zero_(l->b)) return fl_fail_ctx("%s", name);
    return 0;
}

static int block_init(block *b, ct_params *ps, const char *name, int in, int out, int time_dim,
                      ct_gen *g)
{
    char key[256];
    memset(b, 0, sizeof *b);
    b->in = in;
    b->out = out;
    snprintf(key, sizeof key, "%.200s.norm1", name);
    if (norm_init(&b->n1, ps, key, in)) return -1;
    snprintf(key, sizeof key, "%.200s.conv1", name);
    if (fl_conv2d_init(&b->conv1, ps, key, in, out, 3, 1, 1, false, g)) return -1;
    snprintf(key, sizeof key, "%.200s.temb", name);
    if (fl_linear_init(&b->temb, ps, key, time_dim, out, false, g)) return -1;
    snprintf(key, sizeof key, "%.200s.norm2", name);
    if (norm_init(&b->n2, ps, key, out)) return -1;
    snprintf(key, sizeof key, "%.200s.conv2", name);
    if (conv_zero_init(&b->conv2, ps, key, out, out, g)) return -1;
    if (in != out) {
        snprintf(key, sizeof key, "%.200s.skip", name);
        if (fl_conv2d_init(&b->skip, ps, key, in, out, 1, 1, 0, false, g)) return -1;
    }
    return 0;
}

/* x (B, in, h, w), a = SiLU(temb) (B, time_dim) -> (B, out, h, w). */
static ct_tensor *block_forward(const block *b, int groups, const ct_tensor *x, const ct_tensor *a)
{
    ct_scope *s = ct_scope_begin();
    /* https://pytorch.org/docs/stable/generated/torch.nn.GroupNorm.html */
    ct_tensor *h = ct_group_norm_silu(x, NULL, groups, b->n1.w, b->n1.b, GN_EPS); /* SiLU(GN(x)) (B, in, h, w) */
    h = fl_conv2d_forward(&b->conv1, h);                                         /* (B, out, h, w) */
    ct_tensor *e = fl_linear_forward(&b->temb, a);                               /* (B, out) */
    h = ct_group_norm_silu(h, e, groups, b->n2.w, b->n2.b, GN_EPS);            /* SiLU(GN(h + e)) */
    h = fl_conv2d_forward(&b->conv2, h);                                         /* (B, out, h, w) */
    const ct_tensor *skip = b->in != b->out ? fl_conv2d_forward(&b->skip, x) : x;
    ct_tensor *y = ct_scope_keep(s, ct_add(skip, h));
    ct_scope_end(s);
    return y;
}

void fl_unet_free(fl_unet *u) { free(u); }

const fl_unet_spec *fl_unet_spec_of(const fl_unet *u) { return &u->spec; }

/* Builds every layer in the order of the forward pass (so that the parameters' order
 * reads like the network). */
static int unet_init(fl_unet *u, ct_params *ps, const char *name, ct_gen *g)
{
    const fl_unet_spec *s = &u->spec;
    char key[256];
    int L = s->levels, nb = s->blocks;
    snprintf(key, sizeof key, "%.200s.time0", name);
    if (fl_linear_init(&u->t0, ps, key, s->embed, s->time_dim, false, g)) return -1;
    snprintf(key, sizeof key, "%.200s.time1", name);
    if (fl_linear_init(&u->t1, ps, key, s->time_dim, s->time_dim, false, g)) return -1;
    snprintf(key, sizeof key, "%.200s.conv_in", name);
    if (fl_conv2d_init(&u->conv_in, ps, key, s->channels, s->widths[0], 3, 1, 1, false, g)) return -1;
    /* the widths of the activations the way down keeps, in order */
    int kept[1 + FL_UNET_MAX_LEVELS * (FL_UNET_MAX_BLOCKS + 1)], n_kept = 0;
    kept[n_kept++] = s->widths[0];
    int ch = s->widths[0];
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < nb; j++) {
            snprintf(key, sizeof key, "%.200s.down%d.%d", name, i, j);
            if (block_init(&u->down[i][j], ps, key, ch, s->widths[i], s->time_dim, g)) return -1;
            ch = s->widths[i];
            kept[n_kept++] = ch;
        }
        if (i < L - 1) {
            snprintf(key, sizeof key, "%.200s.down%d.pool", name, i);
            if (fl_conv2d_init(&u->downsample[i], ps, key, ch, ch, 3, 2, 1, false, g)) return -1;
            kept[n_kept++] = ch;
        }
    }
    for (int j = 0; j < 2; j++) {
        snprintf(key, sizeof key, "%.200s.mid.%d", name, j);
        if (block_init(&u->mid[j], ps, key, ch, ch, s->time_dim, g)) return -1;
    }
    for (int i = L - 1; i >= 0; i--) {
        for (int j = 0; j <= nb; j++) {
            snprintf(key, sizeof key, "%.200s.up%d.%d", name, i, j);
            if (block_init(&u->up[i][j], ps, key, ch + kept[--n_kept], s->widths[i], s->time_dim, g))
                return -1;
            ch = s->widths[i];
        }
        if (i > 0) {
            snprintf(key, sizeof key, "%.200s.up%d.upsample", name, i);
            if (fl_conv2d_init(&u->upsample[i], ps, key, ch, ch, 3, 1, 1, false, g)) return -1;
        }
    }
    snprintf(key, sizeof key, "%.200s.norm_out", name);
    if (norm_init(&u->n_out, ps, key, ch)) return -1;
    snprintf(key, sizeof key, "%.200s.conv_out", name);
    return conv_zero_init(&u->conv_out, ps, key, ch, s->channels, g);
}

fl_unet *fl_unet_new(const fl_unet_spec *s, ct_params *ps, const char *name, ct_gen *g)
{
    if (fl_unet_check(s, name)) return NULL;
    fl_unet *u = calloc(1, sizeof *u);
    if (!u) return fl_fail("out of memory"), NULL;
    u->spec = *s;
    if (unet_init(u, ps, name, g)) {
        fl_unet_free(u);
        return NULL;
    }
    return u;
}

ct_tensor *fl_unet_forward(const fl_unet *u, const ct_tensor *x, const ct_tensor *t)
{
    const fl_unet_spec *s = &u->spec;
    int L = s->levels, nb = s->blocks, G = s->groups;
    ct_scope *sc = ct_scope_begin();
    ct_tensor *emb = fl_time_embedding(t, s->embed);                             /* (B, E) */
    ct_tensor *temb = fl_linear_forward(&u->t1, ct_silu(fl_linear_forward(&u->t0, emb))); /* (B, Td) */
    ct_tensor *a = ct_silu(temb);              /* every block projects SiLU(temb) */
    const ct_tensor *kept[1 + FL_UNET_MAX_LEVELS * (FL_UNET_MAX_BLOCKS + 1)];
    int n_kept = 0;
    /* Channels-last on the CPU: the convolutions run without reordering their data and
     * ct_group_norm_silu has loops for that layout (docs/performance.md) */
    bool cl = ct_device_of(x).kind == CT_CPU;
    ct_tensor *h = fl_conv2d_forward(&u->conv_in, cl ? ct_to_channels_last(x) : x); /* (B, w0, H, W) */
    kept[n_kept++] = h;
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < nb; j++) kept[n_kept++] = h = block_forward(&u->down[i][j], G, h, a);
        if (i < L - 1) kept[n_kept++] = h = fl_conv2d_forward(&u->downsample[i], h); /* (B, w_i, h/2, w/2) */
    }
    h = block_forward(&u->mid[0], G, h, a);
    h = block_forward(&u->mid[1], G, h, a);                                      /* (B, w_{L−1}, ·, ·) */
    for (int i = L - 1; i >= 0; i--) {
        for (int j = 0; j <= nb; j++)
            h = block_forward(&u->up[i][j], G, ct_cat2(h, kept[--n_kept], 1), a); /* (B, w_i, ·, ·) */
        if (i > 0) h = fl_conv2d_forward(&u->upsample[i], ct_upsample_nearest2d(h, 2)); /* 2× size */
    }
    h = ct_group_norm_silu(h, NULL, G, u->n_out.w, u->n_out.b, GN_EPS);
    h = fl_conv2d_forward(&u->conv_out, h);                                      /* (B, C, H, W) */
    ct_tensor *y = ct_scope_keep(sc, cl ? ct_contiguous(h) : h);
    ct_scope_end(sc);
    return y;
}

ct_status fl_unet_spec_put(const fl_unet_spec *s, ct_archive *a, const char *prefix)
{
    const char *names[] = {"channels", "levels", "blocks", "groups", "embed", "time_dim"};
    const int values[] = {s->channels, s->levels, s->blocks, s->groups, s->embed, s->time_dim};
    char key[256];
    for (int i = 0; i < 6 + s->levels; i++) {
        if (i < 6) snprintf(key, sizeof key, "%s%s", prefix, names[i]);
        else snprintf(key, sizeof key, "%swidth%d", prefix, i - 6);
        ct_status st = ct_archive_put_i64(a, key, i < 6 ? values[i] : s->widths[i - 6]);
        if (st != CT_OK) return st;
    }
    return CT_OK;
}
