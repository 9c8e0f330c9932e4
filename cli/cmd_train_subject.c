/* fiberlab train-subject: train the subject model of the subject.* settings into the
 * cache (or find it there) and print what it measured. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/log.h"
#include "datasets/store.h"
#include "trainers/subject.h"

static const char *CMD = "train-subject";

static void usage(void)
{
    printf("usage: fiberlab train-subject [--config FILE] [--retrain] [key=value ...]\n"
           "\n"
           "Trains the subject model f of the subject.* settings on the dataset of the data.*\n"
           "settings, or finds it in <cache>/models/ (subject-<kind>-<hash>.ckpt; the hash\n"
           "covers the data.* and subject.* keys), and prints what training measured on the\n"
           "test split:\n"
           "  decolorize_ae  the autoencoder's pixel RMSE, the fiber loss of its\n"
           "                 reconstructions, and for scale the fiber loss between a digit and\n"
           "                 a random digit of another class;\n"
           "  classifier     its test accuracy;\n"
           "  torchscript    loads subject.path and reports its dimension.\n"
           "\n"
           "  --retrain   train anew even when a cached subject exists\n"
           "\n"
           "Settings: subject.kind=decolorize_ae|classifier|torchscript, subject.path=FILE.pt,\n"
           "subject.input=gray|color, subject.dim, subject.steps, subject.lr, subject.seed, …\n"
           "(configs/README.md); docs/evaluation.md describes the subjects.\n");
}

int cmd_train_subject(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    cli_opts o;
    int retrain = 0;
    if (cli_opts_parse(CMD, argc, argv, &o, cli_opt_retrain, &retrain)) return 1;
    if (o.out) return cli_fail(CMD, "--out: the subject goes to the cache; see cache_dir");
    fl_config *c = cli_opts_config(CMD, &o);
    if (!c) return 1;
    fl_dataset *ds = NULL;
    fl_subject *s = NULL;
    char path[4096];
    int rc = 0;
    if (fl_subject_cache_path(c, path, sizeof path) || fl_dataset_open(c, &ds)) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    if (retrain && strcmp(fl_cfg_str(c, "subject.kind"), "torchscript") != 0 &&
        (rc = cli_remove_cached(CMD, path, "subject")))
        goto done;
    if (fl_subject_open(c, ds, &s)) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    const fl_subject_report *r = fl_subject_report_of(s);
    printf("subject    %s  (d = %d%s)\n", fl_subject_name(s), fl_subject_dim(s),
           fl_subject_kind_of(s) == FL_SUBJECT_TORCHSCRIPT ? ""
           : strcmp(fl_cfg_str(c, "subject.input"), "gray") == 0 ? ", input: decolorized gray"
                                                                 : ", input: colored");
    printf("file       %s\n", fl_subject_path(s));
    if (fl_subject_kind_of(s) != FL_SUBJECT_TORCHSCRIPT)
        printf("%-10s %lld steps in %.1f s\n", r->trained ? "trained" : "reused", (long long)r->steps,
               r->train_seconds);
    if (isfinite(r->recon_rmse))
        printf("recon      pixel RMSE %.4f (test); fiber loss of the reconstructions %.4f\n",
               r->recon_rmse, r->recon_fiber);
    if (isfinite(r->accuracy)) printf("accuracy   %.2f %% (test)\n", 100 * r->accuracy);
    if (isfinite(r->other_fiber)) {
        printf("scale      fiber loss to a random digit of another class %.4f", r->other_fiber);
        if (isfinite(r->recon_fiber))
            printf("  (reconstructions: %.1f %% of it)", 100 * r->recon_fiber / r->other_fiber);
        printf("\n");
    }
done:
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
    return rc;
}
