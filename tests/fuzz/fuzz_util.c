/* The scratch files of the fuzz targets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "tests/fuzz/fuzz.h"

const char *fuzz_dir(void)
{
    static char dir[512];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/fl_fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

const char *fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) abort();
    return path;
}

void fuzz_h5_setup(void)
{
    static int done;
    if (done) return;
    done = 1;
    /* HDF5 keeps freed blocks on free lists up to a size limit (64 KiB per list of
     * fixed-size objects by default); the metadata cache of every opened file (H5C_t)
     * is far above it, so each open allocated it anew and the sanitizer's
     * allocator mapped, zeroed and unmapped it: most of a target's time. 16 MiB per list
     * keeps it for reuse; the totals stay bounded (unbounded, 40,000 corrupt files grew
     * the process past 3 GiB). The other limits are HDF5's defaults. HDF5 alone touches
     * these lists; fiberlab's own allocations are checked as before. */
    if (H5set_free_list_limits(64 << 20, 16 << 20, 4 << 20, 4 * 65536, 16 << 20, 1 << 20) < 0)
        abort();
}
