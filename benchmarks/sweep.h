/* Sweeps and the run store. A sweep trains and evaluates a grid of fiber models
 * (families × λ × seeds) on one dataset, subject and VAE, and writes under
 * <out_dir>/<sweep.name>/:
 *     runs/<family>_lam<λ>_seed<s>.h5   one HDF5 per run (docs/runs.md)
 *     models/<run>.h5                    the trained model (the model store: settings,
 *                                        weights, training result)
 *     checkpoints/<run>.ckpt             the training state while it trains (an
 *                                        interrupted run resumes); removed once saved
 *     references.h5                      the reference lines, computed once
 *     index.json                         every run's settings and metrics
 *     fidelity_consistency.png / .svg    the paper's figure 4
 *     grids/<run>.png                    targets and their samples
 *     timing.md                          training time and time per sample
 * What is done is reused: the dataset, subject and VAE from the cache, the references,
 * every run whose file has the same model key and evaluation key (core/config.h:
 * fl_key_role), and every saved model whose model key matches — a change of eval.*
 * only scores the saved model again — so an interrupted sweep reruns only what is
 * missing. */
#ifndef FL_SWEEP_H
#define FL_SWEEP_H

#include <stdbool.h>

#include "core/config.h"

typedef struct {
    int runs_grid;       /* cells of the whole grid */
    int runs_total, runs_trained, runs_reused;   /* of the cells this process took on */
    int runs_rescored;   /* trained before: scored again from the saved model */
    double seconds_total, seconds_setup, seconds_train, seconds_eval, seconds_report;
    double peak_rss_mib;
    char dir[4096];
} fl_sweep_summary;

/* Runs the sweep of c (sweep.* keys). -1 and a message on failure; finished runs stay. */
int fl_sweep_run(const fl_config *c, fl_sweep_summary *sum);

/* The share of a sweep's cells that one of several processes makes. Cell i of the grid
 * (the families' cells family-major, then λ, then seed; then NDTM's: fl_sweep_grid_size)
 * belongs to the process with i % parts == part: a shard of a job array (fiberlab sweep
 * --shard part/parts). Processes that share the
 * folder and take on the same cells (the ranks of an MPI job, parts = 1) divide them
 * among themselves through the cells' locks: each makes the cells no other holds,
 * starting at cell `start`, then waits for the ones it left. */
typedef struct {
    int part, parts;   /* 0 and 1: every cell */
    int start;         /* the first cell of the first pass */
    bool report;       /* write the folder's report at the end */
    bool setup_only;   /* only build what every cell uses: dataset, subject, VAE, references */
} fl_sweep_share;

/* The cells of c's grid: the families' (sweep.families × sweep.lambdas × sweep.seeds),
 * then NDTM's (sweep.ndtm_gammas × sweep.ndtm_priors × sweep.ndtm_targets ×
 * sweep.ndtm_refine × sweep.seeds), then the leakage test's (sweep.ndtm_leakage:
 * sweep.ndtm_gammas × sweep.ndtm_targets × sweep.seeds). */
int fl_sweep_grid_size(const fl_config *c);

/* fl_sweep_run for the share s of the grid (NULL: every cell, and the report). */
int fl_sweep_run_share(const fl_config *c, const fl_sweep_share *s, fl_sweep_summary *sum);

/* Rewrites index.json, the plot, the grids and the timing table of a sweep folder from
 * its run files and references. */
int fl_sweep_report(const char *dir);

/* The folder of the sweep of c: <out_dir>/<sweep.name>. */
void fl_sweep_dir(const fl_config *c, char *buf, size_t n);
/* The file name stem of a run: nf_lam1_seed0. */
void fl_run_name(const char *family, double lambda, int64_t seed, char *buf, size_t n);

extern const fl_key fl_keys_sweep[];

#endif
