/* Small file-system helpers shared by the layers that write results and caches. */
#ifndef FL_FILES_H
#define FL_FILES_H

#include <stdbool.h>
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
/* Removes every temporary "<path>.tmp.<pid>[.<ext>]" of path, whatever its age or pid:
 * for a caller that holds path's lock (fl_lock_take), so no other writer can be making
 * them. Best effort. */
void fl_remove_temps_of(const char *path);

/* An exclusive lock on "<target>.lock" (flock), held by this process, so that two
 * processes sharing a cache or a sweep folder make each file once: the second waits,
 * then finds it made. The kernel drops the lock when its holder dies (kill -9), so a
 * lock never outlives its process; the lock file is removed when the lock is released
 * (a leftover from a killed holder is taken over). Taking the lock removes the target's
 * temporaries (fl_remove_temps_of). On NFS, see docs/runs.md ("Two processes, one
 * folder"). */
typedef struct fl_lock fl_lock;
/* wait: block until the lock is free, logging once that it waits; else return 1 at
 * once when another process holds it. 0 with *out set, 1 (busy, !wait), or -1 and
 * "<target>.lock: why". Release with fl_lock_release. */
int fl_lock_take(const char *target, bool wait, fl_lock **out);
/* Removes the lock file and releases the lock; NULL is a no-op. */
void fl_lock_release(fl_lock *l);
/* The same for n bytes, synced to disk before the rename; why is strerror(errno), e.g.
 * "No space left on device". */
int fl_write_bytes_atomic(const char *path, const void *data, size_t n);

#endif
