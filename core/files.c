/* mkdir -p and atomic text files. */
#include "core/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
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

void fl_remove_stale_temps(const char *dir, const char *prefix)
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
        if (pid <= 0 || lstat(p, &st) != 0 || !S_ISREG(st.st_mode) ||
            now - st.st_mtime < FL_STALE_TEMP_SECONDS)
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) unlink(p);
    }
    closedir(d);
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
