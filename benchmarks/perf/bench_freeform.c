/* The free-form flows' JVP g′(h) v, forward mode (what fl_ff_surrogate uses) against the
 * double-VJP trick, timed as a whole training step (surrogate loss + backward) on a
 * typical batch; the two surrogates are checked equal first.
 *   bench_freeform [--threads N] [--batch B] [--steps S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "architectures/freeform.h"
#include "bench_common.h"
#include "core/log.h"
#include "ctorch/ct.h"

#define DIM 54
#define COND 48

typedef struct {
    const fl_freeform *n;
    const ct_tensor *z;
} pair;

static ct_tensor *enc(void *ctx, const ct_tensor *x) { pair *p = ctx; return fl_freeform_encode(p->n, x, p->z); }
static ct_tensor *dec(void *ctx, const ct_tensor *h) { pair *p = ctx; return fl_freeform_decode(p->n, h, p->z); }

/* The surrogate with g′(h) v from two reverse passes (ct_jvp_double_vjp). */
static ct_tensor *surrogate_double_vjp(pair *p, const ct_tensor *u, ct_gen *g, ct_tensor **u_rec)
{
    ct_tensor *x = ct_detach(u);                                            /* (B, D) */
    ct_set_requires_grad(x, true);
    ct_tensor *h = enc(p, x);                                               /* (B, D) */
    ct_tensor *v = fl_ff_hutchinson_vectors(ct_shape_of(h), ct_dtype_of(h), FL_FF_GAUSSIAN, g);
    *u_rec = dec(p, h);                                                     /* (B, D) */
    ct_tensor *gv = ct_jvp_double_vjp(*u_rec, h, v, false);                 /* (B, D) */
    ct_tensor *vf = fl_ff_vjp(h, x, v, true);                               /* (B, D) */
    return ct_sum_dim(ct_mul(vf, ct_detach(gv)), 1, false);                 /* (B,) */
}

/* The same written out with forward mode (ct_jvp_fwad, whose primal is g(h)), as
 * fl_ff_surrogate computes it but without its scope bookkeeping, so that the two differ
 * only in the JVP. */
static ct_tensor *surrogate_forward(pair *p, const ct_tensor *u, ct_gen *g, ct_tensor **u_rec)
{
    ct_tensor *x = ct_detach(u);                                            /* (B, D) */
    ct_set_requires_grad(x, true);
    ct_tensor *h = enc(p, x);                                               /* (B, D) */
    ct_tensor *v = fl_ff_hutchinson_vectors(ct_shape_of(h), ct_dtype_of(h), FL_FF_GAUSSIAN, g);
    ct_tensor *gv = fl_ff_jvp(dec, p, h, v, u_rec);                         /* (B, D) */
    ct_tensor *vf = fl_ff_vjp(h, x, v, true);                               /* (B, D) */
    return gv ? ct_sum_dim(ct_mul(vf, ct_detach(gv)), 1, false) : NULL;     /* (B,) */
}

typedef ct_tensor *(*variant)(pair *, const ct_tensor *, ct_gen *, ct_tensor **);

/* One step's loss: β‖u − g(f(u))‖² − surrogate (the prior term is the same in both). */
static ct_tensor *step_loss(variant fn, pair *p, const ct_tensor *u, ct_gen *g)
{
    ct_tensor *u_rec = NULL;
    ct_tensor *s = fn(p, u, g, &u_rec);
    if (!s) return NULL;
    return ct_mean(ct_sub(ct_muls(ct_sum_dim(ct_square(ct_sub(u, u_rec)), 1, false), 10), s));
}

static double time_variant(variant fn, pair *p, ct_params *ps, const ct_tensor *u, int steps)
{
    ct_gen *g = ct_gen_new(1);
    double t0 = 0;
    for (int i = 0; i < steps + 3; i++) {
        if (i == 3) t0 = fl_now();
        ct_scope *s = ct_scope_begin();
        ct_tensor *l = step_loss(fn, p, u, g);
        if (!l || ct_backward(l, false)) {
            fprintf(stderr, "bench_freeform: %s\n", ct_last_error());
            exit(1);
        }
        ct_params_zero_grad(ps);
        ct_scope_end(s);
    }
    double t = (fl_now() - t0) / steps;
    ct_gen_free(g);
    return t;
}

int main(int argc, char **argv)
{
    int threads = 1, batch = 512, steps = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0) batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[i + 1]);
    }
    ct_set_num_threads(threads);
    ct_gen *g = ct_gen_new(0);
    ct_params *ps = ct_params_new();
    fl_freeform n;
    fl_freeform_spec spec = {.dim = DIM, .latent = DIM, .cond_dim = COND, .hidden = 128,
                             .n_blocks = 2, .n_layers = 2, .act = FL_ACT_SILU};
    if (fl_freeform_init(&n, ps, "fff", &spec, g)) {
        fprintf(stderr, "bench_freeform: %s\n", fl_error());
        return 1;
    }
    ct_tensor *u = ct_randn(CT_SHAPE(batch, DIM), CT_F32, g);               /* (B, D) */
    ct_tensor *z = ct_randn(CT_SHAPE(batch, COND), CT_F32, g);              /* (B, C) */
    pair p = {&n, z};
    /* the same vectors give the same surrogate both ways */
    ct_scope *s = ct_scope_begin();
    ct_gen *g1 = ct_gen_new(7), *g2 = ct_gen_new(7);
    ct_tensor *u1, *u2;
    ct_tensor *a = surrogate_forward(&p, u, g1, &u1), *b = surrogate_double_vjp(&p, u, g2, &u2);
    double diff = ct_max_abs_diff(a, b), scale = ct_item(ct_max_all(ct_abs(a)));
    ct_gen_free(g1);
    ct_gen_free(g2);
    ct_scope_end(s);
    if (!(diff <= 1e-4 * (1 + scale))) {
        fprintf(stderr, "bench_freeform: the two surrogates differ by %g (scale %g)\n", diff, scale);
        return 1;
    }
    /* ROUNDS alternations of the two, each `steps` steps; medians (a loaded machine
     * moves single rounds by tens of per cent) */
    enum { ROUNDS = 5 };
    double t_fwd[ROUNDS], t_dv[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        t_fwd[r] = time_variant(surrogate_forward, &p, ps, u, steps);
        t_dv[r] = time_variant(surrogate_double_vjp, &p, ps, u, steps);
    }
    double m_fwd = bench_median(t_fwd, ROUNDS), m_dv = bench_median(t_dv, ROUNDS);
    printf("free-form surrogate step, B = %d, D = %d, C = %d, %lld parameters, %d thread(s), "
           "medians of %d interleaved rounds of %d steps:\n",
           batch, DIM, COND, (long long)ct_params_numel(ps), threads, ROUNDS, steps);
    printf("  forward-mode JVP  %.2f ms/step\n  double-VJP JVP    %.2f ms/step  (%.2fx)\n",
           1e3 * m_fwd, 1e3 * m_dv, m_dv / m_fwd);
    ct_free(u);
    ct_free(z);
    ct_params_free(ps);
    ct_gen_free(g);
    return 0;
}
