/* ctorch on a CUDA device against the same computation on the CPU (float64): a small
 * conv + MLP model trained for a few Adam steps with clipping, its losses, gradient
 * norms and final weights; a parameter set moved to the device mid-training
 * (ct_params_to_device, the optimizer's moments following it); the double-VJP JVP;
 * activation checkpointing (ct_checkpoint); a generator drawing on the device; a CUDA
 * error turned into a ct message. Run by benchmarks/perf/cuda_check.sh on a machine
 * with a GPU and a CUDA libtorch (CI has none); prints one line per check and
 * "N passed, N failed". Exit 77: no CUDA device. `cuda_check cpu` runs every check with
 * the CPU in the device's place (the harness checking itself where there is no GPU). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ct.h"

static int passed, failed;

static void check(int ok, const char *what, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail && *detail ? ": " : "", detail ? detail : "");
    ok ? passed++ : failed++;
}

/* The model: y = W2 silu(W1 flatten(conv(x_img)) + b1); loss = mean(y²) + logsumexp
 * term, so that conv, linear, silu, reductions and their backward all run. */
typedef struct {
    ct_params *ps;
    ct_tensor *wc, *w1, *b1, *w2;
} model;

static void model_init(model *m, ct_gen *g)
{
    m->ps = ct_params_new();
    m->wc = ct_params_add(m->ps, "wc", ct_muls(ct_randn(CT_SHAPE(4, 3, 3, 3), CT_F64, g), 0.3));
    m->w1 = ct_params_add(m->ps, "w1", ct_muls(ct_randn(CT_SHAPE(16, 4 * 8 * 8), CT_F64, g), 0.05));
    m->b1 = ct_params_add(m->ps, "b1", ct_zeros(CT_SHAPE(16), CT_F64));
    m->w2 = ct_params_add(m->ps, "w2", ct_muls(ct_randn(CT_SHAPE(5, 16), CT_F64, g), 0.2));
}

static ct_tensor *model_loss(const model *m, const ct_tensor *x)
{
    ct_tensor *h = ct_flatten(ct_silu(ct_conv2d(x, m->wc, NULL, 1, 1, 1)), 1);   /* (B, 256) */
    ct_tensor *y = ct_linear(ct_silu(ct_linear(h, m->w1, m->b1)), m->w2, NULL);   /* (B, 5) */
    return ct_add(ct_mean(ct_square(y)), ct_muls(ct_mean(ct_logsumexp(y, 1, false)), 0.1));
}

typedef struct {
    double loss[6], norm[6];
    double w[5 * 16];
} trace;

/* Six clipped Adam steps on device d; with move, the set starts on the CPU and moves
 * to d after the third step. The data come from a CPU generator, so both devices see
 * the same numbers. */
static int train(ct_device d, bool move, trace *tr)
{
    ct_device cpu = {CT_CPU, 0};
    ct_set_default_device(move ? cpu : d);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(7);
    model m;
    model_init(&m, g);
    ct_tensor *x = ct_randn(CT_SHAPE(8, 3, 8, 8), CT_F64, g);
    ct_optim *o = ct_optim_new(CT_ADAMW);
    ct_adam_opts ao = ct_adam_defaults();
    ao.lr = 1e-2;
    ao.weight_decay = 1e-3;
    int rc = ct_optim_add_group(o, m.ps, ao) < 0;
    for (int step = 0; step < 6 && !rc; step++) {
        if (move && step == 3) {
            rc = ct_params_to_device(m.ps, d) != CT_OK;
            x = ct_to_device(x, d);
            ct_set_default_device(d);
        }
        ct_optim_zero_grad(o);
        ct_tensor *loss = model_loss(&m, x);
        rc = rc || !loss || ct_backward(loss, false) != CT_OK ||
             ct_optim_step_clipped(o, 0.5, &tr->norm[step]) != CT_OK;
        tr->loss[step] = ct_item(loss);
    }
    ct_tensor *w = rc ? NULL : ct_to_device(m.w2, cpu);
    rc = rc || !w || ct_to_data(w, tr->w, sizeof tr->w) != CT_OK;
    ct_optim_free(o);
    ct_params_free(m.ps);
    ct_gen_free(g);
    ct_scope_end(s);
    ct_set_default_device(cpu);
    if (rc) fprintf(stderr, "train on %s: %s\n", d.kind == CT_CUDA ? "cuda" : "cpu", ct_last_error());
    return rc;
}

static double max_diff(const double *a, const double *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static void compare(const char *what, const trace *a, const trace *b)
{
    char buf[160];
    double dl = max_diff(a->loss, b->loss, 6), dn = max_diff(a->norm, b->norm, 6),
           dw = max_diff(a->w, b->w, 5 * 16);
    snprintf(buf, sizeof buf, "max |Δ| losses %.2e, gradient norms %.2e, weights %.2e", dl, dn, dw);
    check(dl < 1e-10 && dn < 1e-10 && dw < 1e-10, what, buf);
}

/* fn of ct_checkpoint: tanh(x W) */
static ct_tensor *block(const void *ctx, const ct_tensor *const *in, int n)
{
    (void)ctx;
    (void)n;
    return ct_tanh(ct_matmul(in[0], in[1]));
}

/* d/dW of sum(block(block(x)))², with and without checkpointing, on device d. */
static int checkpoint_grads(ct_device d, bool ckpt, double out[64])
{
    ct_device cpu = {CT_CPU, 0};
    ct_set_default_device(d);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(3);
    ct_tensor *x = ct_randn(CT_SHAPE(4, 8), CT_F64, g);
    ct_tensor *w = ct_muls(ct_randn(CT_SHAPE(8, 8), CT_F64, g), 0.5);
    ct_set_requires_grad(w, true);
    ct_tensor *h = x;
    for (int i = 0; i < 2; i++) {
        const ct_tensor *in[2] = {h, w};
        h = ckpt ? ct_checkpoint(block, NULL, 0, in, 2) : block(NULL, in, 2);
    }
    ct_tensor *loss = ct_sum(ct_square(h));
    int rc = !loss || ct_backward(loss, false) != CT_OK;
    ct_tensor *gw = rc ? NULL : ct_to_device(ct_grad_of(w), cpu);
    rc = rc || !gw || ct_to_data(gw, out, 64 * sizeof *out) != CT_OK;
    ct_gen_free(g);
    ct_scope_end(s);
    ct_set_default_device(cpu);
    if (rc) fprintf(stderr, "checkpoint on %s: %s\n", d.kind == CT_CUDA ? "cuda" : "cpu", ct_last_error());
    return rc;
}

/* (∂y/∂x) v by the double VJP for y = softplus(x A) on device d. */
static int jvp(ct_device d, double out[12])
{
    ct_device cpu = {CT_CPU, 0};
    ct_set_default_device(d);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new(5);
    ct_tensor *x = ct_randn(CT_SHAPE(3, 4), CT_F64, g), *a = ct_randn(CT_SHAPE(4, 4), CT_F64, g);
    ct_tensor *v = ct_randn(CT_SHAPE(3, 4), CT_F64, g);
    ct_set_requires_grad(x, true);
    ct_tensor *y = ct_softplus(ct_matmul(x, a));
    ct_tensor *j = ct_to_device(ct_jvp_double_vjp(y, x, v, false), cpu);
    int rc = !j || ct_to_data(j, out, 12 * sizeof *out) != CT_OK;
    ct_gen_free(g);
    ct_scope_end(s);
    ct_set_default_device(cpu);
    return rc;
}

/* Seconds per float32 n×n matrix product on device d (the median of 5 after 2 warm-ups). */
static double matmul_seconds(ct_device d, int n)
{
    ct_device cpu = {CT_CPU, 0};
    ct_set_default_device(d);
    ct_scope *s = ct_scope_begin();
    ct_gen *g = ct_gen_new_on(1, d);
    ct_tensor *a = ct_randn(CT_SHAPE(n, n), CT_F32, g), *b = ct_randn(CT_SHAPE(n, n), CT_F32, g);
    double t[7];
    for (int i = 0; i < 7; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ct_tensor *c = ct_mm(a, b);
        ct_item(ct_sum(c));   /* waits for the device */
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t[i] = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        ct_free(c);
    }
    ct_gen_free(g);
    ct_scope_end(s);
    ct_set_default_device(cpu);
    for (int i = 2; i < 7; i++)   /* sort the 5 timed ones */
        for (int j = i + 1; j < 7; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    return t[4];
}

int main(int argc, char **argv)
{
    const char *dev = argc > 1 ? argv[1] : "cuda:0";
    printf("libtorch %s; CUDA devices: %d; checking %s against cpu\n", ct_torch_version(),
           ct_cuda_device_count(), dev);
    ct_device cpu = {CT_CPU, 0}, gpu;
    if (ct_device_parse(dev, &gpu) != CT_OK) return fprintf(stderr, "%s\n", ct_last_error()), 2;
    if (gpu.kind == CT_CUDA && !ct_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    const int on_gpu = gpu.kind == CT_CUDA;

    trace tc = {0}, tg = {0}, tm = {0};
    int e1 = train(cpu, false, &tc), e2 = train(gpu, false, &tg), e3 = train(gpu, true, &tm);
    check(!e1 && !e2 && !e3, "training steps run on cpu, on the device, and moved cpu -> device", "");
    if (!e1 && !e2) compare("six clipped AdamW steps, the device against cpu", &tg, &tc);
    if (!e1 && !e3) compare("the same with the set moved to the device after step 3", &tm, &tc);
    {
        char buf[96];
        snprintf(buf, sizeof buf, "loss %.6f -> %.6f", tg.loss[0], tg.loss[5]);
        check(!e2 && tg.loss[5] < tg.loss[0], "the loss falls on the device", buf);
    }

    double gc[64], gg[64], gk[64];
    int c1 = checkpoint_grads(cpu, false, gc), c2 = checkpoint_grads(gpu, false, gg),
        c3 = checkpoint_grads(gpu, true, gk);
    if (!c1 && !c2 && !c3) {
        char buf[96];
        snprintf(buf, sizeof buf, "max |Δ| %.2e (device), %.2e (device, checkpointed)", max_diff(gg, gc, 64),
                 max_diff(gk, gc, 64));
        check(max_diff(gg, gc, 64) < 1e-12 && max_diff(gk, gc, 64) < 1e-12,
              "ct_checkpoint's gradient on the device equals the plain one on cpu", buf);
    } else {
        check(0, "ct_checkpoint on the device", ct_last_error());
    }

    double jc[12], jg[12];
    if (!jvp(cpu, jc) && !jvp(gpu, jg)) {
        char buf[64];
        snprintf(buf, sizeof buf, "max |Δ| %.2e", max_diff(jg, jc, 12));
        check(max_diff(jg, jc, 12) < 1e-12, "the double-VJP JVP on the device equals cpu's", buf);
    } else {
        check(0, "the double-VJP JVP on the device", ct_last_error());
    }

    {   /* a generator on the device: standard normal draws, made there */
        ct_scope *s = ct_scope_begin();
        ct_gen *g = ct_gen_new_on(11, gpu);
        ct_set_default_device(gpu);
        ct_tensor *z = ct_randn(CT_SHAPE(1 << 20), CT_F64, g);
        ct_device where = ct_device_of(z);
        double mean = ct_item(ct_mean(z)), var = ct_item(ct_mean(ct_square(z)));
        ct_set_default_device(cpu);
        char buf[96];
        snprintf(buf, sizeof buf, "on %s, mean %.4f, E[z²] %.4f over 2^20 draws",
                 where.kind == CT_CUDA ? "cuda" : "cpu", mean, var);
        check(g && ct_gen_device(g).kind == gpu.kind && where.kind == gpu.kind && fabs(mean) < 0.01 &&
                  fabs(var - 1) < 0.01,
              "ct_gen_new_on(device) draws on the device", buf);
        ct_gen_free(g);
        ct_scope_end(s);
    }

    {   /* a CUDA-side error is a ct message, not an exception crossing into C */
        ct_scope *s = ct_scope_begin();
        ct_set_default_device(gpu);
        ct_tensor *a = ct_zeros(CT_SHAPE(3, 4), CT_F32), *b = ct_zeros(CT_SHAPE(5, 6), CT_F32);
        ct_tensor *c = ct_mm(a, b);
        ct_set_default_device(cpu);
        check(c == NULL && strlen(ct_last_error()) > 0, "a shape error on the device returns NULL and a message",
              ct_last_error());
        ct_clear_error();
        if (on_gpu) {
            ct_device far;
            ct_device_parse("cuda:64", &far);
            ct_tensor *t = ct_to_device(a, far);
            check(t == NULL && strstr(ct_last_error(), "cuda:64") != NULL, "a device past the last GPU is refused",
                  ct_last_error());
            ct_clear_error();
        }
        ct_scope_end(s);
    }

    {   /* throughput, for the record: float32 matrix products */
        int n = on_gpu ? 8192 : 1024;
        double tg_ = matmul_seconds(gpu, n), tc_ = matmul_seconds(cpu, 1024);
        printf("info float32 matmul: %s %dx%d %.1f GFLOP/s; cpu 1024x1024 %.1f GFLOP/s\n", dev, n, n,
               2.0 * n * n * n / tg_ / 1e9, 2.0 * 1024 * 1024 * 1024 / tc_ / 1e9);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
