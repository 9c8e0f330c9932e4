/* The fuzz targets' shared pieces. Each target is one function over a byte string,
 * fuzz_<name>(data, size); built with libFuzzer (tests/fuzz/run.sh, -DFL_FUZZ=ON) it is
 * LLVMFuzzerTestOneInput, and the Criterion suite test_fuzz_inputs replays the seed
 * corpus and every crash input kept under tests/fuzz/ through the same function in the
 * normal (and sanitizer) build. A target returns 0; a crash, a sanitizer report or a
 * leak is the finding. */
#ifndef FL_FUZZ_H
#define FL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_config(const uint8_t *data, size_t size);
int fuzz_idx(const uint8_t *data, size_t size);
int fuzz_npm(const uint8_t *data, size_t size);
int fuzz_samples(const uint8_t *data, size_t size);
int fuzz_cached(const uint8_t *data, size_t size);
int fuzz_dataset(const uint8_t *data, size_t size);

/* A file of the given bytes in this process's scratch folder (made once, under
 * $TMPDIR or /tmp); its path, valid until the next call with the same name. */
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);
/* The scratch folder itself. */
const char *fuzz_dir(void);
/* Once per process, before a target opens HDF5 files: room on HDF5's free lists. */
void fuzz_h5_setup(void);

#ifdef FL_FUZZ_TARGET
/* libFuzzer's entry: FL_FUZZ_TARGET is the target's function. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return FL_FUZZ_TARGET(data, size);
}
#endif

#endif
