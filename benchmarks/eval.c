/* The evaluation protocol: built-in samplers, scoring, reference lines, the samples
 * file and the HDF5 layout (docs/evaluation.md). */
#include "benchmarks/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/colorlaw.h"
#include "core/fiber.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/schema.h"
#include "datasets/batch.h"
#include "datasets/colormnist.h"

const fl_key fl_keys_eval[] = {
    {"eval.n_targets", FL_KEY_INT, "1000", 1, 1e9, NULL,
     "Evaluation targets: N test images spread evenly over the test split (target t is test "
     "image floor(t · n_test / N); all of them when the split is smaller)."},
    {"eval.samples_per_target", FL_KEY_INT, "10", 1, 1e6, NULL, "Samples K drawn for each target."},
    {"eval.steps", FL_KEY_INT, "0", 0, 1e6, NULL,
     "Solver steps of an iterative family's evaluation sampler (diffusion, flow matching); "
     "0: the family's own default. One-shot samplers (NF) ignore it."},
    {"eval.temperature", FL_KEY_NUM, "1", 0, 10, NULL,
     "Scale of a fiber model's base noise when sampling for the evaluation (1: the trained "
     "distribution)."},
    {"eval.kl_bins", FL_KEY_INT, "100", 2, 1e6, NULL,
     "Bins on [0, 1) of the per-channel color histograms of the KL metric."},
    {"eval.batch_size", FL_KEY_INT, "500", 1, 1e7, NULL,
     "Samples drawn and scored together (memory, not results)."},
    {"eval.store_samples", FL_KEY_INT, "16", 0, 1e9, NULL,
     "Targets whose samples are kept in the results (for sample grids), spread evenly over "
     "the targets; 0 keeps none."},
    {"eval.nn_train", FL_KEY_INT, "0", 0, 1e9, NULL,
     "Training images searched by the nearest-neighbour reference line (N spread evenly over "
     "the training split; 0: all)."},
    {"eval.n_aug", FL_KEY_INT, "10", 1, 1e6, NULL,
     "Augmented copies of each target in the augmented-original reference line."},
    {"eval.aug_shift", FL_KEY_NUM, "1", 0, 14, NULL,
     "Largest shift of the augmented originals, in pixels along each axis (uniform)."},
    {"eval.aug_rotation", FL_KEY_NUM, "10", 0, 180, NULL,
     "Largest rotation of the augmented originals, in degrees (uniform)."},
    {"eval.n_random", FL_KEY_INT, "10", 1, 1e6, NULL,
     "Unconditional VAE samples per target in the random reference line."},
    {"eval.bootstrap", FL_KEY_INT, "1000", 0, 1e6, NULL,
     "Bootstrap resamples of the targets behind every reported interval of a run (0: means "
     "without intervals)."},
    {"eval.ci_level", FL_KEY_NUM, "0.95", 0.5, 0.999, NULL,
     "Level of the confidence intervals: the bootstrap's within a run, Student-t's over seeds."},
    {"eval.tail_loss", FL_KEY_NUM, "5", 0, 1e9, NULL,
     "Fiber loss above which a sample counts in the reported tail share (far-off samples)."},
    FL_KEYS_END,
};

void fl_eval_result_free(fl_eval_result *r)
{
    if (!r) return;
    free(r->target_index);
    free(r->target_loss);
    free(r->sample_target);
    free(r->loss);
    free(r->colors);
    free(r->samples);
    free(r->stored_target);
    free(r->dfib);
    free(r->fit_colors);
    free(r->rel_loss);
    memset(r, 0, sizeof *r);
}

double fl_eval_throughput(const fl_eval_result *r)
{
    double t = r->t_score + r->t_metrics;
    return t > 0 ? (double)r->n_samples / t : NAN;
}

/* A seed for a ct_gen or an fl_rng from the run's seed, one stream per use. */
static uint64_t stream_seed(const fl_config *c, uint64_t stream)
{
    fl_rng r;
    fl_rng_seed_stream(&r, (uint64_t)fl_cfg_int(c, "seed"), stream);
    return fl_rng_u64(&r);
}

/* ---- built-in samplers ------------------------------------------------------------ */

typedef enum { S_EXACT = 0, S_WRONG_LAW, S_WRONG_DIGIT, S_VAE_RECON, S_VAE_PRIOR, S_AUGMENT, S_COUNT } builtin_kind;
static const char *builtin_names[] = {"exact", "wrong-law", "wrong-digit", "vae-recon", "vae-prior", "augment"};

typedef struct {
    builtin_kind kind;
    const fl_dataset *ds;
    fl_vae *vae;
    fl_colorlaw law;
    double shift, rotation;   /* augment: pixels, degrees */
} builtin;

/* An fl_rng seeded from g, so the evaluation's generator decides the colors too. */
static void rng_from_gen(ct_gen *g, fl_rng *r)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_randint((int64_t)1 << 62, CT_SHAPE(1), g);
    int64_t v = 0;
    ct_to_data(t, &v, sizeof v);
    ct_scope_end(s);
    fl_rng_seed(r, (uint64_t)v);
}

/* Colors of n images: the exact law (correlated foreground) or uniform. */
static void draw_colors(const fl_colorlaw *law, bool uniform, fl_rng *r, int64_t n, float *bg,
                        float *fg)
{
    if (!uniform) {
        fl_draw_colors(FL_VARIANT_CORRELATED, law, NULL, r, n, bg, fg);
        return;
    }
    for (int64_t i = 0; i < 3 * n; i++) {
        float b = (float)fl_rng_uniform(r);
        bg[i] = b < 1.0f ? b : 0.0f;
        fg[i] = (float)fl_color_fg(bg[i]);
    }
}

/* gray (m, 1, 28, 28) colored with m fresh colors. */
static ct_tensor *recolor(const builtin *b, const ct_tensor *gray, bool uniform, ct_gen *g)
{
    int64_t m = ct_size(gray, 0);
    float *bg = malloc((size_t)m * 3 * sizeof *bg), *fg = malloc((size_t)m * 3 * sizeof *fg);
    ct_tensor *x = NULL;
    if (bg && fg) {
        fl_rng r;
        rng_from_gen(g, &r);
        draw_colors(&b->law, uniform, &r, m, bg, fg);
        ct_tensor *tb = ct_from_data(bg, CT_SHAPE(m, 3), CT_F32);              /* (m, 3) */
        ct_tensor *tf = ct_from_data(fg, CT_SHAPE(m, 3), CT_F32);              /* (m, 3) */
        x = fl_colorize(gray, ct_to_dtype(tb, ct_dtype_of(gray)), ct_to_dtype(tf, ct_dtype_of(gray)));
    } else {
        ct_set_error("out of memory");
    }
    free(bg);
    free(fg);
    return x;                                                                  /* (m, 3, 28, 28) */
}

/* Random training digits (m, 1, 28, 28). */
static ct_tensor *random_train_digits(const builtin *b, int64_t m, ct_gen *g)
{
    int64_t n = fl_dataset_count(b->ds, FL_TRAIN);
    if (n <= 0) {
        ct_set_error("wrong-digit: the dataset has no training images");
        return NULL;
    }
    int h = fl_dataset_height(b->ds), w = fl_dataset_width(b->ds);
    ct_tensor *all = ct_from_data(fl_dataset_gray(b->ds, FL_TRAIN), CT_SHAPE(n, 1, h, w), CT_F32);
    ct_tensor *idx = ct_randint(n, CT_SHAPE(m), g);                            /* (m,) */
    return ct_index_select(all, 0, idx);                                       /* (m, 1, h, w) */
}

/* Small random shifts and rotations of gray images (m, 1, H, W), zeros (blank) outside. */
static ct_tensor *augment_gray(const builtin *b, const ct_tensor *gray, ct_gen *g)
{
    int64_t m = ct_size(gray, 0);
    double H = (double)ct_size(gray, 2), W = (double)ct_size(gray, 3);
    ct_tensor *u = ct_rand(CT_SHAPE(m, 3), CT_F64, g);                         /* (m, 3) */
    double *v = malloc((size_t)m * 3 * sizeof *v), *theta = malloc((size_t)m * 6 * sizeof *theta);
    ct_tensor *out = NULL;
    if (v && theta && !ct_to_data(u, v, (size_t)m * 3 * sizeof *v)) {
        for (int64_t i = 0; i < m; i++) {
            double a = (2 * v[3 * i] - 1) * b->rotation * M_PI / 180.0;
            double tx = (2 * v[3 * i + 1] - 1) * b->shift, ty = (2 * v[3 * i + 2] - 1) * b->shift;
            /* affine_grid maps output to input coordinates in [-1, 1]: one pixel is 2/W */
            double *t = theta + 6 * i;
            t[0] = cos(a), t[1] = -sin(a), t[2] = 2 * tx / W;
            t[3] = sin(a), t[4] = cos(a), t[5] = 2 * ty / H;
        }
        ct_tensor *th = ct_from_data(theta, CT_SHAPE(m, 2, 3), CT_F64);        /* (m, 2, 3) */
        out = ct_affine_warp(gray, ct_to_dtype(th, ct_dtype_of(gray)));        /* (m, 1, H, W) */
    } else if (u) {
        ct_set_error("out of memory");
    }
    free(v);
    free(theta);
    return out;
}

static ct_tensor *builtin_sample(void *ctx, const ct_tensor *x, const ct_tensor *z, int k, ct_gen *g)
{
    builtin *b = ctx;
    int64_t n = ct_size(x, 0), m = n * k;
    ct_scope *s = ct_scope_begin();
    ct_tensor *out = NULL;
    switch (b->kind) {
    case S_EXACT:
    case S_WRONG_LAW: {
        ct_tensor *gray = ct_repeat_interleave(fl_decolorize(x), k, 0);       /* (m, 1, 28, 28) */
        out = recolor(b, gray, b->kind == S_WRONG_LAW, g);                     /* (m, 3, 28, 28) */
        break;
    }
    case S_WRONG_DIGIT:
        out = recolor(b, random_train_digits(b, m, g), false, g);              /* (m, 3, 28, 28) */
        break;
    case S_VAE_RECON:
        out = ct_repeat_interleave(fl_vae_reconstruct(b->vae, x), k, 0);      /* (m, 3, 28, 28) */
        break;
    case S_VAE_PRIOR:
        out = fl_vae_sample_prior(b->vae, m, g);                               /* (m, 3, 28, 28) */
        break;
    case S_AUGMENT: {
        ct_tensor *bg = ct_repeat_interleave(fl_background(x), k, 0);        /* (m, 3) */
        ct_tensor *gray = ct_repeat_interleave(fl_decolorize(x), k, 0);      /* (m, 1, 28, 28) */
        out = fl_colorize(augment_gray(b, gray, g), bg, fl_color_fg_t(bg));   /* (m, 3, 28, 28) */
        break;
    }
    default: break;
    }
    out = ct_scope_keep(s, out);
    ct_scope_end(s);
    return out;
}

int fl_sampler_builtin(const char *name, const fl_config *c, const fl_dataset *ds, fl_vae *vae,
                       fl_sampler *out)
{
    memset(out, 0, sizeof *out);
    int kind = -1;
    for (int i = 0; i < S_COUNT; i++)
        if (strcmp(name, builtin_names[i]) == 0) kind = i;
    if (kind < 0) return fl_fail("unknown sampler '%s' (expected %s)", name, FL_BUILTIN_SAMPLERS);
    if ((kind == S_VAE_RECON || kind == S_VAE_PRIOR) && !vae)
        return fl_fail("sampler %s: needs the VAE", name);
    builtin *b = calloc(1, sizeof *b);
    if (!b) return fl_fail("out of memory");
    b->kind = (builtin_kind)kind;
    b->ds = ds;
    b->vae = vae;
    b->law = fl_colorlaw_paper();
    b->shift = fl_cfg_num(c, "eval.aug_shift");
    b->rotation = fl_cfg_num(c, "eval.aug_rotation");
    out->name = builtin_names[kind];
    out->ctx = b;
    out->sample = builtin_sample;
    out->free_ctx = free;
    return 0;
}

/* ---- scoring -------------------------------------------------------------------------- */

/* Result arrays for n_targets targets and n samples, n_stored of them kept. */
static int result_alloc(fl_eval_result *r, const char *name, int64_t n_targets, int64_t n,
                        int64_t n_stored)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->n_targets = n_targets;
    r->n_samples = n;
    r->n_stored = n_stored;
    r->target_index = malloc((size_t)(n_targets ? n_targets : 1) * sizeof *r->target_index);
    r->target_loss = malloc((size_t)(n_targets ? n_targets : 1) * sizeof *r->target_loss);
    r->sample_target = malloc((size_t)(n ? n : 1) * sizeof *r->sample_target);
    r->loss = malloc((size_t)(n ? n : 1) * sizeof *r->loss);
    r->colors = malloc((size_t)(n ? n : 1) * 3 * sizeof *r->colors);
    r->samples = malloc((size_t)(n_stored ? n_stored : 1) * 3 * 28 * 28 * sizeof *r->samples);
    r->stored_target = malloc((size_t)(n_stored ? n_stored : 1) * sizeof *r->stored_target);
    r->dfib = malloc((size_t)(n ? n : 1) * sizeof *r->dfib);
    r->fit_colors = malloc((size_t)(n ? n : 1) * 3 * sizeof *r->fit_colors);
    r->dfib_mean = r->nn_mean = r->rel_mean = NAN;
    if (!r->target_index || !r->target_loss || !r->sample_target || !r->loss || !r->colors ||
        !r->samples || !r->stored_target || !r->dfib || !r->fit_colors) {
        fl_eval_result_free(r);
        return fl_fail("out of memory for %lld samples", (long long)n);
    }
    return 0;
}

/* Whether d_fib applies: the subject's fiber is the recolorings and the colors follow
 * colorize's law (correlated or fixed; with ood the foreground is another color). */
static bool dfib_applies(const fl_dataset *ds, const fl_subject *subj)
{
    fl_variant v = fl_dataset_spec(ds)->variant;
    return fl_subject_recoloring_fiber(subj) && (v == FL_VARIANT_CORRELATED || v == FL_VARIANT_FIXED);
}

/* The distance of samples m (host, (m, 3, 28, 28)) to the fibers of their targets'
 * digits (r->sample_target from off) into r->dfib and r->fit_colors. */
static void score_dfib(const fl_dataset *ds, const float *img, int64_t m, fl_eval_result *r, int64_t off)
{
    const float *gray = fl_dataset_gray(ds, FL_TEST);
    int h = fl_dataset_height(ds), w = fl_dataset_width(ds);
    size_t px = (size_t)h * (size_t)w;
    for (int64_t j = 0; j < m; j++) {
        double c[3];
        r->dfib[off + j] = (float)fl_fiber_distance_f32(img + (size_t)j * 3 * px,
                                                        gray + (size_t)r->sample_target[off + j] * px, h, w, c);
        for (int k = 0; k < 3; k++) r->fit_colors[3 * (off + j) + k] = (float)c[k];
    }
}

/* Scores samples (m, 3, 28, 28) float32 against their targets' representations z (m, d):
 * fiber losses, colors and (when it applies) d_fib into r at sample offset off. */
static int score(const fl_dataset *ds, fl_subject *subj, const ct_tensor *samples, const ct_tensor *z,
                 fl_eval_result *r, int64_t off)
{
    int64_t m = ct_size(samples, 0);
    ct_scope *s = ct_scope_begin();
    ct_tensor *zh = fl_subject_forward(subj, samples);                     /* (m, d) */
    ct_tensor *l = ct_to_dtype(fl_fiber_loss(zh, z), CT_F32);              /* (m,) */
    ct_tensor *col = ct_to_dtype(fl_background(samples), CT_F32);         /* (m, 3) */
    int rc = 0;
    if (!l || !col || ct_to_data(l, r->loss + off, (size_t)m * sizeof *r->loss) ||
        ct_to_data(col, r->colors + 3 * off, (size_t)m * 3 * sizeof *r->colors))
        rc = fl_fail_ctx("scoring with subject %s", fl_subject_name(subj));
    if (!rc && r->has_dfib) {
        size_t bytes = (size_t)m * 3 * 28 * 28 * sizeof(float);
        float *img = malloc(bytes ? bytes : 1);
        if (!img) rc = fl_fail("out of memory");
        else if (ct_to_data(samples, img, bytes)) rc = fl_fail_ctx("scoring: the samples");
        else score_dfib(ds, img, m, r, off);
        free(img);
    } else if (!rc) {
        for (int64_t j = 0; j < m; j++) {
            r->dfib[off + j] = NAN;
            for (int k = 0; k < 3; k++) r->fit_colors[3 * (off + j) + k] = NAN;
        }
    }
    ct_scope_end(s);
    return rc;
}

/* Target losses (rows of each sample in row[]), the k, fiber statistics and color metrics. */
static int finalize(const fl_config *c, fl_eval_result *r, const int64_t *row)
{
    double t0 = fl_now();
    int64_t *count = calloc((size_t)(r->n_targets ? r->n_targets : 1), sizeof *count);
    double *sum = calloc((size_t)(r->n_targets ? r->n_targets : 1), sizeof *sum);
    if (!count || !sum) {
        free(count);
        free(sum);
        return fl_fail("out of memory");
    }
    for (int64_t i = 0; i < r->n_samples; i++) {
        count[row[i]]++;
        sum[row[i]] += r->loss[i];
    }
    r->k = r->n_targets > 0 ? (int)count[0] : 0;
    for (int64_t t = 0; t < r->n_targets; t++) {
        r->target_loss[t] = count[t] ? (float)(sum[t] / (double)count[t]) : NAN;
        if (count[t] != count[0]) r->k = 0;
    }
    free(count);
    free(sum);
    fl_mean_std(r->loss, r->n_samples, &r->fiber_mean, &r->fiber_std);
    r->fiber_median = fl_median(r->loss, r->n_samples);
    double dstd;
    if (r->has_dfib) fl_mean_std(r->dfib, r->n_samples, &r->dfib_mean, &dstd);
    r->tail_loss = fl_cfg_num(c, "eval.tail_loss");
    int64_t tail = 0;
    for (int64_t i = 0; i < r->n_samples; i++) tail += !(r->loss[i] <= r->tail_loss);   /* NaN counts */
    r->tail_share = r->n_samples ? (double)tail / (double)r->n_samples : NAN;
    fl_colorlaw law = fl_colorlaw_paper();
    r->kl_bins = (int)fl_cfg_int(c, "eval.kl_bins");
    int rc = fl_color_metrics_of(&law, r->colors, r->n_samples, r->kl_bins, &r->color);
    if (!rc) rc = fl_eval_relate(c, r, NULL);
    r->t_metrics = fl_now() - t0;
    if (!isfinite(r->fiber_mean))
        fl_warn("%s: the fiber loss is not finite (a sample or the subject gave NaN or inf)", r->name);
    return rc;
}

void fl_eval_targets(const fl_config *c, const fl_dataset *ds, int64_t *index, int64_t n)
{
    int64_t n_test = fl_dataset_count(ds, FL_TEST);
    (void)c;
    for (int64_t t = 0; t < n; t++) index[t] = t * n_test / n;
}

static int64_t n_targets_of(const fl_config *c, const fl_dataset *ds)
{
    int64_t n = fl_cfg_int(c, "eval.n_targets"), n_test = fl_dataset_count(ds, FL_TEST);
    if (n > n_test) {
        fl_warn("eval.n_targets = %lld but the test split has %lld images: evaluating on all of them",
                (long long)n, (long long)n_test);
        n = n_test;
    }
    return n;
}

/* Position among the N targets of the j-th of n_store targets whose samples are kept. */
static int64_t store_pos(int64_t j, int64_t n_store, int64_t N)
{
    return n_store > 0 ? j * N / n_store : 0;
}

int fl_evaluate_k(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_sampler *s,
                  int k, fl_eval_result *r)
{
    memset(r, 0, sizeof *r);
    int64_t N = n_targets_of(c, ds);
    if (N <= 0) return fl_fail("%s: the test split is empty", fl_dataset_path(ds));
    if (k <= 0) return fl_fail("sampler %s: %d samples per target", s->name, k);
    int64_t n_store = fl_cfg_int(c, "eval.store_samples");
    if (n_store > N) n_store = N;
    if (result_alloc(r, s->name, N, N * k, n_store * k)) return -1;
    r->has_dfib = dfib_applies(ds, subj);
    int64_t *row = malloc((size_t)N * k * sizeof *row);
    if (!row) {
        fl_eval_result_free(r);
        return fl_fail("out of memory");
    }
    fl_eval_targets(c, ds, r->target_index, N);
    for (int64_t j = 0; j < N * k; j++) {
        row[j] = j / k;
        r->sample_target[j] = r->target_index[j / k];
    }
    /* the stored samples belong to targets spread over all of them (the split is stored
     * class by class: the first targets would all show one digit) */
    for (int64_t j = 0; j < n_store * k; j++) r->stored_target[j] = r->target_index[store_pos(j / k, n_store, N)];

    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    ct_gen *g = ct_gen_new(stream_seed(c, 0xe7a1));
    int rc = 0;
    double t0 = fl_now();
    fl_batch tb;
    ct_tensor *xt = NULL, *zt = NULL;
    if (fl_dataset_slice(ds, FL_TEST, 0, fl_dataset_count(ds, FL_TEST), &tb)) rc = -1;
    else {
        ct_tensor *idx = ct_from_data(r->target_index, CT_SHAPE(N), CT_I64);     /* (N,) */
        xt = ct_index_select(tb.colored, 0, idx);                                /* (N, 3, 28, 28) */
        if (!(zt = fl_subject_forward_all(subj, xt, fl_cfg_int(c, "eval.batch_size"))))
            rc = fl_fail_ctx("subject %s on the targets", fl_subject_name(subj));
    }
    r->t_setup += fl_now() - t0;
    int64_t T = fl_cfg_int(c, "eval.batch_size") / k;
    if (T < 1) T = 1;
    for (int64_t i = 0; !rc && i < N; i += T) {
        ct_scope *inner = ct_scope_begin();
        int64_t len = i + T > N ? N - i : T;
        ct_tensor *x = ct_narrow(xt, 0, i, len);                              /* (len, 3, 28, 28) */
        ct_tensor *z = ct_narrow(zt, 0, i, len);                              /* (len, d) */
        double ts = fl_now();
        ct_tensor *smp = s->sample(s->ctx, x, z, k, g);                       /* (len·k, 3, 28, 28) */
        ct_set_grad_enabled(false);   /* whatever the sampler left */
        r->t_sample += fl_now() - ts;
        if (!smp) {
            rc = fl_fail_ctx("sampler %s", s->name);
        } else if (ct_ndim(smp) != 4 || ct_size(smp, 0) != len * k || ct_size(smp, 1) != 3 ||
                   ct_size(smp, 2) != 28 || ct_size(smp, 3) != 28) {
            char d[128];
            ct_describe(smp, d, sizeof d);
            rc = fl_fail("sampler %s: returned %s for %lld targets × %d samples; expected "
                         "(%lld, 3, 28, 28)", s->name, d, (long long)len, k, (long long)(len * k));
        } else {
            if (ct_dtype_of(smp) != CT_F32) smp = ct_to_dtype(smp, CT_F32);
            ts = fl_now();
            rc = score(ds, subj, smp, ct_repeat_interleave(z, k, 0), r, i * k);
            r->t_score += fl_now() - ts;
            for (int64_t j = 0; !rc && j < n_store; j++) {                     /* samples to keep */
                int64_t p = store_pos(j, n_store, N);
                if (p < i || p >= i + len) continue;
                if (ct_to_data(ct_narrow(smp, 0, (p - i) * k, k), r->samples + j * k * 3 * 28 * 28,
                               (size_t)k * 3 * 28 * 28 * sizeof(float)))
                    rc = fl_fail_ctx("sampler %s", s->name);
            }
        }
        ct_scope_end(inner);
    }
    ct_gen_free(g);
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    if (!rc) rc = finalize(c, r, row);
    free(row);
    if (rc) fl_eval_result_free(r);
    return rc;
}

int fl_evaluate(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_sampler *s,
                fl_eval_result *res)
{
    return fl_evaluate_k(c, ds, subj, s, (int)fl_cfg_int(c, "eval.samples_per_target"), res);
}

int fl_eval_samples(const fl_config *c, const fl_dataset *ds, fl_subject *subj, const char *name,
                    const int64_t *target_index, const float *samples, int64_t n,
                    fl_eval_result *r)
{
    memset(r, 0, sizeof *r);
    int64_t n_test = fl_dataset_count(ds, FL_TEST);
    if (n <= 0) return fl_fail("%s: no samples", name);
    /* distinct targets in order of first appearance */
    int64_t *rowof = malloc((size_t)(n_test ? n_test : 1) * sizeof *rowof);
    int64_t *row = malloc((size_t)n * sizeof *row), *distinct = malloc((size_t)n * sizeof *distinct);
    if (!rowof || !row || !distinct) {
        free(rowof);
        free(row);
        free(distinct);
        return fl_fail("out of memory");
    }
    int64_t nt = 0;
    int rc = 0;
    for (int64_t i = 0; i < n_test; i++) rowof[i] = -1;
    for (int64_t j = 0; j < n && !rc; j++) {
        int64_t t = target_index[j];
        if (t < 0 || t >= n_test) {
            rc = fl_fail("%s: target_index[%lld] = %lld is outside the test split [0, %lld)", name,
                         (long long)j, (long long)t, (long long)n_test);
            break;
        }
        if (rowof[t] < 0) {
            rowof[t] = nt;
            distinct[nt++] = t;
        }
        row[j] = rowof[t];
    }
    int64_t n_store_t = fl_cfg_int(c, "eval.store_samples"), n_stored = 0;
    for (int64_t j = 0; j < n && !rc; j++) n_stored += row[j] < n_store_t;
    if (!rc) rc = result_alloc(r, name, nt, n, n_stored);
    if (!rc) {
        r->has_dfib = dfib_applies(ds, subj);
        memcpy(r->target_index, distinct, (size_t)nt * sizeof *distinct);
        memcpy(r->sample_target, target_index, (size_t)n * sizeof *target_index);
        for (int64_t j = 0, s = 0; j < n; j++)
            if (row[j] < n_store_t) {
                memcpy(r->samples + s * 3 * 28 * 28, samples + j * 3 * 28 * 28, 3 * 28 * 28 * sizeof(float));
                r->stored_target[s++] = target_index[j];
            }
    }
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    double t0 = fl_now();
    fl_batch tb;
    ct_tensor *zt = NULL;
    int64_t bs = fl_cfg_int(c, "eval.batch_size");
    if (!rc && fl_dataset_slice(ds, FL_TEST, 0, n_test, &tb)) rc = -1;
    if (!rc) {
        ct_tensor *idx = ct_from_data(distinct, CT_SHAPE(nt), CT_I64);             /* (nt,) */
        zt = fl_subject_forward_all(subj, ct_index_select(tb.colored, 0, idx), bs); /* (nt, d) */
        if (!zt) rc = fl_fail_ctx("subject %s on the targets", fl_subject_name(subj));
    }
    r->t_setup = fl_now() - t0;
    for (int64_t i = 0; !rc && i < n; i += bs) {
        ct_scope *inner = ct_scope_begin();
        int64_t len = i + bs > n ? n - i : bs;
        double ts = fl_now();
        ct_tensor *smp = ct_from_data(samples + i * 3 * 28 * 28, CT_SHAPE(len, 3, 28, 28), CT_F32);
        ct_tensor *rows = ct_from_data(row + i, CT_SHAPE(len), CT_I64);            /* (len,) */
        rc = score(ds, subj, smp, ct_index_select(zt, 0, rows), r, i);
        r->t_score += fl_now() - ts;
        ct_scope_end(inner);
    }
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    if (!rc) rc = finalize(c, r, row);
    free(rowof);
    free(row);
    free(distinct);
    if (rc) fl_eval_result_free(r);
    return rc;
}

/* ---- the samples file -------------------------------------------------------------------- */

int fl_eval_read_samples(const char *path, int64_t n_test, int64_t **index, float **samples,
                         int64_t *n)
{
    *index = NULL;
    *samples = NULL;
    *n = 0;
    fl_h5r *f = fl_h5r_open(path);
    if (!f) return -1;
    int nd_s = 0, nd_i = 0;
    int64_t ds[8] = {0}, di[8] = {0};
    int rc = 0;
    if (!fl_h5r_has(f, "samples"))
        rc = fl_fail("%s: no dataset 'samples' (expected float32 images (n, 3, 28, 28) in [0, 1])", path);
    else if (!fl_h5r_has(f, "target_index"))
        rc = fl_fail("%s: no dataset 'target_index' (expected the test-split index of each sample, "
                     "int64 (n,))", path);
    else if (fl_h5r_dims(f, "samples", &nd_s, ds) || fl_h5r_dims(f, "target_index", &nd_i, di))
        rc = -1;
    else if (nd_s != 4 || ds[1] != 3 || ds[2] != 28 || ds[3] != 28) {
        char shape[128] = "(";
        for (int i = 0; i < nd_s; i++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", i ? ", " : "",
                     (long long)ds[i]);
        rc = fl_fail("%s: 'samples' has shape %s), expected (n, 3, 28, 28)", path, shape);
    } else if (nd_i != 1)
        rc = fl_fail("%s: 'target_index' has %d dimensions, expected 1: (n,)", path, nd_i);
    else if (di[0] != ds[0])
        rc = fl_fail("%s: 'target_index' has %lld entries but 'samples' has %lld images", path,
                     (long long)di[0], (long long)ds[0]);
    else if (!fl_h5r_is_integer(f, "target_index"))
        rc = fl_fail("%s: 'target_index' is not stored as integers (expected int64 indices "
                     "into the test split)", path);
    else if (ds[0] == 0)
        rc = fl_fail("%s: no samples", path);
    int64_t m = ds[0], cnt = 0;
    if (!rc) {
        *index = fl_h5r_read_alloc(f, "target_index", FL_I64, &cnt);
        if (*index) *samples = fl_h5r_read_alloc(f, "samples", FL_F32, &cnt);
        if (!*index || !*samples) rc = -1;
    }
    for (int64_t j = 0; !rc && j < m; j++)
        if ((*index)[j] < 0 || (*index)[j] >= n_test)
            rc = fl_fail("%s: target_index[%lld] = %lld is outside the test split [0, %lld)", path,
                         (long long)j, (long long)(*index)[j], (long long)n_test);
    for (int64_t j = 0; !rc && j < m * 3 * 28 * 28; j++) {
        float v = (*samples)[j];
        if (!(v >= -1e-3f && v <= 1.001f))   /* NaN fails too */
            rc = fl_fail("%s: samples hold %g (image %lld); expected images in [0, 1]", path, v,
                         (long long)(j / (3 * 28 * 28)));
    }
    fl_h5r_close(f);
    if (rc) {
        free(*index);
        free(*samples);
        *index = NULL;
        *samples = NULL;
        return -1;
    }
    *n = m;
    return 0;
}

/* ---- HDF5 ------------------------------------------------------------------------------- */

int fl_eval_write(fl_h5w *w, const char *group, const fl_eval_result *r)
{
    char name[512];
#define DS(nm, type, nd, dims, data)                                                   \
    (snprintf(name, sizeof name, "%s/%s", group, nm), fl_h5w_write(w, name, type, nd, dims, data))
    int64_t nt[1] = {r->n_targets}, ns[1] = {r->n_samples}, nc[2] = {r->n_samples, 3};
    int64_t three[1] = {3}, nst[1] = {r->n_stored}, img[4] = {r->n_stored, 3, 28, 28};
    if (DS("target_index", FL_I64, 1, nt, r->target_index) ||
        DS("target_loss", FL_F32, 1, nt, r->target_loss) ||
        DS("sample_target", FL_I64, 1, ns, r->sample_target) || DS("loss", FL_F32, 1, ns, r->loss) ||
        DS("colors", FL_F32, 2, nc, r->colors) || DS("kl", FL_F64, 1, three, r->color.kl) ||
        DS("w1", FL_F64, 1, three, r->color.w1) || DS("samples", FL_F32, 4, img, r->samples) ||
        DS("samples_target", FL_I64, 1, nst, r->stored_target) ||
        DS("dfib", FL_F32, 1, ns, r->dfib) || DS("fit_colors", FL_F32, 2, nc, r->fit_colors) ||
        (r->rel_loss && DS("relative_loss", FL_F32, 1, ns, r->rel_loss)))
        return -1;
#undef DS
    const struct { const char *name; const fl_ci *ci; } cis[] = {
        {"fiber", &r->ci.fiber}, {"relative", &r->ci.rel}, {"dfib", &r->ci.dfib},
        {"kl", &r->ci.kl},       {"w1", &r->ci.w1},        {"tail", &r->ci.tail},
    };
    for (size_t i = 0; i < sizeof cis / sizeof cis[0]; i++) {
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "%s_lo", cis[i].name);
        snprintf(hi, sizeof hi, "%s_hi", cis[i].name);
        if (fl_h5w_attr_f64(w, group, lo, cis[i].ci->lo) || fl_h5w_attr_f64(w, group, hi, cis[i].ci->hi))
            return -1;
    }
    if (fl_h5w_attr_i64(w, group, "dfib_applies", r->has_dfib) ||
        fl_h5w_attr_f64(w, group, "dfib_mean", r->dfib_mean) ||
        fl_h5w_attr_f64(w, group, "relative_mean", r->rel_mean) ||
        fl_h5w_attr_f64(w, group, "nn_mean", r->nn_mean) ||
        fl_h5w_attr_f64(w, group, "tail_share", r->tail_share) ||
        fl_h5w_attr_f64(w, group, "tail_loss", r->tail_loss) ||
        fl_h5w_attr_i64(w, group, "bootstrap", r->n_boot) ||
        fl_h5w_attr_f64(w, group, "ci_level", r->ci_level))
        return -1;
    return fl_h5w_attr_str(w, group, "name", r->name) ||
                   fl_h5w_attr_i64(w, group, "n_targets", r->n_targets) ||
                   fl_h5w_attr_i64(w, group, "n_samples", r->n_samples) ||
                   fl_h5w_attr_i64(w, group, "k", r->k) ||
                   fl_h5w_attr_i64(w, group, "kl_bins", r->kl_bins) ||
                   fl_h5w_attr_f64(w, group, "fiber_mean", r->fiber_mean) ||
                   fl_h5w_attr_f64(w, group, "fiber_std", r->fiber_std) ||
                   fl_h5w_attr_f64(w, group, "fiber_median", r->fiber_median) ||
                   fl_h5w_attr_f64(w, group, "kl_mean", r->color.kl_mean) ||
                   fl_h5w_attr_f64(w, group, "w1_mean", r->color.w1_mean) ||
                   fl_h5w_attr_f64(w, group, "t_setup", r->t_setup) ||
                   fl_h5w_attr_f64(w, group, "t_sample", r->t_sample) ||
                   fl_h5w_attr_f64(w, group, "t_score", r->t_score) ||
                   fl_h5w_attr_f64(w, group, "t_metrics", r->t_metrics) ||
                   fl_h5w_attr_f64(w, group, "samples_per_second", fl_eval_throughput(r))
               ? -1
               : 0;
}

/* ---- reference lines ------------------------------------------------------------------- */

typedef struct {
    ct_tensor *z;        /* (M, d) representations of the training images searched */
    ct_tensor *x;        /* (M, 3, 28, 28) those images */
    double inv_sqrt_d;
} nearest;

static ct_tensor *nearest_sample(void *ctx, const ct_tensor *x, const ct_tensor *z, int k, ct_gen *g)
{
    nearest *nn = ctx;
    ct_scope *s = ct_scope_begin();
    ct_tensor *idx = ct_argmin(ct_cdist(z, nn->z), 1, false);                  /* (n,) */
    if (k > 1) idx = ct_repeat_interleave(idx, k, 0);                          /* (n·k,) */
    ct_tensor *out = ct_scope_keep(s, ct_index_select(nn->x, 0, idx));         /* (n·k, 3, 28, 28) */
    ct_scope_end(s);
    return out;
}

int fl_reference_nearest(const fl_config *c, const fl_dataset *ds, fl_subject *subj,
                         fl_eval_result *res)
{
    memset(res, 0, sizeof *res);
    int64_t n = fl_dataset_count(ds, FL_TRAIN), m = n, cap = fl_cfg_int(c, "eval.nn_train");
    if (cap > 0 && cap < m) m = cap;
    if (m <= 0) return fl_fail("%s: no training images for the nearest-neighbour line", fl_dataset_path(ds));
    double t0 = fl_now();
    nearest nn = {0};
    fl_batch tr;
    int rc = 0;
    if (fl_dataset_slice(ds, FL_TRAIN, 0, n, &tr)) return -1;
    if (m < n) {   /* spread over the split, which is stored class by class */
        int64_t *idx = malloc((size_t)m * sizeof *idx);
        if (!idx) {
            fl_batch_free(&tr);
            return fl_fail("out of memory");
        }
        for (int64_t i = 0; i < m; i++) idx[i] = i * n / m;
        ct_tensor *ti = ct_from_data(idx, CT_SHAPE(m), CT_I64);
        nn.x = ct_index_select(tr.colored, 0, ti);                               /* (m, 3, 28, 28) */
        ct_free(ti);
        free(idx);
    } else {
        nn.x = ct_ref(tr.colored);
    }
    nn.z = fl_subject_forward_all(subj, nn.x, fl_cfg_int(c, "eval.batch_size"));      /* (m, d) */
    double t_setup = fl_now() - t0;
    if (!nn.z) rc = fl_fail_ctx("subject %s on the training images", fl_subject_name(subj));
    fl_sampler s = {"nearest_neighbour", &nn, nearest_sample, NULL};
    if (!rc) rc = fl_evaluate_k(c, ds, subj, &s, 1, res);
    if (!rc) res->t_setup += t_setup;
    ct_free(nn.z);
    ct_free(nn.x);
    fl_batch_free(&tr);
    return rc;
}

static int builtin_line(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_vae *vae,
                        const char *sampler, const char *line, int k, fl_eval_result *res)
{
    fl_sampler s;
    if (fl_sampler_builtin(sampler, c, ds, vae, &s)) return -1;
    int rc = fl_evaluate_k(c, ds, subj, &s, k, res);
    fl_sampler_free(&s);
    if (!rc) snprintf(res->name, sizeof res->name, "%s", line);
    return rc;
}

int fl_reference_lines(const fl_config *c, const fl_dataset *ds, fl_subject *subj, fl_vae *vae,
                       fl_reference *out)
{
    memset(out, 0, sizeof *out);
    int rc = fl_reference_nearest(c, ds, subj, &out->line[out->n]);
    if (!rc) out->n++;
    if (!rc) rc = builtin_line(c, ds, subj, vae, "augment", "augmented", (int)fl_cfg_int(c, "eval.n_aug"),
                               &out->line[out->n]);
    if (!rc) out->n++;
    if (!rc && vae) {
        rc = builtin_line(c, ds, subj, vae, "vae-recon", "vae_recon", 1, &out->line[out->n]);
        if (!rc) out->n++;
        if (!rc) rc = builtin_line(c, ds, subj, vae, "vae-prior", "vae_prior",
                                   (int)fl_cfg_int(c, "eval.n_random"), &out->line[out->n]);
        if (!rc) out->n++;
    }
    /* every line relative to the nearest neighbour (itself: 1) */
    for (int i = 0; !rc && i < out->n; i++) rc = fl_eval_relate(c, &out->line[i], &out->line[0]);
    if (rc) fl_reference_free(out);
    return rc;
}

int fl_reference_write(fl_h5w *w, const char *group, const fl_reference *r)
{
    char name[512];
    for (int i = 0; i < r->n; i++) {
        snprintf(name, sizeof name, "%s/%s", group, r->line[i].name);
        if (fl_eval_write(w, name, &r->line[i])) return -1;
    }
    return 0;
}

void fl_reference_free(fl_reference *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++) fl_eval_result_free(&r->line[i]);
    r->n = 0;
}

const fl_eval_result *fl_reference_find(const fl_reference *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->line[i].name, name) == 0) return &r->line[i];
    return NULL;
}
