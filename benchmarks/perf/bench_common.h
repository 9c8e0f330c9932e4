/* What the benchmarks that race fiberlab against a Python PyTorch twin share
 * (bench_families): running one side as a child process that prints one JSON
 * line, the command line that gives the Python side our thread and malloc settings,
 * medians, the resident-set figures and the CPU's name for every quoted figure. */
#ifndef FL_BENCH_COMMON_H
#define FL_BENCH_COMMON_H

#include <stddef.h>

/* The fields of a side's JSON line ("steps_per_s", "params", "peak_rss_kb", "rss0_kb",
 * "gemm_flop", "cpu_seconds"); a missing field reads 0. */
typedef struct {
    double steps_per_s;
    double cpu_seconds;      /* CPU time (user + system, all threads) of the timed part (0: not measured) */
    long long params;
    long long peak_rss_kb;   /* the child's high-water mark of resident memory */
    long long rss0_kb;       /* its resident memory when the timed steps began */
    double gemm_flop;        /* BLAS matrix-product work per timed step (0: not counted) */
} bench_line;

/* Runs cmd (through popen) and parses the first line it prints. 0 when it exited 0
 * and printed a positive steps_per_s; -1 (with a message on stderr naming cmd) else. */
int bench_run_line(const char *cmd, bench_line *out);
/* Prints into buf the command that runs `python script args` with the given OpenBLAS
 * threads and fiberlab's malloc settings (FL_MALLOC_TUNABLES); the OpenBLAS kernel is
 * inherited (fl_runtime_init set OPENBLAS_CORETYPE in this process's environment). */
void bench_python_cmd(char *buf, size_t n, int blas_threads, const char *python,
                      const char *script, const char *args);
/* The median of v[0 … n−1] (n ≥ 1; v is reordered). */
double bench_median(double *v, int n);
/* This process's resident memory now, in KiB (/proc/self/status VmRSS); 0 if unknown. */
long long bench_rss_kb(void);
/* Its high-water mark of resident memory, in KiB (getrusage ru_maxrss). */
long long bench_peak_rss_kb(void);
/* The CPU time this process has used, user and system, all threads, in seconds
 * (CLOCK_PROCESS_CPUTIME_ID; Python's time.process_time()). */
double bench_cpu_seconds(void);
/* The GEMM peak of this machine for the benchmarks' ratios: GFLOP/s of a 1024² float32
 * matrix product (ct_matmul, the BLAS libtorch calls) on `threads` OpenBLAS threads, the
 * median of 7 timings of 10 products after a warm-up; restores the thread setting. */
double bench_gemm_peak_gflops(int threads);

#endif
