/* Convolutional encoder and decoder for 28 × 28 images, shared by the subject models
 * (autoencoder, classifier) and the VAE. The encoder halves the resolution at every
 * stage with a stride-2 3 × 3 convolution (28 → 14 → 7 → 4), then flattens into linear
 * layers; the decoder mirrors it with stride-2 3 × 3 transposed convolutions whose
 * output padding restores the encoder's sizes exactly. Between the convolutions and the
 * code, optionally a hidden layer and residual blocks at its width (fl_res_stack, the
 * authors' residual MLP of their fiber VAE). Layer structs hold borrowed
 * pointers into the ct_params set they were created in; names "prefix.layer.weight". */
#ifndef FL_CONV_H
#define FL_CONV_H

#include "architectures/nn.h"
#include "core/config.h"
#include "ctorch/ct.h"

#define FL_CONV_MAX_STAGES 4

/* y = conv2d(x, w, b) (torch.nn.Conv2d), or its transpose (torch.nn.ConvTranspose2d);
 * initialised like torch: U(±1/√fan_in). */
typedef struct {
    ct_tensor *w, *b;  /* borrowed; w (out, in, k, k), transposed: (in, out, k, k) */
    int in, out, k, stride, pad, out_pad;
    bool transposed;
} fl_conv2d;
int fl_conv2d_init(fl_conv2d *l, ct_params *ps, const char *name, int in, int out, int k,
                   int stride, int pad, bool transposed, ct_gen *g);
ct_tensor *fl_conv2d_forward(const fl_conv2d *l, const ct_tensor *x);

typedef struct {
    int channels;        /* image channels: 1 gray, 3 colored */
    int height, width;   /* 28 × 28 */
    int n_stages;        /* stride-2 stages, 1..FL_CONV_MAX_STAGES */
    int widths[FL_CONV_MAX_STAGES];  /* channels after each stage */
    int extra;           /* stride-1 3 × 3 convolutions after each stage (0: none) */
    int hidden;          /* a hidden linear layer of this width (0: none) */
    int res_blocks;      /* residual blocks at width hidden after it (0: none; needs hidden) */
    int res_layers;      /* linear layers per residual block */
    int dim;             /* the code: encoder output / decoder input */
    fl_act act;
} fl_conv_spec;

/* (B, C, H, W) -> (B, out_mult · dim): the VAE's encoder gives mean and log-variance
 * with out_mult = 2. */
typedef struct {
    fl_conv2d down[FL_CONV_MAX_STAGES];
    fl_conv2d extra[FL_CONV_MAX_STAGES][2];
    fl_linear fc_hidden, fc_out;
    fl_res_stack res;    /* after fc_hidden */
    fl_conv_spec spec;
    int flat;            /* widths[last] · h_last · w_last */
} fl_conv_encoder;
int fl_conv_encoder_init(fl_conv_encoder *e, ct_params *ps, const char *name,
                         const fl_conv_spec *spec, int out_mult, ct_gen *g);
ct_tensor *fl_conv_encoder_forward(const fl_conv_encoder *e, const ct_tensor *x);

/* (B, dim) -> (B, C, H, W) logits (no output activation: apply a sigmoid for images). */
typedef struct {
    fl_linear fc_hidden, fc_in;
    fl_res_stack res;    /* after fc_hidden */
    fl_conv2d extra[FL_CONV_MAX_STAGES][2];
    fl_conv2d up[FL_CONV_MAX_STAGES];
    fl_conv_spec spec;
    int h0, w0;          /* the spatial size the linear layers reshape to */
} fl_conv_decoder;
int fl_conv_decoder_init(fl_conv_decoder *d, ct_params *ps, const char *name,
                         const fl_conv_spec *spec, ct_gen *g);
ct_tensor *fl_conv_decoder_forward(const fl_conv_decoder *d, const ct_tensor *z);

/* The spec from <section>.widths, <section>.extra, <section>.hidden and
 * <section>.activation (the subject and the VAE each have these keys), for images of
 * `channels` channels, 28 × 28, and a code of `dim`; no residual blocks (a section
 * that has them sets res_blocks and res_layers itself). -1 and a message naming the key. */
int fl_conv_spec_from_config(const fl_config *c, const char *section, int channels, int dim,
                             fl_conv_spec *out);

/* Spatial size after a stride-2 3 × 3 convolution with padding 1. */
static inline int fl_conv_down_size(int n) { return (n - 1) / 2 + 1; }

#endif
