/* fiberlab sweep / train / report: the run store. sweep trains and evaluates a grid of
 * fiber models and reports it; train is a sweep of one run; report remakes the report of
 * a sweep folder from its files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/sweep.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "cli/job.h"
#include "core/blas.h"
#include "core/log.h"

static void print_summary(const fl_sweep_summary *s)
{
    printf("%d runs: %d trained, %d reused", s->runs_total, s->runs_trained, s->runs_reused);
    if (s->runs_rescored) printf(", %d scored again", s->runs_rescored);
    printf(" from earlier");
    if (s->runs_total < s->runs_grid) printf(" (this shard's, of the grid's %d)", s->runs_grid);
    printf("\n");
    printf("time %.1f s (data, subject, VAE, references %.1f s; training %.1f s; sampling "
           "and evaluation %.1f s; report %.1f s); peak memory %.0f MiB\n",
           s->seconds_total, s->seconds_setup, s->seconds_train, s->seconds_eval,
           s->seconds_report, s->peak_rss_mib);
    printf("results in %s/: report.md, fidelity_consistency.png, index.json, timing.md, grids/, runs/, models/\n",
           s->dir);
}

static int run_sweep(const char *cmd, fl_config *c)
{
    fl_sweep_summary s;
    int rc = fl_sweep_run(c, &s);
    fl_config_free(c);
    if (rc) return cli_fail(cmd, "%s", fl_error());
    print_summary(&s);
    return 0;
}

/* The ranks of an MPI job, or the local workers of sweep.workers, share the grid (or
 * the shard `part`) through the cells' locks (each starts at its own place in it), then
 * rank 0 writes the report and prints the job's summary. */
static int run_job(fl_config *c, cli_job *j, const fl_sweep_share *part, double t0, double setup)
{
    fl_sweep_summary s;
    const char *who = j->mpi ? "rank" : "worker";
    int cores = fl_cores_available() / j->local_size;
    if (fl_cfg_int(c, "threads") == 0) fl_threads_set(cores > 1 ? cores : 1, FL_WORK_CONV);
    int grid = fl_sweep_grid_size(c);
    fl_sweep_share share = {part->part, part->parts, grid * j->rank / j->size, false, false};
    int mine = fl_sweep_run_share(c, &share, &s);
    fl_config_free(c);
    if (mine) fprintf(stderr, "fiberlab sweep: %s %d: %s\n", who, j->rank, fl_error());
    double v[6] = {s.runs_trained, s.runs_rescored, s.seconds_train, s.peak_rss_mib, s.seconds_eval,
                   s.seconds_setup};
    int all = cli_job_agree(j, mine ? 1 : 0);
    cli_job_sum(j, v, 6);
    if (all) {
        if (!mine) fprintf(stderr, "fiberlab sweep: another %s failed; the cells done stay\n", who);
        return 1;
    }
    if (j->rank != 0) return 0;
    double tr = fl_now();
    if (fl_sweep_report(s.dir)) return cli_fail("sweep", "%s", fl_error());
    printf("%d %ss, %d runs: %.0f trained, %.0f reused", j->size, who, s.runs_total, v[0],
           s.runs_total - v[0] - v[1]);
    if (v[1] > 0) printf(", %.0f scored again", v[1]);
    printf(" from earlier\n");
    printf("time %.1f s (", fl_now() - t0);
    if (setup >= 0) printf("data, subject, VAE, references %.1f s; ", setup);
    printf("summed over the %ss: opening the cached models and training NDTM's priors %.1f s, "
           "training %.1f s, sampling and evaluation %.1f s; report %.1f s); peak memory %.0f "
           "MiB summed over the %ss\n", who, v[5], v[2], v[4], fl_now() - tr, v[3], who);
    printf("results in %s/: report.md, fidelity_consistency.png, index.json, timing.md, grids/, runs/, models/\n",
           s.dir);
    return 0;
}

/* sweep.workers = k > 1 in a process alone: what every cell uses is built here on all
 * the threads first, then k − 1 copies of this process join it as workers. */
static int run_workers(fl_config *c, cli_job *j, const fl_sweep_share *part, char **argv, double t0)
{
    fl_sweep_summary s;
    fl_sweep_share setup = {part->part, part->parts, 0, false, true};
    if (fl_sweep_run_share(c, &setup, &s)) {
        fl_config_free(c);
        return cli_fail("sweep", "%s", fl_error());
    }
    if (cli_job_spawn("sweep", j, (int)fl_cfg_int(c, "sweep.workers"), argv)) {
        fl_config_free(c);
        return 1;
    }
    return run_job(c, j, part, t0, s.seconds_setup);
}

/* --shard i/n: both whole numbers, 0 <= i < n, nothing after. */
static int opt_shard(void *ctx, int argc, char **argv, int i)
{
    if (strcmp(argv[i], "--shard") != 0) return 0;
    fl_sweep_share *sh = ctx;
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    long a = v ? strtol(v, &end, 10) : -1, b = -1;
    if (v && end != v && *end == '/') {
        const char *q = end + 1;
        b = strtol(q, &end, 10);
        if (end == q || *end) b = -1;
    }
    if (!v || a < 0 || b < 1 || a >= b || b > 1 << 20) {
        cli_fail("sweep", "--shard: expected i/n with 0 <= i < n (e.g. --shard 0/4), got '%s'",
                 v ? v : "");
        return -1;
    }
    sh->part = (int)a;
    sh->parts = (int)b;
    return 2;
}

int cmd_sweep(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: fiberlab sweep CONFIG [--shard i/n] [key=value ...]\n"
               "       mpirun -n K fiberlab sweep CONFIG [key=value ...]\n"
               "\n"
               "Trains and evaluates the grid sweep.families × sweep.lambdas × sweep.seeds of\n"
               "fiber models on the dataset, subject and VAE of CONFIG (each built or found in\n"
               "the cache), with NDTM cells beside them when sweep.ndtm_gammas is set (guided\n"
               "samples of the latent prior, × sweep.ndtm_priors, sweep.ndtm_targets and\n"
               "sweep.ndtm_refine; sweep.ndtm_leakage adds the leakage test). It writes\n"
               "<out_dir>/<sweep.name>/: one HDF5 file per run in runs/, report.md (fiberlab\n"
               "report --help), summary.md, index.json, the plots (PNG and SVG), a sample grid\n"
               "per run in grids/, timing.md, and each trained model in models/. Finished runs\n"
               "with the same settings are reused; a change of evaluation settings (eval.*)\n"
               "only scores the saved models again; an interrupted run resumes from its\n"
               "checkpoint, so rerunning an interrupted sweep completes only what is missing.\n"
               "key=value overrides any key of CONFIG (configs/README.md), e.g.\n"
               "sweep.lambdas=0,1 train.steps=500.\n"
               "\n"
               "Several processes may share a sweep folder; each cell is made once (a lock per\n"
               "cell and per cached model). --shard i/n makes only the cells k of the grid\n"
               "(family-major, then λ, then seed) with k %% n = i, e.g. one task of a Slurm job\n"
               "array each; each shard writes the report of what the folder holds, and\n"
               "'fiberlab report DIR' remakes it once every shard is done (after copying the\n"
               "shards' runs/ and models/ into one folder if they did not share one). Under\n"
               "mpirun (fiberlab built with Open MPI) the ranks divide the cells among\n"
               "themselves, the cores of a machine among its ranks (threads=0), and rank 0\n"
               "writes the report once all are done. sweep.workers=K does the same on one\n"
               "machine without MPI: this process builds the dataset, subject, VAE and\n"
               "references, then starts K - 1 copies of itself, and the K processes divide\n"
               "the cells and the cores (with --shard too: the shard's cells).\n");
        return 0;
    }
    double t0 = fl_now();
    char **all_args = argv;
    fl_sweep_share share = {0, 1, 0, true, false};
    cli_opts o;
    const char *config = NULL;
    if (argc > 1 && argv[1][0] != '-' && !strchr(argv[1], '=')) {
        config = argv[1];
        argv++;
        argc--;
    }
    if (cli_opts_parse("sweep", argc, argv, &o, opt_shard, &share)) return 1;
    if (o.out) return cli_fail("sweep", "--out: the results go to <out_dir>/<sweep.name>");
    if (config && o.config) return cli_fail("sweep", "give the config once");
    if (config) o.config = config;
    if (!o.config) return cli_fail("sweep", "missing CONFIG (e.g. configs/demo.json)");
    cli_job j;
    if (cli_job_begin("sweep", &j)) return 1;
    o.device_slot = j.local_rank;   /* device "cuda": this machine's processes take its GPUs in turn */
    int rc = 1;
    fl_config *c = NULL;
    if (j.mpi && share.parts > 1)
        cli_fail("sweep", "--shard: the ranks of an MPI job divide the grid themselves");
    else if (!(c = cli_opts_config("sweep", &o)))
        ;
    else if (j.size > 1)   /* an MPI rank, or a worker that worker 0 started */
        rc = run_job(c, &j, &share, t0, -1);
    else if (fl_cfg_int(c, "sweep.workers") > 1)
        rc = run_workers(c, &j, &share, all_args, t0);
    else {
        fl_sweep_summary s;
        rc = fl_sweep_run_share(c, &share, &s);
        fl_config_free(c);
        rc = rc ? cli_fail("sweep", "%s", fl_error()) : (print_summary(&s), 0);
    }
    /* every rank reaches this, so that one that failed early does not leave the others
     * waiting forever */
    if (j.size > 1 && !c) cli_job_agree(&j, 1);
    cli_job_end(&j);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: fiberlab train [--config FILE] [key=value ...]\n"
               "\n"
               "Trains one fiber model — family model.family, fiber-loss weight train.lambda,\n"
               "seed — evaluates it and stores it like a sweep of one run in\n"
               "<out_dir>/<sweep.name>/runs/<family>_lam<λ>_seed<seed>.h5 (with its plot,\n"
               "grid and timing). Example:\n"
               "    fiberlab train --config configs/demo.json model.family=nf train.lambda=1\n");
        return 0;
    }
    cli_opts o;
    if (cli_opts_parse("train", argc, argv, &o, NULL, NULL)) return 1;
    if (o.out) return cli_fail("train", "--out: the run goes to <out_dir>/<sweep.name>/runs/");
    fl_config *c = cli_opts_config("train", &o);
    if (!c) return 1;
    char fam[64], lam[64], seed[64];
    snprintf(fam, sizeof fam, "sweep.families=%s", fl_cfg_str(c, "model.family"));
    snprintf(lam, sizeof lam, "sweep.lambdas=%.17g", fl_cfg_num(c, "train.lambda"));
    snprintf(seed, sizeof seed, "sweep.seeds=%lld", (long long)fl_cfg_int(c, "seed"));
    /* one run: none of the config's NDTM cells, and no second worker to wait for it */
    if (fl_config_override(c, fam) || fl_config_override(c, lam) || fl_config_override(c, seed) ||
        fl_config_override(c, "sweep.ndtm_gammas=[]") ||
        fl_config_override(c, "sweep.ndtm_leakage=false") || fl_config_override(c, "sweep.workers=1")) {
        fl_config_free(c);
        return cli_fail("train", "%s", fl_error());
    }
    return run_sweep("train", c);
}

int cmd_report(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc != 2) {
        printf("usage: fiberlab report SWEEP_DIR\n"
               "\n"
               "Remakes the report of a sweep folder (e.g. results/demo) from its run files and\n"
               "reference lines alone: report.md (the plots, every cell with its intervals and\n"
               "per-channel KL and W1, the reference lines, the paper's findings decided on\n"
               "these numbers, the timing table with NDTM's break-even, the machines the runs ran\n"
               "on), summary.md, index.json, timing.md, and as PNG and SVG: fidelity_consistency\n"
               "(fiber loss against mean KL), dfib_consistency (d_fib against mean KL), colors\n"
               "(against each channel's KL and W1), curves (training losses); and grids/. It\n"
               "merges the shards of a sweep: run it once every shard's runs/ are in the folder.\n");
        return argc == 2 ? 0 : 2;
    }
    if (fl_sweep_report(argv[1])) return cli_fail("report", "%s", fl_error());
    printf("report of %s written: %s/report.md\n", argv[1], argv[1]);
    return 0;
}
