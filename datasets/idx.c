/* IDX files (LeCun's MNIST format; also EMNIST and Fashion-MNIST), plain or gzip:
 * a big-endian header 0x00 0x00 0x08 ndim, ndim uint32 sizes, then unsigned bytes.
 * A source is four files found by prefix; the train files are the train split and
 * the t10k/test files the test split, as given. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/log.h"
#include "datasets/digits.h"

/* Inflates gzip data (several members allowed) into a new buffer. */
static int gunzip(const char *path, const uint8_t *in, size_t n, uint8_t **out, size_t *out_n)
{
    *out = NULL;
    size_t cap = n >= 4 ? (size_t)in[n - 4] | (size_t)in[n - 3] << 8 | (size_t)in[n - 2] << 16 |
                              (size_t)in[n - 1] << 24
                        : 0;   /* ISIZE: the size mod 2^32, a good first guess */
    /* ... unless the trailer lies: deflate expands at most 1032-fold, so a 20-byte file
     * claiming 4 GB does not allocate them (the buffer grows as inflate needs) */
    if (cap / 1032 > n) cap = 1032 * n;
    if (cap < 2 * n) cap = 2 * n + 1024;
    uint8_t *buf = malloc(cap);
    if (!buf) return fl_fail("%s: out of memory", path);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
        free(buf);
        return fl_fail("%s: gzip error: cannot start zlib", path);
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;   /* the files we read are far below 4 GiB */
    size_t len = 0;
    int rc = Z_OK;
    for (;;) {
        if (len == cap) {
            size_t nc = cap * 2;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                rc = Z_MEM_ERROR;
                break;
            }
            buf = nb;
            cap = nc;
        }
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0) break;
            /* another gzip member follows */
            if (inflateReset(&z) != Z_OK) {
                rc = Z_DATA_ERROR;
                break;
            }
            continue;
        }
        if (rc == Z_BUF_ERROR && z.avail_in == 0) {
            rc = Z_BUF_ERROR;   /* input ended inside the stream */
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    }
    const char *msg = z.msg;
    char why[128];
    snprintf(why, sizeof why, "%s", msg ? msg : "");
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(buf);
        if (rc == Z_MEM_ERROR) return fl_fail("%s: out of memory while decompressing", path);
        if (rc == Z_BUF_ERROR) return fl_fail("%s: gzip error: truncated stream", path);
        return fl_fail("%s: gzip error: %s", path, why[0] ? why : "corrupt data");
    }
    *out = buf;
    *out_n = len;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int fl_idx_parse(const char *path, const uint8_t *raw, size_t raw_n, int want_ndim, fl_idx *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = raw;
    size_t n = raw_n;
    uint8_t *plain = NULL;
    if (n >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        if (gunzip(path, raw, raw_n, &plain, &n)) return -1;
        p = plain;
    }
    int rc = 0;
    uint32_t want = 0x00000800u | (uint32_t)want_ndim;
    if (n < 4) {
        rc = fl_fail("%s: truncated IDX header (%zu bytes)", path, n);
    } else if (be32(p) != want) {
        rc = fl_fail("%s: wrong IDX magic 0x%08x (expected 0x%08x: unsigned bytes, %d dims)",
                     path, be32(p), want, want_ndim);
    } else if (n < 4 + 4 * (size_t)want_ndim) {
        rc = fl_fail("%s: truncated IDX header (%zu bytes)", path, n);
    } else {
        /* capped before each product, not after: 5 × 1858730634 × 1984875456 wraps an
         * int64 around to a small size; the cap then reads as "truncated" below */
        const int64_t cap = (int64_t)1 << 40;
        int64_t numel = 1;
        out->ndim = want_ndim;
        for (int i = 0; i < want_ndim; i++) {
            out->dims[i] = be32(p + 4 + 4 * i);
            if (out->dims[i] == 0) numel = 0;
            else if (numel > cap / out->dims[i]) numel = cap;
            else numel *= out->dims[i];
        }
        size_t head = 4 + 4 * (size_t)want_ndim;
        size_t have = n - head;
        if (numel == 0)
            rc = fl_fail("%s: IDX file with no items", path);
        else if ((int64_t)have < numel)
            rc = fl_fail("%s: truncated IDX data: %zu of %lld bytes", path, have, (long long)numel);
        else if ((int64_t)have > numel)
            rc = fl_fail("%s: %zu bytes after the IDX data (not an IDX file?)", path,
                         have - (size_t)numel);
        else if (!(out->data = malloc((size_t)numel)))
            rc = fl_fail("%s: out of memory", path);
        else
            memcpy(out->data, p + head, (size_t)numel);
    }
    free(plain);
    return rc;
}

enum { ROLE_TRAIN_IMAGES, ROLE_TRAIN_LABELS, ROLE_TEST_IMAGES, ROLE_TEST_LABELS, ROLE_COUNT };

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The prefix of a location: a folder becomes "folder/". */
static void prefix_of(const char *location, char *buf, size_t n)
{
    struct stat st;
    size_t len = strlen(location);
    if (stat(location, &st) == 0 && S_ISDIR(st.st_mode) && len && location[len - 1] != '/')
        snprintf(buf, n, "%s/", location);
    else
        snprintf(buf, n, "%s", location);
}

/* Finds the file of a role: prefix + {train,t10k,test}-{images,labels}{-,.}idxN-ubyte[.gz]. */
static int find_file(const char *prefix, int role, char *buf, size_t n)
{
    static const char *train[] = {"train", NULL};
    static const char *test[] = {"t10k", "test", NULL};
    bool images = role == ROLE_TRAIN_IMAGES || role == ROLE_TEST_IMAGES;
    const char *const *parts = role <= ROLE_TRAIN_LABELS ? train : test;
    const char *what = images ? "images" : "labels";
    const char *kind = images ? "idx3-ubyte" : "idx1-ubyte";
    for (const char *const *s = parts; *s; s++)
        for (int sep = 0; sep < 2; sep++)
            for (int gz = 0; gz < 2; gz++) {
                snprintf(buf, n, "%s%s-%s%c%s%s", prefix, *s, what, sep ? '.' : '-', kind,
                         gz ? ".gz" : "");
                if (is_file(buf)) return 0;
            }
    return fl_fail("%s%s-%s-%s[.gz]: missing file", prefix, parts[0], what, kind);
}

static int read_role(const char *prefix, int role, uint64_t *h, fl_idx *out, char *path,
                     size_t path_n)
{
    if (find_file(prefix, role, path, path_n)) return -1;
    uint8_t *raw;
    size_t n;
    if (fl_read_file(path, &raw, &n)) return -1;
    *h = fl_fnv1a64(*h, raw, n);
    int rc = 0;
    if (out) {
        int want = role == ROLE_TRAIN_IMAGES || role == ROLE_TEST_IMAGES ? 3 : 1;
        rc = fl_idx_parse(path, raw, n, want, out);
    }
    free(raw);
    return rc;
}

int fl_digits_load_idx(const char *location, const char *source, fl_digits **out)
{
    *out = NULL;
    char prefix[4096], path[ROLE_COUNT][4200];
    prefix_of(location, prefix, sizeof prefix);
    fl_idx f[ROLE_COUNT];
    memset(f, 0, sizeof f);
    uint64_t h = FL_FNV_OFFSET;
    int rc = 0;
    for (int r = 0; r < ROLE_COUNT && rc == 0; r++)
        rc = read_role(prefix, r, &h, &f[r], path[r], sizeof path[r]);
    /* the two halves must agree with each other */
    for (int s = 0; s < 2 && rc == 0; s++) {
        const fl_idx *im = &f[2 * s], *lb = &f[2 * s + 1];
        if (im->dims[0] != lb->dims[0])
            rc = fl_fail("%s: %lld labels for %lld images in %s", path[2 * s + 1],
                         (long long)lb->dims[0], (long long)im->dims[0], path[2 * s]);
        else if (im->dims[1] != f[0].dims[1] || im->dims[2] != f[0].dims[2])
            rc = fl_fail("%s: images of %lldx%lld, but %lldx%lld in %s", path[2 * s],
                         (long long)im->dims[1], (long long)im->dims[2], (long long)f[0].dims[1],
                         (long long)f[0].dims[2], path[0]);
        for (int64_t i = 0; rc == 0 && i < lb->dims[0]; i++)
            if (lb->data[i] >= FL_DIGIT_CLASSES)
                rc = fl_fail("%s: label %d at index %lld is outside 0..%d", path[2 * s + 1],
                             lb->data[i], (long long)i, FL_DIGIT_CLASSES - 1);
    }
    fl_digits *g = NULL;
    if (rc == 0) {
        int64_t ntr = f[0].dims[0], nte = f[2].dims[0];
        int hh = (int)f[0].dims[1], ww = (int)f[0].dims[2];
        size_t px = (size_t)hh * (size_t)ww;
        g = fl_digits_alloc(ntr + nte, hh, ww);
        if (!g) rc = fl_fail("%s: out of memory", path[0]);
        else {
            g->n_train = ntr;
            for (size_t i = 0; i < (size_t)ntr * px; i++) g->pixels[i] = f[0].data[i] / 255.0f;
            for (size_t i = 0; i < (size_t)nte * px; i++)
                g->pixels[(size_t)ntr * px + i] = f[2].data[i] / 255.0f;
            memcpy(g->labels, f[1].data, (size_t)ntr);
            memcpy(g->labels + ntr, f[3].data, (size_t)nte);
            memset(g->split, FL_TRAIN, (size_t)ntr);
            memset(g->split + ntr, FL_TEST, (size_t)nte);
            snprintf(g->source, sizeof g->source, "%s", source);
            snprintf(g->location, sizeof g->location, "%s", location);
            snprintf(g->images, sizeof g->images, "%s", path[0]);
            snprintf(g->hash, sizeof g->hash, "%016llx", (unsigned long long)h);
        }
    }
    for (int r = 0; r < ROLE_COUNT; r++) free(f[r].data);
    if (rc) return -1;
    *out = g;
    return 0;
}

int fl_digits_hash_idx(const char *location, char hash[17])
{
    char prefix[4096], path[4200];
    prefix_of(location, prefix, sizeof prefix);
    uint64_t h = FL_FNV_OFFSET;
    for (int r = 0; r < ROLE_COUNT; r++)
        if (read_role(prefix, r, &h, NULL, path, sizeof path)) return -1;
    snprintf(hash, 17, "%016llx", (unsigned long long)h);
    return 0;
}
