/* Not a suite: a test that leaks on purpose, run by ctest in the sanitizer build
 * (tests/CMakeLists.txt) with the suites' own sanitizer settings and expected to FAIL —
 * it proves that a leak in a Criterion worker fails the test run, and that the
 * suppressions in tests/lsan.supp do not hide a leak made by fiberlab code. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctorch/ct.h"

void *volatile fl_lsan_canary_sink;

/* noinline keeps the function's name in the leak's stack */
__attribute__((noinline)) static char *fl_lsan_canary_alloc(size_t n)
{
    char *p = malloc(n);
    if (p) memset(p, 1, n);
    return p;
}

Test(lsan_canary, a_malloc_that_is_never_freed)
{
    fl_lsan_canary_sink = fl_lsan_canary_alloc(4096);
    fl_lsan_canary_sink = NULL; /* the last pointer to it is gone */
}

Test(lsan_canary, a_tensor_handle_that_is_never_freed)
{
    /* the handle comes from ctorch, its storage from libtorch: a suppression by library
     * name (leak:libtorch_cpu) would hide the storage, and must not hide this */
    fl_lsan_canary_sink = ct_ones(CT_SHAPE(64, 64), CT_F32);
    fl_lsan_canary_sink = NULL;
}
