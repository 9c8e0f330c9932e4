/* bench_archive: time to write and read back a training checkpoint of a ~2.6M-parameter
 * set with its Adam state (params/ + optim/ in one archive, as trainers/loop.c writes),
 * checking that the loaded values equal the saved ones.
 *
 *   bench_archive [REPEATS=5] [DIR=/tmp]      (prints the median and the fastest run) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ct.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Layers of an MLP 1024 -> 1024 -> 1024 -> 512: 2,624,000 parameters in 6 tensors. */
static ct_params *make_set(uint64_t seed)
{
    static const int64_t sizes[4] = {1024, 1024, 1024, 512};
    ct_gen *g = ct_gen_new(seed);
    ct_params *p = ct_params_new();
    for (int l = 0; l < 3; l++) {
        char w[32], b[32];
        snprintf(w, sizeof w, "net.%d.weight", l);
        snprintf(b, sizeof b, "net.%d.bias", l);
        ct_params_add(p, w, ct_randn(CT_SHAPE(sizes[l + 1], sizes[l]), CT_F32, g));
        ct_params_add(p, b, ct_randn(CT_SHAPE(sizes[l + 1]), CT_F32, g));
    }
    ct_gen_free(g);
    return p;
}

/* One Adam step on sum(p^2), so that every parameter has a state. */
static ct_optim *make_optim(ct_params *p)
{
    ct_optim *o = ct_optim_new(CT_ADAM);
    ct_optim_add_group(o, p, ct_adam_defaults());
    ct_scope *s = ct_scope_begin();
    ct_tensor *loss = ct_scalar(0.0, CT_F32);
    for (int i = 0; i < ct_params_count(p); i++)
        loss = ct_add(loss, ct_sum(ct_square(ct_params_at(p, i))));
    if (ct_backward(loss, false) || ct_optim_step(o)) fprintf(stderr, "%s\n", ct_last_error());
    ct_scope_end(s);
    return o;
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    if (repeats < 1) repeats = 1;
    char path[600];
    snprintf(path, sizeof path, "%s/fl_bench_archive_%ld.ckpt", argc > 2 ? argv[2] : "/tmp",
             (long)getpid());
    ct_params *p = make_set(1), *q = make_set(2);
    ct_optim *o = make_optim(p), *oq = make_optim(q);
    double *wr = calloc((size_t)repeats, sizeof *wr), *rd = calloc((size_t)repeats, sizeof *rd);
    int rc = 0;
    for (int r = 0; r < repeats && !rc; r++) {
        double t0 = now();
        ct_archive *a = ct_archive_new();
        rc = ct_params_put(p, a, "params/") || ct_optim_put(o, a, "optim/") ||
             ct_archive_write(a, path);
        ct_archive_free(a);
        double t1 = now();
        ct_archive *b = rc ? NULL : ct_archive_read(path);
        rc = rc || !b || ct_params_get(q, b, "params/") || ct_optim_get(oq, b, "optim/");
        ct_archive_free(b);
        double t2 = now();
        wr[r] = t1 - t0;
        rd[r] = t2 - t1;
    }
    if (rc) fprintf(stderr, "bench_archive: %s\n", ct_last_error());
    for (int i = 0; !rc && i < ct_params_count(p); i++) {
        if (ct_max_abs_diff(ct_params_at(p, i), ct_params_at(q, i)) != 0) {
            fprintf(stderr, "bench_archive: %s differs after the load\n", ct_params_name(p, i));
            rc = 1;
        }
    }
    if (!rc) {
        FILE *f = fopen(path, "rb");
        long size = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
        if (f) fclose(f);
        qsort(wr, (size_t)repeats, sizeof *wr, cmp_double);
        qsort(rd, (size_t)repeats, sizeof *rd, cmp_double);
        printf("checkpoint of %lld parameters + Adam state, %.1f MB, %d runs:\n",
               (long long)ct_params_numel(p), (double)size / 1e6, repeats);
        printf("  write  median %.1f ms  fastest %.1f ms\n", 1e3 * wr[repeats / 2], 1e3 * wr[0]);
        printf("  read   median %.1f ms  fastest %.1f ms  (read + params_get + optim_get)\n",
               1e3 * rd[repeats / 2], 1e3 * rd[0]);
    }
    unlink(path);
    free(wr);
    free(rd);
    ct_optim_free(oq);
    ct_optim_free(o);
    ct_params_free(q);
    ct_params_free(p);
    return rc ? 1 : 0;
}
