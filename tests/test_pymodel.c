/* Saved models are readable without fiberlab: Python (python3-torch + h5py) loads a
 * saved NF fiber model (the model store's file) into the same architecture written in
 * PyTorch and reproduces fiberlab's samples for fixed noise
 * (tests/fixtures/check_nf_model.py). A missing python3-torch or h5py fails the test. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "core/config.h"
#include "core/h5.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "python_check.h"
#include "store_fixture.h"
#include "trainers/fiber.h"

TestSuite(pymodel, .init = make_tmp, .fini = remove_tmp, .timeout = 120);

static void write_f32(fl_h5w *w, const char *name, const ct_tensor *t)
{
    int64_t dims[2] = {ct_size(t, 0), ct_size(t, 1)};
    float *buf = malloc((size_t)(dims[0] * dims[1]) * sizeof *buf);
    cr_assert_eq(ct_to_data(t, buf, (size_t)(dims[0] * dims[1]) * sizeof *buf), CT_OK, "%s", ct_last_error());
    cr_assert_eq(fl_h5w_write(w, name, FL_F32, 2, dims, buf), 0, "%s", fl_error());
    free(buf);
}

Test(pymodel, python_loads_a_saved_nf_and_draws_the_same_samples_for_fixed_noise)
{
    const int D = 8, d = 5, B = 16;
    fl_config *c = fl_config_default();
    const char *kv[] = {"nf.blocks=3", "nf.hidden=16", "nf.layers=2", "nf.mixing=orthogonal",
                        "vae.latent=8", "seed=4"};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert_eq(fl_config_override(c, kv[i]), 0, "%s", fl_error());
    fl_fiber *m = fl_fiber_create(c, D, d);
    cr_assert_not_null(m, "%s", fl_error());
    ct_scope *sc = ct_scope_begin();
    ct_gen *g = ct_gen_new(11);
    /* away from the identity the couplings start at: every weight moved, ActNorm too */
    ct_params *ps = fl_fiber_params(m);
    for (int i = 0; i < ct_params_count(ps); i++) {
        if (ct_params_is_buffer(ps, i)) continue;
        ct_tensor *p = ct_params_at(ps, i);
        cr_assert_eq(ct_copy_(p, ct_add(p, ct_muls(ct_randn_like(p, g), 0.3))), CT_OK);
    }
    ct_tensor *zs = ct_adds(ct_muls(ct_randn(CT_SHAPE(64, d), CT_F32, g), 2.0), 1.0);   /* (64, d) */
    cr_assert_eq(fl_fiber_set_condition_stats(m, zs), 0, "%s", fl_error());
    char model[400], ref[400];
    snprintf(model, sizeof model, "%s/nf_model.h5", tmp);
    snprintf(ref, sizeof ref, "%s/nf_reference.h5", tmp);
    cr_assert_eq(fl_fiber_save(m, c, NULL, model), 0, "%s", fl_error());

    /* fiberlab's samples, and the noise they were drawn from */
    ct_tensor *z = ct_narrow(zs, 0, 0, B);                                     /* (B, d) */
    fl_sample_opts o = fl_sample_opts_eval(c);
    ct_gen *g1 = ct_gen_new(7), *g2 = ct_gen_new(7);
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u = fl_fiber_sample_space(m, z, &o, g1);                         /* (B, D) */
    ct_set_grad_enabled(prev);
    ct_tensor *eps = ct_randn(CT_SHAPE(B, D), CT_F32, g2);                      /* (B, D) */
    cr_assert_not_null(u, "%s", ct_last_error());
    fl_h5w *w = fl_h5w_create(ref);
    cr_assert_not_null(w, "%s", fl_error());
    write_f32(w, "z", z);
    write_f32(w, "eps", eps);
    write_f32(w, "u", u);
    cr_assert_eq(fl_h5w_commit(w), 0, "%s", fl_error());
    ct_gen_free(g1);
    ct_gen_free(g2);
    ct_gen_free(g);
    ct_scope_end(sc);

    char out[4096];
    int st = run_python_check("check_nf_model.py", model, ref, out, sizeof out);
    cr_expect_eq(st, 0, "Python did not reproduce the samples:\n%s", out);
    cr_log_info("%s", out);
    fl_fiber_free(m);
    fl_config_free(c);
}
