/* The network of the iterative families (diffusion, flow matching): a conditional
 * residual MLP on [x, z, emb(t)] -> (B, D), with emb a sinusoidal embedding of the
 * time t ∈ [0, 1] (Vaswani et al. 2017, as in DDPM). One copy for both families. */
#ifndef FL_TIMENET_H
#define FL_TIMENET_H

#include "architectures/nn.h"
#include "core/config.h"
#include "ctorch/ct.h"

/* The network keys of a family section sec ("diff", "fm"): one place for their
 * defaults. CPU-sized: the authors used 6 residual blocks of [512, 512] and a time
 * embedding of 8. */
#define FL_TIMENET_KEYS(sec)                                                                  \
    {sec ".hidden", FL_KEY_INT, "128", 1, 65536, NULL, "Width of the network's hidden layers."}, \
    {sec ".blocks", FL_KEY_INT, "3", 0, 16, NULL,                                             \
     "Residual blocks of the network (the authors: 6); 0 gives a plain MLP."},                \
    {sec ".layers", FL_KEY_INT, "2", 1, 16, NULL,                                             \
     "Linear layers per residual block (or hidden layers of a plain MLP)."},                  \
    {sec ".time_embed", FL_KEY_INT, "8", 2, 1024, NULL,                                       \
     "Size of the sinusoidal time embedding (even; the authors: 8)."},                        \
    {sec ".activation", FL_KEY_STR, "\"silu\"", FL_NO_BOUNDS, "silu|relu|tanh|gelu|leaky_relu", \
     "Activation of the network."}

/* The sinusoidal embedding of times t (B, 1) in [0, 1] -> (B, dim), dim even:
 * [sin(1000 t ω_k), cos(1000 t ω_k)], ω_k = 10000^(−k/(dim/2)), k < dim/2 — the
 * embedding of DDPM's integer step 1000 t. */
ct_tensor *fl_time_embedding(const ct_tensor *t, int dim);

typedef struct {
    int dim, cond_dim;   /* D of x, C of z */
    int embed;           /* size of emb(t), even */
    int hidden, n_blocks, n_layers;
    fl_act act;
} fl_timenet_spec;

typedef struct {
    fl_mlp mlp;          /* [x, z, emb(t)] (B, D + C + E) -> (B, D) */
    int embed;
} fl_timenet;

/* Parameters "<name>.in.weight", …, into ps; initialised like torch.nn.Linear. -1 and a
 * message on failure. */
int fl_timenet_init(fl_timenet *n, ct_params *ps, const char *name, const fl_timenet_spec *s,
                    ct_gen *g);
/* x (B, D), t (B, 1), z (B, C) -> (B, D). */
ct_tensor *fl_timenet_forward(const fl_timenet *n, const ct_tensor *x, const ct_tensor *t,
                              const ct_tensor *z);

#endif
