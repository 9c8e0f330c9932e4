/* Mini-batches of a dataset split as ctorch tensors, for training and evaluation.
 * An endless stream over epochs: epoch e visits every image once, in an order that
 * is a function of (seed, e) alone (or in stored order without shuffle), and with
 * recolor the colors of epoch e are drawn fresh from (seed, e) with the dataset's
 * variant; otherwise each image keeps its stored colors. So the state is just
 * (epoch, position): saving and restoring it resumes bit-identically.
 *
 *     fl_batch_opts o = {.batch_size = 256, .shuffle = true, .seed = seed,
 *                        .recolor = fl_cfg_bool(cfg, "data.recolor_each_epoch")};
 *     fl_batcher *b = fl_batcher_new(ds, FL_TRAIN, &o);   // borrows ds
 *     for (int step = 0; step < steps; step++) {
 *         ct_scope *s = ct_scope_begin();
 *         fl_batch x;
 *         if (fl_batcher_next(b, &x)) ...error...   // x.colored: (B, 3, 28, 28)
 *         ...
 *         ct_scope_end(s);                            // frees the batch tensors
 *     }
 *     fl_batcher_free(b);
 */
#ifndef FL_BATCH_H
#define FL_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ctorch/ct.h"
#include "datasets/store.h"

typedef struct {
    int64_t batch_size;  /* > 0 */
    bool shuffle;        /* false: stored order (evaluation) */
    bool recolor;        /* fresh colors every epoch (data.recolor_each_epoch) */
    bool drop_last;      /* skip the last, smaller batch of an epoch */
    uint64_t seed;       /* order and colors; e.g. the run's seed */
} fl_batch_opts;

/* One batch. The tensors are created like any ctorch tensor (on the default device,
 * owned by the innermost open scope, else by the caller: fl_batch_free). */
typedef struct {
    ct_tensor *colored;  /* (B, 3, H, W) F32, colorize(gray, bg, fg) */
    ct_tensor *gray;     /* (B, 1, H, W) F32 */
    ct_tensor *bg;       /* (B, 3) F32: the true colors c (backgrounds) */
    ct_tensor *fg;       /* (B, 3) F32: the foregrounds */
    ct_tensor *labels;   /* (B,) I64 */
    ct_tensor *index;    /* (B,) I64: positions in the split */
    int64_t size;        /* B */
    int64_t epoch;       /* the epoch this batch belongs to */
    int64_t step;        /* its number within the epoch, from 0 */
} fl_batch;
void fl_batch_free(fl_batch *b);   /* frees the tensors (all may be NULL) */

typedef struct fl_batcher fl_batcher;
/* NULL and a message on bad options (batch_size ≤ 0, an empty split, drop_last with
 * fewer images than a batch). The dataset must outlive the batcher. */
fl_batcher *fl_batcher_new(const fl_dataset *d, fl_split s, const fl_batch_opts *o);
void fl_batcher_free(fl_batcher *b);   /* NULL is a no-op */
/* The next batch (moving to the next epoch after the last one). 0, or -1 and a
 * message (out of memory, a ctorch failure); *out is then zeroed. */
int fl_batcher_next(fl_batcher *b, fl_batch *out);
int64_t fl_batcher_batches_per_epoch(const fl_batcher *b);
int64_t fl_batcher_epoch(const fl_batcher *b);   /* of the next batch */

/* Where the stream is: the next batch is batch `step` of epoch `epoch`. n and
 * batch_size and seed are checked on restore. */
typedef struct {
    int64_t epoch, step;
    int64_t n, batch_size;
    uint64_t seed;
} fl_batch_state;
void fl_batcher_get_state(const fl_batcher *b, fl_batch_state *st);
/* -1 and a message when st was saved for another split, batch size or seed. */
int fl_batcher_set_state(fl_batcher *b, const fl_batch_state *st);
/* The state in a checkpoint archive under prefix ("<prefix>epoch", …). */
int fl_batcher_put(const fl_batcher *b, ct_archive *a, const char *prefix);
int fl_batcher_get(fl_batcher *b, const ct_archive *a, const char *prefix);

/* Images [start, start + count) of a split in stored order with their stored colors
 * (evaluation targets, sample grids), same fields as a batch (epoch = step = 0). */
int fl_dataset_slice(const fl_dataset *d, fl_split s, int64_t start, int64_t count,
                     fl_batch *out);

#endif
