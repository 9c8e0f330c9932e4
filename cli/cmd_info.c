/* fiberlab info: what this build runs on (libtorch, BLAS kernel, threads, devices). */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "cli/cli.h"
#include "cli/job.h"
#include "core/blas.h"
#include "ctorch/ct.h"
#include "fl_version.h"

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: fiberlab info\n\n"
               "Prints the fiberlab version, the libtorch version, the BLAS library and the\n"
               "kernel it runs, the number of threads and the devices. fiberlab runs the best\n"
               "OpenBLAS kernel for this CPU, replacing OpenBLAS's own fallback or a weaker\n"
               "OPENBLAS_CORETYPE from the environment; FIBERLAB_CORETYPE=NAME forces a kernel.\n"
               "On CPUs with AVX-512 it runs libtorch's AVX-512 kernels (ATEN_CPU_CAPABILITY=avx512)\n"
               "unless ATEN_CPU_CAPABILITY in the environment names others.\n");
        return 0;
    }
    if (argc > 1) return cli_fail("info", "unexpected argument '%s'", argv[1]);
    const char *core = fl_blas_corename();
    const char *cfg = fl_blas_config();
    printf("fiberlab   %s (commit %s)\n", FL_VERSION, FL_COMMIT);
    printf("libtorch   %s\n", ct_torch_version());
    printf("blas       %s\n", fl_blas_library());
    if (cfg) printf("openblas   %s\n", cfg);
    const char *forced = getenv(FL_CORETYPE_ENV), *replaced = fl_blas_replaced_coretype();
    printf("kernel     %s", core ? core : "n/a (not OpenBLAS)");
    if (core && forced && *forced && strcasecmp(core, forced) == 0)
        printf(" (forced by %s=%s)", FL_CORETYPE_ENV, forced);
    else if (core && forced && *forced)
        printf(" (%s=%s: not a kernel this OpenBLAS can run here)", FL_CORETYPE_ENV, forced);
    else if (fl_blas_kernel_is_best())
        printf(" (best for this CPU)");
    if (core && replaced) printf("; OPENBLAS_CORETYPE=%s from the environment replaced", replaced);
    printf("\n");
    const char *aten = fl_aten_kernels();
    printf("aten       %s\n", !aten ? "libtorch's choice of kernels (AVX2 on x86-64 CPUs that have it)"
                              : fl_aten_kernels_set_by_us() ? "avx512 kernels (set by fiberlab: the CPU has AVX-512)"
                                                             : "kernels named by ATEN_CPU_CAPABILITY from the environment");
    if (aten && !fl_aten_kernels_set_by_us()) printf("           ATEN_CPU_CAPABILITY=%s\n", aten);
    printf("threads    %d\n", ct_get_num_threads());
    const char *mpi = cli_job_mpi_library();
    printf("mpi        %s\n", mpi ? mpi : "not built in (fiberlab sweep --shard i/n instead of mpirun)");
    int n = ct_cuda_device_count();
    printf("devices    cpu");
    for (int i = 0; i < n; i++) printf(", cuda:%d", i);
    printf("\n");
    return 0;
}
