/* A cached color-MNIST dataset file (HDF5, docs/datasets.md). */
#include "core/log.h"
#include "ctorch/ct.h"
#include "datasets/store.h"
#include "tests/fuzz/fuzz.h"

int fuzz_dataset(const uint8_t *data, size_t size)
{
    fuzz_h5_setup();
    fl_dataset *d = NULL;
    if (fl_dataset_load(fuzz_file("colormnist.h5", data, size), &d) == 0) fl_dataset_free(d);
    ct_clear_error();
    return 0;
}
