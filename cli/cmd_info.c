/* fiberlab info: what this build runs on (libtorch, BLAS kernel, threads, devices). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/blas.h"
#include "ctorch/ct.h"
#include "fl_version.h"

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: fiberlab info\n\n"
               "Prints the fiberlab version, the libtorch version, the BLAS library and the\n"
               "kernel it runs (OpenBLAS's OPENBLAS_CORETYPE; fiberlab picks the best one for\n"
               "this CPU), the number of threads and the devices.\n");
        return 0;
    }
    if (argc > 1) return cli_fail("info", "unexpected argument '%s'", argv[1]);
    const char *core = fl_blas_corename();
    const char *best = fl_blas_best_coretype();
    const char *cfg = fl_blas_config();
    printf("fiberlab   %s (commit %s)\n", FL_VERSION, FL_COMMIT);
    printf("libtorch   %s\n", ct_torch_version());
    printf("blas       %s\n", fl_blas_library());
    if (cfg) printf("openblas   %s\n", cfg);
    printf("kernel     %s%s\n", core ? core : "n/a (not OpenBLAS)",
           core && best && strcasecmp(core, best) == 0 ? " (best for this CPU)" : "");
    printf("threads    %d\n", ct_get_num_threads());
    int n = ct_cuda_device_count();
    printf("devices    cpu");
    for (int i = 0; i < n; i++) printf(", cuda:%d", i);
    printf("\n");
    return 0;
}
