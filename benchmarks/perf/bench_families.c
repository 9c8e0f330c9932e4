/* Training steps per second of the fiber-model families NF, MLF, DNF, FFF, FIF, DIFF and
 * FM, ours against the same models in Python PyTorch (bench_families.py, same libtorch, the
 * default sizes of each family's keys, parameter counts checked equal), in one run with
 * interleaved repetitions (ours, Python, ours, Python, …; medians), with the BLAS work per
 * step and its share of the GEMM peak measured in the same run. NF, MLF, DNF, FFF and FIF
 * also with the fiber-loss term (λ = 1) at batch 64; DIFF and FM with it
 * backpropagated through 2, 4 and 8 sampler steps, each
 * without and with activation checkpointing of those steps (diff.checkpoint /
 * fm.checkpoint; torch.utils.checkpoint on the Python side), with the peak resident
 * memory of each side. Goal: >= 1.5x at batch 64, never slower at 256.
 * And NDTM sampling (ndtm/ndtm.c, issue 14) with the latent and the pixel prior
 * (--ndtm-prior, default both) at batch 64 and 256: seconds per sample of fl_ndtm_sample
 * with the ndtm.* defaults but --ndtm-steps DDIM steps (default 20: t = 950, 900, …, 0, of
 * which the 10 below ndtm.ramp_start = 500 are guided, the same half as the default 100
 * steps), against the same algorithm in bench_families.py (DDIM on the leading grid,
 * torch.optim.Adam on the control with the per-sample gradient rescaling and the linear
 * lr decay, the cosine γ_t, the static target and the non-squared terminal norm). Both
 * sides read the same weights and inputs from ctorch archives this program writes: the
 * latent prior's ε-network (an unconditional fl_diff of the prior.* default sizes on the
 * 54-d latent) decoded by the VAE-decoder stand-in below; the pixel prior as `fiberlab
 * ndtm` builds it (fl_prior_new with prior.space = pixel: the UNet of the prior.unet.*
 * defaults, its v-parametrised ε, seen through fl_ndtm_prior_of: images x = 2·image − 1,
 * x̂0 clamped to [−1, 1], no decoder), its weights the UNet's initialisation with DDPM's
 * zero-initialised convolutions drawn like the others (bench_families.py: PixelPrior on
 * unet_twin.py's UNet); the subject stand-in below for both; x_T of each space and the
 * target images. Both run libtorch on --threads threads and BLAS on one (fiberlab ndtm's
 * setting), each after an untimed 2-step guided warm-up. Goal: >= 1.2x at both batches,
 * each prior. tests/test_ndtm_pytorch.c checks that the twin computes what ndtm.c
 * computes with either prior (cost, gradient, whole trajectories, float64).
 *   bench_families [--threads N] [--reps R] [--python PATH] [--only FAMILY|ndtm]
 *                  [--ndtm-steps S] [--ndtm-prior latent|pixel|both] [--fiber | --no-fiber]
 *   bench_families --ndtm-inputs DIR   (the NDTM weights and inputs, for one side alone:
 *                  bench_families --ndtm-worker B S THREADS REPS DIR latent|pixel, or
 *                  bench_families.py --family ndtm --prior latent|pixel --weights DIR/weights.h5
 *                  --pixel DIR/pixel.h5 --inputs DIR/inputs.h5)
 * --fiber: only the λ > 0 rows; --no-fiber: only the λ = 0 rows (both leave NDTM out).
 * Every run is a child process of its own (ours: this program with --worker), so that
 * each side's memory high-water mark is its own.
 *
 * Ours runs the trainer's code path: the model is an fl_fiber of model.family (its
 * create, its loss through fl_family), the step is fl_train_run's (Adam, one-cycle LR,
 * clipping, the non-finite guard), and λ > 0 adds trainers/fiber.c's term λ · fiber loss
 * of samples from fl_fiber_sample_space with the trainer's differentiable sampler
 * options. Two stand-ins, the same on both sides: the condition statistics are the
 * identity (z is standard normal; the trainer's standardization is then a no-op), and the
 * trained VAE and subject (which need a dataset and a cached training) are replaced by
 * networks of their architectures at their default sizes with frozen random weights —
 * the VAE's conv decoder with its sigmoid (vae.*) and the subject's conv encoder on the
 * colored image (subject.*, as with subject.input = color) behind fl_subject_custom. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "architectures/conv.h"
#include "bench_common.h"
#include "core/blas.h"
#include "core/config.h"
#include "core/fiber.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "ndtm/ndtm.h"
#include "trainers/diffusion.h"
#include "trainers/family.h"
#include "trainers/fiber.h"
#include "trainers/loop.h"
#include "trainers/subject.h"

#define POOL 8192
#define DIM 54
#define COND 48
#define WARMUP 10
#define LAMBDA 1.0

/* ---- GEMM work, counted at the BLAS interface ------------------------------------------ */

/* libtorch's matrix products (linear layers, mm, the columns of its transposed
 * convolutions) call the Fortran BLAS sgemm_ of libblas.so.3. This program defines it
 * (exported: ENABLE_EXPORTS), so the dynamic linker binds libtorch's calls here: it
 * adds 2·M·N·K and calls the library's. oneDNN's convolutions (the subject's) do not
 * go through it and are not counted. */
typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                         const float *, const float *, const int *, const float *, const int *,
                         const float *, float *, const int *);
static double gemm_flop;

void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
            const float *beta, float *c, const int *ldc);
void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
            const float *beta, float *c, const int *ldc)
{
    static sgemm_fn real;
    if (!real) real = (sgemm_fn)dlsym(RTLD_NEXT, "sgemm_");
    gemm_flop += 2.0 * *m * *n * *k;
    real(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- one training run (the --worker side) --------------------------------------------- */

typedef struct {
    fl_fiber *m;
    const fl_family *fam;
    ct_tensor *u, *z;            /* (POOL, DIM), (POOL, COND) */
    int batch;
    int64_t pos, calls;
    double t_start;
    fl_fiber_train_opts fo;      /* λ and the fiber sampler's steps, read as the trainer does */
    fl_sample_opts fiber_sampling;
    fl_conv_decoder dec;         /* the VAE decoder stand-in */
    fl_conv_encoder enc;         /* the subject stand-in */
    fl_subject *subj;
    ct_gen *noise;
} worker;

static void die(const char *what)
{
    fprintf(stderr, "bench_families: %s: %s%s%s\n", what, fl_error(),
            ct_last_error()[0] ? " / " : "", ct_last_error());
    exit(1);
}

static ct_tensor *subject_fn(void *ctx, const ct_tensor *x)
{
    return fl_conv_encoder_forward(ctx, x);                              /* (B, COND) */
}

/* trainers/fiber.c's objective on the next batch of the pool. */
static ct_tensor *worker_loss(void *ctx, fl_terms *terms)
{
    worker *w = ctx;
    if (++w->calls == WARMUP + 1) {
        w->t_start = fl_now();
        gemm_flop = 0;
        /* FIBERLAB_TORCH_PROFILE=PATH: libtorch's op profile of the timed steps */
        const char *prof = getenv("FIBERLAB_TORCH_PROFILE");
        if (prof && *prof && ct_profile_begin(prof)) die("FIBERLAB_TORCH_PROFILE");
    }
    if (w->pos + w->batch > POOL) w->pos = 0;
    ct_tensor *u = ct_narrow(w->u, 0, w->pos, w->batch);                 /* (B, DIM) */
    ct_tensor *z = ct_narrow(w->z, 0, w->pos, w->batch);                 /* (B, COND) */
    w->pos += w->batch;
    ct_tensor *loss = w->fam->loss(fl_fiber_model(w->m), u, z, w->noise, terms);  /* () */
    if (loss && w->fo.lambda > 0) {
        ct_tensor *u_hat = fl_fiber_sample_space(w->m, z, &w->fiber_sampling, w->noise); /* (B, DIM) */
        ct_tensor *x_hat = ct_sigmoid(fl_conv_decoder_forward(&w->dec, u_hat)); /* (B, 3, 28, 28) */
        ct_tensor *fib = fl_fiber_loss_mean(fl_subject_forward(w->subj, x_hat), z);
        if (fib) fl_terms_add(terms, "fiber", ct_item(fib));
        loss = ct_axpy(loss, w->fo.lambda, fib);
    }
    if (loss) fl_terms_add(terms, "loss", ct_item(loss));
    return loss;
}

/* Trains family at batch for WARMUP + steps steps (its sampler checkpointed when ckpt)
 * and prints the JSON line of bench_common.h. */
static int worker_main(const char *family, int batch, int steps, double lambda, int fsteps,
                       int threads, bool ckpt)
{
    char kv[128], lam[64], fst[64], ck[64];
    fl_config *c = fl_config_default();
    snprintf(kv, sizeof kv, "model.family=%s", family);
    snprintf(lam, sizeof lam, "train.lambda=%g", lambda);
    snprintf(fst, sizeof fst, "train.fiber_steps=%d", fsteps);
    snprintf(ck, sizeof ck, "%s.checkpoint=true", family);
    const char *sets[4] = {kv, lam, fst, ckpt ? ck : NULL};
    for (int i = 0; i < 4 && sets[i]; i++)
        if (fl_config_override(c, sets[i])) die(sets[i]);
    fl_threads_set(fl_dense_threads(threads, batch), FL_WORK_DENSE);   /* as fl_fiber_train */
    worker w = {.batch = batch};
    fl_fiber_train_opts_from_config(&w.fo, c);
    w.fiber_sampling = (fl_sample_opts){.steps = w.fo.fiber_steps, .temperature = 1, .keep_graph = true};
    w.m = fl_fiber_create(c, DIM, COND);
    if (!w.m) die(family);
    w.fam = fl_fiber_family(w.m);
    ct_gen *g = ct_gen_new(0);
    w.noise = ct_gen_new(1);
    w.u = ct_randn(CT_SHAPE(POOL, DIM), CT_F32, g);
    w.z = ct_randn(CT_SHAPE(POOL, COND), CT_F32, g);
    ct_params *frozen = ct_params_new();
    if (w.fo.lambda > 0) {
        fl_conv_spec vs, ss;
        if (fl_conv_spec_from_config(c, "vae", 3, DIM, &vs) ||
            fl_conv_decoder_init(&w.dec, frozen, "vae.dec", &vs, g) ||
            fl_conv_spec_from_config(c, "subject", 3, COND, &ss) ||
            fl_conv_encoder_init(&w.enc, frozen, "subject.enc", &ss, 1, g))
            die("the VAE and subject stand-ins");
        ct_params_set_trainable(frozen, false);
        w.subj = fl_subject_custom("conv stand-in", COND, subject_fn, &w.enc, NULL);
    }
    if (!w.u || !w.z || (w.fo.lambda > 0 && !w.subj)) die("setup");
    fl_task task = {fl_fiber_params(w.m), &w, worker_loss, NULL, NULL, NULL, NULL};
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    o.steps = steps + WARMUP;
    o.lr = 1e-3;
    o.val_every = 0;
    o.checkpoint_every = 0;
    fl_train_result r;
    long long rss0 = bench_rss_kb();
    if (fl_train_run(&task, &o, &r)) die("training");
    double dt = fl_now() - w.t_start;
    const char *prof = getenv("FIBERLAB_TORCH_PROFILE");
    if (prof && *prof && ct_profile_end()) die("FIBERLAB_TORCH_PROFILE");
    long long peak = bench_peak_rss_kb();
    printf("{\"family\": \"%s\", \"batch\": %d, \"steps\": %d, \"seconds\": %.4f, "
           "\"steps_per_s\": %.4f, \"params\": %lld, \"peak_rss_kb\": %lld, \"rss0_kb\": %lld, "
           "\"gemm_flop\": %.6g}\n",
           family, batch, steps, dt, steps / dt, (long long)ct_params_numel(fl_fiber_params(w.m)),
           peak, rss0, gemm_flop / steps);
    fflush(stdout);
    fl_train_result_free(&r);
    fl_subject_free(w.subj);
    ct_params_free(frozen);
    ct_free(w.u);
    ct_free(w.z);
    fl_fiber_free(w.m);
    ct_gen_free(g);
    ct_gen_free(w.noise);
    fl_config_free(c);
    return 0;
}

/* ---- NDTM sampling with the latent and the pixel prior (the --ndtm-worker side) -------- */

/* The latent prior's ε-network (an unconditional fl_diff of the prior.* default sizes on
 * the 54-d latent) and the VAE-decoder and subject stand-ins, in one frozen set whose
 * names (prior.eps.*, vae.dec.*, subject.enc.*) bench_families.py maps onto its modules;
 * and, when asked, the pixel prior (trainers/prior.c with prior.space = pixel: the UNet of
 * the prior.unet.* defaults, its parameters prior.eps.* in a set of its own). */
typedef struct {
    ct_params *ps;
    fl_diff *prior;
    fl_conv_decoder dec;
    fl_conv_encoder enc;
    fl_subject *subj;
    fl_prior *pixel;
} ndtm_models;

/* The latent prior's decode: the VAE decoder's sigmoid image (B, 3, 28, 28). */
static ct_tensor *ndtm_decode(void *ctx, const ct_tensor *u)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_scope_keep(s, ct_sigmoid(fl_conv_decoder_forward(ctx, u)));
    ct_scope_end(s);
    return x;
}

/* The pixel prior's stand-in weights: the UNet's initialisation (torch.nn's U(±1/√fan_in))
 * but for DDPM's zero-initialised convolutions (each block's last and the output's),
 * which get the same law as the others — else the untrained UNet is v ≡ 0 (ε = √(1 − ᾱ) x)
 * and every block the identity. */
static void unet_stand_in(ct_params *ps, ct_gen *g)
{
    for (int i = 0; i < ct_params_count(ps); i++) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *w = ct_params_at(ps, i);
        const char *name = ct_params_name(ps, i);
        size_t len = strlen(name);
        if (ct_ndim(w) == 4 && ct_item(ct_max_all(ct_abs(w))) == 0 && len > 7 &&
            strcmp(name + len - 7, ".weight") == 0) {
            char bias[512];
            snprintf(bias, sizeof bias, "%.*s.bias", (int)(len - 7), name);
            ct_tensor *b = ct_params_find(ps, bias);
            double bound = 1 / sqrt((double)(ct_size(w, 1) * ct_size(w, 2) * ct_size(w, 3)));
            if (!b || ct_copy_(w, ct_adds(ct_muls(ct_rand(ct_shape_of(w), ct_dtype_of(w), g), 2 * bound), -bound)) ||
                ct_copy_(b, ct_adds(ct_muls(ct_rand(ct_shape_of(b), ct_dtype_of(b), g), 2 * bound), -bound)))
                die(name);
        }
        ct_scope_end(s);
    }
}

static void ndtm_models_new(ndtm_models *m, const fl_config *c, uint64_t seed, bool pixel)
{
    m->ps = ct_params_new();
    m->pixel = NULL;
    ct_gen *g = ct_gen_new(seed);
    fl_diff_spec s = fl_prior_latent_spec(c, DIM);   /* steps 100, η 0.25: the prior.* defaults */
    m->prior = fl_diff_new(&s, m->ps, "prior.eps", g);
    fl_conv_spec vs, ss;
    if (!m->prior || fl_conv_spec_from_config(c, "vae", 3, DIM, &vs) ||
        fl_conv_decoder_init(&m->dec, m->ps, "vae.dec", &vs, g) ||
        fl_conv_spec_from_config(c, "subject", 3, COND, &ss) ||
        fl_conv_encoder_init(&m->enc, m->ps, "subject.enc", &ss, 1, g))
        die("the NDTM prior and stand-ins");
    ct_params_set_trainable(m->ps, false);
    m->subj = fl_subject_custom("conv stand-in", COND, subject_fn, &m->enc, NULL);
    if (pixel) {
        /* the real pixel prior's construction, untrained (prior.unet.*, prior.T, beta_max) */
        fl_config *pc = fl_config_copy(c);
        if (!pc || fl_config_override(pc, "prior.space=pixel") || fl_prior_new(pc, NULL, &m->pixel))
            die("the pixel prior");
        fl_config_free(pc);
        unet_stand_in(fl_prior_params(m->pixel), g);
        ct_params_set_trainable(fl_prior_params(m->pixel), false);
    }
    ct_gen_free(g);
}

/* Every element of the set whose name starts with prefix (its parameters are frozen:
 * ct_params_numel counts none). */
static int64_t ndtm_params(const ct_params *ps, const char *prefix)
{
    int64_t n = 0;
    for (int i = 0; i < ct_params_count(ps); i++)
        if (strncmp(ct_params_name(ps, i), prefix, strlen(prefix)) == 0) n += ct_numel(ct_params_at(ps, i));
    return n;
}

static fl_ndtm_prior ndtm_prior_of(ndtm_models *m)
{
    return (fl_ndtm_prior){.eps = fl_diff_eps_uncond,
                           .eps_ctx = m->prior,
                           .abar = fl_diff_abar(m->prior),
                           .T = fl_diff_T(m->prior),
                           .dim = DIM,
                           .decode = ndtm_decode,
                           .ctx = &m->dec,
                           .latent = true};
}

static void ndtm_models_free(ndtm_models *m)
{
    fl_prior_free(m->pixel);
    fl_subject_free(m->subj);
    fl_diff_free(m->prior);
    ct_params_free(m->ps);
}

/* The files both sides read, in dir: weights.h5 (the latent prior's and the stand-ins'
 * parameters), pixel.h5 (the pixel prior's UNet: its spec, "spec/…", and parameters,
 * "params/prior.eps.…") and inputs.h5 (x_T (256, 54) and x_T_pixel (256, 3·28·28)
 * ~ N(0, I), target images (256, 3, 28, 28) ~ U[0, 1]). */
static void ndtm_write_inputs(const char *dir)
{
    char path[4200];
    fl_config *c = fl_config_default();
    ndtm_models m;
    ndtm_models_new(&m, c, 0, true);
    snprintf(path, sizeof path, "%s/weights.h5", dir);
    if (ct_params_save(m.ps, path)) die(path);
    fl_unet_spec us;
    if (fl_prior_unet_spec(c, &us)) die("prior.unet");
    ct_archive *a = ct_archive_new();
    snprintf(path, sizeof path, "%s/pixel.h5", dir);
    if (fl_unet_spec_put(&us, a, "spec/") || ct_params_put(fl_prior_params(m.pixel), a, "params/") ||
        ct_archive_write(a, path))
        die(path);
    ct_archive_free(a);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(5);
    a = ct_archive_new();
    snprintf(path, sizeof path, "%s/inputs.h5", dir);
    if (ct_archive_put(a, "x_T", ct_randn(CT_SHAPE(256, DIM), CT_F32, g)) ||
        ct_archive_put(a, "targets", ct_rand(CT_SHAPE(256, 3, 28, 28), CT_F32, g)) ||
        ct_archive_put(a, "x_T_pixel", ct_randn(CT_SHAPE(256, 3 * 28 * 28), CT_F32, g)) ||
        ct_archive_write(a, path))
        die(path);
    ct_archive_free(a);
    ct_gen_free(g);
    ct_scope_end(s);
    ndtm_models_free(&m);
    fl_config_free(c);
}

/* Times reps guided samplings of batch rows with the latent or the pixel prior and the
 * ndtm.* defaults but `steps` DDIM steps, after an untimed warm-up of 2 fully guided steps;
 * prints bench_common.h's line (steps_per_s: samples per second). The pixel prior is seen
 * as fiberlab ndtm sees it: fl_ndtm_prior_of (x = 2·image − 1, x̂0 clamped to [−1, 1]). */
static int ndtm_worker_main(int batch, int steps, int threads, int reps, const char *dir, const char *which)
{
    char path[4200];
    bool pixel = strcmp(which, "pixel") == 0;
    if (!pixel && strcmp(which, "latent") != 0) {
        fprintf(stderr, "bench_families: --ndtm-worker: prior '%s', expected latent or pixel\n", which);
        return 2;
    }
    fl_config *c = fl_config_default();
    fl_threads_set(threads, FL_WORK_CONV);   /* as fiberlab ndtm (cli/cli_opts.c) */
    ndtm_models m;
    ndtm_models_new(&m, c, 1, pixel);
    snprintf(path, sizeof path, "%s/weights.h5", dir);
    if (ct_params_load(m.ps, path)) die(path);
    ct_archive *a;
    if (pixel) {
        snprintf(path, sizeof path, "%s/pixel.h5", dir);
        if (!(a = ct_archive_read(path)) || ct_params_get(fl_prior_params(m.pixel), a, "params/")) die(path);
        ct_archive_free(a);
    }
    snprintf(path, sizeof path, "%s/inputs.h5", dir);
    a = ct_archive_read(path);
    if (!a) die(path);
    ct_scope *sc = ct_scope_begin();
    ct_tensor *x_T = ct_scope_keep(sc, ct_narrow(ct_archive_get(a, pixel ? "x_T_pixel" : "x_T"), 0, 0, batch)); /* (B, D) */
    ct_tensor *img = ct_scope_keep(sc, ct_narrow(ct_archive_get(a, "targets"), 0, 0, batch)); /* (B, 3, 28, 28) */
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *z = ct_scope_keep(sc, fl_subject_forward(m.subj, img));                       /* (B, 48) */
    ct_set_grad_enabled(prev);
    ct_scope_end(sc);
    ct_archive_free(a);
    fl_ndtm_prior p = pixel ? fl_ndtm_prior_of(m.pixel) : ndtm_prior_of(&m);
    fl_ndtm_opts o, warm;
    if (!x_T || !img || !z || fl_ndtm_opts_from_config(c, p.T, &o)) die("NDTM setup");
    warm = o;
    warm.steps = 2;
    warm.gamma = FL_GAMMA_CONSTANT;
    o.steps = steps;
    ct_gen *g = ct_gen_new(1);
    long long rss0 = bench_rss_kb();
    ct_tensor *x0 = fl_ndtm_sample(&p, m.subj, x_T, img, z, &warm, g);
    if (!x0) die("NDTM warm-up");
    ct_free(x0);
    const char *prof = getenv("FIBERLAB_TORCH_PROFILE");
    if (prof && *prof && ct_profile_begin(prof)) die("FIBERLAB_TORCH_PROFILE");
    double t0 = fl_now(), c0 = bench_cpu_seconds();
    double mean_abs = 0;
    for (int r = 0; r < reps; r++) {
        x0 = fl_ndtm_sample(&p, m.subj, x_T, img, z, &o, g);
        if (!x0) die("NDTM");
        ct_scope *s = ct_scope_begin();
        mean_abs = ct_item(ct_mean(ct_abs(x0)));
        ct_scope_end(s);
        ct_free(x0);
    }
    double dt = fl_now() - t0, cpu = bench_cpu_seconds() - c0;
    if (prof && *prof && ct_profile_end()) die("FIBERLAB_TORCH_PROFILE");
    long long peak = bench_peak_rss_kb();
    int64_t params = pixel ? ndtm_params(fl_prior_params(m.pixel), "") + ndtm_params(m.ps, "subject.enc.")
                           : ndtm_params(m.ps, "");
    printf("{\"family\": \"ndtm\", \"prior\": \"%s\", \"batch\": %d, \"steps\": %d, \"seconds\": %.4f, "
           "\"steps_per_s\": %.6f, \"params\": %lld, \"peak_rss_kb\": %lld, \"rss0_kb\": %lld, "
           "\"x0_mean_abs\": %.6f, \"cpu_seconds\": %.4f}\n",
           which, batch, steps, dt, reps * batch / dt, (long long)params, peak, rss0, mean_abs, cpu);
    fflush(stdout);
    ct_gen_free(g);
    ct_free(x_T);
    ct_free(img);
    ct_free(z);
    ndtm_models_free(&m);
    fl_config_free(c);
    return 0;
}

/* ---- the driver ------------------------------------------------------------------------ */

typedef struct {
    const char *family;
    int batch, steps;   /* timed steps (after WARMUP) */
    double lambda;
    int fsteps;         /* differentiable sampler steps (λ > 0) */
    bool ckpt;          /* those steps checkpointed */
    bool ndtm;          /* NDTM sampling (steps: its DDIM steps) */
    const char *prior;  /* NDTM's prior: "latent" or "pixel" */
} bench_case;

#define MAX_CASES 64
#define MAX_REPS 15

/* The timed steps of a run: about two seconds of ours on the Zen 5 development machine. */
static int steps_for(const char *family, int batch, double lambda, int fsteps)
{
    int base = !strcmp(family, "mlf") ? 25 : !strcmp(family, "dnf") ? 40 : !strcmp(family, "nf") ? 80
             : !strcmp(family, "fff") ? 300 : !strcmp(family, "fif") ? 400 : 800;
    if (lambda > 0 && fsteps == 0) base = base / 2 > 10 ? base / 2 : 10;   /* one-pass samplers */
    else if (lambda > 0) base = 400 / (2 + (!strcmp(family, "fm") ? 2 : 1) * fsteps);
    return batch >= 256 ? (base / 3 > 10 ? base / 3 : 10) : base;
}

int main(int argc, char **argv)
{
    fl_runtime_init(argv);
    fl_log_set_quiet(true);
    int threads = 2, reps = 3, ndtm_steps = 20;
    const char *python = "/usr/bin/python3", *only = NULL, *ndtm_prior = "both";
    bool fiber_only = false, no_fiber = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--worker") == 0 && i + 7 < argc)
            return worker_main(argv[i + 1], atoi(argv[i + 2]), atoi(argv[i + 3]), atof(argv[i + 4]),
                               atoi(argv[i + 5]), atoi(argv[i + 6]), atoi(argv[i + 7]) != 0);
        if (strcmp(argv[i], "--ndtm-inputs") == 0 && i + 1 < argc)
            return ndtm_write_inputs(argv[i + 1]), 0;
        if (strcmp(argv[i], "--ndtm-worker") == 0 && i + 6 < argc)
            return ndtm_worker_main(atoi(argv[i + 1]), atoi(argv[i + 2]), atoi(argv[i + 3]),
                                    atoi(argv[i + 4]), argv[i + 5], argv[i + 6]);
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--python") == 0 && i + 1 < argc)
            python = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--ndtm-steps") == 0 && i + 1 < argc)
            ndtm_steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ndtm-prior") == 0 && i + 1 < argc)
            ndtm_prior = argv[++i];
        else if (strcmp(argv[i], "--fiber") == 0)
            fiber_only = true;
        else if (strcmp(argv[i], "--no-fiber") == 0)
            no_fiber = true;
        else {
            fprintf(stderr, "usage: bench_families [--threads N] [--reps R] [--python PATH] "
                            "[--only FAMILY|ndtm] [--ndtm-steps S] [--ndtm-prior latent|pixel|both] "
                            "[--fiber | --no-fiber]\n");
            return 2;
        }
    }
    if (strcmp(ndtm_prior, "latent") && strcmp(ndtm_prior, "pixel") && strcmp(ndtm_prior, "both")) {
        fprintf(stderr, "bench_families: --ndtm-prior %s, expected latent, pixel or both\n", ndtm_prior);
        return 2;
    }
    if (reps < 1 || reps > MAX_REPS) reps = reps < 1 ? 1 : MAX_REPS;
    if (ndtm_steps < 1 || ndtm_steps > 1000) {
        fprintf(stderr, "bench_families: --ndtm-steps %d, not in [1, 1000]\n", ndtm_steps);
        return 2;
    }

    static const char *const families[] = {"nf", "mlf", "dnf", "fff", "fif", "diff", "fm"};
    static const int batches[2] = {64, 256}, fsteps[3] = {2, 4, 8};
    bench_case cases[MAX_CASES];
    int n = 0;
    for (int f = 0; f < 7 && !fiber_only; f++) {
        if (only && strcmp(only, families[f])) continue;
        for (int b = 0; b < 2; b++)
            cases[n++] = (bench_case){families[f], batches[b], steps_for(families[f], batches[b], 0, 0), 0, 0, false, false, NULL};
    }
    /* λ > 0 at batch 64: the one-pass samplers (the flows' inverse, the free-form decoder) */
    for (int f = 0; f < 5 && !no_fiber; f++) {
        if (only && strcmp(only, families[f])) continue;
        cases[n++] = (bench_case){families[f], 64, steps_for(families[f], 64, LAMBDA, 0), LAMBDA, 0, false, false, NULL};
    }
    for (int f = 5; f < 7 && !no_fiber; f++) {
        if (only && strcmp(only, families[f])) continue;
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < 3; k++)
                for (int ck = 0; ck < 2; ck++)
                    cases[n++] = (bench_case){families[f], batches[b],
                                              steps_for(families[f], batches[b], LAMBDA, fsteps[k]),
                                              LAMBDA, fsteps[k], ck == 1, false, NULL};
    }
    /* NDTM sampling with the latent and the pixel prior: with the λ = 0 rows (it trains nothing) */
    int first_ndtm = n;
    static const char *const priors[2] = {"latent", "pixel"};
    for (int p = 0; p < 2 && !fiber_only && !no_fiber && (!only || !strcmp(only, "ndtm")); p++)
        for (int b = 0; b < 2 && (!strcmp(ndtm_prior, "both") || !strcmp(ndtm_prior, priors[p])); b++)
            cases[n++] = (bench_case){"ndtm", batches[b], ndtm_steps, 0, 0, false, true, priors[p]};
    char ndtm_dir[] = "/tmp/bench_ndtm.XXXXXX";
    if (n > first_ndtm) {
        if (!mkdtemp(ndtm_dir)) return perror("mkdtemp"), 1;
        ndtm_write_inputs(ndtm_dir);
    }

    const char *env_core = getenv("OPENBLAS_CORETYPE");
    printf("CPU %s, %d cores, OpenBLAS kernel %s (%s; OPENBLAS_CORETYPE=%s), ATen kernels %s "
           "(ATEN_CPU_CAPABILITY); the Python side inherits both and gets the same malloc settings; "
           "medians of %d interleaved runs per side, each a process of its own\n",
           fl_cpu_name(), threads, fl_blas_corename() ? fl_blas_corename() : "?",
           fl_blas_kernel_is_best() ? "the best for this CPU" : "NOT the best for this CPU",
           env_core ? env_core : "unset", fl_aten_kernels() ? fl_aten_kernels() : "libtorch's choice", reps);
    double peak64 = 0, peak256 = 0;
    if (first_ndtm > 0) {
    printf("fiber-model training steps/s, u %d-d given z %d-d, each family's default sizes; CPU %s, "
           "%d cores, OpenBLAS kernel %s (%s; OPENBLAS_CORETYPE=%s, inherited by the Python side), "
           "ATen kernels %s (ATEN_CPU_CAPABILITY, inherited by the Python side); "
           "both sides: libtorch 1 thread, OpenBLAS threads as fiber-model training sets them "
           "(%d at batch 64, %d at batch 256), the same malloc settings; medians of %d interleaved "
           "runs per side, each a process of its own, %d warm-up steps untimed; peak memory: each "
           "process's RSS high-water mark (getrusage ru_maxrss) and its rise over the RSS before "
           "the first training step\n",
           DIM, COND, fl_cpu_name(), threads, fl_blas_corename() ? fl_blas_corename() : "?",
           fl_blas_kernel_is_best() ? "the best for this CPU" : "NOT the best for this CPU",
           env_core ? env_core : "unset", fl_aten_kernels() ? fl_aten_kernels() : "libtorch's choice",
           fl_dense_threads(threads, 64), fl_dense_threads(threads, 256),
           reps, WARMUP);
    /* the GEMM peak at each thread count the rows use, measured in this run */
    int th64 = fl_dense_threads(threads, 64), th256 = fl_dense_threads(threads, 256);
    peak64 = bench_gemm_peak_gflops(th64);
    peak256 = th256 == th64 ? peak64 : bench_gemm_peak_gflops(th256);
    printf("GEMM peak (1024² float32 product, this run): %.1f GFLOP/s on %d thread%s, %.1f on %d; "
           "gflop: BLAS matrix-product work per step (sgemm_ calls counted; oneDNN convolutions "
           "not), %%peak: ours at that rate against the peak at the row's threads\n",
           peak64, th64, th64 == 1 ? "" : "s", peak256, th256);
    }
    fflush(stdout);

    double ours[MAX_CASES][MAX_REPS], py[MAX_CASES][MAX_REPS];
    double cpu_ours[MAX_CASES][MAX_REPS], cpu_py[MAX_CASES][MAX_REPS];   /* NDTM: CPU s/sample */
    bench_line last_ours[MAX_CASES], last_py[MAX_CASES];
    long long peak_ours[MAX_CASES] = {0}, peak_py[MAX_CASES] = {0};
    long long rise_ours[MAX_CASES] = {0}, rise_py[MAX_CASES] = {0};
    char script[4096];
    snprintf(script, sizeof script, "%s/benchmarks/perf/bench_families.py", FL_SOURCE_DIR);
    int rc = 0;
    /* the interleaving: rep r runs every case, ours then Python, before rep r + 1 */
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < n; i++) {
            const bench_case *k = &cases[i];
            char cmd[8192], args[512];
            if (k->ndtm) {
                /* libtorch's threads, BLAS 1: fiberlab ndtm's setting (FL_WORK_CONV) */
                snprintf(cmd, sizeof cmd, "/proc/%d/exe --ndtm-worker %d %d %d 1 %s %s", (int)getpid(),
                         k->batch, k->steps, threads, ndtm_dir, k->prior);
                if (bench_run_line(cmd, &last_ours[i])) return 1;
                snprintf(args, sizeof args, "--family ndtm --prior %s --batch %d --ndtm-steps %d --threads %d "
                         "--reps 1 --weights %s/weights.h5 --pixel %s/pixel.h5 --inputs %s/inputs.h5",
                         k->prior, k->batch, k->steps, threads, ndtm_dir, ndtm_dir, ndtm_dir);
                bench_python_cmd(cmd, sizeof cmd, 1, python, script, args);
            } else {
                snprintf(cmd, sizeof cmd, "/proc/%d/exe --worker %s %d %d %g %d %d %d", (int)getpid(),
                         k->family, k->batch, k->steps, k->lambda, k->fsteps, threads, (int)k->ckpt);
                if (bench_run_line(cmd, &last_ours[i])) return 1;
                snprintf(args, sizeof args, "--family %s --batch %d --steps %d --lam %g --fsteps %d "
                         "--warmup %d --threads 1%s", k->family, k->batch, k->steps, k->lambda,
                         k->fsteps, WARMUP, k->ckpt ? " --ckpt" : "");
                bench_python_cmd(cmd, sizeof cmd, fl_dense_threads(threads, k->batch), python, script, args);
            }
            if (bench_run_line(cmd, &last_py[i])) return 1;
            ours[i][r] = last_ours[i].steps_per_s;
            py[i][r] = last_py[i].steps_per_s;
            cpu_ours[i][r] = last_ours[i].cpu_seconds / k->batch;
            cpu_py[i][r] = last_py[i].cpu_seconds / k->batch;
            if (k->ndtm)
                fprintf(stderr, "bench_families: ndtm %s prior, batch %d, repetition %d: ours %.5f s/sample "
                        "(CPU %.5f), Python %.5f (CPU %.5f)\n", k->prior, k->batch, r + 1, 1 / ours[i][r],
                        cpu_ours[i][r], 1 / py[i][r], cpu_py[i][r]);
            /* the largest over the repetitions (the same work each time) */
            long long ro = last_ours[i].peak_rss_kb - last_ours[i].rss0_kb;
            long long rp = last_py[i].peak_rss_kb - last_py[i].rss0_kb;
            if (last_ours[i].peak_rss_kb > peak_ours[i]) peak_ours[i] = last_ours[i].peak_rss_kb;
            if (last_py[i].peak_rss_kb > peak_py[i]) peak_py[i] = last_py[i].peak_rss_kb;
            if (ro > rise_ours[i]) rise_ours[i] = ro;
            if (rp > rise_py[i]) rise_py[i] = rp;
        }
        fprintf(stderr, "bench_families: repetition %d of %d done\n", r + 1, reps);
    }

    if (first_ndtm > 0)
        printf("%-5s %5s %4s %6s %4s %10s %10s %7s %7s %6s %9s %9s %9s %9s %9s %9s\n", "fam", "batch", "λ",
           "fsteps", "ckpt", "fiberlab", "pytorch", "ratio", "gflop", "%peak", "params", "params_py",
           "peakMiB", "peakMiB_py", "riseMiB", "riseMiB_py");
    int met64 = 1, met256 = 1;
    for (int i = 0; i < first_ndtm; i++) {
        const bench_case *k = &cases[i];
        double mo = bench_median(ours[i], reps), mp = bench_median(py[i], reps);
        double ratio = mo / mp;
        double gf = last_ours[i].gemm_flop / 1e9, pk = k->batch >= 256 ? peak256 : peak64;
        printf("%-5s %5d %4g %6d %4s %10.1f %10.1f %6.2fx %7.3f %5.1f%% %9lld %9lld %9.0f %10.0f %9.0f %10.0f\n",
               k->family, k->batch, k->lambda, k->fsteps, k->ckpt ? "yes" : "no", mo, mp, ratio,
               gf, 100.0 * gf * mo / pk, last_ours[i].params,
               last_py[i].params, peak_ours[i] / 1024.0, peak_py[i] / 1024.0,
               rise_ours[i] / 1024.0, rise_py[i] / 1024.0);
        if (last_ours[i].params != last_py[i].params) {
            fprintf(stderr, "bench_families: %s: parameter counts differ: ours %lld, Python %lld\n",
                    k->family, last_ours[i].params, last_py[i].params);
            rc = 1;
        }
        if (k->batch == 64 && ratio < 1.5) met64 = 0;
        if (k->batch == 256 && ratio < 1.0) met256 = 0;
    }
    if (first_ndtm > 0)
        printf("goal: >= 1.5x at batch 64 -> %s; never slower at batch 256 -> %s\n",
               met64 ? "met" : "NOT met", met256 ? "met" : "NOT met");
    if (n > first_ndtm) {
        int guided = 0;
        fl_ndtm_opts go = {.steps = ndtm_steps};
        fl_config *c = fl_config_default();
        fl_ndtm_opts d;
        if (fl_ndtm_opts_from_config(c, (int)fl_cfg_int(c, "prior.T"), &d) == 0) {
            go = d;
            go.steps = ndtm_steps;
        }
        for (int i = 0; i < ndtm_steps; i++) guided += fl_ndtm_gamma(&go, fl_ndtm_time(&go, (int)fl_cfg_int(c, "prior.T"), i)) != 0;
        fl_config_free(c);
        printf("NDTM sampling with the latent prior (the VAE-decoder stand-in) and the pixel prior (the "
               "UNet of prior.unet.*) (%d DDIM steps, %d of them guided with %d Adam steps each; the ndtm.* "
               "defaults otherwise), libtorch %d thread%s, BLAS 1 (fiberlab ndtm's setting); "
               "seconds per sample (wall clock; cpu: the process's own CPU time, user + system, which "
               "leaves out the time its core ran other processes):\n", ndtm_steps, guided, go.inner, threads,
               threads == 1 ? "" : "s");
        printf("%-6s %5s %6s %12s %12s %7s %9s %9s %9s %9s %9s %9s %10s %9s %10s\n", "prior", "batch", "steps",
               "fiberlab", "pytorch", "ratio", "cpu", "cpu_py", "cpu_ratio", "params", "params_py", "peakMiB",
               "peakMiB_py", "riseMiB", "riseMiB_py");
        int met = 1;
        for (int i = first_ndtm; i < n; i++) {
            const bench_case *k = &cases[i];
            double mo = bench_median(ours[i], reps), mp = bench_median(py[i], reps), ratio = mo / mp;
            double co = bench_median(cpu_ours[i], reps), cp = bench_median(cpu_py[i], reps);
            printf("%-6s %5d %6d %12.5f %12.5f %6.2fx %9.5f %9.5f %8.2fx %9lld %9lld %9.0f %10.0f %9.0f %10.0f\n",
                   k->prior, k->batch, k->steps, 1 / mo, 1 / mp, ratio, co, cp, cp / co, last_ours[i].params,
                   last_py[i].params,
                   peak_ours[i] / 1024.0, peak_py[i] / 1024.0, rise_ours[i] / 1024.0, rise_py[i] / 1024.0);
            if (last_ours[i].params != last_py[i].params) {
                fprintf(stderr, "bench_families: ndtm, %s prior: parameter counts differ: ours %lld, Python %lld\n",
                        k->prior, last_ours[i].params, last_py[i].params);
                rc = 1;
            }
            if (ratio < 1.2) met = 0;
        }
        printf("goal: NDTM >= 1.2x at batch 64 and 256, each prior -> %s\n", met ? "met" : "NOT met");
        char path[4200];
        snprintf(path, sizeof path, "%s/weights.h5", ndtm_dir);
        remove(path);
        snprintf(path, sizeof path, "%s/inputs.h5", ndtm_dir);
        remove(path);
        snprintf(path, sizeof path, "%s/pixel.h5", ndtm_dir);
        remove(path);
        rmdir(ndtm_dir);
    }
    return rc;
}
