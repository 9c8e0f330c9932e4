/* Subject models: the decolorizing autoencoder, the classifier, TorchScript modules and
 * C functions behind one forward; training of the built-in ones on the shared loop,
 * and their cache. */
#include "trainers/subject.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "architectures/conv.h"
#include "core/fiber.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/schema.h"
#include "datasets/batch.h"
#include "trainers/loop.h"
#include "trainers/model_cache.h"

const fl_key fl_keys_subject[] = {
    {"subject.kind", FL_KEY_STR, "\"decolorize_ae\"", FL_NO_BOUNDS, FL_SUBJECT_KINDS,
     "The subject model f: decolorize_ae (decolorize, then the encoder of a conv autoencoder "
     "trained on the gray digits: the paper's), classifier (the logits of a conv digit "
     "classifier, d = 10) or torchscript (a TorchScript module (B, 3, 28, 28) -> (B, d) at "
     "subject.path, given float32 images in [0, 1])."},
    {"subject.path", FL_KEY_STR, "\"\"", FL_NO_BOUNDS, NULL,
     "The TorchScript file of the torchscript subject (torch.jit.save of a scripted or traced "
     "module)."},
    {"subject.input", FL_KEY_STR, "\"gray\"", FL_NO_BOUNDS, "gray|color",
     "What the built-in networks see: gray (the decolorized image, so the fiber is exactly "
     "the set of recolorings) or color (the colored image itself)."},
    {"subject.dim", FL_KEY_INT, "48", 1, 4096, NULL,
     "Representation size d of the autoencoder (the authors used 48); the classifier has 10."},
    {"subject.seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of the subject's initialisation and batches (its own, so that runs with other "
     "seeds reuse one trained subject)."},
    {"subject.steps", FL_KEY_INT, "3000", 1, 1e9, NULL, "Optimizer steps of the subject's training."},
    {"subject.lr", FL_KEY_NUM, "6e-3", 0, 10, NULL,
     "Peak learning rate of the subject's training (one-cycle schedule)."},
    {"subject.batch_size", FL_KEY_INT, "64", 1, 1e6, NULL, "Mini-batch size of the subject's training."},
    {"subject.widths", FL_KEY_INT_LIST, "[32, 64]", 1, 4096, NULL,
     "Channels after each stride-2 convolution of the subject's encoder (28 -> 14 -> 7); the "
     "decoder mirrors them."},
    {"subject.extra", FL_KEY_INT, "0", 0, 2, NULL,
     "Stride-1 3 × 3 convolutions after each stage of the subject's networks."},
    {"subject.hidden", FL_KEY_INT, "0", 0, 65536, NULL,
     "Width of a hidden linear layer between the convolutions and the code (0: none)."},
    {"subject.activation", FL_KEY_STR, "\"silu\"", FL_NO_BOUNDS, "silu|relu|tanh|gelu|leaky_relu",
     "Activation of the subject's networks."},
    FL_KEYS_END,
};

struct fl_subject {
    fl_subject_kind kind;
    int dim;
    bool gray_input;
    ct_params *ps;
    fl_conv_encoder enc;
    fl_conv_decoder dec;       /* autoencoder only */
    ct_script *script;
    ct_tensor *(*fn)(void *ctx, const ct_tensor *x);
    void *ctx;
    void (*free_ctx)(void *ctx);
    char name[64];
    char path[4096];
    fl_subject_report report;
};

static const char *kind_names[] = {"decolorize_ae", "classifier", "torchscript", "custom"};

const char *fl_subject_kind_name(fl_subject_kind k)
{
    return k < FL_SUBJECT_KIND_COUNT ? kind_names[k] : "?";
}

static int kind_parse(const char *name, fl_subject_kind *k)
{
    for (int i = 0; i < FL_SUBJECT_TORCHSCRIPT + 1; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *k = (fl_subject_kind)i;
            return 0;
        }
    return fl_fail("subject.kind: unknown kind '%s' (expected %s)", name, FL_SUBJECT_KINDS);
}

static void report_init(fl_subject_report *r)
{
    memset(r, 0, sizeof *r);
    r->train_seconds = r->recon_rmse = r->recon_fiber = r->other_fiber = r->accuracy = NAN;
}

void fl_subject_free(fl_subject *s)
{
    if (!s) return;
    ct_params_free(s->ps);
    ct_script_free(s->script);
    if (s->free_ctx) s->free_ctx(s->ctx);
    free(s);
}

int fl_subject_dim(const fl_subject *s) { return s->dim; }
fl_subject_kind fl_subject_kind_of(const fl_subject *s) { return s->kind; }
const char *fl_subject_name(const fl_subject *s) { return s->name; }
const char *fl_subject_path(const fl_subject *s) { return s->path; }
const fl_subject_report *fl_subject_report_of(const fl_subject *s) { return &s->report; }

fl_subject *fl_subject_custom(const char *name, int dim,
                              ct_tensor *(*fn)(void *ctx, const ct_tensor *x), void *ctx,
                              void (*free_ctx)(void *ctx))
{
    fl_subject *s = calloc(1, sizeof *s);
    if (!s) return fl_fail("out of memory"), NULL;
    s->kind = FL_SUBJECT_CUSTOM;
    s->dim = dim;
    s->fn = fn;
    s->ctx = ctx;
    s->free_ctx = free_ctx;
    snprintf(s->name, sizeof s->name, "%s", name);
    report_init(&s->report);
    return s;
}

/* ---- forward -------------------------------------------------------------------- */

static bool check_images(const char *fn, const ct_tensor *x)
{
    if (ct_ndim(x) == 4 && ct_size(x, 1) == 3) return true;
    char d[128];
    ct_describe(x, d, sizeof d);
    ct_set_error("%s: expected colored images (B, 3, 28, 28), got %s", fn, d);
    return false;
}

/* What the built-in networks see: (B, 1, 28, 28) gray or (B, 3, 28, 28) colored. */
static ct_tensor *net_input(const fl_subject *s, const ct_tensor *x)
{
    return s->gray_input ? fl_decolorize(x) : ct_ref(x);
}

ct_tensor *fl_subject_forward(fl_subject *s, const ct_tensor *x)
{
    if (!x) return NULL;
    if (!check_images("fl_subject_forward", x)) return NULL;
    ct_scope *sc = ct_scope_begin();
    ct_tensor *z = NULL;
    switch (s->kind) {
    case FL_SUBJECT_DECOLORIZE_AE:
    case FL_SUBJECT_CLASSIFIER:
        z = fl_conv_encoder_forward(&s->enc, net_input(s, x));           /* (B, d) */
        break;
    case FL_SUBJECT_TORCHSCRIPT:
        z = ct_script_forward(s->script, x);                             /* (B, d) */
        if (z && ct_dtype_of(z) != ct_dtype_of(x)) z = ct_to_dtype(z, ct_dtype_of(x));
        break;
    case FL_SUBJECT_CUSTOM:
        z = s->fn(s->ctx, x);                                            /* (B, d) */
        break;
    default: break;
    }
    if (z && (ct_ndim(z) != 2 || ct_size(z, 0) != ct_size(x, 0) || ct_size(z, 1) != s->dim)) {
        char d[128];
        ct_describe(z, d, sizeof d);
        ct_set_error("subject %s: returned %s for %lld images; expected (%lld, %d)", s->name, d,
                     (long long)ct_size(x, 0), (long long)ct_size(x, 0), s->dim);
        z = NULL;
    }
    z = ct_scope_keep(sc, z);
    ct_scope_end(sc);
    return z;
}

ct_tensor *fl_subject_forward_all(fl_subject *s, const ct_tensor *x, int64_t batch)
{
    if (!x) return NULL;
    int64_t n = ct_size(x, 0);
    if (batch <= 0) batch = 512;
    int64_t nb = (n + batch - 1) / batch;
    if (nb == 0) return ct_zeros(CT_SHAPE(0, s->dim), ct_dtype_of(x));
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    ct_tensor **parts = malloc((size_t)nb * sizeof *parts);
    ct_tensor *z = NULL;
    if (parts) {
        bool ok = true;
        for (int64_t i = 0; i < nb && ok; i++) {
            int64_t len = i == nb - 1 ? n - i * batch : batch;
            parts[i] = fl_subject_forward(s, ct_narrow(x, 0, i * batch, len));  /* (len, d) */
            ok = parts[i] != NULL;
        }
        if (ok) z = ct_cat((const ct_tensor *const *)parts, (int)nb, 0);        /* (N, d) */
        free(parts);
    } else {
        ct_set_error("out of memory");
    }
    z = ct_scope_keep(sc, z);
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    return z;
}

ct_tensor *fl_subject_decode(fl_subject *s, const ct_tensor *z)
{
    if (s->kind != FL_SUBJECT_DECOLORIZE_AE) {
        ct_set_error("subject %s: has no decoder", s->name);
        return NULL;
    }
    ct_scope *sc = ct_scope_begin();
    ct_tensor *x = ct_scope_keep(sc, ct_sigmoid(fl_conv_decoder_forward(&s->dec, z)));
    ct_scope_end(sc);
    return x;
}

/* ---- training -------------------------------------------------------------------- */

typedef struct {
    fl_subject *s;
    fl_batcher *b;
} trainer;

static ct_tensor *train_step(void *ctx, fl_terms *terms)
{
    trainer *t = ctx;
    fl_subject *s = t->s;
    fl_batch x;
    if (fl_batcher_next(t->b, &x)) return NULL;
    const ct_tensor *in = s->gray_input ? x.gray : x.colored;   /* (B, 1|3, 28, 28) */
    ct_tensor *loss;
    if (s->kind == FL_SUBJECT_DECOLORIZE_AE) {
        ct_tensor *z = fl_conv_encoder_forward(&s->enc, in);                   /* (B, d) */
        ct_tensor *r = ct_sigmoid(fl_conv_decoder_forward(&s->dec, z));        /* (B, C, 28, 28) */
        loss = ct_mse(r, in);
        if (loss) fl_terms_add(terms, "mse", ct_item(loss));
    } else {
        ct_tensor *logits = fl_conv_encoder_forward(&s->enc, in);              /* (B, 10) */
        loss = ct_cross_entropy(logits, x.labels);
        if (loss) fl_terms_add(terms, "ce", ct_item(loss));
    }
    if (!loss) fl_fail_ctx("subject %s", s->name);
    return loss;
}

static int train_put(void *ctx, ct_archive *a)
{
    return fl_batcher_put(((trainer *)ctx)->b, a, "subject/batches/");
}

static int train_get(void *ctx, const ct_archive *a)
{
    return fl_batcher_get(((trainer *)ctx)->b, a, "subject/batches/");
}

/* The report values, measured on the test split with grad off. */
static int measure(fl_subject *s, const fl_dataset *ds, uint64_t seed)
{
    int64_t n = fl_dataset_count(ds, FL_TEST);
    if (n < 2) return 0;
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    fl_batch b;
    int rc = fl_dataset_slice(ds, FL_TEST, 0, n, &b);
    const int64_t chunk = 500;
    double se = 0, fib = 0, correct = 0;
    int64_t pixels = 0;
    for (int64_t i = 0; !rc && i < n; i += chunk) {
        ct_scope *inner = ct_scope_begin();
        int64_t len = i + chunk > n ? n - i : chunk;
        ct_tensor *in = ct_narrow(s->gray_input ? b.gray : b.colored, 0, i, len); /* (len, C, 28, 28) */
        ct_tensor *z = fl_conv_encoder_forward(&s->enc, in);                     /* (len, d) */
        if (s->kind == FL_SUBJECT_DECOLORIZE_AE) {
            ct_tensor *r = ct_sigmoid(fl_conv_decoder_forward(&s->dec, z));       /* (len, C, 28, 28) */
            ct_tensor *z2 = fl_conv_encoder_forward(&s->enc, r);                  /* (len, d) */
            double e = ct_item(ct_sum(ct_square(ct_sub(r, in))));
            double f = ct_item(ct_sum(fl_fiber_loss(z2, z)));
            if (!isfinite(e) || !isfinite(f)) rc = -1;
            se += e;
            fib += f;
            pixels += ct_numel(in);
        } else {
            ct_tensor *hit = ct_eq(ct_argmax(z, 1, false), ct_narrow(b.labels, 0, i, len));
            double h = ct_item(ct_sum(ct_to_dtype(hit, CT_F64)));
            if (!isfinite(h)) rc = -1;
            correct += h;
        }
        ct_scope_end(inner);
    }
    if (!rc && s->kind == FL_SUBJECT_DECOLORIZE_AE) {
        s->report.recon_rmse = sqrt(se / (double)pixels);
        s->report.recon_fiber = fib / (double)n;
    } else if (!rc) {
        s->report.accuracy = correct / (double)n;
    }
    /* the scale: each test image against a random test image of another class */
    ct_tensor *z = rc ? NULL : fl_subject_forward_all(s, b.colored, chunk);      /* (n, d) */
    uint8_t *labels = malloc((size_t)n);
    int64_t *other = malloc((size_t)n * sizeof *other);
    if (z && labels && other && !ct_to_data(ct_to_dtype(b.labels, CT_U8), labels, (size_t)n)) {
        fl_rng r;
        fl_rng_seed_stream(&r, seed, 0x5ca1e);
        for (int64_t i = 0; i < n; i++) {
            int64_t j = i;
            for (int tries = 0; tries < 1000 && (j == i || labels[j] == labels[i]); tries++)
                j = (int64_t)fl_rng_below(&r, (uint64_t)n);
            other[i] = j;
        }
        ct_tensor *zo = ct_index_select(z, 0, ct_from_data(other, CT_SHAPE(n), CT_I64)); /* (n, d) */
        s->report.other_fiber = ct_item(ct_mean(fl_fiber_loss(zo, z)));
    } else if (!rc) {
        rc = -1;
    }
    free(labels);
    free(other);
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    if (rc) return fl_fail_ctx("subject %s: measuring on the test split", s->name);
    return 0;
}

static int save(const fl_subject *s, const char *path)
{
    ct_archive *a = ct_archive_new();
    const fl_subject_report *r = &s->report;
    int rc = ct_params_put(s->ps, a, "params/") || ct_archive_put_i64(a, "subject/kind", s->kind) ||
             ct_archive_put_i64(a, "subject/dim", s->dim) ||
             ct_archive_put_i64(a, "report/steps", r->steps) ||
             ct_archive_put_f64(a, "report/train_seconds", r->train_seconds) ||
             ct_archive_put_f64(a, "report/recon_rmse", r->recon_rmse) ||
             ct_archive_put_f64(a, "report/recon_fiber", r->recon_fiber) ||
             ct_archive_put_f64(a, "report/other_fiber", r->other_fiber) ||
             ct_archive_put_f64(a, "report/accuracy", r->accuracy) || ct_archive_write(a, path);
    ct_archive_free(a);
    return rc ? fl_fail_ctx("%s", path) : 0;
}

static int load(fl_subject *s, const char *path)
{
    ct_archive *a = ct_archive_read(path);
    if (!a) return fl_fail_ctx("subject");
    int64_t kind = -1, dim = -1;
    fl_subject_report *r = &s->report;
    int rc = 0;
    if (ct_archive_get_i64(a, "subject/kind", &kind) || ct_archive_get_i64(a, "subject/dim", &dim) ||
        ct_archive_get_i64(a, "report/steps", &r->steps) ||
        ct_archive_get_f64(a, "report/train_seconds", &r->train_seconds) ||
        ct_archive_get_f64(a, "report/recon_rmse", &r->recon_rmse) ||
        ct_archive_get_f64(a, "report/recon_fiber", &r->recon_fiber) ||
        ct_archive_get_f64(a, "report/other_fiber", &r->other_fiber) ||
        ct_archive_get_f64(a, "report/accuracy", &r->accuracy))
        rc = fl_fail_ctx("%s", path);
    else if (kind != s->kind || dim != s->dim)
        rc = fl_fail("%s: holds a %s subject of dimension %lld, expected %s of %d; remove it",
                     path, fl_subject_kind_name((fl_subject_kind)kind), (long long)dim, s->name, s->dim);
    else if (ct_params_get(s->ps, a, "params/"))
        rc = fl_fail_ctx("%s", path);
    ct_archive_free(a);
    return rc;
}

static int train(fl_subject *s, const fl_config *c, const fl_dataset *ds, uint64_t fingerprint)
{
    if (!ds) return fl_fail("subject %s: %s is not trained and no dataset was given to train it on",
                            s->name, s->path);
    fl_batch_opts bo = {.batch_size = fl_cfg_int(c, "subject.batch_size"),
                        .shuffle = true,
                        .recolor = fl_cfg_bool(c, "data.recolor_each_epoch"),
                        .drop_last = false,
                        .seed = (uint64_t)fl_cfg_int(c, "subject.seed")};
    trainer t = {s, fl_batcher_new(ds, FL_TRAIN, &bo)};
    if (!t.b) return fl_fail_ctx("subject %s", s->name);
    char ckpt[4200], label[96];
    snprintf(ckpt, sizeof ckpt, "%s.train", s->path);
    snprintf(label, sizeof label, "subject %s", s->name);
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "subject");
    o.label = label;
    o.val_every = 0;
    o.patience = 0;
    o.checkpoint = ckpt;
    o.resume = true;
    o.fingerprint = fingerprint;
    fl_task task = {s->ps, &t, train_step, NULL, train_put, train_get};
    fl_train_result res;
    fl_info("training subject %s (%lld steps) into %s", s->name, (long long)o.steps, s->path);
    int rc = fl_train_run(&task, &o, &res);
    s->report.steps = res.steps_done;
    s->report.train_seconds = res.seconds;
    fl_train_result_free(&res);
    fl_batcher_free(t.b);
    if (rc) return -1;
    s->report.trained = true;
    if (measure(s, ds, (uint64_t)fl_cfg_int(c, "subject.seed")) || save(s, s->path)) return -1;
    unlink(ckpt);
    return 0;
}

static const char *const subject_sections[] = {"data", "subject"};
/* Bumped whenever the networks or their training change what a setting produces, or
 * the file format changes (2: archives are HDF5): older cached subjects then no longer
 * match and are trained anew. */
#define FL_SUBJECT_FORMAT 2

int fl_subject_cache_path(const fl_config *c, char *buf, size_t n)
{
    fl_subject_kind kind = FL_SUBJECT_DECOLORIZE_AE;
    if (kind_parse(fl_cfg_str(c, "subject.kind"), &kind)) return -1;
    if (kind == FL_SUBJECT_TORCHSCRIPT) {
        snprintf(buf, n, "%s", fl_cfg_str(c, "subject.path"));
        return 0;
    }
    char name[64];
    snprintf(name, sizeof name, "subject-%s", kind_names[kind]);
    return fl_model_cache_path(c, name, FL_SUBJECT_FORMAT, subject_sections, 2, false, buf, n, NULL);
}

static int open_script(fl_subject *s, const fl_config *c, const fl_dataset *ds)
{
    const char *path = fl_cfg_str(c, "subject.path");
    if (!*path)
        return fl_fail("subject.path: empty; the torchscript subject needs a TorchScript file");
    if (access(path, R_OK) != 0) return fl_fail("subject.path: %s: cannot read the file", path);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->script = ct_script_load(path, ct_default_device());
    if (!s->script) return fl_fail_ctx("subject.path");
    /* the dimension, from a forward pass on two images */
    bool prev = ct_set_grad_enabled(false);
    ct_scope *sc = ct_scope_begin();
    fl_batch b = {0};
    ct_tensor *x = ds && fl_dataset_count(ds, FL_TEST) >= 2 && !fl_dataset_slice(ds, FL_TEST, 0, 2, &b)
                       ? b.colored
                       : ct_full(CT_SHAPE(2, 3, 28, 28), 0.5, CT_F32);
    ct_tensor *z = ct_script_forward(s->script, x);
    int rc = 0;
    if (!z) {
        rc = fl_fail("subject.path: %s: the module fails on a (2, 3, 28, 28) float32 batch: %s",
                     path, ct_last_error());
    } else if (ct_ndim(z) != 2 || ct_size(z, 0) != 2) {
        char d[128];
        ct_describe(z, d, sizeof d);
        rc = fl_fail("subject.path: %s: returns %s for a (2, 3, 28, 28) batch; expected (2, d)",
                     path, d);
    } else {
        s->dim = (int)ct_size(z, 1);
    }
    ct_scope_end(sc);
    ct_set_grad_enabled(prev);
    return rc;
}

int fl_subject_open(const fl_config *c, const fl_dataset *ds, fl_subject **out)
{
    *out = NULL;
    fl_subject_kind kind = FL_SUBJECT_DECOLORIZE_AE;
    if (kind_parse(fl_cfg_str(c, "subject.kind"), &kind)) return -1;
    fl_subject *s = calloc(1, sizeof *s);
    if (!s) return fl_fail("out of memory");
    s->kind = kind;
    snprintf(s->name, sizeof s->name, "%s", kind_names[kind]);
    report_init(&s->report);
    int rc = 0;
    if (kind == FL_SUBJECT_TORCHSCRIPT) {
        rc = open_script(s, c, ds);
    } else {
        s->gray_input = strcmp(fl_cfg_str(c, "subject.input"), "gray") == 0;
        s->dim = kind == FL_SUBJECT_DECOLORIZE_AE ? (int)fl_cfg_int(c, "subject.dim") : FL_DIGIT_CLASSES;
        s->ps = ct_params_new();
        uint64_t fp = 0;
        fl_conv_spec spec;
        ct_gen *g = ct_gen_new((uint64_t)fl_cfg_int(c, "subject.seed") ^ 0x5b1ec7ull);
        rc = fl_conv_spec_from_config(c, "subject", s->gray_input ? 1 : 3, s->dim, &spec);
        if (!rc) rc = fl_conv_encoder_init(&s->enc, s->ps, "enc", &spec, 1, g);
        if (!rc && kind == FL_SUBJECT_DECOLORIZE_AE) rc = fl_conv_decoder_init(&s->dec, s->ps, "dec", &spec, g);
        ct_gen_free(g);
        char name[64];
        snprintf(name, sizeof name, "subject-%s", kind_names[kind]);
        if (!rc)
            rc = fl_model_cache_path(c, name, FL_SUBJECT_FORMAT, subject_sections, 2, true, s->path, sizeof s->path, &fp);
        if (!rc) rc = access(s->path, F_OK) == 0 ? load(s, s->path) : train(s, c, ds, fp);
        if (!rc) ct_params_set_trainable(s->ps, false);
    }
    if (rc) {
        fl_subject_free(s);
        return -1;
    }
    *out = s;
    return 0;
}
