/* The evaluation protocol (DESIGN.md §5, docs/evaluation.md). Targets are N
 * (eval.n_targets) test images x̃* spread evenly over the test split (target t is test
 * image ⌊t · n_test / N⌋: the split is stored class by class); a sampler draws K
 * (eval.samples_per_target) samples for each; every sample is scored with
 *   fidelity     its fiber loss against z* = f(x̃*) (mean ± std over all samples, and
 *                the mean per target),
 *   consistency  its estimated background color ĉ = b̂ (left column), and over all
 *                samples the per-channel 100-bin KL(q ‖ p) and W1 against the exact law,
 *   beyond the paper (DESIGN.md §5)
 *                the relative fiber loss (÷ the nearest-neighbour line on the same
 *                targets), the exact pixel distance d_fib to the true fiber (subjects
 *                whose fiber is the recolorings of the digit; else not applicable) and
 *                the share of samples in the tail (fiber loss above eval.tail_loss),
 *                every mean with a 95% bootstrap interval over the targets.
 * Reference lines (computed once, reused by a sweep) score fixed "samplers" the same
 * way: the nearest training image in representation space, the augmented target
 * (small shifts and rotations), the VAE's reconstruction (the floor of every latent
 * fiber model) and unconditional VAE samples (the random ceiling).
 * Samples from elsewhere (a model trained in Python) are scored by fl_eval_samples. */
#ifndef FL_EVAL_H
#define FL_EVAL_H

#include <stdint.h>

#include "core/config.h"
#include "core/h5.h"
#include "core/metrics.h"
#include "core/stats.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "trainers/sampler.h"
#include "trainers/subject.h"
#include "trainers/vae.h"


/* Built-in oracle samplers, for checking the metrics and for reference:
 *   exact        colorize(x*, c) with c drawn from the exact law (the ideal fiber model);
 *   wrong-law    colorize(x*, c) with c uniform on [0, 1) (right fiber, wrong colors);
 *   wrong-digit  a random training digit, colored from the exact law (off the fiber);
 *   vae-recon    the VAE's reconstruction of x*, k times (needs vae);
 *   vae-prior    unconditional VAE samples (needs vae);
 *   augment      x* shifted and rotated a little (eval.aug_shift, eval.aug_rotation),
 *                keeping its colors. */
#define FL_BUILTIN_SAMPLERS "exact|wrong-law|wrong-digit|vae-recon|vae-prior|augment"
/* ds and vae are borrowed and must outlive the sampler. -1 and a message on an unknown
 * name or a missing VAE. */
int fl_sampler_builtin(const char *name, const fl_config *c, const fl_dataset *ds,
                       fl_vae *vae, fl_sampler *out);

/* The scores of one set of samples. Arrays are malloc'd and owned by the result. */
typedef struct {
    char name[64];
    int64_t n_targets, n_samples;
    int k;                      /* samples per target when all targets have the same
                                   number, else 0 */
    int64_t *target_index;      /* (n_targets) positions of the targets in the test split */
    float *target_loss;         /* (n_targets) mean fiber loss of each target's samples */
    int64_t *sample_target;     /* (n_samples) test-split position of each sample's target */
    float *loss;                /* (n_samples) fiber loss of each sample */
    float *colors;              /* (n_samples, 3) estimated colors b̂ (R, G, B) */
    double fiber_mean, fiber_std;   /* over all samples (std with ddof 0) */
    double fiber_median;            /* over all samples: the typical sample, past a tail */
    fl_color_metrics color;     /* KL and W1 per channel and their means */
    int kl_bins;
    /* beyond the paper (DESIGN.md §5) */
    bool has_dfib;              /* the subject's fiber is the recolorings (else d_fib NaN) */
    float *dfib;                /* (n_samples) exact pixel RMS distance to the true fiber */
    float *fit_colors;          /* (n_samples, 3) the colors c of the nearest fiber point */
    double dfib_mean;           /* NaN when not applicable */
    double tail_loss;           /* eval.tail_loss */
    double tail_share;          /* share of samples with fiber loss > tail_loss */
    float *rel_loss;            /* (n_samples) loss ÷ the nearest-neighbour loss of the same
                                   target; NULL until fl_eval_relate */
    double nn_mean;             /* the nearest-neighbour line's mean on these targets
                                   (each target weighted by its samples); NaN until related */
    double rel_mean;            /* fiber_mean / nn_mean: the relative fiber loss */
    /* 95% (eval.ci_level) percentile-bootstrap intervals over the targets (eval.bootstrap
     * resamples; NaN bounds with 0): .mean is the point estimate above */
    struct {
        fl_ci fiber, rel, dfib, kl, w1, tail;
    } ci;
    int n_boot;
    double ci_level;
    int64_t n_stored;           /* samples kept: those of eval.store_samples targets spread over all */
    float *samples;             /* (n_stored, 3, 28, 28) */
    int64_t *stored_target;     /* (n_stored) test-split positions */
    double t_setup;             /* seconds before sampling (e.g. encoding the training set) */
    double t_sample;            /* seconds in the sampler */
    double t_score;             /* seconds in the subject, the fiber loss and the colors */
    double t_metrics;           /* seconds computing KL and W1 */
} fl_eval_result;
void fl_eval_result_free(fl_eval_result *r);   /* frees the arrays; NULL is a no-op */
/* Samples scored per second: n_samples / (t_score + t_metrics). */
double fl_eval_throughput(const fl_eval_result *r);

/* The test-split positions of the n evaluation targets: ⌊t · n_test / n⌋, t < n (all
 * of the split, in order, when n = n_test). */
void fl_eval_targets(const fl_config *c, const fl_dataset *ds, int64_t *index, int64_t n);

/* Runs sampler s on the targets of c (eval.n_targets, eval.samples_per_target) and
 * scores the samples with subj. -1 and a message on failure (res is then empty). */
int fl_evaluate(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_sampler *s,
                fl_eval_result *res);
/* The same with k samples per target instead of eval.samples_per_target. */
int fl_evaluate_k(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_sampler *s,
                  int k, fl_eval_result *res);

/* Scores n samples (n, 3, 28, 28) in [0, 1] whose targets are the test images at
 * target_index (n) — samples made elsewhere. The targets of the result are the
 * distinct indices in order of first appearance. */
int fl_eval_samples(const fl_config *c, const fl_dataset *ds, fl_subject *subj, const char *name,
                    const int64_t *target_index, const float *samples, int64_t n,
                    fl_eval_result *res);
/* Reads a samples file (docs/evaluation.md): datasets target_index (n,) int64 into the
 * test split of n_test images and samples (n, 3, 28, 28) float32 in [0, 1]. *index and
 * *samples are malloc'd (caller frees). -1 and "FILE: what is wrong" on a missing
 * dataset, a wrong shape, an index out of range or values outside [0, 1]. */
int fl_eval_read_samples(const char *path, int64_t n_test, int64_t **index, float **samples,
                         int64_t *n);

/* Relates r to the nearest-neighbour line nn on the same targets (matched by test
 * index; NULL: no line, the relative loss stays NaN): per-sample relative losses, the
 * relative fiber loss, and the bootstrap intervals of every mean (recomputed, so that
 * the relative loss is resampled together with the rest). fl_evaluate calls it with
 * nn = NULL. -1 and a message when nn lacks a target of r or out of memory. */
int fl_eval_relate(const fl_config *c, fl_eval_result *r, const fl_eval_result *nn);

/* Reads the per-target part of a result written by fl_eval_write (name, targets, their
 * losses, the mean): enough to relate other results to a stored reference line. */
int fl_eval_read_targets(const char *path, const char *group, fl_eval_result *r);

/* Writes r under group (docs/evaluation.md has the layout). */
int fl_eval_write(fl_h5w *w, const char *group, const fl_eval_result *r);

/* The reference lines for the targets of c. */
#define FL_MAX_LINES 8
typedef struct {
    int n;
    fl_eval_result line[FL_MAX_LINES];   /* nearest_neighbour, augmented, [vae_recon, vae_prior] */
} fl_reference;
/* vae may be NULL: then the two VAE lines are left out. */
int fl_reference_lines(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_vae *vae,
                       fl_reference *out);
/* The nearest-neighbour line alone: the training image (the first eval.nn_train, 0 =
 * all) whose representation is closest to z* in L2, one per target. */
int fl_reference_nearest(const fl_config *c, const fl_dataset *ds, fl_subject *subj,
                         fl_eval_result *res);
/* Writes each line under group/<name>. */
int fl_reference_write(fl_h5w *w, const char *group, const fl_reference *r);
void fl_reference_free(fl_reference *r);
/* The line named name, or NULL. */
const fl_eval_result *fl_reference_find(const fl_reference *r, const char *name);

extern const fl_key fl_keys_eval[];

#endif
