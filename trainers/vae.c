/* The VAE of colored images: training on the shared loop, standardization of the
 * latent, the cache. */
#include "trainers/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "architectures/conv.h"
#include "core/log.h"
#include "core/schema.h"
#include "datasets/batch.h"
#include "trainers/loop.h"
#include "trainers/model_cache.h"

const fl_key fl_keys_vae[] = {
    {"vae.latent", FL_KEY_INT, "54", 1, 4096, NULL,
     "Latent dimension D of the VAE whose latents the fiber models learn (the paper: 54)."},
    {"vae.seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of the VAE's initialisation, batches and noise (its own, so that runs with other "
     "seeds reuse one trained VAE)."},
    {"vae.steps", FL_KEY_INT, "2400", 1, 1e9, NULL, "Optimizer steps of the VAE's training."},
    {"vae.lr", FL_KEY_NUM, "6e-3", 0, 10, NULL,
     "Peak learning rate of the VAE's training (one-cycle schedule)."},
    {"vae.batch_size", FL_KEY_INT, "64", 1, 1e6, NULL, "Mini-batch size of the VAE's training."},
    {"vae.recon_weight", FL_KEY_NUM, "50", 0, 1e9, NULL,
     "Weight of the summed squared pixel error Σ (x̂ − x)² per image (1/(2σ²) of a Gaussian "
     "likelihood with pixel noise σ; 50 is σ = 0.1)."},
    {"vae.kl_weight", FL_KEY_NUM, "1", 0, 1e6, NULL,
     "Weight β of KL(q(u|x) ‖ N(0, I)) per image."},
    {"vae.widths", FL_KEY_INT_LIST, "[32, 64]", 1, 4096, NULL,
     "Channels after each stride-2 convolution of the VAE's encoder (28 -> 14 -> 7); the "
     "decoder mirrors them."},
    {"vae.extra", FL_KEY_INT, "0", 0, 2, NULL,
     "Stride-1 3 × 3 convolutions after each stage of the VAE's networks."},
    {"vae.hidden", FL_KEY_INT, "256", 0, 65536, NULL,
     "Width of a hidden linear layer between the convolutions and the latent (0: none)."},
    {"vae.res_blocks", FL_KEY_INT, "0", 0, 32, NULL,
     "Residual blocks of vae.res_layers linear layers of width vae.hidden after the hidden "
     "layer of the encoder and of the decoder (the authors' residual MLP: 3 blocks of 3 "
     "layers of 512); 0: none. Needs vae.hidden > 0."},
    {"vae.res_layers", FL_KEY_INT, "2", 1, 32, NULL,
     "Linear layers in each residual block of the VAE (vae.res_blocks × vae.res_layers ≤ 32)."},
    {"vae.input_noise", FL_KEY_NUM, "0", 0, 1, NULL,
     "Standard deviation of Gaussian noise added to the encoder's input images during "
     "training (the reconstruction target stays clean; the authors: 0.01)."},
    {"vae.recolor", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "Draw fresh colors for every training image at each epoch of the VAE's training (as "
     "data.recolor_each_epoch, which also does it), so that every epoch shows each digit in "
     "a new coloring instead of its stored one."},
    {"vae.activation", FL_KEY_STR, "\"silu\"", FL_NO_BOUNDS, "silu|relu|tanh|gelu|leaky_relu",
     "Activation of the VAE's networks."},
    FL_KEYS_END,
};

struct fl_vae {
    int dim;
    ct_params *ps;
    fl_conv_encoder enc;   /* (B, 3, 28, 28) -> (B, 2D): mean, log-variance */
    fl_conv_decoder dec;   /* (B, D) -> (B, 3, 28, 28) logits */
    ct_tensor *m, *s;      /* buffers (D): standardization of the encoder mean */
    double recon_weight, kl_weight, input_noise;
    bool recolor;
    char path[4096];
    fl_vae_report report;
};

void fl_vae_free(fl_vae *v)
{
    if (!v) return;
    ct_params_free(v->ps);
    free(v);
}

int fl_vae_dim(const fl_vae *v) { return v->dim; }
const char *fl_vae_path(const fl_vae *v) { return v->path; }
const fl_vae_report *fl_vae_report_of(const fl_vae *v) { return &v->report; }

/* The encoder's mean and log-variance, (B, D) each. */
static void posterior(fl_vae *v, const ct_tensor *x, ct_tensor **mu, ct_tensor **logvar)
{
    ct_tensor *h = fl_conv_encoder_forward(&v->enc, x);          /* (B, 2D) */
    *mu = ct_narrow(h, 1, 0, v->dim);                             /* (B, D) */
    if (logvar) *logvar = ct_clamp(ct_narrow(h, 1, v->dim, v->dim), -12.0, 8.0); /* (B, D) */
}

ct_tensor *fl_vae_encode(fl_vae *v, const ct_tensor *x)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *mu;
    posterior(v, x, &mu, NULL);
    ct_tensor *u = ct_scope_keep(sc, ct_div(ct_sub(mu, v->m), v->s));   /* (B, D) */
    ct_scope_end(sc);
    return u;
}

ct_tensor *fl_vae_decode(fl_vae *v, const ct_tensor *u)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *z = ct_add(ct_mul(u, v->s), v->m);                        /* (B, D) */
    ct_tensor *x = ct_scope_keep(sc, ct_sigmoid(fl_conv_decoder_forward(&v->dec, z))); /* (B, 3, 28, 28) */
    ct_scope_end(sc);
    return x;
}

ct_tensor *fl_vae_reconstruct(fl_vae *v, const ct_tensor *x)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *r = ct_scope_keep(sc, fl_vae_decode(v, fl_vae_encode(v, x)));  /* (B, 3, 28, 28) */
    ct_scope_end(sc);
    return r;
}

ct_tensor *fl_vae_sample_prior(fl_vae *v, int64_t n, ct_gen *g)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *e = ct_randn(CT_SHAPE(n, v->dim), ct_dtype_of(v->m), g);   /* (n, D) */
    ct_tensor *x = ct_scope_keep(sc, ct_sigmoid(fl_conv_decoder_forward(&v->dec, e))); /* (n, 3, 28, 28) */
    ct_scope_end(sc);
    return x;
}

ct_tensor *fl_vae_prior_u(fl_vae *v, int64_t n, ct_gen *g)
{
    ct_scope *sc = ct_scope_begin();
    ct_tensor *e = ct_randn(CT_SHAPE(n, v->dim), ct_dtype_of(v->m), g);   /* (n, D) */
    ct_tensor *u = ct_scope_keep(sc, ct_div(ct_sub(e, v->m), v->s));      /* (n, D) */
    ct_scope_end(sc);
    return u;
}

static ct_tensor *encode_fn(void *ctx, const ct_tensor *x) { return fl_vae_encode(ctx, x); }

/* The raw (not standardized) encoder mean of a batch, (B, D). */
static ct_tensor *raw_mean_fn(void *ctx, const ct_tensor *x)
{
    ct_tensor *mu;
    posterior(ctx, x, &mu, NULL);
    return mu;
}

ct_tensor *fl_vae_encode_all(fl_vae *v, const ct_tensor *x, int64_t batch)
{
    return fl_forward_batched(encode_fn, v, x, batch, v->dim);
}

/* ---- training -------------------------------------------------------------------- */

static ct_tensor *train_step(void *ctx, const fl_batch *x, ct_gen *noise, fl_terms *terms)
{
    fl_vae *v = ctx;
    double B = (double)x->size;
    ct_tensor *mu, *lv;
    const ct_tensor *in = x->colored;                                         /* (B, 3, 28, 28) */
    if (v->input_noise > 0)
        in = ct_add(in, ct_muls(ct_randn_like(in, noise), v->input_noise));
    posterior(v, in, &mu, &lv);                                               /* (B, D) each */
    ct_tensor *eps = ct_randn(CT_SHAPE(x->size, v->dim), ct_dtype_of(x->colored), noise);
    ct_tensor *z = ct_add(mu, ct_mul(ct_exp(ct_muls(lv, 0.5)), eps));         /* (B, D) */
    ct_tensor *r = ct_sigmoid(fl_conv_decoder_forward(&v->dec, z));           /* (B, 3, 28, 28) */
    ct_tensor *rec = ct_muls(ct_sum(ct_square(ct_sub(r, x->colored))), 1.0 / B); /* () */
    ct_tensor *kl = ct_muls(ct_sum(ct_sub(ct_add(ct_square(mu), ct_exp(lv)), ct_adds(lv, 1.0))),
                            0.5 / B);                                         /* () */
    ct_tensor *loss = ct_add(ct_muls(rec, v->recon_weight), ct_muls(kl, v->kl_weight));
    if (!loss) {
        fl_fail_ctx("vae");
        return NULL;
    }
    fl_terms_add(terms, "sse", ct_item(rec));
    fl_terms_add(terms, "kl", ct_item(kl));
    return loss;
}

/* m and s from the encoder means of the training set; the report on the test split. */
static int standardize_and_measure(void *ctx, const fl_dataset *ds)
{
    fl_vae *v = ctx;
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    int rc = 0;
    int64_t n_train = fl_dataset_count(ds, FL_TRAIN), n_test = fl_dataset_count(ds, FL_TEST);
    fl_batch tr, te;
    if (fl_dataset_slice(ds, FL_TRAIN, 0, n_train, &tr)) rc = -1;
    ct_tensor *mu = rc ? NULL : fl_forward_batched(raw_mean_fn, v, tr.colored, 512, v->dim); /* (N, D) */
    ct_tensor *m = ct_mean_dim(mu, 0, false);                                  /* (D,) */
    ct_tensor *s = ct_clamp_min(ct_std_dim(mu, 0, false, false), 1e-6);       /* (D,) */
    if (!m || !s || ct_copy_(v->m, m) || ct_copy_(v->s, s)) rc = -1;
    if (!rc && n_test > 0 && !fl_dataset_slice(ds, FL_TEST, 0, n_test, &te)) {
        double se = 0, kl = 0;
        for (int64_t i = 0; i < n_test && !rc; i += 500) {
            ct_scope *inner = ct_scope_begin();
            int64_t len = i + 500 > n_test ? n_test - i : 500;
            ct_tensor *x = ct_narrow(te.colored, 0, i, len);                   /* (len, 3, 28, 28) */
            ct_tensor *mu_i, *lv;
            posterior(v, x, &mu_i, &lv);
            ct_tensor *r = ct_sigmoid(fl_conv_decoder_forward(&v->dec, mu_i)); /* (len, 3, 28, 28) */
            se += ct_item(ct_sum(ct_square(ct_sub(r, x))));
            kl += 0.5 * ct_item(ct_sum(ct_sub(ct_add(ct_square(mu_i), ct_exp(lv)), ct_adds(lv, 1.0))));
            if (!isfinite(se) || !isfinite(kl)) rc = -1;
            ct_scope_end(inner);
        }
        v->report.recon_rmse = sqrt(se / ((double)n_test * 3 * 28 * 28));
        v->report.kl = kl / (double)n_test;
    } else if (!rc && n_test > 0) {
        rc = -1;
    }
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    return rc ? fl_fail_ctx("vae: measuring") : 0;
}

/* Bumped whenever the networks or their training change what a setting produces, or
 * the file format changes (3: the cached-model lifecycle, archives are HDF5). */
#define FL_VAE_FORMAT 3

static fl_cached cached_spec(fl_vae *v)
{
    return (fl_cached){
        .name = "vae",
        .section = "vae",
        .format = FL_VAE_FORMAT,
        .noise_salt = 0x9015eull,
        .recolor = v->recolor,
        .ps = v->ps,
        .ctx = v,
        .step_loss = train_step,
        .measure = standardize_and_measure,
        .n_ids = 1,
        .ids = {{"dim", v->dim}},
        .n_report = 2,
        .report = {{"recon_rmse", &v->report.recon_rmse}, {"kl", &v->report.kl}},
    };
}

int fl_vae_cache_path(const fl_config *c, char *buf, size_t n)
{
    fl_vae v = {.dim = (int)fl_cfg_int(c, "vae.latent")};
    fl_cached m = cached_spec(&v);
    return fl_cached_path(c, &m, false, buf, n, NULL);
}

/* The residual blocks of the VAE's networks (vae.res_blocks, vae.res_layers). */
static int res_spec_from_config(const fl_config *c, fl_conv_spec *spec)
{
    spec->res_blocks = (int)fl_cfg_int(c, "vae.res_blocks");
    spec->res_layers = (int)fl_cfg_int(c, "vae.res_layers");
    if (spec->res_blocks > 0 && spec->hidden < 1)
        return fl_fail("vae.res_blocks: %d residual blocks need a hidden width, but vae.hidden is 0",
                       spec->res_blocks);
    if (spec->res_blocks * spec->res_layers > FL_MLP_MAX)
        return fl_fail("vae.res_blocks × vae.res_layers: %d × %d layers, at most %d",
                       spec->res_blocks, spec->res_layers, FL_MLP_MAX);
    return 0;
}

int fl_vae_open(const fl_config *c, const fl_dataset *ds, fl_vae **out)
{
    *out = NULL;
    fl_vae *v = calloc(1, sizeof *v);
    if (!v) return fl_fail("out of memory");
    v->dim = (int)fl_cfg_int(c, "vae.latent");
    v->recon_weight = fl_cfg_num(c, "vae.recon_weight");
    v->kl_weight = fl_cfg_num(c, "vae.kl_weight");
    v->input_noise = fl_cfg_num(c, "vae.input_noise");
    v->recolor = fl_cfg_bool(c, "vae.recolor");
    v->report = (fl_vae_report){false, 0, NAN, NAN, NAN};
    v->ps = ct_params_new();
    fl_conv_spec spec;
    ct_gen *g = ct_gen_new((uint64_t)fl_cfg_int(c, "vae.seed") ^ 0x7ae1ull);
    int rc = fl_conv_spec_from_config(c, "vae", 3, v->dim, &spec);
    if (!rc) rc = res_spec_from_config(c, &spec);
    if (!rc) rc = fl_conv_encoder_init(&v->enc, v->ps, "enc", &spec, 2, g);
    if (!rc) rc = fl_conv_decoder_init(&v->dec, v->ps, "dec", &spec, g);
    ct_gen_free(g);
    if (!rc) {
        v->m = ct_params_add_buffer(v->ps, "u_mean", ct_zeros(CT_SHAPE(v->dim), ct_float_dtype()));
        v->s = ct_params_add_buffer(v->ps, "u_std", ct_ones(CT_SHAPE(v->dim), ct_float_dtype()));
        if (!v->m || !v->s) rc = fl_fail_ctx("vae");
    }
    fl_cached m = cached_spec(v);
    fl_cached_info info = {0};
    if (!rc) rc = fl_cached_open(c, ds, &m, v->path, sizeof v->path, &info);
    v->report.trained = info.trained;
    v->report.steps = info.steps;
    v->report.train_seconds = info.train_seconds;
    if (rc) {
        fl_vae_free(v);
        return -1;
    }
    *out = v;
    return 0;
}
