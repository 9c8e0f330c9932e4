/* Python reads what fiberlab saves: a parameter set written by ct_params_save loads,
 * with h5py alone, into the same network built in torch, which then computes what the
 * C model computed (tests/fixtures/check_params_h5.py). A Python without torch or h5py
 * fails these tests rather than skipping them: the reference has to run. */
#include <sys/wait.h>

#include "test_ctorch_util.h"

#include "architectures/nn.h"
#include "core/log.h"

/* Runs check_params_h5.py on the two files; its exit status, or -1 when it did not exit. */
static int run_check(const char *params, const char *io)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/fixtures/check_params_h5.py' '%s' '%s'", FL_TORCH_PYTHON,
             FL_TEST_DIR, params, io);
    fflush(stdout);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* x, y = the model at x, and the spec Python needs to build the same network. */
static void write_io(const char *path, const fl_mlp_spec *s, const ct_tensor *x,
                     const ct_tensor *y)
{
    ct_archive *a = ct_archive_new();
    cr_assert(!ct_archive_put_i64(a, "spec/in", s->in) && !ct_archive_put_i64(a, "spec/out", s->out) &&
              !ct_archive_put_i64(a, "spec/hidden", s->hidden) &&
              !ct_archive_put_i64(a, "spec/n_blocks", s->n_blocks) &&
              !ct_archive_put_i64(a, "spec/n_layers", s->n_layers) &&
              !ct_archive_put_i64(a, "spec/act", s->act) && !ct_archive_put(a, "x", x) &&
              !ct_archive_put(a, "y", y) && !ct_archive_write(a, path),
              "%s", ct_last_error());
    ct_archive_free(a);
}

CT_TEST(pyinterop, torch_loads_a_saved_mlp_and_computes_what_it_computed)
{
    char params[512], io[512];
    ct_test_tmp_path(params, sizeof params, "mlp_params.h5");
    ct_test_tmp_path(io, sizeof io, "mlp_io.h5");
    fl_mlp_spec spec = {.in = 5, .out = 3, .hidden = 16, .n_blocks = 2, .n_layers = 2,
                        .act = FL_ACT_SILU};
    ct_gen *g = ct_gen_new(2024);
    ct_params *ps = ct_params_new();
    fl_mlp m;
    cr_assert_eq(fl_mlp_init(&m, ps, "mlp", &spec, g), 0, "%s", fl_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(7, 5), ct_float_dtype(), g);   /* (7, 5) */
    ct_tensor *y = fl_mlp_forward(&m, x);                           /* (7, 3) */
    cr_assert_not_null(y, "%s", ct_last_error());
    cr_assert_eq(ct_params_save(ps, params), CT_OK, "%s", ct_last_error());
    write_io(io, &spec, x, y);
    int rc = run_check(params, io);
    cr_expect_eq(rc, 0, "%s tests/fixtures/check_params_h5.py exited with %d: torch does not "
                 "reproduce the saved model (or torch or h5py is missing)", FL_TORCH_PYTHON, rc);

    /* and the comparison can fail: outputs off by 1e-5 are told apart */
    write_io(io, &spec, x, ct_adds(y, 1e-5));
    cr_expect_eq(run_check(params, io), 1, "a difference of 1e-5 passed the check");
    ct_scope_end(s);
    ct_params_free(ps);
    ct_gen_free(g);
    unlink(params);
    unlink(io);
}
