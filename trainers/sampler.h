/* A sampler of fibers as the evaluation sees it: a trained fiber model, a guided
 * diffusion model, an oracle. Lower than benchmarks/, so that trainers and samplers
 * can make one and the evaluation can score it. */
#ifndef FL_SAMPLER_H
#define FL_SAMPLER_H

#include "ctorch/ct.h"

/* A fiber model as the evaluation sees it. sample gets n targets — their images
 * x_targets (n, 3, 28, 28) in [0, 1] and representations z_targets (n, d) — and returns
 * k samples per target, (n·k, 3, 28, 28) in [0, 1], target-major (the k samples of
 * target 0 first), or NULL with ct_last_error()/fl_error() set. It is called with grad
 * mode off (a sampler that needs gradients, e.g. guidance, turns it on and restores
 * it) and inside a scope that frees what it returns. */
typedef struct {
    const char *name;   /* for tables and files */
    void *ctx;
    ct_tensor *(*sample)(void *ctx, const ct_tensor *x_targets, const ct_tensor *z_targets,
                         int k, ct_gen *g);
    void (*free_ctx)(void *ctx);   /* may be NULL; called by fl_sampler_free */
} fl_sampler;
void fl_sampler_free(fl_sampler *s);   /* frees the context; the struct is the caller's */

#endif
