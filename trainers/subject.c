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
    {"subject.decolorize", FL_KEY_STR, "\"contrast\"", FL_NO_BOUNDS, FL_DECOLORIZE_MODES,
     "How a gray-input subject decolorizes a colored image; all three invert every colorized "
     "image, so the fiber is the same. signed: mean_k (x̃_k − b̂_k) / (f(b̂_k) − b̂_k) "
     "(DESIGN.md §1), which jumps where a background b̂_k crosses 0.5 (that channel's digit "
     "turns negative); abs: mean_k |x̃_k − b̂_k| / 0.5 (the authors'), continuous but it "
     "turns background noise into gray; contrast: mean_k s_k (x̃_k − b̂_k) / 0.5, the "
     "polarity s_k = ±1 read off the sign of the channel's total contrast Σ (x̃_k − b̂_k): "
     "continuous near the fiber and noise stays zero-mean (the default: signed puts a tail "
     "of far-off samples and the collapse of λ = 10 on that jump, docs/lambda_effect.md)."},
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
    fl_decolorize_mode decolorize;   /* subject.decolorize */
    bool recoloring_fiber;     /* its fiber at x̃ holds every recoloring of x̃'s digit */
    ct_params *ps;
    fl_conv_encoder enc;
    fl_conv_decoder dec;       /* autoencoder only */
    ct_script *script;
    ct_tensor *(*fn)(void *ctx, const ct_tensor *x);
    void *ctx;
    void (*free_ctx)(void *ctx);
    char name[64];
    char cache_name[64];       /* "subject-<kind>" */
    uint64_t seed;             /* subject.seed */
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

bool fl_subject_recoloring_fiber(const fl_subject *s)
{
    return s->recoloring_fiber || (s->kind == FL_SUBJECT_DECOLORIZE_AE && s->gray_input);
}

void fl_subject_declare_recoloring_fiber(fl_subject *s) { s->recoloring_fiber = true; }
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
    if (!s->gray_input) return ct_ref(x);
    return fl_decolorize_as(x, s->decolorize);
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

static ct_tensor *forward_fn(void *ctx, const ct_tensor *x) { return fl_subject_forward(ctx, x); }

ct_tensor *fl_subject_forward_all(fl_subject *s, const ct_tensor *x, int64_t batch)
{
    return fl_forward_batched(forward_fn, s, x, batch, s->dim);
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

static ct_tensor *train_step(void *ctx, const fl_batch *x, ct_gen *noise, fl_terms *terms)
{
    fl_subject *s = ctx;
    const ct_tensor *in = s->gray_input ? x->gray : x->colored;   /* (B, 1|3, 28, 28) */
    ct_tensor *loss;
    if (s->kind == FL_SUBJECT_DECOLORIZE_AE) {
        ct_tensor *z = fl_conv_encoder_forward(&s->enc, in);                   /* (B, d) */
        ct_tensor *r = ct_sigmoid(fl_conv_decoder_forward(&s->dec, z));        /* (B, C, 28, 28) */
        loss = ct_mse(r, in);
        if (loss) fl_terms_add(terms, "mse", ct_item(loss));
    } else {
        ct_tensor *logits = fl_conv_encoder_forward(&s->enc, in);              /* (B, 10) */
        loss = ct_cross_entropy(logits, x->labels);
        if (loss) fl_terms_add(terms, "ce", ct_item(loss));
    }
    if (!loss) fl_fail_ctx("subject %s", s->name);
    return loss;
}

/* The report values, measured on the test split with grad off. */
static int measure(void *ctx, const fl_dataset *ds)
{
    fl_subject *s = ctx;
    uint64_t seed = s->seed;
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

/* Bumped whenever the networks or their training change what a setting produces, or
 * the file format changes (3: the cached-model lifecycle, archives are HDF5): older
 * cached subjects then no longer match and are trained anew. */
#define FL_SUBJECT_FORMAT 3

/* The lifecycle description of a built-in subject s (its network built). */
static fl_cached cached_spec(fl_subject *s)
{
    fl_cached m = {
        .section = "subject",
        .format = FL_SUBJECT_FORMAT,
        .ps = s->ps,
        .ctx = s,
        .step_loss = train_step,
        .measure = measure,
        .n_ids = 2,
        .ids = {{"kind", s->kind}, {"dim", s->dim}},
        .n_report = 4,
        .report = {{"recon_rmse", &s->report.recon_rmse},
                   {"recon_fiber", &s->report.recon_fiber},
                   {"other_fiber", &s->report.other_fiber},
                   {"accuracy", &s->report.accuracy}},
    };
    m.name = s->cache_name;
    return m;
}

int fl_subject_config_dim(const fl_config *c)
{
    fl_subject_kind kind = FL_SUBJECT_DECOLORIZE_AE;
    if (kind_parse(fl_cfg_str(c, "subject.kind"), &kind)) return -1;
    if (kind == FL_SUBJECT_TORCHSCRIPT) return 0;
    return kind == FL_SUBJECT_DECOLORIZE_AE ? (int)fl_cfg_int(c, "subject.dim") : FL_DIGIT_CLASSES;
}

int fl_subject_cache_path(const fl_config *c, char *buf, size_t n)
{
    fl_subject_kind kind = FL_SUBJECT_DECOLORIZE_AE;
    if (kind_parse(fl_cfg_str(c, "subject.kind"), &kind)) return -1;
    if (kind == FL_SUBJECT_TORCHSCRIPT) {
        snprintf(buf, n, "%s", fl_cfg_str(c, "subject.path"));
        return 0;
    }
    fl_subject s = {.kind = kind};
    snprintf(s.cache_name, sizeof s.cache_name, "subject-%s", kind_names[kind]);
    fl_cached m = cached_spec(&s);
    return fl_cached_path(c, &m, false, buf, n, NULL);
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
        rc = fl_decolorize_mode_parse(fl_cfg_str(c, "subject.decolorize"), &s->decolorize);
        s->dim = kind == FL_SUBJECT_DECOLORIZE_AE ? (int)fl_cfg_int(c, "subject.dim") : FL_DIGIT_CLASSES;
        s->ps = ct_params_new();
        s->seed = (uint64_t)fl_cfg_int(c, "subject.seed");
        snprintf(s->cache_name, sizeof s->cache_name, "subject-%s", kind_names[kind]);
        fl_conv_spec spec;
        ct_gen *g = ct_gen_new(s->seed ^ 0x5b1ec7ull);
        if (!rc) rc = fl_conv_spec_from_config(c, "subject", s->gray_input ? 1 : 3, s->dim, &spec);
        if (!rc) rc = fl_conv_encoder_init(&s->enc, s->ps, "enc", &spec, 1, g);
        if (!rc && kind == FL_SUBJECT_DECOLORIZE_AE) rc = fl_conv_decoder_init(&s->dec, s->ps, "dec", &spec, g);
        ct_gen_free(g);
        fl_cached m = cached_spec(s);
        fl_cached_info info = {0};
        if (!rc) rc = fl_cached_open(c, ds, &m, s->path, sizeof s->path, &info);
        s->report.trained = info.trained;
        s->report.steps = info.steps;
        s->report.train_seconds = info.train_seconds;
    }
    if (rc) {
        fl_subject_free(s);
        return -1;
    }
    *out = s;
    return 0;
}
