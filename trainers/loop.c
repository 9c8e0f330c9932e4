/* The shared training loop: schedule, clipping, non-finite guard, validation and early
 * stopping, checkpoints and resume, progress and curves. */
#include "trainers/loop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

const fl_key fl_keys_train[] = {
    {"train.steps", FL_KEY_INT, "2000", 1, 1e9, NULL,
     "Optimizer steps of a fiber-model training run."},
    {"train.batch_size", FL_KEY_INT, "256", 1, 1e6, NULL, "Mini-batch size."},
    {"train.lr", FL_KEY_NUM, "2e-4", 0, 10, NULL,
     "Peak learning rate of the one-cycle schedule (the paper's max lr: 2e-4)."},
    {"train.lambda", FL_KEY_NUM, "0", 0, 1e6, NULL,
     "Weight λ of the fiber loss of samples in the training objective; 0 skips that path."},
    {"train.fiber_warmup", FL_KEY_NUM, "0", 0, 1, NULL,
     "Share of the steps over which the fiber-loss weight rises linearly from 0 to λ, so "
     "that the family's own loss shapes the model first (as the authors' warm_up_fiber)."},
    {"train.fiber_batch", FL_KEY_INT, "0", 0, 1e6, NULL,
     "Samples per step for the fiber-loss term (the first ones of the batch); 0: the "
     "whole batch. Decoding and the subject dominate a step's time when λ > 0."},
    {"train.latent_noise", FL_KEY_NUM, "0", 0, 10, NULL,
     "Standard deviation of Gaussian noise added to the (standardized) training latents u "
     "at every step: keeps a flow from contracting onto the data manifold, whose samples "
     "then leave it."},
    {"train.colorings", FL_KEY_INT, "1", 1, 1000, NULL,
     "Colorings of each training digit the fiber model learns from: the stored one and "
     "colorings − 1 drawn from the data variant's law, i.e. several points of each fiber."},
    {"train.schedule", FL_KEY_STR, "\"onecycle\"", FL_NO_BOUNDS, "onecycle|constant",
     "Learning-rate schedule: PyTorch's OneCycleLR (cosine) or a constant rate."},
    {"train.pct_start", FL_KEY_NUM, "0.3", 0.01, 0.99, NULL,
     "Share of the steps spent warming up to the peak rate (one-cycle)."},
    {"train.div_factor", FL_KEY_NUM, "25", 1, 1e6, NULL,
     "The one-cycle schedule starts at lr / div_factor."},
    {"train.final_div_factor", FL_KEY_NUM, "1e4", 1, 1e9, NULL,
     "The one-cycle schedule ends at lr / div_factor / final_div_factor."},
    {"train.optimizer", FL_KEY_STR, "\"adam\"", FL_NO_BOUNDS, "adam|adamw",
     "Adam, or AdamW (decoupled weight decay)."},
    {"train.weight_decay", FL_KEY_NUM, "0", 0, 1, NULL, "Weight decay."},
    {"train.clip_grad", FL_KEY_NUM, "10", 0, 1e9, NULL,
     "Largest global gradient norm; larger gradients are scaled down. 0: no clipping."},
    {"train.val_every", FL_KEY_INT, "250", 0, 1e9, NULL,
     "Steps between validation losses (0: no validation)."},
    {"train.patience", FL_KEY_INT, "0", 0, 1e6, NULL,
     "Early stopping: validations without improvement before training stops and the best "
     "parameters are restored (0: never stop early)."},
    {"train.checkpoint_every", FL_KEY_INT, "500", 0, 1e9, NULL,
     "Steps between checkpoints (0: only at the end). Checkpoints are written atomically."},
    {"train.max_nonfinite", FL_KEY_INT, "20", 0, 1e9, NULL,
     "Steps with a NaN or infinite loss or gradient that are skipped before training "
     "stops with an error."},
    {"train.curve_every", FL_KEY_INT, "20", 1, 1e9, NULL,
     "Steps averaged into one point of the saved loss curves."},
    FL_KEYS_END,
};

void fl_terms_add(fl_terms *t, const char *name, double value)
{
    if (t->n >= FL_MAX_TERMS) return;
    t->name[t->n] = name;
    t->value[t->n] = value;
    t->n++;
}

const char *const fl_train_param_keys[] = {
    "train.steps", "train.lr", "train.schedule", "train.pct_start", "train.div_factor",
    "train.final_div_factor", "train.optimizer", "train.weight_decay", "train.clip_grad", NULL,
};

/* <section>.key when the schema has it, else train.key. */
static const char *key_for(const char *section, const char *key, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", section, key);
    if (fl_config_key(buf)) return buf;
    snprintf(buf, n, "train.%s", key);
    return buf;
}

void fl_train_opts_from_config(fl_train_opts *o, const fl_config *c, const char *section)
{
    char k[128];
    memset(o, 0, sizeof *o);
    o->label = section;
    o->steps = fl_cfg_int(c, key_for(section, "steps", k, sizeof k));
    o->lr = fl_cfg_num(c, key_for(section, "lr", k, sizeof k));
    o->schedule = strcmp(fl_cfg_str(c, "train.schedule"), "constant") == 0 ? FL_SCHED_CONSTANT
                                                                             : FL_SCHED_ONECYCLE;
    o->pct_start = fl_cfg_num(c, "train.pct_start");
    o->div_factor = fl_cfg_num(c, "train.div_factor");
    o->final_div_factor = fl_cfg_num(c, "train.final_div_factor");
    o->optimizer = strcmp(fl_cfg_str(c, "train.optimizer"), "adamw") == 0 ? CT_ADAMW : CT_ADAM;
    o->weight_decay = fl_cfg_num(c, "train.weight_decay");
    o->clip_grad = fl_cfg_num(c, "train.clip_grad");
    o->val_every = fl_cfg_int(c, "train.val_every");
    o->patience = (int)fl_cfg_int(c, "train.patience");
    o->checkpoint_every = fl_cfg_int(c, "train.checkpoint_every");
    o->max_nonfinite = (int)fl_cfg_int(c, "train.max_nonfinite");
    o->curve_every = fl_cfg_int(c, "train.curve_every");
}

/* PyTorch's OneCycleLR (anneal_strategy='cos', three_phase=False). */
double fl_schedule_lr(const fl_train_opts *o, int64_t k)
{
    if (o->schedule == FL_SCHED_CONSTANT) return o->lr;
    double initial = o->lr / o->div_factor;
    double min_lr = initial / o->final_div_factor;
    double end1 = o->pct_start * (double)o->steps - 1.0;
    double end2 = (double)o->steps - 1.0;
    double start, end, pct;
    if ((double)k <= end1) {
        start = initial;
        end = o->lr;
        pct = end1 > 0 ? (double)k / end1 : 1.0;
    } else {
        start = o->lr;
        end = min_lr;
        pct = end2 > end1 ? ((double)k - end1) / (end2 - end1) : 1.0;
    }
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

void fl_train_result_free(fl_train_result *r)
{
    if (!r) return;
    free(r->curve);
    free(r->curve_steps);
    free(r->val);
    free(r->val_steps);
    memset(r, 0, sizeof *r);
}

/* Loop state that lives across steps and in checkpoints. */
typedef struct {
    int64_t step, skipped, best_step, bad_vals;
    double best_val;
    double seconds_before;  /* training seconds of the runs this one resumes */
    int64_t cap_points, cap_val;
} loop_state;

static int push_curve(fl_train_result *r, loop_state *st, const double *mean, int64_t step)
{
    if (r->n_points == st->cap_points) {
        st->cap_points = st->cap_points ? 2 * st->cap_points : 64;
        r->curve = realloc(r->curve, (size_t)st->cap_points * FL_MAX_TERMS * sizeof *r->curve);
        r->curve_steps = realloc(r->curve_steps, (size_t)st->cap_points * sizeof *r->curve_steps);
        if (!r->curve || !r->curve_steps) return fl_fail("out of memory");
    }
    memcpy(r->curve + r->n_points * r->n_terms, mean, (size_t)r->n_terms * sizeof *mean);
    r->curve_steps[r->n_points++] = step;
    return 0;
}

/* The curve column of a term, by name; a name not seen before gets a new column, whose
 * earlier points are NaN (the curve buffer has room for FL_MAX_TERMS columns). -1 when
 * there would be more than FL_MAX_TERMS distinct names. */
static int term_column(fl_train_result *r, const char *name, const char *label)
{
    char key[sizeof r->term_names[0]];
    snprintf(key, sizeof key, "%s", name);
    for (int j = 0; j < r->n_terms; j++)
        if (strcmp(r->term_names[j], key) == 0) return j;
    if (r->n_terms == FL_MAX_TERMS)
        return fl_fail("%s: loss term '%s' is one more than the %d distinct terms the loss "
                       "curves can hold (FL_MAX_TERMS)", label, key, FL_MAX_TERMS);
    int old = r->n_terms, n = old + 1;
    /* widen every row in place, last row first: row p moves from p·old to p·n ≥ p·old */
    for (int64_t p = r->n_points - 1; p >= 0; p--) {
        r->curve[p * n + old] = NAN;
        memmove(r->curve + p * n, r->curve + p * old, (size_t)old * sizeof *r->curve);
    }
    snprintf(r->term_names[old], sizeof r->term_names[old], "%s", key);
    r->n_terms = n;
    return old;
}

static int push_val(fl_train_result *r, loop_state *st, double v, int64_t step)
{
    if (r->n_val == st->cap_val) {
        st->cap_val = st->cap_val ? 2 * st->cap_val : 32;
        r->val = realloc(r->val, (size_t)st->cap_val * sizeof *r->val);
        r->val_steps = realloc(r->val_steps, (size_t)st->cap_val * sizeof *r->val_steps);
        if (!r->val || !r->val_steps) return fl_fail("out of memory");
    }
    r->val[r->n_val] = v;
    r->val_steps[r->n_val++] = step;
    return 0;
}

/* An (n, m) array of doubles or (n) of int64s as an archive entry, and back. */
static int put_array(ct_archive *a, const char *name, const void *v, int64_t n, int64_t m,
                     ct_dtype dt)
{
    ct_scope *s = ct_scope_begin();
    ct_shape shape = dt == CT_F64 ? CT_SHAPE(n, m) : CT_SHAPE(n);
    ct_tensor *t = (n * m) != 0 ? ct_from_data(v, shape, dt) : ct_zeros(shape, dt);
    int rc = ct_archive_put(a, name, t) ? -1 : 0;
    ct_scope_end(s);
    return rc;
}

static int get_array(const ct_archive *a, const char *name, void **out, int64_t *n)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_archive_get(a, name);
    int rc = -1;
    if (t) {
        size_t size = ct_dtype_size(ct_dtype_of(t));
        *n = ct_numel(t);
        *out = malloc((size_t)(*n ? *n : 1) * size);
        rc = *out && !ct_to_data(t, *out, (size_t)*n * size) ? 0 : -1;
    }
    ct_scope_end(s);
    return rc;
}

/* The loss curves and validation losses of r under prefix: <prefix>n_terms, curve,
 * curve_steps, val, val_steps, and term_names as one comma-separated U8 tensor. */
static int put_curves(ct_archive *a, const char *prefix, const fl_train_result *r)
{
    char k[256], names[FL_MAX_TERMS * 33] = "";
#define KEY(name) (snprintf(k, sizeof k, "%s%s", prefix, name), k)
    size_t len = 0;
    for (int i = 0; i < r->n_terms; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? "," : "", r->term_names[i]);
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = len ? ct_from_data(names, CT_SHAPE((int64_t)len), CT_U8) : ct_zeros(CT_SHAPE(0), CT_U8);
    int rc = ct_archive_put_i64(a, KEY("n_terms"), r->n_terms) ||
             put_array(a, KEY("curve"), r->curve, r->n_points, r->n_terms, CT_F64) ||
             put_array(a, KEY("curve_steps"), r->curve_steps, r->n_points, 1, CT_I64) ||
             put_array(a, KEY("val"), r->val, r->n_val, 1, CT_F64) ||
             put_array(a, KEY("val_steps"), r->val_steps, r->n_val, 1, CT_I64) ||
             ct_archive_put(a, KEY("term_names"), t);
    ct_scope_end(s);
    return rc ? -1 : 0;
}

/* The same back, checked against each other; origin names the file in messages. */
static int get_curves(const ct_archive *a, const char *prefix, fl_train_result *r, const char *origin)
{
    char k[256], names[FL_MAX_TERMS * 33] = "";
    int64_t nterms = 0, n_curve = 0, n_val_steps = 0;
    if (ct_archive_get_i64(a, KEY("n_terms"), &nterms)) return fl_fail_ctx("%s", origin);
    if (nterms < 0 || nterms > FL_MAX_TERMS)
        return fl_fail("%s: %s = %lld is outside [0, %d]", origin, k, (long long)nterms, FL_MAX_TERMS);
    r->n_terms = (int)nterms;
    if (get_array(a, KEY("curve"), (void **)&r->curve, &n_curve) ||
        get_array(a, KEY("curve_steps"), (void **)&r->curve_steps, &r->n_points) ||
        get_array(a, KEY("val"), (void **)&r->val, &r->n_val) ||
        get_array(a, KEY("val_steps"), (void **)&r->val_steps, &n_val_steps))
        return fl_fail_ctx("%s", origin);
    if (n_curve != r->n_points * r->n_terms || n_val_steps != r->n_val)
        return fl_fail("%s: %scurve or %sval does not match its steps", origin, prefix, prefix);
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_archive_get(a, KEY("term_names"));
    int rc = !t || ct_numel(t) >= (int64_t)sizeof names ? -1 : 0;
    if (!rc && ct_numel(t)) rc = ct_to_data(t, names, (size_t)ct_numel(t)) ? -1 : 0;
    ct_scope_end(s);
    if (rc) return fl_fail("%s: %s unreadable", origin, k);
    int i = 0;
    for (char *save = NULL, *tok = strtok_r(names, ",", &save); tok && i < FL_MAX_TERMS;
         tok = strtok_r(NULL, ",", &save))
        snprintf(r->term_names[i++], sizeof r->term_names[0], "%s", tok);
    if (i != r->n_terms)
        return fl_fail("%s: %s has %d names for %d curve columns", origin, k, i, r->n_terms);
#undef KEY
    return 0;
}

static int write_checkpoint(const fl_task *task, const fl_train_opts *o, ct_optim *opt,
                            const ct_archive *best, const loop_state *st,
                            const fl_train_result *r, double t0, bool finished)
{
    ct_archive *a = ct_archive_new();
    int rc = 0;
    if (ct_archive_put_f64(a, "loop/seconds", st->seconds_before + (fl_now() - t0)) ||
        ct_params_put(task->params, a, "params/") || ct_optim_put(opt, a, "optim/") ||
        ct_archive_put_i64(a, "loop/step", st->step) ||
        ct_archive_put_i64(a, "loop/skipped", st->skipped) ||
        ct_archive_put_i64(a, "loop/best_step", st->best_step) ||
        ct_archive_put_i64(a, "loop/bad_vals", st->bad_vals) ||
        ct_archive_put_f64(a, "loop/best_val", st->best_val) ||
        ct_archive_put_i64(a, "loop/finished", finished) ||
        ct_archive_put_i64(a, "loop/fingerprint", (int64_t)o->fingerprint) ||
        put_curves(a, "loop/", r))
        rc = -1;
    for (int i = 0; !rc && best && i < ct_archive_count(best); i++) {
        char key[512];
        snprintf(key, sizeof key, "best/%s", ct_archive_name(best, i));
        ct_scope *s = ct_scope_begin();
        rc = ct_archive_put(a, key, ct_archive_get(best, ct_archive_name(best, i))) ? -1 : 0;
        ct_scope_end(s);
    }
    if (!rc && task->put_state && task->put_state(task->ctx, a)) rc = -1;
    if (!rc && ct_archive_write(a, o->checkpoint)) rc = -1;
    ct_archive_free(a);
    if (rc) fl_fail_ctx("checkpoint %s", o->checkpoint);
    return rc;
}

/* The counters of a checkpoint against each other and the run: a file with a valid
 * checksum may still hold values no run writes (edited, or from a bug), and a step past
 * the run's steps would mark the run finished without training it. */
static int check_counters(const fl_train_opts *o, const loop_state *st)
{
    const char *f = o->checkpoint;
    if (st->step < 0 || st->step > o->steps)
        return fl_fail("%s: loop/step = %lld is outside [0, %lld] (train.steps)", f,
                       (long long)st->step, (long long)o->steps);
    if (st->skipped < 0 || st->skipped > st->step)
        return fl_fail("%s: loop/skipped = %lld is outside [0, loop/step = %lld]", f,
                       (long long)st->skipped, (long long)st->step);
    if (st->best_step < -1 || st->best_step > st->step)
        return fl_fail("%s: loop/best_step = %lld is outside [-1, loop/step = %lld]", f,
                       (long long)st->best_step, (long long)st->step);
    if (st->bad_vals < 0 || st->bad_vals > st->step)
        return fl_fail("%s: loop/bad_vals = %lld is outside [0, loop/step = %lld]", f,
                       (long long)st->bad_vals, (long long)st->step);
    if (isnan(st->best_val) || !(st->seconds_before >= 0) || isinf(st->seconds_before))
        return fl_fail("%s: loop/best_val or loop/seconds is NaN or negative", f);
    return 0;
}

/* Every parameter finite: training from NaN parameters would only skip steps, and a
 * finished run would be scored with them. */
static int check_params_finite(const ct_params *ps, const char *origin)
{
    for (int i = 0; i < ct_params_count(ps); i++) {
        ct_scope *s = ct_scope_begin();
        const ct_tensor *p = ct_params_at(ps, i);
        double finite = ct_item(ct_sum(ct_isfinite(p)));
        int64_t n = ct_numel(p);
        ct_scope_end(s);
        if (finite != (double)n)
            return fl_fail("%s: params/%s holds %lld values that are NaN or infinite", origin,
                           ct_params_name(ps, i), (long long)(n - (int64_t)finite));
    }
    return 0;
}

static int read_checkpoint(const fl_task *task, const fl_train_opts *o, ct_optim *opt,
                           ct_archive **best, loop_state *st, fl_train_result *r, bool *finished)
{
    ct_archive *a = ct_archive_read(o->checkpoint);
    if (!a) return -1;
    int64_t fp = 0, fin = 0;
    int rc = 0;
    if (ct_archive_get_i64(a, "loop/fingerprint", &fp) || ct_archive_get_i64(a, "loop/step", &st->step) ||
        ct_archive_get_i64(a, "loop/skipped", &st->skipped) ||
        ct_archive_get_i64(a, "loop/best_step", &st->best_step) ||
        ct_archive_get_i64(a, "loop/bad_vals", &st->bad_vals) ||
        ct_archive_get_f64(a, "loop/best_val", &st->best_val) ||
        ct_archive_get_i64(a, "loop/finished", &fin) ||
        /* checkpoints from before loop/seconds existed resume with the time unknown: 0 */
        (ct_archive_has(a, "loop/seconds") &&
         ct_archive_get_f64(a, "loop/seconds", &st->seconds_before))) {
        rc = fl_fail_ctx("%s", o->checkpoint);
    } else if ((uint64_t)fp != o->fingerprint) {
        rc = fl_fail("%s: written with other settings; remove it or run without resume",
                     o->checkpoint);
    } else if (check_counters(o, st)) {
        rc = -1;
    } else if (ct_params_get(task->params, a, "params/") || ct_optim_get(opt, a, "optim/") ||
               (task->get_state && task->get_state(task->ctx, a))) {
        rc = fl_fail_ctx("%s", o->checkpoint);
    } else if (check_params_finite(task->params, o->checkpoint)) {
        rc = -1;
    } else {
        rc = get_curves(a, "loop/", r, o->checkpoint);
        /* the curve buffers hold FL_MAX_TERMS columns of room */
        st->cap_points = r->n_points;
        st->cap_val = r->n_val;
        if (!rc && r->n_points) {
            double *c = malloc((size_t)r->n_points * FL_MAX_TERMS * sizeof *c);
            if (!c) {
                rc = fl_fail("out of memory");
            } else {
                memcpy(c, r->curve, (size_t)(r->n_points * r->n_terms) * sizeof *c);
                free(r->curve);
                r->curve = c;
            }
        }
        for (int i = 0; !rc && i < ct_archive_count(a); i++) {
            const char *name = ct_archive_name(a, i);
            if (strncmp(name, "best/", 5) != 0) continue;
            if (!*best) *best = ct_archive_new();
            ct_scope *s = ct_scope_begin();
            rc = ct_archive_put(*best, name + 5, ct_archive_get(a, name)) ? -1 : 0;
            ct_scope_end(s);
        }
    }
    *finished = fin != 0;
    ct_archive_free(a);
    return rc;
}

static int validate(const fl_task *task, double *v)
{
    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    int rc = task->validate(task->ctx, v);
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    return rc;
}

int fl_train_run(const fl_task *task, const fl_train_opts *o, fl_train_result *r)
{
    memset(r, 0, sizeof *r);
    loop_state st = {0, 0, -1, 0, INFINITY, 0, 0, 0};
    double t0 = fl_now();
    ct_optim *opt = ct_optim_new(o->optimizer);
    ct_adam_opts ao = ct_adam_defaults();
    ao.lr = fl_schedule_lr(o, 0);
    ao.weight_decay = o->weight_decay;
    ct_archive *best = NULL;
    int rc = 0;
    bool finished = false;
    if (!opt || ct_optim_add_group(opt, task->params, ao) < 0) {
        ct_optim_free(opt);
        return fl_fail_ctx("optimizer");
    }
    if (o->resume && o->checkpoint && access(o->checkpoint, F_OK) == 0) {
        if (read_checkpoint(task, o, opt, &best, &st, r, &finished)) {
            rc = -1;
            goto done;
        }
        r->resumed = true;
        fl_info("%s: resumed from %s at step %lld", o->label, o->checkpoint, (long long)st.step);
    }
    if (finished) goto done;

    /* the current curve point: per column, the sum and number of steps that had it */
    double sum[FL_MAX_TERMS] = {0};
    int64_t n_had[FL_MAX_TERMS] = {0}, count = 0;
    fl_progress *bar = fl_progress_new(o->label, o->steps, "steps");
    bool stop = false;
    while (!stop && st.step < o->steps) {
        ct_optim_set_lr(opt, -1, fl_schedule_lr(o, st.step));
        ct_scope *s = ct_scope_begin();
        fl_terms terms = {0};
        ct_tensor *loss = task->step_loss(task->ctx, &terms);
        if (!loss) {
            ct_scope_end(s);
            rc = fl_fail_ctx("%s: step %lld", o->label, (long long)st.step + 1);
            break;
        }
        double lv = ct_item(loss);
        bool ok = isfinite(lv);
        if (ok && ct_backward(loss, false)) {
            ct_scope_end(s);
            rc = fl_fail_ctx("%s: backward at step %lld", o->label, (long long)st.step + 1);
            break;
        }
        double grad_norm = NAN;
        if (ok && ct_optim_step_clipped(opt, o->clip_grad, &grad_norm)) {
            ct_scope_end(s);
            rc = fl_fail_ctx("%s: optimizer step", o->label);
            break;
        }
        if (ok) ok = isfinite(grad_norm); /* a non-finite gradient was not applied */
        ct_optim_zero_grad(opt);
        ct_scope_end(s);
        st.step++;
        if (ok && task->after_step) {
            bool prev = ct_set_grad_enabled(false);
            ct_scope *hs = ct_scope_begin();
            int hrc = task->after_step(task->ctx, st.step);
            ct_scope_end(hs);
            ct_set_grad_enabled(prev);
            if (hrc) {
                rc = fl_fail_ctx("%s: after step %lld", o->label, (long long)st.step);
                break;
            }
        }
        if (!ok) {
            st.skipped++;
            fl_warn("%s: step %lld: non-finite loss or gradient, step skipped (%lld of at most %d)",
                    o->label, (long long)st.step, (long long)st.skipped, o->max_nonfinite);
            if (st.skipped > o->max_nonfinite) {
                rc = fl_fail("%s: %lld steps had a NaN or infinite loss or gradient (train.max_nonfinite = %d); "
                             "lower train.lr or raise train.clip_grad",
                             o->label, (long long)st.skipped, o->max_nonfinite);
                break;
            }
        } else {
            for (int i = 0; i < terms.n; i++) {
                int j = term_column(r, terms.name[i], o->label);
                if (j < 0) {
                    rc = -1;
                    break;
                }
                sum[j] += terms.value[i];
                n_had[j]++;
            }
            if (rc) break;
            count++;
        }
        if (count && (st.step % o->curve_every == 0 || st.step == o->steps)) {
            double mean[FL_MAX_TERMS];
            for (int j = 0; j < r->n_terms; j++) mean[j] = n_had[j] ? sum[j] / (double)n_had[j] : NAN;
            if (push_curve(r, &st, mean, st.step)) {
                rc = -1;
                break;
            }
            memset(sum, 0, sizeof sum);
            memset(n_had, 0, sizeof n_had);
            count = 0;
        }
        if (task->validate && o->val_every && (st.step % o->val_every == 0 || st.step == o->steps)) {
            double v;
            if (validate(task, &v) || push_val(r, &st, v, st.step)) {
                rc = fl_fail_ctx("%s: validation", o->label);
                break;
            }
            r->last_val = v;
            if (v < st.best_val) {
                st.best_val = v;
                st.best_step = st.step;
                st.bad_vals = 0;
                if (o->patience) {
                    if (!best) best = ct_archive_new();
                    ct_params_put(task->params, best, "");
                }
            } else if (o->patience && ++st.bad_vals >= o->patience) {
                r->stopped_early = true;
                stop = true;
                fl_info("%s: no better validation loss in %d checks; stopping at step %lld, "
                        "best at step %lld", o->label, o->patience, (long long)st.step,
                        (long long)st.best_step);
            }
        }
        if (o->checkpoint && o->checkpoint_every && st.step % o->checkpoint_every == 0 &&
            st.step < o->steps && !stop && write_checkpoint(task, o, opt, best, &st, r, t0, false)) {
            rc = -1;
            break;
        }
        if (bar) {
            char extra[256] = "";
            size_t len = 0;
            for (int i = 0; i < terms.n && len < sizeof extra; i++)
                len += (size_t)snprintf(extra + len, sizeof extra - len, "%s%s %.4g", i ? "  " : "",
                                        terms.name[i], terms.value[i]);
            fl_progress_update(bar, st.step, extra);
        }
    }
    fl_progress_free(bar);
    if (!rc && r->stopped_early && best && ct_params_get(task->params, best, ""))
        rc = fl_fail_ctx("%s: restoring the best parameters", o->label);
    if (!rc && o->checkpoint) rc = write_checkpoint(task, o, opt, best, &st, r, t0, true);
done:
    r->steps_done = st.step;
    r->skipped_nonfinite = st.skipped;
    r->best_val = st.best_val;
    r->best_step = st.best_step;
    r->seconds = st.seconds_before + (fl_now() - t0);
    ct_archive_free(best);
    ct_optim_free(opt);
    if (rc) return -1;
    return 0;
}

int fl_train_checkpoint_fingerprint(const char *path, uint64_t *fingerprint)
{
    ct_archive *a = ct_archive_read(path);
    int64_t fp;
    int rc = !a || ct_archive_get_i64(a, "loop/fingerprint", &fp) ? -1 : 0;
    if (!rc) *fingerprint = (uint64_t)fp;
    ct_archive_free(a);
    return rc;
}

int fl_train_result_put(const fl_train_result *r, ct_archive *a, const char *prefix)
{
    char k[256];
#define KEY(name) (snprintf(k, sizeof k, "%s%s", prefix, name), k)
    int rc = ct_archive_put_i64(a, KEY("steps_done"), r->steps_done) ||
             ct_archive_put_i64(a, KEY("skipped_nonfinite"), r->skipped_nonfinite) ||
             ct_archive_put_i64(a, KEY("best_step"), r->best_step) ||
             ct_archive_put_f64(a, KEY("best_val"), r->best_val) ||
             ct_archive_put_f64(a, KEY("last_val"), r->last_val) ||
             ct_archive_put_f64(a, KEY("seconds"), r->seconds) ||
             ct_archive_put_i64(a, KEY("stopped_early"), r->stopped_early) ||
             put_curves(a, prefix, r);
    return rc ? -1 : 0;
}

int fl_train_result_get(fl_train_result *r, const ct_archive *a, const char *prefix)
{
    char k[256];
    memset(r, 0, sizeof *r);
    int64_t early = 0;
    int rc = ct_archive_get_i64(a, KEY("steps_done"), &r->steps_done) ||
             ct_archive_get_i64(a, KEY("skipped_nonfinite"), &r->skipped_nonfinite) ||
             ct_archive_get_i64(a, KEY("best_step"), &r->best_step) ||
             ct_archive_get_f64(a, KEY("best_val"), &r->best_val) ||
             ct_archive_get_f64(a, KEY("last_val"), &r->last_val) ||
             ct_archive_get_f64(a, KEY("seconds"), &r->seconds) ||
             ct_archive_get_i64(a, KEY("stopped_early"), &early) ||
             get_curves(a, prefix, r, "training result");
#undef KEY
    r->stopped_early = early != 0;
    if (rc) {
        fl_train_result_free(r);
        return -1;
    }
    return 0;
}
