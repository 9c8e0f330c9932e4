/* bench_ctorch: what ctorch costs over calling libtorch directly, and what the BLAS
 * kernel fiberlab picks (core/blas.c) gains over OpenBLAS's own choice.
 *
 *   bench_ctorch [--reps N]
 *
 * 1. a 1024x1024 float32 matmul through ct_matmul and through at::matmul (interleaved,
 *    medians; goal: < 2 % overhead);
 * 2. a one-element add: ct_add inside a scope (handle made, registered, freed at the
 *    scope's end) against at::add (goal: < 5 µs more per op);
 * 3. GFLOP/s of that matmul with the kernel fiberlab picks, and in a child process of
 *    this program with OpenBLAS's default kernel (FIBERLAB_BLAS_REEXEC=1 and
 *    OPENBLAS_CORETYPE unset, so nothing re-executes).
 * Results are checked before anything is timed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/blas.h"
#include "ctorch/ct.h"

/* bench_ctorch_aten.cpp */
void bench_aten_setup(const float *a, const float *b, int64_t n, float x, float y);
void bench_aten_teardown(void);
void bench_aten_matmul(void);
void bench_aten_matmul_into(float *out);
void bench_aten_add(int k);

enum { N = 1024, ADD_BATCH = 1000 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_ctorch: %s: %s\n", what, ct_last_error());
    exit(1);
}

/* The operands, from a fixed seed: (N, N) a and b. */
static void make_operands(ct_tensor **a, ct_tensor **b)
{
    ct_gen *g = ct_gen_new(2024);
    *a = ct_randn(CT_SHAPE(N, N), CT_F32, g);
    *b = ct_randn(CT_SHAPE(N, N), CT_F32, g);
    ct_gen_free(g);
    if (!*a || !*b) die("operands");
}

/* Checks a few entries of a b against sums in double, and that ct_matmul and
 * at::matmul agree exactly. */
static void check_matmul(const float *a, const float *b, const ct_tensor *c_ct)
{
    float *c = malloc(sizeof(float) * N * N), *c_at = malloc(sizeof(float) * N * N);
    if (ct_to_data(c_ct, c, sizeof(float) * N * N) != CT_OK) die("ct_to_data");
    bench_aten_matmul_into(c_at);
    if (memcmp(c, c_at, sizeof(float) * N * N) != 0) {
        fprintf(stderr, "bench_ctorch: ct_matmul and at::matmul differ\n");
        exit(1);
    }
    for (int k = 0; k < 16; k++) {
        int i = (k * 397) % N, j = (k * 733 + 11) % N;
        double s = 0;
        for (int q = 0; q < N; q++) s += (double)a[i * N + q] * b[q * N + j];
        if (fabs(s - c[i * N + j]) > 1e-3 * (1 + fabs(s))) {
            fprintf(stderr, "bench_ctorch: matmul wrong at (%d, %d): %g vs %g\n", i, j,
                    c[i * N + j], s);
            exit(1);
        }
    }
    free(c);
    free(c_at);
}

/* Median seconds of one ct_matmul (result freed), over reps. */
static double time_ct_matmul(const ct_tensor *a, const ct_tensor *b, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        ct_free(ct_matmul(a, b));
        t[r] = now() - t0;
    }
    double m = median(t, reps);
    free(t);
    return m;
}

/* Child mode: the GFLOP/s of OpenBLAS's own kernel, printed as "<kernel> <gflops>". */
static int blas_child(int reps)
{
    ct_tensor *a, *b;
    make_operands(&a, &b);
    ct_free(ct_matmul(a, b));
    double t = time_ct_matmul(a, b, reps);
    const char *core = fl_blas_corename();
    printf("%s %.3f\n", core ? core : "not-OpenBLAS", 2.0 * N * N * N / t * 1e-9);
    ct_free(a);
    ct_free(b);
    return 0;
}

/* Runs this program again as the BLAS child with OPENBLAS_CORETYPE=coretype, or with
 * OpenBLAS left to itself when coretype is NULL. */
static int run_kernel_child(const char *coretype, int reps, char *kernel, size_t kn,
                            double *gflops)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        if (coretype)
            setenv("OPENBLAS_CORETYPE", coretype, 1);
        else
            unsetenv("OPENBLAS_CORETYPE");
        setenv("FIBERLAB_BLAS_REEXEC", "1", 1);
        char reps_s[32];
        snprintf(reps_s, sizeof reps_s, "%d", reps);
        char *args[] = {"bench_ctorch", "--blas-child", reps_s, NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fd[1]);
    char line[256] = "";
    FILE *f = fdopen(fd[0], "r");
    if (!f || !fgets(line, sizeof line, f)) line[0] = '\0';
    if (f) fclose(f);
    int status;
    waitpid(pid, &status, 0);
    char fmt[32];
    snprintf(fmt, sizeof fmt, "%%%zus %%lf", kn - 1);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || sscanf(line, fmt, kernel, gflops) != 2)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    fl_runtime_init(argv);
    int ncores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    ct_set_num_threads(ncores > 0 ? ncores : 1);
    if (argc == 3 && strcmp(argv[1], "--blas-child") == 0) return blas_child(atoi(argv[2]));
    int reps = 41;
    if (argc == 3 && strcmp(argv[1], "--reps") == 0) reps = atoi(argv[2]);
    if (reps < 3) reps = 3;

    printf("bench_ctorch: libtorch %s, %d threads, BLAS %s\n\n", ct_torch_version(),
           ct_get_num_threads(), fl_blas_library());

    /* ---- 1. matmul through ctorch and directly ------------------------------------ */
    ct_tensor *a, *b;
    make_operands(&a, &b);
    float *ha = malloc(sizeof(float) * N * N), *hb = malloc(sizeof(float) * N * N);
    ct_to_data(a, ha, sizeof(float) * N * N);
    ct_to_data(b, hb, sizeof(float) * N * N);
    bench_aten_setup(ha, hb, N, 1.5f, 2.25f);
    ct_tensor *c = ct_matmul(a, b);
    if (!c) die("ct_matmul");
    check_matmul(ha, hb, c);
    ct_free(c);
    for (int w = 0; w < 3; w++) {  /* warm up both paths */
        ct_free(ct_matmul(a, b));
        bench_aten_matmul();
    }
    double *t_ct = malloc(sizeof(double) * (size_t)reps), *t_at = malloc(sizeof(double) * (size_t)reps),
           *ratio = malloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        /* alternate which goes first, so neither always follows the other */
        for (int k = 0; k < 2; k++) {
            double t0 = now();
            if ((r + k) % 2 == 0)
                ct_free(ct_matmul(a, b));
            else
                bench_aten_matmul();
            double dt = now() - t0;
            if ((r + k) % 2 == 0)
                t_ct[r] = dt;
            else
                t_at[r] = dt;
        }
        ratio[r] = t_ct[r] / t_at[r];
    }
    double m_ct = median(t_ct, reps), m_at = median(t_at, reps), m_ratio = median(ratio, reps);
    printf("1024x1024 float32 matmul, %d interleaved repetitions (medians)\n", reps);
    printf("  %-34s %10.3f ms\n", "ct_matmul (ctorch)", 1e3 * m_ct);
    printf("  %-34s %10.3f ms\n", "at::matmul (libtorch C++)", 1e3 * m_at);
    printf("  %-34s %+10.2f %%   (median of paired ratios; goal < 2 %%)\n\n", "overhead",
           100 * (m_ratio - 1));

    /* ---- 2. a tiny op ---------------------------------------------------------------- */
    float one[1] = {1.5f}, two[1] = {2.25f};
    ct_tensor *x = ct_from_data(one, CT_SHAPE(1), CT_F32), *y = ct_from_data(two, CT_SHAPE(1), CT_F32);
    ct_scope *s = ct_scope_begin();
    ct_tensor *z = ct_add(x, y);
    if (!z || ct_item(z) != 3.75) die("ct_add");
    ct_scope_end(s);
    int batches = 5 * reps;
    double *u_ct = malloc(sizeof(double) * (size_t)batches), *u_at = malloc(sizeof(double) * (size_t)batches);
    for (int r = 0; r < batches; r++) {
        double t0 = now();
        s = ct_scope_begin();
        for (int i = 0; i < ADD_BATCH; i++) ct_add(x, y);
        ct_scope_end(s);
        double t1 = now();
        bench_aten_add(ADD_BATCH);
        double t2 = now();
        u_ct[r] = (t1 - t0) / ADD_BATCH;
        u_at[r] = (t2 - t1) / ADD_BATCH;
    }
    double a_ct = median(u_ct, batches), a_at = median(u_at, batches);
    printf("one-element float32 add, %d batches of %d (medians per op)\n", batches, ADD_BATCH);
    printf("  %-34s %10.3f µs\n", "ct_add in a scope (ctorch)", 1e6 * a_ct);
    printf("  %-34s %10.3f µs\n", "at::add (libtorch C++)", 1e6 * a_at);
    printf("  %-34s %+10.3f µs   (goal < 5 µs)\n\n", "overhead per op", 1e6 * (a_ct - a_at));
    ct_free(x);
    ct_free(y);
    bench_aten_teardown();

    /* ---- 3. BLAS kernels ------------------------------------------------------------- */
    const char *picked = fl_blas_corename();
    double g_picked = 2.0 * N * N * N / m_ct * 1e-9;
    char def_kernel[64] = "?";
    double g_default = NAN;
    fflush(stdout);
    int rc = run_kernel_child(NULL, reps / 2 + 1, def_kernel, sizeof def_kernel, &g_default);
    /* an OPENBLAS_CORETYPE from the environment that fiberlab replaced, measured too */
    const char *inherited = fl_blas_replaced_coretype();
    char env_kernel[64] = "?";
    double g_env = NAN;
    int rc_env = inherited ? run_kernel_child(inherited, reps / 2 + 1, env_kernel,
                                              sizeof env_kernel, &g_env)
                           : -1;
    printf("1024x1024 float32 matmul by BLAS kernel (median GFLOP/s)\n");
    printf("  %-34s %10s\n", "kernel", "GFLOP/s");
    printf("  %-20s %-13s %10.1f\n", picked ? picked : "not OpenBLAS", "(fiberlab)", g_picked);
    if (rc == 0) {
        printf("  %-20s %-13s %10.1f\n", def_kernel, "(default)", g_default);
        printf("  %-34s %9.2fx\n", "speed-up over the default", g_picked / g_default);
    } else {
        printf("  %-34s %10s\n", "(default kernel: child failed)", "-");
    }
    if (rc_env == 0) {
        printf("  %-20s %-13s %10.1f\n", env_kernel, "(environment)", g_env);
        printf("  %-34s %9.2fx\n", "speed-up over the environment's", g_picked / g_env);
    }
    free(t_ct);
    free(t_at);
    free(ratio);
    free(u_ct);
    free(u_at);
    free(ha);
    free(hb);
    ct_free(a);
    ct_free(b);
    return 0;
}
