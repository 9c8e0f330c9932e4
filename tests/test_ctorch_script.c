/* TorchScript subject models: a module written by tests/fixtures/make_script_fixture.py
 * (torch.jit.script and torch.jit.trace of the same model) computes in C what it
 * computed in Python, passes gradients to its input, and a missing or corrupt file is
 * an error naming it. The fixture also exercises reading archives written by Python. */
#include "test_ctorch_util.h"

#ifdef CT_FIXTURE_DIR
#define FIXTURE(name) CT_FIXTURE_DIR "/" name
#define NEED_FIXTURE() ((void)0)
#else
#define FIXTURE(name) "/nonexistent/" name
#define NEED_FIXTURE() cr_skip_test("no Python with torch at configure time: no fixture")
#endif

static const char *const modules[] = {"subject_scripted.pt", "subject_traced.pt"};

/* The reference tensors: x, y = model(x), w, dx = d sum(w y) / dx. */
static ct_archive *reference(void)
{
    ct_archive *io = ct_archive_read(FIXTURE("subject_io.h5"));
    cr_assert_not_null(io, "%s", ct_last_error());
    return io;
}

CT_TEST(script, output_matches_python)
{
    NEED_FIXTURE();
    ct_archive *io = reference();
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s%s", FIXTURE(""), modules[k]);
        ct_script *m = ct_script_load(path, ct_default_device());
        cr_assert_not_null(m, "%s", ct_last_error());
        ct_scope *s = ct_scope_begin();
        ct_tensor *x = ct_archive_get(io, "x");                  /* (4, 3, 28, 28) */
        ct_tensor *y = ct_script_forward(m, x);                  /* (4, 10) */
        cr_assert_not_null(y, "%s: %s", modules[k], ct_last_error());
        ct_tensor *want = ct_archive_get(io, "y");
        cr_expect_eq(ct_size(y, 0), 4);
        cr_expect_eq(ct_size(y, 1), 10);
        ct_expect_close(modules[k], y, want, 1e-5);
        ct_scope_end(s);
        ct_script_free(m);
    }
    ct_archive_free(io);
}

CT_TEST(script, gradients_flow_to_the_input_and_match_python)
{
    NEED_FIXTURE();
    ct_archive *io = reference();
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s%s", FIXTURE(""), modules[k]);
        ct_script *m = ct_script_load(path, ct_default_device());
        cr_assert_not_null(m, "%s", ct_last_error());
        ct_scope *s = ct_scope_begin();
        ct_tensor *x = ct_archive_get(io, "x");
        ct_set_requires_grad(x, true);
        ct_tensor *y = ct_script_forward(m, x);
        cr_assert_not_null(y, "%s", ct_last_error());
        cr_expect(ct_requires_grad(y));
        ct_tensor *loss = ct_sum(ct_mul(ct_archive_get(io, "w"), y));
        cr_assert_eq(ct_backward(loss, false), CT_OK, "%s", ct_last_error());
        ct_tensor *dx = ct_grad_of(x);
        cr_assert_not_null(dx, "no gradient reached the input");
        cr_expect_gt(ct_item(ct_norm(dx)), 0.0);
        ct_expect_close(modules[k], dx, ct_archive_get(io, "dx"), 1e-5);
        ct_scope_end(s);
        ct_script_free(m);
    }
    ct_archive_free(io);
}

CT_TEST(script, parameters_are_frozen_and_the_module_evaluates_any_batch)
{
    NEED_FIXTURE();
    ct_archive *io = reference();
    ct_script *m = ct_script_load(FIXTURE("subject_scripted.pt"), ct_default_device());
    cr_assert_not_null(m, "%s", ct_last_error());
    ct_scope *s = ct_scope_begin();
    ct_tensor *x1 = ct_narrow(ct_archive_get(io, "x"), 0, 2, 1);      /* (1, 3, 28, 28) */
    ct_tensor *y1 = ct_script_forward(m, x1);
    cr_assert_not_null(y1, "%s", ct_last_error());
    cr_expect(!ct_requires_grad(y1), "frozen parameters: no graph without a grad input");
    ct_expect_close("batch of one", y1, ct_narrow(ct_archive_get(io, "y"), 0, 2, 1), 1e-5);
    ct_scope_end(s);
    ct_script_free(m);
    ct_archive_free(io);
}

CT_TEST(script, input_of_the_wrong_shape_is_an_error)
{
    NEED_FIXTURE();
    ct_script *m = ct_script_load(FIXTURE("subject_scripted.pt"), ct_default_device());
    cr_assert_not_null(m, "%s", ct_last_error());
    ct_scope *s = ct_scope_begin();
    cr_expect_null(ct_script_forward(m, ct_zeros(CT_SHAPE(2, 5, 28, 28), CT_F32)));
    ct_expect_error_mentions("ct_script_forward");
    cr_expect_null(ct_script_forward(m, ct_zeros(CT_SHAPE(2, 3, 28), CT_F32)));
    ct_expect_error_mentions("ct_script_forward");
    ct_scope_end(s);
    ct_script_free(m);
}

CT_TEST(script, missing_file_is_an_error_naming_it)
{
    const char *path = "/nonexistent-dir/subject.pt";
    cr_expect_null(ct_script_load(path, ct_default_device()));
    ct_expect_error_mentions(path);
}

CT_TEST(script, corrupt_file_is_an_error_naming_it)
{
    NEED_FIXTURE();
    size_t n = 0;
    unsigned char *buf = ct_test_read_file(FIXTURE("subject_scripted.pt"), &n);
    cr_assert(buf && n > 1000);
    char path[512];
    ct_test_tmp_path(path, sizeof path, "corrupt.pt");
    /* truncated; one flipped byte in the middle (in the linear layer's weights, which
     * libtorch itself would load without noticing); garbage over the middle third; not
     * a zip at all; empty */
    size_t lens[] = {n / 2, n, n, 40, 0};
    for (int i = 0; i < 5; i++) {
        if (i == 1) buf[n / 2] ^= 0x01;
        if (i == 2) memset(buf + n / 3, 0xAB, n / 3);
        if (i == 3) memcpy(buf, "this is not a TorchScript file at all.\n", 40);
        cr_assert(ct_test_write_file(path, buf, lens[i]));
        ct_clear_error();
        ct_script *m = ct_script_load(path, ct_default_device());
        cr_expect_null(m, "corruption %d loaded", i);
        ct_script_free(m);
        cr_log_info("corruption %d: %s", i, ct_last_error());
        ct_expect_error_mentions(path);
        if (i == 1) ct_expect_error_mentions("checksum");
    }
    free(buf);
    unlink(path);
}

CT_TEST(script, a_loaded_module_is_a_counted_handle)
{
    NEED_FIXTURE();
    long before = ct_live_handles();
    ct_script *m = ct_script_load(FIXTURE("subject_traced.pt"), ct_default_device());
    cr_assert_not_null(m, "%s", ct_last_error());
    cr_expect_eq(ct_live_handles(), before + 1);
    ct_script_free(m);
    cr_expect_eq(ct_live_handles(), before);
}
