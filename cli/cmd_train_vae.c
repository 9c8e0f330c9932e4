/* fiberlab train-vae: train the VAE of the vae.* settings into the cache (or find it
 * there), and report its reconstruction error and the fiber loss of its
 * reconstructions — the floor every latent fiber model sits on. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "benchmarks/eval.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/log.h"
#include "datasets/store.h"
#include "trainers/subject.h"
#include "trainers/vae.h"

static const char *CMD = "train-vae";

static void usage(void)
{
    printf("usage: fiberlab train-vae [--config FILE] [--retrain] [--no-subject] [key=value ...]\n"
           "\n"
           "Trains the VAE of colored images of the vae.* settings (latent vae.latent = 54 by\n"
           "default) on the dataset of the data.* settings, or finds it in <cache>/models/\n"
           "(vae-<hash>.ckpt; the hash covers the data.* and vae.* keys). Prints its pixel\n"
           "RMSE and KL on the test split and, with the subject model (trained first if it is\n"
           "not cached), the fiber loss of its reconstructions of the evaluation targets: the\n"
           "floor of every latent fiber model.\n"
           "\n"
           "  --retrain      train anew even when a cached VAE exists\n"
           "  --no-subject   skip the fiber loss of the reconstructions\n"
           "\n"
           "Settings: vae.latent, vae.steps, vae.lr, vae.batch_size, vae.recon_weight,\n"
           "vae.kl_weight, vae.widths, vae.seed, … (configs/README.md).\n");
}

typedef struct {
    int retrain, no_subject;
} flags;

static int own(void *ctx, int argc, char **argv, int i)
{
    flags *f = ctx;
    if (strcmp(argv[i], "--retrain") == 0) f->retrain = 1;
    else if (strcmp(argv[i], "--no-subject") == 0) f->no_subject = 1;
    else return 0;
    return 1;
}

int cmd_train_vae(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    cli_opts o;
    flags f = {0, 0};
    if (cli_opts_parse(CMD, argc, argv, &o, own, &f)) return 1;
    if (o.out) return cli_fail(CMD, "--out: the VAE goes to the cache; see cache_dir");
    fl_config *c = cli_opts_config(CMD, &o);
    if (!c) return 1;
    fl_dataset *ds = NULL;
    fl_vae *v = NULL;
    fl_subject *s = NULL;
    fl_sampler smp = {0};
    fl_eval_result er = {0};
    char path[4096];
    int rc = 0;
    if (fl_vae_cache_path(c, path, sizeof path) || fl_dataset_open(c, &ds)) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    if (f.retrain && (rc = cli_remove_cached(CMD, path, "VAE"))) goto done;
    if (fl_vae_open(c, ds, &v)) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    const fl_vae_report *r = fl_vae_report_of(v);
    printf("vae        latent %d\n", fl_vae_dim(v));
    printf("file       %s\n", fl_vae_path(v));
    printf("%-10s %lld steps in %.1f s\n", r->trained ? "trained" : "reused", (long long)r->steps,
           r->train_seconds);
    printf("recon      pixel RMSE %.4f (test, colored); KL %.1f nats per image\n", r->recon_rmse, r->kl);
    if (f.no_subject) goto done;
    if (fl_subject_open(c, ds, &s) || fl_sampler_builtin("vae-recon", c, ds, v, &smp) ||
        fl_evaluate_k(c, ds, s, &smp, 1, &er)) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    const fl_subject_report *sr = fl_subject_report_of(s);
    printf("fiber      of the reconstructions %.4f ± %.4f (subject %s, %lld test targets)\n",
           er.fiber_mean, er.fiber_std, fl_subject_name(s), (long long)er.n_targets);
    if (isfinite(sr->other_fiber))
        printf("scale      fiber loss to a random digit of another class %.4f\n", sr->other_fiber);
    printf("colors     of the reconstructions: KL R/G/B %.4f/%.4f/%.4f, W1 mean %.4f\n",
           er.color.kl[0], er.color.kl[1], er.color.kl[2], er.color.w1_mean);
done:
    fl_eval_result_free(&er);
    fl_sampler_free(&smp);
    fl_subject_free(s);
    fl_vae_free(v);
    fl_dataset_free(ds);
    fl_config_free(c);
    return rc;
}
