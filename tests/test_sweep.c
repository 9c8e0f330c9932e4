/* `fiberlab sweep` end to end (the built binary, FL_BIN) on a small color-MNIST
 * setting: a config error fails before anything is trained or written, naming the key;
 * λ > 0 lowers the fiber loss of the samples against λ = 0 (same seed, same steps); a
 * sweep interrupted and rerun trains only the missing runs; the report is complete. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/h5.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/stats.h"
#include "ctorch/ct.h"
#include "store_fixture.h"

TestSuite(sweep, .init = make_tmp, .fini = remove_tmp);

static char out[16384], err[16384];

/* Runs fiberlab with args in <tmp>, FIBERLAB_CACHE=<tmp>/cache; stdout in out, stderr in
 * err; the exit code. */
static int run(const char *args)
{
    char cmd[4096], op[400], ep[400];
    snprintf(op, sizeof op, "%s/stdout.txt", tmp);
    snprintf(ep, sizeof ep, "%s/stderr.txt", tmp);
    snprintf(cmd, sizeof cmd, "cd '%s' && FIBERLAB_CACHE='%s/cache' FIBERLAB_PLAIN_LOG=1 '%s' %s >'%s' 2>'%s'",
             tmp, tmp, FL_BIN, args, op, ep);
    int st = system(cmd);
    FILE *f = fopen(op, "r");
    size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    if (f) fclose(f);
    f = fopen(ep, "r");
    n = f ? fread(err, 1, sizeof err - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(op);
    unlink(ep);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool exists(const char *rel)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    return access(p, F_OK) == 0;
}

static void write_config(const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_config_error(const char *config_text, const char *args, const char *key)
{
    write_config("bad.json", config_text);
    char a[1024];
    snprintf(a, sizeof a, "sweep bad.json %s", args);
    int rc = run(a);
    cr_expect_neq(rc, 0, "'%s' with %s exited 0", a, config_text);
    cr_expect(strncmp(err, "fiberlab sweep: ", 16) == 0, "stderr: %s", err);
    cr_expect(strstr(err, key) != NULL, "the message does not name '%s': %s", key, err);
    cr_expect(strchr(err, '\n') == strrchr(err, '\n'), "not one line: %s", err);
    cr_expect_not(exists("results"), "a results folder was written: %s", config_text);
    cr_expect_not(exists("cache"), "a cache folder was written: %s", config_text);
}

Test(sweep, config_errors_fail_before_training_naming_the_key)
{
    expect_config_error("{\"sweep\": {\"families\": [\"nf\", \"gan\"]}}", "", "sweep.families");
    expect_config_error("{\"model\": {\"family\": \"gan\"}}", "", "model.family");
    expect_config_error("{\"train\": {\"stepz\": 10}}", "", "train.stepz");
    expect_config_error("{\"train\": {\"steps\": \"many\"}}", "", "train.steps");
    expect_config_error("{\"train\": {\"steps\": 1.5}}", "", "train.steps");
    expect_config_error("{\"sweep\": {\"lambdas\": [0, -1]}}", "", "sweep.lambdas");
    expect_config_error("{}", "train.lambda=-0.5", "train.lambda");
    expect_config_error("{\"train\": {\"lr\": 1e-3,}}", "", "bad.json");   /* malformed JSON */
    expect_config_error("{}", "nf.blocks=0", "nf.blocks");
    /* settings that only a built network or dataset used to reveal */
    expect_config_error("{\"vae\": {\"widths\": [8, 8, 8, 8, 8, 8, 8, 8, 8]}}", "", "vae.widths");
    expect_config_error("{\"subject\": {\"widths\": []}}", "", "subject.widths");
    expect_config_error("{\"data\": {\"n_train\": 100}}", "train.batch_size=5000", "train.batch_size");
    expect_config_error("{\"data\": {\"n_train\": 100}}", "train.batch_size=32 vae.batch_size=500", "vae.batch_size");
    expect_config_error("{}", "train.ema_decay=0.9 train.patience=2", "train.patience");
    /* per-family settings: malformed, an unknown family, a key of the grid, a bad value */
    expect_config_error("{}", "sweep.overrides=nf", "sweep.overrides");
    expect_config_error("{}", "sweep.overrides=gan:train.steps=5", "sweep.overrides");
    expect_config_error("{}", "sweep.overrides=nf:train.lambda=3", "train.lambda");
    expect_config_error("{}", "sweep.overrides=fm:seed=3", "sweep.overrides");
    expect_config_error("{}", "sweep.overrides=nf:train.steps=5abc", "train.steps");
    expect_config_error("{}", "sweep.overrides=nf:nf.blocks=0", "nf.blocks");
    /* NDTM cells: their axes and the sampler's settings */
    expect_config_error("{}", "sweep.ndtm_gammas=1 sweep.ndtm_priors=pixel", "sweep.ndtm_priors");
    expect_config_error("{}", "sweep.ndtm_gammas=1 sweep.ndtm_priors=pixel-ood prior.unet.groups=5",
                        "prior.unet.groups");
    expect_config_error("{}", "sweep.ndtm_gammas=1 sweep.ndtm_targets=tweedie", "sweep.ndtm_targets");
    expect_config_error("{}", "sweep.ndtm_gammas=-1", "sweep.ndtm_gammas");
    expect_config_error("{}", "sweep.ndtm_gammas=1 ndtm.ramp_end=600", "ndtm.ramp_end");
    expect_config_error("{}", "sweep.ndtm_gammas=1 ndtm.steps=2000", "ndtm.steps");
    /* a device that is not one, and one this machine does not have (a libtorch without
     * CUDA: any GPU; with CUDA: an index past the last GPU) */
    expect_config_error("{\"device\": \"gpu\"}", "", "device");
    expect_config_error("{}", ct_cuda_available() ? "device=cuda:4096" : "device=cuda", "device");
    expect_config_error("{}", ct_cuda_available() ? "device=cuda:4096 sweep.workers=2" : "device=cuda sweep.workers=2",
                        "device");
}

/* A setting small enough to train subject, VAE and two fiber models in seconds. */
static const char *small =
    "{\"sweep\": {\"name\": \"t\", \"lambdas\": [0, 30], \"grid_targets\": 2},"
    " \"data\": {\"n_train\": 1500, \"n_test\": 200},"
    " \"subject\": {\"widths\": [8, 16], \"dim\": 16, \"steps\": 150, \"batch_size\": 64},"
    " \"vae\": {\"widths\": [8, 16], \"hidden\": 64, \"latent\": 8, \"steps\": 150, \"batch_size\": 64},"
    " \"nf\": {\"blocks\": 3, \"hidden\": 32},"
    " \"train\": {\"steps\": 150, \"batch_size\": 64, \"lr\": 3e-3, \"checkpoint_every\": 50, \"val_every\": 50},"
    " \"eval\": {\"n_targets\": 40, \"samples_per_target\": 4, \"n_aug\": 2, \"n_random\": 2,"
    "  \"nn_train\": 300, \"store_samples\": 2}}";

/* The run file of run in the test's sweep folder, open (the caller closes it). */
static fl_h5r *open_run(const char *run)
{
    char p[600];
    snprintf(p, sizeof p, "%s/results/t/runs/%s.h5", tmp, run);
    fl_h5r *r = fl_h5r_open(p);
    cr_assert_not_null(r, "%s", fl_error());
    return r;
}

static double run_attr(const char *run, const char *attr)
{
    fl_h5r *r = open_run(run);
    double v = NAN;
    cr_assert_eq(fl_h5r_attr_f64(r, "/", attr, &v), 0, "%s", fl_error());
    fl_h5r_close(r);
    return v;
}

Test(sweep, fiber_loss_term_lowers_the_fiber_loss_and_reruns_train_only_what_is_missing,
     .timeout = 900)
{
    if (access(NPM_DIR "/0.json", R_OK) != 0) cr_skip_test("the npm digits are not fetched (scripts/setup.sh)");
    write_config("small.json", small);
    char args[1024];
    snprintf(args, sizeof args, "sweep small.json data.path='%s' threads=1", NPM_DIR);
    cr_assert_eq(run(args), 0, "the sweep failed:\n%s", err);
    cr_expect(strstr(out, "2 runs: 2 trained, 0 reused") != NULL, "stdout: %s", out);
    double f0 = run_attr("nf_lam0_seed0", "fiber_mean"), f30 = run_attr("nf_lam30_seed0", "fiber_mean");
    cr_expect_lt(f30, f0, "fiber loss with λ=30: %.4f, with λ=0: %.4f", f30, f0);
    {   /* the median stored with the run is that of its per-sample losses; the index has it */
        char p[600];
        fl_h5r *h = open_run("nf_lam0_seed0");
        int64_t n = 0;
        float *loss = fl_h5r_read_alloc(h, "eval/loss", FL_F32, &n);
        fl_h5r_close(h);
        cr_assert(loss && n == 40 * 4, "eval/loss: %lld values", (long long)n);
        cr_expect_eq(run_attr("nf_lam0_seed0", "fiber_median"), fl_median(loss, n));
        free(loss);
        snprintf(p, sizeof p, "%s/results/t/index.json", tmp);
        FILE *f = fopen(p, "r");
        cr_assert_not_null(f, "%s", p);
        char json[1 << 14];
        size_t len = fread(json, 1, sizeof json - 1, f);
        json[len] = 0;
        fclose(f);
        cr_expect(strstr(json, "\"fiber_median\":"), "index.json has no fiber_median:\n%s", json);
    }
    const char *report[] = {"results/t/index.json", "results/t/timing.md", "results/t/references.h5",
                            "results/t/report.md", "results/t/summary.md",
                            "results/t/fidelity_consistency.png", "results/t/fidelity_consistency.svg",
                            "results/t/dfib_consistency.png", "results/t/dfib_consistency.svg",
                            "results/t/colors.png", "results/t/colors.svg",
                            "results/t/curves.png", "results/t/curves.svg",
                            "results/t/grids/nf_lam0_seed0.png", "results/t/grids/nf_lam30_seed0.png",
                            "results/t/models/nf_lam0_seed0.h5", "results/t/models/nf_lam30_seed0.h5"};
    for (size_t i = 0; i < sizeof report / sizeof report[0]; i++)
        cr_expect(exists(report[i]), "missing %s", report[i]);
    cr_expect_not(exists("results/t/checkpoints/nf_lam0_seed0.ckpt"),
                  "the training state stayed beside the saved model");

    /* interrupted before the second run finished: its file is missing */
    char p[600];
    struct stat st0;
    snprintf(p, sizeof p, "%s/results/t/runs/nf_lam0_seed0.h5", tmp);
    cr_assert_eq(stat(p, &st0), 0);
    snprintf(p, sizeof p, "%s/results/t/runs/nf_lam30_seed0.h5", tmp);
    cr_assert_eq(unlink(p), 0);
    snprintf(p, sizeof p, "%s/results/t/models/nf_lam30_seed0.h5", tmp);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(run(args), 0, "the rerun failed:\n%s", err);
    cr_expect(strstr(out, "2 runs: 1 trained, 1 reused") != NULL, "stdout: %s", out);
    cr_expect(strstr(err, "nf_lam0_seed0: done before, reused") != NULL, "stderr: %s", err);
    struct stat st1;
    snprintf(p, sizeof p, "%s/results/t/runs/nf_lam0_seed0.h5", tmp);
    cr_assert_eq(stat(p, &st1), 0);
    cr_expect_eq(st0.st_mtime, st1.st_mtime, "the finished run was rewritten");
    cr_expect(exists("results/t/runs/nf_lam30_seed0.h5"));
    cr_expect(strstr(err, "training subject") == NULL && strstr(err, "training vae") == NULL,
              "the rerun trained the subject or VAE again:\n%s", err);

    /* a subset of the grid trains nothing */
    snprintf(args, sizeof args, "sweep small.json data.path='%s' threads=1 sweep.lambdas=0", NPM_DIR);
    cr_assert_eq(run(args), 0, "%s", err);
    cr_expect(strstr(out, "1 runs: 0 trained, 1 reused") != NULL, "stdout: %s", out);

    /* other evaluation settings (or threads) score the saved models again, training nothing */
    double f0_before = run_attr("nf_lam0_seed0", "fiber_mean");
    snprintf(args, sizeof args, "sweep small.json data.path='%s' threads=2 eval.n_targets=20", NPM_DIR);
    cr_assert_eq(run(args), 0, "%s", err);
    cr_expect(strstr(out, "2 runs: 0 trained, 0 reused, 2 scored again") != NULL, "stdout: %s", out);
    cr_expect(strstr(err, "nf λ=0") == NULL, "a model was trained again:\n%s", err);
    double f0_after = run_attr("nf_lam0_seed0", "fiber_mean");
    cr_expect_neq(f0_after, f0_before, "20 targets scored like 40");
    {
        char rp[600];
        snprintf(rp, sizeof rp, "%s/results/t/runs/nf_lam0_seed0.h5", tmp);
        fl_h5r *h = fl_h5r_open(rp);
        cr_assert_not_null(h, "%s", fl_error());
        int64_t n = 0;
        float *loss = fl_h5r_read_alloc(h, "eval/loss", FL_F32, &n);
        int64_t steps = 0;
        cr_expect_eq(fl_h5r_attr_i64(h, "train", "steps", &steps), 0, "%s", fl_error());
        fl_h5r_close(h);
        cr_expect_eq(n, 20 * 4, "eval/loss: %lld values", (long long)n);
        cr_expect_eq(steps, 150, "the training result was not carried over from the model store");
        free(loss);
    }

    /* `fiberlab eval --model` scores a saved model with the same numbers */
    cr_assert_eq(run("eval --model results/t/models/nf_lam0_seed0.h5 eval.n_targets=20 --no-reference "
                     "threads=2"), 0, "%s", err);
    char want[64];
    snprintf(want, sizeof want, "%.4f", f0_after);
    cr_expect(strstr(out, want) != NULL, "eval --model did not print the fiber loss %s:\n%s", want, out);
    /* ... and refuses a setting that would need another trained model */
    cr_expect_neq(run("eval --model results/t/models/nf_lam0_seed0.h5 train.lr=1"), 0);
    cr_expect(strstr(err, "train.lr") != NULL, "stderr: %s", err);

    /* a changed training setting trains again */
    snprintf(args, sizeof args, "sweep small.json data.path='%s' threads=1 eval.n_targets=20 "
             "sweep.lambdas=0 train.lr=2e-3", NPM_DIR);
    cr_assert_eq(run(args), 0, "%s", err);
    cr_expect(strstr(out, "1 runs: 1 trained, 0 reused") != NULL, "stdout: %s", out);

    /* sweep.overrides: another family's entry changes nothing; the family's own trains
     * again with it */
    snprintf(args, sizeof args, "sweep small.json data.path='%s' threads=1 eval.n_targets=20 "
             "sweep.lambdas=0 train.lr=2e-3 sweep.overrides=fm:train.steps=60", NPM_DIR);
    cr_assert_eq(run(args), 0, "%s", err);
    cr_expect(strstr(out, "1 runs: 0 trained, 1 reused") != NULL, "stdout: %s", out);
    snprintf(args, sizeof args, "sweep small.json data.path='%s' threads=1 eval.n_targets=20 "
             "sweep.lambdas=0 train.lr=2e-3 sweep.overrides=fm:train.steps=60,nf:train.steps=60", NPM_DIR);
    cr_assert_eq(run(args), 0, "%s", err);
    cr_expect(strstr(out, "1 runs: 1 trained, 0 reused") != NULL, "stdout: %s", out);
    {
        char rp[600];
        snprintf(rp, sizeof rp, "%s/results/t/runs/nf_lam0_seed0.h5", tmp);
        fl_h5r *h = fl_h5r_open(rp);
        cr_assert_not_null(h, "%s", fl_error());
        int64_t steps = 0;
        cr_expect_eq(fl_h5r_attr_i64(h, "train", "steps", &steps), 0, "%s", fl_error());
        fl_h5r_close(h);
        cr_expect_eq(steps, 60, "nf trained %lld steps, not the override's 60", (long long)steps);
    }
}

/* The fiber loss of a run file (the report's number), formatted as the report does. */
static void expect_report_row(const char *md, const char *label, const char *run)
{
    char row[200], fib[96];
    fl_h5r *h = open_run(run);
    fl_ci c;
    cr_assert_eq(fl_h5r_attr_f64(h, "eval", "fiber_mean", &c.mean) ||
                     fl_h5r_attr_f64(h, "eval", "fiber_lo", &c.lo) || fl_h5r_attr_f64(h, "eval", "fiber_hi", &c.hi),
                 0, "%s", fl_error());
    fl_h5r_close(h);
    snprintf(row, sizeof row, "| %s | 1 | %s |", label, fl_ci_format(&c, 4, fib, sizeof fib));
    cr_expect(strstr(md, row) != NULL, "report.md has no row '%s':\n%s", row, md);
}

Test(sweep, every_axis_in_one_sweep_families_and_ndtm_cells_in_one_report, .timeout = 900)
{
    if (access(NPM_DIR "/0.json", R_OK) != 0) cr_skip_test("the npm digits are not fetched (scripts/setup.sh)");
    write_config("small.json", small);
    char args[2048];
    snprintf(args, sizeof args,
             "sweep small.json data.path='%s' threads=1 sweep.families=nf,fm train.steps=60 "
             "fm.hidden=16 fm.blocks=1 train.fiber_steps=2 eval.n_targets=20 "
             "sweep.ndtm_gammas=1 sweep.ndtm_priors=correlated,ood sweep.ndtm_leakage=true "
             "prior.steps=60 prior.batch_size=32 prior.hidden=32 prior.blocks=1 prior.ema_decay=0.9 "
             "prior.report_samples=64 prior.report_steps=10 ndtm.steps=10 ndtm.inner=2 "
             "ndtm.ramp_start=990 ndtm.ramp_end=500 ndtm.u_lr=0.3 prior.unet.widths=4,8 "
             "prior.unet.groups=2 prior.unet.time_embed=8 prior.unet.steps=20 prior.unet.batch_size=16",
             NPM_DIR);
    cr_assert_eq(run(args), 0, "the sweep failed:\n%s", err);
    cr_expect(strstr(out, "7 runs: 7 trained, 0 reused") != NULL, "stdout: %s", out);
    static char md[1 << 16];
    char p[600];
    snprintf(p, sizeof p, "%s/results/t/report.md", tmp);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "no report.md");
    md[fread(md, 1, sizeof md - 1, f)] = 0;
    fclose(f);
    expect_report_row(md, "NF λ = 0", "nf_lam0_seed0");
    expect_report_row(md, "NF λ = 30", "nf_lam30_seed0");
    expect_report_row(md, "FM λ = 0", "fm_lam0_seed0");
    expect_report_row(md, "FM λ = 30", "fm_lam30_seed0");
    expect_report_row(md, "NDTM correlated static γ = 1", "ndtm-correlated-static_g1_seed0");
    expect_report_row(md, "NDTM ood static γ = 1", "ndtm-ood-static_g1_seed0");
    expect_report_row(md, "NDTM correlated static fixed γ = 1", "ndtm-correlated-static-fixed_g1_seed0");
    cr_expect(strstr(md, "- **The `fixed` test") && !strstr(md, "not decided: no leakage cells"),
              "the leakage finding was not decided:\n%s", md);
    {   /* the leakage cell's targets are all of the fixed color */
        fl_h5r *h = open_run("ndtm-correlated-static-fixed_g1_seed0");
        int64_t n = 0;
        float *t = fl_h5r_read_alloc(h, "grid/targets", FL_F32, &n);
        char variant[32] = "";
        cr_expect_eq(fl_h5r_attr_str(h, "/", "targets_variant", variant, sizeof variant), 0);
        fl_h5r_close(h);
        cr_expect_str_eq(variant, "fixed");
        cr_assert(t && n >= 3 * 28 * 28);
        /* the top-left pixel of each channel is background: data.fixed_color's default */
        const float want[3] = {0.7f, 0.5f, 0.1f};
        for (int k = 0; k < 3; k++)
            cr_expect_float_eq(t[k * 28 * 28], want[k], 1e-5, "channel %d: %g", k, t[k * 28 * 28]);
        free(t);
    }
    /* the two priors are two cached models, one trained on each color law */
    cr_expect(strstr(err, "prior-latent") != NULL, "%s", err);
    cr_expect(strstr(md, "NDTM: ") && strstr(md, "| NF λ = 0 | "), "no timing table:\n%s", md);
    cr_expect(strstr(md, "- **NDTM reaches") && !strstr(md, "not decided: the sweep needs unrefined NDTM"),
              "the NDTM finding was not decided:\n%s", md);

    /* a rerun reuses every cell, NDTM's too; another γ makes only its own cells */
    cr_assert_eq(run(args), 0, "the rerun failed:\n%s", err);
    cr_expect(strstr(out, "7 runs: 0 trained, 7 reused") != NULL, "stdout: %s", out);
    char more[2200];
    snprintf(more, sizeof more, "%s sweep.ndtm_gammas=1,3 sweep.ndtm_priors=correlated sweep.ndtm_leakage=false", args);
    cr_assert_eq(run(more), 0, "%s", err);
    cr_expect(strstr(out, "6 runs: 1 trained, 5 reused") != NULL, "stdout: %s", out);
    cr_expect(exists("results/t/runs/ndtm-correlated-static_g3_seed0.h5"));

    /* the pixel UNet prior as an axis value: its cell and leakage cell, its own cached
     * model, and the NDTM finding decided by the paper's (pixel) prior */
    snprintf(more, sizeof more, "%s sweep.ndtm_priors=pixel-correlated sweep.ndtm_leakage=true", args);
    cr_assert_eq(run(more), 0, "%s", err);
    cr_expect(strstr(out, "6 runs: 2 trained, 4 reused") != NULL, "stdout: %s", out);
    cr_expect(strstr(err, "prior-pixel") != NULL, "%s", err);
    snprintf(p, sizeof p, "%s/results/t/report.md", tmp);
    f = fopen(p, "r");
    cr_assert_not_null(f, "no report.md");
    md[fread(md, 1, sizeof md - 1, f)] = 0;
    fclose(f);
    expect_report_row(md, "NDTM pixel correlated static γ = 1", "ndtm-pixel-correlated-static_g1_seed0");
    expect_report_row(md, "NDTM pixel correlated static fixed γ = 1", "ndtm-pixel-correlated-static-fixed_g1_seed0");
    cr_expect(strstr(md, "NDTM pixel correlated static γ = 1 has fiber loss") != NULL,
              "the NDTM finding is not the pixel prior's:\n%s", md);
}
