/* One class file of the npm digits ({"data": [n·784 numbers in [0, 1]]}). */
#include <stdlib.h>

#include "core/log.h"
#include "ctorch/ct.h"
#include "datasets/digits.h"
#include "tests/fuzz/fuzz.h"

int fuzz_npm(const uint8_t *data, size_t size)
{
    float *px = NULL;
    int64_t n = 0;
    if (fl_digits_parse_npm("fuzz/0.json", data, size, &px, &n) == 0) free(px);
    ct_clear_error();
    return 0;
}
