/* Replays the fuzz targets' kept inputs in the normal build (and under the sanitizers
 * in build-asan): every seed of tests/fuzz/corpus/<target>/ and every input that once
 * crashed a target, tests/fuzz/crashes/<target>/ (the regression tests of what the
 * fuzzers found), through the same function libFuzzer calls. A crash, a sanitizer
 * report or a leak fails the test; each target must have seeds. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/digits.h"
#include "tests/fuzz/fuzz.h"

/* Calls fn on every file of tests/fuzz/<kind>/<target>/; how many. */
static int replay(const char *kind, const char *target, int (*fn)(const uint8_t *, size_t))
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/fuzz/%s/%s", FL_TEST_DIR, kind, target);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        uint8_t *buf = NULL;
        size_t len = 0;
        cr_assert_eq(fl_read_file(p, &buf, &len), 0, "%s", p);
        cr_log_info("%s", p);
        fn(buf, len);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void replay_target(const char *target, int (*fn)(const uint8_t *, size_t))
{
    int seeds = replay("corpus", target, fn);
    replay("crashes", target, fn);
    cr_expect_gt(seeds, 0, "tests/fuzz/corpus/%s/ has no seeds", target);
}

Test(fuzz_inputs, config_and_overrides) { replay_target("config", fuzz_config); }
Test(fuzz_inputs, idx_plain_and_gzip) { replay_target("idx", fuzz_idx); }
Test(fuzz_inputs, npm_digit_json) { replay_target("npm", fuzz_npm); }
Test(fuzz_inputs, eval_samples_file) { replay_target("samples", fuzz_samples); }
Test(fuzz_inputs, cached_models_and_archives) { replay_target("cached", fuzz_cached); }
Test(fuzz_inputs, dataset_files) { replay_target("dataset", fuzz_dataset); }
