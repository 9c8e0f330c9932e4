/* Helpers of the benchmarks against Python PyTorch (see bench_common.h). */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/blas.h"
#include "core/log.h"
#include "ctorch/ct.h"

static double field(const char *line, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\": ", name);
    const char *p = strstr(line, key);
    return p ? atof(p + strlen(key)) : 0;
}

int bench_run_line(const char *cmd, bench_line *out)
{
    memset(out, 0, sizeof *out);
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "bench: cannot run %s\n", cmd);
        return -1;
    }
    char line[1024] = "";
    if (!fgets(line, sizeof line, p)) line[0] = 0;
    while (fgetc(p) != EOF) { /* drain whatever else it prints */
    }
    int rc = pclose(p);
    out->steps_per_s = field(line, "steps_per_s");
    out->params = (long long)field(line, "params");
    out->peak_rss_kb = (long long)field(line, "peak_rss_kb");
    out->rss0_kb = (long long)field(line, "rss0_kb");
    out->gemm_flop = field(line, "gemm_flop");
    out->cpu_seconds = field(line, "cpu_seconds");
    if (rc != 0 || !(out->steps_per_s > 0)) {
        fprintf(stderr, "bench: the run failed (exit status %d): %s\n", rc, cmd);
        return -1;
    }
    return 0;
}

void bench_python_cmd(char *buf, size_t n, int blas_threads, const char *python,
                      const char *script, const char *args)
{
    snprintf(buf, n, "GLIBC_TUNABLES=%s OPENBLAS_NUM_THREADS=%d %s %s %s", FL_MALLOC_TUNABLES,
             blas_threads, python, script, args);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

long long bench_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atoll(line + 6);
    fclose(f);
    return kb;
}

long long bench_peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (long long)ru.ru_maxrss : 0;
}


double bench_gemm_peak_gflops(int threads)
{
    int n0;
    fl_workload w0;
    fl_threads_get(&n0, &w0);
    fl_threads_set(threads, FL_WORK_DENSE);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(5);
    ct_tensor *a = ct_randn(CT_SHAPE(1024, 1024), CT_F32, g), *b = ct_randn(CT_SHAPE(1024, 1024), CT_F32, g);
    double t[7];
    for (int r = -1; r < 7; r++) {
        double t0 = fl_now();
        for (int i = 0; i < 10; i++) {
            ct_scope *e = ct_scope_begin();
            ct_mm(a, b);
            ct_scope_end(e);
        }
        if (r >= 0) t[r] = (fl_now() - t0) / 10;
    }
    ct_gen_free(g);
    ct_scope_end(s);
    fl_threads_set(n0, w0);
    return 2.0 * 1024 * 1024 * 1024 / bench_median(t, 7) / 1e9;
}

double bench_cpu_seconds(void)
{
    struct timespec ts;
    return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? ts.tv_sec + 1e-9 * ts.tv_nsec : 0;
}
