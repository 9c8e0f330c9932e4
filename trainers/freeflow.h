/* The free-form families FFF (trainers/fff.c) and FIF (trainers/fif.c), for the code
 * that checks them: model is what the family's create returns. */
#ifndef FL_FREEFLOW_H
#define FL_FREEFLOW_H

#include "architectures/freeform.h"
#include "ctorch/ct.h"

/* The encoder/decoder pair (borrowed from the model). */
const fl_freeform *fl_fff_net(const void *fff);
const fl_freeform *fl_fif_net(const void *fif);
/* FFF's exact −log p(u | z) = ½‖f(u)‖² + (D/2) log 2π − log|det ∂f/∂u| per sample,
 * u (B, D), z (B, C) -> (B,), without a graph; NULL and ct_last_error() on failure. */
ct_tensor *fl_fff_exact_nll(const void *fff, const ct_tensor *u, const ct_tensor *z);

#endif
