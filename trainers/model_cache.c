/* Paths of cached models. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/files.h"
#include "core/log.h"
#include "datasets/digits.h"
#include "datasets/store.h"
#include "trainers/model_cache.h"

int fl_model_cache_path(const fl_config *c, const char *name, int version,
                        const char *const *sections, int n_sections, bool create_dir, char *buf,
                        size_t len, uint64_t *fingerprint)
{
    char cache[4096], dir[4200], v[32];
    if (fl_data_cache_dir(c, cache, sizeof cache)) return -1;
    snprintf(dir, sizeof dir, "%s/models", cache);
    if (create_dir && fl_mkdir_p(dir)) return -1;
    char *json = fl_config_json(c, sections, n_sections);
    if (!json) return fl_fail("out of memory");
    snprintf(v, sizeof v, "\n%s format %d", name, version);
    uint64_t h = fl_fnv1a64(fl_fnv1a64(FL_FNV_OFFSET, json, strlen(json)), v, strlen(v));
    free(json);
    if (snprintf(buf, len, "%s/%s-%016llx.ckpt", dir, name, (unsigned long long)h) >= (int)len)
        return fl_fail("%s: path too long", dir);
    if (fingerprint) *fingerprint = h;
    return 0;
}
