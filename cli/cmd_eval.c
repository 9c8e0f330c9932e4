/* fiberlab eval: the evaluation protocol (docs/evaluation.md) on a built-in sampler or
 * on samples made elsewhere (an HDF5 file of target indices and images), with the
 * reference lines; a table on stdout and, with --out, an HDF5 file written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchmarks/eval.h"
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/h5.h"
#include "core/log.h"
#include "datasets/store.h"
#include "fl_version.h"
#include "ndtm/ndtm.h"
#include "trainers/fiber.h"
#include "trainers/prior.h"
#include "trainers/subject.h"
#include "trainers/vae.h"

static const char *EVAL = "eval";

/* A key's default as the schema states it (the one place that decides it). */
static const char *def(const char *key)
{
    const fl_key *k = fl_config_key(key);
    return k ? k->def : "?";
}

static void usage(void)
{
    printf("usage: fiberlab eval (--sampler NAME | --samples FILE.h5 | --model MODEL.h5)\n"
           "                     [--out FILE.h5]\n"
           "                     [--no-reference] [--config FILE] [key=value ...]\n"
           "\n"
           "Scores samples of the fiber of the subject model (docs/evaluation.md).\n"
           "Targets: with --sampler, eval.n_targets (default %s) test images spread evenly over\n"
           "the test split (target t is test image floor(t * n_test / N); all of them when the\n"
           "split is smaller), eval.samples_per_target (default %s) samples each; with\n"
           "--samples, the distinct target_index values of the file, with its samples.\n"
           "Metrics: the fiber loss (mean ± std and median); the KL of the samples' background\n"
           "colors against the exact color law, per channel on eval.kl_bins (default %s) equal\n"
           "bins of [0, 1), and their Wasserstein-1 distance; then the reference lines\n"
           "(nearest training image, augmented target, and with a trained VAE its\n"
           "reconstructions and unconditional samples).\n"
           "\n"
           "  --sampler NAME    a built-in sampler: " FL_BUILTIN_SAMPLERS "\n"
           "                    (exact: the ideal fiber model; wrong-law, wrong-digit: checks;\n"
           "                    augment: shifted and rotated targets; vae-recon, vae-prior\n"
           "                    need the VAE and train it if missing)\n"
           "  --samples FILE    samples made elsewhere: datasets target_index (n,) int64, the\n"
           "                    position of each sample's target in the test split, and\n"
           "                    samples (n, 3, 28, 28) float32 in [0, 1]\n"
           "  --model FILE      a trained fiber model from the model store (a sweep's\n"
           "                    models/<run>.h5): its settings come from the file, and\n"
           "                    key=value may change evaluation settings (eval.*) only\n"
           "  --out FILE        write everything to an HDF5 file (layout: docs/evaluation.md)\n"
           "  --no-reference    skip the reference lines\n"
           "\n"
           "The subject (subject.*) is trained first when it is not cached.\n",
           def("eval.n_targets"), def("eval.samples_per_target"), def("eval.kl_bins"));
}

static void usage_ndtm(void)
{
    printf("usage: fiberlab ndtm [--refine] [--out FILE.h5] [--no-reference] [--config FILE]\n"
           "                     [key=value ...]\n"
           "\n"
           "Samples the fiber of the subject model at the evaluation targets with NDTM: no fiber\n"
           "model is trained; a diffusion prior is guided by the fiber loss (ndtm.*: ndtm.target\n"
           "static|renoised, ndtm.gamma, ndtm.u_lr, ndtm.inner, …; configs/README.md). The prior:\n"
           "the latent one on the fiber VAE (prior.space=latent, the default), the pixel UNet\n"
           "(prior.space=pixel, the paper's; prior.unet.*), each trained into the cache first\n"
           "when missing (as are the subject and the VAE), of prior.variant correlated|ood; or a\n"
           "user's TorchScript ε(x, t) in pixel space (prior.script=FILE).\n"
           "The samples are scored as fiberlab eval scores a sampler (docs/evaluation.md): the\n"
           "same table, reference lines and --out file.\n"
           "\n"
           "  --refine          then refine each sample's VAE latent with ndtm.refine_steps\n"
           "                    (default %s) Adam steps at lr ndtm.refine_lr (default %s) on its\n"
           "                    fiber loss (the paper's appendix A); ndtm.refine_space=pixels\n"
           "                    moves the pixels instead (use a smaller lr)\n"
           "  --out FILE        write everything to an HDF5 file (layout: docs/evaluation.md)\n"
           "  --no-reference    skip the reference lines\n",
           def("ndtm.refine_steps"), def("ndtm.refine_lr"));
}

typedef struct {
    const char *sampler, *samples, *model;
    int no_reference;
    int ndtm, refine;   /* fiberlab ndtm [--refine] */
} flags;

static int own(void *ctx, int argc, char **argv, int i)
{
    flags *f = ctx;
    if (strcmp(argv[i], "--no-reference") == 0) {
        f->no_reference = 1;
        return 1;
    }
    if (f->ndtm) {
        if (strcmp(argv[i], "--refine") != 0) return 0;
        f->refine = 1;
        return 1;
    }
    const char **slot = strcmp(argv[i], "--sampler") == 0   ? &f->sampler
                        : strcmp(argv[i], "--samples") == 0 ? &f->samples
                        : strcmp(argv[i], "--model") == 0   ? &f->model
                                                            : NULL;
    if (!slot) return 0;
    if (i + 1 >= argc) {
        cli_fail(EVAL, "%s needs a %s", argv[i], slot == &f->sampler ? "name" : "file");
        return -1;
    }
    *slot = argv[i + 1];
    return 2;
}

static void print_line(const fl_eval_result *r)
{
    char f[96], rel[96], d[96], kl[96], w1[96];
    printf("%-26s %7lld  %-26s %8.4f  %-22s %-26s %-26s %-26s %5.1f%%\n", r->name,
           (long long)r->n_samples, fl_ci_format(&r->ci.fiber, 4, f, sizeof f), r->fiber_median,
           fl_ci_format(&r->ci.rel, 3, rel, sizeof rel), fl_ci_format(&r->ci.dfib, 4, d, sizeof d),
           fl_ci_format(&r->ci.kl, 4, kl, sizeof kl), fl_ci_format(&r->ci.w1, 4, w1, sizeof w1),
           100 * r->tail_share);
    printf("%-26s %7s  KL R/G/B %.4f/%.4f/%.4f  W1 R/G/B %.4f/%.4f/%.4f  fiber loss std %.4f\n", "", "",
           r->color.kl[0], r->color.kl[1], r->color.kl[2], r->color.w1[0], r->color.w1[1],
           r->color.w1[2], r->fiber_std);
}

static int write_root(fl_h5w *w, const fl_config *c, const fl_subject *s, const fl_vae *v,
                      const fl_prior *prior, const flags *f)
{
    char *json = fl_config_json(c, NULL, 0);
    const fl_subject_report *r = fl_subject_report_of(s);
    int rc = !json || fl_h5w_attr_str(w, "/", "config", json) ||
             fl_h5w_attr_str(w, "/", "fiberlab_version", FL_VERSION) ||
             fl_h5w_attr_str(w, "/", "fiberlab_commit", FL_COMMIT) ||
             fl_h5w_attr_str(w, "/", "source", f->sampler ? "sampler" : f->model ? "model" : "samples_file") ||
             (f->ndtm && fl_h5w_attr_str(w, "/", "ndtm_refine", f->refine ? "true" : "false")) ||
             (prior && (fl_h5w_attr_str(w, "/", "prior_path", fl_prior_path(prior)) ||
                        fl_h5w_attr_f64(w, "/", "prior_kl_mean", fl_prior_report_of(prior)->color.kl_mean) ||
                        fl_h5w_attr_f64(w, "/", "prior_w1_mean", fl_prior_report_of(prior)->color.w1_mean))) ||
             fl_h5w_attr_str(w, "/", f->sampler ? "sampler" : f->model ? "model" : "samples_file",
                             f->sampler ? f->sampler : f->model ? f->model : f->samples) ||
             fl_h5w_attr_str(w, "/", "subject", fl_subject_name(s)) ||
             fl_h5w_attr_i64(w, "/", "subject_dim", fl_subject_dim(s)) ||
             fl_h5w_attr_str(w, "/", "subject_path", fl_subject_path(s)) ||
             fl_h5w_attr_f64(w, "/", "subject_recon_rmse", r->recon_rmse) ||
             fl_h5w_attr_f64(w, "/", "subject_recon_fiber", r->recon_fiber) ||
             fl_h5w_attr_f64(w, "/", "subject_other_fiber", r->other_fiber) ||
             fl_h5w_attr_f64(w, "/", "subject_accuracy", r->accuracy) ||
             (v && (fl_h5w_attr_str(w, "/", "vae_path", fl_vae_path(v)) ||
                    fl_h5w_attr_f64(w, "/", "vae_recon_rmse", fl_vae_report_of(v)->recon_rmse)));
    free(json);
    return rc ? -1 : 0;
}

/* fiberlab eval, and fiberlab ndtm (ndtm = 1): the same protocol on NDTM's sampler. */
static int eval_main(const char *cmd, int argc, char **argv, int ndtm)
{
    const char *CMD = cmd;
    if (cli_wants_help(argc, argv)) {
        ndtm ? usage_ndtm() : usage();
        return 0;
    }
    cli_opts o;
    flags f = {NULL, NULL, NULL, 0, ndtm, 0};
    if (cli_opts_parse(CMD, argc, argv, &o, own, &f)) return 1;
    if (ndtm) f.sampler = "ndtm";
    else if ((f.sampler != NULL) + (f.samples != NULL) + (f.model != NULL) != 1)
        return cli_fail(CMD, "give one of --sampler NAME, --samples FILE or --model FILE");
    fl_fiber *model = NULL;
    fl_config *c = NULL;
    if (f.model) {
        if (o.config) return cli_fail(CMD, "--model: the settings come from the model file; no --config");
        fl_config *saved = NULL;
        if (!(model = fl_fiber_open_saved(f.model, &saved, NULL))) return cli_fail(CMD, "%s", fl_error());
        c = cli_opts_config_over(CMD, &o, saved, true);
    } else {
        c = cli_opts_config(CMD, &o);
    }
    if (!c) {
        fl_fiber_free(model);
        return 1;
    }
    fl_h5w *w = NULL;
    fl_dataset *ds = NULL;
    fl_subject *subj = NULL;
    fl_vae *vae = NULL;
    fl_prior *prior = NULL;
    fl_sampler smp = {0};
    fl_eval_result res = {0};
    fl_reference ref = {0};
    int64_t *index = NULL, n = 0;
    float *samples = NULL;
    int rc = 1;
    double t0 = fl_now();
    /* everything a user can get wrong is checked before anything is trained */
    fl_ndtm_opts no;
    if (ndtm && (fl_prior_check(c) || fl_ndtm_opts_from_config(c, (int)fl_cfg_int(c, "prior.T"), &no))) goto fail;
    if (ndtm && f.refine) no.refine_steps = (int)fl_cfg_int(c, "ndtm.refine_steps");
    if (!ndtm && f.sampler && fl_sampler_builtin(f.sampler, c, NULL, NULL, &smp) &&
        !strstr(fl_error(), "needs the VAE"))
        goto fail;
    fl_sampler_free(&smp);
    if (o.out && !(w = fl_h5w_create(o.out))) goto fail;
    if (fl_dataset_open(c, &ds)) goto fail;
    if (f.samples &&
        fl_eval_read_samples(f.samples, fl_dataset_count(ds, FL_TEST), &index, &samples, &n))
        goto fail;
    if (fl_subject_open(c, ds, &subj)) goto fail;
    bool need_vae = ndtm || (f.sampler && strncmp(f.sampler, "vae-", 4) == 0) ||
                    (model && fl_fiber_family(model)->space == FL_SPACE_LATENT);
    char vae_path[4096];
    if (fl_vae_cache_path(c, vae_path, sizeof vae_path)) goto fail;
    if (need_vae || (!f.no_reference && access(vae_path, F_OK) == 0)) {
        if (fl_vae_open(c, ds, &vae)) goto fail;
    } else if (!f.no_reference) {
        fl_info("no trained VAE in the cache (fiberlab train-vae): the VAE reference lines are left out");
    }
    if (ndtm) {
        if (fl_prior_open(c, ds, vae, &prior)) goto fail;
        const fl_prior_report *pr = fl_prior_report_of(prior);
        if (!pr->measured)
            printf("prior %s: the user's TorchScript prior; its own samples: not measured "
                   "(fiberlab train-prior prior.script=… measures them)\n", fl_prior_path(prior));
        else
            printf("prior %s: %s, %lld steps in %.1f s; its own samples: KL %.4f, W1 %.4f\n",
                   fl_prior_path(prior), pr->trained ? "trained" : "reused", (long long)pr->steps,
                   pr->train_seconds, pr->color.kl_mean, pr->color.w1_mean);
        fl_ndtm_prior np = fl_ndtm_prior_of(prior);
        if (fl_ndtm_sampler(&np, subj, &no, &smp) || fl_evaluate(c, ds, subj, &smp, &res)) goto fail;
    } else if (f.sampler) {
        if (fl_sampler_builtin(f.sampler, c, ds, vae, &smp) || fl_evaluate(c, ds, subj, &smp, &res))
            goto fail;
    } else if (model) {
        fl_sample_opts so = fl_sample_opts_eval(c);
        fl_fiber_sampler(model, vae, &so, &smp);
        if (fl_evaluate(c, ds, subj, &smp, &res)) goto fail;
    } else if (fl_eval_samples(c, ds, subj, f.samples, index, samples, n, &res)) {
        goto fail;
    }
    if (!f.no_reference && fl_reference_lines(c, ds, subj, vae, &ref)) goto fail;
    const fl_eval_result *nn = fl_reference_find(&ref, "nearest_neighbour");
    /* a samples file may hold other targets than the line's: then no relative loss */
    if (nn && fl_eval_relate(c, &res, nn)) {
        if (!f.samples) goto fail;
        fl_warn("%s; the relative fiber loss is left out", fl_error());
        if (fl_eval_relate(c, &res, NULL)) goto fail;
    }

    printf("subject %s (d = %d), %lld targets, color law: the paper's; KL on %d bins\n",
           fl_subject_name(subj), fl_subject_dim(subj), (long long)res.n_targets, res.kl_bins);
    printf("mean [%.0f%% bootstrap interval over the targets, %d resamples]; relative: ÷ the "
           "nearest-neighbour line; d_fib: RMS pixel distance to the true fiber%s; tail: fiber loss > %g\n",
           100 * res.ci_level, res.n_boot, res.has_dfib ? "" : " (n/a: this subject's fiber is not known in closed form)",
           res.tail_loss);
    printf("%-26s %7s  %-26s %8s  %-22s %-26s %-26s %-26s %6s\n", "line", "samples", "fiber loss",
           "median", "relative", "d_fib", "mean KL", "mean W1", "tail");
    print_line(&res);
    for (int i = 0; i < ref.n; i++) print_line(&ref.line[i]);
    printf("time: sampling %.2f s, scoring %.2f s + metrics %.2f s (%.0f samples/s)\n",
           res.t_sample, res.t_score, res.t_metrics, fl_eval_throughput(&res));
    if (nn)
        printf("      nearest neighbour: %.2f s (encoding %lld training images %.2f s)\n",
               nn->t_setup + nn->t_sample + nn->t_score + nn->t_metrics,
               (long long)fl_dataset_count(ds, FL_TRAIN), nn->t_setup);
    if (w) {
        if (write_root(w, c, subj, vae, prior, &f) || fl_eval_write(w, "eval", &res) ||
            fl_reference_write(w, "reference", &ref) ||
            fl_h5w_attr_f64(w, "/", "seconds", fl_now() - t0))
            goto fail;
        int crc = fl_h5w_commit(w);
        w = NULL;
        if (crc) goto fail;
        printf("wrote %s\n", o.out);
    }
    rc = 0;
    goto done;
fail:
    rc = cli_fail(CMD, "%s", fl_error());
done:
    fl_h5w_abort(w);
    fl_reference_free(&ref);
    fl_eval_result_free(&res);
    fl_sampler_free(&smp);
    fl_fiber_free(model);
    fl_prior_free(prior);
    fl_vae_free(vae);
    fl_subject_free(subj);
    fl_dataset_free(ds);
    free(index);
    free(samples);
    fl_config_free(c);
    return rc;
}

int cmd_eval(int argc, char **argv) { return eval_main("eval", argc, argv, 0); }
int cmd_ndtm(int argc, char **argv) { return eval_main("ndtm", argc, argv, 1); }
