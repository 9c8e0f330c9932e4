/* fiberlab report's report.md, from run files written here with chosen numbers: it names
 * every cell with its numbers (per-channel KL and W1 included) and the machines the runs
 * name, and it decides each of the paper's findings by the rules it states — both ways. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "benchmarks/sweep.h"
#include "core/h5.h"
#include "core/log.h"
#include "core/stats.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/fl_test_report.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char p[300];
    snprintf(p, sizeof p, "%s/runs", dir);
    cr_assert_eq(mkdir(p, 0777), 0);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

typedef struct {
    const char *family;
    double lambda, fiber, fiber_half, kl, kl_half;
    const char *machine;
    double fixed_distance;   /* NDTM cells: written when > 0 */
} fake_run;

/* A run file as the sweep writes it, with the means and intervals given (the other
 * metrics derived from them, so every column has a value to look for). */
static void write_run(const fake_run *f)
{
    char path[400];
    snprintf(path, sizeof path, "%s/runs/%s_%s%g_seed0.h5", dir, f->family,
             strncmp(f->family, "ndtm-", 5) == 0 ? "g" : "lam", f->lambda);
    fl_h5w *w = fl_h5w_create(path);
    cr_assert_not_null(w, "%s", fl_error());
    static float img[3 * 28 * 28];
    double kl[3] = {f->kl * 0.9, f->kl, f->kl * 1.1}, w1[3] = {0.01, 0.02, 0.03}, curve[1] = {1};
    float loss[4] = {(float)f->fiber, (float)f->fiber, (float)f->fiber, (float)f->fiber};
    int64_t zero = 0, d1[1] = {1}, d3[1] = {3}, d4[1] = {4}, dimg[4] = {1, 3, 28, 28}, dc[2] = {1, 1};
    int rc = fl_h5w_write(w, "train/curve", FL_F64, 2, dc, curve) ||
             fl_h5w_write(w, "eval/kl", FL_F64, 1, d3, kl) || fl_h5w_write(w, "eval/w1", FL_F64, 1, d3, w1) ||
             fl_h5w_write(w, "eval/loss", FL_F32, 1, d4, loss) ||
             fl_h5w_write(w, "eval/samples", FL_F32, 4, dimg, img) ||
             fl_h5w_write(w, "eval/samples_target", FL_I64, 1, d1, &zero) ||
             fl_h5w_write(w, "grid/targets", FL_F32, 4, dimg, img) ||
             fl_h5w_write(w, "grid/target_index", FL_I64, 1, d1, &zero) ||
             fl_h5w_attr_str(w, "/", "family", f->family) || fl_h5w_attr_f64(w, "/", "lambda", f->lambda) ||
             fl_h5w_attr_i64(w, "/", "seed", 0) || fl_h5w_attr_f64(w, "/", "fiber_std", 0.5) ||
             fl_h5w_attr_f64(w, "/", "train_seconds", 100 + f->lambda) ||
             fl_h5w_attr_f64(w, "/", "seconds_per_sample", 2e-4) ||
             (f->machine && fl_h5w_attr_str(w, "/", "machine", f->machine)) ||
             (f->fixed_distance > 0 && fl_h5w_attr_f64(w, "/", "fixed_distance", f->fixed_distance)) ||
             (strncmp(f->family, "ndtm-", 5) == 0 && fl_h5w_attr_f64(w, "/", "gamma", f->lambda)) ||
             fl_h5w_attr_i64(w, "train", "steps", 1500) || fl_h5w_attr_i64(w, "eval", "n_targets", 1000) ||
             fl_h5w_attr_i64(w, "eval", "k", 1) || fl_h5w_attr_i64(w, "eval", "bootstrap", 1000) ||
             fl_h5w_attr_f64(w, "eval", "ci_level", 0.95) || fl_h5w_attr_f64(w, "eval", "tail_loss", 5);
    const struct { const char *name; double mean, half; } m[] = {
        {"fiber", f->fiber, f->fiber_half},  {"relative", f->fiber / 1.5, f->fiber_half / 1.5},
        {"dfib", f->fiber / 20, 0.001},      {"kl", f->kl, f->kl_half},
        {"w1", 0.02, 0.001},                 {"tail", 0, 0},
    };
    static const char *means[] = {"fiber_mean", "relative_mean", "dfib_mean", "kl_mean", "w1_mean", "tail_share"};
    for (int i = 0; i < 6 && !rc; i++) {
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "%s_lo", m[i].name);
        snprintf(hi, sizeof hi, "%s_hi", m[i].name);
        rc = fl_h5w_attr_f64(w, "eval", means[i], m[i].mean) ||
             fl_h5w_attr_f64(w, "eval", lo, m[i].mean - m[i].half) ||
             fl_h5w_attr_f64(w, "eval", hi, m[i].mean + m[i].half);
    }
    cr_assert_eq(rc, 0, "%s", fl_error());
    cr_assert_eq(fl_h5w_commit(w), 0, "%s", fl_error());
}

static char *report_md(void)
{
    cr_assert_eq(fl_sweep_report(dir), 0, "%s", fl_error());
    char p[300];
    snprintf(p, sizeof p, "%s/report.md", dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "no %s", p);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

/* The line of report.md that starts with start (NULL when none). */
static const char *line_of(const char *text, const char *start)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, start, strlen(start)) == 0) return p;
    return NULL;
}

static void expect_in_line(const char *text, const char *start, const char *what)
{
    const char *l = line_of(text, start);
    cr_assert_not_null(l, "report.md has no line starting with '%s':\n%s", start, text);
    const char *end = strchr(l, '\n');
    char line[4096];
    snprintf(line, sizeof line, "%.*s", end ? (int)(end - l) : (int)strlen(l), l);
    cr_expect(strstr(line, what) != NULL, "'%s' is not in the line:\n%s", what, line);
}

static const fake_run base[] = {
    {"nf", 0, 1.20, 0.02, 0.60, 0.02, "machine A", 0},
    {"nf", 10, 0.94, 0.01, 0.40, 0.01, "machine A", 0},
    {"fif", 0, 1.50, 0.02, 1.00, 0.03, "machine B", 0},
    {"fif", 10, 1.09, 0.02, 1.00, 0.03, "machine A", 0},
    {"fm", 0, 1.50, 0.02, 0.90, 0.05, NULL, 0},
};

Test(report, names_every_cell_with_its_numbers_and_the_machines, .init = setup, .fini = teardown)
{
    for (size_t i = 0; i < sizeof base / sizeof *base; i++) write_run(&base[i]);
    const char *t = report_md();
    for (size_t i = 0; i < sizeof base / sizeof *base; i++) {
        char start[64], fib[96], kl[96], klr[32];
        snprintf(start, sizeof start, "| %s λ = %g | 1 | ",
                 strcmp(base[i].family, "nf") == 0 ? "NF" : strcmp(base[i].family, "fif") == 0 ? "FIF" : "FM",
                 base[i].lambda);
        fl_ci c = {base[i].fiber, base[i].fiber - base[i].fiber_half, base[i].fiber + base[i].fiber_half};
        fl_ci k = {base[i].kl, base[i].kl - base[i].kl_half, base[i].kl + base[i].kl_half};
        expect_in_line(t, start, fl_ci_format(&c, 4, fib, sizeof fib));
        expect_in_line(t, start, fl_ci_format(&k, 4, kl, sizeof kl));
        snprintf(klr, sizeof klr, "| %.3f |", base[i].kl * 0.9);   /* the red channel's KL */
        expect_in_line(t, start, klr);
        expect_in_line(t, start, "| 0.0100 | 0.0200 | 0.0300 |");    /* W1 per channel */
    }
    expect_in_line(t, "- machine A: ", "3 runs");
    expect_in_line(t, "- machine B: ", "1 run");
    expect_in_line(t, "- not recorded: ", "1 run");
    char p[300];
    snprintf(p, sizeof p, "%s/dfib_consistency.png", dir);
    struct stat st;
    cr_expect_eq(stat(p, &st), 0, "no d_fib plot");
}

Test(report, decides_the_findings_by_its_rules, .init = setup, .fini = teardown)
{
    for (size_t i = 0; i < sizeof base / sizeof *base; i++) write_run(&base[i]);
    const char *t = report_md();
    /* NF and FIF at λ = 10 are below λ = 0 with intervals apart (FM has no λ > 0) */
    expect_in_line(t, "- **λ > 0 lowers", "**holds** for all 2 families:");
    /* FM's KL 0.90 [0.85, 0.95] against NF's 0.60 [0.58, 0.62] */
    expect_in_line(t, "- **Diffusion and flow matching", "**does not hold**");
    /* KL ratio at λ = 10: FIF 1.00 against NF 0.67 */
    expect_in_line(t, "- **Injective models", "**does not hold** at λ = 10: injective × 1.00, others × 0.67");
    expect_in_line(t, "- **NDTM", "not decided");

    /* the other way: NF's λ = 10 above its λ = 0, FM's KL the best, FIF's KL falling most */
    const fake_run other[] = {
        {"nf", 10, 1.40, 0.01, 0.40, 0.01, "machine A", 0},
        {"fm", 0, 1.50, 0.02, 0.30, 0.02, NULL, 0},
        {"fif", 10, 1.09, 0.02, 0.50, 0.03, "machine A", 0},
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) write_run(&other[i]);
    t = report_md();
    expect_in_line(t, "- **λ > 0 lowers", "**does not hold** (1 of 2 lowered, 1 raised)");
    expect_in_line(t, "- **Diffusion and flow matching", "**holds**");
    expect_in_line(t, "- **Injective models", "**holds** at λ = 10: injective × 0.50, others × 0.67");

    /* overlapping intervals decide nothing */
    const fake_run close[] = {{"nf", 10, 1.19, 0.05, 0.40, 0.01, "machine A", 0},
                              {"fm", 0, 1.50, 0.02, 0.59, 0.05, NULL, 0}};
    for (size_t i = 0; i < sizeof close / sizeof *close; i++) write_run(&close[i]);
    t = report_md();
    expect_in_line(t, "- **λ > 0 lowers", "not decided (1 of 2 lowered");
    expect_in_line(t, "- **Diffusion and flow matching", "not decided (intervals overlap)");
}

Test(report, a_folder_without_runs_is_refused_naming_it, .init = setup, .fini = teardown)
{
    cr_expect_neq(fl_sweep_report(dir), 0);
    cr_expect(strstr(fl_error(), "runs") != NULL && strstr(fl_error(), dir) != NULL, "%s", fl_error());
    char p[300];
    snprintf(p, sizeof p, "%s/report.md", dir);
    struct stat st;
    cr_expect_neq(stat(p, &st), 0, "a report.md was written");
}

Test(report, decides_the_ndtm_and_leakage_findings, .init = setup, .fini = teardown)
{
    for (size_t i = 0; i < sizeof base / sizeof *base; i++) write_run(&base[i]);
    /* NDTM below every trained cell (NF λ = 10: 0.94 [0.93, 0.95]) with a KL of 0.8 ≤ 1.5 × 0.6 */
    const fake_run nd[] = {
        {"ndtm-correlated-static", 1, 0.50, 0.02, 0.80, 0.05, "machine A", 0.40},
        {"ndtm-ood-static", 1, 0.55, 0.02, 1.50, 0.05, "machine A", 0.45},
        {"ndtm-correlated-static-fixed", 1, 0.52, 0.02, 0.85, 0.05, "machine A", 0.38},
    };
    for (size_t i = 0; i < sizeof nd / sizeof *nd; i++) write_run(&nd[i]);
    const char *t = report_md();
    expect_in_line(t, "| NDTM correlated static γ = 1 | 1 | ", "0.5000 [0.4800, 0.5200]");
    expect_in_line(t, "- **NDTM reaches", "**holds**");
    expect_in_line(t, "- **The `fixed` test", "**holds**");   /* 0.38 ≥ 0.9 × 0.40 */
    expect_in_line(t, "NDTM: ", "ms per sample");             /* the timing table's NDTM line */

    /* the samples drawn to the fixed color; NDTM's KL over 1.5 × the families' best */
    const fake_run worse[] = {
        {"ndtm-correlated-static-fixed", 1, 0.52, 0.02, 0.85, 0.05, "machine A", 0.20},
        {"ndtm-correlated-static", 1, 0.50, 0.02, 0.95, 0.05, "machine A", 0.40},
    };
    for (size_t i = 0; i < sizeof worse / sizeof *worse; i++) write_run(&worse[i]);
    t = report_md();
    expect_in_line(t, "- **The `fixed` test", "**does not hold**");
    expect_in_line(t, "- **NDTM reaches", "**does not hold**");
}
