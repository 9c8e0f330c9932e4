/* `fiberlab data` end to end (the built binary, FL_BIN): bad input gives one line
 * "fiberlab data: FILE: what", a non-zero exit and no output file; good input builds
 * and writes a PNG. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_fixture.h"

TestSuite(data_cli, .init = make_tmp, .fini = remove_tmp);

static char err[4096];

/* Runs fiberlab with args in <tmp> (FIBERLAB_CACHE=<tmp>/cache); the exit code, and
 * stderr in err. */
static int run(const char *args)
{
    char cmd[2048], ep[400];
    snprintf(ep, sizeof ep, "%s/stderr.txt", tmp);
    snprintf(cmd, sizeof cmd, "cd '%s' && FIBERLAB_CACHE='%s/cache' '%s' %s >/dev/null 2>'%s'", tmp,
             tmp, FL_BIN, args, ep);
    int st = system(cmd);
    FILE *f = fopen(ep, "r");
    size_t n = f ? fread(err, 1, sizeof err - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(ep);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Files below <tmp>/cache/datasets and any *.png in <tmp>. */
static int outputs(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test -z \"$(find '%s/cache' '%s' -maxdepth 2 \\( -name '*.h5*' -o -name '*.png*' \\) 2>/dev/null)\"",
             tmp, tmp);
    return system(cmd) != 0;
}

static void expect_failure(const char *args, const char *file_part, const char *what)
{
    int rc = run(args);
    cr_expect_neq(rc, 0, "'%s' exited 0", args);
    cr_expect_eq(lines(err), 1, "'%s': stderr is not one line:\n%s", args, err);
    cr_expect(strncmp(err, "fiberlab data: ", 15) == 0, "'%s': stderr: %s", args, err);
    cr_expect(strstr(err, file_part) != NULL, "'%s': stderr does not name %s: %s", args, file_part, err);
    cr_expect(strstr(err, what) != NULL, "'%s': stderr does not say %s: %s", args, what, err);
    cr_expect_not(outputs(), "'%s' left an output file", args);
}

Test(data_cli, bad_inputs_fail_cleanly)
{
    put_source(20, 5, 1);
    char args[1024], p[400];
    /* images and labels of different counts */
    snprintf(p, sizeof p, "%s/src/train-labels-idx1-ubyte", tmp);
    write_idx(p, 1, (int[]){19}, (const uint8_t *)"01234567890123456789", 19);
    snprintf(args, sizeof args, "data grid --out g.png data.source=idx data.path='%s/src'", tmp);
    expect_failure(args, "train-labels-idx1-ubyte", "19 labels for 20 images");
    /* wrong magic */
    write_idx(p, 3, (int[]){20, 1, 1}, (const uint8_t *)"01234567890123456789", 20);
    snprintf(args, sizeof args, "data build data.source=idx data.path='%s/src'", tmp);
    expect_failure(args, "train-labels-idx1-ubyte", "wrong IDX magic");
    /* a missing file */
    unlink(p);
    expect_failure(args, "train-labels-idx1-ubyte", "missing file");
    /* malformed JSON in an npm folder */
    snprintf(p, sizeof p, "%s/npm", tmp);
    mkdir(p, 0777);
    for (int d = 0; d < 10; d++) {
        snprintf(p, sizeof p, "%s/npm/%d.json", tmp, d);
        FILE *f = fopen(p, "w");
        fputs("{\"data\": [0", f);
        for (int i = 1; i < 784; i++) fputs(",0", f);
        if (d != 4) fputs("]}", f);   /* 4.json is cut short */
        fclose(f);
    }
    snprintf(args, sizeof args, "data build data.path='%s/npm'", tmp);
    expect_failure(args, "4.json", "truncated JSON");
    /* unknown names */
    expect_failure("data build data.source=kmnist", "data.source", "kmnist");
    expect_failure("data build data.variant=sepia", "data.variant", "sepia");
}

Test(data_cli, build_inspect_and_grid_on_a_small_source)
{
    put_source(40, 10, 2);
    char args[1024];
    snprintf(args, sizeof args, "data build data.source=idx data.path='%s/src' seed=3", tmp);
    cr_assert_eq(run(args), 0, "%s", err);
    snprintf(args, sizeof args, "data inspect data.source=idx data.path='%s/src' seed=3", tmp);
    cr_assert_eq(run(args), 0, "%s", err);
    snprintf(args, sizeof args, "data grid --out g.png --rows 2 --cols 3 data.source=idx data.path='%s/src' seed=3", tmp);
    cr_assert_eq(run(args), 0, "%s", err);
    char p[400];
    snprintf(p, sizeof p, "%s/g.png", tmp);
    cr_expect_eq(access(p, R_OK), 0, "no PNG written");
    /* the PNG cannot be written: exit non-zero, no file */
    snprintf(args, sizeof args, "data grid --out nodir/g.png data.source=idx data.path='%s/src' seed=3", tmp);
    cr_expect_neq(run(args), 0);
    cr_expect(strstr(err, "nodir/g.png"), "stderr: %s", err);
    cr_expect_eq(run("data --help"), 0);
    cr_expect_neq(run("data frobnicate"), 0);
}
