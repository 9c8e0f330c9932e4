/* fiberlab train-prior: train NDTM's diffusion prior (prior.*) — on the fiber VAE's
 * latents, or with prior.space=pixel the UNet on the images — into the cache (or find it
 * there), and report the colors of its own decoded samples against the exact law; with
 * prior.script, measure a user's prior's colors. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/log.h"
#include "datasets/store.h"
#include "trainers/prior.h"
#include "trainers/vae.h"

static const char *CMD = "train-prior";

static void usage(void)
{
    printf("usage: fiberlab train-prior [--config FILE] [--retrain] [key=value ...]\n"
           "\n"
           "Trains NDTM's prior — an unconditional diffusion model (ε-prediction, linear β from\n"
           "1e-4 to prior.beta_max, prior.T steps, EMA weights) on the standardized latent of\n"
           "the fiber VAE (trained first when it is not cached) — on the dataset of the data.*\n"
           "settings with fresh colors every epoch, or finds it in <cache>/models/\n"
           "(prior-latent-<hash>.ckpt; the hash covers the data.*, vae.* and prior.* keys).\n"
           "Prints the color KL and W1 against the exact law of prior.report_samples of its\n"
           "samples, decoded by the VAE.\n"
           "With prior.space=pixel the prior is the paper's instead: a UNet (prior.unet.*) on\n"
           "the 3×28×28 images scaled to [-1, 1], no VAE (prior-pixel-<hash>.ckpt; the hash\n"
           "covers data.*, prior.unet.* and the prior.* keys it reads); its samples are images.\n"
           "With prior.script=FILE (a user's TorchScript ε(x, t) in pixel space) nothing is\n"
           "trained: its own samples are drawn and their colors reported the same way.\n"
           "\n"
           "  --retrain      train anew even when a cached prior exists\n"
           "\n"
           "Settings: prior.space, prior.steps, prior.lr, prior.batch_size, prior.hidden,\n"
           "prior.blocks, prior.ema_decay, prior.unet.widths, prior.unet.steps, … (configs/README.md).\n");
}

int cmd_train_prior(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    cli_opts o;
    int retrain = 0;
    if (cli_opts_parse(CMD, argc, argv, &o, cli_opt_retrain, &retrain)) return 1;
    if (o.out) return cli_fail(CMD, "--out: the prior goes to the cache; see cache_dir");
    fl_config *c = cli_opts_config(CMD, &o);
    if (!c) return 1;
    fl_dataset *ds = NULL;
    fl_vae *v = NULL;
    fl_prior *p = NULL;
    char path[4096];
    int rc = 0;
    bool script = *fl_cfg_str(c, "prior.script") != '\0';
    bool pixel = !script && strcmp(fl_cfg_str(c, "prior.space"), "pixel") == 0;
    if (script && retrain) {
        rc = cli_fail(CMD, "--retrain: prior.script=%s is the user's prior; nothing is trained",
                      fl_cfg_str(c, "prior.script"));
        goto done;
    }
    if (fl_prior_check(c) || fl_prior_cache_path(c, path, sizeof path) ||
        (!script && (fl_dataset_open(c, &ds) || (!pixel && fl_vae_open(c, ds, &v))))) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    if (retrain && (rc = cli_remove_cached(CMD, path, "prior"))) goto done;
    if (fl_prior_open(c, ds, v, &p) || fl_prior_measure(p)) {
        rc = cli_fail(CMD, "%s", fl_error());
        goto done;
    }
    const fl_prior_report *r = fl_prior_report_of(p);
    if (script)
        printf("prior      the user's TorchScript ε(x, t) on 3×28×28 pixels, T = %d\n", fl_prior_T(p));
    else if (pixel) {
        printf("prior      pixel UNet on 3×28×28 images, widths");
        for (int i = 0; i < fl_cfg_len(c, "prior.unet.widths"); i++)
            printf("%s%g", i ? ", " : " ", fl_cfg_list_num(c, "prior.unet.widths", i));
        printf("; %lld blocks a level; T = %d\n", (long long)fl_cfg_int(c, "prior.unet.blocks"), fl_prior_T(p));
    } else
        printf("prior      latent diffusion on the VAE's %d dimensions (%s)\n", fl_vae_dim(v), fl_vae_path(v));
    printf("file       %s\n", fl_prior_path(p));
    if (!script)
        printf("%-10s %lld steps in %.1f s\n", r->trained ? "trained" : "reused", (long long)r->steps,
               r->train_seconds);
    printf("colors     of %lld decoded samples: KL R/G/B %.4f/%.4f/%.4f (mean %.4f), "
           "W1 R/G/B %.4f/%.4f/%.4f (mean %.4f)\n",
           (long long)fl_cfg_int(c, "prior.report_samples"), r->color.kl[0], r->color.kl[1],
           r->color.kl[2], r->color.kl_mean, r->color.w1[0], r->color.w1[1], r->color.w1[2],
           r->color.w1_mean);
done:
    fl_prior_free(p);
    fl_vae_free(v);
    fl_dataset_free(ds);
    fl_config_free(c);
    return rc;
}
