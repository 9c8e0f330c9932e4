/* Parameter sets beyond training: the EMA update follows its formula and refuses sets
 * that differ, and a set moved to a device (ct_params_to_device) keeps its optimizer
 * (whose moments follow it) and its generators working. Without a GPU the CUDA tests
 * report a skip; a CUDA device that is not there is an error, not a crash. */
#include "test_ctorch_util.h"

/* ---- EMA ------------------------------------------------------------------------- */

/* w (3,) and b (2,) parameters and a step counter buffer n (1,), F64, set to v. */
static ct_params *ema_set(const double w[3], const double b[2], double n)
{
    ct_params *p = ct_params_new();
    ct_params_add(p, "w", ct_from_data(w, CT_SHAPE(3), CT_F64));
    ct_params_add(p, "b", ct_from_data(b, CT_SHAPE(2), CT_F64));
    ct_params_add_buffer(p, "n", ct_from_data(&n, CT_SHAPE(1), CT_F64));
    cr_assert_eq(ct_params_count(p), 3, "%s", ct_last_error());
    return p;
}

static void expect_values(const ct_params *p, const char *name, const double *want, int n)
{
    double got[8];
    cr_assert_eq(ct_to_data(ct_params_find(p, name), got, n * sizeof(double)), CT_OK, "%s",
                 ct_last_error());
    for (int i = 0; i < n; i++)
        cr_expect(fabs(got[i] - want[i]) <= 1e-15 * (1 + fabs(want[i])),
                  "%s[%d] = %.17g, expected %.17g", name, i, got[i], want[i]);
}

CT_TEST(ema, update_follows_the_formula_over_several_steps)
{
    double ew[3] = {1, -2, 0.5}, eb[2] = {3, 4};
    ct_params *ema = ema_set(ew, eb, 0);
    const double decay = 0.9;
    for (int k = 1; k <= 4; k++) {
        /* the model moves on; the average follows it by hand */
        double sw[3] = {0.1 * k, -0.3 * k * k, 2.0 - k}, sb[2] = {1.0 / k, -k};
        ct_params *src = ema_set(sw, sb, (double)k);
        cr_assert_eq(ct_params_ema_update(ema, src, decay), CT_OK, "%s", ct_last_error());
        for (int i = 0; i < 3; i++) ew[i] = decay * ew[i] + (1 - decay) * sw[i];
        for (int i = 0; i < 2; i++) eb[i] = decay * eb[i] + (1 - decay) * sb[i];
        double n = k;  /* buffers are copied, not averaged */
        expect_values(ema, "w", ew, 3);
        expect_values(ema, "b", eb, 2);
        expect_values(ema, "n", &n, 1);
        ct_params_free(src);
    }
    /* in place, without a graph: the handles are the set's leaves still */
    ct_tensor *w = ct_params_find(ema, "w");
    cr_expect(ct_requires_grad(w));
    ct_scope *s = ct_scope_begin();
    cr_assert_eq(ct_backward(ct_sum(ct_square(w)), false), CT_OK, "%s", ct_last_error());
    ct_tensor *gw = ct_grad_of(w);
    cr_assert_not_null(gw, "the average's parameters are still leaves");
    ct_expect_close("d sum(w^2) / dw", gw, ct_muls(w, 2.0), 1e-15);
    ct_scope_end(s);
    ct_params_free(ema);
}

CT_TEST(ema, decay_one_keeps_and_decay_zero_copies)
{
    double ew[3] = {1, 2, 3}, eb[2] = {4, 5}, sw[3] = {-1, -2, -3}, sb[2] = {-4, -5};
    ct_params *ema = ema_set(ew, eb, 0), *src = ema_set(sw, sb, 9);
    cr_assert_eq(ct_params_ema_update(ema, src, 1.0), CT_OK, "%s", ct_last_error());
    expect_values(ema, "w", ew, 3);
    cr_assert_eq(ct_params_ema_update(ema, src, 0.0), CT_OK, "%s", ct_last_error());
    expect_values(ema, "w", sw, 3);
    expect_values(ema, "b", sb, 2);
    ct_params_free(ema);
    ct_params_free(src);
}

CT_TEST(ema, sets_that_differ_are_an_error_naming_the_entry_and_change_nothing)
{
    double ew[3] = {1, 2, 3}, eb[2] = {4, 5}, sw[3] = {7, 8, 9}, sb[2] = {6, 6};
    ct_params *ema = ema_set(ew, eb, 0);

    ct_params *other_shape = ct_params_new();          /* b of (3,) */
    ct_params_add(other_shape, "w", ct_from_data(sw, CT_SHAPE(3), CT_F64));
    ct_params_add(other_shape, "b", ct_from_data(sw, CT_SHAPE(3), CT_F64));
    ct_params_add_buffer(other_shape, "n", ct_zeros(CT_SHAPE(1), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, other_shape, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("ct_params_ema_update");
    ct_expect_error_mentions("'b'");

    ct_params *missing = ct_params_new();              /* no n */
    ct_params_add(missing, "w", ct_from_data(sw, CT_SHAPE(3), CT_F64));
    ct_params_add(missing, "b", ct_from_data(sb, CT_SHAPE(2), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, missing, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("'n'");

    ct_params *extra = ema_set(sw, sb, 1);             /* one more entry */
    ct_params_add(extra, "v", ct_zeros(CT_SHAPE(2), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, extra, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("'v'");

    ct_params *as_f32 = ct_params_new();               /* w of another dtype */
    ct_params_add(as_f32, "w", ct_zeros(CT_SHAPE(3), CT_F32));
    ct_params_add(as_f32, "b", ct_from_data(sb, CT_SHAPE(2), CT_F64));
    ct_params_add_buffer(as_f32, "n", ct_zeros(CT_SHAPE(1), CT_F64));
    cr_expect_eq(ct_params_ema_update(ema, as_f32, 0.5), CT_ERR_ARG);
    ct_expect_error_mentions("'w'");
    ct_expect_error_mentions("f32");

    ct_params *good = ema_set(sw, sb, 1);
    cr_expect_eq(ct_params_ema_update(ema, good, 1.5), CT_ERR_ARG);
    ct_expect_error_mentions("decay");
    cr_expect_eq(ct_params_ema_update(ema, good, NAN), CT_ERR_ARG);
    double zero = 0;
    expect_values(ema, "w", ew, 3);                    /* nothing changed */
    expect_values(ema, "b", eb, 2);
    expect_values(ema, "n", &zero, 1);
    ct_params_free(other_shape);
    ct_params_free(missing);
    ct_params_free(extra);
    ct_params_free(as_f32);
    ct_params_free(good);
    ct_params_free(ema);
}

/* ---- devices: a set, its optimizer and generators ------------------------------------ */

/* A linear regression trained by AdamW: w (3, 4), b (3,), a buffer, all F64, the same
 * initial values every time; the data of step k come from a generator seeded by k. */
typedef struct {
    ct_params *p;
    ct_optim *o;
} trainee;

static trainee trainee_new(void)
{
    ct_gen *g = ct_gen_new(41);
    trainee t = {ct_params_new(), ct_optim_new(CT_ADAMW)};
    ct_params_add(t.p, "w", ct_randn(CT_SHAPE(3, 4), CT_F64, g));
    ct_params_add(t.p, "b", ct_zeros(CT_SHAPE(3), CT_F64));
    ct_params_add_buffer(t.p, "scale", ct_full(CT_SHAPE(1), 0.5, CT_F64));
    ct_adam_opts o = ct_adam_defaults();
    o.lr = 0.05;
    o.weight_decay = 0.01;
    cr_assert_eq(ct_optim_add_group(t.o, t.p, o), 0, "%s", ct_last_error());
    ct_gen_free(g);
    return t;
}

/* Backward of step k on wherever the set now is; the step itself when `step`. */
static void trainee_backward(trainee *t, int k)
{
    ct_scope *s = ct_scope_begin();
    ct_tensor *w = ct_params_find(t->p, "w"), *b = ct_params_find(t->p, "b");
    ct_device d = ct_device_of(w);
    ct_gen *g = ct_gen_new(1000 + (uint64_t)k);
    ct_tensor *x = ct_to_device(ct_randn(CT_SHAPE(8, 4), CT_F64, g), d);     /* (8, 4) */
    ct_tensor *y = ct_to_device(ct_randn(CT_SHAPE(8, 3), CT_F64, g), d);     /* (8, 3) */
    ct_tensor *pred = ct_mul(ct_linear(x, w, b), ct_params_find(t->p, "scale"));
    ct_optim_zero_grad(t->o);
    cr_assert_eq(ct_backward(ct_mse(pred, y), false), CT_OK, "step %d: %s", k, ct_last_error());
    ct_gen_free(g);
    ct_scope_end(s);
}

static void trainee_steps(trainee *t, int from, int to)
{
    for (int k = from; k < to; k++) {
        trainee_backward(t, k);
        cr_assert_eq(ct_optim_step(t->o), CT_OK, "step %d: %s", k, ct_last_error());
    }
}

static void trainee_free(trainee *t)
{
    ct_optim_free(t->o);
    ct_params_free(t->p);
}

static ct_device cpu(void) { return (ct_device){CT_CPU, 0}; }

CT_TEST(device, moving_to_the_cpu_is_a_no_op_that_keeps_training_identical)
{
    trainee a = trainee_new(), b = trainee_new();
    trainee_steps(&a, 0, 6);
    trainee_steps(&b, 0, 3);
    ct_tensor *w = ct_params_find(b.p, "w");
    /* between backward and step: the gradients must stay */
    trainee_backward(&b, 3);
    cr_assert_eq(ct_params_to_device(b.p, cpu()), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_optim_to_device(b.o, cpu()), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_params_find(b.p, "w"), w, "the handle stays the same");
    ct_tensor *gw = ct_grad_of(w);
    cr_expect_not_null(gw, "the gradient stays");
    ct_free(gw);
    cr_assert_eq(ct_optim_step(b.o), CT_OK, "%s", ct_last_error());
    trainee_steps(&b, 4, 6);
    for (int i = 0; i < ct_params_count(a.p); i++)
        cr_expect(ct_bits_equal(ct_params_at(a.p, i), ct_params_at(b.p, i)),
                  "'%s' differs from uninterrupted training", ct_params_name(a.p, i));
    trainee_free(&a);
    trainee_free(&b);
}

/* cuda:0 without CUDA; with CUDA, the first index past the last GPU. */
static ct_device missing_cuda(char *name, size_t n)
{
    ct_device d = {CT_CUDA, ct_cuda_available() ? ct_cuda_device_count() : 0};
    ct_device_name(d, name, n);
    return d;
}

CT_TEST(device, a_cuda_device_that_is_not_there_is_an_error_and_changes_nothing)
{
    char name[32];
    ct_device d = missing_cuda(name, sizeof name);
    trainee t = trainee_new();
    trainee_steps(&t, 0, 2);
    ct_tensor *w = ct_params_find(t.p, "w");
    ct_tensor *before = ct_clone(w);

    cr_expect_eq(ct_params_to_device(t.p, d), CT_ERR_ARG);
    ct_expect_error_mentions("ct_params_to_device");
    ct_expect_error_mentions(name);
    cr_log_info("%s", ct_last_error());
    cr_expect_eq(ct_optim_to_device(t.o, d), CT_ERR_ARG);
    ct_expect_error_mentions("ct_optim_to_device");
    ct_expect_error_mentions(name);
    cr_expect_null(ct_to_device(w, d));
    ct_expect_error_mentions("ct_to_device");
    ct_expect_error_mentions(name);
    ct_gen *g = ct_gen_new_on(7, d);
    cr_expect_null(g);
    ct_gen_free(g);
    ct_expect_error_mentions("ct_gen_new_on");
    ct_expect_error_mentions(name);

    cr_expect_eq(ct_device_of(w).kind, CT_CPU, "the set stays where it was");
    cr_expect(ct_bits_equal(w, before));
    trainee_steps(&t, 2, 4);                        /* and keeps training */
    cr_expect_eq(ct_optim_steps_taken(t.o), 4);
    ct_free(before);
    trainee_free(&t);
}

CT_TEST(device, a_cpu_generator_made_on_a_device_draws_what_ct_gen_new_draws)
{
    ct_gen *a = ct_gen_new(5), *b = ct_gen_new_on(5, cpu());
    cr_assert_not_null(b, "%s", ct_last_error());
    cr_expect_eq(ct_gen_device(b).kind, CT_CPU);
    ct_scope *s = ct_scope_begin();
    cr_expect(ct_bits_equal(ct_randn(CT_SHAPE(16), CT_F32, a), ct_randn(CT_SHAPE(16), CT_F32, b)));
    cr_expect(ct_bits_equal(ct_randperm(10, a), ct_randperm(10, b)));
    ct_scope_end(s);
    ct_gen_free(a);
    ct_gen_free(b);
}

#define NEED_CUDA()                                                                     \
    do {                                                                                \
        if (!ct_cuda_available())                                                       \
            cr_skip_test("no CUDA device (libtorch %s): the CUDA path is not tested here", \
                         ct_torch_version());                                           \
    } while (0)

CT_TEST(device, training_moved_to_cuda_midway_matches_the_cpu)
{
    NEED_CUDA();
    ct_device gpu = {CT_CUDA, 0};
    trainee a = trainee_new(), b = trainee_new(), c = trainee_new();
    trainee_steps(&a, 0, 6);
    trainee_steps(&b, 0, 3);
    trainee_steps(&c, 0, 3);
    /* b: only the set moves, the moments follow at the next step; c: both moved */
    cr_assert_eq(ct_params_to_device(b.p, gpu), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_params_to_device(c.p, gpu), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_optim_to_device(c.o, gpu), CT_OK, "%s", ct_last_error());
    for (int i = 0; i < ct_params_count(b.p); i++)
        cr_expect_eq(ct_device_of(ct_params_at(b.p, i)).kind, CT_CUDA, "'%s' (buffers too)",
                     ct_params_name(b.p, i));
    trainee_steps(&b, 3, 6);
    trainee_steps(&c, 3, 6);
    cr_expect_eq(ct_device_of(ct_params_find(b.p, "w")).kind, CT_CUDA);
    for (int i = 0; i < ct_params_count(a.p); i++) {
        ct_expect_close(ct_params_name(a.p, i), ct_params_at(b.p, i), ct_params_at(a.p, i), 1e-10);
        ct_expect_close(ct_params_name(a.p, i), ct_params_at(c.p, i), ct_params_at(a.p, i), 1e-10);
    }
    /* and back: the optimizer follows again */
    cr_assert_eq(ct_params_to_device(b.p, cpu()), CT_OK, "%s", ct_last_error());
    trainee_steps(&b, 6, 7);
    trainee_steps(&a, 6, 7);
    ct_expect_close("w after the way back", ct_params_find(b.p, "w"), ct_params_find(a.p, "w"),
                    1e-10);
    trainee_free(&a);
    trainee_free(&b);
    trainee_free(&c);
}

CT_TEST(device, a_cuda_generator_draws_on_the_gpu_reproducibly)
{
    NEED_CUDA();
    ct_device gpu = {CT_CUDA, 0};
    ct_gen *a = ct_gen_new_on(9, gpu), *b = ct_gen_new_on(9, gpu);
    cr_assert(a && b, "%s", ct_last_error());
    cr_expect_eq(ct_gen_device(a).kind, CT_CUDA);
    ct_scope *s = ct_scope_begin();
    ct_tensor *state = ct_gen_get_state(a);
    cr_assert_not_null(state, "%s", ct_last_error());
    ct_tensor *x = ct_randn(CT_SHAPE(64), CT_F32, a);     /* drawn on the GPU, then here */
    cr_expect(ct_bits_equal(x, ct_randn(CT_SHAPE(64), CT_F32, b)), "same seed, same draws");
    cr_expect(!ct_bits_equal(x, ct_randn(CT_SHAPE(64), CT_F32, a)), "the stream moves on");
    cr_assert_eq(ct_gen_set_state(a, state), CT_OK, "%s", ct_last_error());
    cr_expect(ct_bits_equal(x, ct_randn(CT_SHAPE(64), CT_F32, a)), "a saved state replays");
    ct_tensor *on_gpu = ct_to_device(ct_zeros(CT_SHAPE(4, 4), CT_F32), gpu);
    ct_tensor *r = ct_randn_like(on_gpu, a);
    cr_expect_eq(ct_device_of(r).kind, CT_CUDA);
    ct_scope_end(s);
    ct_gen_free(a);
    ct_gen_free(b);
}
