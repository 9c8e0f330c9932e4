/* Runs a Python checker of tests/fixtures with the interpreter that has torch and h5py
 * (FL_TORCH_PYTHON): `python fixtures/<script> <a> [<b>]` (b NULL: one argument); its
 * stdout and stderr go into out (n bytes, NUL-terminated). Returns its exit status (-1
 * when it could not run). */
#ifndef FL_TEST_PYTHON_CHECK_H
#define FL_TEST_PYTHON_CHECK_H

#include <stdio.h>
#include <sys/wait.h>

static inline int run_python_check(const char *script, const char *a, const char *b, char *out, size_t n)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' '%s/fixtures/%s' '%s' %s%s%s 2>&1", FL_TORCH_PYTHON, FL_TEST_DIR, script, a,
             b ? "'" : "", b ? b : "", b ? "'" : "");
    out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
