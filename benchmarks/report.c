/* The report of a sweep folder, made from its run files and reference lines alone:
 * index.json (every run and every cell of the grid with its intervals), summary.md
 * (the table: reference lines, then each family and λ), timing.md, report.md (the
 * plots, every cell with per-channel KL and W1, the machines, the paper's findings
 * decided on these numbers), the fidelity-versus-consistency plots (fiber loss and
 * d_fib on y; per channel), the loss curves and the sample grids.
 *
 * Intervals (DESIGN.md §5): a cell with one seed shows its run's bootstrap interval
 * over the targets; a cell with several seeds shows the Student-t interval of the
 * seeds' means (the seed-to-seed spread is what a second study would see). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/plot.h"
#include "benchmarks/sweep.h"
#include "core/files.h"
#include "core/h5.h"
#include "core/image.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/stats.h"
#include "ctorch/ct.h"

/* The means every table shows, and their attribute names in a result group. */
enum { M_FIBER, M_REL, M_DFIB, M_KL, M_W1, M_TAIL, M_COUNT };
static const struct {
    const char *mean, *ci, *json, *head;
} metric[M_COUNT] = {
    {"fiber_mean", "fiber", "fiber_mean", "fiber loss"},
    {"relative_mean", "relative", "relative_mean", "relative fiber loss"},
    {"dfib_mean", "dfib", "dfib_mean", "d_fib"},
    {"kl_mean", "kl", "kl_mean", "mean KL"},
    {"w1_mean", "w1", "w1_mean", "mean W1"},
    {"tail_share", "tail", "tail_share", "share in the tail"},
};

typedef struct {
    char file[256], name[128], family[64], machine[512];
    double lambda;
    int64_t seed;
    fl_ci m[M_COUNT];
    double fiber_std, fiber_median, kl[3], w1[3], tail_loss, ci_level;
    double train_seconds, seconds_per_sample;
    double prior_kl;   /* NDTM cells: the mean KL of the prior's own samples; else NaN */
    double fixed_distance;   /* NDTM cells: mean distance of the samples' colors to data.fixed_color */
    int64_t steps, n_targets, bootstrap;
} run_row;

/* NDTM's cells are families "ndtm-<prior>-<target>[-refined|-fixed]" whose λ is the
 * guidance strength γ; "-fixed" ones are the leakage test's (targets of one color). */
static bool is_ndtm(const char *family) { return strncmp(family, "ndtm-", 5) == 0; }
static bool is_leak(const char *family)
{
    size_t n = strlen(family);
    return is_ndtm(family) && n > 6 && strcmp(family + n - 6, "-fixed") == 0;
}

/* The name of a family's series: "NF", or "NDTM correlated static" for "ndtm-correlated-static". */
static void series_name(const char *family, char *out, size_t n)
{
    bool nd = is_ndtm(family);
    snprintf(out, n, "%s%s", nd ? "NDTM " : "", nd ? family + 5 : family);
    for (char *p = out + (nd ? 5 : 0); *p; p++) {
        if (nd && *p == '-') *p = ' ';
        else if (!nd && *p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
    }
}

/* A cell's label: "NF λ = 10", "NDTM correlated static γ = 1". */
static void cell_name(const char *family, double lambda, char *out, size_t n)
{
    char sn[128];
    series_name(family, sn, sizeof sn);
    snprintf(out, n, "%s %s = %g", sn, is_ndtm(family) ? "γ" : "λ", lambda);
}

/* One cell of the grid: a family at one λ, over its seeds. */
typedef struct {
    const run_row *first;
    int n_seeds;
    fl_ci m[M_COUNT];
    double train_seconds;   /* mean over the seeds */
    double kl[3], w1[3], seconds_per_sample, fixed_distance;   /* means over the seeds */
} cell;

static double attr_or_nan(fl_h5r *h, const char *obj, const char *name)
{
    double v;
    if (fl_h5r_attr_f64(h, obj, name, &v)) {
        ct_clear_error();
        return NAN;
    }
    return v;
}

/* The means and intervals of the result group g (NaN where a file of an earlier
 * version has none). */
static void read_metrics(fl_h5r *h, const char *g, fl_ci m[M_COUNT])
{
    for (int j = 0; j < M_COUNT; j++) {
        char lo[40], hi[40];
        snprintf(lo, sizeof lo, "%s_lo", metric[j].ci);
        snprintf(hi, sizeof hi, "%s_hi", metric[j].ci);
        m[j] = (fl_ci){attr_or_nan(h, g, metric[j].mean), attr_or_nan(h, g, lo), attr_or_nan(h, g, hi)};
    }
}

static int read_run(const char *path, run_row *r)
{
    fl_h5r *h = fl_h5r_open(path);
    if (!h) return -1;
    int rc = fl_h5r_attr_str(h, "/", "family", r->family, sizeof r->family) ||
             fl_h5r_attr_f64(h, "/", "lambda", &r->lambda) ||
             fl_h5r_attr_i64(h, "/", "seed", &r->seed) ||
             fl_h5r_attr_f64(h, "/", "fiber_std", &r->fiber_std) ||
             fl_h5r_attr_f64(h, "/", "train_seconds", &r->train_seconds) ||
             fl_h5r_attr_f64(h, "/", "seconds_per_sample", &r->seconds_per_sample) ||
             fl_h5r_attr_i64(h, "train", "steps", &r->steps) ||
             fl_h5r_attr_i64(h, "eval", "n_targets", &r->n_targets) ||
             fl_h5r_read(h, "eval/kl", FL_F64, r->kl, sizeof r->kl) ||
             fl_h5r_read(h, "eval/w1", FL_F64, r->w1, sizeof r->w1);
    if (!rc) {
        read_metrics(h, "eval", r->m);
        r->tail_loss = attr_or_nan(h, "eval", "tail_loss");
        r->prior_kl = attr_or_nan(h, "/", "prior_kl_mean");
        r->fixed_distance = attr_or_nan(h, "/", "fixed_distance");
        if (is_ndtm(r->family) && fl_h5r_attr_f64(h, "/", "gamma", &r->lambda))
            rc = -1;   /* an NDTM cell's strength */
        if (fl_h5r_attr_str(h, "/", "machine", r->machine, sizeof r->machine)) {
            ct_clear_error();   /* written before runs named their machine */
            snprintf(r->machine, sizeof r->machine, "not recorded");
        }
        r->ci_level = attr_or_nan(h, "eval", "ci_level");
        double b = attr_or_nan(h, "eval", "bootstrap");
        r->bootstrap = isnan(b) ? 0 : (int64_t)b;
        /* from the per-sample losses: files of earlier versions have no attribute */
        int64_t n = 0;
        float *loss = fl_h5r_read_alloc(h, "eval/loss", FL_F32, &n);
        rc = !loss;
        r->fiber_median = loss ? fl_median(loss, n) : NAN;
        free(loss);
    }
    fl_h5r_close(h);
    return rc ? -1 : 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const run_row *x = a, *y = b;
    if (is_ndtm(x->family) != is_ndtm(y->family)) return is_ndtm(x->family) ? 1 : -1;
    int c = strcmp(x->family, y->family);
    if (c) return c;
    if (x->lambda != y->lambda) return x->lambda < y->lambda ? -1 : 1;
    return x->seed < y->seed ? -1 : x->seed > y->seed;
}

/* Cells of the sorted rows: consecutive rows of one family and λ. cells has room for n. */
static int make_cells(const run_row *rows, int n, cell *cells)
{
    int nc = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && strcmp(rows[j].family, rows[i].family) == 0 && rows[j].lambda == rows[i].lambda) j++;
        cell *c = &cells[nc++];
        c->first = &rows[i];
        c->n_seeds = j - i;
        double level = isnan(rows[i].ci_level) ? 0.95 : rows[i].ci_level, ts = 0, sps = 0;
        memset(c->kl, 0, sizeof c->kl);
        memset(c->w1, 0, sizeof c->w1);
        for (int a = i; a < j; a++) {
            ts += rows[a].train_seconds;
            sps += rows[a].seconds_per_sample;
            for (int k = 0; k < 3; k++) {
                c->kl[k] += rows[a].kl[k] / (j - i);
                c->w1[k] += rows[a].w1[k] / (j - i);
            }
        }
        c->train_seconds = ts / (j - i);
        c->seconds_per_sample = sps / (j - i);
        c->fixed_distance = 0;
        for (int a = i; a < j; a++) c->fixed_distance += rows[a].fixed_distance / (j - i);
        for (int k = 0; k < M_COUNT; k++) {
            if (j - i == 1) {
                c->m[k] = rows[i].m[k];
                continue;
            }
            double v[256];
            int m = 0;
            for (int a = i; a < j && m < 256; a++) v[m++] = rows[a].m[k].mean;
            c->m[k] = fl_ci_student_t(v, m, level);
            /* every reported metric is ≥ 0: with few, spread seeds t's interval can reach
             * below 0, which no seed's value can */
            if (c->m[k].lo < 0) c->m[k].lo = 0;
        }
        i = j;
    }
    return nc;
}

/* The grid of one run: each row a target, then its stored samples. */
static int write_grid(const char *run_path, const char *png)
{
    fl_h5r *h = fl_h5r_open(run_path);
    if (!h) return -1;
    int64_t nt = 0, ns = 0, nst = 0, k = 0;
    float *targets = fl_h5r_read_alloc(h, "grid/targets", FL_F32, &nt);
    float *samples = fl_h5r_read_alloc(h, "eval/samples", FL_F32, &ns);
    int64_t *tidx = fl_h5r_read_alloc(h, "grid/target_index", FL_I64, &nt);
    int64_t *sidx = fl_h5r_read_alloc(h, "eval/samples_target", FL_I64, &nst);
    fl_h5r_attr_i64(h, "eval", "k", &k);
    fl_h5r_close(h);
    int rc = -1;
    const int64_t tile = 3 * 28 * 28;
    if (targets && samples && tidx && sidx && nt > 0) {
        int64_t cols = 1 + (k > 0 ? (k < 10 ? k : 10) : 8);
        float *img = calloc((size_t)(nt * cols * tile), sizeof *img);
        if (img) {
            for (int64_t t = 0; t < nt; t++) {
                memcpy(img + t * cols * tile, targets + t * tile, tile * sizeof *img);
                int64_t col = 1;
                for (int64_t i = 0; i < nst && col < cols; i++)
                    if (sidx[i] == tidx[t]) memcpy(img + (t * cols + col++) * tile, samples + i * tile, tile * sizeof *img);
                for (; col < cols; col++) /* fewer samples stored: blank tiles */
                    for (int64_t j = 0; j < tile; j++) img[(t * cols + col) * tile + j] = NAN;
            }
            fl_grid_opts o = fl_grid_defaults();
            o.cols = (int)cols;
            rc = fl_png_grid_write(png, img, nt * cols, 3, 28, 28, &o);
            free(img);
        }
    } else {
        fl_fail("%s: no stored samples for a grid", run_path);
    }
    free(targets);
    free(samples);
    free(tidx);
    free(sidx);
    return rc;
}

/* The reference lines of dir/references.h5, in the order of the table. */
typedef struct {
    const char *group, *label;
    fl_ci m[M_COUNT];
} ref_line;
static int read_references(const char *dir, ref_line *lines, int max)
{
    static const struct { const char *group, *label; } known[] = {
        {"nearest_neighbour", "nearest neighbour"},
        {"augmented", "augmented original"},
        {"vae_recon", "VAE reconstruction (floor)"},
        {"vae_prior", "unconditional VAE sample"},
    };
    char path[4200];
    snprintf(path, sizeof path, "%s/references.h5", dir);
    fl_h5r *h = fl_h5r_open(path);
    if (!h) {
        ct_clear_error();
        return 0;
    }
    int n = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0] && n < max; i++) {
        char g[128];
        snprintf(g, sizeof g, "lines/%s", known[i].group);
        if (!fl_h5r_has(h, g)) continue;
        lines[n].group = known[i].group;
        lines[n].label = known[i].label;
        read_metrics(h, g, lines[n].m);
        if (!isnan(lines[n].m[M_FIBER].mean)) n++;
    }
    fl_h5r_close(h);
    ct_clear_error();
    return n;
}

static cJSON *json_num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* {"fiber_mean": m, "fiber_ci": [lo, hi], …}: NaN as null (JSON has no NaN). */
static void json_metrics(cJSON *o, const fl_ci m[M_COUNT])
{
    for (int k = 0; k < M_COUNT; k++) {
        char name[48];
        snprintf(name, sizeof name, "%s_ci", metric[k].ci);
        cJSON_AddItemToObject(o, metric[k].json, json_num(m[k].mean));
        cJSON *ci = cJSON_CreateArray();
        cJSON_AddItemToArray(ci, json_num(m[k].lo));
        cJSON_AddItemToArray(ci, json_num(m[k].hi));
        cJSON_AddItemToObject(o, name, ci);
    }
}

static int write_index(const char *dir, const run_row *rows, int n, const cell *cells, int nc,
                       const ref_line *lines, int n_lines)
{
    cJSON *root = cJSON_CreateObject(), *runs = cJSON_AddArrayToObject(root, "runs");
    for (int i = 0; i < n; i++) {
        const run_row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", r->file);
        cJSON_AddStringToObject(o, "family", r->family);
        cJSON_AddNumberToObject(o, "lambda", r->lambda);
        cJSON_AddNumberToObject(o, "seed", (double)r->seed);
        json_metrics(o, r->m);
        cJSON_AddItemToObject(o, "fiber_std", json_num(r->fiber_std));
        cJSON_AddItemToObject(o, "fiber_median", json_num(r->fiber_median));
        cJSON_AddItemToObject(o, "kl_rgb", cJSON_CreateDoubleArray(r->kl, 3));
        cJSON_AddItemToObject(o, "w1_rgb", cJSON_CreateDoubleArray(r->w1, 3));
        cJSON_AddItemToObject(o, "tail_loss", json_num(r->tail_loss));
        cJSON_AddNumberToObject(o, "train_steps", (double)r->steps);
        cJSON_AddNumberToObject(o, "train_seconds", r->train_seconds);
        cJSON_AddNumberToObject(o, "seconds_per_sample", r->seconds_per_sample);
        cJSON_AddItemToArray(runs, o);
    }
    cJSON *cs = cJSON_AddArrayToObject(root, "cells");
    for (int i = 0; i < nc; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "family", cells[i].first->family);
        cJSON_AddNumberToObject(o, "lambda", cells[i].first->lambda);
        cJSON_AddNumberToObject(o, "seeds", cells[i].n_seeds);
        cJSON_AddStringToObject(o, "interval", cells[i].n_seeds > 1 ? "student-t over seeds" : "bootstrap over targets");
        json_metrics(o, cells[i].m);
        cJSON_AddNumberToObject(o, "train_seconds", cells[i].train_seconds);
        cJSON_AddItemToArray(cs, o);
    }
    cJSON *refs = cJSON_AddObjectToObject(root, "references");
    cJSON *rl = cJSON_AddArrayToObject(root, "reference_lines");
    for (int i = 0; i < n_lines; i++) {
        cJSON_AddItemToObject(refs, lines[i].label, json_num(lines[i].m[M_FIBER].mean));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", lines[i].group);
        cJSON_AddStringToObject(o, "label", lines[i].label);
        json_metrics(o, lines[i].m);
        cJSON_AddItemToArray(rl, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char path[4200];
    snprintf(path, sizeof path, "%s/index.json", dir);
    int rc = text ? fl_write_text_atomic(path, text) : fl_fail("out of memory");
    free(text);
    return rc;
}

static const int digits[M_COUNT] = {4, 3, 4, 4, 4, 4};

static void table_row(FILE *f, const char *label, const char *seeds, const fl_ci m[M_COUNT], double seconds)
{
    fprintf(f, "| %s | %s |", label, seeds);
    for (int k = 0; k < M_COUNT; k++) {
        char buf[96];
        fprintf(f, " %s |", fl_ci_format(&m[k], digits[k], buf, sizeof buf));
    }
    if (isnan(seconds)) fprintf(f, " |\n");
    else fprintf(f, " %.0f |\n", seconds);
}

/* What the text files of the report are made from. */
typedef struct {
    const run_row *rows;
    int n;
    const cell *cells;
    int nc;
    const ref_line *lines;
    int n_lines;
} report_in;

/* Writes dir/name atomically with the text that put prints. */
static int write_text(const char *dir, const char *name, void (*put)(FILE *, const report_in *),
                      const report_in *in)
{
    char path[4200], *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return fl_fail("out of memory");
    put(f, in);
    if (fclose(f)) {
        free(text);
        return fl_fail("out of memory");
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = fl_write_text_atomic(path, text);
    free(text);
    return rc;
}

static void put_summary(FILE *f, const report_in *in)
{
    const run_row *rows = in->rows;
    const cell *cells = in->cells;
    const ref_line *lines = in->lines;
    int n = in->n, nc = in->nc, n_lines = in->n_lines;
    double level = n > 0 && !isnan(rows[0].ci_level) ? rows[0].ci_level : 0.95;
    fprintf(f, "# Fidelity and consistency\n\n");
    fprintf(f, "mean [%.0f%% interval]: a bootstrap over the %lld targets (%lld resamples) for one "
               "seed, Student-t over the seeds' means for several. Relative fiber loss: ÷ the "
               "nearest-neighbour line on the same targets. d_fib: RMS pixel distance to the true "
               "fiber (n/a: the subject's fiber is not known in closed form). Tail: share of "
               "samples with fiber loss above %g.\n\n",
            100 * level, (long long)(n ? rows[0].n_targets : 0), (long long)(n ? rows[0].bootstrap : 0),
            n ? rows[0].tail_loss : NAN);
    fprintf(f, "| line | seeds |");
    for (int k = 0; k < M_COUNT; k++) fprintf(f, " %s |", metric[k].head);
    fprintf(f, " training [s] |\n|---|---:|");
    for (int k = 0; k <= M_COUNT; k++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int i = 0; i < n_lines; i++) table_row(f, lines[i].label, "", lines[i].m, NAN);
    for (int i = 0; i < nc; i++) {
        char label[160], seeds[16];
        cell_name(cells[i].first->family, cells[i].first->lambda, label, sizeof label);
        snprintf(seeds, sizeof seeds, "%d", cells[i].n_seeds);
        table_row(f, label, seeds, cells[i].m, cells[i].train_seconds);
    }
}

static void put_timing(FILE *f, const report_in *in)
{
    fprintf(f, "| run | steps | training [s] | time per sample [ms] |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < in->n; i++)
        fprintf(f, "| %s | %lld | %.1f | %.3f |\n", in->rows[i].name, (long long)in->rows[i].steps,
                in->rows[i].train_seconds, 1e3 * in->rows[i].seconds_per_sample);
}

/* The plot series of the cells: one per family (and NDTM setting), one point per λ (γ),
 * y the metric y (the fiber loss or d_fib) with the cells' intervals; the buffers hold
 * the arrays (16 series of 64 points at most). */
typedef struct {
    fl_plot_series series[16];
    double buf[16][13][64];
    char labels[16][64];
    int n;
} plot_series_set;

static void series_of(const cell *cells, int nc, int y, plot_series_set *ps)
{
    ps->n = 0;
    for (int i = 0; i < nc && ps->n < 16;) {
        int j = i;
        while (j < nc && strcmp(cells[j].first->family, cells[i].first->family) == 0) j++;
        double(*b)[64] = ps->buf[ps->n];
        int m = 0;
        for (int a = i; a < j && m < 64; a++, m++) {
            const cell *c = &cells[a];
            b[0][m] = c->first->lambda;
            b[1][m] = c->m[M_KL].mean, b[2][m] = c->m[M_KL].lo, b[3][m] = c->m[M_KL].hi;
            b[4][m] = c->m[y].mean, b[5][m] = c->m[y].lo, b[6][m] = c->m[y].hi;
            for (int k = 0; k < 3; k++) b[7 + k][m] = c->kl[k], b[10 + k][m] = c->w1[k];
        }
        series_name(cells[i].first->family, ps->labels[ps->n], sizeof ps->labels[ps->n]);
        ps->series[ps->n] = (fl_plot_series){.label = ps->labels[ps->n], .n = m, .lambda = b[0],
                                             .param = is_ndtm(cells[i].first->family) ? "γ" : "λ",
                                             .kl = b[1], .kl_lo = b[2], .kl_hi = b[3],
                                             .fib = b[4], .fib_lo = b[5], .fib_hi = b[6],
                                             .kl_rgb = {b[7], b[8], b[9]}, .w1_rgb = {b[10], b[11], b[12]}};
        ps->n++;
        i = j;
    }
}

/* The reference lines at their value of metric y. */
static int hlines_of(const ref_line *refs, int n_refs, int y, fl_plot_hline lines[8])
{
    int n = 0;
    for (int i = 0; i < n_refs && n < 8; i++)
        if (isfinite(refs[i].m[y].mean)) lines[n++] = (fl_plot_hline){refs[i].label, refs[i].m[y].mean};
    return n;
}

static const char *const plot_title = "Fidelity vs consistency on color MNIST";

/* dir/base.png and .svg: the cells' fidelity against consistency, y the metric y. */
static int write_plot(const char *dir, const char *base, const char *ylabel, int y,
                      const cell *cells, int nc, const ref_line *refs, int n_refs)
{
    static plot_series_set ps;
    series_of(cells, nc, y, &ps);
    fl_plot_hline lines[8];
    int n_lines = hlines_of(refs, n_refs, y, lines);
    char png[4200], svg[4200];
    snprintf(png, sizeof png, "%s/%s.png", dir, base);
    snprintf(svg, sizeof svg, "%s/%s.svg", dir, base);
    return fl_plot_fidelity_consistency(png, plot_title, ylabel, ps.series, ps.n, lines, n_lines) ||
                   fl_plot_fidelity_consistency(svg, plot_title, ylabel, ps.series, ps.n, lines, n_lines)
               ? -1
               : 0;
}

/* dir/colors.png and .svg: the fiber loss against each channel's KL and W1. */
static int write_channels(const char *dir, const cell *cells, int nc, const ref_line *refs, int n_refs)
{
    static plot_series_set ps;
    series_of(cells, nc, M_FIBER, &ps);
    fl_plot_hline lines[8];
    int n_lines = hlines_of(refs, n_refs, M_FIBER, lines);
    char png[4200], svg[4200];
    snprintf(png, sizeof png, "%s/colors.png", dir);
    snprintf(svg, sizeof svg, "%s/colors.svg", dir);
    const char *title = "Colors per channel";
    return fl_plot_channels(png, title, ps.series, ps.n, lines, n_lines) ||
                   fl_plot_channels(svg, title, ps.series, ps.n, lines, n_lines)
               ? -1
               : 0;
}

/* dir/curves.png and .svg: each trained family's training loss (the term "loss", the
 * total, or the first term) against the step, a line per run. */
static int write_loss_curves(const char *dir, const run_row *rows, int n)
{
    static fl_plot_curve lines[16][16];
    static char labels[16][16][48], names[16][64];
    fl_plot_curves_set sets[16];
    const char *set_family[16];
    double *bufs[2 * 16 * 16] = {NULL};
    int n_sets = 0, n_bufs = 0, rc = 0;
    for (int i = 0; i < n; i++) {   /* rows are sorted by family */
        if (is_ndtm(rows[i].family)) continue;
        if (n_sets == 0 || strcmp(set_family[n_sets - 1], rows[i].family) != 0) {
            if (n_sets == 16) break;
            series_name(rows[i].family, names[n_sets], sizeof names[n_sets]);
            set_family[n_sets] = rows[i].family;
            sets[n_sets] = (fl_plot_curves_set){names[n_sets], "training loss", 0, lines[n_sets]};
            n_sets++;
        }
        fl_plot_curves_set *cs = &sets[n_sets - 1];
        if (cs->n_lines >= 16) continue;
        char path[4600], terms[33 * 16] = "";
        snprintf(path, sizeof path, "%s/%s", dir, rows[i].file);
        fl_h5r *h = fl_h5r_open(path);
        int64_t nv = 0, ns = 0;
        double *curve = h ? fl_h5r_read_alloc(h, "train/curve", FL_F64, &nv) : NULL;
        int64_t *steps = h ? fl_h5r_read_alloc(h, "train/curve_steps", FL_I64, &ns) : NULL;
        if (h && fl_h5r_attr_str(h, "train", "term_names", terms, sizeof terms)) terms[0] = 0;
        fl_h5r_close(h);
        ct_clear_error();
        int n_terms = 1, which = 0;
        for (const char *p = terms; *p; p++) n_terms += *p == ',';
        for (int t = 0, pos = 0; t < n_terms; t++) {   /* the "loss" term when there is one */
            size_t len = strcspn(terms + pos, ",");
            if (len == 4 && strncmp(terms + pos, "loss", 4) == 0) which = t;
            pos += (int)len + 1;
        }
        double *y = ns > 0 && curve && steps && nv == ns * n_terms ? malloc((size_t)ns * sizeof *y) : NULL;
        double *x = y ? malloc((size_t)ns * sizeof *x) : NULL;
        if (x && y) {
            for (int64_t k = 0; k < ns; k++) x[k] = (double)steps[k], y[k] = curve[k * n_terms + which];
            char *lab = labels[cs - sets][cs->n_lines];
            snprintf(lab, 48, "λ=%g seed %lld", rows[i].lambda, (long long)rows[i].seed);
            lines[cs - sets][cs->n_lines++] = (fl_plot_curve){lab, (int)ns, x, y};
            bufs[n_bufs++] = x;
            bufs[n_bufs++] = y;
        } else {
            free(x);
            free(y);
        }
        free(curve);
        free(steps);
    }
    if (n_sets > 0) {
        char png[4200], svg[4200];
        snprintf(png, sizeof png, "%s/curves.png", dir);
        snprintf(svg, sizeof svg, "%s/curves.svg", dir);
        rc = fl_plot_curves(png, "Training loss", sets, n_sets) || fl_plot_curves(svg, "Training loss", sets, n_sets);
    }
    for (int k = 0; k < n_bufs; k++) free(bufs[k]);
    return rc ? -1 : 0;
}

/* True when some cell has a d_fib (the subject's fiber is the set of recolorings). */
static bool have_dfib(const cell *cells, int nc)
{
    for (int i = 0; i < nc; i++)
        if (isfinite(cells[i].m[M_DFIB].mean)) return true;
    return false;
}

static int write_plots(const char *dir, const run_row *rows, int n, const cell *cells, int nc,
                       const ref_line *refs, int n_refs)
{
    return write_plot(dir, "fidelity_consistency", NULL, M_FIBER, cells, nc, refs, n_refs) ||
                   (have_dfib(cells, nc) &&
                    write_plot(dir, "dfib_consistency", "d#dfib#u: RMS pixel distance to the true fiber",
                               M_DFIB, cells, nc, refs, n_refs)) ||
                   write_channels(dir, cells, nc, refs, n_refs) || write_loss_curves(dir, rows, n)
               ? -1
               : 0;
}

/* ---- report.md -------------------------------------------------------------------- */

/* Appends to buf (cap bytes, *len used), truncating at the end. */
__attribute__((format(printf, 4, 5))) static void appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

static const cell *find_cell(const cell *cells, int nc, const char *family, double lambda)
{
    for (int i = 0; i < nc; i++)
        if (strcmp(cells[i].first->family, family) == 0 && cells[i].first->lambda == lambda) return &cells[i];
    return NULL;
}

/* An interval's ends, the mean where an end is missing. */
static double ci_lo(const fl_ci *c) { return isfinite(c->lo) ? c->lo : c->mean; }
static double ci_hi(const fl_ci *c) { return isfinite(c->hi) ? c->hi : c->mean; }


static void cell_ci(FILE *f, const cell *c, int k)
{
    char buf[96];
    fprintf(f, "%s", fl_ci_format(&c->m[k], digits[k], buf, sizeof buf));
}

/* The trained families in cells (not NDTM), in order, each once. */
static int family_list(const cell *cells, int nc, const char *fam[], int max)
{
    int n = 0;
    for (int i = 0; i < nc && n < max; i++)
        if (!is_ndtm(cells[i].first->family) && (n == 0 || strcmp(fam[n - 1], cells[i].first->family) != 0))
            fam[n++] = cells[i].first->family;
    return n;
}

/* "λ > 0 lowers the fiber loss": each family's cell at its largest λ against its λ = 0
 * cell, decided by the intervals (apart below: lowered; apart above: raised). */
static void finding_lambda(FILE *f, const cell *cells, int nc)
{
    const char *fam[64];
    int nf = family_list(cells, nc, fam, 64), pairs = 0, lowered = 0, raised = 0;
    char detail[4096] = "";
    size_t len = 0;
    for (int i = 0; i < nf; i++) {
        const cell *z = find_cell(cells, nc, fam[i], 0), *top = NULL;
        for (int c = 0; c < nc; c++)
            if (strcmp(cells[c].first->family, fam[i]) == 0 && cells[c].first->lambda > 0) top = &cells[c];
        if (!z || !top) continue;
        pairs++;
        const char *how = "intervals overlap";
        if (ci_hi(&top->m[M_FIBER]) < ci_lo(&z->m[M_FIBER])) how = "lowered", lowered++;
        else if (ci_lo(&top->m[M_FIBER]) > ci_hi(&z->m[M_FIBER])) how = "raised", raised++;
        char up[32], a[96], b[96];
        series_name(fam[i], up, sizeof up);
        appendf(detail, sizeof detail, &len,
                "%s%s %s → %s at λ = %g (%s)", pairs > 1 ? "; " : "", up,
                fl_ci_format(&z->m[M_FIBER], 4, a, sizeof a),
                fl_ci_format(&top->m[M_FIBER], 4, b, sizeof b), top->first->lambda, how);
    }
    fprintf(f, "- **λ > 0 lowers the fiber loss of the conditional families** — ");
    if (pairs == 0) fprintf(f, "not decided: no family has cells at λ = 0 and λ > 0.\n");
    else if (lowered == pairs)
        fprintf(f, "**holds** for %s %d famil%s: %s.\n", pairs > 1 ? "all" : "its", pairs, pairs > 1 ? "ies" : "y", detail);
    else if (raised > 0) fprintf(f, "**does not hold** (%d of %d lowered, %d raised): %s.\n", lowered, pairs, raised, detail);
    else fprintf(f, "not decided (%d of %d lowered; the others' intervals overlap): %s.\n", lowered, pairs, detail);
}

static bool is_diffusion(const char *family) { return !strcmp(family, "diff") || !strcmp(family, "fm"); }
static bool is_injective(const char *family)
{
    return !strcmp(family, "mlf") || !strcmp(family, "dnf") || !strcmp(family, "fif");
}

/* "diffusion and flow matching give the best consistency": the lowest mean KL at λ = 0 of
 * DIFF and FM against the lowest of the other families, decided by the intervals. */
static void finding_consistency(FILE *f, const cell *cells, int nc)
{
    const cell *best_d = NULL, *best_o = NULL;
    for (int i = 0; i < nc; i++) {
        const cell *c = &cells[i];
        if (is_ndtm(c->first->family) || c->first->lambda != 0 || !isfinite(c->m[M_KL].mean)) continue;
        const cell **best = is_diffusion(c->first->family) ? &best_d : &best_o;
        if (!*best || c->m[M_KL].mean < (*best)->m[M_KL].mean) *best = c;
    }
    fprintf(f, "- **Diffusion and flow matching give the best consistency (KL at λ = 0)** — ");
    if (!best_d || !best_o) {
        fprintf(f, "not decided: the sweep needs DIFF or FM and another family at λ = 0.\n");
        return;
    }
    char a[96], b[96], ud[80], uo[80];
    series_name(best_d->first->family, ud, sizeof ud);
    series_name(best_o->first->family, uo, sizeof uo);
    const char *verdict = ci_hi(&best_d->m[M_KL]) < ci_lo(&best_o->m[M_KL])   ? "**holds**"
                          : ci_lo(&best_d->m[M_KL]) > ci_hi(&best_o->m[M_KL]) ? "**does not hold**"
                                                                              : "not decided (intervals overlap)";
    fprintf(f, "%s: the best of DIFF/FM, %s, has %s; the best other family, %s, has %s.\n", verdict,
            ud, fl_ci_format(&best_d->m[M_KL], 4, a, sizeof a), uo,
            fl_ci_format(&best_o->m[M_KL], 4, b, sizeof b));
}

/* "injective models hold up better at high λ": the KL at the largest λ that every family
 * with cells at λ = 0 and λ > 0 has, over its KL at λ = 0, averaged over the injective
 * families (MLF, DNF, FIF) and over the others, on the means. */
static void finding_injective(FILE *f, const cell *cells, int nc)
{
    const char *fam[64];
    int nf = family_list(cells, nc, fam, 64);
    /* the families with cells at λ = 0 and at some λ > 0, and the largest λ > 0 at which
     * each of them has a cell */
    bool use[64] = {false};
    for (int i = 0; i < nf; i++)
        for (int c = 0; c < nc && find_cell(cells, nc, fam[i], 0); c++)
            use[i] |= strcmp(cells[c].first->family, fam[i]) == 0 && cells[c].first->lambda > 0;
    double lc = NAN;
    for (int c = 0; c < nc; c++) {
        double l = cells[c].first->lambda;
        if (!(l > 0) || (isfinite(lc) && l <= lc)) continue;
        bool all = true;
        for (int i = 0; i < nf && all; i++) all = !use[i] || find_cell(cells, nc, fam[i], l);
        if (all) lc = l;
    }
    double sum[2] = {0, 0};
    int cnt[2] = {0, 0};
    char detail[2048] = "";
    size_t len = 0;
    for (int i = 0; i < nf && isfinite(lc); i++) {
        const cell *z = find_cell(cells, nc, fam[i], 0), *h = find_cell(cells, nc, fam[i], lc);
        if (!use[i] || !z || !h || !(z->m[M_KL].mean > 0)) continue;
        double r = h->m[M_KL].mean / z->m[M_KL].mean;
        int g = is_injective(fam[i]);
        sum[g] += r;
        cnt[g]++;
        char up[80];
        series_name(fam[i], up, sizeof up);
        appendf(detail, sizeof detail, &len,
                "%s%s %.3f → %.3f (× %.2f)", len ? "; " : "", up, z->m[M_KL].mean,
                h->m[M_KL].mean, r);
    }
    fprintf(f, "- **Injective models (MLF, DNF, FIF) hold up better at high λ** (rule: the mean over "
               "each group of KL at the largest common λ ÷ KL at λ = 0, on the means) — ");
    if (!cnt[0] || !cnt[1]) {
        fprintf(f, "not decided: the sweep needs an injective and another family at λ = 0 and a common λ > 0.\n");
        return;
    }
    double inj = sum[1] / cnt[1], oth = sum[0] / cnt[0];
    fprintf(f, "%s at λ = %g: injective × %.2f, others × %.2f (%s).\n",
            inj < oth ? "**holds**" : "**does not hold**", lc, inj, oth, detail);
}

/* The NDTM cell of prior variant `prior` (unrefined) with the lowest mean fiber loss. */
static const cell *best_ndtm(const cell *cells, int nc, const char *prior)
{
    const cell *best = NULL;
    char want[64];
    snprintf(want, sizeof want, "ndtm-%s-", prior);
    for (int i = 0; i < nc; i++) {
        const char *fam = cells[i].first->family;
        if (strncmp(fam, want, strlen(want)) != 0 || strstr(fam, "-refined") || is_leak(fam)) continue;
        if (!best || cells[i].m[M_FIBER].mean < best->m[M_FIBER].mean) best = &cells[i];
    }
    return best;
}

/* "NDTM reaches a much lower fiber loss at a small KL cost in distribution, a larger one
 * with the OOD prior" (of the pixel priors when the sweep has their cells, else of the
 * latent ones): the best unrefined correlated-prior NDTM cell against every trained
 * family's cells (its fiber-loss interval below all of theirs) with a mean KL at most
 * 1.5 × the lowest of the families at λ = 0; and, when there are OOD-prior cells, the best
 * of them with a higher mean KL than that cell. */
static void finding_ndtm(FILE *f, const cell *cells, int nc)
{
    /* the paper's prior is in pixels: its cells decide when the sweep has them */
    bool pixel = best_ndtm(cells, nc, "pixel-correlated") != NULL;
    const cell *nd = best_ndtm(cells, nc, pixel ? "pixel-correlated" : "correlated");
    const cell *ood = best_ndtm(cells, nc, pixel ? "pixel-ood" : "ood");
    const cell *best_fib = NULL, *best_kl = NULL;
    for (int i = 0; i < nc; i++) {
        const cell *c = &cells[i];
        if (is_ndtm(c->first->family)) continue;
        if (!best_fib || ci_lo(&c->m[M_FIBER]) < ci_lo(&best_fib->m[M_FIBER])) best_fib = c;
        if (c->first->lambda == 0 && (!best_kl || c->m[M_KL].mean < best_kl->m[M_KL].mean)) best_kl = c;
    }
    fprintf(f, "- **NDTM reaches a much lower fiber loss at a small KL cost (larger with the OOD "
               "prior)** (rule: the best unrefined NDTM cell of the correlated prior has a fiber-loss "
               "interval below every trained cell's and a mean KL at most 1.5 × the lowest of the "
               "families at λ = 0; the best OOD-prior cell has a higher KL) — ");
    if (!nd || !best_fib || !best_kl) {
        fprintf(f, "not decided: the sweep needs unrefined NDTM cells of the correlated prior and "
                   "trained families at λ = 0.\n");
        return;
    }
    char a[96], b[96], na[160], nb[160];
    cell_name(nd->first->family, nd->first->lambda, na, sizeof na);
    cell_name(best_fib->first->family, best_fib->first->lambda, nb, sizeof nb);
    bool lower = ci_hi(&nd->m[M_FIBER]) < ci_lo(&best_fib->m[M_FIBER]);
    bool small = nd->m[M_KL].mean <= 1.5 * best_kl->m[M_KL].mean;
    bool ood_ok = !ood || ood->m[M_KL].mean > nd->m[M_KL].mean;
    fprintf(f, "%s: %s has fiber loss %s against the best trained cell's (%s) %s; its mean KL is "
               "%.3f (its prior's own samples: %.3f) against the families' best at λ = 0, %.3f",
            lower && small && ood_ok ? "**holds**" : "**does not hold**", na,
            fl_ci_format(&nd->m[M_FIBER], 4, a, sizeof a), nb,
            fl_ci_format(&best_fib->m[M_FIBER], 4, b, sizeof b), nd->m[M_KL].mean,
            nd->first->prior_kl, best_kl->m[M_KL].mean);
    if (ood) {
        char no[160];
        cell_name(ood->first->family, ood->first->lambda, no, sizeof no);
        fprintf(f, "; with the OOD prior, %s: fiber loss %.4f, mean KL %.3f", no,
                ood->m[M_FIBER].mean, ood->m[M_KL].mean);
    } else {
        fprintf(f, "; no OOD-prior cells, so that part is not tested");
    }
    fprintf(f, ".\n");
}

/* The paper's table 4: each trained cell's training time and time per sample, NDTM's
 * time per sample, and the number of samples above which training that model is cheaper
 * than guiding the prior (its training time ÷ the difference of times per sample). */
static void put_timing_table(FILE *f, const cell *cells, int nc)
{
    double t_ndtm = 0;
    int n_ndtm = 0;
    for (int i = 0; i < nc; i++)
        if (is_ndtm(cells[i].first->family) && !strstr(cells[i].first->family, "-refined") &&
            !is_leak(cells[i].first->family))
            t_ndtm += cells[i].seconds_per_sample, n_ndtm++;
    if (n_ndtm) t_ndtm /= n_ndtm;
    fprintf(f, "\n## Timing (the paper's table 4)\n\n");
    if (n_ndtm)
        fprintf(f, "NDTM: %.2f ms per sample (the mean over its unrefined cells), no training per "
                   "subject (its prior is trained once and cached). Break-even: the number of "
                   "samples above which training the model is cheaper than NDTM, training time ÷ "
                   "(NDTM's time per sample − the model's).\n\n", 1e3 * t_ndtm);
    else
        fprintf(f, "No NDTM cells in this sweep, so no break-even.\n\n");
    fprintf(f, "| cell | training [s] | per sample [ms] | break-even [samples] |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < nc; i++) {
        const cell *c = &cells[i];
        char name[160];
        cell_name(c->first->family, c->first->lambda, name, sizeof name);
        fprintf(f, "| %s | %.1f | %.3f | ", name, c->train_seconds, 1e3 * c->seconds_per_sample);
        if (is_ndtm(c->first->family) || !n_ndtm) fprintf(f, "– |\n");
        else if (t_ndtm <= c->seconds_per_sample) fprintf(f, "never |\n");
        else fprintf(f, "%.0f |\n", c->train_seconds / (t_ndtm - c->seconds_per_sample));
    }
}

/* "The fixed test shows no leakage of the target's color": each leakage cell (targets all
 * in data.fixed_color) against its twin (the same γ, terminal cost and seeds on the
 * benchmark's targets): its samples' colors leak when their mean distance to the fixed
 * color falls below 0.9 × the twin's. */
static void finding_leakage(FILE *f, const cell *cells, int nc)
{
    int pairs = 0, leaks = 0;
    char detail[2048] = "";
    size_t len = 0;
    for (int i = 0; i < nc; i++) {
        const char *fam = cells[i].first->family;
        if (!is_leak(fam)) continue;
        char twin_fam[64];
        snprintf(twin_fam, sizeof twin_fam, "%.*s", (int)(strlen(fam) - 6), fam);
        const cell *twin = find_cell(cells, nc, twin_fam, cells[i].first->lambda);
        if (!twin || !isfinite(twin->fixed_distance) || !isfinite(cells[i].fixed_distance)) continue;
        pairs++;
        bool leak = cells[i].fixed_distance < 0.9 * twin->fixed_distance;
        leaks += leak;
        char name[160];
        cell_name(fam, cells[i].first->lambda, name, sizeof name);
        appendf(detail, sizeof detail, &len,
                "%s%s: %.3f against %.3f on the benchmark's targets, mean KL %.3f against %.3f%s",
                pairs > 1 ? "; " : "", name, cells[i].fixed_distance, twin->fixed_distance,
                cells[i].m[M_KL].mean, twin->m[M_KL].mean, leak ? " (leaks)" : "");
    }
    fprintf(f, "- **The `fixed` test shows no leakage of the target's color** (rule: the mean "
               "distance of the samples' colors to the fixed color stays at least 0.9 × that of "
               "the same NDTM cell on the benchmark's targets) — ");
    if (!pairs) fprintf(f, "not decided: no leakage cells with twins (sweep.ndtm_leakage).\n");
    else fprintf(f, "%s: %s.\n", leaks ? "**does not hold**" : "**holds**", detail);
}

static void put_report(FILE *f, const report_in *in)
{
    bool have_curves = false;
    for (int i = 0; i < in->n; i++) have_curves |= !is_ndtm(in->rows[i].family);
    const run_row *rows = in->rows;
    const cell *cells = in->cells;
    const ref_line *lines = in->lines;
    int n = in->n, nc = in->nc, n_lines = in->n_lines;
    double level = n > 0 && !isnan(rows[0].ci_level) ? rows[0].ci_level : 0.95;
    fprintf(f, "# Fiber models on color MNIST: the report\n\n");
    fprintf(f, "Made by `fiberlab report` from this folder's run files (`runs/`) and reference "
               "lines (`references.h5`) alone. %d runs in %d cells; %lld targets per run. Each "
               "value is the mean [%.0f%% interval]: a bootstrap over the targets (%lld resamples) "
               "for a cell of one seed, Student-t over the seeds' means for several.\n\n",
            n, nc, (long long)(n ? rows[0].n_targets : 0), 100 * level,
            (long long)(n ? rows[0].bootstrap : 0));
    fprintf(f, "![fiber loss against mean KL](fidelity_consistency.png)\n\n");
    if (have_dfib(cells, nc))
        fprintf(f, "![d_fib against mean KL](dfib_consistency.png)\n\n");
    fprintf(f, "Per channel, the fiber loss against the KL (top) and W1 (bottom) of R, G and B:\n\n"
               "![colors per channel](colors.png)\n\n");
    if (have_curves)
        fprintf(f, "The training loss of each trained family, a line per run:\n\n![loss curves](curves.png)\n\n");

    fprintf(f, "## Every cell\n\nRelative: fiber loss ÷ the nearest-neighbour line on the same "
               "targets. d_fib: RMS pixel distance to the true fiber (n/a where the subject's fiber "
               "is not the set of recolorings). KL and W1 per channel (R, G, B) of the samples' "
               "background colors against the exact color law, means over the seeds.\n\n");
    fprintf(f, "| cell | seeds | fiber loss | relative | d_fib | KL R | KL G | KL B | mean KL | "
               "W1 R | W1 G | W1 B | training [s] | per sample [ms] |\n");
    fprintf(f, "|---|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < nc; i++) {
        const cell *c = &cells[i];
        char name[160];
        cell_name(c->first->family, c->first->lambda, name, sizeof name);
        fprintf(f, "| %s | %d | ", name, c->n_seeds);
        cell_ci(f, c, M_FIBER);
        fprintf(f, " | ");
        cell_ci(f, c, M_REL);
        fprintf(f, " | ");
        cell_ci(f, c, M_DFIB);
        fprintf(f, " | %.3f | %.3f | %.3f | ", c->kl[0], c->kl[1], c->kl[2]);
        cell_ci(f, c, M_KL);
        fprintf(f, " | %.4f | %.4f | %.4f | %.0f | %.3f |\n", c->w1[0], c->w1[1], c->w1[2],
                c->train_seconds, 1e3 * c->seconds_per_sample);
    }
    fprintf(f, "\n## Reference lines\n\n| line | fiber loss | relative | d_fib | mean KL | mean W1 |\n"
               "|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_lines; i++) {
        char a[96], b[96], c[96], d[96], e[96];
        fprintf(f, "| %s | %s | %s | %s | %s | %s |\n", lines[i].label,
                fl_ci_format(&lines[i].m[M_FIBER], 4, a, sizeof a), fl_ci_format(&lines[i].m[M_REL], 3, b, sizeof b),
                fl_ci_format(&lines[i].m[M_DFIB], 4, c, sizeof c), fl_ci_format(&lines[i].m[M_KL], 4, d, sizeof d),
                fl_ci_format(&lines[i].m[M_W1], 4, e, sizeof e));
    }
    if (n_lines == 0) fprintf(f, "| (no references.h5 in this folder) | | | | | |\n");

    fprintf(f, "\n## The paper's findings, on these numbers\n\n");
    finding_lambda(f, cells, nc);
    finding_consistency(f, cells, nc);
    finding_injective(f, cells, nc);
    finding_ndtm(f, cells, nc);
    finding_leakage(f, cells, nc);

    put_timing_table(f, cells, nc);
    fprintf(f, "\n## Where it ran\n\nThe machine that wrote each run file (CPU; cores; BLAS "
               "kernel; libtorch and its ATen kernels; the GPU when the models ran on one; host), "
               "with its number of runs:\n\n");
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = strcmp(rows[j].machine, rows[i].machine) == 0;
        if (seen) continue;
        int count = 0;
        for (int j = i; j < n; j++) count += strcmp(rows[j].machine, rows[i].machine) == 0;
        fprintf(f, "- %s: %d run%s\n", rows[i].machine, count, count == 1 ? "" : "s");
    }
    fprintf(f, "\nSample grids (a row per target: the target, then its samples): `grids/<run>.png`; "
               "training time and time per sample of every run: `timing.md`; everything as JSON: "
               "`index.json`.\n");
}

static int report(const char *dir)
{
    char runs_dir[4200];
    snprintf(runs_dir, sizeof runs_dir, "%s/runs", dir);
    DIR *d = opendir(runs_dir);
    if (!d) return fl_fail("%s: cannot open: %s", runs_dir, strerror(errno));
    run_row *rows = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") != 0 || strstr(e->d_name, ".tmp.")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            run_row *more = realloc(rows, (size_t)cap * sizeof *rows);
            if (!more) {
                rc = fl_fail("out of memory");
                break;
            }
            rows = more;
        }
        run_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        snprintf(r->file, sizeof r->file, "runs/%s", e->d_name);
        snprintf(r->name, sizeof r->name, "%.*s", (int)(len - 3), e->d_name);
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", runs_dir, e->d_name);
        if (read_run(path, r)) {
            rc = fl_fail_ctx("%s", path);
            break;
        }
        n++;
    }
    closedir(d);
    if (!rc && n == 0) rc = fl_fail("%s: no finished runs to report", runs_dir);
    char grids[4200];
    snprintf(grids, sizeof grids, "%s/grids", dir);
    if (!rc) rc = fl_mkdir_p(grids);
    cell *cells = rc ? NULL : malloc((size_t)n * sizeof *cells);
    if (!rc && !cells) rc = fl_fail("out of memory");
    if (!rc) {
        qsort(rows, (size_t)n, sizeof *rows, cmp_rows);
        int nc = make_cells(rows, n, cells);
        ref_line lines[8];
        int n_lines = read_references(dir, lines, 8);
        report_in in = {rows, n, cells, nc, lines, n_lines};
        rc = write_index(dir, rows, n, cells, nc, lines, n_lines) ||
             write_text(dir, "timing.md", put_timing, &in) ||
             write_text(dir, "summary.md", put_summary, &in) ||
             write_plots(dir, rows, n, cells, nc, lines, n_lines) ||
             write_text(dir, "report.md", put_report, &in);
        for (int i = 0; !rc && i < n; i++) {
            char run_path[4600], png[4600];
            snprintf(run_path, sizeof run_path, "%s/%s", dir, rows[i].file);
            snprintf(png, sizeof png, "%s/grids/%s.png", dir, rows[i].name);
            fl_remove_temps_of(png);   /* a killed report's; the lock is held */
            rc = write_grid(run_path, png);
        }
    }
    free(cells);
    free(rows);
    return rc ? -1 : 0;
}

/* One process at a time rewrites the report (two sweeps sharing the folder end
 * together); the temporaries of a killed one are removed under the lock. */
int fl_sweep_report(const char *dir)
{
    char target[4200], path[4300];
    snprintf(target, sizeof target, "%s/report", dir);
    fl_lock *lk;
    if (fl_lock_take(target, true, &lk)) return -1;
    const char *outs[] = {"index.json", "timing.md", "summary.md", "report.md",
                          "fidelity_consistency.png", "fidelity_consistency.svg",
                          "dfib_consistency.png", "dfib_consistency.svg", "colors.png",
                          "colors.svg", "curves.png", "curves.svg"};
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, outs[i]);
        fl_remove_temps_of(path);
    }
    int rc = report(dir);
    fl_lock_release(lk);
    return rc;
}
