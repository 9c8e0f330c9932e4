/* The priors of NDTM: their keys; the latent diffusion prior's training on the VAE's
 * latents, report and cache; the user's TorchScript prior. */
#include "trainers/prior.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "architectures/timenet.h"
#include "core/colorlaw.h"
#include "core/log.h"
#include "datasets/colormnist.h"
#include "trainers/model_cache.h"

const fl_key fl_keys_prior[] = {
    FL_TIMENET_KEYS("prior"),
    {"prior.seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of the prior's initialisation, batches, noise and report samples."},
    {"prior.steps", FL_KEY_INT, "6000", 1, 1e9, NULL, "Optimizer steps of the prior's training."},
    {"prior.lr", FL_KEY_NUM, "2e-3", 0, 10, NULL,
     "Peak learning rate of the prior's training (one-cycle schedule)."},
    {"prior.batch_size", FL_KEY_INT, "256", 1, 1e6, NULL, "Mini-batch size of the prior's training."},
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
     "β schedule from 1e-4 to prior.beta_max of prior.T steps. Empty: the latent prior."},
    FL_KEYS_END,
};

struct fl_prior {
    fl_prior_space space;
    fl_diff *m;              /* the latent prior's ε-network and schedule */
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

ct_tensor *fl_prior_eps(void *ctx, const ct_tensor *x, int t)
{
    const fl_prior *p = ctx;
    return p->script ? script_eps(p, x, t) : fl_diff_eps_uncond(p->m, x, t);
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

/* DDPM's loss on the VAE means of a batch of colored images. */
static ct_tensor *train_step(void *ctx, const fl_batch *b, ct_gen *noise, fl_terms *terms)
{
    fl_prior *p = ctx;
    bool prev = ct_set_grad_enabled(false);
    ct_tensor *u = fl_vae_encode(p->vae, b->colored);                   /* (B, D) */
    ct_set_grad_enabled(prev);
    ct_tensor *loss = fl_diff_ddpm_loss(p->m, u, fl_prior_no_cond(b->size), noise);
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
    float *colors = malloc((size_t)n * 3 * sizeof *colors);
    int rc = colors && g ? 0 : fl_fail("out of memory");
    for (int64_t i = 0; i < n && !rc; i += 500) {
        ct_scope *s = ct_scope_begin();
        int64_t len = i + 500 > n ? n - i : 500;
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

static const char *const extra_keys[] = {"vae"};

static fl_cached cached_spec(fl_prior *p, int dim)
{
    return (fl_cached){
        .name = "prior-latent",
        .section = "prior",
        .format = FL_PRIOR_FORMAT,
        .extra_keys = extra_keys,
        .n_extra_keys = 1,
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
    fl_cached m = cached_spec(&p, (int)fl_cfg_int(c, "vae.latent"));
    fl_config *own;
    if (prior_config(c, &own)) return -1;
    int rc = fl_cached_path(own ? own : c, &m, false, buf, n, NULL);
    fl_config_free(own);
    return rc;
}

/* The prior's settings that the schema's bounds cannot check. */
static int check(const fl_config *c)
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

int fl_prior_open(const fl_config *c, const fl_dataset *ds, fl_vae *vae, fl_prior **out)
{
    *out = NULL;
    if (check(c)) return -1;
    fl_prior *p = calloc(1, sizeof *p);
    if (!p) return fl_fail("out of memory");
    p->vae = vae;
    p->seed = (uint64_t)fl_cfg_int(c, "prior.seed");
    p->report_samples = (int)fl_cfg_int(c, "prior.report_samples");
    p->report_steps = (int)fl_cfg_int(c, "prior.report_steps");
    p->report_eta = fl_cfg_num(c, "prior.report_eta");
    if (*fl_cfg_str(c, "prior.script")) {
        if (open_script(p, c)) {
            fl_prior_free(p);
            return -1;
        }
        for (int k = 0; k < 3; k++) p->rep.color.kl[k] = p->rep.color.w1[k] = NAN;
        p->rep.color.kl_mean = p->rep.color.w1_mean = NAN;
        *out = p;
        return 0;
    }
    if (!vae) {
        fl_prior_free(p);
        return fl_fail("prior: the latent prior needs the fiber VAE");
    }
    p->space = FL_PRIOR_LATENT;
    p->ps = ct_params_new();
    int dim = fl_vae_dim(vae);
    p->dim = dim;
    p->T = (int)fl_cfg_int(c, "prior.T");
    fl_diff_spec s = {.net = {.dim = dim,
                              .cond_dim = 0,
                              .embed = (int)fl_cfg_int(c, "prior.time_embed"),
                              .hidden = (int)fl_cfg_int(c, "prior.hidden"),
                              .n_blocks = (int)fl_cfg_int(c, "prior.blocks"),
                              .n_layers = (int)fl_cfg_int(c, "prior.layers"),
                              .act = fl_act_parse(fl_cfg_str(c, "prior.activation"))},
                      .T = (int)fl_cfg_int(c, "prior.T"),
                      .cosine = false,
                      .beta_max = fl_cfg_num(c, "prior.beta_max"),
                      .steps = p->report_steps,
                      .eta = p->report_eta};
    ct_gen *g = ct_gen_new(p->seed ^ 0x91e0ull);
    p->m = p->ps ? fl_diff_new(&s, p->ps, "prior.eps", g) : NULL;
    ct_gen_free(g);
    int rc = p->m ? 0 : -1;
    fl_cached m = cached_spec(p, dim);
    m.ema_decay = fl_cfg_num(c, "prior.ema_decay");
    fl_cached_info info = {0};
    fl_config *own = NULL;
    fl_dataset *own_ds = NULL;
    if (!rc) rc = prior_config(c, &own);
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
