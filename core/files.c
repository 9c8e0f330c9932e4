/* mkdir -p, atomic files, their stale temporaries, and the locks that make each file
 * once when processes share a folder. */
#include "core/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

int fl_mkdir_p(const char *dir)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return fl_fail("%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return fl_fail("%s: cannot create folder: %s", buf, strerror(errno));
        *p = c;
        if (!c) return 0;
    }
}

/* Removes the temporaries in dir whose names start with prefix; stale_only: only those
 * of dead writers unchanged for FL_STALE_TEMP_SECONDS. */
static void remove_temps(const char *dir, const char *prefix, bool stale_only)
{
    DIR *d = opendir(dir);
    if (!d) return;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        /* the last ".tmp." followed by digits, then the end or ".<ext>" */
        const char *t = NULL;
        for (const char *p = strstr(e->d_name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) t = p;
        if (!t || t == e->d_name) continue;
        char *end;
        long pid = strtol(t + 5, &end, 10);
        if (end == t + 5 || (*end && (*end != '.' || strchr(end + 1, '.')))) continue;
        char p[4500];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (pid <= 0 || lstat(p, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (!stale_only || (now - st.st_mtime >= FL_STALE_TEMP_SECONDS && kill((pid_t)pid, 0) != 0 &&
                            errno == ESRCH))
            unlink(p);
    }
    closedir(d);
}

void fl_remove_stale_temps(const char *dir, const char *prefix)
{
    remove_temps(dir, prefix, true);
}

void fl_remove_temps_of(const char *path)
{
    char dir[4200], prefix[4200];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path ? slash - path : 1), path);
    else
        snprintf(dir, sizeof dir, ".");
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
    remove_temps(dir, prefix, false);
}

struct fl_lock {
    int fd;
    char path[4200];
};

int fl_lock_take(const char *target, bool wait, fl_lock **out)
{
    *out = NULL;
    fl_lock *l = malloc(sizeof *l);
    if (!l) return fl_fail("out of memory");
    if (snprintf(l->path, sizeof l->path, "%s.lock", target) >= (int)sizeof l->path) {
        free(l);
        return fl_fail("%s: path too long", target);
    }
    for (bool told = false;;) {
        l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (l->fd < 0) {
            int err = errno;
            free(l);
            return fl_fail("%s.lock: cannot create: %s", target, strerror(err));
        }
        int rc;
        while ((rc = flock(l->fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {}
        if (rc != 0 && errno == EWOULDBLOCK) {
            if (!wait) {
                close(l->fd);
                free(l);
                return 1;
            }
            if (!told) fl_info("%s: waiting for another process (it holds %s)", target, l->path);
            told = true;
            while ((rc = flock(l->fd, LOCK_EX)) != 0 && errno == EINTR) {}
        }
        if (rc != 0) {
            int err = errno;
            close(l->fd);
            free(l);
            return fl_fail("%s.lock: cannot lock: %s", target, strerror(err));
        }
        /* the holder we waited for removed the file before releasing it: the lock we
         * got is on a name no one else will open, so take the one on the current file */
        struct stat have, now;
        if (fstat(l->fd, &have) == 0 && stat(l->path, &now) == 0 && have.st_ino == now.st_ino &&
            have.st_dev == now.st_dev)
            break;
        close(l->fd);
    }
    fl_remove_temps_of(target);
    *out = l;
    return 0;
}

void fl_lock_release(fl_lock *l)
{
    if (!l) return;
    unlink(l->path);   /* while held: a waiter then sees its file replaced and retries */
    close(l->fd);
    free(l);
}

int fl_write_bytes_atomic(const char *path, const void *data, size_t n)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return fl_fail("%s: cannot write: %s", path, strerror(errno));
    int err = 0;
    for (const char *p = data; n > 0 && !err;) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) err = k == 0 ? EIO : errno;
        else p += k, n -= (size_t)k;
    }
    if (!err && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        unlink(tmp);
        return fl_fail("%s: cannot write: %s", path, strerror(err));
    }
    return 0;
}

int fl_write_text_atomic(const char *path, const char *text)
{
    return fl_write_bytes_atomic(path, text, strlen(text));
}
