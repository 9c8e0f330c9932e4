/* NF training steps per second, ours against the same model in Python PyTorch
 * (bench_nf.py, same libtorch, same sizes, parameter counts checked equal), measured in
 * the same run. Goal: never slower; at least 1.5x at batch 64.
 *   bench_nf [--threads N] [--python /usr/bin/python3] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/blas.h"
#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "trainers/family.h"
#include "trainers/loop.h"

#define POOL 8192
#define DIM 54
#define COND 48
#define WARMUP 10

typedef struct {
    const fl_family *fam;
    void *model;
    ct_tensor *u, *z;  /* (POOL, DIM), (POOL, COND) */
    int batch;
    int64_t pos;
    int64_t calls;
    double t_start;
} bench;

static ct_tensor *bench_loss(void *ctx, fl_terms *terms)
{
    bench *b = ctx;
    if (++b->calls == WARMUP + 1) b->t_start = fl_now();
    if (b->pos + b->batch > POOL) b->pos = 0;
    ct_tensor *u = ct_narrow(b->u, 0, b->pos, b->batch);   /* (B, DIM) */
    ct_tensor *z = ct_narrow(b->z, 0, b->pos, b->batch);   /* (B, COND) */
    b->pos += b->batch;
    return b->fam->loss(b->model, u, z, NULL, terms);
}

/* Steps per second of ours at one batch size; *n_params set. */
static double run_ours(int batch, int steps, int64_t *n_params)
{
    fl_config *c = fl_config_default();
    bench b = {.fam = fl_family_find("nf"), .batch = batch};
    ct_params *ps = ct_params_new();
    ct_gen *g = ct_gen_new(0);
    b.model = b.fam->create(c, DIM, COND, ps, g);
    b.u = ct_randn(CT_SHAPE(POOL, DIM), CT_F32, g);
    b.z = ct_randn(CT_SHAPE(POOL, COND), CT_F32, g);
    if (!b.model || !b.u || !b.z) {
        fprintf(stderr, "bench_nf: %s\n", ct_last_error());
        exit(1);
    }
    *n_params = ct_params_numel(ps);
    fl_task task = {ps, &b, bench_loss, NULL, NULL, NULL, NULL};
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    o.steps = steps + WARMUP;
    o.lr = 1e-3;
    o.val_every = 0;
    o.checkpoint_every = 0;
    fl_train_result r;
    if (fl_train_run(&task, &o, &r)) {
        fprintf(stderr, "bench_nf: %s\n", fl_error());
        exit(1);
    }
    double dt = fl_now() - b.t_start;
    fl_train_result_free(&r);
    ct_free(b.u);
    ct_free(b.z);
    b.fam->destroy(b.model);
    ct_params_free(ps);
    ct_gen_free(g);
    fl_config_free(c);
    return steps / dt;
}

int main(int argc, char **argv)
{
    fl_runtime_init(argv);
    int threads = 2;
    const char *python = "/usr/bin/python3";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--python") == 0 && i + 1 < argc)
            python = argv[++i];
        else {
            fprintf(stderr, "usage: bench_nf [--threads N] [--python PATH]\n");
            return 2;
        }
    }
    fl_log_set_quiet(true);
    const int batches[2] = {64, 256}, steps[2] = {300, 120};
    int blas_threads[2];
    for (int i = 0; i < 2; i++) blas_threads[i] = fl_dense_threads(threads, batches[i]);

    printf("NF training steps/s, u %d-d given z %d-d, 8 coupling blocks of width 256, %d cores, "
           "BLAS kernel %s; both sides: libtorch 1 thread, OpenBLAS as fiber-model training "
           "sets it (%d at batch %d, %d at batch %d), the same malloc settings\n",
           DIM, COND, threads, fl_blas_corename() ? fl_blas_corename() : "?", blas_threads[0],
           batches[0], blas_threads[1], batches[1]);
    printf("%6s %12s %12s %8s %10s\n", "batch", "fiberlab", "pytorch", "ratio", "params");
    /* interleave ours and Python per batch size, three times; keep the best of each */
    double ours[2] = {0}, py[2] = {0};
    int64_t np_ours = 0, np_py[2] = {0};
    for (int rep = 0; rep < 3; rep++) {
        for (int i = 0; i < 2; i++) {
            fl_threads_set(blas_threads[i], FL_WORK_DENSE); /* as fiber-model training does */
            double s = run_ours(batches[i], steps[i], &np_ours);
            if (s > ours[i]) ours[i] = s;
            char cmd[2048], args[128], script[1024];
            snprintf(script, sizeof script, "%s/benchmarks/perf/bench_nf.py", FL_SOURCE_DIR);
            snprintf(args, sizeof args, "--threads 1 --batch %d --steps %d", batches[i], steps[i]);
            bench_python_cmd(cmd, sizeof cmd, blas_threads[i], python, script, args);
            bench_line line;
            if (bench_run_line(cmd, &line)) return 1;
            double ps = line.steps_per_s;
            if (ps > py[i]) py[i] = ps;
            np_py[i] = line.params;
        }
    }
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        printf("%6d %12.1f %12.1f %7.2fx %10lld\n", batches[i], ours[i], py[i], ours[i] / py[i],
               (long long)np_ours);
        if (np_py[i] != np_ours) {
            fprintf(stderr, "bench_nf: parameter counts differ: ours %lld, Python %lld\n",
                    (long long)np_ours, (long long)np_py[i]);
            rc = 1;
        }
    }
    printf("goal: never slower; >= 1.5x at batch 64 -> %s\n",
           ours[0] >= 1.5 * py[0] && ours[1] >= py[1] ? "met" : "NOT met");
    return rc;
}
