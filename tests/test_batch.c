/* Mini-batches (datasets/batch.h): every image once per epoch, deterministic from the
 * seed, bit-identical after a save/restore, colors stored or redrawn per epoch. */
#include <math.h>

#include "datasets/batch.h"
#include "store_fixture.h"

static fl_dataset *ds;
static void setup(void)
{
    make_tmp();
    put_source(103, 20, 11);
    fl_config *c = idx_config("c", NULL);
    cr_assert_eq(fl_dataset_open(c, &ds), 0, "%s", fl_error());
    fl_config_free(c);
}
static void teardown(void)
{
    fl_dataset_free(ds);
    remove_tmp();
}
TestSuite(batch, .init = setup, .fini = teardown);

static fl_batch_opts opts(int64_t bs, bool recolor)
{
    return (fl_batch_opts){.batch_size = bs, .shuffle = true, .recolor = recolor, .seed = 5};
}

static void host(const ct_tensor *t, void *buf, size_t n)
{
    cr_assert_eq(ct_to_data(t, buf, n), CT_OK, "%s", ct_last_error());
}

Test(batch, every_image_once_per_epoch_in_a_new_order)
{
    fl_batch_opts o = opts(10, false);
    fl_batcher *b = fl_batcher_new(ds, FL_TRAIN, &o);
    cr_assert_not_null(b, "%s", fl_error());
    cr_assert_eq(fl_batcher_batches_per_epoch(b), 11);
    int64_t first[2][103];
    for (int e = 0; e < 2; e++) {
        int seen[103] = {0}, pos = 0;
        for (int s = 0; s < 11; s++) {
            ct_scope *sc = ct_scope_begin();
            fl_batch x;
            cr_assert_eq(fl_batcher_next(b, &x), 0, "%s", fl_error());
            cr_expect_eq(x.epoch, e);
            cr_expect_eq(x.step, s);
            cr_expect_eq(x.size, s < 10 ? 10 : 3);
            cr_expect_eq(ct_size(x.colored, 1), 3);
            cr_expect_eq(ct_size(x.gray, 1), 1);
            int64_t idx[10];
            host(x.index, idx, (size_t)x.size * 8);
            for (int i = 0; i < x.size; i++) seen[idx[i]]++, first[e][pos++] = idx[i];
            ct_scope_end(sc);
        }
        for (int i = 0; i < 103; i++) cr_expect_eq(seen[i], 1, "epoch %d: image %d seen %d times", e, i, seen[i]);
    }
    cr_expect_neq(memcmp(first[0], first[1], sizeof first[0]), 0, "two epochs in the same order");
    fl_batcher_free(b);
}

/* Host copies of a batch's colored images and labels. */
typedef struct {
    float colored[16 * 3 * 784], bg[16 * 3];
    int64_t labels[16], index[16], size;
} snap;
static void take(fl_batcher *b, snap *s)
{
    ct_scope *sc = ct_scope_begin();
    fl_batch x;
    cr_assert_eq(fl_batcher_next(b, &x), 0, "%s", fl_error());
    s->size = x.size;
    host(x.colored, s->colored, (size_t)x.size * 3 * 784 * 4);
    host(x.bg, s->bg, (size_t)x.size * 3 * 4);
    host(x.labels, s->labels, (size_t)x.size * 8);
    host(x.index, s->index, (size_t)x.size * 8);
    ct_scope_end(sc);
}
static bool same(const snap *a, const snap *b)
{
    size_t n = (size_t)a->size;
    return a->size == b->size && !memcmp(a->colored, b->colored, n * 3 * 784 * 4) &&
           !memcmp(a->bg, b->bg, n * 12) && !memcmp(a->labels, b->labels, n * 8) &&
           !memcmp(a->index, b->index, n * 8);
}

Test(batch, same_seed_same_stream_and_resume_is_bit_identical)
{
    for (int recolor = 0; recolor < 2; recolor++) {
        fl_batch_opts o = opts(16, recolor);
        fl_batcher *a = fl_batcher_new(ds, FL_TRAIN, &o), *b = fl_batcher_new(ds, FL_TRAIN, &o);
        static snap sa, sb;
        for (int i = 0; i < 5; i++) {
            take(a, &sa);
            take(b, &sb);
            cr_assert(same(&sa, &sb), "recolor %d: batch %d differs between equal batchers", recolor, i);
        }
        /* save after 5 batches, continue 12 more (past the epoch end) both ways */
        ct_archive *ar = ct_archive_new();
        cr_assert_eq(fl_batcher_put(a, ar, "data."), 0, "%s", fl_error());
        fl_batcher *c = fl_batcher_new(ds, FL_TRAIN, &o);
        cr_assert_eq(fl_batcher_get(c, ar, "data."), 0, "%s", fl_error());
        for (int i = 0; i < 12; i++) {
            take(a, &sa);
            take(c, &sb);
            cr_assert(same(&sa, &sb), "recolor %d: resumed batch %d differs", recolor, i);
        }
        ct_archive_free(ar);
        fl_batcher_free(a), fl_batcher_free(b), fl_batcher_free(c);
    }
}

Test(batch, restoring_a_state_of_another_stream_fails)
{
    fl_batch_opts o = opts(16, false), p = opts(8, false);
    fl_batcher *a = fl_batcher_new(ds, FL_TRAIN, &o), *b = fl_batcher_new(ds, FL_TRAIN, &p);
    fl_batch_state st;
    fl_batcher_get_state(a, &st);
    cr_expect_eq(fl_batcher_set_state(b, &st), -1);
    cr_expect(strstr(fl_error(), "batch state"), "message: %s", fl_error());
    fl_batcher_free(a), fl_batcher_free(b);
}

Test(batch, stored_colors_without_recolor_fresh_ones_with_it)
{
    const float *stored_bg = fl_dataset_colors(ds, FL_TRAIN);
    const float *stored_col = fl_dataset_colored(ds, FL_TRAIN);
    cr_assert_not_null(stored_col, "%s", fl_error());
    fl_batch_opts o = opts(16, false);
    fl_batcher *b = fl_batcher_new(ds, FL_TRAIN, &o);
    static snap s;
    take(b, &s);
    for (int i = 0; i < s.size; i++) {
        cr_expect_eq(memcmp(s.bg + 3 * i, stored_bg + 3 * s.index[i], 12), 0);
        cr_expect_eq(memcmp(s.colored + (size_t)i * 3 * 784, stored_col + (size_t)s.index[i] * 3 * 784,
                            3 * 784 * 4), 0, "batch image %d is not the stored one", i);
    }
    fl_batcher_free(b);
    /* recolor: colors change from epoch to epoch and keep f = b + 0.5 */
    o = opts(103, true);
    b = fl_batcher_new(ds, FL_TRAIN, &o);
    float by_image[2][103 * 3];
    for (int e = 0; e < 2; e++) {
        ct_scope *sc = ct_scope_begin();
        fl_batch x;
        cr_assert_eq(fl_batcher_next(b, &x), 0);
        float bg[103 * 3], fg[103 * 3];
        int64_t idx[103];
        host(x.bg, bg, sizeof bg);
        host(x.fg, fg, sizeof fg);
        host(x.index, idx, sizeof idx);
        for (int i = 0; i < 103; i++)
            for (int k = 0; k < 3; k++) {
                by_image[e][3 * idx[i] + k] = bg[3 * i + k];
                cr_expect(fabs(fabs((double)fg[3 * i + k] - bg[3 * i + k]) - 0.5) < 1e-7);
            }
        ct_scope_end(sc);
    }
    int equal = 0;
    for (int i = 0; i < 103 * 3; i++) equal += by_image[0][i] == by_image[1][i] || by_image[0][i] == stored_bg[i];
    cr_expect(equal < 3, "%d colors repeat across epochs with recolor", equal);
    fl_batcher_free(b);
}

Test(batch, drop_last_and_slices)
{
    fl_batch_opts o = opts(10, false);
    o.drop_last = true;
    fl_batcher *b = fl_batcher_new(ds, FL_TRAIN, &o);
    cr_expect_eq(fl_batcher_batches_per_epoch(b), 10);
    fl_batcher_free(b);
    o.batch_size = 500;
    cr_expect_null(fl_batcher_new(ds, FL_TEST, &o));
    ct_scope *sc = ct_scope_begin();
    fl_batch x;
    cr_assert_eq(fl_dataset_slice(ds, FL_TEST, 5, 4, &x), 0, "%s", fl_error());
    int64_t idx[4], lab[4];
    host(x.index, idx, sizeof idx);
    host(x.labels, lab, sizeof lab);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(idx[i], 5 + i);
        cr_expect_eq(lab[i], fl_dataset_labels(ds, FL_TEST)[5 + i]);
    }
    cr_expect_eq(fl_dataset_slice(ds, FL_TEST, 18, 4, &x), -1);
    ct_scope_end(sc);
}
