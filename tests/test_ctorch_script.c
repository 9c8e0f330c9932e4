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

/* ---- several inputs, tuple outputs, named methods: ct_script_call ------------------
 * prior_scripted.pt and prior_ref.bin come from tests/fixtures/make_prior_fixture.py,
 * which documents the methods and the reference file's format. */

/* Entry `name` of prior_ref.bin as a new f32 tensor (scope-owned inside a scope). */
static ct_tensor *prior_ref(const char *name)
{
    size_t n = 0;
    unsigned char *buf = ct_test_read_file(FIXTURE("prior_ref.bin"), &n);
    cr_assert(buf && n >= 12 && memcmp(buf, "CTREF001", 8) == 0,
              "%s: missing, or not a CTREF001 file", FIXTURE("prior_ref.bin"));
    uint32_t count;
    size_t p = 8;
    memcpy(&count, buf + p, 4);
    p += 4;
    ct_tensor *t = NULL;
    for (uint32_t e = 0; e < count && !t; e++) {
        uint32_t len, ndim;
        cr_assert(p + 4 <= n);
        memcpy(&len, buf + p, 4);
        p += 4;
        cr_assert(p + len + 4 <= n);
        bool match = strlen(name) == len && memcmp(buf + p, name, len) == 0;
        p += len;
        memcpy(&ndim, buf + p, 4);
        p += 4;
        cr_assert(ndim <= CT_MAX_DIMS && p + 8 * ndim <= n);
        ct_shape s = {(int)ndim, {0}};
        int64_t numel = 1;
        for (uint32_t d = 0; d < ndim; d++, p += 8) {
            memcpy(&s.d[d], buf + p, 8);
            numel *= s.d[d];
        }
        cr_assert(p + 4 * (size_t)numel <= n, "%s: truncated", FIXTURE("prior_ref.bin"));
        if (match) t = ct_from_data(buf + p, s, CT_F32);
        p += 4 * (size_t)numel;
    }
    free(buf);
    cr_assert_not_null(t, "prior_ref.bin has no '%s'", name);
    return t;
}

static ct_script *load_prior(void)
{
    ct_script *m = ct_script_load(FIXTURE("prior_scripted.pt"), ct_default_device());
    cr_assert_not_null(m, "%s", ct_last_error());
    return m;
}

CT_TEST(script_call, forward_of_two_inputs_returns_the_tuple_python_computed)
{
    NEED_FIXTURE();
    ct_script *m = load_prior();
    ct_scope *s = ct_scope_begin();
    const ct_tensor *in[2] = {prior_ref("x"), prior_ref("t")};   /* (4, 6), (4,) */
    ct_tensor *out[4];
    int n = -1;
    cr_assert_eq(ct_script_call(m, NULL, in, 2, out, 4, &n), CT_OK, "%s", ct_last_error());
    cr_assert_eq(n, 2, "forward returns (eps, x - sqrt(t) eps), got %d tensors", n);
    cr_expect_null(out[2], "unused outputs stay NULL");
    ct_expect_close("eps", out[0], prior_ref("e"), 1e-6);
    ct_expect_close("x_t", out[1], prior_ref("xt"), 1e-6);
    /* "forward" by name is the same call */
    ct_tensor *again[2];
    cr_assert_eq(ct_script_call(m, "forward", in, 2, again, 2, &n), CT_OK, "%s", ct_last_error());
    cr_expect(ct_bits_equal(again[1], out[1]));
    ct_scope_end(s);
    ct_script_free(m);
}

CT_TEST(script_call, named_method_takes_a_0dim_time_and_matches_python)
{
    NEED_FIXTURE();
    ct_script *m = load_prior();
    cr_expect(ct_script_has_method(m, "eps"));
    cr_expect(ct_script_has_method(m, "forward"));
    cr_expect(!ct_script_has_method(m, "sample"));
    cr_expect(!ct_script_has_method(NULL, "eps"));
    ct_scope *s = ct_scope_begin();
    ct_tensor *t0 = prior_ref("t0");
    cr_assert_eq(ct_ndim(t0), 0);
    ct_tensor *e0 = NULL;
    int n = 0;
    cr_assert_eq(ct_script_call(m, "eps", (const ct_tensor *const[]){prior_ref("x"), t0}, 2,
                                &e0, 1, &n), CT_OK, "%s", ct_last_error());
    cr_assert_eq(n, 1);
    ct_expect_close("eps(x, t0)", e0, prior_ref("e0"), 1e-6);
    ct_scope_end(s);
    ct_script_free(m);
}

CT_TEST(script_call, gradients_flow_to_every_input_and_match_python)
{
    NEED_FIXTURE();
    ct_script *m = load_prior();
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = prior_ref("x"), *t = prior_ref("t");
    ct_set_requires_grad(x, true);
    ct_set_requires_grad(t, true);
    ct_tensor *out[2];
    int n = 0;
    cr_assert_eq(ct_script_call(m, NULL, (const ct_tensor *const[]){x, t}, 2, out, 2, &n), CT_OK,
                 "%s", ct_last_error());
    cr_assert(ct_requires_grad(out[0]) && ct_requires_grad(out[1]));
    /* sum(w1 eps + w2 x_t), as the fixture differentiated it */
    ct_tensor *loss = ct_sum(ct_add(ct_mul(prior_ref("w1"), out[0]), ct_mul(prior_ref("w2"), out[1])));
    ct_tensor *g[2];
    cr_assert_eq(ct_grad((const ct_tensor *const[]){loss}, NULL, 1,
                         (const ct_tensor *const[]){x, t}, 2, g, false, false, false),
                 CT_OK, "%s", ct_last_error());
    cr_expect_gt(ct_item(ct_norm(g[1])), 0.0, "no gradient reached t");
    ct_expect_close("d/dx", g[0], prior_ref("dx"), 1e-5);
    ct_expect_close("d/dt", g[1], prior_ref("dt"), 1e-5);
    ct_scope_end(s);
    ct_script_free(m);
}

CT_TEST(script_call, float_and_int_arguments_take_one_element_tensors)
{
    NEED_FIXTURE();
    ct_script *m = load_prior();
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = prior_ref("x");
    ct_tensor *y = NULL;
    int n = 0;
    /* affine(x, s: float, k: int) = s x + k */
    cr_assert_eq(ct_script_call(m, "affine",
                                (const ct_tensor *const[]){x, ct_scalar(2.5, CT_F64),
                                                           ct_full(CT_SHAPE(1), 3, CT_I64)},
                                3, &y, 1, &n), CT_OK, "%s", ct_last_error());
    ct_expect_close("2.5 x + 3", y, ct_adds(ct_muls(x, 2.5), 3.0), 1e-6);
    cr_expect_neq(ct_script_call(m, "affine",
                                 (const ct_tensor *const[]){x, ct_ones(CT_SHAPE(2), CT_F32),
                                                            ct_scalar(3, CT_I64)},
                                 3, &y, 1, &n), CT_OK);
    cr_expect_null(y);
    ct_expect_error_mentions("'affine'");
    ct_expect_error_mentions("argument 's'");
    ct_scope_end(s);
    ct_script_free(m);
}

CT_TEST(script_call, a_list_is_flattened_and_more_than_max_out_is_an_error)
{
    NEED_FIXTURE();
    ct_script *m = load_prior();
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = prior_ref("x");
    ct_tensor *out[3];
    int n = 0;
    cr_assert_eq(ct_script_call(m, "three", (const ct_tensor *const[]){x}, 1, out, 3, &n), CT_OK,
                 "%s", ct_last_error());
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) ct_expect_close("k x", out[i], ct_muls(x, i + 1), 0.0);
    long live = ct_live_handles();
    cr_expect_eq(ct_script_call(m, "three", (const ct_tensor *const[]){x}, 1, out, 2, &n),
                 CT_ERR_ARG);
    cr_expect_eq(n, 3, "*n_out says how many tensors there were");
    cr_expect(out[0] == NULL && out[1] == NULL);
    cr_expect_eq(ct_live_handles(), live, "a failed call leaves no handle behind");
    ct_expect_error_mentions("'three'");
    ct_expect_error_mentions("max_out");
    ct_scope_end(s);
    ct_script_free(m);
}

CT_TEST(script_call, errors_name_the_method)
{
    NEED_FIXTURE();
    ct_script *m = load_prior();
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = prior_ref("x");
    ct_tensor *out[2];
    int n = 7;
    ct_set_error("an unrelated earlier error");
    cr_expect_eq(ct_script_call(m, "sample", (const ct_tensor *const[]){x}, 1, out, 2, &n),
                 CT_ERR_ARG);
    ct_expect_error_mentions("'sample'");
    ct_expect_error_mentions("no such method");
    cr_expect_eq(n, 0);
    /* (Tensor, int): not only tensors */
    cr_expect_neq(ct_script_call(m, "with_count", (const ct_tensor *const[]){x}, 1, out, 2, &n),
                  CT_OK);
    ct_expect_error_mentions("'with_count'");
    ct_expect_error_mentions("Int");
    cr_expect(out[0] == NULL && out[1] == NULL);
    /* one input where eps takes two: libtorch's message, under the method's name */
    cr_expect_neq(ct_script_call(m, "eps", (const ct_tensor *const[]){x}, 1, out, 2, &n), CT_OK);
    ct_expect_error_mentions("'eps'");
    cr_log_info("%s", ct_last_error());
    /* ct_script_forward is forward with one tensor: forward(x, t) needs two */
    cr_expect_null(ct_script_forward(m, x));
    ct_expect_error_mentions("ct_script_forward");
    ct_scope_end(s);
    ct_script_free(m);
}
