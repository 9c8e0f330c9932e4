/* The main of every Criterion suite: picks the best BLAS kernel (as fiberlab does),
 * then runs the tests. */
#include <criterion/criterion.h>

#include "core/blas.h"

/* Criterion's workers (BoxFort) run their test in place of main, so the fast exit is
 * registered before main, for the runner and the workers alike (core/blas.h). */
__attribute__((constructor)) static void exit_fast_in_every_process(void) { fl_runtime_exit_fast(); }

int main(int argc, char *argv[])
{
    fl_runtime_init(argv);
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
