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
    double recon_weight, kl_weight;
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

/* The raw encoder means of a set, in batches with grad off, (N, D). */
static ct_tensor *means_all(fl_vae *v, const ct_tensor *x, int64_t batch, bool standardized)
{
    int64_t n = ct_size(x, 0);
    if (batch <= 0) batch = 512;
    int64_t nb = (n + batch - 1) / batch;
    if (nb == 0) return ct_zeros(CT_SHAPE(0, v->dim), ct_dtype_of(x));
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    ct_tensor **parts = malloc((size_t)nb * sizeof *parts);
    ct_tensor *out = NULL;
    if (parts) {
        bool ok = true;
        for (int64_t i = 0; i < nb && ok; i++) {
            int64_t len = i == nb - 1 ? n - i * batch : batch;
            ct_tensor *xi = ct_narrow(x, 0, i * batch, len);              /* (len, 3, 28, 28) */
            if (standardized) {
                parts[i] = fl_vae_encode(v, xi);                          /* (len, D) */
            } else {
                posterior(v, xi, &parts[i], NULL);
            }
            ok = parts[i] != NULL;
        }
        if (ok) out = ct_cat((const ct_tensor *const *)parts, (int)nb, 0);   /* (N, D) */
        free(parts);
    } else {
        ct_set_error("out of memory");
    }
    out = ct_scope_keep(sc, out);
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    return out;
}

ct_tensor *fl_vae_encode_all(fl_vae *v, const ct_tensor *x, int64_t batch)
{
    return means_all(v, x, batch, true);
}

/* ---- training -------------------------------------------------------------------- */

typedef struct {
    fl_vae *v;
    fl_batcher *b;
    ct_gen *noise;
} trainer;

static ct_tensor *train_step(void *ctx, fl_terms *terms)
{
    trainer *t = ctx;
    fl_vae *v = t->v;
    fl_batch x;
    if (fl_batcher_next(t->b, &x)) return NULL;
    double B = (double)x.size;
    ct_tensor *mu, *lv;
    posterior(v, x.colored, &mu, &lv);                                        /* (B, D) each */
    ct_tensor *eps = ct_randn(CT_SHAPE(x.size, v->dim), ct_dtype_of(x.colored), t->noise);
    ct_tensor *z = ct_add(mu, ct_mul(ct_exp(ct_muls(lv, 0.5)), eps));         /* (B, D) */
    ct_tensor *r = ct_sigmoid(fl_conv_decoder_forward(&v->dec, z));           /* (B, 3, 28, 28) */
    ct_tensor *rec = ct_muls(ct_sum(ct_square(ct_sub(r, x.colored))), 1.0 / B); /* () */
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

static int train_put(void *ctx, ct_archive *a)
{
    trainer *t = ctx;
    ct_scope *sc = ct_scope_begin();
    int rc = fl_batcher_put(t->b, a, "vae/batches/") ||
             ct_archive_put(a, "vae/noise", ct_gen_get_state(t->noise));
    ct_scope_end(sc);
    return rc ? -1 : 0;
}

static int train_get(void *ctx, const ct_archive *a)
{
    trainer *t = ctx;
    ct_scope *sc = ct_scope_begin();
    int rc = fl_batcher_get(t->b, a, "vae/batches/") ||
             ct_gen_set_state(t->noise, ct_archive_get(a, "vae/noise"));
    ct_scope_end(sc);
    return rc ? -1 : 0;
}

/* m and s from the encoder means of the training set; the report on the test split. */
static int standardize_and_measure(fl_vae *v, const fl_dataset *ds)
{
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    int rc = 0;
    int64_t n_train = fl_dataset_count(ds, FL_TRAIN), n_test = fl_dataset_count(ds, FL_TEST);
    fl_batch tr, te;
    if (fl_dataset_slice(ds, FL_TRAIN, 0, n_train, &tr)) rc = -1;
    ct_tensor *mu = rc ? NULL : means_all(v, tr.colored, 512, false);         /* (N, D) */
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

static int save(const fl_vae *v)
{
    ct_archive *a = ct_archive_new();
    const fl_vae_report *r = &v->report;
    int rc = ct_params_put(v->ps, a, "params/") || ct_archive_put_i64(a, "vae/dim", v->dim) ||
             ct_archive_put_i64(a, "report/steps", r->steps) ||
             ct_archive_put_f64(a, "report/train_seconds", r->train_seconds) ||
             ct_archive_put_f64(a, "report/recon_rmse", r->recon_rmse) ||
             ct_archive_put_f64(a, "report/kl", r->kl) || ct_archive_write(a, v->path);
    ct_archive_free(a);
    return rc ? fl_fail_ctx("%s", v->path) : 0;
}

static int load(fl_vae *v)
{
    ct_archive *a = ct_archive_read(v->path);
    if (!a) return fl_fail_ctx("vae");
    int64_t dim = -1;
    fl_vae_report *r = &v->report;
    int rc = 0;
    if (ct_archive_get_i64(a, "vae/dim", &dim) || ct_archive_get_i64(a, "report/steps", &r->steps) ||
        ct_archive_get_f64(a, "report/train_seconds", &r->train_seconds) ||
        ct_archive_get_f64(a, "report/recon_rmse", &r->recon_rmse) ||
        ct_archive_get_f64(a, "report/kl", &r->kl))
        rc = fl_fail_ctx("%s", v->path);
    else if (dim != v->dim)
        rc = fl_fail("%s: holds a VAE of latent %lld, expected %d; remove it", v->path,
                     (long long)dim, v->dim);
    else if (ct_params_get(v->ps, a, "params/"))
        rc = fl_fail_ctx("%s", v->path);
    ct_archive_free(a);
    return rc;
}

static int train(fl_vae *v, const fl_config *c, const fl_dataset *ds, uint64_t fingerprint)
{
    if (!ds) return fl_fail("vae: %s is not trained and no dataset was given to train it on", v->path);
    uint64_t seed = (uint64_t)fl_cfg_int(c, "vae.seed");
    fl_batch_opts bo = {.batch_size = fl_cfg_int(c, "vae.batch_size"),
                        .shuffle = true,
                        .recolor = fl_cfg_bool(c, "data.recolor_each_epoch"),
                        .drop_last = false,
                        .seed = seed};
    trainer t = {v, fl_batcher_new(ds, FL_TRAIN, &bo), ct_gen_new(seed ^ 0x9015eull)};
    if (!t.b) {
        ct_gen_free(t.noise);
        return fl_fail_ctx("vae");
    }
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s.train", v->path);
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "vae");
    o.label = "vae";
    o.val_every = 0;
    o.patience = 0;
    o.checkpoint = ckpt;
    o.resume = true;
    o.fingerprint = fingerprint;
    fl_task task = {v->ps, &t, train_step, NULL, train_put, train_get};
    fl_train_result res;
    fl_info("training the VAE (latent %d, %lld steps) into %s", v->dim, (long long)o.steps, v->path);
    int rc = fl_train_run(&task, &o, &res);
    v->report.steps = res.steps_done;
    v->report.train_seconds = res.seconds;
    fl_train_result_free(&res);
    fl_batcher_free(t.b);
    ct_gen_free(t.noise);
    if (rc) return -1;
    v->report.trained = true;
    if (standardize_and_measure(v, ds) || save(v)) return -1;
    unlink(ckpt);
    return 0;
}

static const char *const vae_sections[] = {"data", "vae"};
/* Bumped whenever the networks or their training change what a setting produces, or
 * the file format changes (2: archives are HDF5). */
#define FL_VAE_FORMAT 2

int fl_vae_cache_path(const fl_config *c, char *buf, size_t n)
{
    return fl_model_cache_path(c, "vae", FL_VAE_FORMAT, vae_sections, 2, false, buf, n, NULL);
}

int fl_vae_open(const fl_config *c, const fl_dataset *ds, fl_vae **out)
{
    *out = NULL;
    fl_vae *v = calloc(1, sizeof *v);
    if (!v) return fl_fail("out of memory");
    v->dim = (int)fl_cfg_int(c, "vae.latent");
    v->recon_weight = fl_cfg_num(c, "vae.recon_weight");
    v->kl_weight = fl_cfg_num(c, "vae.kl_weight");
    v->report = (fl_vae_report){false, 0, NAN, NAN, NAN};
    v->ps = ct_params_new();
    uint64_t fp = 0;
    fl_conv_spec spec;
    ct_gen *g = ct_gen_new((uint64_t)fl_cfg_int(c, "vae.seed") ^ 0x7ae1ull);
    int rc = fl_conv_spec_from_config(c, "vae", 3, v->dim, &spec);
    if (!rc) rc = fl_conv_encoder_init(&v->enc, v->ps, "enc", &spec, 2, g);
    if (!rc) rc = fl_conv_decoder_init(&v->dec, v->ps, "dec", &spec, g);
    ct_gen_free(g);
    if (!rc) {
        v->m = ct_params_add_buffer(v->ps, "u_mean", ct_zeros(CT_SHAPE(v->dim), ct_float_dtype()));
        v->s = ct_params_add_buffer(v->ps, "u_std", ct_ones(CT_SHAPE(v->dim), ct_float_dtype()));
        if (!v->m || !v->s) rc = fl_fail_ctx("vae");
    }
    if (!rc) rc = fl_model_cache_path(c, "vae", FL_VAE_FORMAT, vae_sections, 2, true, v->path, sizeof v->path, &fp);
    if (!rc) rc = access(v->path, F_OK) == 0 ? load(v) : train(v, c, ds, fp);
    if (!rc) ct_params_set_trainable(v->ps, false);
    if (rc) {
        fl_vae_free(v);
        return -1;
    }
    *out = v;
    return 0;
}
