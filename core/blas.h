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

#endif
