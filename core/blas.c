/* OpenBLAS kernel detection and the one re-exec that makes libtorch use the best one. */
#define _GNU_SOURCE
#include "core/blas.h"

#include "ctorch/ct.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REEXEC_GUARD "FIBERLAB_BLAS_REEXEC"

const char *fl_blas_library(void)
{
    static char path[4096];
    void *sym = dlsym(RTLD_DEFAULT, "dgemm_");
    Dl_info info;
    if (!sym || !dladdr(sym, &info) || !info.dli_fname) return "unknown";
    char resolved[4096];
    snprintf(path, sizeof path, "%s",
             realpath(info.dli_fname, resolved) ? resolved : info.dli_fname);
    return path;
}

const char *fl_blas_corename(void)
{
    char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
    return corename ? corename() : NULL;
}

const char *fl_blas_config(void)
{
    char *(*config)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
    return config ? config() : NULL;
}

const char *fl_blas_best_coretype(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    if (__builtin_cpu_supports("avx")) return "Sandybridge";
#endif
    return NULL;
}

/* A coarse ranking of OpenBLAS's x86 kernels by the vector ISA they use. */
static int kernel_rank(const char *name)
{
    static const struct { const char *name; int rank; } ranks[] = {
        {"SkylakeX", 4}, {"Cooperlake", 4}, {"SapphireRapids", 4},
        {"Haswell", 3},  {"Zen", 3},        {"Sandybridge", 2},
    };
    if (!name) return 0;
    for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++)
        if (strcasecmp(name, ranks[i].name) == 0) return ranks[i].rank;
    return 1; /* Prescott, Core2, Nehalem, …: SSE only */
}

void fl_blas_ensure_best_kernel(char **argv)
{
    const char *current = fl_blas_corename();
    const char *best = fl_blas_best_coretype();
    if (!current || !best || getenv("OPENBLAS_CORETYPE") || getenv(REEXEC_GUARD)) return;
    if (kernel_rank(current) >= kernel_rank(best)) return;
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv(REEXEC_GUARD, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slower kernel rather than not at all */
    unsetenv("OPENBLAS_CORETYPE");
}

int fl_cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int cur_threads = 1;
static fl_workload cur_work = FL_WORK_DENSE; /* Debian's libtorch: 1 thread, BLAS all */

void fl_threads_set(int n, fl_workload w)
{
    if (n <= 0) n = fl_cores_available();
    void (*blas)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    ct_set_num_threads(w == FL_WORK_CONV ? n : 1);
    if (blas) blas(w == FL_WORK_CONV ? 1 : n);
    cur_threads = n;
    cur_work = w;
}

void fl_threads_get(int *n, fl_workload *w)
{
    *n = cur_threads;
    *w = cur_work;
}
