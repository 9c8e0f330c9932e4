/* Helpers shared by the ctorch suites: a fixture that fails a test which leaks
 * handles, and message and tensor comparisons that print what differs. */
#ifndef TEST_CTORCH_UTIL_H
#define TEST_CTORCH_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ct.h"

/* Every ctorch test runs with this fixture: no error left over from earlier, and the
 * live-handle count back to its start value when the body returns (no leaked
 * handles). The check runs in the test itself: Criterion 2.4 reports an assertion
 * that fails in .fini but does not fail the test. */
static long ct_test_live_at_start;
static void ct_test_init(void)
{
    ct_clear_error();
    ct_test_live_at_start = ct_live_handles();
}
static void ct_test_check_live(void)
{
    cr_expect_eq(ct_live_handles(), ct_test_live_at_start,
                 "leaked handles: %ld live at the end, %ld at the start", ct_live_handles(),
                 ct_test_live_at_start);
}
#define CT_TEST(suite, name, ...)                                \
    static void suite##_##name##_body(void);                     \
    Test(suite, name, .init = ct_test_init, ##__VA_ARGS__)       \
    {                                                            \
        suite##_##name##_body();                                 \
        ct_test_check_live();                                    \
    }                                                            \
    static void suite##_##name##_body(void)

/* The last error mentions `what` (an op or a file name). */
#define ct_expect_error_mentions(what)                                                   \
    cr_expect(strstr(ct_last_error(), (what)) != NULL, "error '%s' should mention '%s'", \
              ct_last_error(), (what))

/* Fails with the first values and the largest difference when |a - b| > tol anywhere. */
static inline bool ct_expect_close(const char *what, const ct_tensor *a, const ct_tensor *b,
                                   double tol)
{
    double d = ct_max_abs_diff(a, b);
    if (!(d <= tol)) {
        ct_print("  got     ", a);
        ct_print("  expected", b);
        cr_expect(false, "%s: max |diff| = %.3g > %.3g (%s)", what, d, tol, ct_last_error());
        return false;
    }
    return true;
}

/* Bit-for-bit equality of two tensors of the same shape and dtype. */
static inline bool ct_bits_equal(const ct_tensor *a, const ct_tensor *b)
{
    if (!a || !b || ct_dtype_of(a) != ct_dtype_of(b) || ct_numel(a) != ct_numel(b) ||
        ct_ndim(a) != ct_ndim(b))
        return false;
    for (int i = 0; i < ct_ndim(a); i++)
        if (ct_size(a, i) != ct_size(b, i)) return false;
    size_t n = (size_t)ct_numel(a) * ct_dtype_size(ct_dtype_of(a));
    unsigned char *pa = malloc(n + 1), *pb = malloc(n + 1);
    bool eq = ct_to_data(a, pa, n) == CT_OK && ct_to_data(b, pb, n) == CT_OK &&
              memcmp(pa, pb, n) == 0;
    free(pa);
    free(pb);
    return eq;
}

/* A fresh path in the temporary directory (removed by the caller). */
static inline void ct_test_tmp_path(char *buf, size_t n, const char *name)
{
    const char *dir = getenv("TMPDIR");
    snprintf(buf, n, "%s/ctorch_test_%ld_%s", dir && *dir ? dir : "/tmp", (long)getpid(), name);
}

/* Whole-file helpers for corrupting archives. */
static inline unsigned char *ct_test_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}
static inline bool ct_test_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

#endif
