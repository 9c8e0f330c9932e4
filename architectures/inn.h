/* Invertible blocks and their composition into a conditional invertible network (the
 * RealNVP/Glow family, like FrEIA's): ActNorm, affine coupling with soft clamping or
 * rational-quadratic spline coupling (neural spline flows, like zuko's/nflows'),
 * fixed permutations and fixed orthogonal mixing. Every block maps x (B, D) to y with
 * log|det ∂y/∂x| (B,), and back; the condition c (B, C) enters every coupling subnet
 * as an extra input (its share of the subnets' first layers computed in one product for
 * the whole network: fl_inn_condition). */
#ifndef FL_INN_H
#define FL_INN_H

#include <stdbool.h>

#include "architectures/nn.h"
#include "ctorch/ct.h"

typedef enum {
    FL_BLOCK_ACTNORM = 0,  /* y = (x + b) ⊙ exp(s), initialised from the first batch */
    FL_BLOCK_COUPLING,     /* Glow coupling: both halves, each given the other and c */
    FL_BLOCK_PERMUTE,      /* a fixed random permutation */
    FL_BLOCK_ORTHOGONAL,   /* a fixed random orthogonal matrix */
    FL_BLOCK_KIND_COUNT
} fl_block_kind;

/* What a coupling applies to its half: the affine map (RealNVP/Glow) or a monotone
 * rational-quadratic spline with linear tails (neural spline flows; ct_rq_spline). */
typedef enum { FL_COUPLING_AFFINE = 0, FL_COUPLING_SPLINE, FL_COUPLING_COUNT } fl_coupling_transform;

typedef struct {
    int hidden, n_layers;  /* each coupling subnet: an MLP of n_layers hidden layers */
    int n_blocks;          /* > 0: residual blocks of n_layers (a residual MLP) */
    fl_act act;
    double clamp;          /* affine: soft clamp of the log-scales, s ↦ clamp·(2/π)·atan(s/clamp) */
    fl_coupling_transform transform;
    int bins;              /* spline: bins on [−bound, bound] (>= 2); the identity outside */
    double bound;
} fl_coupling_spec;

typedef struct fl_block fl_block;
/* A new block whose parameters and buffers go into ps under name; caller frees. */
fl_block *fl_block_new(fl_block_kind kind, ct_params *ps, const char *name, int dim,
                       int cond_dim, const fl_coupling_spec *cs, ct_gen *g);
void fl_block_free(fl_block *b);
/* y and, through logdet (may be NULL), log|det| per sample (B,). */
ct_tensor *fl_block_forward(fl_block *b, const ct_tensor *x, const ct_tensor *c,
                            ct_tensor **logdet);
ct_tensor *fl_block_inverse(fl_block *b, const ct_tensor *y, const ct_tensor *c);

/* A sequence of blocks: for each of n_steps, [ActNorm] · Coupling · Mixing. */
typedef enum { FL_MIX_PERMUTE = 0, FL_MIX_ORTHOGONAL, FL_MIX_COUNT } fl_mixing;
typedef struct {
    int dim, cond_dim, n_steps;
    bool actnorm;
    fl_mixing mixing;
    fl_coupling_spec coupling;
} fl_inn_spec;
typedef struct fl_inn fl_inn;
fl_inn *fl_inn_new(ct_params *ps, const char *name, const fl_inn_spec *s, ct_gen *g);
void fl_inn_free(fl_inn *n);
int fl_inn_n_blocks(const fl_inn *n);
fl_block *fl_inn_block(fl_inn *n, int i);  /* borrowed */
ct_tensor *fl_inn_forward(fl_inn *n, const ct_tensor *x, const ct_tensor *c, ct_tensor **logdet);
ct_tensor *fl_inn_inverse(fl_inn *n, const ct_tensor *y, const ct_tensor *c);

/* The condition applied once for several passes of one network (a forward and an
 * inverse pass of a training step, with the same c): every coupling subnet's in-layer
 * sees [half, c], and c's share of all of them, c W_cᵀ + b, is one product (B, C) ×
 * (C, 2·couplings·hidden) instead of a product per subnet and pass. fl_inn_forward(n, x,
 * c, ld) = fl_inn_forward_cond(n, x, fl_inn_condition(n, c), ld). The prepared tensors
 * belong to the ctorch scope open at fl_inn_condition: use them inside it, then free
 * the struct (which does not free them). c may be NULL for an unconditional network. */
typedef struct fl_inn_cond fl_inn_cond;
fl_inn_cond *fl_inn_condition(fl_inn *n, const ct_tensor *c);  /* NULL + message on failure */
void fl_inn_cond_free(fl_inn_cond *k);
ct_tensor *fl_inn_forward_cond(fl_inn *n, const ct_tensor *x, const fl_inn_cond *k,
                               ct_tensor **logdet);
ct_tensor *fl_inn_inverse_cond(fl_inn *n, const ct_tensor *y, const fl_inn_cond *k);

#endif
