/* The samples file of `fiberlab eval --samples` (HDF5: samples (n, 3, 28, 28),
 * target_index (n,)), read against a test split of 1000 images. */
#include <stdlib.h>

#include "benchmarks/eval.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "tests/fuzz/fuzz.h"

int fuzz_samples(const uint8_t *data, size_t size)
{
    fuzz_h5_setup();
    const char *path = fuzz_file("samples.h5", data, size);
    int64_t *index = NULL, n = 0;
    float *samples = NULL;
    fl_eval_read_samples(path, 1000, &index, &samples, &n);
    free(index);
    free(samples);
    ct_clear_error();
    return 0;
}
