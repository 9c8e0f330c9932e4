/* fiberlab sweep / train / plot: the run store. sweep trains and evaluates a grid of
 * fiber models and reports it; train is a sweep of one run; plot remakes the report of
 * a sweep folder from its files. */
#include <stdio.h>
#include <string.h>

#include "benchmarks/sweep.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/log.h"

static void print_summary(const fl_sweep_summary *s)
{
    printf("%d runs: %d trained, %d reused", s->runs_total, s->runs_trained, s->runs_reused);
    if (s->runs_rescored) printf(", %d scored again", s->runs_rescored);
    printf(" from earlier\n");
    printf("time %.1f s (data, subject, VAE, references %.1f s; training %.1f s; sampling "
           "and evaluation %.1f s; report %.1f s); peak memory %.0f MiB\n",
           s->seconds_total, s->seconds_setup, s->seconds_train, s->seconds_eval,
           s->seconds_report, s->peak_rss_mib);
    printf("results in %s/: fidelity_consistency.png, index.json, timing.md, grids/, runs/, models/\n",
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

int cmd_sweep(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: fiberlab sweep CONFIG [key=value ...]\n"
               "\n"
               "Trains and evaluates the grid sweep.families × sweep.lambdas × sweep.seeds of\n"
               "fiber models on the dataset, subject and VAE of CONFIG (each built or found in\n"
               "the cache), and writes <out_dir>/<sweep.name>/: one HDF5 file per run in runs/,\n"
               "index.json, the fidelity-versus-consistency plot (PNG and SVG), a sample grid\n"
               "per run in grids/, timing.md, and each trained model in models/. Finished runs\n"
               "with the same settings are reused; a change of evaluation settings (eval.*)\n"
               "only scores the saved models again; an interrupted run resumes from its\n"
               "checkpoint, so rerunning an interrupted sweep completes only what is missing.\n"
               "key=value overrides any key of CONFIG (configs/README.md), e.g.\n"
               "sweep.lambdas=0,1 train.steps=500.\n");
        return 0;
    }
    cli_opts o;
    const char *config = NULL;
    if (argc > 1 && argv[1][0] != '-' && !strchr(argv[1], '=')) {
        config = argv[1];
        argv++;
        argc--;
    }
    if (cli_opts_parse("sweep", argc, argv, &o, NULL, NULL)) return 1;
    if (o.out) return cli_fail("sweep", "--out: the results go to <out_dir>/<sweep.name>");
    if (config && o.config) return cli_fail("sweep", "give the config once");
    if (config) o.config = config;
    if (!o.config) return cli_fail("sweep", "missing CONFIG (e.g. configs/demo.json)");
    fl_config *c = cli_opts_config("sweep", &o);
    return c ? run_sweep("sweep", c) : 1;
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
    if (fl_config_override(c, fam) || fl_config_override(c, lam) || fl_config_override(c, seed)) {
        fl_config_free(c);
        return cli_fail("train", "%s", fl_error());
    }
    return run_sweep("train", c);
}

int cmd_plot(int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc != 2) {
        printf("usage: fiberlab plot SWEEP_DIR\n"
               "\n"
               "Remakes the report of a sweep folder (e.g. results/demo) from its files:\n"
               "index.json, fidelity_consistency.png and .svg, grids/ and timing.md.\n");
        return argc == 2 ? 0 : 2;
    }
    if (fl_sweep_report(argv[1])) return cli_fail("plot", "%s", fl_error());
    printf("report of %s rewritten\n", argv[1]);
    return 0;
}
