/* The cached-model lifecycle: the key and path, load or train, save, batched forward. */
#include "trainers/model_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/files.h"
#include "core/log.h"
#include "datasets/digits.h"

int fl_cached_path(const fl_config *c, const fl_cached *m, bool create_dir, char *buf, size_t n,
                   uint64_t *key)
{
    char cache[4096], dir[4200], v[96], own[128];
    if (fl_data_cache_dir(c, cache, sizeof cache)) return -1;
    snprintf(dir, sizeof dir, "%s/models", cache);
    if (create_dir && fl_mkdir_p(dir)) return -1;
    /* data.*, its section, the loop's train.* fallbacks it has no own key for, extras */
    const char *keys[64];
    int nk = 0;
    keys[nk++] = "data";
    keys[nk++] = m->section;
    for (const char *const *k = fl_train_param_keys; *k && nk < 48; k++) {
        snprintf(own, sizeof own, "%s.%s", m->section, *k + strlen("train."));
        if (!fl_config_key(own)) keys[nk++] = *k;
    }
    for (int i = 0; i < m->n_extra_keys && nk < 64; i++) keys[nk++] = m->extra_keys[i];
    char *json = fl_config_json(c, keys, nk);
    if (!json) return fl_fail("out of memory");
    snprintf(v, sizeof v, "\n%s format %d", m->name, m->format);
    uint64_t h = fl_fnv1a64(fl_fnv1a64(FL_FNV_OFFSET, json, strlen(json)), v, strlen(v));
    free(json);
    if (snprintf(buf, n, "%s/%s-%016llx.ckpt", dir, m->name, (unsigned long long)h) >= (int)n)
        return fl_fail("%s: path too long", dir);
    if (key) *key = h;
    return 0;
}

static int save(const fl_cached *m, const fl_cached_info *info, const char *path)
{
    ct_archive *a = ct_archive_new();
    char k[128];
    int rc = !a || ct_params_put(m->ps, a, "params/") ||
             ct_archive_put_i64(a, "report/steps", info->steps) ||
             ct_archive_put_f64(a, "report/train_seconds", info->train_seconds);
    for (int i = 0; !rc && i < m->n_ids; i++) {
        snprintf(k, sizeof k, "id/%s", m->ids[i].name);
        rc = ct_archive_put_i64(a, k, m->ids[i].value);
    }
    for (int i = 0; !rc && i < m->n_report; i++) {
        snprintf(k, sizeof k, "report/%s", m->report[i].name);
        rc = ct_archive_put_f64(a, k, *m->report[i].value);
    }
    if (!rc) rc = ct_archive_write(a, path);
    ct_archive_free(a);
    return rc ? fl_fail_ctx("%s", path) : 0;
}

static int load(const fl_cached *m, const char *path, fl_cached_info *info)
{
    ct_archive *a = ct_archive_read(path);
    if (!a) return fl_fail_ctx("%s", m->name);
    char k[128];
    int rc = ct_archive_get_i64(a, "report/steps", &info->steps) ||
             ct_archive_get_f64(a, "report/train_seconds", &info->train_seconds)
                 ? fl_fail_ctx("%s", path)
                 : 0;
    for (int i = 0; !rc && i < m->n_ids; i++) {
        int64_t v = 0;
        snprintf(k, sizeof k, "id/%s", m->ids[i].name);
        if (ct_archive_get_i64(a, k, &v))
            rc = fl_fail_ctx("%s", path);
        else if (v != m->ids[i].value)
            rc = fl_fail("%s: holds a %s of %s %lld, expected %lld; remove it", path, m->name,
                         m->ids[i].name, (long long)v, (long long)m->ids[i].value);
    }
    for (int i = 0; !rc && i < m->n_report; i++) {
        snprintf(k, sizeof k, "report/%s", m->report[i].name);
        if (ct_archive_get_f64(a, k, m->report[i].value)) rc = fl_fail_ctx("%s", path);
    }
    if (!rc && ct_params_get(m->ps, a, "params/")) rc = fl_fail_ctx("%s", path);
    ct_archive_free(a);
    return rc;
}

typedef struct {
    const fl_cached *m;
    fl_batcher *b;
    ct_gen *noise;
    char prefix[96];
    ct_params *ema;          /* the moving average (m->ema_decay > 0), from the first step */
} trainer;

static ct_tensor *train_step(void *ctx, fl_terms *terms)
{
    trainer *t = ctx;
    fl_batch x;
    if (fl_batcher_next(t->b, &x)) return NULL;
    ct_tensor *loss = t->m->step_loss(t->m->ctx, &x, t->noise, terms);
    if (!loss) fl_fail_ctx("%s", t->m->name);
    return loss;
}

static int train_after(void *ctx, int64_t step)
{
    trainer *t = ctx;
    (void)step;
    if (!t->ema) { /* from the weights after the first step */
        t->ema = ct_params_clone(t->m->ps);
        return t->ema ? 0 : fl_fail_ctx("%s: EMA weights", t->m->name);
    }
    return ct_params_ema_update(t->ema, t->m->ps, t->m->ema_decay) ? fl_fail_ctx("%s: EMA update", t->m->name) : 0;
}

static int train_put(void *ctx, ct_archive *a)
{
    trainer *t = ctx;
    char k[128], e[128];
    snprintf(k, sizeof k, "%s/noise", t->m->name);
    snprintf(e, sizeof e, "%s/ema/", t->m->name);
    ct_scope *sc = ct_scope_begin();
    int rc = fl_batcher_put(t->b, a, t->prefix) ||
             (t->noise && ct_archive_put(a, k, ct_gen_get_state(t->noise))) ||
             (t->ema && ct_params_put(t->ema, a, e));
    ct_scope_end(sc);
    return rc ? -1 : 0;
}

static int train_get(void *ctx, const ct_archive *a)
{
    trainer *t = ctx;
    char k[128];
    snprintf(k, sizeof k, "%s/noise", t->m->name);
    ct_scope *sc = ct_scope_begin();
    int rc = fl_batcher_get(t->b, a, t->prefix) ||
             (t->noise && ct_gen_set_state(t->noise, ct_archive_get(a, k)) && fl_fail_ctx("%s", k));
    /* the average, when the checkpoint has one (every one after the first step does) */
    char e[256];
    snprintf(e, sizeof e, "%s/ema/%s", t->m->name, ct_params_count(t->m->ps) ? ct_params_name(t->m->ps, 0) : "");
    if (!rc && t->m->ema_decay > 0 && ct_archive_has(a, e)) {
        snprintf(e, sizeof e, "%s/ema/", t->m->name);
        ct_params_free(t->ema);
        t->ema = ct_params_clone(t->m->ps);
        if (!t->ema || ct_params_get(t->ema, a, e)) rc = fl_fail_ctx("%s: EMA weights", t->m->name);
    }
    ct_scope_end(sc);
    return rc ? -1 : 0;
}

static int train(const fl_config *c, const fl_dataset *ds, const fl_cached *m, const char *path,
                 uint64_t key, fl_cached_info *info)
{
    if (!ds) return fl_fail("%s: %s is not trained and no dataset was given to train it on", m->name, path);
    char k[128];
    snprintf(k, sizeof k, "%s.seed", m->section);
    uint64_t seed = (uint64_t)fl_cfg_int(c, k);
    snprintf(k, sizeof k, "%s.batch_size", m->section);
    fl_batch_opts bo = {.batch_size = fl_cfg_int(c, k),
                        .shuffle = true,
                        .recolor = m->recolor || fl_cfg_bool(c, "data.recolor_each_epoch"),
                        .drop_last = false,
                        .seed = seed};
    trainer t = {m, fl_batcher_new(ds, FL_TRAIN, &bo), m->noise_salt ? ct_gen_new(seed ^ m->noise_salt) : NULL, "", NULL};
    snprintf(t.prefix, sizeof t.prefix, "%s/batches/", m->name);
    if (!t.b) {
        ct_gen_free(t.noise);
        return fl_fail_ctx("%s", m->name);
    }
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s.train", path);
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, m->section);
    o.label = m->name;
    o.val_every = 0;
    o.patience = 0;
    o.checkpoint = ckpt;
    o.resume = true;
    o.fingerprint = key;
    fl_task task = {m->ps, &t, train_step, NULL, train_put, train_get,
                    m->ema_decay > 0 ? train_after : NULL};
    fl_train_result res;
    fl_info("training %s (%lld steps) into %s", m->name, (long long)o.steps, path);
    int rc = fl_train_run(&task, &o, &res);
    if (!rc && t.ema && ct_params_copy_values(m->ps, t.ema)) rc = fl_fail_ctx("%s: EMA weights", m->name);
    ct_params_free(t.ema);
    info->steps = res.steps_done;
    info->train_seconds = res.seconds;
    fl_train_result_free(&res);
    fl_batcher_free(t.b);
    ct_gen_free(t.noise);
    if (rc) return -1;
    info->trained = true;
    if (m->measure) {
        bool prev = ct_set_grad_enabled(false);
        rc = m->measure(m->ctx, ds);
        ct_set_grad_enabled(prev);
        if (rc) return fl_fail_ctx("%s: measuring on the test split", m->name);
    }
    if (save(m, info, path)) return -1;
    unlink(ckpt);
    return 0;
}

int fl_cached_open(const fl_config *c, const fl_dataset *ds, const fl_cached *m, char *path,
                   size_t n, fl_cached_info *info)
{
    *info = (fl_cached_info){false, 0, 0};
    uint64_t key = 0;
    if (fl_cached_path(c, m, true, path, n, &key)) return -1;
    /* a cached file appears whole (renamed into place), so one that is there is loaded
     * without the lock; one that is not is trained under it, by one process at a time:
     * a second one waits, then finds it trained */
    int rc;
    if (access(path, F_OK) == 0) {
        rc = load(m, path, info);
    } else {
        fl_lock *lk;
        char train_ckpt[4200];
        if (fl_lock_take(path, true, &lk)) return fl_fail_ctx("%s", m->name);
        snprintf(train_ckpt, sizeof train_ckpt, "%s.train", path);
        fl_remove_temps_of(train_ckpt);
        rc = access(path, F_OK) == 0 ? load(m, path, info) : train(c, ds, m, path, key, info);
        fl_lock_release(lk);
    }
    if (!rc) ct_params_set_trainable(m->ps, false);
    return rc;
}

ct_tensor *fl_forward_batched(ct_tensor *(*fn)(void *ctx, const ct_tensor *x), void *ctx,
                              const ct_tensor *x, int64_t batch, int64_t empty_dim)
{
    if (!x) return NULL;
    int64_t n = ct_size(x, 0);
    if (batch <= 0) batch = 512;
    int64_t nb = (n + batch - 1) / batch;
    if (nb == 0) return ct_zeros(CT_SHAPE(0, empty_dim), ct_dtype_of(x));
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    ct_tensor **parts = malloc((size_t)nb * sizeof *parts);
    ct_tensor *out = NULL;
    if (parts) {
        bool ok = true;
        for (int64_t i = 0; i < nb && ok; i++) {
            int64_t len = i == nb - 1 ? n - i * batch : batch;
            parts[i] = fn(ctx, ct_narrow(x, 0, i * batch, len));            /* (len, ...) */
            ok = parts[i] != NULL;
        }
        if (ok) out = ct_cat((const ct_tensor *const *)parts, (int)nb, 0);  /* (N, ...) */
        free(parts);
    } else {
        ct_set_error("out of memory");
    }
    out = ct_scope_keep(sc, out);
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    return out;
}
