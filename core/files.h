/* Small file-system helpers shared by the layers that write results and caches. */
#ifndef FL_FILES_H
#define FL_FILES_H

#include <stddef.h>

/* Creates dir and its missing parents (like mkdir -p); -1 and "DIR: why". */
int fl_mkdir_p(const char *dir);
/* Writes text to "<path>.tmp.<pid>" and renames it over path, so a reader never sees
 * half a file; -1 and "PATH: why", and no temp file left. */
int fl_write_text_atomic(const char *path, const char *text);
/* Removes the temporaries "<name>.tmp.<pid>[.<ext>]" in dir whose names start with
 * prefix ("" for any) left by writers that died (kill -9, power loss): the process is
 * gone and the file has not changed for FL_STALE_TEMP_SECONDS (the folder may be shared
 * between machines, where another host's pid means nothing here). Best effort: errors
 * are ignored. */
#define FL_STALE_TEMP_SECONDS 600
void fl_remove_stale_temps(const char *dir, const char *prefix);
/* The same for n bytes, synced to disk before the rename; why is strerror(errno), e.g.
 * "No space left on device". */
int fl_write_bytes_atomic(const char *path, const void *data, size_t n);

#endif
