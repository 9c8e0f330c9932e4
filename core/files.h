/* Small file-system helpers shared by the layers that write results and caches. */
#ifndef FL_FILES_H
#define FL_FILES_H

#include <stddef.h>

/* Creates dir and its missing parents (like mkdir -p); -1 and "DIR: why". */
int fl_mkdir_p(const char *dir);
/* Writes text to "<path>.tmp.<pid>" and renames it over path, so a reader never sees
 * half a file; -1 and "PATH: why", and no temp file left. */
int fl_write_text_atomic(const char *path, const char *text);
/* The same for n bytes, synced to disk before the rename; why is strerror(errno), e.g.
 * "No space left on device". */
int fl_write_bytes_atomic(const char *path, const void *data, size_t n);

#endif
