/* Saving and loading: archives, parameter sets, optimizer state and generator state
 * round-trip bit for bit, and a training run that is saved, loaded and continued ends
 * exactly where the uninterrupted run does. */
#include <dirent.h>
#include <hdf5.h>

#include "test_ctorch_util.h"

/* ---- archives ------------------------------------------------------------------------ */

CT_TEST(archive, every_dtype_round_trips_bit_for_bit)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "dtypes.h5");
    ct_scope *s = ct_scope_begin();
    /* awkward values: NaN with a payload, -0, infinities, a subnormal, extremes */
    uint32_t f32bits[6] = {0x7fc00123u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x00000001u,
                           0x3f800000u};
    uint64_t f64bits[4] = {0x7ff8000000000abcull, 0x8000000000000000ull,
                           0x0000000000000001ull, 0x3fb999999999999aull};
    int64_t i64[3] = {INT64_MIN, -1, INT64_MAX};
    int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
    uint8_t u8[4] = {0, 1, 127, 255};
    bool b[3] = {true, false, true};
    const char *names[] = {"f32", "f64", "i64", "i32", "u8", "bool", "scalar", "empty",
                           "transposed", "eight_dims"};
    ct_tensor *t[10] = {
        ct_from_data(f32bits, CT_SHAPE(2, 3), CT_F32),
        ct_from_data(f64bits, CT_SHAPE(4), CT_F64),
        ct_from_data(i64, CT_SHAPE(3, 1), CT_I64),
        ct_from_data(i32, CT_SHAPE(3), CT_I32),
        ct_from_data(u8, CT_SHAPE(2, 2), CT_U8),
        ct_from_data(b, CT_SHAPE(3), CT_BOOL),
        ct_scalar(-2.5, CT_F64),
        ct_zeros(CT_SHAPE(0, 3), CT_F32),
        ct_transpose(ct_reshape(ct_arange(12, CT_F32), CT_SHAPE(3, 4)), 0, 1),
        ct_randn(CT_SHAPE(1, 2, 1, 2, 1, 2, 1, 2), CT_F64, NULL),
    };
    ct_archive *a = ct_archive_new();
    for (int i = 0; i < 10; i++) cr_assert_eq(ct_archive_put(a, names[i], t[i]), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_archive_write(a, path), CT_OK, "%s", ct_last_error());
    ct_archive *r = ct_archive_read(path);
    cr_assert_not_null(r, "%s", ct_last_error());
    cr_expect_eq(ct_archive_count(r), 10);
    for (int i = 0; i < 10; i++) {
        cr_expect_str_eq(ct_archive_name(r, i), names[i], "order is kept");
        ct_tensor *back = ct_archive_get(r, names[i]);
        cr_expect(ct_bits_equal(back, ct_contiguous(t[i])), "%s differs after the round trip",
                  names[i]);
    }
    cr_expect_eq(ct_ndim(ct_archive_get(r, "scalar")), 0);
    cr_expect_eq(ct_size(ct_archive_get(r, "transposed"), 0), 4);
    ct_archive_free(r);
    ct_archive_free(a);
    ct_scope_end(s);
    unlink(path);
}

CT_TEST(archive, scalars_round_trip_exactly)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "scalars.h5");
    ct_archive *a = ct_archive_new();
    ct_archive_put_f64(a, "tenth", 0.1);
    ct_archive_put_f64(a, "tiny", 4.9e-324);
    ct_archive_put_i64(a, "min", INT64_MIN);
    ct_archive_put_i64(a, "big", (int64_t)1 << 62 | 1);
    cr_assert_eq(ct_archive_write(a, path), CT_OK);
    ct_archive *r = ct_archive_read(path);
    cr_assert_not_null(r, "%s", ct_last_error());
    double d;
    int64_t i;
    cr_expect(ct_archive_get_f64(r, "tenth", &d) == CT_OK && d == 0.1);
    cr_expect(ct_archive_get_f64(r, "tiny", &d) == CT_OK && d == 4.9e-324);
    cr_expect(ct_archive_get_i64(r, "min", &i) == CT_OK && i == INT64_MIN);
    cr_expect(ct_archive_get_i64(r, "big", &i) == CT_OK && i == ((int64_t)1 << 62 | 1),
              "an i64 is not squeezed through a double");
    ct_archive_free(r);
    ct_archive_free(a);
    unlink(path);
}

CT_TEST(archive, put_stores_a_snapshot_and_replaces_by_name)
{
    ct_archive *a = ct_archive_new();
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_full(CT_SHAPE(3), 1.0, CT_F32);
    ct_archive_put(a, "t", t);
    ct_fill_(t, 2.0);
    cr_expect_eq(ct_item(ct_max_all(ct_archive_get(a, "t"))), 1.0, "later writes not seen");
    ct_fill_(ct_archive_get(a, "t"), 5.0);
    cr_expect_eq(ct_item(ct_max_all(ct_archive_get(a, "t"))), 1.0, "get returns a copy");
    ct_archive_put(a, "t", ct_full(CT_SHAPE(2), 3.0, CT_F64));
    cr_expect_eq(ct_archive_count(a), 1);
    cr_expect_eq(ct_numel(ct_archive_get(a, "t")), 2);
    cr_expect(ct_archive_has(a, "t"));
    cr_expect(!ct_archive_has(a, "u"));
    ct_scope_end(s);
    ct_archive_free(a);
}

/* What a reader without fiberlab sees (h5py, or HDF5 here): a dataset per entry at its
 * name, of its dtype and shape, with its place in the write order. */
CT_TEST(archive, is_an_hdf5_file_with_a_dataset_per_entry)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "layout.h5");
    ct_scope *s = ct_scope_begin();
    float w[6] = {1, 2, 3, 4, 5, 6};
    bool mask[3] = {true, false, true};
    ct_archive *a = ct_archive_new();
    cr_assert_eq(ct_archive_put(a, "params/nf.block0.w", ct_from_data(w, CT_SHAPE(2, 3), CT_F32)), CT_OK);
    cr_assert_eq(ct_archive_put_i64(a, "loop/step", 1234), CT_OK);
    cr_assert_eq(ct_archive_put(a, "mask", ct_from_data(mask, CT_SHAPE(3), CT_BOOL)), CT_OK);
    cr_assert_eq(ct_archive_put(a, "optim/g0.p0.exp_avg", ct_zeros(CT_SHAPE(2), CT_F64)), CT_OK);
    cr_assert_eq(ct_archive_write(a, path), CT_OK, "%s", ct_last_error());
    ct_archive_free(a);
    ct_scope_end(s);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "HDF5 opens %s", path);
    const char *names[4] = {"params/nf.block0.w", "loop/step", "mask", "optim/g0.p0.exp_avg"};
    const H5T_class_t classes[4] = {H5T_FLOAT, H5T_INTEGER, H5T_INTEGER, H5T_FLOAT};
    const size_t sizes[4] = {4, 8, 1, 8};
    const int ranks[4] = {2, 0, 1, 1};
    for (int i = 0; i < 4; i++) {
        hid_t d = H5Dopen2(f, names[i], H5P_DEFAULT);
        cr_assert(d >= 0, "a dataset '%s'", names[i]);
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        cr_expect_eq(H5Tget_class(t), classes[i], "%s", names[i]);
        cr_expect_eq(H5Tget_size(t), sizes[i], "%s", names[i]);
        cr_expect_eq(H5Sget_simple_extent_ndims(sp), ranks[i], "%s", names[i]);
        cr_expect_eq(H5Sget_simple_extent_type(sp), ranks[i] ? H5S_SIMPLE : H5S_SCALAR, "%s", names[i]);
        int64_t index = -1;
        hid_t at = H5Aopen(d, "index", H5P_DEFAULT);
        cr_expect(at >= 0 && H5Aread(at, H5T_NATIVE_INT64, &index) >= 0 && index == i,
                  "%s: index %lld", names[i], (long long)index);
        H5Aclose(at);
        cr_expect_eq(H5Aexists(d, "dtype") > 0, i == 2, "only the bool entry says dtype");
        H5Sclose(sp);
        H5Tclose(t);
        H5Dclose(d);
    }
    float wb[6] = {0};
    int64_t step = 0;
    hid_t d = H5Dopen2(f, "params/nf.block0.w", H5P_DEFAULT);
    cr_expect(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, wb) >= 0 &&
              memcmp(w, wb, sizeof w) == 0);
    H5Dclose(d);
    d = H5Dopen2(f, "loop/step", H5P_DEFAULT);
    cr_expect(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &step) >= 0 && step == 1234);
    H5Dclose(d);
    H5Fclose(f);
    unlink(path);
}

CT_TEST(archive, names_that_are_not_hdf5_paths_are_refused)
{
    ct_archive *a = ct_archive_new();
    ct_tensor *t = ct_ones(CT_SHAPE(2), CT_F32);
    const char *bad[] = {"", "/w", "w/", "a//b", "a/./b", "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(ct_archive_put(a, bad[i], t), CT_ERR_ARG, "'%s' accepted", bad[i]);
        ct_expect_error_mentions("not an HDF5 path");
    }
    cr_expect_eq(ct_archive_count(a), 0);
    cr_assert_eq(ct_archive_put(a, "best/params/w", t), CT_OK);
    cr_expect_eq(ct_archive_put(a, "best/params", t), CT_ERR_ARG, "a group cannot be an entry");
    ct_expect_error_mentions("'best/params/w'");
    cr_expect_eq(ct_archive_put(a, "best/params/w/x", t), CT_ERR_ARG, "nor an entry a group");
    ct_expect_error_mentions("clashes");
    cr_expect_eq(ct_archive_put(a, "best/params/w", t), CT_OK, "replacing is fine");
    cr_expect_eq(ct_archive_put(a, "best/params.w", t), CT_OK, "dots are fine");
    cr_expect_eq(ct_archive_count(a), 2);
    ct_free(t);
    ct_archive_free(a);
}

/* Number of entries in the temporary directory that start with prefix. */
static int count_files_starting_with(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    if (d) closedir(d);
    return n;
}

CT_TEST(archive, write_replaces_the_file_and_leaves_no_temporary)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "atomic.h5");
    const char *base = strrchr(path, '/') + 1;
    char dir[512];
    snprintf(dir, sizeof dir, "%.*s", (int)(base - path - 1), path);
    cr_assert(ct_test_write_file(path, "old contents", 12));
    ct_archive *a = ct_archive_new();
    ct_archive_put_i64(a, "x", 42);
    cr_assert_eq(ct_archive_write(a, path), CT_OK);
    cr_expect_eq(count_files_starting_with(dir, base), 1, "only the archive itself");
    ct_archive *r = ct_archive_read(path);
    int64_t x = 0;
    cr_expect(r && ct_archive_get_i64(r, "x", &x) == CT_OK && x == 42, "%s", ct_last_error());
    ct_archive_free(r);
    ct_archive_free(a);
    unlink(path);
}

CT_TEST(archive, host_data_round_trips_through_tensors)
{
    ct_scope *s = ct_scope_begin();
    double d[6] = {1, -2, 3.5, 1e300, -0.0, 7};
    ct_tensor *t = ct_from_data(d, CT_SHAPE(2, 3), CT_F64);
    d[0] = 99;  /* from_data copied */
    double back[6];
    cr_assert_eq(ct_to_data(ct_transpose(t, 0, 1), back, sizeof back), CT_OK);
    cr_expect_eq(back[0], 1.0);
    cr_expect_eq(back[1], 1e300, "transposed: row-major copy of the view");
    cr_expect_eq(back[2], -2.0);
    cr_expect(signbit(back[3]) && back[3] == 0.0);
    ct_scope_end(s);
}

/* ---- parameter sets ------------------------------------------------------------------ */

/* {w (3, 4) f32, b (4,) f64, running (4,) f32 buffer, steps () i64 buffer}, seeded. */
static ct_params *make_model(uint64_t seed)
{
    ct_gen *g = ct_gen_new(seed);
    ct_params *p = ct_params_new();
    ct_params_add(p, "w", ct_randn(CT_SHAPE(3, 4), CT_F32, g));
    ct_params_add(p, "b", ct_randn(CT_SHAPE(4), CT_F64, g));
    ct_params_add_buffer(p, "running", ct_rand(CT_SHAPE(4), CT_F32, g));
    ct_params_add_buffer(p, "steps", ct_scalar((double)seed, CT_I64));
    ct_gen_free(g);
    return p;
}

static bool same_values(const ct_params *p, const ct_params *q)
{
    if (ct_params_count(p) != ct_params_count(q)) return false;
    for (int i = 0; i < ct_params_count(p); i++)
        if (strcmp(ct_params_name(p, i), ct_params_name(q, i)) ||
            !ct_bits_equal(ct_params_at(p, i), ct_params_at(q, i)))
            return false;
    return true;
}

CT_TEST(params, save_then_load_round_trips_bit_for_bit)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "params.h5");
    ct_params *p = make_model(1), *q = make_model(2);
    cr_assert(!same_values(p, q));
    ct_tensor *qw = ct_params_find(q, "w");
    cr_assert_eq(ct_params_save(p, path), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_params_load(q, path), CT_OK, "%s", ct_last_error());
    cr_expect(same_values(p, q));
    cr_expect_eq(ct_params_find(q, "w"), qw, "handles stay the same (optimizers hold them)");
    cr_expect(ct_requires_grad(qw));
    cr_expect(!ct_requires_grad(ct_params_find(q, "running")));
    ct_params_free(q);
    ct_params_free(p);
    unlink(path);
}

CT_TEST(params, two_sets_share_one_archive_under_prefixes)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "prefixed.h5");
    ct_params *enc = make_model(3), *dec = make_model(4);
    ct_archive *a = ct_archive_new();
    cr_assert_eq(ct_params_put(enc, a, "encoder."), CT_OK);
    cr_assert_eq(ct_params_put(dec, a, "decoder."), CT_OK);
    cr_assert_eq(ct_archive_write(a, path), CT_OK);
    ct_archive_free(a);
    ct_archive *r = ct_archive_read(path);
    cr_assert_not_null(r, "%s", ct_last_error());
    cr_expect(ct_archive_has(r, "encoder.w") && ct_archive_has(r, "decoder.steps"));
    ct_params *enc2 = make_model(5), *dec2 = make_model(6);
    cr_expect_eq(ct_params_get(enc2, r, "encoder."), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_params_get(dec2, r, "decoder."), CT_OK, "%s", ct_last_error());
    cr_expect(same_values(enc, enc2));
    cr_expect(same_values(dec, dec2));
    cr_expect_neq(ct_params_get(enc2, r, "missing."), CT_OK);
    ct_expect_error_mentions("missing.w");
    ct_archive_free(r);
    ct_params_free(dec2);
    ct_params_free(enc2);
    ct_params_free(dec);
    ct_params_free(enc);
    unlink(path);
}

/* ---- generators ---------------------------------------------------------------------- */

CT_TEST(generator, restoring_the_state_repeats_the_draws)
{
    ct_gen *g = ct_gen_new(77);
    ct_scope *s = ct_scope_begin();
    ct_randn(CT_SHAPE(5), CT_F32, g);                    /* move away from the seed */
    ct_tensor *state = ct_gen_get_state(g);
    cr_assert_not_null(state, "%s", ct_last_error());
    cr_expect_eq(ct_dtype_of(state), CT_U8);
    ct_tensor *a1 = ct_randn(CT_SHAPE(7), CT_F64, g);
    ct_tensor *a2 = ct_randperm(10, g);
    ct_tensor *a3 = ct_rand(CT_SHAPE(3), CT_F32, g);
    cr_assert_eq(ct_gen_set_state(g, state), CT_OK, "%s", ct_last_error());
    cr_expect(ct_bits_equal(ct_randn(CT_SHAPE(7), CT_F64, g), a1));
    cr_expect(ct_bits_equal(ct_randperm(10, g), a2));
    cr_expect(ct_bits_equal(ct_rand(CT_SHAPE(3), CT_F32, g), a3));
    cr_expect(!ct_bits_equal(ct_randn(CT_SHAPE(7), CT_F64, g), a1), "and then move on");
    /* the state moves to another generator, through an archive file */
    char path[512];
    ct_test_tmp_path(path, sizeof path, "gen.h5");
    ct_archive *a = ct_archive_new();
    ct_archive_put(a, "gen", state);
    cr_assert_eq(ct_archive_write(a, path), CT_OK);
    ct_archive *r = ct_archive_read(path);
    cr_assert_not_null(r);
    ct_gen *h = ct_gen_new(1);
    cr_assert_eq(ct_gen_set_state(h, ct_archive_get(r, "gen")), CT_OK, "%s", ct_last_error());
    cr_expect(ct_bits_equal(ct_randn(CT_SHAPE(7), CT_F64, h), a1));
    ct_gen_free(h);
    ct_archive_free(r);
    ct_archive_free(a);
    ct_scope_end(s);
    ct_gen_free(g);
    unlink(path);
}

CT_TEST(generator, same_seed_same_draws_and_state_is_a_copy)
{
    ct_gen *g = ct_gen_new(5), *h = ct_gen_new(5);
    ct_scope *s = ct_scope_begin();
    ct_tensor *state = ct_gen_get_state(g);
    cr_expect(ct_bits_equal(ct_randn(CT_SHAPE(4), CT_F32, g), ct_randn(CT_SHAPE(4), CT_F32, h)));
    cr_expect(!ct_bits_equal(ct_gen_get_state(g), state), "the state taken earlier is frozen");
    ct_scope_end(s);
    ct_gen_free(h);
    ct_gen_free(g);
}

/* ---- a training run, interrupted ------------------------------------------------------ */

typedef struct {
    ct_params *p;
    ct_optim *o;
    ct_gen *g;
} run;

static run run_new(ct_optim_kind kind)
{
    run r = {make_model(10), ct_optim_new(kind), ct_gen_new(123)};
    ct_adam_opts opts = ct_adam_defaults();
    opts.lr = 0.01;
    opts.weight_decay = 0.05;
    ct_optim_add_group(r.o, r.p, opts);
    return r;
}

static void run_free(run *r)
{
    ct_gen_free(r->g);
    ct_optim_free(r->o);
    ct_params_free(r->p);
}

/* One step on a noisy regression loss: the noise comes from the run's generator, and
 * the learning rate decays, so that every piece of state matters. */
static void run_steps(run *r, int n)
{
    ct_tensor *w = ct_params_find(r->p, "w"), *b = ct_params_find(r->p, "b");
    for (int i = 0; i < n; i++) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *x = ct_randn(CT_SHAPE(8, 3), CT_F32, r->g);
        ct_tensor *y = ct_add(ct_to_dtype(ct_matmul(x, w), CT_F64), b);   /* (8, 4) */
        ct_tensor *loss = ct_mean(ct_square(ct_adds(y, -1.0)));
        ct_optim_zero_grad(r->o);
        cr_assert_eq(ct_backward(loss, false), CT_OK, "%s", ct_last_error());
        cr_assert_eq(ct_optim_step(r->o), CT_OK, "%s", ct_last_error());
        ct_optim_set_lr(r->o, 0, ct_optim_get_lr(r->o, 0) * 0.97);
        ct_scope_end(s);
    }
}

CT_TEST(checkpoint, continuing_after_a_load_equals_not_stopping)
{
    char ppath[512], opath[512];
    ct_test_tmp_path(ppath, sizeof ppath, "ckpt_params.h5");
    ct_test_tmp_path(opath, sizeof opath, "ckpt_optim.h5");
    for (int k = 0; k < CT_OPTIM_KIND_COUNT; k++) {
        run straight = run_new((ct_optim_kind)k);
        run_steps(&straight, 12);

        run first = run_new((ct_optim_kind)k);
        run_steps(&first, 5);
        cr_assert_eq(ct_params_save(first.p, ppath), CT_OK, "%s", ct_last_error());
        cr_assert_eq(ct_optim_save(first.o, opath), CT_OK, "%s", ct_last_error());
        ct_tensor *gstate = ct_gen_get_state(first.g);
        run_free(&first);

        run resumed = run_new((ct_optim_kind)k);
        cr_assert(!same_values(resumed.p, straight.p));
        cr_assert_eq(ct_params_load(resumed.p, ppath), CT_OK, "%s", ct_last_error());
        cr_assert_eq(ct_optim_load(resumed.o, opath), CT_OK, "%s", ct_last_error());
        cr_assert_eq(ct_gen_set_state(resumed.g, gstate), CT_OK, "%s", ct_last_error());
        ct_free(gstate);
        cr_expect_eq(ct_optim_steps_taken(resumed.o), 5);
        double lr = 0.01;
        for (int i = 0; i < 5; i++) lr *= 0.97;
        cr_expect_eq(ct_optim_get_lr(resumed.o, 0), lr, "lr restored");
        run_steps(&resumed, 7);

        cr_expect(same_values(resumed.p, straight.p),
                  "kind %d: the resumed run differs from the straight one", k);
        cr_expect_eq(ct_optim_steps_taken(resumed.o), 12);
        run_free(&resumed);
        run_free(&straight);
    }
    unlink(ppath);
    unlink(opath);
}

CT_TEST(checkpoint, one_archive_holds_params_optimizer_and_generator)
{
    char path[512];
    ct_test_tmp_path(path, sizeof path, "ckpt_all.h5");
    run straight = run_new(CT_ADAMW);
    run_steps(&straight, 9);

    run first = run_new(CT_ADAMW);
    run_steps(&first, 4);
    ct_archive *a = ct_archive_new();
    ct_tensor *gstate = ct_gen_get_state(first.g);
    cr_assert_eq(ct_params_put(first.p, a, "model."), CT_OK);
    cr_assert_eq(ct_optim_put(first.o, a, "optim."), CT_OK);
    cr_assert_eq(ct_archive_put(a, "rng", gstate), CT_OK);
    cr_assert_eq(ct_archive_put_i64(a, "epoch", 4), CT_OK);
    cr_assert_eq(ct_archive_write(a, path), CT_OK, "%s", ct_last_error());
    ct_free(gstate);
    ct_archive_free(a);
    run_free(&first);

    run resumed = run_new(CT_ADAMW);
    ct_archive *r = ct_archive_read(path);
    cr_assert_not_null(r, "%s", ct_last_error());
    cr_assert_eq(ct_params_get(resumed.p, r, "model."), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_optim_get(resumed.o, r, "optim."), CT_OK, "%s", ct_last_error());
    ct_tensor *rng = ct_archive_get(r, "rng");
    cr_assert_eq(ct_gen_set_state(resumed.g, rng), CT_OK, "%s", ct_last_error());
    ct_free(rng);
    int64_t epoch = 0;
    cr_expect(ct_archive_get_i64(r, "epoch", &epoch) == CT_OK && epoch == 4);
    ct_archive_free(r);
    run_steps(&resumed, 5);
    cr_expect(same_values(resumed.p, straight.p));
    run_free(&resumed);
    run_free(&straight);
    unlink(path);
}

CT_TEST(checkpoint, optimizer_state_round_trips_bit_for_bit)
{
    /* Saved, loaded into a fresh optimizer, saved again: the two files are identical. */
    char p1[512], p2[512];
    ct_test_tmp_path(p1, sizeof p1, "optim1.h5");
    ct_test_tmp_path(p2, sizeof p2, "optim2.h5");
    run r = run_new(CT_ADAM);
    run_steps(&r, 3);
    cr_assert_eq(ct_optim_save(r.o, p1), CT_OK);
    run fresh = run_new(CT_ADAM);
    cr_assert_eq(ct_optim_load(fresh.o, p1), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_optim_save(fresh.o, p2), CT_OK);
    size_t n1 = 0, n2 = 0;
    unsigned char *b1 = ct_test_read_file(p1, &n1), *b2 = ct_test_read_file(p2, &n2);
    cr_expect(n1 > 100 && n1 == n2 && memcmp(b1, b2, n1) == 0, "files of %zu and %zu bytes", n1,
              n2);
    free(b1);
    free(b2);
    /* and a state saved before any step loads as "no state yet" */
    run untouched = run_new(CT_ADAM);
    cr_assert_eq(ct_optim_save(untouched.o, p1), CT_OK);
    cr_expect_eq(ct_optim_load(fresh.o, p1), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_optim_steps_taken(fresh.o), 0);
    run_free(&untouched);
    run_free(&fresh);
    run_free(&r);
    unlink(p1);
    unlink(p2);
}
