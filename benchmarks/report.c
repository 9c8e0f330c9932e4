/* The report of a sweep folder, made from its run files and reference lines alone:
 * index.json (every run and every cell of the grid with its intervals), summary.md
 * (the table: reference lines, then each family and λ), timing.md, the
 * fidelity-versus-consistency plot and the sample grids.
 *
 * Intervals (DESIGN.md §5): a cell with one seed shows its run's bootstrap interval
 * over the targets; a cell with several seeds shows the Student-t interval of the
 * seeds' means (the seed-to-seed spread is what a second study would see). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
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
    char file[256], name[128], family[32];
    double lambda;
    int64_t seed;
    fl_ci m[M_COUNT];
    double fiber_std, fiber_median, kl[3], w1[3], tail_loss, ci_level;
    double train_seconds, seconds_per_sample;
    int64_t steps, n_targets, bootstrap;
} run_row;

/* One cell of the grid: a family at one λ, over its seeds. */
typedef struct {
    const run_row *first;
    int n_seeds;
    fl_ci m[M_COUNT];
    double train_seconds;   /* mean over the seeds */
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
        double level = isnan(rows[i].ci_level) ? 0.95 : rows[i].ci_level, ts = 0;
        for (int a = i; a < j; a++) ts += rows[a].train_seconds;
        c->train_seconds = ts / (j - i);
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

static int write_summary(const char *dir, const run_row *rows, int n, const cell *cells, int nc,
                         const ref_line *lines, int n_lines)
{
    char path[4200], *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return fl_fail("out of memory");
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
        char label[96], seeds[16];
        snprintf(label, sizeof label, "%s λ = %g", cells[i].first->family, cells[i].first->lambda);
        for (char *p = label; *p && *p != ' '; p++)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
        snprintf(seeds, sizeof seeds, "%d", cells[i].n_seeds);
        table_row(f, label, seeds, cells[i].m, cells[i].train_seconds);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/summary.md", dir);
    int rc = fl_write_text_atomic(path, text);
    free(text);
    return rc;
}

static int write_timing(const char *dir, const run_row *rows, int n)
{
    char path[4200], *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return fl_fail("out of memory");
    fprintf(f, "| run | steps | training [s] | time per sample [ms] |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "| %s | %lld | %.1f | %.3f |\n", rows[i].name, (long long)rows[i].steps,
                rows[i].train_seconds, 1e3 * rows[i].seconds_per_sample);
    fclose(f);
    snprintf(path, sizeof path, "%s/timing.md", dir);
    int rc = fl_write_text_atomic(path, text);
    free(text);
    return rc;
}

/* One series per family, one point per λ, the error bars the cells' intervals. */
static int write_plots(const char *dir, const cell *cells, int nc, const ref_line *refs, int n_refs)
{
    fl_plot_series series[16];
    double buf[16][7][64];
    char labels[16][32];
    int n_series = 0;
    for (int i = 0; i < nc && n_series < 16;) {
        int j = i;
        while (j < nc && strcmp(cells[j].first->family, cells[i].first->family) == 0) j++;
        double *lam = buf[n_series][0], *kl = buf[n_series][1], *kllo = buf[n_series][2],
               *klhi = buf[n_series][3], *fib = buf[n_series][4], *fiblo = buf[n_series][5],
               *fibhi = buf[n_series][6];
        int m = 0;
        for (int a = i; a < j && m < 64; a++, m++) {
            lam[m] = cells[a].first->lambda;
            kl[m] = cells[a].m[M_KL].mean, kllo[m] = cells[a].m[M_KL].lo, klhi[m] = cells[a].m[M_KL].hi;
            fib[m] = cells[a].m[M_FIBER].mean, fiblo[m] = cells[a].m[M_FIBER].lo, fibhi[m] = cells[a].m[M_FIBER].hi;
        }
        snprintf(labels[n_series], 32, "%s", cells[i].first->family);
        for (char *p = labels[n_series]; *p; p++)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
        series[n_series] = (fl_plot_series){labels[n_series], m, lam, kl, kllo, klhi, fib, fiblo, fibhi};
        n_series++;
        i = j;
    }
    fl_plot_hline lines[8];
    int n_lines = 0;
    for (int i = 0; i < n_refs && n_lines < 8; i++)
        lines[n_lines++] = (fl_plot_hline){refs[i].label, refs[i].m[M_FIBER].mean};
    char png[4200], svg[4200];
    snprintf(png, sizeof png, "%s/fidelity_consistency.png", dir);
    snprintf(svg, sizeof svg, "%s/fidelity_consistency.svg", dir);
    const char *title = "Fidelity vs consistency on color MNIST";
    return fl_plot_fidelity_consistency(png, title, series, n_series, lines, n_lines) ||
                   fl_plot_fidelity_consistency(svg, title, series, n_series, lines, n_lines)
               ? -1
               : 0;
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
        rc = write_index(dir, rows, n, cells, nc, lines, n_lines) || write_timing(dir, rows, n) ||
             write_summary(dir, rows, n, cells, nc, lines, n_lines) ||
             write_plots(dir, cells, nc, lines, n_lines);
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
    const char *outs[] = {"index.json", "timing.md", "summary.md", "fidelity_consistency.png",
                          "fidelity_consistency.svg"};
    for (size_t i = 0; i < sizeof outs / sizeof *outs; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, outs[i]);
        fl_remove_temps_of(path);
    }
    int rc = report(dir);
    fl_lock_release(lk);
    return rc;
}
