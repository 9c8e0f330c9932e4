/* The color-MNIST dataset store: one HDF5 file per dataset in <cache>/datasets/, built
 * from a digit source and a color variant, deterministic given the seed, written
 * atomically, and reused while its provenance (settings + source hash + format
 * version) matches. The file layout is documented in docs/datasets.md.
 *
 * Usage (train, sweep, evaluation):
 *     fl_dataset *ds;
 *     if (fl_dataset_open(cfg, &ds)) return -1;     // builds into the cache if needed
 *     int64_t n = fl_dataset_count(ds, FL_TRAIN);
 *     const float *gray = fl_dataset_gray(ds, FL_TRAIN);   // (n, 1, 28, 28)
 *     ...
 *     fl_dataset_free(ds);
 * Batches as tensors: datasets/batch.h. */
#ifndef FL_STORE_H
#define FL_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "datasets/colormnist.h"
#include "datasets/digits.h"

/* Bumped whenever the bytes a spec produces change (draw order, colorize, layout):
 * older files then no longer match and are rebuilt. */
#define FL_DATASET_FORMAT_VERSION 1
/* The side of every image the models take (architectures/conv.h: 28 -> 14 -> 7 -> 4):
 * a source of other images is refused when the dataset is built. */
#define FL_DATA_SIDE 28

/* Everything that decides a dataset file's contents, plus where things are. */
typedef struct {
    char source[16];           /* data.source */
    char location[4096];       /* the source's folder or prefix, absolute */
    char cache_dir[4096];      /* absolute; the file goes to <cache_dir>/datasets/ */
    fl_variant variant;        /* data.variant */
    double fixed_color[3];     /* data.fixed_color (only the fixed variant uses it) */
    int64_t n_train, n_test;   /* data.n_train / data.n_test, 0 = all */
    uint64_t seed;             /* seed */
    bool transpose;            /* data.transpose */
    bool clear_left_column;    /* data.clear_left_column */
} fl_data_spec;

/* The cache folder: $FIBERLAB_CACHE when set and non-empty, else the key cache_dir;
 * a relative cache_dir is taken from the source tree (FL_SOURCE_DIR), a relative
 * $FIBERLAB_CACHE from the working directory. Written absolute. */
int fl_data_cache_dir(const fl_config *c, char *buf, size_t n);
/* Reads the data.* keys, seed and the cache folder. -1 and a message naming the key
 * on a bad value (unknown source or variant, fixed_color not of 3 values, idx without
 * data.path). Does not touch the files. */
int fl_data_spec_from_config(const fl_config *c, fl_data_spec *s);
/* The canonical provenance text of a spec (stored as the attribute "spec"); files
 * whose text and source hash are equal hold the same bytes. */
void fl_data_spec_text(const fl_data_spec *s, char *buf, size_t n);
/* <cache_dir>/datasets/colormnist-<source>-<variant>-<16 hex>.h5 */
void fl_data_store_path(const fl_data_spec *s, char *buf, size_t n);

typedef struct fl_dataset fl_dataset;   /* opaque; owned by whoever opened it */

/* The dataset of a config: reused from the cache when its provenance matches, built
 * (atomically) otherwise. *out is new (fl_dataset_free); NULL and -1 with "FILE: what"
 * on failure, and then no dataset file is left behind. */
int fl_dataset_open(const fl_config *c, fl_dataset **out);
/* Same from a spec; force rebuilds even when a matching file exists. */
int fl_dataset_open_spec(const fl_data_spec *s, bool force, fl_dataset **out);
/* Reads a store file as it is (no provenance check, no build). */
int fl_dataset_load(const char *path, fl_dataset **out);
void fl_dataset_free(fl_dataset *d);   /* NULL is a no-op */

/* Sizes; every array below is a borrowed view of one split, valid until
 * fl_dataset_free, images in stored order. */
int64_t fl_dataset_count(const fl_dataset *d, fl_split s);
int fl_dataset_height(const fl_dataset *d);
int fl_dataset_width(const fl_dataset *d);
const float *fl_dataset_gray(const fl_dataset *d, fl_split s);     /* (n, 1, h, w) */
const float *fl_dataset_colors(const fl_dataset *d, fl_split s);   /* (n, 3) c = background */
const float *fl_dataset_fg(const fl_dataset *d, fl_split s);       /* (n, 3) foreground */
const uint8_t *fl_dataset_labels(const fl_dataset *d, fl_split s); /* (n) 0..9 */
const int64_t *fl_dataset_index(const fl_dataset *d, fl_split s);  /* (n) index in source */
/* (n, 3, h, w): read from the file at the first call and kept until free (that first
 * call is not thread-safe); NULL and a message if the read fails. Batches do not need
 * it: colorize(gray, colors) gives the same bytes. */
const float *fl_dataset_colored(fl_dataset *d, fl_split s);

const fl_data_spec *fl_dataset_spec(const fl_dataset *d);
const char *fl_dataset_path(const fl_dataset *d);        /* the HDF5 file */
const char *fl_dataset_source_hash(const fl_dataset *d); /* 16 hex digits */
int64_t fl_dataset_cleared(const fl_dataset *d);  /* gray images whose left column was cleared */

/* What the open did: was the file built, and how long each phase took (seconds). */
typedef struct {
    bool built;
    double t_check;     /* hashing the source to check a cached file */
    double t_parse;     /* reading and parsing the source */
    double t_colorize;  /* subset, colors, colorize */
    double t_write;     /* writing and renaming the HDF5 file */
    double t_load;      /* reading a cached file */
} fl_dataset_stats;
const fl_dataset_stats *fl_dataset_open_stats(const fl_dataset *d);

#endif
