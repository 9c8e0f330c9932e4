/* Evaluation throughput: samples scored per second (the subject's forward pass, the
 * fiber loss, the color estimate, then KL and W1 over all samples) with the exact
 * sampler, and the time of the nearest-neighbour reference line for 1,000 targets
 * against the whole training set (encoding the training set + the search + scoring).
 * Uses the default config's dataset and subject (trained into the cache first when
 * missing: run `fiberlab train-subject` beforehand to time only the evaluation).
 *   bench_eval [--threads N] [--targets N] [--k K] [key=value ...] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/eval.h"
#include "core/blas.h"
#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "trainers/subject.h"

static void die(const char *what)
{
    fprintf(stderr, "bench_eval: %s: %s\n", what, fl_error());
    exit(1);
}

int main(int argc, char **argv)
{
    fl_runtime_init(argv);
    int threads = 2, targets = 1000, k = 10;
    fl_config *c = fl_config_default();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--targets") == 0 && i + 1 < argc) targets = atoi(argv[++i]);
        else if (strcmp(argv[i], "--k") == 0 && i + 1 < argc) k = atoi(argv[++i]);
        else if (strchr(argv[i], '=') && fl_config_override(c, argv[i]) == 0) continue;
        else {
            fprintf(stderr, "usage: bench_eval [--threads N] [--targets N] [--k K] [key=value ...]\n");
            return 2;
        }
    }
    fl_threads_set(threads, FL_WORK_CONV); /* as the fiberlab command does */
    char kv[64];
    snprintf(kv, sizeof kv, "eval.n_targets=%d", targets);
    fl_config_override(c, kv);
    snprintf(kv, sizeof kv, "eval.samples_per_target=%d", k);
    fl_config_override(c, kv);
    fl_dataset *ds;
    fl_subject *s;
    if (fl_dataset_open(c, &ds)) die("dataset");
    if (fl_subject_open(c, ds, &s)) die("subject");
    printf("evaluation, subject %s (d = %d), %d threads, BLAS kernel %s\n", fl_subject_name(s),
           fl_subject_dim(s), threads, fl_blas_corename() ? fl_blas_corename() : "?");

    /* the exact sampler: check the result, then report its timing */
    fl_sampler smp;
    fl_eval_result r;
    if (fl_sampler_builtin("exact", c, ds, NULL, &smp) || fl_evaluate(c, ds, s, &smp, &r)) die("exact");
    double scale = fl_subject_report_of(s)->other_fiber;
    if (!(r.fiber_mean < 1e-3 * (isfinite(scale) ? scale : 1.0))) {
        fprintf(stderr, "bench_eval: the exact sampler scores a fiber loss of %g: wrong result\n", r.fiber_mean);
        return 1;
    }
    printf("exact sampler   %lld targets x %d = %lld samples: fiber loss %.2e, KL mean %.4f, W1 mean %.4f\n",
           (long long)r.n_targets, k, (long long)r.n_samples, r.fiber_mean, r.color.kl_mean,
           r.color.w1_mean);
    printf("  scoring       %.3f s (subject + fiber loss + colors) + %.3f s (KL, W1)  ->  %.0f samples/s\n",
           r.t_score, r.t_metrics, fl_eval_throughput(&r));
    printf("  (sampling %.3f s, targets' representations %.3f s)\n", r.t_sample, r.t_setup);
    fl_eval_result_free(&r);
    fl_sampler_free(&smp);

    /* the nearest-neighbour line */
    fl_eval_result nn;
    double t0 = fl_now();
    if (fl_reference_nearest(c, ds, s, &nn)) die("nearest neighbour");
    double total = fl_now() - t0;
    printf("nearest neighbour  %lld targets against %lld training images: %.3f s in all\n",
           (long long)nn.n_targets, (long long)fl_dataset_count(ds, FL_TRAIN), total);
    printf("  encoding the training set and the targets %.3f s, search %.3f s, scoring %.3f s, metrics %.3f s\n",
           nn.t_setup, nn.t_sample, nn.t_score, nn.t_metrics);
    printf("  fiber loss of the nearest neighbours %.4f ± %.4f\n", nn.fiber_mean, nn.fiber_std);
    fl_eval_result_free(&nn);
    fl_subject_free(s);
    fl_dataset_free(ds);
    fl_config_free(c);
    return 0;
}
