/* Keys that belong to no layer (seeding, threads, the device and where files go), and the role of
 * every key: what a trained model's identity and its scores' identity are made of. */
#include "core/schema.h"

#include <string.h>

const fl_key fl_keys_general[] = {
    {"seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of a fiber-model run: its initialisation, batches, noise and evaluation draws "
     "(the dataset has data.seed, the subject and the VAE their own)."},
    {"threads", FL_KEY_INT, "0", 0, 1024, NULL,
     "CPU cores to use; 0: every core the process may run on. They go to libtorch's own "
     "threads for conv work and to OpenBLAS's for dense work, never to both at once "
     "(nested pools oversubscribe the cores; see core/blas.h)."},
    {"device", FL_KEY_STR, "\"cpu\"", FL_NO_BOUNDS, NULL,
     "Where the models train and sample: cpu, cuda (the first GPU; a sweep's workers or "
     "ranks on one machine take the GPUs in turn) or cuda:N. A GPU needs fiberlab built "
     "against a libtorch with CUDA (Debian 12's libtorch-dev has none); the command stops "
     "before any work when the device is not there."},
    {"cache_dir", FL_KEY_STR, "\"cache\"", FL_NO_BOUNDS, NULL,
     "Folder for the downloaded digits (scripts/setup.sh fills it), built datasets and "
     "trained subjects and VAEs; a relative path is taken from the source tree. The "
     "environment variable FIBERLAB_CACHE (relative to the working directory) overrides it."},
    {"out_dir", FL_KEY_STR, "\"results\"", FL_NO_BOUNDS, NULL,
     "Root folder of results, relative to the working directory (not empty): each sweep "
     "writes <out_dir>/<sweep.name>/."},
    FL_KEYS_END,
};

/* Exact keys first, then whole sections ("train" covers train.*). A key matched by
 * neither is UNSET, and tests/test_config.c fails on it: whoever adds a section says
 * here what it decides. */
static const struct {
    const char *prefix;
    fl_key_role role;
} roles[] = {
    {"seed", FL_ROLE_MODEL},
    {"threads", FL_ROLE_NONE},      /* results agree to float rounding across thread counts */
    {"device", FL_ROLE_NONE},       /* the same computation; GPU kernels round otherwise */
    {"cache_dir", FL_ROLE_NONE},
    {"out_dir", FL_ROLE_NONE},
    {"train.checkpoint_every", FL_ROLE_NONE},
    {"train.curve_every", FL_ROLE_NONE},
    /* activation checkpointing recomputes the same gradients: memory, not parameters */
    {"diff.checkpoint", FL_ROLE_NONE},
    {"fm.checkpoint", FL_ROLE_NONE},
    {"sweep.val_fraction", FL_ROLE_MODEL},   /* the digits held out of training */
    {"sweep.grid_targets", FL_ROLE_EVAL},
    {"sweep.name", FL_ROLE_NONE},
    {"sweep.families", FL_ROLE_NONE},        /* each run's model.family, train.lambda, seed */
    {"sweep.lambdas", FL_ROLE_NONE},
    {"sweep.overrides", FL_ROLE_NONE},      /* the runs' own keys carry what they set */
    {"sweep.seeds", FL_ROLE_NONE},
    {"sweep.workers", FL_ROLE_NONE},
    {"sweep.ndtm_gammas", FL_ROLE_NONE},    /* each NDTM cell's ndtm.gamma, ndtm.target, prior.variant, seed */
    {"sweep.ndtm_priors", FL_ROLE_NONE},
    {"sweep.ndtm_targets", FL_ROLE_NONE},
    {"sweep.ndtm_refine", FL_ROLE_NONE},
    {"sweep.ndtm_leakage", FL_ROLE_NONE},
    {"data", FL_ROLE_MODEL},
    {"train", FL_ROLE_MODEL},
    {"model", FL_ROLE_MODEL},
#define FL_SCHEMA_FAMILY_ROLE(id, summary) {#id, FL_ROLE_MODEL},
    FL_FAMILIES(FL_SCHEMA_FAMILY_ROLE)
    {"subject", FL_ROLE_MODEL},
    {"vae", FL_ROLE_MODEL},
    {"prior", FL_ROLE_MODEL},
    {"ndtm", FL_ROLE_MODEL},     /* the guided sampler is NDTM's model */
    {"eval", FL_ROLE_EVAL},
};

fl_key_role fl_schema_role(const char *key)
{
    size_t n = sizeof roles / sizeof roles[0];
    for (size_t i = 0; i < n; i++)
        if (strcmp(roles[i].prefix, key) == 0) return roles[i].role;
    for (size_t i = 0; i < n; i++) {
        size_t m = strlen(roles[i].prefix);
        if (strncmp(roles[i].prefix, key, m) == 0 && key[m] == '.') return roles[i].role;
    }
    return FL_ROLE_UNSET;
}

int fl_schema_list_len(const char *key)
{
    return strcmp(key, "data.fixed_color") == 0 ? 3 : 0;   /* R, G, B */
}

fl_str_form fl_schema_str_form(const char *key)
{
    static const struct {
        const char *key;
        fl_str_form form;
    } forms[] = {{"out_dir", FL_STR_FOLDER},
                 {"cache_dir", FL_STR_FOLDER},
                 {"sweep.name", FL_STR_NAME},
                 {"device", FL_STR_DEVICE}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (strcmp(forms[i].key, key) == 0) return forms[i].form;
    return FL_STR_ANY;
}
