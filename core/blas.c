/* OpenBLAS kernel detection and the one re-exec that makes libtorch use the best one. */
#define _GNU_SOURCE
#include "core/blas.h"

#include "ctorch/ct.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REEXEC_GUARD "FIBERLAB_BLAS_REEXEC"
#define REPLACED_ENV "FIBERLAB_BLAS_REPLACED"

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
    if (!current || getenv(REEXEC_GUARD)) return;
    const char *forced = getenv(FL_CORETYPE_ENV);
    const char *want = forced && *forced ? forced : fl_blas_best_coretype();
    if (!want) return;
    if (forced && *forced) {
        if (strcasecmp(current, forced) == 0) return;
    } else if (kernel_rank(current) >= kernel_rank(want)) {
        return;
    }
    /* an inherited OPENBLAS_CORETYPE that names a weaker kernel is replaced; say so */
    char inherited[64] = "";
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env) {
        snprintf(inherited, sizeof inherited, "%s", env);
        setenv(REPLACED_ENV, inherited, 1);
    }
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv(REEXEC_GUARD, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernel we have rather than not at all */
    if (env)
        setenv("OPENBLAS_CORETYPE", inherited, 1);
    else
        unsetenv("OPENBLAS_CORETYPE");
    unsetenv(REPLACED_ENV);
    unsetenv(REEXEC_GUARD);
}

int fl_blas_kernel_is_best(void)
{
    const char *core = fl_blas_corename(), *best = fl_blas_best_coretype();
    return core && (!best || kernel_rank(core) >= kernel_rank(best));
}

/* "set": fiberlab chose avx512; "env": the environment named one; "" libtorch's choice. */
static const char *aten_source = "";

void fl_aten_ensure_kernels(void)
{
    const char *env = getenv("ATEN_CPU_CAPABILITY");
    if (env && *env) {
        aten_source = "env";
        return;
    }
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        setenv("ATEN_CPU_CAPABILITY", "avx512", 1) == 0)
        aten_source = "set";
}

const char *fl_aten_kernels(void)
{
    const char *env = getenv("ATEN_CPU_CAPABILITY");
    return aten_source[0] && env && *env ? env : NULL;
}

bool fl_aten_kernels_set_by_us(void) { return strcmp(aten_source, "set") == 0; }

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static void exit_without_destructors(int status, void *arg)
{
    (void)arg;
    fflush(NULL);
#if defined(__SANITIZE_ADDRESS__)
    __lsan_do_leak_check(); /* ends the process with LSan's exit code if anything leaked */
#endif
    _exit(status);
}

void fl_runtime_exit_fast(void)
{
    static bool registered;
    if (!registered) registered = on_exit(exit_without_destructors, NULL) == 0;
}

void fl_runtime_init(char **argv)
{
    fl_runtime_exit_fast();
    fl_blas_ensure_best_kernel(argv);
    fl_aten_ensure_kernels();
    mallopt(M_MMAP_THRESHOLD, FL_MALLOC_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, FL_MALLOC_TRIM_THRESHOLD);
}

const char *fl_blas_replaced_coretype(void)
{
    const char *r = getenv(REPLACED_ENV);
    return r && *r ? r : NULL;
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

int fl_dense_threads(int n, long long rows)
{
    if (n <= 0) n = fl_cores_available();
    return rows < FL_DENSE_PARALLEL_ROWS ? 1 : n;
}

void fl_threads_get(int *n, fl_workload *w)
{
    *n = cur_threads;
    *w = cur_work;
}

const char *fl_cpu_name(void)
{
    static char name[256];
    if (name[0]) return name;
    char model[160] = "unknown CPU", line[512];
    int family = -1, mdl = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) {
            if (family >= 0) break; /* the end of the first processor's block */
            continue;
        }
        const char *v = colon + 1 + (colon[1] == ' ');
        if (strncmp(line, "model name", 10) == 0) {
            snprintf(model, sizeof model, "%s", v);
            model[strcspn(model, "\n")] = 0;
        } else if (strncmp(line, "cpu family", 10) == 0) {
            family = atoi(v);
        } else if (strncmp(line, "model\t", 6) == 0) {
            mdl = atoi(v);
        }
    }
    if (f) fclose(f);
    snprintf(name, sizeof name, "%s (family %d, model %d)", model, family, mdl);
    return name;
}

void fl_machine_describe(char *buf, size_t n)
{
    char host[128] = "";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "unknown host");
    const char *core = fl_blas_corename();
    const char *aten = fl_aten_kernels();
    char dev[64] = "";
    ct_device d = ct_default_device();
    if (d.kind != CT_CPU) {   /* the models ran on a GPU (the config's device) */
        char name[32];
        ct_device_name(d, name, sizeof name);
        snprintf(dev, sizeof dev, "; device %s", name);
    }
    snprintf(buf, n, "%s; %d cores; %s kernel %s; libtorch %s (ATen kernels %s)%s; host %s",
             fl_cpu_name(), fl_cores_available(), core ? "OpenBLAS" : "BLAS", core ? core : "n/a",
             ct_torch_version(), aten ? aten : "libtorch's choice", dev, host);
}
