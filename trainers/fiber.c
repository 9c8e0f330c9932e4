/* Fiber-model training: the family loss plus λ times the fiber loss of samples taken
 * to images, over precomputed (u, z) pairs, on the shared loop; EMA weights; the model
 * store. */
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

const fl_key fl_keys_fiber[] = {
    {"train.fiber_steps", FL_KEY_INT, "0", 0, 1e6, NULL,
     "Solver steps of the short differentiable sampler that draws the samples of the "
     "fiber-loss term for iterative families (diffusion, flow matching); 0: the family's "
     "own default. One-shot samplers (NF) ignore it."},
    {"train.ema_decay", FL_KEY_NUM, "0", 0, 0.999999, NULL,
     "Decay of an exponential moving average of the weights, updated after every step; "
     "sampling for the evaluation and the saved model use the averaged weights. 0: none."},
    FL_KEYS_END,
};

int fl_space_dim(fl_space space, const fl_config *c)
{
    return space == FL_SPACE_PIXELS ? 3 * 28 * 28 : (int)fl_cfg_int(c, "vae.latent");
}

void fl_fiber_train_opts_from_config(fl_fiber_train_opts *o, const fl_config *c)
{
    *o = (fl_fiber_train_opts){
        .lambda = fl_cfg_num(c, "train.lambda"),
        .batch = fl_cfg_int(c, "train.batch_size"),
        .fiber_batch = fl_cfg_int(c, "train.fiber_batch"),
        .fiber_steps = (int)fl_cfg_int(c, "train.fiber_steps"),
        .latent_noise = fl_cfg_num(c, "train.latent_noise"),
        .warmup = fl_cfg_num(c, "train.fiber_warmup") * (double)fl_cfg_int(c, "train.steps"),
        .ema_decay = fl_cfg_num(c, "train.ema_decay"),
        .seed = (uint64_t)fl_cfg_int(c, "seed"),
    };
}

fl_sample_opts fl_sample_opts_eval(const fl_config *c)
{
    return (fl_sample_opts){.steps = (int)fl_cfg_int(c, "eval.steps"),
                            .temperature = fl_cfg_num(c, "eval.temperature"),
                            .keep_graph = false};
}

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

int fl_latents_compute(fl_space space, fl_vae *vae, fl_subject *subj, const fl_dataset *ds,
                       fl_split s, int colorings, fl_latents *out)
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
        us[k] = ct_scope_keep(sk, space == FL_SPACE_PIXELS
                                      ? ct_flatten(x, 1)                     /* (n, 3·28·28) */
                                      : fl_vae_encode_all(vae, x, 512));     /* (n, D) */
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
    ct_params *ema;              /* the averaged weights, made at the first step; or NULL */
    double ema_decay;
    ct_tensor *z_mean, *z_std;   /* borrowed buffers (1, d) */
    int u_dim, z_dim;
    uint64_t seed;
};

int fl_fiber_check(const fl_config *c, int z_dim)
{
    const char *name = fl_cfg_str(c, "model.family");
    const fl_family *fam = fl_family_find(name);
    if (!fam) return fl_fail("model.family: unknown family '%s' (%s)", name, fl_family_names());
    /* early stopping restores the best trained weights, not the best average */
    if (fl_cfg_num(c, "train.ema_decay") > 0 && fl_cfg_int(c, "train.patience") > 0)
        return fl_fail("train.patience: early stopping does not go with EMA weights "
                       "(train.ema_decay > 0); set one of them to 0");
    if (fam->check && fam->check(c, fl_space_dim(fam->space, c), z_dim)) return -1;
    return 0;
}

fl_fiber *fl_fiber_create(const fl_config *c, int u_dim, int z_dim)
{
    if (fl_fiber_check(c, z_dim)) return NULL;
    const fl_family *fam = fl_family_find(fl_cfg_str(c, "model.family"));
    fl_fiber *m = calloc(1, sizeof *m);
    if (!m) return fl_fail("out of memory"), NULL;
    m->fam = fam;
    m->ps = ct_params_new();
    m->u_dim = u_dim;
    m->z_dim = z_dim;
    m->seed = (uint64_t)fl_cfg_int(c, "seed");
    m->ema_decay = fl_cfg_num(c, "train.ema_decay");
    m->z_mean = ct_params_add_buffer(m->ps, "cond.mean", ct_zeros(CT_SHAPE(1, z_dim), ct_float_dtype()));
    m->z_std = ct_params_add_buffer(m->ps, "cond.std", ct_ones(CT_SHAPE(1, z_dim), ct_float_dtype()));
    ct_gen *g = ct_gen_new(m->seed * 4 + 1);
    ct_scope *s = ct_scope_begin();   /* the family's temporaries; ps owns what it keeps */
    if (m->z_mean && m->z_std) m->model = fam->create(c, m->u_dim, m->z_dim, m->ps, g);
    ct_scope_end(s);
    ct_gen_free(g);
    if (!m->model) {
        fl_fail_ctx("%s model", fam->name);
        fl_fiber_free(m);
        return NULL;
    }
    return m;
}

int fl_fiber_set_condition_stats(fl_fiber *m, const ct_tensor *z)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *mean = ct_mean_dim(z, 0, true);                                   /* (1, d) */
    ct_tensor *std = ct_clamp_min(ct_std_dim(z, 0, false, true), 1e-6);          /* (1, d) */
    int rc = !mean || !std || ct_copy_(m->z_mean, mean) || ct_copy_(m->z_std, std) ? -1 : 0;
    ct_scope_end(s);
    return rc ? fl_fail_ctx("condition statistics") : 0;
}

fl_fiber *fl_fiber_new(const fl_config *c, const fl_latents *train)
{
    fl_fiber *m = fl_fiber_create(c, (int)ct_size(train->u, 1), (int)ct_size(train->z, 1));
    if (m && fl_fiber_set_condition_stats(m, train->z)) {
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
    ct_params_free(m->ema);
    free(m);
}

const fl_family *fl_fiber_family(const fl_fiber *m) { return m->fam; }
ct_params *fl_fiber_params(fl_fiber *m) { return m->ps; }
void *fl_fiber_model(fl_fiber *m) { return m->model; }
ct_params *fl_fiber_ema(fl_fiber *m) { return m->ema; }

/* After each applied step: the family's hook, then the moving average. */
static int after_step(fl_fiber *m, int64_t step, int64_t total)
{
    if (m->fam->after_step && m->fam->after_step(m->model, step, total)) return -1;
    if (m->ema_decay <= 0) return 0;
    if (!m->ema) { /* from the weights after the first step (ActNorm has initialised) */
        m->ema = ct_params_clone(m->ps);
        return m->ema ? 0 : fl_fail_ctx("EMA weights");
    }
    if (ct_params_ema_update(m->ema, m->ps, m->ema_decay)) return fl_fail_ctx("EMA update");
    return 0;
}

int fl_fiber_use_ema(fl_fiber *m)
{
    if (!m->ema) return 0;
    if (ct_params_copy_values(m->ps, m->ema)) return fl_fail_ctx("EMA weights");
    return 0;
}

static ct_tensor *standardize(const fl_fiber *m, const ct_tensor *z)
{
    return ct_div(ct_sub(z, m->z_mean), m->z_std);
}

ct_tensor *fl_fiber_sample_space(fl_fiber *m, const ct_tensor *z, const fl_sample_opts *o,
                                 ct_gen *g)
{
    bool prev = ct_set_grad_enabled(o->keep_graph && ct_grad_enabled());
    ct_scope *s = ct_scope_begin();
    ct_tensor *u = ct_scope_keep(s, m->fam->sample(m->model, standardize(m, z), o, g));
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    return u;
}

ct_tensor *fl_fiber_to_images(const fl_fiber *m, fl_vae *vae, const ct_tensor *u)
{
    if (m->fam->space == FL_SPACE_PIXELS) return ct_reshape(u, CT_SHAPE(-1, 3, 28, 28));
    return fl_vae_decode(vae, u);                                         /* (B, 3, 28, 28) */
}

ct_tensor *fl_fiber_sample(fl_fiber *m, fl_vae *vae, const ct_tensor *z, const fl_sample_opts *o,
                           ct_gen *g)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *x = ct_scope_keep(s, fl_fiber_to_images(m, vae, fl_fiber_sample_space(m, z, o, g)));
    ct_scope_end(s);
    return x;
}

/* ---- training ------------------------------------------------------------------- */

typedef struct {
    fl_fiber *m;
    fl_vae *vae;
    fl_subject *subj;
    const fl_latents *train, *val;
    fl_fiber_train_opts o;
    fl_sample_opts fiber_sampling;   /* the differentiable sampler of the fiber term */
    int64_t n, total_steps;
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
    if (t->o.fiber_batch > 0 && t->o.fiber_batch < b) z = ct_narrow(z, 0, 0, t->o.fiber_batch); /* (F, d) */
    ct_tensor *x_hat = fl_fiber_sample(m, t->vae, z, &t->fiber_sampling, g); /* (F, 3, 28, 28) */
    ct_tensor *fib = fl_fiber_loss_mean(fl_subject_forward(t->subj, x_hat), z);
    if (fib && terms) fl_terms_add(terms, "fiber", ct_item(fib));
    return ct_axpy(loss, lambda, fib);
}

static ct_tensor *fiber_step(void *ctx, fl_terms *terms)
{
    fiber_task *t = ctx;
    if (t->pos + t->o.batch > t->n) { /* drop the last, smaller batch of an epoch */
        t->epoch++;
        t->pos = 0;
        draw_perm(t);
    }
    ct_tensor *idx = ct_from_data(t->perm + t->pos, CT_SHAPE(t->o.batch), CT_I64);
    t->pos += t->o.batch;
    ct_tensor *u = ct_index_select(t->train->u, 0, idx);                 /* (B, D) */
    if (t->o.latent_noise > 0) u = ct_axpy(u, t->o.latent_noise, ct_randn_like(u, t->noise));
    ct_tensor *z = ct_index_select(t->train->z, 0, idx);                 /* (B, d) */
    double lambda = t->o.lambda;
    if (t->o.warmup > 0 && (double)t->step < t->o.warmup) lambda *= (double)t->step / t->o.warmup;
    t->step++;
    ct_tensor *loss = objective(t, u, z, lambda, t->noise, terms);
    if (loss) fl_terms_add(terms, "loss", ct_item(loss));
    return loss;
}

static int fiber_after_step(void *ctx, int64_t step)
{
    fiber_task *t = ctx;
    return after_step(t->m, step, t->total_steps);
}

/* Runs fn with the EMA weights in the model (when there are), then puts the trained
 * ones back. */
static int with_ema_weights(fl_fiber *m, int (*fn)(void *ctx, double *out), void *ctx, double *out)
{
    if (!m->ema) return fn(ctx, out);
    ct_params *live = ct_params_clone(m->ps);
    int rc = !live || ct_params_copy_values(m->ps, m->ema) ? fl_fail_ctx("EMA weights") : fn(ctx, out);
    if (live && ct_params_copy_values(m->ps, live)) rc = fl_fail_ctx("EMA weights");
    ct_params_free(live);
    return rc;
}

static int validate_now(void *ctx, double *out)
{
    fiber_task *t = ctx;
    int64_t n = ct_size(t->val->u, 0);
    ct_gen *g = ct_gen_new(t->m->seed * 4 + 2);   /* the same noise at every validation */
    double sum = 0;
    int64_t seen = 0;
    int rc = 0;
    for (int64_t start = 0; start < n && !rc; start += t->o.batch) {
        int64_t b = n - start < t->o.batch ? n - start : t->o.batch;
        ct_scope *s = ct_scope_begin();
        ct_tensor *loss = objective(t, ct_narrow(t->val->u, 0, start, b),
                                    ct_narrow(t->val->z, 0, start, b), t->o.lambda, g, NULL);
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

/* The validation loss, of the weights that will be sampled from (EMA when there are). */
static int fiber_validate(void *ctx, double *out)
{
    fiber_task *t = ctx;
    return with_ema_weights(t->m, validate_now, t, out);
}

static int fiber_put(void *ctx, ct_archive *a)
{
    fiber_task *t = ctx;
    ct_scope *s = ct_scope_begin();
    int rc = ct_archive_put_i64(a, "fiber/epoch", t->epoch) ||
             ct_archive_put_i64(a, "fiber/step", t->step) ||
             ct_archive_put_i64(a, "fiber/pos", t->pos) ||
             ct_archive_put(a, "fiber/noise", ct_gen_get_state(t->noise)) ||
             (t->m->ema && ct_params_put(t->m->ema, a, "ema/"));
    ct_scope_end(s);
    return rc ? -1 : 0;
}

static int fiber_get(void *ctx, const ct_archive *a)
{
    fiber_task *t = ctx;
    ct_scope *s = ct_scope_begin();
    int rc = ct_archive_get_i64(a, "fiber/epoch", &t->epoch) ||
             ct_archive_get_i64(a, "fiber/step", &t->step) ||
             ct_archive_get_i64(a, "fiber/pos", &t->pos);
    /* a position outside the permutation would index before or past it */
    if (!rc && t->epoch < 0)
        rc = fl_fail("fiber/epoch = %lld is negative", (long long)t->epoch);
    else if (!rc && (t->step < 0 || t->step > t->total_steps))
        rc = fl_fail("fiber/step = %lld is outside [0, %lld]", (long long)t->step,
                     (long long)t->total_steps);
    else if (!rc && (t->pos < 0 || t->pos > t->n))
        rc = fl_fail("fiber/pos = %lld is outside [0, %lld] (the training pairs)",
                     (long long)t->pos, (long long)t->n);
    else if (!rc && ct_gen_set_state(t->noise, ct_archive_get(a, "fiber/noise")))
        rc = fl_fail_ctx("fiber/noise");
    if (!rc && t->m->ema_decay > 0 && t->step > 0) { /* the average the steps so far made */
        if (!t->m->ema) t->m->ema = ct_params_clone(t->m->ps);
        rc = !t->m->ema || ct_params_get(t->m->ema, a, "ema/");
    }
    ct_scope_end(s);
    if (!rc) draw_perm(t);
    return rc ? -1 : 0;
}

int fl_fiber_train(fl_fiber *m, const fl_config *c, const fl_fiber_train_opts *fo, fl_vae *vae,
                   fl_subject *subj, const fl_latents *train, const fl_latents *val,
                   const char *checkpoint, fl_train_result *res)
{
    fiber_task t = {
        .m = m, .vae = vae, .subj = subj, .train = train, .val = val, .o = *fo,
        .fiber_sampling = {.steps = fo->fiber_steps, .temperature = 1, .keep_graph = true},
        .n = ct_size(train->u, 0),
    };
    if (t.o.batch > t.n)
        return fl_fail("train.batch_size: %lld is more than the %lld training pairs",
                       (long long)t.o.batch, (long long)t.n);
    t.perm = malloc((size_t)t.n * sizeof *t.perm);
    t.noise = ct_gen_new(m->seed * 4 + 4);
    if (!t.perm || !t.noise) {
        free(t.perm);
        ct_gen_free(t.noise);
        return fl_fail("out of memory");
    }
    draw_perm(&t);
    fl_task task = {m->ps, &t, fiber_step, val && val->u ? fiber_validate : NULL, fiber_put,
                    fiber_get, fiber_after_step};
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    t.total_steps = o.steps;
    int threads;
    fl_workload work;
    fl_threads_get(&threads, &work);
    fl_threads_set(fl_dense_threads(threads, t.o.batch), FL_WORK_DENSE); /* MLPs */
    char label[64];
    snprintf(label, sizeof label, "%s λ=%g seed %lld", m->fam->name, t.o.lambda,
             (long long)m->seed);
    o.label = label;
    o.checkpoint = checkpoint;
    o.resume = checkpoint != NULL;
    char key[17];
    fl_config_hash_role(c, FL_ROLE_MODEL, key);
    o.fingerprint = strtoull(key, NULL, 16);
    uint64_t have;
    if (checkpoint && access(checkpoint, F_OK) == 0) {
        /* left by a run of other settings, or unreadable: it cannot be continued */
        bool unreadable = fl_train_checkpoint_fingerprint(checkpoint, &have) != 0;
        if (unreadable || have != o.fingerprint) {
            if (unreadable)
                fl_info("%s: unreadable (%s); training from the start", checkpoint, fl_error());
            else
                fl_info("%s: written with other settings; training from the start", checkpoint);
            unlink(checkpoint);
            ct_clear_error();
        }
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
    fl_sample_opts o;
} fiber_sampler_ctx;

static ct_tensor *fiber_sampler_fn(void *ctx, const ct_tensor *x_targets,
                                   const ct_tensor *z_targets, int k, ct_gen *g)
{
    fiber_sampler_ctx *fs = ctx;
    ct_scope *s = ct_scope_begin();
    ct_tensor *z = ct_repeat_interleave(z_targets, k, 0);                /* (n·k, d) */
    ct_tensor *x = ct_scope_keep(s, fl_fiber_sample(fs->m, fs->vae, z, &fs->o, g));
    ct_scope_end(s);
    return x;
}

void fl_fiber_sampler(fl_fiber *m, fl_vae *vae, const fl_sample_opts *o, fl_sampler *out)
{
    /* the context lives as long as the sampler: fl_sampler_free frees it */
    fiber_sampler_ctx *ctx = malloc(sizeof *ctx);
    *ctx = (fiber_sampler_ctx){m, vae, *o};
    ctx->o.keep_graph = false;
    out->name = m->fam->name;
    out->ctx = ctx;
    out->sample = fiber_sampler_fn;
    out->free_ctx = free;
}

/* ---- the model store ------------------------------------------------------------- */

#define FL_SAVED_MODEL_FORMAT 1

static int put_text(ct_archive *a, const char *name, const char *text)
{
    ct_scope *s = ct_scope_begin();
    int64_t n = (int64_t)strlen(text);
    ct_tensor *t = n ? ct_from_data(text, CT_SHAPE(n), CT_U8) : ct_zeros(CT_SHAPE(0), CT_U8);
    int rc = ct_archive_put(a, name, t) ? -1 : 0;
    ct_scope_end(s);
    return rc;
}

/* The text stored under name, malloc'd; NULL when absent or not text. */
static char *get_text(const ct_archive *a, const char *name)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_archive_get(a, name);
    char *text = NULL;
    if (t && ct_dtype_of(t) == CT_U8 && ct_ndim(t) == 1) {
        int64_t n = ct_numel(t);
        text = malloc((size_t)n + 1);
        if (text && n && ct_to_data(t, text, (size_t)n)) {
            free(text);
            text = NULL;
        }
        if (text) text[n] = 0;
    }
    ct_scope_end(s);
    return text;
}

int fl_fiber_save(fl_fiber *m, const fl_config *c, const fl_train_result *tr, const char *path)
{
    char key[17];
    fl_config_hash_role(c, FL_ROLE_MODEL, key);
    char *json = fl_config_json(c, NULL, 0);
    ct_archive *a = ct_archive_new();
    /* the sampling weights: with EMA, the averaged ones */
    ct_params *w = m->ema ? m->ema : m->ps;
    int rc = !json || !a || ct_params_put(w, a, "params/") ||
             ct_archive_put_i64(a, "model/format", FL_SAVED_MODEL_FORMAT) ||
             put_text(a, "model/family", m->fam->name) || put_text(a, "model/config", json) ||
             put_text(a, "model/key", key) || ct_archive_put_i64(a, "model/u_dim", m->u_dim) ||
             ct_archive_put_i64(a, "model/z_dim", m->z_dim) ||
             (tr && fl_train_result_put(tr, a, "train/")) || ct_archive_write(a, path);
    ct_archive_free(a);
    free(json);
    return rc ? fl_fail_ctx("%s", path) : 0;
}

int fl_fiber_saved_key(const char *path, char key[17])
{
    ct_archive *a = ct_archive_read(path);
    char *k = a ? get_text(a, "model/key") : NULL;
    int rc = k && strlen(k) == 16 ? 0 : -1;
    if (!rc) memcpy(key, k, 17);
    free(k);
    ct_archive_free(a);
    if (rc) ct_clear_error();
    return rc;
}

fl_fiber *fl_fiber_open_saved(const char *path, fl_config **config, fl_train_result *tr)
{
    *config = NULL;
    ct_archive *a = ct_archive_read(path);
    if (!a) return fl_fail_ctx("%s", path), NULL;
    int64_t format = 0, u_dim = 0, z_dim = 0;
    char *json = get_text(a, "model/config");
    fl_fiber *m = NULL;
    fl_config *c = NULL;
    if (ct_archive_get_i64(a, "model/format", &format) || format != FL_SAVED_MODEL_FORMAT ||
        ct_archive_get_i64(a, "model/u_dim", &u_dim) || ct_archive_get_i64(a, "model/z_dim", &z_dim) ||
        !json) {
        fl_fail("%s: not a saved fiber model of this version (model/format, model/config)", path);
    } else if (!(c = fl_config_parse(json, path))) {
        fl_fail_ctx("%s: model/config", path);
    } else if ((m = fl_fiber_create(c, (int)u_dim, (int)z_dim)) == NULL) {
        fl_fail_ctx("%s", path);
    } else if (ct_params_get(m->ps, a, "params/") || (tr && fl_train_result_get(tr, a, "train/"))) {
        fl_fail_ctx("%s", path);
        fl_fiber_free(m);
        m = NULL;
    }
    free(json);
    ct_archive_free(a);
    if (!m) {
        fl_config_free(c);
        return NULL;
    }
    *config = c;
    return m;
}
