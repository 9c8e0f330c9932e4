/* Writers on a full disk: an HDF5 file, a text file and a plot that cannot be written
 * whole fail with one line naming the file and the system's reason, leave nothing
 * under the final name (nor a temporary), and the process exits cleanly afterwards.
 * A file size limit (RLIMIT_FSIZE, EFBIG) stands in for the full disk (ENOSPC): both
 * fail the same write() calls. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchmarks/plot.h"
#include "core/files.h"
#include "core/h5.h"
#include "core/log.h"

static char tmp[256];
static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/fl_test_files.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}
static void remove_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}
TestSuite(files, .init = make_tmp, .fini = remove_tmp);

static int entries(void)
{
    DIR *d = opendir(tmp);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Runs write() in a child whose files may not grow past limit bytes; the child exits 0
 * when the write failed with a message naming path and strerror(EFBIG), 1 when it did
 * not fail, 2 when the message is wrong; a crash (at exit, in a library's cleanup)
 * is a signal. */
static void expect_clean_failure(int (*write)(const char *path), const char *name, rlim_t limit)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        if (write(path) == 0) _exit(1);
        const char *e = fl_error();
        if (!strstr(e, path) || strchr(e, '\n')) _exit(2);
        if (strcmp(name, "plot.svg") != 0 && !strstr(e, strerror(EFBIG))) _exit(2);
        fprintf(stderr, "%s\n", e);
        exit(0); /* exit, not _exit: the libraries' exit handlers run */
    }
    int st;
    waitpid(pid, &st, 0);
    cr_expect(WIFEXITED(st), "%s: the writer died of signal %d", name, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exit %d (1: no failure, 2: a wrong message)", name,
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    cr_expect_eq(entries(), 0, "%s: a file was left behind", name);
}

static int write_h5(const char *path)
{
    enum { N = 1 << 18 };
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) v[i] = (float)((i * 2654435761u) % 1000003) / 7.0f; /* incompressible-ish */
    fl_h5w *w = fl_h5w_create(path);
    if (!w) return -1;
    if (fl_h5w_write(w, "x", FL_F32, 1, (int64_t[]){N}, v) || fl_h5w_attr_str(w, "/", "a", "b")) {
        fl_h5w_abort(w);
        free(v);
        return -1;
    }
    free(v);
    return fl_h5w_commit(w);
}

static int write_text(const char *path)
{
    char *s = malloc(1 << 16);
    memset(s, 'x', (1 << 16) - 1);
    s[(1 << 16) - 1] = 0;
    int rc = fl_write_text_atomic(path, s);
    free(s);
    return rc;
}

static int write_plot(const char *path)
{
    double lam[3] = {0, 1, 10}, kl[3] = {0.1, 0.2, 0.4}, fib[3] = {3, 2, 1};
    fl_plot_series s = {.label = "NF", .n = 3, .lambda = lam, .kl = kl, .fib = fib};
    fl_plot_hline l = {"nearest neighbour", 2.5};
    return fl_plot_fidelity_consistency(path, "a plot", NULL, &s, 1, &l, 1);
}

Test(files, an_hdf5_file_that_does_not_fit_fails_cleanly_naming_the_reason)
{
    expect_clean_failure(write_h5, "run.h5", 64 << 10);
    /* and without the limit it is written whole */
    char path[400];
    snprintf(path, sizeof path, "%s/run.h5", tmp);
    cr_assert_eq(write_h5(path), 0, "%s", fl_error());
    fl_h5r *r = fl_h5r_open(path);
    cr_assert_not_null(r, "%s", fl_error());
    int nd;
    int64_t dims[8];
    cr_expect_eq(fl_h5r_dims(r, "x", &nd, dims), 0);
    cr_expect_eq(dims[0], 1 << 18);
    fl_h5r_close(r);
}

Test(files, a_text_file_that_does_not_fit_fails_cleanly_naming_the_reason)
{
    expect_clean_failure(write_text, "index.json", 4 << 10);
}

Test(files, a_plot_that_does_not_fit_leaves_no_truncated_file)
{
    expect_clean_failure(write_plot, "plot.svg", 4 << 10);
    char path[400];
    snprintf(path, sizeof path, "%s/plot.svg", tmp);
    cr_expect_eq(write_plot(path), 0, "%s", fl_error());
    cr_expect_eq(access(path, F_OK), 0);
}

static void put(const char *name, long age_s)
{
    char p[500];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("partial", f);
    fclose(f);
    struct timeval tv[2] = {{time(NULL) - age_s, 0}, {time(NULL) - age_s, 0}};
    cr_assert_eq(utimes(p, tv), 0);
}

static bool exists(const char *name)
{
    char p[500];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    return access(p, F_OK) == 0;
}

/* Temporaries of writers that died (kill -9) are removed by the next run; a live
 * writer's, a fresh one (perhaps another machine's) and other files stay. */
Test(files, stale_temporaries_of_dead_writers_are_removed)
{
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0); /* its pid is now dead */
    char dead_h5[128], dead_svg[128], dead_fresh[128], alive[128];
    snprintf(dead_h5, sizeof dead_h5, "run.h5.tmp.%ld", (long)child);
    snprintf(dead_svg, sizeof dead_svg, "fidelity_consistency.svg.tmp.%ld.svg", (long)child);
    snprintf(dead_fresh, sizeof dead_fresh, "index.json.tmp.%ld", (long)child);
    snprintf(alive, sizeof alive, "model.h5.tmp.%ld", (long)getpid());
    long old = FL_STALE_TEMP_SECONDS + 60;
    put(dead_h5, old);
    put(dead_svg, old);
    put(dead_fresh, 5);
    put(alive, old);
    put("notes.tmp.txt", old);
    put("run.h5", old);
    fl_remove_stale_temps(tmp, "");
    cr_expect_not(exists(dead_h5), "a dead writer's HDF5 temporary stayed");
    cr_expect_not(exists(dead_svg), "a dead writer's plot temporary stayed");
    cr_expect(exists(dead_fresh), "a fresh temporary was removed");
    cr_expect(exists(alive), "a live writer's temporary was removed");
    cr_expect(exists("notes.tmp.txt") && exists("run.h5"), "a file that is not a temporary was removed");
    /* a prefix limits what is looked at */
    put(dead_h5, old);
    fl_remove_stale_temps(tmp, "colormnist-");
    cr_expect(exists(dead_h5));
}
