/* fiberlab: the one command-line program. Dispatches to subcommands (cli/cmd_*.c). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/blas.h"

static const fl_command commands[] = {
    {"info", "show the libtorch version, the BLAS library and kernel, threads, devices",
     cmd_info},
    {"config", "check a config and print what it resolves to; --doc documents every key", cmd_config},
    {"data", "build, inspect or export a grid of the color-MNIST dataset", cmd_data},
    {"train-subject", "train the subject model (or find it in the cache) and report it", cmd_train_subject},
    {"train-vae", "train the VAE of colored images (or find it in the cache) and report it", cmd_train_vae},
    {"train-prior", "train NDTM's latent diffusion prior (or find it in the cache) and report its colors",
     cmd_train_prior},
    {"ndtm", "sample the subject's fiber by guiding the prior (NDTM, no training) and score it", cmd_ndtm},
    {"sweep", "train and evaluate a grid of fiber models (families × λ × seeds), plot it", cmd_sweep},
    {"train", "train and evaluate one fiber model (a sweep of one run)", cmd_train},
    {"report", "remake a sweep folder's report.md, plots, grids, index and timing table", cmd_report},
    {"eval", "score a sampler or a samples file: fiber loss, color KL and W1, reference lines", cmd_eval},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void usage(FILE *f)
{
    fprintf(f, "usage: fiberlab COMMAND [OPTIONS]\n\n"
               "Train and benchmark fiber models: generative models that sample the inputs\n"
               "a subject model cannot tell apart.\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'fiberlab COMMAND --help' describes a command.\n");
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fiberlab %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    fl_runtime_init(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "fiberlab: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
