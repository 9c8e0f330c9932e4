/* A ctorch archive — the format of cached models and training checkpoints — read as
 * an archive (every entry) and loaded as the cached VAE of a small config. The input
 * is the HDF5 part of the file; the target writes the 512-byte header in front of it
 * with the CRC-32 and size that make it pass the checksum, so that the mutations reach
 * the readers behind it (a file that fails the checksum is refused before them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/config.h"
#include "core/files.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "trainers/vae.h"
#include "tests/fuzz/fuzz.h"

enum { HEADER = 512 };

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The config whose VAE the input is loaded as, with the cache in the scratch folder. */
static fl_config *small_config(char *path, size_t n)
{
    static const char *sets[] = {"vae.widths=4,8", "vae.hidden=16", "vae.latent=4"};
    fl_config *c = fl_config_default();
    char cache[700];
    snprintf(cache, sizeof cache, "cache_dir=%s/cache", fuzz_dir());
    int rc = !c || fl_config_override(c, cache);
    for (size_t i = 0; !rc && i < sizeof sets / sizeof *sets; i++) rc = fl_config_override(c, sets[i]);
    snprintf(cache, sizeof cache, "%s/cache/models", fuzz_dir());
    if (rc || fl_mkdir_p(cache) || fl_vae_cache_path(c, path, n)) {
        fprintf(stderr, "fuzz_cached: %s\n", fl_error());
        abort();
    }
    return c;
}

int fuzz_cached(const uint8_t *data, size_t size)
{
    static fl_config *c;
    static char path[4200];
    fuzz_h5_setup();
    if (!c) c = small_config(path, sizeof path);
    uint8_t *file = malloc(HEADER + size);
    if (!file) return 0;
    memset(file, 0, HEADER);
    memcpy(file, "CTARCH02", 8);
    put_u32(file + 12, HEADER);
    uint64_t total = HEADER + size;
    put_u32(file + 16, (uint32_t)total);
    put_u32(file + 20, (uint32_t)(total >> 32));
    if (size) memcpy(file + HEADER, data, size);
    put_u32(file + 8, (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), file + 12, total - 12));
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(file, 1, total, f) != total || fclose(f)) abort();
    free(file);

    ct_scope *sc = ct_scope_begin();
    ct_archive *a = ct_archive_read(path);
    for (int i = 0; a && i < ct_archive_count(a); i++) ct_archive_get(a, ct_archive_name(a, i));
    ct_archive_free(a);
    ct_scope_end(sc);
    fl_vae *v = NULL;
    if (fl_vae_open(c, NULL, &v) == 0) fl_vae_free(v);
    ct_clear_error();
    return 0;
}
