/* The BLAS kernel policy (`fiberlab info`, the built binary FL_BIN): OpenBLAS runs the
 * best kernel for this CPU even when the environment names a weaker one, FIBERLAB_CORETYPE
 * forces one; and the thread policy gives the cores to exactly one pool. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/blas.h"
#include "ctorch/ct.h"

/* The first line labelled `label` of `ENV fiberlab info`, without its label, in out. */
static void info_line(const char *env, const char *label, char *out, size_t n)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "env -u OPENBLAS_CORETYPE -u FIBERLAB_CORETYPE -u FIBERLAB_BLAS_REEXEC "
             "-u FIBERLAB_BLAS_REPLACED -u ATEN_CPU_CAPABILITY %s '%s' info",
             env, FL_BIN);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    char line[512];
    size_t len = strlen(label);
    out[0] = 0;
    while (fgets(line, sizeof line, p))
        if (!out[0] && strncmp(line, label, len) == 0 && line[len] == ' ') {
            const char *v = line + len;
            while (*v == ' ') v++;
            snprintf(out, n, "%s", v);
            out[strcspn(out, "\n")] = 0;
        }
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    cr_assert(out[0], "no %s line from %s", label, cmd);
}

static void kernel_line(const char *env, char *out, size_t n) { info_line(env, "kernel", out, n); }

static void need_openblas_and_avx2(void)
{
    if (!fl_blas_corename()) cr_skip_test("the BLAS is not OpenBLAS");
    const char *best = fl_blas_best_coretype();
    if (!best || strcmp(best, "Sandybridge") == 0) cr_skip_test("no AVX2 on this CPU");
}

Test(blas, weaker_inherited_coretype_is_replaced)
{
    need_openblas_and_avx2();
    char k[512];
    kernel_line("OPENBLAS_CORETYPE=Prescott", k, sizeof k);
    cr_expect(strncmp(k, "Prescott", 8) != 0, "still on the generic kernel: %s", k);
    cr_expect(strstr(k, "(best for this CPU)"), "%s", k);
    cr_expect(strstr(k, "OPENBLAS_CORETYPE=Prescott from the environment replaced"), "%s", k);
}

Test(blas, fallback_without_setting_runs_the_best)
{
    need_openblas_and_avx2();
    char k[512];
    kernel_line("", k, sizeof k);
    cr_expect(strstr(k, "(best for this CPU)"), "%s", k);
    cr_expect(!strstr(k, "replaced"), "%s", k);
}

Test(blas, inherited_best_coretype_is_kept)
{
    need_openblas_and_avx2();
    char env[128], k[512];
    snprintf(env, sizeof env, "OPENBLAS_CORETYPE=%s", fl_blas_best_coretype());
    kernel_line(env, k, sizeof k);
    cr_expect(strncmp(k, fl_blas_best_coretype(), strlen(fl_blas_best_coretype())) == 0, "%s", k);
    cr_expect(!strstr(k, "replaced"), "%s", k);
}

Test(blas, fiberlab_coretype_forces_a_kernel)
{
    need_openblas_and_avx2();
    char k[512];
    kernel_line("OPENBLAS_CORETYPE=Haswell FIBERLAB_CORETYPE=Prescott", k, sizeof k);
    cr_expect(strncmp(k, "Prescott (forced by FIBERLAB_CORETYPE=Prescott)", 47) == 0, "%s", k);
    cr_expect(strstr(k, "OPENBLAS_CORETYPE=Haswell from the environment replaced"), "%s", k);
}

Test(blas, threads_go_to_exactly_one_pool)
{
    int (*blas_threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    if (!blas_threads) cr_skip_test("the BLAS is not OpenBLAS");
    int n0;
    fl_workload w0;
    fl_threads_get(&n0, &w0);
    fl_threads_set(2, FL_WORK_CONV);
    cr_expect_eq(ct_get_num_threads(), 2);
    cr_expect_eq(blas_threads(), 1);
    fl_threads_set(2, FL_WORK_DENSE);
    cr_expect_eq(ct_get_num_threads(), 1);
    cr_expect_eq(blas_threads(), 2);
    int n;
    fl_workload w;
    fl_threads_get(&n, &w);
    cr_expect_eq(n, 2);
    cr_expect_eq(w, FL_WORK_DENSE);
    fl_threads_set(n0, w0);
}

Test(blas, unknown_forced_kernel_is_reported)
{
    need_openblas_and_avx2();
    char k[512];
    kernel_line("FIBERLAB_CORETYPE=NoSuchCore", k, sizeof k);
    cr_expect(strstr(k, "(FIBERLAB_CORETYPE=NoSuchCore: not a kernel this OpenBLAS can run here)"),
              "%s", k);
}

/* libtorch's AVX-512 kernels where the CPU has AVX-512, unless the environment names
 * other ones. */
Test(blas, aten_runs_avx512_kernels_where_the_cpu_has_them)
{
    char a[512];
    info_line("", "aten", a, sizeof a);
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (avx512)
        cr_expect(strstr(a, "avx512 kernels (set by fiberlab"), "%s", a);
    else
        cr_expect(strstr(a, "libtorch's choice"), "%s", a);
    info_line("ATEN_CPU_CAPABILITY=avx2", "aten", a, sizeof a);
    cr_expect(strstr(a, "named by ATEN_CPU_CAPABILITY from the environment"), "%s", a);
}
