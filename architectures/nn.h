/* Dense building blocks: linear layers, MLPs and residual MLPs, written on ctorch.
 * A layer struct holds borrowed pointers into the ct_params set it was created in
 * (the set owns the tensors); names follow "prefix.layer.weight". Conditioning, where
 * a network has one, is concatenated to its input by the caller (or its share of the
 * in-layer computed by the caller: fl_mlp_forward_pre). */
#ifndef FL_NN_H
#define FL_NN_H

#include <stdbool.h>

#include "ctorch/ct.h"

typedef enum { FL_ACT_SILU = 0, FL_ACT_RELU, FL_ACT_TANH, FL_ACT_GELU, FL_ACT_LEAKY, FL_ACT_COUNT } fl_act;
/* Parses "silu", "relu", "tanh", "gelu", "leaky_relu"; -1 when unknown. */
int fl_act_parse(const char *name);
ct_tensor *fl_act_apply(fl_act a, const ct_tensor *x);

/* U(−bound, bound) of shape s in the model float dtype (ct_float_dtype), from g: the
 * initialisation of torch.nn.Linear and Conv2d (bound 1/√fan_in). */
ct_tensor *fl_uniform(ct_shape s, double bound, ct_gen *g);

/* y = x Wᵀ + b, W (out, in); initialised like torch.nn.Linear (U(±1/√in)), or to zero
 * when zero_init (so a residual branch or a coupling starts as the identity). */
typedef struct {
    ct_tensor *w, *b;  /* borrowed */
    int in, out;
} fl_linear;
int fl_linear_init(fl_linear *l, ct_params *ps, const char *name, int in, int out,
                   bool zero_init, ct_gen *g);
ct_tensor *fl_linear_forward(const fl_linear *l, const ct_tensor *x);  /* (.., in) -> (.., out) */

/* A stack of hidden layers of one width: n_blocks residual blocks of n_layers (linear,
 * act) each, h <- h + block(h), or with n_blocks = 0 n_layers plain (linear, act)
 * layers. The middle of an MLP, and of the conv VAE between its convolutions and its
 * latent (the authors' residual MLP, DESIGN.md §7). Layers "<name>.h<i>". */
#define FL_MLP_MAX 32
typedef struct {
    fl_linear layers[FL_MLP_MAX];
    int n_blocks, n_layers, width;
    fl_act act;
} fl_res_stack;
/* -1 and a message naming `name` when it would have more than FL_MLP_MAX layers. */
int fl_res_stack_init(fl_res_stack *r, ct_params *ps, const char *name, int width, int n_blocks,
                      int n_layers, fl_act act, ct_gen *g);
ct_tensor *fl_res_stack_forward(const fl_res_stack *r, const ct_tensor *h); /* (B, w) -> (B, w) */

/* A residual MLP: in -> hidden, then n_blocks blocks of n_layers (linear, act) with a
 * skip around each block, then hidden -> out. n_blocks = 0 gives a plain MLP with
 * n_layers hidden layers. zero_last starts the output at 0. */
typedef struct {
    fl_linear in_layer, out_layer;
    fl_res_stack body;
    int hidden;
    fl_act act;
} fl_mlp;
typedef struct {
    int in, out, hidden;
    int n_blocks;    /* residual blocks; 0 = plain MLP */
    int n_layers;    /* linear layers per block (or hidden layers of a plain MLP) */
    fl_act act;
    bool zero_last;
} fl_mlp_spec;
int fl_mlp_init(fl_mlp *m, ct_params *ps, const char *name, const fl_mlp_spec *spec, ct_gen *g);
ct_tensor *fl_mlp_forward(const fl_mlp *m, const ct_tensor *x);  /* (B, in) -> (B, out) */

/* The same network on [x, c] with the condition's share of its in-layer computed by the
 * caller — for many networks that see one c in one product (architectures/inn.c):
 * fl_mlp_split_in cuts the in-layer's weight (hidden, in) at column k into views
 * *wx (hidden, k) and *wc (hidden, in − k); then with pre = c W_cᵀ + b (B, hidden),
 * fl_mlp_forward_pre(m, x, wx, pre) = fl_mlp_forward(m, [x, c]) for x (B, k).
 * pre NULL: the in-layer is x W_xᵀ + b (k = in, an unconditional network). */
int fl_mlp_split_in(const fl_mlp *m, int k, ct_tensor **wx, ct_tensor **wc);
ct_tensor *fl_mlp_forward_pre(const fl_mlp *m, const ct_tensor *x, const ct_tensor *wx,
                              const ct_tensor *pre);

#endif
