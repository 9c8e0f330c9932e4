/* The fiber loss (docs/design.md §2): how far a sample's representation lies from the
 * target's, as an RMS error over the d_s dimensions of the representation,
 *
 *     L_fib(x̂; z*) = sqrt( (1/d_s) · ‖f(x̂) − z*‖² ).
 *
 * The same function is the fidelity metric of the evaluation and, averaged over a
 * batch, the training regularizer, so it is differentiable. */
#ifndef FL_FIBER_H
#define FL_FIBER_H

#include "ctorch/ct.h"

/* z_hat (B, d) and z (B, d) (or anything that broadcasts to it) -> (B,) per-sample
 * sqrt(mean_d (z_hat − z)²), in z_hat's dtype. Differentiable with respect to both;
 * at a zero distance the gradient is 0 (the subgradient), not NaN. NULL and
 * ct_last_error() on a NULL input (the message of the failure that made it NULL kept
 * as the cause) or shapes that are not (B, d). The result follows
 * ctorch's rules (owned by the innermost open scope, else by the caller). */
ct_tensor *fl_fiber_loss(const ct_tensor *z_hat, const ct_tensor *z);

/* mean over the batch of fl_fiber_loss: the training term (0-dim). */
ct_tensor *fl_fiber_loss_mean(const ct_tensor *z_hat, const ct_tensor *z);

#endif
