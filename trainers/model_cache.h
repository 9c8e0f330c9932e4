/* One lifecycle for the models fiberlab trains once and keeps in the cache — the
 * subject models, the fiber VAE, the diffusion priors (llm.c's verbs: build, then
 * load from the cache or train into it, measure, save; then frozen). A cached model is
 * its network (built into a parameter set), the loss of a batch, and what it reports;
 * the cache key, the batches, the training loop, the checkpoint and the file are here.
 *
 * Where: <cache_dir>/models/<name>-<key>.ckpt, key = FNV-1a 64 of the canonical JSON of
 * every setting its training reads — data.*, its own section, the train.* keys the loop
 * takes from there (fl_train_param_keys), the extra keys it names — and of a format
 * version, so equal settings reuse one file, and any change of the settings (or of the
 * code, which bumps the version) trains anew. */
#ifndef FL_MODEL_CACHE_H
#define FL_MODEL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "ctorch/ct.h"
#include "datasets/batch.h"
#include "datasets/store.h"
#include "trainers/loop.h"

#define FL_CACHED_MAX_IDS 4
#define FL_CACHED_MAX_REPORT 8

typedef struct {
    const char *name;        /* file stem and log label: "vae", "subject-classifier" */
    const char *section;     /* its settings: <section>.steps, .lr, .batch_size, .seed */
    int format;              /* bumped when the code changes what a setting produces */
    const char *const *extra_keys;   /* more keys (or sections) its training reads; may be NULL */
    int n_extra_keys;
    uint64_t noise_salt;     /* its noise stream is seeded <section>.seed ^ noise_salt */
    bool recolor;            /* fresh colors every epoch even without data.recolor_each_epoch */
    double ema_decay;        /* > 0: an exponential moving average of the weights over the
                                training (kept in its checkpoints) becomes the model; 0: the
                                last weights */

    ct_params *ps;           /* its parameters and buffers, built (borrowed) */
    void *ctx;
    /* The loss of one training batch (with a graph to ps); adds its terms. noise is
     * the model's own stream (saved in checkpoints). NULL and a message. */
    ct_tensor *(*step_loss)(void *ctx, const fl_batch *b, ct_gen *noise, fl_terms *terms);
    /* After training, with grad off: buffers computed from the data (the VAE's
     * standardization) and the report values, on ds. May be NULL. */
    int (*measure)(void *ctx, const fl_dataset *ds);

    /* Integers that say what the file holds, stored and checked on load ("dim"). */
    int n_ids;
    struct { const char *name; int64_t value; } ids[FL_CACHED_MAX_IDS];
    /* The report: named numbers stored with the weights and read back on load. */
    int n_report;
    struct { const char *name; double *value; } report[FL_CACHED_MAX_REPORT];
} fl_cached;

/* What the open did. */
typedef struct {
    bool trained;            /* trained by this open (else loaded) */
    int64_t steps;           /* optimizer steps of its training (stored with it) */
    double train_seconds;
} fl_cached_info;

/* Where m is (or would be) cached under c; the key as a number (the training
 * checkpoint's fingerprint) when key is not NULL. -1 and a message naming the folder
 * when it cannot be created (create_dir) or the path is too long. */
int fl_cached_path(const fl_config *c, const fl_cached *m, bool create_dir, char *buf, size_t n,
                   uint64_t *key);

/* Loads m's parameters and report from the cache or trains it into it (atomically; an
 * interrupted training resumes from <path>.train), then freezes its parameters. ds may
 * be NULL when the model is cached. path (n bytes) gets the file. -1 and a message. */
int fl_cached_open(const fl_config *c, const fl_dataset *ds, const fl_cached *m, char *path,
                   size_t n, fl_cached_info *info);

/* fn over a large set in batches of `batch` (≤ 0: 512) with grad off: x (N, ...) ->
 * (N, ...) concatenated along dim 0; an empty x gives (0, empty_dim). fn follows
 * ctorch's ownership rules. NULL and ct_last_error(). */
ct_tensor *fl_forward_batched(ct_tensor *(*fn)(void *ctx, const ct_tensor *x), void *ctx,
                              const ct_tensor *x, int64_t batch, int64_t empty_dim);

#endif
