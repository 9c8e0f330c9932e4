/* Where trained helper models (subject models, the VAE) are kept and found again:
 * <cache_dir>/models/<name>-<hash>.ckpt, hash = FNV-1a 64 of the canonical JSON of the
 * config sections the model depends on and of a format version, so equal settings reuse
 * one file, and any change of the settings — or of the code, which bumps the version —
 * trains anew. */
#ifndef FL_MODEL_CACHE_H
#define FL_MODEL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* Writes the path into buf (creating <cache_dir>/models/ when create_dir) and, when
 * fingerprint is not NULL, the hash as a number (for the training checkpoint).
 * -1 and a message naming the folder when it cannot be created or the path is too long. */
int fl_model_cache_path(const fl_config *c, const char *name, int version,
                        const char *const *sections, int n_sections, bool create_dir, char *buf,
                        size_t len, uint64_t *fingerprint);

#endif
