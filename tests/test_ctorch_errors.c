/* Every ctorch error path: the call fails with a status or NULL and a message naming
 * the op or the file, nothing crashes, NULL inputs propagate without hiding the first
 * error, and a failed load changes nothing. */
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <zlib.h>

#include "test_ctorch_util.h"

/* ---- ops ------------------------------------------------------------------------- */

CT_TEST(errors, matmul_of_mismatched_shapes_names_the_op_and_shapes)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = ct_ones(CT_SHAPE(2, 3), CT_F32);
    ct_tensor *b = ct_ones(CT_SHAPE(2, 3), CT_F32);
    cr_expect_null(ct_matmul(a, b));
    ct_expect_error_mentions("ct_matmul");
    ct_expect_error_mentions("2x3");
    cr_expect_null(strchr(ct_last_error(), '\n'), "one line: '%s'", ct_last_error());
    ct_scope_end(s);
}

CT_TEST(errors, broadcast_mismatch_in_add_is_an_error)
{
    ct_scope *s = ct_scope_begin();
    cr_expect_null(ct_add(ct_ones(CT_SHAPE(2, 3), CT_F32), ct_ones(CT_SHAPE(4), CT_F32)));
    ct_expect_error_mentions("ct_add");
    ct_scope_end(s);
}

CT_TEST(errors, linear_of_mixed_dtypes_is_an_error)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_ones(CT_SHAPE(2, 3), CT_F32);
    ct_tensor *w = ct_ones(CT_SHAPE(4, 3), CT_F64);
    cr_expect_null(ct_linear(x, w, NULL));
    ct_expect_error_mentions("ct_linear");
    ct_scope_end(s);
}

CT_TEST(errors, normal_draws_of_an_integer_dtype_are_an_error)
{
    cr_expect_null(ct_randn(CT_SHAPE(3), CT_I64, NULL));
    ct_expect_error_mentions("ct_randn");
}

CT_TEST(errors, unknown_dtype_is_an_error)
{
    cr_expect_null(ct_zeros(CT_SHAPE(3), CT_DTYPE_COUNT));
    ct_expect_error_mentions("ct_zeros");
    ct_expect_error_mentions("dtype");
    float v = 1;
    cr_expect_null(ct_from_data(&v, CT_SHAPE(1), CT_DTYPE_COUNT));
    ct_expect_error_mentions("ct_from_data");
}

CT_TEST(errors, shape_of_too_many_dims_is_an_error)
{
    ct_shape bad = {CT_MAX_DIMS + 1, {1}};
    cr_expect_null(ct_ones(bad, CT_F32));
    ct_expect_error_mentions("ct_ones");
    ct_shape neg = {-1, {1}};
    ct_tensor *t = ct_ones(CT_SHAPE(2), CT_F32);
    cr_expect_null(ct_reshape(t, neg));
    ct_expect_error_mentions("ct_reshape");
    ct_free(t);
}

CT_TEST(errors, cross_entropy_with_float_targets_is_an_error)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *logits = ct_zeros(CT_SHAPE(2, 5), CT_F32);
    ct_tensor *target = ct_zeros(CT_SHAPE(2, 5, 3), CT_F32);
    cr_expect_null(ct_cross_entropy(logits, target));
    ct_expect_error_mentions("ct_cross_entropy");
    ct_scope_end(s);
}

CT_TEST(errors, narrow_out_of_range_is_an_error)
{
    ct_scope *s = ct_scope_begin();
    cr_expect_null(ct_narrow(ct_ones(CT_SHAPE(2, 3), CT_F32), 1, 2, 5));
    ct_expect_error_mentions("ct_narrow");
    cr_expect_null(ct_select(ct_ones(CT_SHAPE(2, 3), CT_F32), 0, 7));
    ct_expect_error_mentions("ct_select");
    ct_scope_end(s);
}

CT_TEST(errors, channels_last_of_a_tensor_that_is_not_4d_is_an_error)
{
    ct_scope *s = ct_scope_begin();
    cr_expect_null(ct_to_channels_last(ct_ones(CT_SHAPE(2, 3, 4), CT_F32)));
    ct_expect_error_mentions("ct_to_channels_last");
    ct_expect_error_mentions("4-D");
    cr_expect(!ct_is_channels_last(NULL));
    /* GroupNorm of channels-last data whose channels the groups do not divide: libtorch's message */
    cr_expect_null(ct_group_norm(ct_to_channels_last(ct_ones(CT_SHAPE(2, 6, 3, 3), CT_F32)), 4, NULL, NULL, 1e-5));
    ct_expect_error_mentions("ct_group_norm");
    ct_scope_end(s);
}

CT_TEST(errors, null_input_keeps_the_first_error)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *a = ct_ones(CT_SHAPE(2, 3), CT_F32);
    ct_tensor *bad = ct_matmul(a, a);
    cr_assert_null(bad);
    ct_expect_error_mentions("ct_matmul");

    const ct_tensor *list[2] = {a, bad};
    ct_tensor *grads[1] = {a};
    float buf[6];
    cr_expect_null(ct_exp(bad));
    cr_expect_null(ct_add(a, bad));
    cr_expect_null(ct_adds(bad, 1.0));
    cr_expect_null(ct_sum_dim(bad, 0, false));
    cr_expect_null(ct_linear(bad, a, NULL));
    cr_expect_null(ct_conv2d(bad, a, NULL, 1, 0, 1));
    cr_expect_null(ct_group_norm(bad, 1, NULL, NULL, 1e-5));
    cr_expect_null(ct_where(bad, a, a));
    cr_expect_null(ct_cat(list, 2, 0));
    cr_expect_null(ct_stack(list, 2, 0));
    cr_expect_null(ct_cat2(a, bad, 0));
    cr_expect_null(ct_vjp(bad, a, a, false));
    cr_expect_null(ct_jvp_double_vjp(bad, a, a, false));
    cr_expect_null(ct_fwad_make_dual(a, bad, 0));
    cr_expect_null(ct_clone(bad));
    cr_expect_null(ct_script_forward(NULL, a));
    cr_expect_eq(ct_backward(bad, false), CT_ERR_ARG);
    cr_expect_eq(ct_grad((const ct_tensor *const[]){bad}, NULL, 1,
                         (const ct_tensor *const[]){a}, 1, grads, false, false, false),
                 CT_ERR_ARG);
    cr_expect_null(grads[0], "a failed ct_grad leaves no handle behind");
    cr_expect_eq(ct_copy_(a, bad), CT_ERR_ARG);
    cr_expect_eq(ct_to_data(bad, buf, sizeof buf), CT_ERR_ARG);
    cr_expect(isnan(ct_item(bad)));
    cr_expect(isnan(ct_max_abs_diff(a, bad)));
    cr_expect_null(ct_params_add(NULL, "w", NULL));
    cr_expect_eq(ct_archive_put(NULL, "w", bad), CT_ERR_ARG);
    ct_expect_error_mentions("ct_matmul");
    ct_scope_end(s);
}

CT_TEST(errors, null_input_without_an_earlier_error_names_the_op)
{
    cr_expect_null(ct_tanh(NULL));
    ct_expect_error_mentions("ct_tanh");
    ct_clear_error();
    const ct_tensor *list[1] = {NULL};
    cr_expect_null(ct_cat(list, 1, 0));
    ct_expect_error_mentions("ct_cat");
    ct_clear_error();
    cr_expect_eq(ct_archive_get_f64(NULL, "x", NULL), CT_ERR_ARG);
    ct_expect_error_mentions("ct_archive_get_f64");
}

CT_TEST(errors, forward_pass_is_checked_once_at_its_end)
{
    /* The shape of model code: a chain of ops, one fails in the middle. */
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_randn(CT_SHAPE(4, 6), CT_F32, NULL);
    ct_tensor *w = ct_randn(CT_SHAPE(5, 6), CT_F32, NULL);
    ct_tensor *h = ct_silu(ct_linear(x, w, NULL));                   /* (4, 5) */
    ct_tensor *y = ct_add(ct_exp(ct_narrow(h, 1, 3, 4)), h);         /* fails: 3 + 4 > 5 */
    ct_tensor *out = ct_mean(ct_tanh(ct_mul(y, ct_muls(y, 2.0))));
    cr_expect_null(out);
    ct_expect_error_mentions("ct_narrow");
    ct_scope_end(s);
}

CT_TEST(errors, item_of_many_elements_is_nan_with_a_message)
{
    ct_tensor *t = ct_ones(CT_SHAPE(3), CT_F32);
    cr_expect(isnan(ct_item(t)));
    ct_expect_error_mentions("ct_item");
    ct_free(t);
}

CT_TEST(errors, to_data_with_a_buffer_of_the_wrong_size_is_an_error)
{
    ct_tensor *t = ct_ones(CT_SHAPE(3), CT_F32);
    float buf[4];
    cr_expect_eq(ct_to_data(t, buf, sizeof buf), CT_ERR_ARG);
    ct_expect_error_mentions("ct_to_data");
    cr_expect_eq(ct_to_data(t, buf, 3 * sizeof(float)), CT_OK);
    ct_free(t);
}

CT_TEST(errors, backward_of_a_non_scalar_is_an_error)
{
    ct_tensor *x = ct_ones(CT_SHAPE(3), CT_F32);
    ct_set_requires_grad(x, true);
    ct_tensor *y = ct_muls(x, 2.0);
    cr_expect_eq(ct_backward(y, false), CT_ERR_ARG);
    ct_expect_error_mentions("ct_backward");
    cr_expect_null(ct_grad_of(x));
    ct_free(y);
    ct_free(x);
}

CT_TEST(errors, backward_through_a_freed_graph_is_an_error)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_ones(CT_SHAPE(3), CT_F64);
    ct_set_requires_grad(x, true);
    ct_tensor *loss = ct_sum(ct_exp(x));
    cr_expect_eq(ct_backward(loss, false), CT_OK);
    cr_expect_neq(ct_backward(loss, false), CT_OK);
    ct_expect_error_mentions("ct_backward");
    ct_scope_end(s);
}

CT_TEST(errors, gradient_of_an_unused_input_is_an_error_unless_allowed)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_ones(CT_SHAPE(3), CT_F64), *z = ct_ones(CT_SHAPE(2), CT_F64);
    ct_set_requires_grad(x, true);
    ct_set_requires_grad(z, true);
    ct_tensor *y = ct_sum(ct_square(x));
    const ct_tensor *outs[1] = {y}, *ins[2] = {x, z};
    ct_tensor *g[2];
    cr_expect_neq(ct_grad(outs, NULL, 1, ins, 2, g, true, false, false), CT_OK);
    ct_expect_error_mentions("ct_grad");
    cr_expect(g[0] == NULL && g[1] == NULL);
    cr_assert_eq(ct_grad(outs, NULL, 1, ins, 2, g, true, false, true), CT_OK);
    cr_expect_eq(ct_item(ct_sum(g[0])), 6.0);     /* d/dx sum x^2 at 1 */
    cr_expect_eq(ct_item(ct_sum(ct_abs(g[1]))), 0.0);
    cr_expect_eq(ct_numel(g[1]), 2);
    ct_scope_end(s);
}

CT_TEST(errors, requires_grad_of_a_non_leaf_cannot_be_turned_off)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_ones(CT_SHAPE(3), CT_F32);
    ct_set_requires_grad(x, true);
    ct_tensor *y = ct_muls(x, 2.0);
    cr_expect_neq(ct_set_requires_grad(y, false), CT_OK);
    ct_expect_error_mentions("ct_set_requires_grad");
    ct_scope_end(s);
}

CT_TEST(errors, unknown_device_string_is_an_error)
{
    ct_device d;
    cr_expect_eq(ct_device_parse("cuda:1", &d), CT_OK);
    cr_expect_eq(d.kind, CT_CUDA);
    cr_expect_eq(d.index, 1);
    const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda: 1", "cuda:1x",
                         "cuda:99999999999", "cpu0", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ct_clear_error();
        cr_expect_eq(ct_device_parse(bad[i], &d), CT_ERR_ARG, "'%s'", bad[i]);
        cr_expect_neq(ct_last_error()[0], '\0');
    }
}

CT_TEST(errors, generator_state_of_the_wrong_size_is_an_error)
{
    ct_gen *g = ct_gen_new(1);
    ct_tensor *bad = ct_zeros(CT_SHAPE(7), CT_U8);
    cr_expect_neq(ct_gen_set_state(g, bad), CT_OK);
    ct_expect_error_mentions("ct_gen_set_state");
    ct_tensor *wrong_dtype = ct_zeros(CT_SHAPE(5056), CT_F32);
    cr_expect_neq(ct_gen_set_state(g, wrong_dtype), CT_OK);
    ct_free(wrong_dtype);
    ct_free(bad);
    ct_gen_free(g);
}

CT_TEST(errors, duplicate_parameter_name_is_an_error_and_frees_the_init)
{
    ct_params *p = ct_params_new();
    cr_assert_not_null(ct_params_add(p, "w", ct_ones(CT_SHAPE(2), CT_F32)));
    cr_expect_null(ct_params_add(p, "w", ct_zeros(CT_SHAPE(3), CT_F32)));
    ct_expect_error_mentions("'w'");
    cr_expect_null(ct_params_add_buffer(p, "w", ct_zeros(CT_SHAPE(3), CT_F32)));
    cr_expect_eq(ct_params_count(p), 1);
    cr_expect_eq(ct_numel(ct_params_find(p, "w")), 2, "the first one stays");
    ct_params_free(p);
    /* the live-handle check at the end shows the rejected inits were freed */
}

CT_TEST(errors, invalid_adam_options_are_rejected)
{
    ct_params *p = ct_params_new();
    ct_params_add(p, "w", ct_ones(CT_SHAPE(2), CT_F32));
    ct_optim *o = ct_optim_new(CT_ADAM);
    ct_adam_opts bad[4];
    for (int i = 0; i < 4; i++) bad[i] = ct_adam_defaults();
    bad[0].lr = -1;
    bad[1].beta1 = 1.0;
    bad[2].beta2 = -0.1;
    bad[3].eps = NAN;
    for (int i = 0; i < 4; i++) {
        ct_clear_error();
        cr_expect_eq(ct_optim_add_group(o, p, bad[i]), -1, "options %d", i);
        ct_expect_error_mentions("ct_optim_add_group");
    }
    cr_expect_eq(ct_optim_groups(o), 0);
    cr_expect_eq(ct_optim_add_group(o, p, ct_adam_defaults()), 0);
    cr_expect_eq(ct_optim_set_lr(o, 1, 0.1), CT_ERR_ARG);
    cr_expect_eq(ct_optim_set_lr(o, -2, 0.1), CT_ERR_ARG);
    ct_expect_error_mentions("ct_optim_set_lr");
    cr_expect_eq(ct_optim_get_lr(o, 0), 1e-3, "a rejected set_lr changes nothing");
    cr_expect_null(ct_optim_new(CT_OPTIM_KIND_COUNT));
    ct_expect_error_mentions("ct_optim_new");
    ct_optim_free(o);
    ct_params_free(p);
}

CT_TEST(errors, ending_a_scope_that_is_not_the_innermost_aborts, .signal = SIGABRT)
{
    /* A programmer error: it asserts (with file and line) rather than returns. */
    ct_scope *outer = ct_scope_begin();
    ct_scope_begin();
    ct_scope_end(outer);
}

/* ---- files ----------------------------------------------------------------------- */

/* Writes a small valid archive to path; returns its size. */
static size_t write_small_archive(const char *path)
{
    ct_archive *a = ct_archive_new();
    ct_tensor *t = ct_arange(6, CT_F32);
    ct_archive_put(a, "w", t);
    ct_archive_put_i64(a, "step", 12);
    cr_assert_eq(ct_archive_write(a, path), CT_OK, "%s", ct_last_error());
    ct_free(t);
    ct_archive_free(a);
    size_t n = 0;
    free(ct_test_read_file(path, &n));
    return n;
}

CT_TEST(files, missing_file_is_an_io_error_naming_it)
{
    const char *path = "/nonexistent-dir/params.h5";
    cr_expect_null(ct_archive_read(path));
    ct_expect_error_mentions(path);

    ct_params *p = ct_params_new();
    ct_params_add(p, "w", ct_ones(CT_SHAPE(2), CT_F32));
    ct_clear_error();
    cr_expect_eq(ct_params_load(p, path), CT_ERR_IO);
    ct_expect_error_mentions(path);
    ct_optim *o = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o, p, ct_adam_defaults());
    ct_clear_error();
    cr_expect_eq(ct_optim_load(o, path), CT_ERR_IO);
    ct_expect_error_mentions(path);
    ct_optim_free(o);
    ct_params_free(p);
}

CT_TEST(files, directory_is_not_an_archive)
{
    cr_expect_null(ct_archive_read("/tmp"));
    ct_expect_error_mentions("/tmp");
}

CT_TEST(files, every_truncation_of_an_archive_is_detected)
{
    char path[512], cut[512];
    ct_test_tmp_path(path, sizeof path, "trunc.h5");
    ct_test_tmp_path(cut, sizeof cut, "trunc_cut.h5");
    size_t n = write_small_archive(path);
    unsigned char *buf = ct_test_read_file(path, &n);
    for (size_t len = 0; len < n; len++) {
        cr_assert(ct_test_write_file(cut, buf, len));
        ct_clear_error();
        ct_archive *a = ct_archive_read(cut);
        cr_expect_null(a, "truncated to %zu of %zu bytes but read", len, n);
        ct_archive_free(a);
        ct_expect_error_mentions(cut);
    }
    ct_archive *a = ct_archive_read(path);
    cr_expect_not_null(a, "the whole file reads: %s", ct_last_error());
    ct_archive_free(a);
    free(buf);
    unlink(cut);
    unlink(path);
}

CT_TEST(files, every_flipped_byte_of_an_archive_is_detected)
{
    char path[512], bad[512];
    ct_test_tmp_path(path, sizeof path, "flip.h5");
    ct_test_tmp_path(bad, sizeof bad, "flip_bad.h5");
    size_t n = write_small_archive(path);
    unsigned char *buf = ct_test_read_file(path, &n);
    for (size_t i = 0; i < n; i++) {
        buf[i] ^= 0x10;
        cr_assert(ct_test_write_file(bad, buf, n));
        buf[i] ^= 0x10;
        ct_clear_error();
        ct_archive *a = ct_archive_read(bad);
        cr_expect_null(a, "byte %zu of %zu flipped but read", i, n);
        ct_archive_free(a);
        ct_expect_error_mentions(bad);
        if (i >= 8) ct_expect_error_mentions("checksum");
    }
    free(buf);
    unlink(bad);
    unlink(path);
}

/* An HDF5 file at path with a 512-byte user block and one float dataset "x" (2, 3). */
static hid_t create_hdf5_with_x(const char *path, bool userblock)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (userblock) H5Pset_userblock(fcpl, 512);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    cr_assert(f >= 0, "cannot create %s", path);
    return f;
}

static void write_dataset(hid_t f, const char *name, hid_t type, hid_t space, const void *data)
{
    hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(d >= 0);
    if (data) cr_assert(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
}

static void write_attr(hid_t f, const char *obj, const char *name, hid_t type, const void *v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0);
    cr_assert(H5Awrite(a, type, v) >= 0);
    H5Aclose(a);
    H5Sclose(space);
}

static void write_str_attr(hid_t f, const char *obj, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v));
    write_attr(f, obj, name, t, v);
    H5Tclose(t);
}

/* Fills the user block as ct_archive_write does: magic, CRC-32 of bytes 12 to the end,
 * header size, file size (little-endian, as this machine). */
static void seal_archive(const char *path, uint32_t header_size)
{
    size_t n = 0;
    unsigned char *buf = ct_test_read_file(path, &n);
    cr_assert(buf && n > 512);
    memset(buf, 0, 512);
    memcpy(buf, "CTARCH02", 8);
    uint64_t size = n;
    memcpy(buf + 12, &header_size, 4);
    memcpy(buf + 16, &size, 8);
    uint32_t crc = (uint32_t)crc32(0, buf + 12, (uInt)(n - 12));
    memcpy(buf + 8, &crc, 4);
    cr_assert(ct_test_write_file(path, buf, n));
    free(buf);
}

CT_TEST(files, file_of_another_format_is_reported_as_such)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "other.h5");
    ct_params *p = ct_params_new();
    ct_params_add(p, "x", ct_zeros(CT_SHAPE(2, 3), CT_F32));
    const char text[] = "PK\003\004 this is a zip file, or a .pt, or anything but an archive";
    cr_assert(ct_test_write_file(path, text, sizeof text));
    cr_expect_null(ct_archive_read(path));
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("magic");
    cr_expect_eq(ct_params_load(p, path), CT_ERR_FORMAT);
    cr_assert(ct_test_write_file(path, "", 0));
    cr_expect_null(ct_archive_read(path));
    ct_expect_error_mentions(path);
    /* an archive of the format before HDF5 */
    const char old[] = "CTARCH01\001\000\000\000\000\000\000\000 and so on";
    cr_assert(ct_test_write_file(path, old, sizeof old));
    cr_expect_eq(ct_params_load(p, path), CT_ERR_FORMAT);
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("old format");
    /* an HDF5 file, but not one ct_archive_write wrote: no header with the checksum */
    hid_t f = create_hdf5_with_x(path, false);
    hid_t space = H5Screate_simple(2, (hsize_t[]){2, 3}, NULL);
    write_dataset(f, "x", H5T_NATIVE_FLOAT, space, (float[6]){0});
    H5Sclose(space);
    H5Fclose(f);
    cr_expect_eq(ct_params_load(p, path), CT_ERR_FORMAT);
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("HDF5 file without the ctorch archive header");
    ct_params_free(p);
    unlink(path);
}

/* What a file from a buggy or hostile writer looks like: a correct checksum over HDF5
 * contents that are not an archive's. */
typedef enum {
    CRAFT_VALID,
    CRAFT_NO_INDEX,
    CRAFT_INDEX_OUT_OF_RANGE,
    CRAFT_INDEX_TWICE,
    CRAFT_I16,
    CRAFT_BOOL_OF_2,
    CRAFT_DTYPE_OTHER,
    CRAFT_NULL_SPACE,
    CRAFT_SOFT_LINK,
    CRAFT_HEADER_SIZE,
    CRAFT_COUNT
} craft;

static void write_crafted_archive(const char *path, craft k)
{
    hid_t f = create_hdf5_with_x(path, true);
    hid_t space = k == CRAFT_NULL_SPACE ? H5Screate(H5S_NULL)
                                        : H5Screate_simple(2, (hsize_t[]){2, 3}, NULL);
    float x[6] = {1, 2, 3, 4, 5, 6};
    short x16[6] = {1, 2, 3, 4, 5, 6};
    unsigned char bytes[6] = {0, 1, 2, 1, 0, 0};
    if (k == CRAFT_I16)
        write_dataset(f, "x", H5T_NATIVE_SHORT, space, x16);
    else if (k == CRAFT_BOOL_OF_2 || k == CRAFT_DTYPE_OTHER)
        write_dataset(f, "x", H5T_NATIVE_UINT8, space, bytes);
    else
        write_dataset(f, "x", H5T_NATIVE_FLOAT, space, k == CRAFT_NULL_SPACE ? NULL : x);
    H5Sclose(space);
    int64_t index = k == CRAFT_INDEX_OUT_OF_RANGE ? 5 : 0;
    if (k != CRAFT_NO_INDEX) write_attr(f, "x", "index", H5T_NATIVE_INT64, &index);
    if (k == CRAFT_BOOL_OF_2) write_str_attr(f, "x", "dtype", "bool");
    if (k == CRAFT_DTYPE_OTHER) write_str_attr(f, "x", "dtype", "complex");
    if (k == CRAFT_INDEX_TWICE) {
        hid_t scalar = H5Screate(H5S_SCALAR);
        write_dataset(f, "y", H5T_NATIVE_FLOAT, scalar, x);
        H5Sclose(scalar);
        write_attr(f, "y", "index", H5T_NATIVE_INT64, &index);
    }
    if (k == CRAFT_SOFT_LINK) H5Lcreate_soft("/x", f, "alias", H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    seal_archive(path, k == CRAFT_HEADER_SIZE ? 1024 : 512);
}

CT_TEST(files, archive_with_a_valid_checksum_but_bad_contents_is_rejected)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "crafted.h5");
    static const char *what[CRAFT_COUNT] = {
        [CRAFT_VALID] = "",
        [CRAFT_NO_INDEX] = "no integer attribute 'index'",
        [CRAFT_INDEX_OUT_OF_RANGE] = "index 5",
        [CRAFT_INDEX_TWICE] = "index 0, not one of the unused",
        [CRAFT_I16] = "unsupported type",
        [CRAFT_BOOL_OF_2] = "other than 0 and 1",
        [CRAFT_DTYPE_OTHER] = "'dtype' attribute",
        [CRAFT_NULL_SPACE] = "no shape",
        [CRAFT_SOFT_LINK] = "link",
        [CRAFT_HEADER_SIZE] = "header size 1024",
    };
    for (int k = 0; k < CRAFT_COUNT; k++) {
        write_crafted_archive(path, (craft)k);
        ct_clear_error();
        ct_archive *a = ct_archive_read(path);
        if (k == CRAFT_VALID) {
            cr_expect_not_null(a, "the valid one reads: %s", ct_last_error());
            cr_expect(ct_archive_has(a, "x"));
        } else {
            cr_expect_null(a, "case %d ('%s'): read", k, what[k]);
            ct_expect_error_mentions(path);
            ct_expect_error_mentions("corrupt");
            ct_expect_error_mentions(what[k]);
            cr_expect_null(strchr(ct_last_error(), '\n'), "one line: '%s'", ct_last_error());
        }
        ct_archive_free(a);
    }
    unlink(path);
}

CT_TEST(files, hdf5_errors_become_the_message_and_print_nothing)
{
    /* a correct checksum over bytes that are not HDF5: HDF5 itself fails to open them */
    char path[512], text[1200];
    ct_test_tmp_path(path, sizeof path, "not_hdf5.h5");
    memset(text, 0, 512);
    for (size_t i = 512; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
    cr_assert(ct_test_write_file(path, text, sizeof text));
    seal_archive(path, 512);
    fflush(stderr);
    FILE *captured = tmpfile();
    int saved = dup(2);
    cr_assert(captured && saved >= 0 && dup2(fileno(captured), 2) >= 0);
    ct_archive *a = ct_archive_read(path);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fseek(captured, 0, SEEK_END);
    long printed = ftell(captured);
    fclose(captured);
    cr_expect_null(a);
    ct_archive_free(a);
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("corrupt archive (HDF5: ");
    cr_expect_null(strstr(ct_last_error(), "unknown error"), "HDF5's reason is kept: '%s'",
                   ct_last_error());
    cr_expect_eq(printed, 0, "HDF5 printed %ld bytes to stderr", printed);
    unlink(path);
}

CT_TEST(files, a_failed_rename_leaves_no_temporary_and_the_target_as_it_was)
{
    /* the target is a directory: the temporary is written, the rename over it fails */
    char dir[512], tmp[600];
    ct_test_tmp_path(dir, sizeof dir, "target_dir");
    cr_assert(mkdir(dir, 0700) == 0);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    ct_archive *a = ct_archive_new();
    ct_archive_put_f64(a, "x", 1.0);
    cr_expect_eq(ct_archive_write(a, dir), CT_ERR_IO);
    ct_expect_error_mentions(dir);
    cr_expect(access(tmp, F_OK) != 0, "%s is left behind", tmp);
    struct stat st;
    cr_expect(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    ct_archive_free(a);
    rmdir(dir);
}

CT_TEST(files, write_to_an_unwritable_place_is_an_io_error_naming_it)
{
    ct_archive *a = ct_archive_new();
    ct_archive_put_f64(a, "x", 1.0);
    const char *path = "/nonexistent-dir/out.h5";
    cr_expect_eq(ct_archive_write(a, path), CT_ERR_IO);
    ct_expect_error_mentions(path);
    ct_archive_free(a);
}

CT_TEST(files, archive_lookups_of_absent_names_are_errors)
{
    ct_archive *a = ct_archive_new();
    ct_archive_put_f64(a, "lr", 0.5);
    ct_tensor *v = ct_ones(CT_SHAPE(2), CT_F32);
    ct_archive_put(a, "vec", v);
    double d;
    int64_t i;
    cr_expect_null(ct_archive_get(a, "nope"));
    ct_expect_error_mentions("'nope'");
    cr_expect_neq(ct_archive_get_f64(a, "nope2", &d), CT_OK);
    ct_expect_error_mentions("'nope2'");
    cr_expect_neq(ct_archive_get_i64(a, "vec", &i), CT_OK);
    ct_expect_error_mentions("'vec'");
    cr_expect_eq(ct_archive_get_f64(a, "lr", &d), CT_OK);
    cr_expect_eq(d, 0.5);
    cr_expect_eq(ct_archive_put(a, NULL, v), CT_ERR_ARG);
    ct_free(v);
    ct_archive_free(a);
}

/* A set {a (2, 3), b (4,)} with the given fill values. */
static ct_params *make_set(double va, double vb)
{
    ct_params *p = ct_params_new();
    ct_params_add(p, "a", ct_full(CT_SHAPE(2, 3), va, CT_F32));
    ct_params_add(p, "b", ct_full(CT_SHAPE(4), vb, CT_F32));
    return p;
}

static void expect_values(const ct_params *p, double va, double vb)
{
    cr_expect_eq(ct_item(ct_max_all(ct_params_find(p, "a"))), va);
    cr_expect_eq(ct_item(ct_min_all(ct_params_find(p, "a"))), va);
    cr_expect_eq(ct_item(ct_max_all(ct_params_find(p, "b"))), vb);
}

CT_TEST(files, params_load_with_a_missing_name_changes_nothing)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "missing_name.h5");
    ct_params *src = ct_params_new();
    ct_params_add(src, "a", ct_full(CT_SHAPE(2, 3), 5.0, CT_F32));  /* no "b" */
    cr_assert_eq(ct_params_save(src, path), CT_OK);
    ct_params *dst = make_set(1.0, 2.0);
    ct_scope *s = ct_scope_begin();
    cr_expect_eq(ct_params_load(dst, path), CT_ERR_FORMAT);
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("'b'");
    expect_values(dst, 1.0, 2.0);
    ct_scope_end(s);
    ct_params_free(dst);
    ct_params_free(src);
    unlink(path);
}

CT_TEST(files, params_load_with_a_wrong_shape_changes_nothing)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "wrong_shape.h5");
    ct_params *src = ct_params_new();
    ct_params_add(src, "a", ct_full(CT_SHAPE(2, 3), 5.0, CT_F32));
    ct_params_add(src, "b", ct_full(CT_SHAPE(5), 6.0, CT_F32));   /* (5,) not (4,) */
    cr_assert_eq(ct_params_save(src, path), CT_OK);
    ct_params *dst = make_set(1.0, 2.0);
    ct_scope *s = ct_scope_begin();
    cr_expect_eq(ct_params_load(dst, path), CT_ERR_FORMAT);
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("'b'");
    ct_expect_error_mentions("(5,)");
    expect_values(dst, 1.0, 2.0);  /* "a" was loadable, but nothing changes */
    ct_scope_end(s);
    ct_params_free(dst);
    ct_params_free(src);
    unlink(path);
}

CT_TEST(files, params_load_with_a_wrong_dtype_changes_nothing)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "wrong_dtype.h5");
    ct_params *src = ct_params_new();
    ct_params_add(src, "a", ct_full(CT_SHAPE(2, 3), 5.0, CT_F32));
    ct_params_add(src, "b", ct_full(CT_SHAPE(4), 6.0, CT_F64));
    cr_assert_eq(ct_params_save(src, path), CT_OK);
    ct_params *dst = make_set(1.0, 2.0);
    ct_scope *s = ct_scope_begin();
    cr_expect_eq(ct_params_load(dst, path), CT_ERR_FORMAT);
    ct_expect_error_mentions("'b'");
    ct_expect_error_mentions("f64");
    expect_values(dst, 1.0, 2.0);
    ct_scope_end(s);
    ct_params_free(dst);
    ct_params_free(src);
    unlink(path);
}

CT_TEST(files, corrupt_params_file_is_a_format_error_and_changes_nothing)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "corrupt_params.h5");
    ct_params *p = make_set(1.0, 2.0);
    cr_assert_eq(ct_params_save(p, path), CT_OK);
    size_t n = 0;
    unsigned char *buf = ct_test_read_file(path, &n);
    cr_assert(buf && n > 16);
    buf[n / 2] ^= 1;
    ct_test_write_file(path, buf, n);
    free(buf);
    ct_params *q = make_set(3.0, 4.0);
    ct_scope *s = ct_scope_begin();
    cr_expect_eq(ct_params_load(q, path), CT_ERR_FORMAT);
    ct_expect_error_mentions(path);
    ct_expect_error_mentions("checksum");
    expect_values(q, 3.0, 4.0);
    ct_scope_end(s);
    ct_params_free(q);
    ct_params_free(p);
    unlink(path);
}

CT_TEST(files, optimizer_state_that_does_not_fit_is_rejected_and_changes_nothing)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "optim_misfit.h5");
    /* state for a (3,) parameter ... */
    ct_params *p3 = ct_params_new();
    ct_tensor *w3 = ct_params_add(p3, "w", ct_ones(CT_SHAPE(3), CT_F32));
    ct_optim *o3 = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o3, p3, ct_adam_defaults());
    ct_scope *s = ct_scope_begin();
    ct_backward(ct_sum(ct_square(w3)), false);
    ct_optim_step(o3);
    cr_assert_eq(ct_optim_save(o3, path), CT_OK);
    /* ... loaded into an optimizer of a (4,) parameter, and of two groups */
    ct_params *p4 = ct_params_new();
    ct_params_add(p4, "w", ct_ones(CT_SHAPE(4), CT_F32));
    ct_optim *o4 = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o4, p4, ct_adam_defaults());
    cr_expect_eq(ct_optim_load(o4, path), CT_ERR_FORMAT);
    ct_expect_error_mentions(path);
    cr_expect_eq(ct_optim_steps_taken(o4), 0);
    ct_optim *o2 = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o2, p3, ct_adam_defaults());
    ct_optim_add_group(o2, p3, ct_adam_defaults());
    cr_expect_eq(ct_optim_load(o2, path), CT_ERR_FORMAT);
    ct_expect_error_mentions("g1.");
    /* and a file with more groups than the optimizer */
    cr_assert_eq(ct_optim_save(o2, path), CT_OK);
    cr_expect_eq(ct_optim_load(o3, path), CT_ERR_FORMAT);
    ct_expect_error_mentions("more groups");
    cr_expect_eq(ct_optim_steps_taken(o3), 1);
    /* or with more parameters in a group: state of {w, v} into an optimizer of {w} */
    ct_params *p2 = ct_params_new();
    ct_tensor *w2 = ct_params_add(p2, "w", ct_ones(CT_SHAPE(3), CT_F32));
    ct_tensor *v2 = ct_params_add(p2, "v", ct_ones(CT_SHAPE(3), CT_F32));
    ct_optim *o22 = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o22, p2, ct_adam_defaults());
    ct_backward(ct_sum(ct_mul(w2, v2)), false);
    ct_optim_step(o22);
    cr_assert_eq(ct_optim_save(o22, path), CT_OK);
    cr_expect_eq(ct_optim_load(o3, path), CT_ERR_FORMAT);
    ct_expect_error_mentions("more parameters");
    cr_expect_eq(ct_optim_steps_taken(o3), 1);
    ct_optim_free(o22);
    ct_params_free(p2);
    ct_scope_end(s);
    ct_optim_free(o2);
    ct_optim_free(o4);
    ct_params_free(p4);
    ct_optim_free(o3);
    ct_params_free(p3);
    unlink(path);
}

/* ---- getters: a failure leaves a message of the getter's own ---------------------------- */

#define STALE "an unrelated stale error"

/* After a failing getter the message starts with its name and says why, and (unless
 * the cause is a NULL handle, which keeps the earlier message after its own) holds
 * nothing of the stale one. */
#define expect_getter_message(getter, cause, null_handle)                                  \
    do {                                                                                   \
        const char *m_ = ct_last_error();                                                  \
        cr_expect(strncmp(m_, getter ": ", strlen(getter) + 2) == 0,                       \
                  "'%s' should start with '" getter ": '", m_);                            \
        cr_expect(strstr(m_, cause) != NULL, "'%s' should say '%s'", m_, cause);           \
        if (null_handle)                                                                   \
            cr_expect(strstr(m_, "(earlier error: " STALE ")") != NULL,                    \
                      "'%s' should keep the earlier message after its own", m_);           \
        else                                                                               \
            cr_expect(strstr(m_, STALE) == NULL, "'%s' holds the stale message", m_);      \
    } while (0)

CT_TEST(errors, failing_tensor_getters_name_themselves_and_the_cause)
{
    ct_tensor *t = ct_ones(CT_SHAPE(2, 3), CT_F32);
    ct_set_error(STALE);
    cr_expect_eq(ct_size(t, 2), -1);
    expect_getter_message("ct_size", "dim 2 out of range", false);
    ct_set_error(STALE);
    cr_expect_eq(ct_size(t, -3), -1);
    expect_getter_message("ct_size", "dim -3 out of range", false);
    ct_set_error(STALE);
    cr_expect(isnan(ct_item(t)));
    expect_getter_message("ct_item", "6 elements", false);

    ct_set_error(STALE);
    cr_expect_eq(ct_size(NULL, 0), -1);
    expect_getter_message("ct_size", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_ndim(NULL), -1);
    expect_getter_message("ct_ndim", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_numel(NULL), -1);
    expect_getter_message("ct_numel", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect(isnan(ct_item(NULL)));
    expect_getter_message("ct_item", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_dtype_of(NULL), CT_DTYPE_COUNT);
    expect_getter_message("ct_dtype_of", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_shape_of(NULL).ndim, -1, "not the shape of a 0-dim tensor");
    expect_getter_message("ct_shape_of", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_device_of(NULL).kind, CT_DEVICE_KIND_COUNT);
    expect_getter_message("ct_device_of", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect(!ct_requires_grad(NULL));
    expect_getter_message("ct_requires_grad", "NULL tensor", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_gen_device(NULL).kind, CT_DEVICE_KIND_COUNT);
    expect_getter_message("ct_gen_device", "NULL generator", true);

    /* a successful getter leaves the slot alone */
    ct_set_error(STALE);
    cr_expect_eq(ct_size(t, -1), 3);
    cr_expect_eq(ct_shape_of(t).ndim, 2);
    cr_expect_str_eq(ct_last_error(), STALE);
    ct_free(t);
}

CT_TEST(errors, failing_set_and_optimizer_getters_name_themselves_and_the_cause)
{
    ct_params *p = ct_params_new();
    ct_params_add(p, "w", ct_zeros(CT_SHAPE(2), CT_F32));
    ct_optim *o = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o, p, ct_adam_defaults());

    ct_set_error(STALE);
    cr_expect_null(ct_params_find(p, "v"));
    expect_getter_message("ct_params_find", "no parameter or buffer 'v'", false);
    ct_set_error(STALE);
    cr_expect_null(ct_params_at(p, 1));
    expect_getter_message("ct_params_at", "index 1 out of range", false);
    ct_set_error(STALE);
    cr_expect_null(ct_params_name(p, -1));
    expect_getter_message("ct_params_name", "index -1 out of range", false);
    ct_set_error(STALE);
    cr_expect(!ct_params_is_buffer(p, 4));
    expect_getter_message("ct_params_is_buffer", "index 4 out of range", false);
    ct_set_error(STALE);
    cr_expect(isnan(ct_optim_get_lr(o, 1)));
    expect_getter_message("ct_optim_get_lr", "no group 1", false);

    ct_set_error(STALE);
    cr_expect_null(ct_params_find(NULL, "w"));
    expect_getter_message("ct_params_find", "NULL set", true);
    ct_set_error(STALE);
    cr_expect_null(ct_params_find(p, NULL));
    expect_getter_message("ct_params_find", "NULL name", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_params_count(NULL), 0);
    expect_getter_message("ct_params_count", "NULL set", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_params_numel(NULL), 0);
    expect_getter_message("ct_params_numel", "NULL set", true);
    ct_set_error(STALE);
    cr_expect(isnan(ct_optim_get_lr(NULL, 0)));
    expect_getter_message("ct_optim_get_lr", "NULL optimizer", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_optim_groups(NULL), 0);
    expect_getter_message("ct_optim_groups", "NULL optimizer", true);
    ct_set_error(STALE);
    cr_expect_eq(ct_optim_steps_taken(NULL), 0);
    expect_getter_message("ct_optim_steps_taken", "NULL optimizer", true);

    ct_set_error(STALE);
    cr_expect_not_null(ct_params_find(p, "w"));
    cr_expect_eq(ct_optim_get_lr(o, 0), 1e-3);
    cr_expect_str_eq(ct_last_error(), STALE, "a successful getter leaves the slot alone");
    ct_optim_free(o);
    ct_params_free(p);
}

CT_TEST(errors, getters_after_getters_keep_the_first_cause_not_a_chain)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *y = ct_narrow(ct_ones(CT_SHAPE(2, 3), CT_F32), 1, 2, 5);   /* fails */
    cr_assert_null(y);
    int64_t b = ct_size(y, 0);
    int n = ct_ndim(y);
    double v = ct_item(y);
    cr_expect(b == -1 && n == -1 && isnan(v));
    cr_expect(strncmp(ct_last_error(), "ct_item: NULL tensor (earlier error: ct_narrow", 46) == 0,
              "'%s'", ct_last_error());
    cr_expect_null(strstr(ct_last_error(), "ct_size"), "'%s' is a chain", ct_last_error());
    cr_expect_null(strstr(ct_last_error(), "ct_ndim"), "'%s' is a chain", ct_last_error());
    ct_scope_end(s);
}
