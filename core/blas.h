/* The BLAS under libtorch: which library and kernel runs, and making sure OpenBLAS runs
 * the best kernel for this CPU. OpenBLAS 0.3.21 does not know newer Xeons and falls back
 * to generic kernels (6x slower on matmul here); the variable that fixes it,
 * OPENBLAS_CORETYPE, is read when the library loads, before main(). */
#ifndef FL_BLAS_H
#define FL_BLAS_H

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
/* Called first thing in main(): when OpenBLAS picked a weaker kernel than this CPU runs
 * and OPENBLAS_CORETYPE is unset, sets it and re-executes the program (once). Returns
 * normally when nothing needs doing or the re-exec is impossible. */
void fl_blas_ensure_best_kernel(char **argv);

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
/* The current setting, to restore it after a phase of another kind. */
void fl_threads_get(int *n, fl_workload *w);

#endif
