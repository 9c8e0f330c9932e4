/* The BLAS under libtorch: which library and kernel runs, and making sure OpenBLAS runs
 * the best kernel for this CPU. OpenBLAS 0.3.21 does not know newer Xeons and falls back
 * to generic kernels (6x slower on matmul here); the variable that fixes it,
 * OPENBLAS_CORETYPE, is read when the library loads, before main(). */
#ifndef FL_BLAS_H
#define FL_BLAS_H

#include <stdbool.h>
#include <stddef.h>

/* Path of the shared library that provides dgemm_ (static string, "unknown" if none). */
const char *fl_blas_library(void);
/* OpenBLAS's chosen kernel ("SkylakeX", "Haswell", "Prescott", …), or NULL when the
 * BLAS is not OpenBLAS. */
const char *fl_blas_corename(void);
/* OpenBLAS's build configuration string, or NULL. */
const char *fl_blas_config(void);
/* The best OPENBLAS_CORETYPE this CPU can run, from cpuid, or NULL when OpenBLAS's own
 * detection is trusted (no AVX). */
const char *fl_blas_best_coretype(void);
/* Forces a kernel: FIBERLAB_CORETYPE=Haswell runs OpenBLAS's Haswell kernel whatever the
 * CPU (e.g. for the same floating-point results on several machines). */
#define FL_CORETYPE_ENV "FIBERLAB_CORETYPE"
/* Called first thing in main(): when OpenBLAS runs a weaker kernel than this CPU can
 * (OpenBLAS's own fallback, or an OPENBLAS_CORETYPE inherited from the environment that
 * names a weaker one), or another kernel than FIBERLAB_CORETYPE names, sets
 * OPENBLAS_CORETYPE and re-executes the program (once). Returns normally when nothing
 * needs doing or the re-exec is impossible. */
void fl_blas_ensure_best_kernel(char **argv);
/* 1 when OpenBLAS runs a kernel at least as good as the best this CPU can run. */
int fl_blas_kernel_is_best(void);
/* The OPENBLAS_CORETYPE this process inherited and replaced with a better kernel, or NULL. */
const char *fl_blas_replaced_coretype(void);

/* ATen's own kernels (elementwise, reductions, convolutions' glue): libtorch 1.13 picks
 * its AVX2 build of them even on CPUs with AVX-512, unless ATEN_CPU_CAPABILITY says
 * avx512 (read at the first op, after main starts). On an AMD EPYC Zen 5 the AVX-512
 * kernels ran silu, sigmoid and exp on 400k floats in half the time (106 against
 * 202 µs for silu). fl_runtime_init calls fl_aten_ensure_kernels, which sets
 * ATEN_CPU_CAPABILITY=avx512 when the CPU has AVX-512 F, BW, VL and DQ and the
 * environment names none (ATEN_CPU_CAPABILITY=avx2 or default in the environment wins,
 * e.g. for the same floating-point results on several machines). */
void fl_aten_ensure_kernels(void);
/* The ATen kernels named by ATEN_CPU_CAPABILITY ("avx512", …), or NULL when libtorch
 * chooses (on its own, AVX2 on x86-64 CPUs that have it). */
const char *fl_aten_kernels(void);
bool fl_aten_kernels_set_by_us(void);   /* true when fl_aten_ensure_kernels set it */

/* The CPU from /proc/cpuinfo, e.g. "AMD EPYC (family 26, model 2)" (static string). */
const char *fl_cpu_name(void);
/* One line on what this process computes with, stored in every run file and listed by
 * the report: "CPU; N cores; OpenBLAS kernel K; libtorch V (ATen kernels A)[; device
 * cuda:I]; host H", the device when the config put the models on a GPU. */
void fl_machine_describe(char *buf, size_t n);

/* The first call in every main(): fl_blas_ensure_best_kernel, then the allocator. glibc
 * gives allocations above 128 KiB their own mmap and returns freed heap tops to the
 * system, so a training step that allocates and frees the same large activations every
 * time page-faults them in again each step; fiberlab keeps them in the heap (mmap
 * threshold 32 MiB, trim threshold 256 MiB). GLIBC_TUNABLES says the same to another
 * process (bench_families gives it to the Python reference): FL_MALLOC_TUNABLES. */
void fl_runtime_init(char **argv);
/* From the call on, the process ends without the shared libraries' exit-time destructors:
 * at exit (main's return or exit()) the handler flushes stdio, runs LeakSanitizer's check
 * in a sanitizer build, and calls _exit with the same status. libtorch 1.13's teardown
 * (static registrations unwinding through the dispatcher) once aborted a finished test
 * process with an INTERNAL ASSERT in OperatorEntry::hasKernelForAnyDispatchKey (a
 * Criterion child that had not called into libtorch); fiberlab's own files are closed by
 * its code, and libraries' handlers registered after this call (HDF5's, Open MPI's) still
 * run before it.
 * fl_runtime_init calls it; tests/main.c also calls it from a constructor, because
 * Criterion's workers run the test in place of main. Idempotent. */
void fl_runtime_exit_fast(void);
#define FL_MALLOC_MMAP_THRESHOLD 33554432
#define FL_MALLOC_TRIM_THRESHOLD 268435456
#define FL_STR_(x) #x
#define FL_STR(x) FL_STR_(x)
#define FL_MALLOC_TUNABLES                                              \
    "glibc.malloc.mmap_threshold=" FL_STR(FL_MALLOC_MMAP_THRESHOLD) \
    ":glibc.malloc.trim_threshold=" FL_STR(FL_MALLOC_TRIM_THRESHOLD)

/* Threads. libtorch parallelizes inside its ops (OpenMP) and OpenBLAS has a pool of its
 * own; with both parallel they oversubscribe the cores (OpenBLAS's threads spin while
 * libtorch's wait). Measured on 2 cores: a conv subject trained 3x slower with both pools
 * at 2 threads than with BLAS at 1, and NF training at batch 256 5x slower. So exactly
 * one pool runs n threads: libtorch's for conv work (its conv kernels split the batch),
 * BLAS's for dense work (MLPs, whose time is in matrix products). */
typedef enum { FL_WORK_CONV = 0, FL_WORK_DENSE, FL_WORK_COUNT } fl_workload;
/* The cores this process may run on. */
int fl_cores_available(void);
/* Uses n threads (0: every available core) for work of kind w. */
void fl_threads_set(int n, fl_workload w);
/* The threads worth giving to dense work on mini-batches of `rows` rows, out of n (0:
 * every available core). OpenBLAS 0.3.21 splits even small matrix products across its
 * threads; below FL_DENSE_PARALLEL_ROWS rows the synchronisation costs more than the
 * second core gains (NF training at batch 64 on 2 cores, measured by the former
 * bench_nf: 63 steps/s on one thread against 51 on two; at 128 even; at 256: 25 on two
 * against 20 on one). */
#define FL_DENSE_PARALLEL_ROWS 128
int fl_dense_threads(int n, long long rows);
/* The current setting, to restore it after a phase of another kind. */
void fl_threads_get(int *n, fl_workload *w);

#endif
