/* The shared training loop: NF fits a conditional Gaussian to its known NLL, a run
 * killed between checkpoints resumes bit-identically, non-finite steps are skipped and
 * then refused, early stopping restores the best parameters, the one-cycle schedule;
 * loss curves keep terms apart by name (also through checkpoints), a resumed run counts
 * the time of both parts, the after-step hook sees exactly the applied steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "trainers/family.h"
#include "trainers/loop.h"

/* Toy problem: z ~ N(0, I₂), u = A z + L ε. The true conditional NLL per sample is
 * ½ log det(2πe Σ), Σ = L Lᵀ. */
static const double A[4] = {1.0, 0.5, -0.3, 0.8};
static const double L[4] = {0.3, 0.0, 0.2, 0.1};
static double true_nll(void) { return log(2 * M_PI * M_E) + log(L[0] * L[3]); }

typedef struct {
    const fl_family *fam;
    void *model;
    ct_params *ps;
    ct_gen *data, *noise;
    int batch;
    int calls, kill_at, nan_every;
    ct_tensor *a, *l;
} toy;

static void toy_batch(toy *t, int n, ct_gen *g, ct_tensor **u, ct_tensor **z)
{
    *z = ct_randn(CT_SHAPE(n, 2), CT_F32, g);
    ct_tensor *e = ct_randn(CT_SHAPE(n, 2), CT_F32, g);
    *u = ct_add(ct_matmul(*z, ct_transpose(t->a, 0, 1)), ct_matmul(e, ct_transpose(t->l, 0, 1)));
}

static ct_tensor *toy_loss(void *ctx, fl_terms *terms)
{
    toy *t = ctx;
    if (++t->calls == t->kill_at) raise(SIGKILL);
    ct_tensor *u, *z;
    toy_batch(t, t->batch, t->data, &u, &z);
    ct_tensor *loss = t->fam->loss(t->model, u, z, t->noise, terms);
    if (t->nan_every && t->calls % t->nan_every == 0) loss = ct_muls(loss, NAN);
    return loss;
}

static int toy_put(void *ctx, ct_archive *a)
{
    toy *t = ctx;
    ct_scope *s = ct_scope_begin();
    int rc = ct_archive_put(a, "toy/data", ct_gen_get_state(t->data)) ||
             ct_archive_put(a, "toy/noise", ct_gen_get_state(t->noise)) ||
             ct_archive_put_i64(a, "toy/calls", t->calls);
    ct_scope_end(s);
    return rc ? -1 : 0;
}

static int toy_get(void *ctx, const ct_archive *a)
{
    toy *t = ctx;
    ct_scope *s = ct_scope_begin();
    int64_t calls = 0;
    int rc = ct_gen_set_state(t->data, ct_archive_get(a, "toy/data")) ||
             ct_gen_set_state(t->noise, ct_archive_get(a, "toy/noise")) ||
             ct_archive_get_i64(a, "toy/calls", &calls);
    t->calls = (int)calls;
    ct_scope_end(s);
    return rc ? -1 : 0;
}

static void toy_init(toy *t, fl_config *c, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->fam = fl_family_find("nf");
    t->ps = ct_params_new();
    t->data = ct_gen_new(seed);
    t->noise = ct_gen_new(seed + 1);
    t->batch = 256;
    ct_gen *init = ct_gen_new(seed + 2);
    t->model = t->fam->create(c, 2, 2, t->ps, init);
    ct_gen_free(init);
    cr_assert_not_null(t->model, "%s", ct_last_error());
    t->a = ct_from_data(A, CT_SHAPE(2, 2), CT_F64);
    t->l = ct_from_data(L, CT_SHAPE(2, 2), CT_F64);
    ct_tensor *a32 = ct_to_dtype(t->a, CT_F32), *l32 = ct_to_dtype(t->l, CT_F32);
    ct_free(t->a);
    ct_free(t->l);
    t->a = a32;
    t->l = l32;
}

static void toy_free(toy *t)
{
    t->fam->destroy(t->model);
    ct_params_free(t->ps);
    ct_gen_free(t->data);
    ct_gen_free(t->noise);
    ct_free(t->a);
    ct_free(t->l);
}

static fl_task toy_task(toy *t)
{
    fl_task task = {t->ps, t, toy_loss, NULL, toy_put, toy_get, NULL};
    return task;
}

static fl_config *toy_config(void)
{
    fl_config *c = fl_config_default();
    cr_assert(!fl_config_override(c, "nf.blocks=4") && !fl_config_override(c, "nf.hidden=32"));
    return c;
}

static fl_train_opts toy_opts(fl_config *c, int64_t steps, double lr)
{
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    o.steps = steps;
    o.lr = lr;
    o.val_every = 0;
    o.checkpoint_every = 0;
    return o;
}

Test(loop, nf_fits_a_conditional_gaussian_to_its_true_nll, .timeout = 300)
{
    fl_config *c = toy_config();
    toy t;
    toy_init(&t, c, 1);
    fl_task task = toy_task(&t);
    fl_train_opts o = toy_opts(c, 800, 5e-3);
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    cr_expect_eq(r.steps_done, 800);
    cr_expect_str_eq(r.term_names[0], "nll");

    bool prev = ct_set_grad_enabled(false);
    ct_scope *s = ct_scope_begin();
    ct_gen *test = ct_gen_new(99);
    ct_tensor *u, *z;
    toy_batch(&t, 20000, test, &u, &z);
    double nll = ct_item(t.fam->loss(t.model, u, z, NULL, NULL));
    ct_gen_free(test);
    ct_scope_end(s);
    ct_set_grad_enabled(prev);
    double want = true_nll();
    cr_expect_lt(nll, want + 0.12, "test NLL %.4f, true conditional NLL %.4f", nll, want);
    cr_expect_gt(nll, want - 0.05, "test NLL %.4f below the true NLL %.4f: the NLL is wrong", nll, want);
    fl_train_result_free(&r);
    toy_free(&t);
    fl_config_free(c);
}

Test(loop, run_killed_between_checkpoints_resumes_bit_identically, .timeout = 300)
{
    char dir[] = "/tmp/fl_loop_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ckpt[256], ckpt_ref[256];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    snprintf(ckpt_ref, sizeof ckpt_ref, "%s/ref.ckpt", dir);

    /* the killed run, in a child forked before libtorch starts its threads */
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        fl_config *c = toy_config();
        toy t;
        toy_init(&t, c, 5);
        t.kill_at = 27;
        fl_task task = toy_task(&t);
        fl_train_opts o = toy_opts(c, 40, 3e-3);
        o.checkpoint = ckpt;
        o.checkpoint_every = 10;
        fl_train_result r;
        fl_train_run(&task, &o, &r);
        _exit(3); /* not reached: killed at step 27 */
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child was not killed");
    cr_assert_eq(access(ckpt, F_OK), 0, "no checkpoint left by the killed run");

    fl_config *c = toy_config();
    /* uninterrupted reference */
    toy ref;
    toy_init(&ref, c, 5);
    fl_task rt = toy_task(&ref);
    fl_train_opts ro = toy_opts(c, 40, 3e-3);
    ro.checkpoint = ckpt_ref;
    ro.checkpoint_every = 10;
    fl_train_result rr;
    cr_assert_eq(fl_train_run(&rt, &ro, &rr), 0, "%s", ct_last_error());

    /* resume the killed one */
    toy t;
    toy_init(&t, c, 5);
    fl_task task = toy_task(&t);
    fl_train_opts o = toy_opts(c, 40, 3e-3);
    o.checkpoint = ckpt;
    o.checkpoint_every = 10;
    o.resume = true;
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    cr_expect(r.resumed);
    cr_expect_eq(r.steps_done, 40);
    cr_expect_eq(t.calls, 40, "the resumed run made %d loss calls in all", t.calls);
    for (int i = 0; i < ct_params_count(ref.ps); i++) {
        double d = ct_max_abs_diff(ct_params_at(ref.ps, i), ct_params_at(t.ps, i));
        cr_expect_eq(d, 0.0, "parameter %s differs by %g after resuming", ct_params_name(ref.ps, i), d);
    }
    cr_expect_eq(r.n_points, rr.n_points);
    for (int64_t i = 0; i < r.n_points * r.n_terms && i < rr.n_points * rr.n_terms; i++)
        cr_expect_eq(r.curve[i], rr.curve[i], "loss curve differs at %lld", (long long)i);

    /* a checkpoint from other settings is refused */
    toy t2;
    toy_init(&t2, c, 5);
    fl_task task2 = toy_task(&t2);
    o.fingerprint = 12345;
    fl_train_result r2;
    cr_expect_eq(fl_train_run(&task2, &o, &r2), -1);
    cr_expect(strstr(ct_last_error(), "other settings") != NULL, "message: %s", ct_last_error());
    fl_train_result_free(&r2);
    toy_free(&t2);

    fl_train_result_free(&r);
    fl_train_result_free(&rr);
    toy_free(&t);
    toy_free(&ref);
    fl_config_free(c);
    unlink(ckpt);
    unlink(ckpt_ref);
    rmdir(dir);
}

Test(loop, nonfinite_steps_are_skipped_then_refused)
{
    fl_config *c = toy_config();
    toy t;
    toy_init(&t, c, 3);
    t.nan_every = 4;
    fl_task task = toy_task(&t);
    fl_train_opts o = toy_opts(c, 20, 1e-3);
    o.max_nonfinite = 10;
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    cr_expect_eq(r.skipped_nonfinite, 5);
    ct_scope *s = ct_scope_begin();
    for (int i = 0; i < ct_params_count(t.ps); i++)
        cr_expect(isfinite(ct_item(ct_sum(ct_params_at(t.ps, i)))), "a NaN reached the parameters");
    ct_scope_end(s);
    fl_train_result_free(&r);

    t.nan_every = 1;
    o.max_nonfinite = 3;
    cr_expect_eq(fl_train_run(&task, &o, &r), -1);
    cr_expect(strstr(ct_last_error(), "NaN") != NULL && strstr(ct_last_error(), "max_nonfinite") != NULL,
              "message: %s", ct_last_error());
    cr_expect_eq(r.steps_done, 4);
    fl_train_result_free(&r);
    toy_free(&t);
    fl_config_free(c);
}

/* Validation that improves until step 30, then worsens; keeps the parameters it saw
 * at step 30. */
static ct_archive *seen_at_30;
static int toy_validate(void *ctx, double *loss)
{
    toy *t = ctx;
    *loss = fabs((double)t->calls - 30.0);
    if (t->calls == 30) ct_params_put(t->ps, seen_at_30, "");
    return 0;
}

Test(loop, early_stopping_restores_the_best_parameters)
{
    fl_config *c = toy_config();
    toy t;
    toy_init(&t, c, 4);
    fl_task task = toy_task(&t);
    task.validate = toy_validate;
    seen_at_30 = ct_archive_new();
    fl_train_opts o = toy_opts(c, 100, 1e-2);
    o.val_every = 10;
    o.patience = 2;
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    cr_expect(r.stopped_early);
    cr_expect_eq(r.best_step, 30);
    cr_expect_eq(r.steps_done, 50);
    cr_expect_eq(r.n_val, 5);
    for (int i = 0; i < ct_params_count(t.ps); i++) {
        ct_scope *s = ct_scope_begin();
        ct_tensor *want = ct_archive_get(seen_at_30, ct_params_name(t.ps, i));
        double d = ct_max_abs_diff(ct_params_at(t.ps, i), want);
        cr_expect_eq(d, 0.0, "%s is not the step-30 value (differs by %g)", ct_params_name(t.ps, i), d);
        ct_scope_end(s);
    }
    ct_archive_free(seen_at_30);
    fl_train_result_free(&r);
    toy_free(&t);
    fl_config_free(c);
}

Test(loop, one_cycle_schedule_matches_pytorch_shape)
{
    fl_config *c = fl_config_default();
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    o.steps = 1000;
    o.lr = 1e-3;
    cr_expect_float_eq(fl_schedule_lr(&o, 0), 1e-3 / 25, 1e-15);
    cr_expect_float_eq(fl_schedule_lr(&o, 299), 1e-3, 1e-15);       /* peak at pct·N − 1 */
    cr_expect_float_eq(fl_schedule_lr(&o, 999), 1e-3 / 25 / 1e4, 1e-15);
    for (int k = 1; k < 299; k++) cr_expect_gt(fl_schedule_lr(&o, k), fl_schedule_lr(&o, k - 1));
    for (int k = 300; k < 1000; k++) cr_expect_lt(fl_schedule_lr(&o, k), fl_schedule_lr(&o, k - 1));
    fl_config_free(c);
}

/* ---- a scripted task: one scalar parameter, loss terms chosen per call ------------------ */

/* Call c (1-based) reports a = c and loss = 1000 + c, and from call extra_from on also a
 * term "extra" = 100 + c — listed before the total, as the fiber term is during a
 * fiber-loss warm-up. Calls that are multiples of nan_every return NaN; call fail_at
 * fails. after_step (when hooked) records the steps it sees. */
typedef struct {
    ct_params *ps;
    ct_tensor *w;
    int calls, extra_from, nan_every, fail_at, fail_hook_at;
    useconds_t sleep_us;
    int hooked;
    int64_t hook_steps[64];
} script;

static ct_tensor *script_loss(void *ctx, fl_terms *terms)
{
    script *t = ctx;
    int c = ++t->calls;
    if (c == t->fail_at) {
        ct_set_error("scripted failure at call %d", c);
        return NULL;
    }
    if (t->sleep_us) usleep(t->sleep_us);
    fl_terms_add(terms, "a", c);
    if (t->extra_from && c >= t->extra_from) fl_terms_add(terms, "extra", 100.0 + c);
    fl_terms_add(terms, "loss", 1000.0 + c);
    ct_tensor *loss = ct_sum(ct_square(ct_adds(t->w, -1.0)));
    return t->nan_every && c % t->nan_every == 0 ? ct_muls(loss, NAN) : loss;
}

static int script_put(void *ctx, ct_archive *a)
{
    return ct_archive_put_i64(a, "script/calls", ((script *)ctx)->calls) ? -1 : 0;
}

static int script_get(void *ctx, const ct_archive *a)
{
    int64_t calls = 0;
    if (ct_archive_get_i64(a, "script/calls", &calls)) return -1;
    ((script *)ctx)->calls = (int)calls;
    return 0;
}

static int script_after_step(void *ctx, int64_t step)
{
    script *t = ctx;
    if (step == t->fail_hook_at) return fl_fail("scripted hook failure");
    if (t->hooked < 64) t->hook_steps[t->hooked] = step;
    t->hooked++;
    return 0;
}

static void script_init(script *t)
{
    memset(t, 0, sizeof *t);
    t->ps = ct_params_new();
    t->w = ct_params_add(t->ps, "w", ct_zeros(CT_SHAPE(3), CT_F32));
    cr_assert_not_null(t->w, "%s", ct_last_error());
}

static fl_task script_task(script *t)
{
    fl_task task = {.params = t->ps, .ctx = t, .step_loss = script_loss,
                    .put_state = script_put, .get_state = script_get};
    return task;
}

static fl_train_opts script_opts(int64_t steps)
{
    fl_config *c = fl_config_default();
    fl_train_opts o;
    fl_train_opts_from_config(&o, c, "train");
    fl_config_free(c);
    o.steps = steps;
    o.lr = 1e-2;
    o.val_every = 0;
    o.checkpoint_every = 0;
    o.curve_every = 5;
    return o;
}

static int column(const fl_train_result *r, const char *name)
{
    for (int j = 0; j < r->n_terms; j++)
        if (strcmp(r->term_names[j], name) == 0) return j;
    return -1;
}

/* The curve of the scripted task over 20 steps, extra from call 7, points every 5 steps:
 * a and loss are means of c and 1000 + c over each point's calls, extra the mean of
 * 100 + c over the calls that had it, NaN at the first point. */
static void expect_scripted_curve(const fl_train_result *r, const char *what)
{
    cr_assert_eq(r->n_terms, 3, "%s: %d curve columns", what, r->n_terms);
    int ja = column(r, "a"), jx = column(r, "extra"), jl = column(r, "loss");
    cr_assert(ja >= 0 && jx >= 0 && jl >= 0, "%s: columns %s, %s, %s", what, r->term_names[0],
              r->term_names[1], r->term_names[2]);
    cr_assert_eq(r->n_points, 4, "%s: %lld points", what, (long long)r->n_points);
    for (int p = 0; p < 4; p++) {
        const double *row = r->curve + p * r->n_terms;
        double mid = 5.0 * p + 3.0; /* mean of the calls 5p+1 … 5p+5 */
        cr_expect_eq(r->curve_steps[p], 5 * (p + 1), "%s", what);
        cr_expect_eq(row[ja], mid, "%s: point %d: a = %g", what, p, row[ja]);
        cr_expect_eq(row[jl], 1000.0 + mid, "%s: point %d: the total is %g", what, p, row[jl]);
        if (p == 0) cr_expect(isnan(row[jx]), "%s: extra before it appeared: %g", what, row[jx]);
        else if (p == 1) cr_expect_eq(row[jx], 108.5, "%s: extra over calls 7-10: %g", what, row[jx]);
        else cr_expect_eq(row[jx], 100.0 + mid, "%s: point %d: extra = %g", what, p, row[jx]);
    }
}

Test(loop, a_term_that_appears_later_gets_its_own_column_and_the_total_stays)
{
    script t;
    script_init(&t);
    t.extra_from = 7;
    fl_task task = script_task(&t);
    fl_train_opts o = script_opts(20);
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    expect_scripted_curve(&r, "uninterrupted");
    fl_train_result_free(&r);
    ct_params_free(t.ps);
}

/* Interrupted at call fail_at after checkpoints every 5 steps, then resumed: before the
 * new column existed (checkpoint at step 5) and after (step 10). */
Test(loop, a_term_that_appears_later_round_trips_through_checkpoints)
{
    char dir[] = "/tmp/fl_loop_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    const int fail_at[2] = {8, 13};
    for (int k = 0; k < 2; k++) {
        script t;
        script_init(&t);
        t.extra_from = 7;
        t.fail_at = fail_at[k];
        fl_task task = script_task(&t);
        fl_train_opts o = script_opts(20);
        o.checkpoint = ckpt;
        o.checkpoint_every = 5;
        o.resume = true;
        fl_train_result r;
        cr_assert_eq(fl_train_run(&task, &o, &r), -1, "call %d did not fail the run", fail_at[k]);
        cr_expect(strstr(ct_last_error(), "scripted failure") != NULL, "message: %s", ct_last_error());
        fl_train_result_free(&r);
        ct_params_free(t.ps);

        script_init(&t);
        t.extra_from = 7;
        task = script_task(&t);
        cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
        cr_expect(r.resumed);
        char what[64];
        snprintf(what, sizeof what, "resumed after a failure at call %d", fail_at[k]);
        expect_scripted_curve(&r, what);
        fl_train_result_free(&r);
        ct_params_free(t.ps);
        unlink(ckpt);
    }
    rmdir(dir);
}

Test(loop, a_resumed_run_reports_the_training_time_of_both_parts)
{
    char dir[] = "/tmp/fl_loop_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    const useconds_t step_us = 10000;
    script t;
    script_init(&t);
    t.sleep_us = step_us;
    t.fail_at = 13; /* after the checkpoint at step 10 */
    fl_task task = script_task(&t);
    fl_train_opts o = script_opts(20);
    o.checkpoint = ckpt;
    o.checkpoint_every = 10;
    o.resume = true;
    fl_train_result first;
    cr_assert_eq(fl_train_run(&task, &o, &first), -1);
    ct_params_free(t.ps);

    script_init(&t);
    t.sleep_us = step_us;
    task = script_task(&t);
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    cr_expect(r.resumed);
    /* 10 steps before the checkpoint and 10 after it, each sleeping step_us */
    double floor_s = 20 * step_us * 1e-6;
    cr_expect_geq(r.seconds, floor_s, "the resumed run reports %.3f s for 20 steps of at least %.3f s",
                  r.seconds, floor_s);
    cr_expect_geq(r.seconds, first.seconds, "the resumed run reports %.3f s, its first part %.3f s",
                  r.seconds, first.seconds);
    fl_train_result_free(&first);
    fl_train_result_free(&r);
    ct_params_free(t.ps);
    unlink(ckpt);
    rmdir(dir);
}

Test(loop, after_step_runs_once_per_applied_step_and_not_for_skipped_ones)
{
    script t;
    script_init(&t);
    t.nan_every = 4; /* steps 4, 8, 12, 16, 20 are skipped */
    fl_task task = script_task(&t);
    task.after_step = script_after_step;
    fl_train_opts o = script_opts(20);
    o.max_nonfinite = 10;
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    cr_expect_eq(r.skipped_nonfinite, 5);
    cr_assert_eq(t.hooked, 15, "after_step ran %d times for 15 applied steps", t.hooked);
    for (int i = 0, step = 1; i < 15; i++, step++) {
        if (step % 4 == 0) step++;
        cr_expect_eq(t.hook_steps[i], step, "call %d of after_step saw step %lld, expected %d", i,
                     (long long)t.hook_steps[i], step);
    }
    fl_train_result_free(&r);

    /* its error fails the run with its message */
    t.calls = 0;
    t.hooked = 0;
    t.fail_hook_at = 3;
    cr_expect_eq(fl_train_run(&task, &o, &r), -1);
    cr_expect(strstr(ct_last_error(), "after step 3") && strstr(ct_last_error(), "scripted hook failure"),
              "message: %s", ct_last_error());
    cr_expect_eq(r.steps_done, 3);
    fl_train_result_free(&r);
    ct_params_free(t.ps);
}

/* A finished 20-step run of the toy problem with its checkpoint at path. */
static void finished_run(const char *path)
{
    fl_config *c = toy_config();
    toy t;
    toy_init(&t, c, 9);
    fl_task task = toy_task(&t);
    fl_train_opts o = toy_opts(c, 20, 3e-3);
    o.checkpoint = path;
    fl_train_result r;
    cr_assert_eq(fl_train_run(&task, &o, &r), 0, "%s", ct_last_error());
    fl_train_result_free(&r);
    toy_free(&t);
    fl_config_free(c);
}

/* Replaces one entry of the checkpoint and writes it again: a valid checksum, wrong contents. */
static void edit_i64(const char *path, const char *name, int64_t v)
{
    ct_archive *a = ct_archive_read(path);
    cr_assert_not_null(a, "%s", ct_last_error());
    cr_assert_eq(ct_archive_put_i64(a, name, v), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_archive_write(a, path), CT_OK, "%s", ct_last_error());
    ct_archive_free(a);
}

static void edit_tensor(const char *path, const char *name, const ct_tensor *t)
{
    ct_archive *a = ct_archive_read(path);
    cr_assert_not_null(a, "%s", ct_last_error());
    cr_assert_eq(ct_archive_put(a, name, t), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_archive_write(a, path), CT_OK, "%s", ct_last_error());
    ct_archive_free(a);
}

/* Resuming from path fails with one line naming the file and the field; the run is
 * not marked finished. */
static void expect_refused(const char *path, const char *field)
{
    fl_config *c = toy_config();
    toy t;
    toy_init(&t, c, 9);
    fl_task task = toy_task(&t);
    fl_train_opts o = toy_opts(c, 20, 3e-3);
    o.checkpoint = path;
    o.resume = true;
    fl_train_result r;
    cr_expect_eq(fl_train_run(&task, &o, &r), -1, "a checkpoint with a bad %s was accepted", field);
    const char *e = ct_last_error();
    cr_expect(strstr(e, path) != NULL, "message does not name the file: %s", e);
    cr_expect(strstr(e, field) != NULL, "message does not name %s: %s", field, e);
    cr_expect(strchr(e, '\n') == NULL, "message is not one line: %s", e);
    fl_train_result_free(&r);
    toy_free(&t);
    fl_config_free(c);
}

Test(loop, a_checkpoint_with_impossible_counters_is_refused_naming_the_field, .timeout = 300)
{
    char dir[] = "/tmp/fl_loop_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    const struct {
        const char *name;
        int64_t v;
    } bad[] = {
        {"loop/n_terms", 1000000}, {"loop/n_terms", -1},   {"loop/step", 1000000000000000},
        {"loop/step", -1},         {"loop/step", 21},      {"loop/skipped", -1},
        {"loop/skipped", 25},      {"loop/best_step", 22}, {"loop/bad_vals", -3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        finished_run(ckpt);
        edit_i64(ckpt, bad[i].name, bad[i].v);
        expect_refused(ckpt, bad[i].name);
        unlink(ckpt);
    }
    rmdir(dir);
}

Test(loop, a_checkpoint_with_nonfinite_parameters_or_a_wrong_rng_state_is_refused, .timeout = 300)
{
    char dir[] = "/tmp/fl_loop_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
    finished_run(ckpt);
    ct_archive *a = ct_archive_read(ckpt);
    cr_assert_not_null(a);
    char name[256] = "";
    for (int i = 0; i < ct_archive_count(a) && !name[0]; i++)
        if (strncmp(ct_archive_name(a, i), "params/", 7) == 0) snprintf(name, sizeof name, "%s", ct_archive_name(a, i));
    cr_assert(name[0], "no parameter in the checkpoint");
    ct_tensor *p = ct_archive_get(a, name);
    ct_tensor *nan = ct_muls(p, NAN);
    ct_archive_free(a);
    edit_tensor(ckpt, name, nan);
    ct_free(nan);
    ct_free(p);
    expect_refused(ckpt, name + 7);
    unlink(ckpt);

    finished_run(ckpt);
    uint8_t junk[7] = {1, 2, 3, 4, 5, 6, 7};
    ct_tensor *state = ct_from_data(junk, CT_SHAPE(7), CT_U8);
    edit_tensor(ckpt, "toy/data", state);
    ct_free(state);
    expect_refused(ckpt, "RNG state of 7 bytes");
    unlink(ckpt);
    rmdir(dir);
}
