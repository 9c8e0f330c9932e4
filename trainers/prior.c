/* The priors of NDTM: their keys; the latent diffusion prior's training on the VAE's
 * latents, the pixel UNet prior's on the images, their report and cache; the user's
 * TorchScript prior. */
#include "trainers/prior.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "architectures/timenet.h"
#include "architectures/unet.h"
#include "core/colorlaw.h"
#include "core/log.h"
#include "datasets/colormnist.h"
#include "trainers/model_cache.h"

const fl_key fl_keys_prior[] = {
    FL_TIMENET_KEYS("prior"),
    {"prior.seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of the latent prior's initialisation, batches, noise and report samples (the pixel "
     "prior's: prior.unet.seed)."},
    {"prior.steps", FL_KEY_INT, "6000", 1, 1e9, NULL,
     "Optimizer steps of the latent prior's training (the pixel prior's: prior.unet.steps)."},
    {"prior.lr", FL_KEY_NUM, "2e-3", 0, 10, NULL,
     "Peak learning rate of the latent prior's training (one-cycle schedule)."},
    {"prior.batch_size", FL_KEY_INT, "256", 1, 1e6, NULL,
     "Mini-batch size of the latent prior's training."},
    {"prior.space", FL_KEY_STR, "\"latent\"", FL_NO_BOUNDS, "latent|pixel",
     "Where the trained prior lives: latent (a diffusion model on the fiber VAE's latent, "
     "decoded by the VAE; cheap on a CPU) or pixel (the paper's: a UNet on the 3×28×28 images "
     "scaled to [-1, 1], sized by prior.unet.*). Ignored when prior.script is set."},
    /* the pixel prior: its own training keys (a UNet step costs ~100× a latent MLP step) */
    {"prior.unet.widths", FL_KEY_INT_LIST, "[16, 32, 32]", 1, 4096, NULL,
     "Channels of the pixel prior's UNet at each resolution 28, 14, 7 (one entry a level, at "
     "most 3 for 28×28 images; the authors: [64, 128, 256]). Each divisible by "
     "prior.unet.groups."},
    {"prior.unet.blocks", FL_KEY_INT, "1", 1, 4, NULL,
     "Residual blocks per level of the UNet on the way down, blocks + 1 on the way up (DDPM's "
     "layout; the authors: 2)."},
    {"prior.unet.groups", FL_KEY_INT, "8", 1, 4096, NULL, "GroupNorm groups of the UNet's blocks."},
    {"prior.unet.time_embed", FL_KEY_INT, "32", 2, 4096, NULL,
     "Size of the UNet's sinusoidal time embedding (even); its MLP is 4 × the first width wide "
     "(DDPM)."},
    {"prior.unet.steps", FL_KEY_INT, "3000", 1, 1e9, NULL,
     "Optimizer steps of the pixel prior's training (the default: 8.5 min on a free Zen 5 "
     "core at ~6 steps/s, 15 min on a shared one; the authors: ~117k)."},
    {"prior.unet.lr", FL_KEY_NUM, "1e-3", 0, 10, NULL,
     "Peak learning rate of the pixel prior's training (one-cycle schedule)."},
    {"prior.unet.batch_size", FL_KEY_INT, "64", 1, 1e6, NULL,
     "Mini-batch size of the pixel prior's training."},
    {"prior.unet.seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of the pixel prior's initialisation, batches, noise and report samples."},
    {"prior.T", FL_KEY_INT, "1000", 2, 100000, NULL, "Diffusion steps T of the prior (the paper: 1000)."},
    {"prior.beta_max", FL_KEY_NUM, "0.02", 1e-4, 0.999, NULL,
     "End of the prior's linear β schedule from 1e-4 (the paper: 0.02)."},
    {"prior.ema_decay", FL_KEY_NUM, "0.999", 0, 0.999999, NULL,
     "Decay of the exponential moving average of the prior's weights, which becomes the "
     "prior (0: the last weights)."},
    {"prior.report_samples", FL_KEY_INT, "2000", 1, 1e7, NULL,
     "Decoded unconditional samples whose color KL and W1 against the exact law the prior "
     "reports after training."},
    {"prior.report_steps", FL_KEY_INT, "100", 1, 100000, NULL,
     "DDIM steps of the report's samples (at most prior.T)."},
    {"prior.report_eta", FL_KEY_NUM, "0.25", 0, 1, NULL, "DDIM η of the report's samples."},
    {"prior.variant", FL_KEY_STR, "\"correlated\"", FL_NO_BOUNDS, "correlated|ood",
     "Color law of the images the prior trains on: correlated (the benchmark's; NDTM) or ood "
     "(foreground and background independent; 'NDTM w/ OOD', colors out of distribution for "
     "the subject). The evaluation targets keep data.variant."},
    {"prior.script", FL_KEY_STR, "\"\"", FL_NO_BOUNDS, NULL,
     "A user's prior instead of the trained one: a TorchScript file (torch.jit.save) whose "
     "forward(x, t) takes images x (B, 3, 28, 28) scaled to [-1, 1] and the 0-based step t "
     "(B,) int64 in [0, prior.T) and returns the predicted noise of x's shape, on the linear "
     "β schedule from 1e-4 to prior.beta_max of prior.T steps. Empty: the trained prior of "
     "prior.space."},
    FL_KEYS_END,
};

struct fl_prior {
    fl_prior_space space;
    fl_diff *m;              /* the latent prior's ε-network and schedule */
    fl_unet *unet;           /* the pixel prior's ε-network */
    ct_tensor *abar_t;       /* the pixel prior's ᾱ_1 … ᾱ_T (T) in the float dtype, for training */
    ct_params *ps;
    ct_script *script;       /* the user's prior */
    double *abar;            /* its ᾱ_0 … ᾱ_T (owned); the latent prior's is m's */
    int T;
    int64_t dim;
    fl_vae *vae;             /* borrowed */
    int report_samples, report_steps;
    double report_eta;
    uint64_t seed;
    double report[8];        /* kl R, G, B, mean; w1 R, G, B, mean (the cache's report) */
    char path[4096];
    fl_prior_report rep;
};

void fl_prior_free(fl_prior *p)
{
    if (!p) return;
    fl_diff_free(p->m);
    fl_unet_free(p->unet);
    ct_free(p->abar_t);
    ct_params_free(p->ps);
    ct_script_free(p->script);
    free(p->abar);
    free(p);
}

fl_prior_space fl_prior_space_of(const fl_prior *p) { return p->space; }
int fl_prior_T(const fl_prior *p) { return p->T; }
int64_t fl_prior_dim(const fl_prior *p) { return p->dim; }
const double *fl_prior_abar(const fl_prior *p) { return p->m ? fl_diff_abar(p->m) : p->abar; }
double fl_prior_clamp(const fl_prior *p) { return p->space == FL_PRIOR_PIXEL ? 1 : 0; }
fl_vae *fl_prior_vae(const fl_prior *p) { return p->vae; }
const char *fl_prior_path(const fl_prior *p) { return p->path; }
ct_params *fl_prior_params(const fl_prior *p) { return p->ps; }
const fl_prior_report *fl_prior_report_of(const fl_prior *p) { return &p->rep; }

ct_tensor *fl_prior_no_cond(int64_t b) { return ct_zeros(CT_SHAPE(b, 0), ct_float_dtype()); }

/* The script's ε on states (B, D): reshaped to images, t as the 0-based step. */
static ct_tensor *script_eps(const fl_prior *p, const ct_tensor *x, int t)
{
    ct_scope *s = ct_scope_begin();
    int64_t b = ct_size(x, 0);
    ct_tensor *img = ct_reshape(x, CT_SHAPE(b, 3, 28, 28));
    ct_tensor *tt = ct_full(CT_SHAPE(b), t - 1, CT_I64);                         /* (B,) */
    const ct_tensor *in[2] = {img, tt};
    ct_tensor *out = NULL;
    int n_out = 0;
    ct_tensor *r = NULL;
    if (img && tt && ct_script_call(p->script, NULL, in, 2, &out, 1, &n_out) == 0) {
        if (ct_ndim(out) == 4 && ct_size(out, 0) == b && ct_size(out, 1) == 3 && ct_size(out, 2) == 28 &&
            ct_size(out, 3) == 28) {
            r = ct_scope_keep(s, ct_reshape(out, CT_SHAPE(b, p->dim)));
        } else {
            char d[128];
            ct_describe(out, d, sizeof d);
            fl_fail("prior.script: %s: returns %s for a (%lld, 3, 28, 28) batch; expected its shape",
                    p->path, d, (long long)b);
        }
    } else {
        fl_fail("prior.script: %s: fails on a (%lld, 3, 28, 28) batch with t (%lld,) int64: %s", p->path,
                (long long)b, (long long)b, ct_last_error());
    }
    ct_scope_end(s);
    return r;
}

/* The pixel prior's ε from its UNet in the v-parametrisation (Salimans & Ho 2022):
 * ε̂ = √(1 − ᾱ) x_t + √ᾱ · net(x_t, t/T), the network predicting v = √ᾱ ε − √(1 − ᾱ) x0.
 * Why: at large t the ε of an image is almost x_t itself, and its spatial mean (the
 * image's global color, which the sampler decides there) must come out exact — an error
 * δ in it moves x̂0 by δ √(1 − ᾱ)/√ᾱ. A plain ε-network, whose every branch and output go
 * through GroupNorm, cannot pass that mean through: trained so (format 1, 3000 steps) its
 * ε's mean was off by the noise's own 0.036 at every t, and its samples collapsed to gray
 * backgrounds (KL 2.7). Here the mean of x_t passes through exactly; the loss is still
 * DDPM's on ε. x (B, 3, 28, 28), ab = ᾱ_t (B, 1, 1, 1) or a number when ab_t is NULL. */
static ct_tensor *unet_eps_images(const fl_prior *p, const ct_tensor *x, const ct_tensor *tt,
                                  const ct_tensor *ab_t, double ab)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *v = fl_unet_forward(p->unet, x, tt);                              /* (B, 3, 28, 28) */
    ct_tensor *e = ab_t ? ct_add(ct_mul(ct_sqrt(ct_rsubs(ab_t, 1)), x), ct_mul(ct_sqrt(ab_t), v))
                        : ct_axpy(ct_muls(x, sqrt(1 - ab)), sqrt(ab), v);
    ct_tensor *r = ct_scope_keep(s, e);
    ct_scope_end(s);
    return r;
}

/* The UNet's ε on states (B, D): reshaped to images, t as t/T. */
static ct_tensor *unet_eps(const fl_prior *p, const ct_tensor *x, int t)
{
    ct_scope *s = ct_scope_begin();
    int64_t b = ct_size(x, 0);
    ct_tensor *img = ct_reshape(x, CT_SHAPE(b, 3, 28, 28));                      /* (B, 3, 28, 28) */
    ct_tensor *tt = ct_full(CT_SHAPE(b, 1), (double)t / p->T, ct_dtype_of(x));   /* (B, 1) */
    ct_tensor *e = unet_eps_images(p, img, tt, NULL, p->abar[t]);
    ct_tensor *r = ct_scope_keep(s, ct_reshape(e, CT_SHAPE(b, p->dim)));
    ct_scope_end(s);
    return r;
}

ct_tensor *fl_prior_eps(void *ctx, const ct_tensor *x, int t)
{
    const fl_prior *p = ctx;
    if (p->script) return script_eps(p, x, t);
    return p->unet ? unet_eps(p, x, t) : fl_diff_eps_uncond(p->m, x, t);
}

ct_tensor *fl_prior_decode(const fl_prior *p, const ct_tensor *x)
{
    if (p->space == FL_PRIOR_LATENT) return fl_vae_decode(p->vae, x);
    return ct_reshape(ct_muls(ct_adds(x, 1), 0.5), CT_SHAPE(-1, 3, 28, 28));
}

ct_tensor *fl_prior_encode(const fl_prior *p, const ct_tensor *img)
{
    if (p->space == FL_PRIOR_LATENT) return fl_vae_encode(p->vae, img);
    return ct_adds(ct_muls(ct_flatten(img, 1), 2), -1);
}

ct_tensor *fl_prior_sample(const fl_prior *p, int64_t n, int S, double eta, ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x_T = ct_randn(CT_SHAPE(n, p->dim), ct_float_dtype(), g);          /* (n, D) */
    ct_tensor *x = ct_scope_keep(s, fl_ddim_sample(fl_prior_eps, (void *)p, fl_prior_abar(p), p->T, x_T, S,
                                                   eta, FL_DDIM_LEADING, fl_prior_clamp(p), g));
    ct_scope_end(s);
    return x;
}

/* DDPM's loss of the UNet on images x0 (B, 3, 28, 28) in [−1, 1]: t ~ U{1 … T},
 * ε ~ N(0, I), the mean of (ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t/T) − ε)² (as fl_diff_ddpm_loss). */
static ct_tensor *unet_ddpm_loss(const fl_prior *p, const ct_tensor *x0, ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    int64_t b = ct_size(x0, 0);
    ct_tensor *t = ct_randint(p->T, CT_SHAPE(b), g);                             /* (B) I64: t − 1 */
    ct_tensor *ab = ct_reshape(ct_index_select(p->abar_t, 0, t), CT_SHAPE(b, 1, 1, 1));
    ct_tensor *eps = ct_randn_like(x0, g);                                       /* (B, 3, 28, 28) */
    ct_tensor *x_t = ct_add(ct_mul(ct_sqrt(ab), x0), ct_mul(ct_sqrt(ct_rsubs(ab, 1)), eps));
    ct_tensor *tt = ct_muls(ct_adds(ct_unsqueeze(ct_to_dtype(t, ct_dtype_of(x0)), 1), 1),
                            1.0 / p->T);                                         /* (B, 1) */
    ct_tensor *loss = ct_scope_keep(s, ct_mse(unet_eps_images(p, x_t, tt, ab, 0), eps));
    ct_scope_end(s);
    return loss;
}

ct_tensor *fl_prior_ddpm_loss(const fl_prior *p, const ct_tensor *img, ct_gen *g)
{
    if (p->script) return fl_fail("prior.script: %s: a user's prior has no training loss here", p->path), NULL;
    ct_scope *s = ct_scope_begin();
    ct_tensor *loss;
    if (p->unet) {
        loss = unet_ddpm_loss(p, ct_adds(ct_muls(img, 2), -1), g);
    } else {
        bool prev = ct_set_grad_enabled(false);
        ct_tensor *u = fl_vae_encode(p->vae, img);                               /* (B, D) */
        ct_set_grad_enabled(prev);
        loss = fl_diff_ddpm_loss(p->m, u, fl_prior_no_cond(ct_size(img, 0)), g);
    }
    ct_tensor *r = ct_scope_keep(s, loss);
    ct_scope_end(s);
    return r;
}

/* DDPM's loss on a batch of colored images in the prior's space. */
static ct_tensor *train_step(void *ctx, const fl_batch *b, ct_gen *noise, fl_terms *terms)
{
    fl_prior *p = ctx;
    ct_tensor *loss = fl_prior_ddpm_loss(p, b->colored, noise);
    if (!loss) {
        fl_fail_ctx("prior");
        return NULL;
    }
    fl_terms_add(terms, "mse", ct_item(loss));
    return loss;
}

/* The report: colors of decoded samples against the law. */
static int measure(void *ctx, const fl_dataset *ds)
{
    (void)ds;
    fl_prior *p = ctx;
    ct_gen *g = ct_gen_new(p->seed ^ 0x9e9047ull);
    int64_t n = p->report_samples;
    /* the UNet's activations of 500 images overflow the caches: 100 at a time runs faster */
    int64_t chunk = p->unet ? 100 : 500;
    float *colors = malloc((size_t)n * 3 * sizeof *colors);
    int rc = colors && g ? 0 : fl_fail("out of memory");
    for (int64_t i = 0; i < n && !rc; i += chunk) {
        ct_scope *s = ct_scope_begin();
        int64_t len = i + chunk > n ? n - i : chunk;
        ct_tensor *x = fl_prior_sample(p, len, p->report_steps, p->report_eta, g);   /* (len, D) */
        ct_tensor *bg = fl_background(fl_prior_decode(p, x));                        /* (len, 3) */
        ct_tensor *bg32 = ct_to_dtype(bg, CT_F32);
        if (!bg32 || ct_to_data(bg32, colors + 3 * i, (size_t)len * 3 * sizeof *colors))
            rc = fl_fail_ctx("prior: report samples");
        ct_scope_end(s);
    }
    fl_colorlaw law = fl_colorlaw_paper();
    if (!rc) rc = fl_color_metrics_of(&law, colors, n, 100, &p->rep.color);
    for (int k = 0; k < 3 && !rc; k++) p->report[k] = p->rep.color.kl[k], p->report[4 + k] = p->rep.color.w1[k];
    p->report[3] = p->rep.color.kl_mean;
    p->report[7] = p->rep.color.w1_mean;
    p->rep.measured = rc == 0;
    free(colors);
    ct_gen_free(g);
    return rc;
}

/* Bumped whenever the network or its training change what a setting produces. */
#define FL_PRIOR_FORMAT 1
#define FL_PRIOR_PIXEL_FORMAT 2   /* 2: the v-parametrisation (unet_eps_images) */

static const char *const extra_keys[] = {"vae"};
/* The pixel prior's section is prior.unet; of the rest of prior.* it reads these (not the
 * latent prior's network nor its training, nor vae.*). */
static const char *const pixel_extra_keys[] = {"prior.T", "prior.beta_max", "prior.ema_decay",
                                               "prior.report_samples", "prior.report_steps",
                                               "prior.report_eta", "prior.variant"};

static fl_cached cached_spec(fl_prior *p, bool pixel, int dim)
{
    return (fl_cached){
        .name = pixel ? "prior-pixel" : "prior-latent",
        .section = pixel ? "prior.unet" : "prior",
        .format = pixel ? FL_PRIOR_PIXEL_FORMAT : FL_PRIOR_FORMAT,
        .extra_keys = pixel ? pixel_extra_keys : extra_keys,
        .n_extra_keys = pixel ? (int)(sizeof pixel_extra_keys / sizeof *pixel_extra_keys) : 1,
        .noise_salt = 0x9a1e7ull,
        .recolor = true,
        .ema_decay = 0,          /* set by the caller */
        .ps = p->ps,
        .ctx = p,
        .step_loss = train_step,
        .measure = measure,
        .n_ids = 1,
        .ids = {{"dim", dim}},
        .n_report = 8,
        .report = {{"kl_r", &p->report[0]}, {"kl_g", &p->report[1]}, {"kl_b", &p->report[2]},
                   {"kl_mean", &p->report[3]}, {"w1_r", &p->report[4]}, {"w1_g", &p->report[5]},
                   {"w1_b", &p->report[6]}, {"w1_mean", &p->report[7]}},
    };
}

/* A prior of another color law (prior.variant) than the targets' (data.variant) trains on
 * the same digits colored by that law: the config it is cached and trained under is c
 * with data.variant = prior.variant. *own: that copy (the caller frees it), or NULL when
 * c is it already. */
static int prior_config(const fl_config *c, fl_config **own)
{
    *own = NULL;
    const char *variant = fl_cfg_str(c, "prior.variant");
    if (strcmp(variant, fl_cfg_str(c, "data.variant")) == 0) return 0;
    *own = fl_config_copy(c);
    if (!*own || fl_cfg_set_str(*own, "data.variant", variant)) {
        fl_config_free(*own);
        *own = NULL;
        return fl_fail("prior.variant=%s: out of memory", variant);
    }
    return 0;
}

fl_diff_spec fl_prior_latent_spec(const fl_config *c, int dim)
{
    return (fl_diff_spec){.net = {.dim = dim,
                                  .cond_dim = 0,
                                  .embed = (int)fl_cfg_int(c, "prior.time_embed"),
                                  .hidden = (int)fl_cfg_int(c, "prior.hidden"),
                                  .n_blocks = (int)fl_cfg_int(c, "prior.blocks"),
                                  .n_layers = (int)fl_cfg_int(c, "prior.layers"),
                                  .act = fl_act_parse(fl_cfg_str(c, "prior.activation"))},
                          .T = (int)fl_cfg_int(c, "prior.T"),
                          .cosine = false,
                          .beta_max = fl_cfg_num(c, "prior.beta_max"),
                          .steps = (int)fl_cfg_int(c, "prior.report_steps"),
                          .eta = fl_cfg_num(c, "prior.report_eta")};
}

int fl_prior_measure(fl_prior *p)
{
    if (p->rep.measured) return 0;
    bool prev = ct_set_grad_enabled(false);
    int rc = measure(p, NULL);
    ct_set_grad_enabled(prev);
    return rc ? fl_fail_ctx("prior %s", p->path) : 0;
}

int fl_prior_cache_path(const fl_config *c, char *buf, size_t n)
{
    if (*fl_cfg_str(c, "prior.script")) {
        snprintf(buf, n, "%s", fl_cfg_str(c, "prior.script"));
        return 0;
    }
    fl_prior p = {0};
    bool pixel = strcmp(fl_cfg_str(c, "prior.space"), "pixel") == 0;
    fl_cached m = cached_spec(&p, pixel, pixel ? 3 * 28 * 28 : (int)fl_cfg_int(c, "vae.latent"));
    fl_config *own;
    if (prior_config(c, &own)) return -1;
    int rc = fl_cached_path(own ? own : c, &m, false, buf, n, NULL);
    fl_config_free(own);
    return rc;
}

/* The pixel prior's UNet from prior.unet.*, for 3 × 28 × 28 images; -1 and a message
 * naming the key when it cannot be built. */
int fl_prior_unet_spec(const fl_config *c, fl_unet_spec *s)
{
    memset(s, 0, sizeof *s);
    s->channels = 3;
    s->height = s->width = 28;
    s->levels = fl_cfg_len(c, "prior.unet.widths");
    int max_levels = 1;
    while (max_levels < FL_UNET_MAX_LEVELS && 28 % (1 << max_levels) == 0) max_levels++;
    if (s->levels < 1 || s->levels > max_levels)
        return fl_fail("prior.unet.widths: %d levels; 28×28 images halve to 14 and 7, so 1 to %d "
                       "entries", s->levels, max_levels);
    s->blocks = (int)fl_cfg_int(c, "prior.unet.blocks");
    s->groups = (int)fl_cfg_int(c, "prior.unet.groups");
    for (int i = 0; i < s->levels; i++) {
        s->widths[i] = (int)fl_cfg_list_num(c, "prior.unet.widths", i);
        if (s->widths[i] % s->groups)
            return fl_fail("prior.unet.groups: %d GroupNorm groups do not divide the width %d of "
                           "prior.unet.widths[%d]", s->groups, s->widths[i], i);
    }
    s->embed = (int)fl_cfg_int(c, "prior.unet.time_embed");
    if (s->embed % 2) return fl_fail("prior.unet.time_embed: %d is odd (sin and cos pairs)", s->embed);
    s->time_dim = 4 * s->widths[0];
    return fl_unet_check(s, "prior.unet");
}

int fl_prior_check(const fl_config *c)
{
    int T = (int)fl_cfg_int(c, "prior.T");
    int64_t blocks = fl_cfg_int(c, "prior.blocks"), layers = fl_cfg_int(c, "prior.layers");
    if ((blocks > 0 ? blocks * layers : layers) > FL_MLP_MAX)
        return fl_fail("prior.blocks: %lld blocks of %lld layers, at most %d layers in all",
                       (long long)blocks, (long long)layers, FL_MLP_MAX);
    if (fl_cfg_int(c, "prior.time_embed") % 2)
        return fl_fail("prior.time_embed: %lld is odd (sin and cos pairs)",
                       (long long)fl_cfg_int(c, "prior.time_embed"));
    if (fl_cfg_int(c, "prior.report_steps") > T)
        return fl_fail("prior.report_steps: %lld DDIM steps, more than prior.T = %d",
                       (long long)fl_cfg_int(c, "prior.report_steps"), T);
    fl_unet_spec us;
    if (strcmp(fl_cfg_str(c, "prior.space"), "pixel") == 0 && fl_prior_unet_spec(c, &us)) return -1;
    return 0;
}

/* The user's TorchScript prior: loaded, its schedule filled, and tried on one image. */
static int open_script(fl_prior *p, const fl_config *c)
{
    const char *path = fl_cfg_str(c, "prior.script");
    snprintf(p->path, sizeof p->path, "%s", path);
    p->space = FL_PRIOR_PIXEL;
    p->dim = 3 * 28 * 28;
    p->T = (int)fl_cfg_int(c, "prior.T");
    if (access(path, R_OK) != 0) return fl_fail("prior.script: %s: cannot read the file", path);
    p->abar = malloc(((size_t)p->T + 1) * sizeof *p->abar);
    if (!p->abar) return fl_fail("out of memory");
    fl_noise_schedule_fill(p->abar, p->T, false, fl_cfg_num(c, "prior.beta_max"));
    p->script = ct_script_load(path, ct_default_device());
    if (!p->script) return fl_fail("prior.script: %s: %s", path, ct_last_error());
    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    ct_tensor *eps = fl_prior_eps(p, ct_zeros(CT_SHAPE(1, p->dim), ct_float_dtype()), p->T);
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    return eps ? 0 : -1;
}

/* The latent prior's network (an unconditional fl_diff on the VAE's latent). */
static int build_latent(fl_prior *p, const fl_config *c)
{
    p->space = FL_PRIOR_LATENT;
    p->dim = fl_vae_dim(p->vae);
    fl_diff_spec s = fl_prior_latent_spec(c, (int)p->dim);
    ct_gen *g = ct_gen_new(p->seed ^ 0x91e0ull);
    p->m = fl_diff_new(&s, p->ps, "prior.eps", g);
    ct_gen_free(g);
    return p->m ? 0 : -1;
}

/* The pixel prior's network (the UNet of prior.unet.*) and its schedule. */
static int build_pixel(fl_prior *p, const fl_config *c)
{
    p->space = FL_PRIOR_PIXEL;
    p->dim = 3 * 28 * 28;
    p->seed = (uint64_t)fl_cfg_int(c, "prior.unet.seed");
    fl_unet_spec s;
    if (fl_prior_unet_spec(c, &s)) return -1;
    p->abar = malloc(((size_t)p->T + 1) * sizeof *p->abar);
    if (!p->abar) return fl_fail("out of memory");
    fl_noise_schedule_fill(p->abar, p->T, false, fl_cfg_num(c, "prior.beta_max"));
    ct_tensor *a = ct_from_data(p->abar + 1, CT_SHAPE(p->T), CT_F64);            /* (T) */
    p->abar_t = ct_unscope(ct_to_dtype(a, ct_float_dtype()));
    ct_free(a);
    ct_gen *g = ct_gen_new(p->seed ^ 0x91e0ull);
    p->unet = p->abar_t ? fl_unet_new(&s, p->ps, "prior.eps", g) : NULL;
    ct_gen_free(g);
    return p->unet ? 0 : fl_fail_ctx("prior.unet");
}

int fl_prior_new(const fl_config *c, fl_vae *vae, fl_prior **out)
{
    *out = NULL;
    if (fl_prior_check(c)) return -1;
    fl_prior *p = calloc(1, sizeof *p);
    if (!p) return fl_fail("out of memory");
    p->vae = vae;
    p->seed = (uint64_t)fl_cfg_int(c, "prior.seed");
    p->report_samples = (int)fl_cfg_int(c, "prior.report_samples");
    p->report_steps = (int)fl_cfg_int(c, "prior.report_steps");
    p->report_eta = fl_cfg_num(c, "prior.report_eta");
    for (int k = 0; k < 3; k++) p->rep.color.kl[k] = p->rep.color.w1[k] = NAN;
    p->rep.color.kl_mean = p->rep.color.w1_mean = NAN;
    if (*fl_cfg_str(c, "prior.script")) {
        if (open_script(p, c)) {
            fl_prior_free(p);
            return -1;
        }
        *out = p;
        return 0;
    }
    bool pixel = strcmp(fl_cfg_str(c, "prior.space"), "pixel") == 0;
    if (!vae && !pixel) {
        fl_prior_free(p);
        return fl_fail("prior: the latent prior needs the fiber VAE");
    }
    p->ps = ct_params_new();
    p->T = (int)fl_cfg_int(c, "prior.T");
    if (!p->ps || (pixel ? build_pixel(p, c) : build_latent(p, c))) {
        if (!p->ps) fl_fail("out of memory");
        fl_prior_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

int fl_prior_open(const fl_config *c, const fl_dataset *ds, fl_vae *vae, fl_prior **out)
{
    *out = NULL;
    fl_prior *p;
    if (fl_prior_new(c, vae, &p)) return -1;
    if (p->script) return *out = p, 0;
    bool pixel = p->space == FL_PRIOR_PIXEL;
    fl_cached m = cached_spec(p, pixel, (int)p->dim);
    m.ema_decay = fl_cfg_num(c, "prior.ema_decay");
    fl_cached_info info = {0};
    fl_config *own = NULL;
    fl_dataset *own_ds = NULL;
    int rc = prior_config(c, &own);
    if (!rc && own && fl_dataset_open(own, &own_ds))
        rc = fl_fail_ctx("prior.variant=%s", fl_cfg_str(c, "prior.variant"));
    if (!rc) rc = fl_cached_open(own ? own : c, own_ds ? own_ds : ds, &m, p->path, sizeof p->path, &info);
    fl_dataset_free(own_ds);
    fl_config_free(own);
    if (rc) {
        fl_prior_free(p);
        return -1;
    }
    p->rep.trained = info.trained;
    p->rep.steps = info.steps;
    p->rep.train_seconds = info.train_seconds;
    for (int k = 0; k < 3; k++) p->rep.color.kl[k] = p->report[k], p->rep.color.w1[k] = p->report[4 + k];
    p->rep.color.kl_mean = p->report[3];
    p->rep.color.w1_mean = p->report[7];
    p->rep.measured = true;
    *out = p;
    return 0;
}
