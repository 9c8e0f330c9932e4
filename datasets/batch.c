/* Shuffled mini-batches as tensors. Each epoch's order and (with recolor) colors are
 * drawn from their own RNG streams of (seed, epoch), so any position can be restored
 * without replaying the stream. */
#include "datasets/batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* "batc" in the high bytes, then the split; stream 2e shuffles epoch e, 2e + 1
 * recolors it. */
#define FL_BATCH_STREAM 0x6261746300000000ull

struct fl_batcher {
    const fl_dataset *d;
    fl_split split;
    fl_batch_opts o;
    int64_t n, per_epoch;
    int64_t epoch, step;     /* the next batch */
    int64_t ready_epoch;     /* the epoch order/colors hold, -1 for none */
    int64_t *order;          /* (n) positions in the split */
    float *bg, *fg;          /* (n, 3) this epoch's colors (recolor), else NULL */
    /* one batch on the host */
    float *gray, *colored, *bgb, *fgb;
    int64_t *labels, *index;
};

static uint64_t stream(const fl_batcher *b, int64_t e, int k)
{
    return FL_BATCH_STREAM + ((uint64_t)b->split << 40) + 2 * (uint64_t)e + (uint64_t)k;
}

void fl_batch_free(fl_batch *b)
{
    if (!b) return;
    ct_free(b->colored);
    ct_free(b->gray);
    ct_free(b->bg);
    ct_free(b->fg);
    ct_free(b->labels);
    ct_free(b->index);
    memset(b, 0, sizeof *b);
}

typedef struct {
    float *gray, *colored, *bg, *fg;
    int64_t *labels, *index;
} host_batch;

/* Gathers positions idx[0..B) of split s into h and makes the tensors. bg_all/fg_all
 * are the colors of the whole split, (n, 3). */
static int assemble(const fl_dataset *d, fl_split s, const int64_t *idx, int64_t B,
                    const float *bg_all, const float *fg_all, host_batch *h, fl_batch *out)
{
    memset(out, 0, sizeof *out);
    int H = fl_dataset_height(d), W = fl_dataset_width(d);
    size_t px = (size_t)H * (size_t)W;
    const float *gray = fl_dataset_gray(d, s);
    const uint8_t *lab = fl_dataset_labels(d, s);
    for (int64_t i = 0; i < B; i++) {
        int64_t j = idx[i];
        memcpy(h->gray + (size_t)i * px, gray + (size_t)j * px, px * sizeof(float));
        memcpy(h->bg + 3 * i, bg_all + 3 * j, 3 * sizeof(float));
        memcpy(h->fg + 3 * i, fg_all + 3 * j, 3 * sizeof(float));
        h->labels[i] = lab[j];
        h->index[i] = j;
    }
    fl_colorize_f32(h->gray, h->bg, h->fg, B, H, W, h->colored);
    out->colored = ct_from_data(h->colored, CT_SHAPE(B, 3, H, W), CT_F32);
    out->gray = ct_from_data(h->gray, CT_SHAPE(B, 1, H, W), CT_F32);
    out->bg = ct_from_data(h->bg, CT_SHAPE(B, 3), CT_F32);
    out->fg = ct_from_data(h->fg, CT_SHAPE(B, 3), CT_F32);
    out->labels = ct_from_data(h->labels, CT_SHAPE(B), CT_I64);
    out->index = ct_from_data(h->index, CT_SHAPE(B), CT_I64);
    out->size = B;
    if (!out->colored || !out->gray || !out->bg || !out->fg || !out->labels || !out->index) {
        fl_batch_free(out);
        return fl_fail_ctx("batch of %lld images", (long long)B);
    }
    return 0;
}

static int host_alloc(host_batch *h, int64_t B, size_t px)
{
    size_t b = B > 0 ? (size_t)B : 1;
    h->gray = malloc(b * px * sizeof(float));
    h->colored = malloc(b * 3 * px * sizeof(float));
    h->bg = malloc(b * 3 * sizeof(float));
    h->fg = malloc(b * 3 * sizeof(float));
    h->labels = malloc(b * sizeof(int64_t));
    h->index = malloc(b * sizeof(int64_t));
    return h->gray && h->colored && h->bg && h->fg && h->labels && h->index ? 0 : -1;
}

static void host_free(host_batch *h)
{
    free(h->gray);
    free(h->colored);
    free(h->bg);
    free(h->fg);
    free(h->labels);
    free(h->index);
}

fl_batcher *fl_batcher_new(const fl_dataset *d, fl_split s, const fl_batch_opts *o)
{
    int64_t n = fl_dataset_count(d, s);
    if (o->batch_size <= 0)
        return fl_fail("batch size must be positive, got %lld", (long long)o->batch_size), NULL;
    if (n == 0) return fl_fail("%s: the %s split is empty", fl_dataset_path(d), fl_split_name(s)), NULL;
    if (o->drop_last && n < o->batch_size)
        return fl_fail("%s: %lld %s images make no full batch of %lld", fl_dataset_path(d),
                       (long long)n, fl_split_name(s), (long long)o->batch_size),
               NULL;
    fl_batcher *b = calloc(1, sizeof *b);
    if (!b) return fl_fail("out of memory"), NULL;
    b->d = d;
    b->split = s;
    b->o = *o;
    b->n = n;
    b->per_epoch = o->drop_last ? n / o->batch_size : (n + o->batch_size - 1) / o->batch_size;
    b->ready_epoch = -1;
    b->order = malloc((size_t)n * sizeof *b->order);
    host_batch h = {0};
    int64_t B = o->batch_size < n ? o->batch_size : n;
    int bad = !b->order || host_alloc(&h, B, (size_t)fl_dataset_height(d) * fl_dataset_width(d));
    if (!bad && o->recolor) {
        b->bg = malloc((size_t)n * 3 * sizeof(float));
        b->fg = malloc((size_t)n * 3 * sizeof(float));
        bad = !b->bg || !b->fg;
    }
    b->gray = h.gray;
    b->colored = h.colored;
    b->bgb = h.bg;
    b->fgb = h.fg;
    b->labels = h.labels;
    b->index = h.index;
    if (bad) {
        fl_batcher_free(b);
        return fl_fail("out of memory for batches of %lld", (long long)o->batch_size), NULL;
    }
    return b;
}

void fl_batcher_free(fl_batcher *b)
{
    if (!b) return;
    host_batch h = {b->gray, b->colored, b->bgb, b->fgb, b->labels, b->index};
    host_free(&h);
    free(b->order);
    free(b->bg);
    free(b->fg);
    free(b);
}

/* Order and colors of epoch e, from (seed, e) alone. */
static void prepare(fl_batcher *b, int64_t e)
{
    if (b->ready_epoch == e) return;
    for (int64_t i = 0; i < b->n; i++) b->order[i] = i;
    if (b->o.shuffle) {
        fl_rng r;
        fl_rng_seed_stream(&r, b->o.seed, stream(b, e, 0));
        fl_rng_shuffle(&r, b->order, b->n);
    }
    if (b->o.recolor) {
        const fl_data_spec *sp = fl_dataset_spec(b->d);
        fl_colorlaw law = fl_colorlaw_paper();
        fl_rng r;
        fl_rng_seed_stream(&r, b->o.seed, stream(b, e, 1));
        fl_draw_colors(sp->variant, &law, sp->fixed_color, &r, b->n, b->bg, b->fg);
    }
    b->ready_epoch = e;
}

int fl_batcher_next(fl_batcher *b, fl_batch *out)
{
    memset(out, 0, sizeof *out);
    if (b->step >= b->per_epoch) {
        b->epoch++;
        b->step = 0;
    }
    prepare(b, b->epoch);
    int64_t start = b->step * b->o.batch_size;
    int64_t B = b->n - start < b->o.batch_size ? b->n - start : b->o.batch_size;
    host_batch h = {b->gray, b->colored, b->bgb, b->fgb, b->labels, b->index};
    const float *bg = b->o.recolor ? b->bg : fl_dataset_colors(b->d, b->split);
    const float *fg = b->o.recolor ? b->fg : fl_dataset_fg(b->d, b->split);
    if (assemble(b->d, b->split, b->order + start, B, bg, fg, &h, out)) return -1;
    out->epoch = b->epoch;
    out->step = b->step;
    b->step++;
    return 0;
}

int64_t fl_batcher_batches_per_epoch(const fl_batcher *b) { return b->per_epoch; }
int64_t fl_batcher_epoch(const fl_batcher *b)
{
    return b->step >= b->per_epoch ? b->epoch + 1 : b->epoch;
}

void fl_batcher_get_state(const fl_batcher *b, fl_batch_state *st)
{
    st->epoch = b->epoch;
    st->step = b->step;
    st->n = b->n;
    st->batch_size = b->o.batch_size;
    st->seed = b->o.seed;
}

int fl_batcher_set_state(fl_batcher *b, const fl_batch_state *st)
{
    if (st->n != b->n || st->batch_size != b->o.batch_size || st->seed != b->o.seed)
        return fl_fail("batch state of %lld images, batches of %lld, seed %llu does not fit "
                       "%lld images, batches of %lld, seed %llu",
                       (long long)st->n, (long long)st->batch_size, (unsigned long long)st->seed,
                       (long long)b->n, (long long)b->o.batch_size, (unsigned long long)b->o.seed);
    if (st->epoch < 0 || st->step < 0 || st->step > b->per_epoch)
        return fl_fail("batch state: epoch %lld, step %lld out of range", (long long)st->epoch,
                       (long long)st->step);
    b->epoch = st->epoch;
    b->step = st->step;
    return 0;
}

static const char *key(char *buf, size_t n, const char *prefix, const char *name)
{
    snprintf(buf, n, "%s%s", prefix ? prefix : "", name);
    return buf;
}

int fl_batcher_put(const fl_batcher *b, ct_archive *a, const char *prefix)
{
    fl_batch_state st;
    fl_batcher_get_state(b, &st);
    char k[256];
    if (ct_archive_put_i64(a, key(k, sizeof k, prefix, "epoch"), st.epoch) ||
        ct_archive_put_i64(a, key(k, sizeof k, prefix, "step"), st.step) ||
        ct_archive_put_i64(a, key(k, sizeof k, prefix, "n"), st.n) ||
        ct_archive_put_i64(a, key(k, sizeof k, prefix, "batch_size"), st.batch_size) ||
        ct_archive_put_i64(a, key(k, sizeof k, prefix, "seed"), (int64_t)st.seed))
        return fl_fail_ctx("saving the batch state");
    return 0;
}

int fl_batcher_get(fl_batcher *b, const ct_archive *a, const char *prefix)
{
    fl_batch_state st;
    int64_t seed;
    char k[256];
    if (ct_archive_get_i64(a, key(k, sizeof k, prefix, "epoch"), &st.epoch) ||
        ct_archive_get_i64(a, key(k, sizeof k, prefix, "step"), &st.step) ||
        ct_archive_get_i64(a, key(k, sizeof k, prefix, "n"), &st.n) ||
        ct_archive_get_i64(a, key(k, sizeof k, prefix, "batch_size"), &st.batch_size) ||
        ct_archive_get_i64(a, key(k, sizeof k, prefix, "seed"), &seed))
        return fl_fail_ctx("restoring the batch state");
    st.seed = (uint64_t)seed;
    if (fl_batcher_set_state(b, &st)) return fl_fail_ctx("%s{epoch,step,n,batch_size,seed}", prefix ? prefix : "");
    return 0;
}

int fl_dataset_slice(const fl_dataset *d, fl_split s, int64_t start, int64_t count,
                     fl_batch *out)
{
    memset(out, 0, sizeof *out);
    int64_t n = fl_dataset_count(d, s);
    if (start < 0 || count <= 0 || start + count > n)
        return fl_fail("%s: images [%lld, %lld) are outside the %lld %s images",
                       fl_dataset_path(d), (long long)start, (long long)(start + count),
                       (long long)n, fl_split_name(s));
    host_batch h = {0};
    int64_t *idx = malloc((size_t)count * sizeof *idx);
    int rc = 0;
    if (!idx || host_alloc(&h, count, (size_t)fl_dataset_height(d) * fl_dataset_width(d)))
        rc = fl_fail("out of memory for %lld images", (long long)count);
    else {
        for (int64_t i = 0; i < count; i++) idx[i] = start + i;
        rc = assemble(d, s, idx, count, fl_dataset_colors(d, s), fl_dataset_fg(d, s), &h, out);
    }
    free(idx);
    host_free(&h);
    return rc;
}
