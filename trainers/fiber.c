/* Fiber-model training: the family loss plus λ times the fiber loss of decoded samples,
 * over precomputed (u, z) pairs, on the shared loop. */
#include "trainers/fiber.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/blas.h"
#include "core/fiber.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/colorlaw.h"
#include "datasets/batch.h"

/* The colored images of split s under coloring k (0: the stored colors). */
static ct_tensor *colored_images(const fl_dataset *ds, fl_split s, int k)
{
    int64_t n = fl_dataset_count(ds, s);
    int h = fl_dataset_height(ds), w = fl_dataset_width(ds);
    float *bg = malloc((size_t)n * 3 * sizeof *bg), *fg = malloc((size_t)n * 3 * sizeof *fg);
    float *img = malloc((size_t)n * 3 * h * w * sizeof *img);
    ct_tensor *x = NULL;
    if (!bg || !fg || !img) {
        fl_fail("out of memory colorizing %lld images", (long long)n);
    } else {
        const fl_data_spec *spec = fl_dataset_spec(ds);
        if (k == 0) {
            memcpy(bg, fl_dataset_colors(ds, s), (size_t)n * 3 * sizeof *bg);
            memcpy(fg, fl_dataset_fg(ds, s), (size_t)n * 3 * sizeof *fg);
        } else {
            fl_rng r;
            fl_colorlaw law = fl_colorlaw_paper();
            fl_rng_seed_stream(&r, spec->seed ^ 0x636f6c6f72696e67ull, (uint64_t)(2 * k + s));
            fl_draw_colors(spec->variant, &law, spec->fixed_color, &r, n, bg, fg);
        }
        fl_colorize_f32(fl_dataset_gray(ds, s), bg, fg, n, h, w, img);
        x = ct_from_data(img, CT_SHAPE(n, 3, h, w), CT_F32);                 /* (n, 3, h, w) */
    }
    free(bg);
    free(fg);
    free(img);
    return x;
}

int fl_latents_compute(fl_vae *vae, fl_subject *subj, const fl_dataset *ds, fl_split s,
                       int colorings, fl_latents *out)
{
    memset(out, 0, sizeof *out);
    if (colorings < 1) colorings = 1;
    ct_tensor **us = calloc((size_t)colorings, sizeof *us), **zs = calloc((size_t)colorings, sizeof *zs);
    if (!us || !zs) {
        free(us);
        free(zs);
        return fl_fail("out of memory");
    }
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    int rc = 0;
    for (int k = 0; k < colorings && !rc; k++) {
        ct_scope *sk = ct_scope_begin();
        ct_tensor *x = colored_images(ds, s, k);                              /* (n, 3, 28, 28) */
        us[k] = ct_scope_keep(sk, fl_vae_encode_all(vae, x, 512));            /* (n, D) */
        zs[k] = ct_scope_keep(sk, fl_subject_forward_all(subj, x, 512));      /* (n, d) */
        ct_scope_end(sk);
        if (!us[k] || !zs[k]) rc = fl_fail_ctx("encoding the %s split (coloring %d)", fl_split_name(s), k);
    }
    if (!rc) {
        out->u = ct_unscope(ct_cat((const ct_tensor *const *)us, colorings, 0));   /* (K·n, D) */
        out->z = ct_unscope(ct_cat((const ct_tensor *const *)zs, colorings, 0));   /* (K·n, d) */
        if (!out->u || !out->z) rc = fl_fail_ctx("latents");
    }
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    free(us);
    free(zs);
    if (rc) fl_latents_free(out);
    return rc;
}

void fl_latents_free(fl_latents *l)
{
    if (!l) return;
    ct_free(l->u);
    ct_free(l->z);
    l->u = l->z = NULL;
}

struct fl_fiber {
    const fl_family *fam;
    void *model;
    ct_params *ps;
    ct_tensor *z_mean, *z_std;   /* borrowed buffers (1, d) */
    int u_dim, z_dim;
    uint64_t seed;
};

fl_fiber *fl_fiber_new(const fl_config *c, const fl_latents *train)
{
    const char *name = fl_cfg_str(c, "model.family");
    const fl_family *fam = fl_family_find(name);
    if (!fam) return fl_fail("model.family: unknown family '%s' (%s)", name, fl_family_names()), NULL;
    fl_fiber *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    m->fam = fam;
    m->ps = ct_params_new();
    m->u_dim = (int)ct_size(train->u, 1);
    m->z_dim = (int)ct_size(train->z, 1);
    m->seed = (uint64_t)fl_cfg_int(c, "seed");
    ct_scope *s = ct_scope_begin();
    ct_tensor *mean = ct_mean_dim(train->z, 0, true);                       /* (1, d) */
    ct_tensor *std = ct_clamp_min(ct_std_dim(train->z, 0, false, true), 1e-6);
    m->z_mean = ct_params_add_buffer(m->ps, "cond.mean", ct_scope_keep(s, ct_detach(mean)));
    m->z_std = ct_params_add_buffer(m->ps, "cond.std", ct_scope_keep(s, ct_detach(std)));
    ct_scope_end(s);
    ct_gen *g = ct_gen_new(m->seed * 4 + 1);
    if (m->z_mean && m->z_std) m->model = fam->create(c, m->u_dim, m->z_dim, m->ps, g);
    ct_gen_free(g);
    if (!m->model) {
        fl_fail_ctx("%s model", fam->name);
        fl_fiber_free(m);
        return NULL;
    }
    return m;
}

void fl_fiber_free(fl_fiber *m)
{
    if (!m) return;
    if (m->model) m->fam->destroy(m->model);
    ct_params_free(m->ps);
    free(m);
}

const fl_family *fl_fiber_family(const fl_fiber *m) { return m->fam; }
ct_params *fl_fiber_params(fl_fiber *m) { return m->ps; }

static ct_tensor *standardize(const fl_fiber *m, const ct_tensor *z)
{
    return ct_div(ct_sub(z, m->z_mean), m->z_std);
}

ct_tensor *fl_fiber_sample_latent(fl_fiber *m, const ct_tensor *z, ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *u = ct_scope_keep(s, m->fam->sample(m->model, standardize(m, z), g));
    ct_scope_end(s);
    return u;
}

ct_tensor *fl_fiber_sample(fl_fiber *m, fl_vae *vae, const ct_tensor *z, ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_scope_keep(s, fl_vae_decode(vae, fl_fiber_sample_latent(m, z, g)));
    ct_scope_end(s);
    return x;
}

/* ---- training ------------------------------------------------------------------- */

typedef struct {
    fl_fiber *m;
    fl_vae *vae;
    fl_subject *subj;
    const fl_latents *train, *val;
    double lambda;
    int64_t batch, n, fiber_batch;
    double latent_noise;
    double warmup;     /* steps over which λ rises from 0 */
    int64_t step;      /* training steps taken (for the warm-up) */
    /* batch order: epoch e visits a permutation drawn from (seed, e) */
    int64_t epoch, pos;
    int64_t *perm;
    ct_gen *noise;
} fiber_task;

static void draw_perm(fiber_task *t)
{
    fl_rng r;
    fl_rng_seed_stream(&r, t->m->seed * 4 + 3, (uint64_t)t->epoch);
    for (int64_t i = 0; i < t->n; i++) t->perm[i] = i;
    fl_rng_shuffle(&r, t->perm, t->n);
}

/* family loss + λ · fiber loss of samples for the pairs (u, z); adds the terms. */
static ct_tensor *objective(fiber_task *t, const ct_tensor *u, const ct_tensor *z, double lambda,
                            ct_gen *g, fl_terms *terms)
{
    fl_fiber *m = t->m;
    ct_tensor *zs = standardize(m, z);                                   /* (B, d) */
    ct_tensor *loss = m->fam->loss(m->model, u, zs, g, terms);           /* () */
    if (!loss || lambda == 0) return loss;
    int64_t b = ct_size(z, 0);
    if (t->fiber_batch > 0 && t->fiber_batch < b) {
        zs = ct_narrow(zs, 0, 0, t->fiber_batch);                        /* (F, d) */
        z = ct_narrow(z, 0, 0, t->fiber_batch);
    }
    ct_tensor *u_hat = m->fam->sample(m->model, zs, g);                  /* (F, D) */
    ct_tensor *x_hat = fl_vae_decode(t->vae, u_hat);                     /* (F, 3, 28, 28) */
    ct_tensor *fib = fl_fiber_loss_mean(fl_subject_forward(t->subj, x_hat), z);
    if (fib && terms) fl_terms_add(terms, "fiber", ct_item(fib));
    return ct_axpy(loss, lambda, fib);
}

static ct_tensor *fiber_step(void *ctx, fl_terms *terms)
{
    fiber_task *t = ctx;
    if (t->pos + t->batch > t->n) { /* drop the last, smaller batch of an epoch */
        t->epoch++;
        t->pos = 0;
        draw_perm(t);
    }
    ct_tensor *idx = ct_from_data(t->perm + t->pos, CT_SHAPE(t->batch), CT_I64);
    t->pos += t->batch;
    ct_tensor *u = ct_index_select(t->train->u, 0, idx);                 /* (B, D) */
    if (t->latent_noise > 0) u = ct_axpy(u, t->latent_noise, ct_randn_like(u, t->noise));
    ct_tensor *z = ct_index_select(t->train->z, 0, idx);                 /* (B, d) */
    double lambda = t->lambda;
    if (t->warmup > 0 && (double)t->step < t->warmup) lambda *= (double)t->step / t->warmup;
    t->step++;
    ct_tensor *loss = objective(t, u, z, lambda, t->noise, terms);
    if (loss) fl_terms_add(terms, "loss", ct_item(loss));
    return loss;
}

static int fiber_validate(void *ctx, double *out)
{
    fiber_task *t = ctx;
    int64_t n = ct_size(t->val->u, 0);
    ct_gen *g = ct_gen_new(t->m->seed * 4 + 2);   /* the same noise at every validation */
    double sum = 0;
    int64_t seen = 0;
    int rc = 0;
    for (int64_t start = 0; start < n && !rc; start += t->batch) {
        int64_t b = n - start < t->batch ? n - start : t->batch;
        ct_scope *s = ct_scope_begin();
        ct_tensor *loss = objective(t, ct_narrow(t->val->u, 0, start, b),
                                    ct_narrow(t->val->z, 0, start, b), t->lambda, g, NULL);
        if (!loss)
            rc = -1;
        else
            sum += ct_item(loss) * (double)b;
        seen += b;
        ct_scope_end(s);
    }
    ct_gen_free(g);
    *out = seen ? sum / (double)seen : NAN;
    return rc;
}

static int fiber_put(void *ctx, ct_archive *a)
{
    fiber_task *t = ctx;
    ct_scope *s = ct_scope_begin();
    int rc = ct_archive_put_i64(a, "fiber/epoch", t->epoch) ||
             ct_archive_put_i64(a, "fiber/step", t->step) ||
             ct_archive_put_i64(a, "fiber/pos", t->pos) ||
             ct_archive_put(a, "fiber/noise", ct_gen_get_state(t->noise));
    ct_scope_end(s);
    return rc ? -1 : 0;
}

static int fiber_get(void *ctx, const ct_archive *a)
{
    fiber_task *t = ctx;
    ct_scope *s = ct_scope_begin();
    int rc = ct_archive_get_i64(a, "fiber/epoch", &t->epoch) ||
             ct_archive_get_i64(a, "fiber/step", &t->step) ||
             ct_archive_get_i64(a, "fiber/pos", &t->pos) ||
             ct_gen_set_state(t->noise, ct_archive_get(a, "fiber/noise"));
    ct_scope_end(s);
    if (!rc) draw_perm(t);
    return rc ? -1 : 0;
}

int fl_fiber_train(fl_fiber *m, const fl_config *c, fl_vae *vae, fl_subject *subj,
                   const fl_latents *train, const fl_latents *val, const char *checkpoint,
                   fl_train_result *res)
{
    fiber_task t = {
        .m = m, .vae = vae, .subj = subj, .train = train, .val = val,
        .lambda = fl_cfg_num(c, "train.lambda"),
        .batch = fl_cfg_int(c, "train.batch_size"),
        .fiber_batch = fl_cfg_int(c, "train.fiber_batch"),
        .latent_noise = fl_cfg_num(c, "train.latent_noise"),
        .warmup = fl_cfg_num(c, "train.fiber_warmup") * (double)fl_cfg_int(c, "train.steps"),
        .n = ct_size(train->u, 0),
    };
    if (t.batch > t.n)
        return fl_fail("train.batch_size: %lld is more than the %lld training pairs",
                       (long long)t.batch, (long long)t.n);
    t.perm = malloc((size_t)t.n * sizeof *t.perm);
    t.noise = ct_gen_new(m->seed * 4 + 4);
    if (!t.perm || !t.noise) {
        free(t.perm);
        ct_gen_free(t.noise);
        return fl_fail("out of memory");
    }
    draw_perm(&t);
    fl_task task = {m->ps, &t, fiber_step, val && val->u ? fiber_validate : NULL, fiber_put, fiber_get, NULL};
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    int threads;
    fl_workload work;
    fl_threads_get(&threads, &work);
    fl_threads_set(fl_dense_threads(threads, t.batch), FL_WORK_DENSE); /* MLPs */
    char label[64];
    snprintf(label, sizeof label, "%s λ=%g seed %lld", m->fam->name, t.lambda,
             (long long)m->seed);
    o.label = label;
    o.checkpoint = checkpoint;
    o.resume = checkpoint != NULL;
    char hash[17];
    fl_config_hash_except(c, "sweep", hash);
    o.fingerprint = strtoull(hash, NULL, 16);
    uint64_t have;
    if (checkpoint && access(checkpoint, F_OK) == 0 &&
        (fl_train_checkpoint_fingerprint(checkpoint, &have) || have != o.fingerprint)) {
        /* left by a run of other settings (or unreadable): it cannot be continued */
        fl_info("%s: not resumable with these settings; training from the start", checkpoint);
        unlink(checkpoint);
        ct_clear_error();
    }
    int rc = fl_train_run(&task, &o, res);
    fl_threads_set(threads, work);
    free(t.perm);
    ct_gen_free(t.noise);
    return rc;
}

/* ---- sampling for the evaluation ------------------------------------------------ */

typedef struct {
    fl_fiber *m;
    fl_vae *vae;
} fiber_sampler_ctx;

static ct_tensor *fiber_sampler_fn(void *ctx, const ct_tensor *x_targets,
                                   const ct_tensor *z_targets, int k, ct_gen *g)
{
    fiber_sampler_ctx *fs = ctx;
    ct_scope *s = ct_scope_begin();
    ct_tensor *z = ct_repeat_interleave(z_targets, k, 0);                /* (n·k, d) */
    ct_tensor *x = ct_scope_keep(s, fl_fiber_sample(fs->m, fs->vae, z, g));
    ct_scope_end(s);
    return x;
}

void fl_fiber_sampler(fl_fiber *m, fl_vae *vae, fl_sampler *out)
{
    /* the context lives as long as m: kept in a static pool would be fragile, so it
     * is allocated and freed by fl_sampler_free */
    fiber_sampler_ctx *ctx = malloc(sizeof *ctx);
    ctx->m = m;
    ctx->vae = vae;
    out->name = m->fam->name;
    out->ctx = ctx;
    out->sample = fiber_sampler_fn;
    out->free_ctx = free;
}

int fl_fiber_save(const fl_fiber *m, const char *path)
{
    if (ct_params_save(m->ps, path)) return fl_fail_ctx("%s", path);
    return 0;
}

int fl_fiber_load(fl_fiber *m, const char *path)
{
    if (ct_params_load(m->ps, path)) return -1;
    return 0;
}
