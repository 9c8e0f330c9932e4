/* One IDX file (plain or gzip), read as images (3 dimensions) and as labels (1). */
#include <stdlib.h>

#include "core/log.h"
#include "ctorch/ct.h"
#include "datasets/digits.h"
#include "tests/fuzz/fuzz.h"

int fuzz_idx(const uint8_t *data, size_t size)
{
    for (int want = 1; want <= 3; want += 2) {
        fl_idx x = {0};
        if (fl_idx_parse("fuzz-idx3-ubyte", data, size, want, &x) == 0) free(x.data);
    }
    ct_clear_error();
    return 0;
}
