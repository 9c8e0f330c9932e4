/* The fiber loss. sqrt has an infinite derivative at 0, which autograd turns into NaN
 * (∞ · 0) when a sample sits exactly on the fiber (the exact sampler does); the square
 * root is therefore taken where the mean square is not 0 and masked, which keeps the
 * value exact, gives the gradient 0 there, and lets a NaN through as NaN. */
#include "core/fiber.h"

#include <stdio.h>

ct_tensor *fl_fiber_loss(const ct_tensor *z_hat, const ct_tensor *z)
{
    if (!z_hat || !z) {
        /* a NULL input is an earlier failure (e.g. a subject whose forward pass failed):
         * keep its message as the cause */
        const char *which = !z_hat ? "z_hat" : "z";
        char cause[1024];
        snprintf(cause, sizeof cause, "%s", ct_last_error());
        if (cause[0]) ct_set_error("fl_fiber_loss: no %s: %s", which, cause);
        else ct_set_error("fl_fiber_loss: NULL %s", which);
        return NULL;
    }
    if (ct_ndim(z_hat) != 2 || ct_ndim(z) > 2) {
        char a[96], b[96];
        ct_describe(z_hat, a, sizeof a);
        ct_describe(z, b, sizeof b);
        ct_set_error("fl_fiber_loss: expected representations (B, d), got %s and %s", a, b);
        return NULL;
    }
    ct_scope *s = ct_scope_begin();
    ct_tensor *m = ct_mean_dim(ct_square(ct_sub(z_hat, z)), 1, false);    /* (B,) */
    ct_tensor *zero = ct_eq(m, ct_zeros_like(m));                          /* (B,) bool */
    ct_tensor *safe = ct_where(zero, ct_ones_like(m), m);                  /* (B,) */
    ct_tensor *l = ct_where(zero, ct_zeros_like(m), ct_sqrt(safe));        /* (B,); NaN stays NaN */
    ct_tensor *out = ct_scope_keep(s, l);
    ct_scope_end(s);
    if (out && ct_size(out, 0) != ct_size(z_hat, 0)) {
        ct_free(out);
        ct_set_error("fl_fiber_loss: the representations do not broadcast to (B, d)");
        return NULL;
    }
    return out;
}

ct_tensor *fl_fiber_loss_mean(const ct_tensor *z_hat, const ct_tensor *z)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *l = ct_scope_keep(s, ct_mean(fl_fiber_loss(z_hat, z)));  /* () */
    ct_scope_end(s);
    return l;
}
