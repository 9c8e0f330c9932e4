/* Keys that belong to no layer: seeding, threads and where files go. */
#include "core/schema.h"

const fl_key fl_keys_general[] = {
    {"seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of every random choice of a run (data colors, initialisation, batches, noise)."},
    {"threads", FL_KEY_INT, "0", 0, 1024, NULL,
     "CPU cores to use; 0: every core the process may run on. They go to libtorch's own "
     "threads for conv work and to OpenBLAS's for dense work, never to both at once "
     "(nested pools oversubscribe the cores; see core/blas.h)."},
    {"cache_dir", FL_KEY_STR, "\"cache\"", FL_NO_BOUNDS, NULL,
     "Folder for the downloaded digits (scripts/setup.sh fills it), built datasets and "
     "trained subjects and VAEs; a relative path is taken from the source tree. The "
     "environment variable FIBERLAB_CACHE (relative to the working directory) overrides it."},
    {"out_dir", FL_KEY_STR, "\"results\"", FL_NO_BOUNDS, NULL,
     "Root folder of results, relative to the working directory: each sweep writes "
     "<out_dir>/<sweep.name>/."},
    FL_KEYS_END,
};
