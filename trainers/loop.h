/* The one training loop every trainer runs (fiber-model families, the subject models,
 * the VAE, the diffusion priors). A task supplies its parameters and the loss of the
 * next batch; the loop owns the optimizer, the one-cycle schedule, gradient clipping,
 * the guard against non-finite losses, validation with early stopping, atomic
 * checkpoints with bit-identical resume, the progress bar and the loss curves. */
#ifndef FL_LOOP_H
#define FL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ctorch/ct.h"

#define FL_MAX_TERMS 8
/* Named scalar terms of one loss evaluation, for logs and curves. */
typedef struct {
    int n;
    const char *name[FL_MAX_TERMS];  /* static strings */
    double value[FL_MAX_TERMS];
} fl_terms;
void fl_terms_add(fl_terms *t, const char *name, double value);

typedef struct {
    ct_params *params;  /* the trainable set (borrowed) */
    void *ctx;
    /* Loss of the next training batch, with a graph to the parameters; fills terms.
     * NULL on failure (with fl_error set). */
    ct_tensor *(*step_loss)(void *ctx, fl_terms *terms);
    /* Validation loss, called with grad off; NULL disables validation. */
    int (*validate)(void *ctx, double *loss);
    /* State beyond parameters and optimizer that resuming needs (batch order, random
     * streams); both may be NULL. */
    int (*put_state)(void *ctx, ct_archive *a);
    int (*get_state)(void *ctx, const ct_archive *a);
    /* Called once after every optimizer step that was applied — not after a step skipped
     * for a non-finite loss or gradient — with step the number of loop steps done so far
     * (1-based, counting skipped ones: the numbering of curve_steps and checkpoints), and
     * before that step's validation and checkpoint, so that state it updates (EMA
     * weights, a noise level) is saved with the step. It runs with grad mode off, in a
     * scope of its own. 0 on success; -1 (with fl_error set) fails the run with that
     * message. NULL: none. */
    int (*after_step)(void *ctx, int64_t step);
} fl_task;

typedef enum { FL_SCHED_ONECYCLE = 0, FL_SCHED_CONSTANT, FL_SCHED_COUNT } fl_schedule;

typedef struct {
    const char *label;          /* progress label, e.g. "nf λ=1" */
    int64_t steps;
    double lr;                  /* the peak learning rate of the one-cycle schedule */
    fl_schedule schedule;
    double pct_start, div_factor, final_div_factor;
    ct_optim_kind optimizer;
    double weight_decay;
    double clip_grad;           /* max global gradient norm; 0: no clipping */
    int64_t val_every;          /* steps between validations; 0: none */
    int patience;               /* validations without improvement before stopping; 0: never */
    int64_t checkpoint_every;   /* steps between checkpoints; 0: only at the end */
    const char *checkpoint;     /* path, or NULL for none */
    bool resume;                /* continue from checkpoint when it exists */
    uint64_t fingerprint;       /* settings hash stored in the checkpoint; a resume with
                                   another one is refused */
    int max_nonfinite;          /* skipped steps (NaN/inf loss or gradient) before giving up */
    int64_t curve_every;        /* steps averaged into one point of the loss curves */
} fl_train_opts;

/* Fills opts from the config: <section>.steps, <section>.lr, <section>.batch_size are
 * read by the caller's task; the loop settings come from the train.* keys, with
 * <section>.steps and <section>.lr when the section has them. */
void fl_train_opts_from_config(fl_train_opts *o, const fl_config *c, const char *section);

/* The train.* keys fl_train_opts_from_config reads that change what a training
 * produces (for <section>.steps and .lr it reads the section's own key when there is
 * one); NULL-terminated. A cached model's key includes them. */
extern const char *const fl_train_param_keys[];

/* The learning rate at optimizer step k (0-based) of the schedule. */
double fl_schedule_lr(const fl_train_opts *o, int64_t k);

typedef struct {
    int64_t steps_done, skipped_nonfinite, best_step;
    double best_val, last_val;
    double seconds;         /* training time in all: a resumed run adds the seconds its
                               checkpoint had recorded (loop/seconds) */
    bool stopped_early, resumed;
    /* Loss curves: n_points rows of n_terms mean values, at curve_steps. A column is one
     * term name, in the order the names first appeared; each point is the mean of that
     * term over the applied steps since the previous point that reported it, NaN when
     * none did (so a term that appears later, such as the fiber loss after
     * train.fiber_warmup, has NaN at the points before it). */
    int n_terms;
    char term_names[FL_MAX_TERMS][32];
    int64_t n_points;
    double *curve;          /* (n_points, n_terms) */
    int64_t *curve_steps;   /* (n_points) */
    int64_t n_val;
    double *val;            /* (n_val) validation losses */
    int64_t *val_steps;
} fl_train_result;
void fl_train_result_free(fl_train_result *r);
/* The result's curves and counters as archive entries under prefix, and back (the model
 * store keeps them beside the trained weights). */
int fl_train_result_put(const fl_train_result *r, ct_archive *a, const char *prefix);
int fl_train_result_get(fl_train_result *r, const ct_archive *a, const char *prefix);

/* Runs the loop. On early stopping the parameters are set back to the best validated
 * ones. -1 and fl_error() on failure (too many non-finite steps, I/O, a task error);
 * the last good checkpoint stays. */
int fl_train_run(const fl_task *task, const fl_train_opts *o, fl_train_result *res);

/* The fingerprint stored in a checkpoint file; -1 when it cannot be read. */
int fl_train_checkpoint_fingerprint(const char *path, uint64_t *fingerprint);

extern const fl_key fl_keys_train[];

#endif
