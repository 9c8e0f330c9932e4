/* The sweep runner and the run store: a grid of fiber models trained, sampled and
 * evaluated, one HDF5 file per run, and the report (index, plot, grids, timing) made
 * from those files. */
#include "benchmarks/sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "benchmarks/eval.h"
#include "core/blas.h"
#include "core/files.h"
#include "core/h5.h"
#include "core/log.h"
#include "architectures/conv.h"
#include "datasets/batch.h"
#include "datasets/digits.h"
#include "fl_version.h"
#include "ndtm/ndtm.h"
#include "trainers/fiber.h"
#include "trainers/prior.h"

const fl_key fl_keys_sweep[] = {
    {"sweep.name", FL_KEY_STR, "\"sweep\"", FL_NO_BOUNDS, NULL,
     "Folder of the sweep under out_dir, one plain name (not '.', '..' or with '/'); runs "
     "with the same name share it and are reused."},
    {"sweep.families", FL_KEY_STR_LIST, "[\"nf\"]", FL_NO_BOUNDS, FL_FAMILY_NAMES,
     "Fiber-model families of the grid."},
    {"sweep.lambdas", FL_KEY_NUM_LIST, "[0, 1, 10]", 0, 1e6, NULL,
     "Fiber-loss weights λ of the grid (train.lambda of each run)."},
    {"sweep.seeds", FL_KEY_INT_LIST, "[0]", 0, 4294967295.0, NULL,
     "Seeds of the grid (seed of each run); the plot's error bars are the spread over them."},
    {"sweep.overrides", FL_KEY_STR_LIST, "[]", FL_NO_BOUNDS, NULL,
     "Settings of one family's runs, each \"family:key=value\" (e.g. \"diff:train.steps=15000\"): "
     "applied to that family's cells after the rest of the config, so that each family can "
     "have its own budget or size. Entries of families outside sweep.families are ignored; "
     "model.family, train.lambda, seed and sweep.* cannot be set this way."},
    {"sweep.ndtm_gammas", FL_KEY_NUM_LIST, "[]", 0, 1e6, NULL,
     "Guidance strengths γ (ndtm.gamma) of the grid's NDTM cells: each is sampled by guiding "
     "the latent prior (no training per subject) for every entry of sweep.ndtm_priors × "
     "sweep.ndtm_targets × sweep.ndtm_refine × sweep.seeds, and scored like the families' "
     "cells. Empty: no NDTM cells."},
    {"sweep.ndtm_priors", FL_KEY_STR_LIST, "[\"correlated\"]", FL_NO_BOUNDS,
     "correlated|ood|pixel-correlated|pixel-ood",
     "Priors of the NDTM cells: the latent prior (prior.space=latent) trained on correlated "
     "color MNIST or on ood (colors out of distribution for the subject; prior.variant), or "
     "the pixel UNet prior of either (pixel-correlated, pixel-ood: prior.space=pixel, the "
     "paper's)."},
    {"sweep.ndtm_targets", FL_KEY_STR_LIST, "[\"static\"]", FL_NO_BOUNDS, "static|renoised",
     "Terminal costs of the NDTM cells (ndtm.target)."},
    {"sweep.ndtm_refine", FL_KEY_STR_LIST, "[\"off\"]", FL_NO_BOUNDS, "off|on",
     "Latent refinement of the NDTM cells' samples (ndtm.refine_steps Adam steps at "
     "ndtm.refine_lr, as fiberlab ndtm --refine): off, on, or both."},
    {"sweep.ndtm_leakage", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "The leakage test (the paper's appendix C): NDTM cells of each correlated prior of "
     "sweep.ndtm_priors (latent and/or pixel; the latent one when there is none), without "
     "refinement, on targets of the fixed variant (data.fixed_color), one per γ × prior × "
     "sweep.ndtm_targets × seed; the report compares their samples' colors with those of the "
     "same cells on the benchmark's targets."},
    {"sweep.workers", FL_KEY_INT, "1", 1, 64, NULL,
     "Processes of this machine that make the cells: this one first builds what every cell "
     "uses (dataset, subject, VAE, references) on all its threads, then starts workers − 1 "
     "copies of itself; each takes the cells no other holds, as the ranks of an MPI job do, "
     "on cores ÷ workers threads (threads = 0), and this one writes the report. Small models "
     "train faster side by side than on two threads each (docs/runs.md). Ignored under "
     "mpirun, whose ranks are the workers."},
    {"sweep.val_fraction", FL_KEY_NUM, "0.1", 0, 0.5, NULL,
     "Share of the training pairs held out for the validation loss (early stopping)."},
    {"sweep.grid_targets", FL_KEY_INT, "8", 0, 64, NULL,
     "Targets (rows) in each run's sample grid; each row is the target, then its samples."},
    FL_KEYS_END,
};

void fl_sweep_dir(const fl_config *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", fl_cfg_str(c, "out_dir"), fl_cfg_str(c, "sweep.name"));
}

void fl_run_name(const char *family, double lambda, int64_t seed, char *buf, size_t n)
{
    snprintf(buf, n, "%s_lam%g_seed%lld", family, lambda, (long long)seed);
}

/* Does path hold a finished run (or references) whose attribute attr is hash? */
static bool file_matches(const char *path, const char *attr, const char *hash)
{
    if (access(path, F_OK) != 0) return false;
    fl_h5r *r = fl_h5r_open(path);
    char have[64] = "";
    bool ok = r && !fl_h5r_attr_str(r, "/", attr, have, sizeof have) && strcmp(have, hash) == 0;
    fl_h5r_close(r);
    ct_clear_error();
    return ok;
}

/* Training pairs split by digit into training and validation: the last val_fraction of
 * the digits, in every one of the K colorings (rows are coloring-major), are held out,
 * so that no validation digit is seen in training under other colors. */
static int split_latents(const fl_latents *all, double frac, int colorings, fl_latents *train,
                         fl_latents *val)
{
    int64_t rows = ct_size(all->u, 0), n = rows / colorings, nv = (int64_t)(frac * (double)n);
    int64_t *ti = malloc((size_t)rows * sizeof *ti), *vi = malloc((size_t)(rows ? rows : 1) * sizeof *vi);
    if (!ti || !vi) {
        free(ti);
        free(vi);
        return fl_fail("out of memory");
    }
    int64_t nt = 0, nvv = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (r % n < n - nv)
            ti[nt++] = r;
        else
            vi[nvv++] = r;
    }
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    ct_scope *s = ct_scope_begin();
    ct_tensor *it = ct_from_data(ti, CT_SHAPE(nt), CT_I64);
    train->u = ct_unscope(ct_index_select(all->u, 0, it));
    train->z = ct_unscope(ct_index_select(all->z, 0, it));
    if (nvv > 0) {
        ct_tensor *iv = ct_from_data(vi, CT_SHAPE(nvv), CT_I64);
        val->u = ct_unscope(ct_index_select(all->u, 0, iv));
        val->z = ct_unscope(ct_index_select(all->z, 0, iv));
    }
    ct_scope_end(s);
    free(ti);
    free(vi);
    return train->u && train->z ? 0 : fl_fail_ctx("splitting the training pairs");
}

static int write_curves(fl_h5w *w, const fl_train_result *r)
{
    int64_t dc[2] = {r->n_points, r->n_terms}, dn[1] = {r->n_points}, dv[1] = {r->n_val};
    char names[FL_MAX_TERMS * 33] = "";
    size_t len = 0;
    for (int i = 0; i < r->n_terms; i++)
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? "," : "", r->term_names[i]);
    double none = 0;
    int64_t none_i = 0;
    return fl_h5w_write(w, "train/curve", FL_F64, 2, dc, r->n_points ? (void *)r->curve : &none) ||
           fl_h5w_write(w, "train/curve_steps", FL_I64, 1, dn, r->n_points ? (void *)r->curve_steps : &none_i) ||
           fl_h5w_write(w, "train/val", FL_F64, 1, dv, r->n_val ? (void *)r->val : &none) ||
           fl_h5w_write(w, "train/val_steps", FL_I64, 1, dv, r->n_val ? (void *)r->val_steps : &none_i) ||
           fl_h5w_attr_str(w, "train", "term_names", names) ||
           fl_h5w_attr_i64(w, "train", "steps", r->steps_done) ||
           fl_h5w_attr_f64(w, "train", "seconds", r->seconds) ||
           fl_h5w_attr_i64(w, "train", "skipped_nonfinite", r->skipped_nonfinite) ||
           fl_h5w_attr_i64(w, "train", "stopped_early", r->stopped_early) ||
           fl_h5w_attr_i64(w, "train", "best_step", r->best_step) ||
           fl_h5w_attr_f64(w, "train", "best_val", r->best_val);
}

/* The target images of the stored samples, for the grids: (G, 3, 28, 28). */
static int write_grid_targets(fl_h5w *w, const fl_dataset *ds, const fl_eval_result *er, int g)
{
    int64_t n = 0, idx[64];
    for (int64_t i = 0; i < er->n_stored && n < g && n < 64; i++)
        if (n == 0 || idx[n - 1] != er->stored_target[i]) idx[n++] = er->stored_target[i];
    const float *gray = fl_dataset_gray(ds, FL_TEST), *bg = fl_dataset_colors(ds, FL_TEST),
                *fg = fl_dataset_fg(ds, FL_TEST);
    int h = fl_dataset_height(ds), wd = fl_dataset_width(ds);
    float *img = malloc((size_t)(n ? n : 1) * 3 * h * wd * sizeof *img);
    if (!img) return fl_fail("out of memory");
    for (int64_t i = 0; i < n; i++)
        fl_colorize_f32(gray + idx[i] * h * wd, bg + idx[i] * 3, fg + idx[i] * 3, 1, h, wd,
                        img + i * 3 * h * wd);
    int64_t dims[4] = {n, 3, h, wd}, di[1] = {n};
    int rc = fl_h5w_write(w, "grid/targets", FL_F32, 4, dims, img) ||
             fl_h5w_write(w, "grid/target_index", FL_I64, 1, di, idx);
    free(img);
    return rc ? -1 : 0;
}

static void iso_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One NDTM cell of the grid: guidance strength, prior, terminal cost, refinement. */
typedef struct {
    double gamma;
    const char *prior, *target;
    bool refine;
    bool fixed;          /* the leakage test: targets of the fixed variant */
    char family[64];     /* "ndtm-<prior>-<target>[-refined|-fixed]": the report's series */
    const fl_prior *p;   /* when written: the prior it guided */
} ndtm_cell;

/* The mean over the samples of the distance of their estimated colors to c (3). */
static double mean_distance_to(const fl_eval_result *er, const double c[3])
{
    double sum = 0;
    for (int64_t i = 0; i < er->n_samples; i++) {
        double d2 = 0;
        for (int k = 0; k < 3; k++) d2 += (er->colors[3 * i + k] - c[k]) * (er->colors[3 * i + k] - c[k]);
        sum += sqrt(d2);
    }
    return er->n_samples ? sum / (double)er->n_samples : NAN;
}

static int write_ndtm_attrs(fl_h5w *w, const ndtm_cell *nd, const fl_config *run, const fl_eval_result *er)
{
    const fl_prior_report *pr = fl_prior_report_of(nd->p);
    double fixed[3];
    for (int k = 0; k < 3; k++) fixed[k] = fl_cfg_list_num(run, "data.fixed_color", k);
    return fl_h5w_attr_f64(w, "/", "fixed_distance", mean_distance_to(er, fixed)) ||
           fl_h5w_attr_str(w, "/", "targets_variant", fl_cfg_str(run, "data.variant")) ||
           fl_h5w_attr_f64(w, "/", "gamma", nd->gamma) ||
           fl_h5w_attr_str(w, "/", "prior_variant", nd->prior) ||
           fl_h5w_attr_str(w, "/", "ndtm_target", nd->target) ||
           fl_h5w_attr_i64(w, "/", "ndtm_refine", nd->refine) ||
           fl_h5w_attr_str(w, "/", "prior_path", fl_prior_path(nd->p)) ||
           fl_h5w_attr_f64(w, "/", "prior_kl_mean", pr->color.kl_mean) ||
           fl_h5w_attr_f64(w, "/", "prior_w1_mean", pr->color.w1_mean);
}

/* nd: an NDTM cell (family "ndtm-<prior>-<target>[-refined]", λ 0, no training), or NULL. */
static int write_run(const char *path, const fl_config *run, const char *model_key,
                     const char *eval_key, const char *family,
                     double lambda, int64_t seed, const fl_train_result *tr,
                     const fl_eval_result *er, const fl_dataset *ds, int grid_targets,
                     const ndtm_cell *nd)
{
    fl_h5w *w = fl_h5w_create(path);
    if (!w) return -1;
    char *json = fl_config_json(run, NULL, 0);
    char created[32], version[64], machine[512];
    iso_now(created, sizeof created);
    fl_machine_describe(machine, sizeof machine);
    snprintf(version, sizeof version, "%s (%s)", FL_VERSION, FL_COMMIT);
    double per_sample = er->n_samples ? er->t_sample / (double)er->n_samples : NAN;
    int rc = write_curves(w, tr) || fl_eval_write(w, "eval", er) ||
             write_grid_targets(w, ds, er, grid_targets) ||
             fl_h5w_attr_str(w, "/", "family", family) ||
             fl_h5w_attr_f64(w, "/", "lambda", lambda) || fl_h5w_attr_i64(w, "/", "seed", seed) ||
             fl_h5w_attr_str(w, "/", "config", json) ||
             fl_h5w_attr_str(w, "/", "model_key", model_key) ||
             fl_h5w_attr_str(w, "/", "eval_key", eval_key) ||
             fl_h5w_attr_str(w, "/", "code_version", version) ||
             fl_h5w_attr_str(w, "/", "created", created) ||
             fl_h5w_attr_str(w, "/", "machine", machine) ||
             fl_h5w_attr_f64(w, "/", "fiber_mean", er->fiber_mean) ||
             fl_h5w_attr_f64(w, "/", "fiber_std", er->fiber_std) ||
             fl_h5w_attr_f64(w, "/", "fiber_median", er->fiber_median) ||
             fl_h5w_attr_f64(w, "/", "kl_mean", er->color.kl_mean) ||
             fl_h5w_attr_f64(w, "/", "w1_mean", er->color.w1_mean) ||
             fl_h5w_attr_f64(w, "/", "relative_mean", er->rel_mean) ||
             fl_h5w_attr_f64(w, "/", "dfib_mean", er->dfib_mean) ||
             fl_h5w_attr_f64(w, "/", "tail_share", er->tail_share) ||
             fl_h5w_attr_f64(w, "/", "train_seconds", tr->seconds) ||
             fl_h5w_attr_f64(w, "/", "seconds_per_sample", per_sample) ||
             (nd && write_ndtm_attrs(w, nd, run, er));
    free(json);
    if (rc) {
        fl_h5w_abort(w);
        return fl_fail_ctx("%s", path);
    }
    return fl_h5w_commit(w);
}

/* One line of the log: "fiber loss m [lo, hi], relative …, d_fib …, mean KL …". */
static void log_result(const char *name, const fl_eval_result *r, const char *tail)
{
    char f[96], rel[96], d[96], kl[96], w1[96];
    fl_info("%s: fiber loss %s (median %.4f), relative %s, d_fib %s, mean KL %s, W1 %s, "
            "%.1f%% above %g%s",
            name, fl_ci_format(&r->ci.fiber, 4, f, sizeof f), r->fiber_median,
            fl_ci_format(&r->ci.rel, 3, rel, sizeof rel), fl_ci_format(&r->ci.dfib, 4, d, sizeof d),
            fl_ci_format(&r->ci.kl, 4, kl, sizeof kl), fl_ci_format(&r->ci.w1, 4, w1, sizeof w1),
            100 * r->tail_share, r->tail_loss, tail);
}

/* The reference lines into path (its lock held), unless another process just did. */
static int compute_references(const fl_config *c, const char *path, const char *hash,
                              const fl_dataset *ds, fl_subject *subj, fl_vae *vae,
                              fl_eval_result *nn)
{
    if (file_matches(path, "config_hash", hash))
        return fl_eval_read_targets(path, "lines/nearest_neighbour", nn);
    fl_info("computing the reference lines");
    fl_reference ref = {0};
    if (fl_reference_lines(c, ds, subj, vae, &ref)) return fl_fail_ctx("reference lines");
    fl_h5w *w = fl_h5w_create(path);
    int rc = !w || fl_reference_write(w, "lines", &ref) ||
             fl_h5w_attr_str(w, "/", "config_hash", hash);
    for (int i = 0; !rc && i < ref.n; i++) log_result(ref.line[i].name, &ref.line[i], "");
    fl_reference_free(&ref);
    if (rc) {
        fl_h5w_abort(w);
        return -1;
    }
    return fl_h5w_commit(w) || fl_eval_read_targets(path, "lines/nearest_neighbour", nn) ? -1 : 0;
}

/* Computes the reference lines into dir/references.h5 unless they are there; the
 * nearest-neighbour line's targets go to nn (the runs are related to it). */
static int ensure_references(const fl_config *c, const char *dir, const fl_dataset *ds,
                             fl_subject *subj, fl_vae *vae, fl_eval_result *nn)
{
    char path[4200], hash[17];
    const char *secs[] = {"data", "subject", "vae", "eval"};
    fl_config_hash(c, secs, 4, hash);
    snprintf(path, sizeof path, "%s/references.h5", dir);
    if (file_matches(path, "config_hash", hash))
        return fl_eval_read_targets(path, "lines/nearest_neighbour", nn);
    fl_lock *lk;
    if (fl_lock_take(path, true, &lk)) return -1;
    int rc = compute_references(c, path, hash, ds, subj, vae, nn);
    fl_lock_release(lk);
    return rc;
}

/* Applies the entries of sweep.overrides that name family to run; -1 and a message
 * naming the entry when one is malformed, names an unknown family or a key of the grid. */
static int apply_overrides(fl_config *run, const fl_config *c, const char *family)
{
    for (int i = 0; i < fl_cfg_len(c, "sweep.overrides"); i++) {
        const char *e = fl_cfg_list_str(c, "sweep.overrides", i);
        const char *colon = strchr(e, ':');
        if (!colon || colon == e || !strchr(colon, '='))
            return fl_fail("sweep.overrides: '%s' is not family:key=value", e);
        char fam[64];
        size_t n = (size_t)(colon - e);
        if (n >= sizeof fam || (snprintf(fam, sizeof fam, "%.*s", (int)n, e), !fl_family_find(fam)))
            return fl_fail("sweep.overrides: '%s' names no family (expected %s)", e, fl_family_names());
        const char *a = colon + 1;
        size_t klen = (size_t)(strchr(a, '=') - a);
        static const char *const grid[] = {"model.family", "train.lambda", "seed"};
        bool forbidden = strncmp(a, "sweep.", 6) == 0;
        for (size_t g = 0; g < sizeof grid / sizeof grid[0]; g++)
            forbidden |= strlen(grid[g]) == klen && strncmp(a, grid[g], klen) == 0;
        if (forbidden)
            return fl_fail("sweep.overrides: '%s' sets %.*s, which the grid decides", e, (int)klen, a);
        if (strcmp(fam, family) != 0) continue;
        if (fl_config_override(run, a)) return fl_fail_ctx("sweep.overrides: '%s'", e);
    }
    return 0;
}

/* The config of one cell of the grid: c with its family, λ and seed, and the family's
 * sweep.overrides. */
static fl_config *cell_config(const fl_config *c, const char *family, double lambda, int64_t seed)
{
    fl_config *run = fl_config_copy(c);
    if (fl_cfg_set_str(run, "model.family", family) || fl_cfg_set_num(run, "train.lambda", lambda) ||
        fl_cfg_set_num(run, "seed", (double)seed) || apply_overrides(run, c, family)) {
        fl_config_free(run);
        return NULL;
    }
    return run;
}

/* Batch sizes against n training images (n_known: exact, else an upper bound). */
static int check_sizes(const fl_config *c, int64_t n)
{
    int64_t pairs = (n - (int64_t)(fl_cfg_num(c, "sweep.val_fraction") * (double)n)) *
                    fl_cfg_int(c, "train.colorings");
    if (fl_cfg_int(c, "train.batch_size") > pairs)
        return fl_fail("train.batch_size: %lld is more than the %lld training pairs (%lld "
                       "training digits less sweep.val_fraction, × train.colorings)",
                       (long long)fl_cfg_int(c, "train.batch_size"), (long long)pairs, (long long)n);
    const char *own[] = {"subject.batch_size", "vae.batch_size"};
    for (int i = 0; i < 2; i++)
        if (fl_cfg_int(c, own[i]) > n)
            return fl_fail("%s: %lld is more than the %lld training images", own[i],
                           (long long)fl_cfg_int(c, own[i]), (long long)n);
    return 0;
}

/* What the settings alone can tell is wrong, before any dataset, subject or VAE is
 * built: each cell's family settings, the conv networks of the subject and VAE, and
 * the batch sizes when data.n_train bounds the training set. */
static int check_settings(const fl_config *c)
{
    fl_conv_spec spec;
    if (strcmp(fl_cfg_str(c, "subject.kind"), "torchscript") != 0 &&
        fl_conv_spec_from_config(c, "subject", 1, 1, &spec))
        return -1;
    if (fl_conv_spec_from_config(c, "vae", 3, 1, &spec)) return -1;
    int z_dim = fl_subject_config_dim(c);
    for (int fi = 0; fi < fl_cfg_len(c, "sweep.families"); fi++) {
        fl_config *run = cell_config(c, fl_cfg_list_str(c, "sweep.families", fi), 0, 0);
        int rc = !run || fl_fiber_check(run, z_dim);
        fl_config_free(run);
        if (rc) return -1;
    }
    if (fl_cfg_len(c, "sweep.ndtm_gammas") > 0) {   /* NDTM's settings, as each cell reads them */
        fl_ndtm_opts o;
        if (fl_ndtm_opts_from_config(c, (int)fl_cfg_int(c, "prior.T"), &o)) return -1;
        for (int i = 0, n = (int)fl_cfg_len(c, "sweep.ndtm_priors"); i < n; i++) {
            /* each prior's own settings (a pixel prior's UNet size) */
            bool pixel = strncmp(fl_cfg_list_str(c, "sweep.ndtm_priors", i), "pixel-", 6) == 0;
            fl_config *pc = fl_config_copy(c);
            int rc = !pc || fl_cfg_set_str(pc, "prior.space", pixel ? "pixel" : "latent") || fl_prior_check(pc);
            fl_config_free(pc);
            if (rc) return -1;
        }
    }
    return fl_cfg_int(c, "data.n_train") > 0 ? check_sizes(c, fl_cfg_int(c, "data.n_train")) : 0;
}

/* Training pairs of one space, split into training and validation, made when first
 * needed. */
typedef struct {
    bool ready;
    fl_latents train, val;
} space_pairs;

static int pairs_for(space_pairs *p, fl_space space, const fl_config *c, fl_vae *vae,
                     fl_subject *subj, const fl_dataset *ds)
{
    if (p->ready) return 0;
    int k = (int)fl_cfg_int(c, "train.colorings");
    fl_latents all = {0};
    int rc = fl_latents_compute(space, vae, subj, ds, FL_TRAIN, k, &all) ||
             split_latents(&all, fl_cfg_num(c, "sweep.val_fraction"), k, &p->train, &p->val);
    fl_latents_free(&all);
    p->ready = !rc;
    return rc ? -1 : 0;
}

/* The files of one cell. */
typedef struct {
    char path[4400], ckpt[4400], model_path[4400], mk[17], ek[17];
} cell_files;

static bool cell_done(const cell_files *f)
{
    return file_matches(f->path, "model_key", f->mk) && file_matches(f->path, "eval_key", f->ek);
}

/* What every cell of a sweep shares: the data, subject, VAE, the nearest-neighbour line,
 * the training pairs of each space and NDTM's priors (each made when first needed). */
typedef struct {
    const fl_dataset *ds;
    fl_subject *subj;
    fl_vae *vae;
    const fl_eval_result *nn;
    space_pairs pairs[FL_SPACE_COUNT];
    fl_prior *priors[4];   /* latent correlated, latent ood, pixel correlated, pixel ood */
    fl_dataset *ds_fixed;  /* the leakage test's targets, opened when first needed */
    fl_sweep_summary *sum;
} sweep_ctx;

/* One cell whose lock is held: scored again from the saved model when only the
 * evaluation settings changed; trained otherwise. */
static int make_cell(const fl_config *run, const char *name, const cell_files *f, sweep_ctx *x)
{
    const fl_dataset *ds = x->ds;
    fl_subject *subj = x->subj;
    fl_vae *vae = x->vae;
    const fl_eval_result *nn = x->nn;
    space_pairs *pairs = x->pairs;
    fl_sweep_summary *sum = x->sum;
    const char *path = f->path, *ckpt = f->ckpt, *model_path = f->model_path, *mk = f->mk,
               *ek = f->ek;
    char have[17];
    const char *family = fl_cfg_str(run, "model.family");
    double lambda = fl_cfg_num(run, "train.lambda");
    int64_t seed = fl_cfg_int(run, "seed");
    fl_fiber *m = NULL;
    fl_train_result tr = {0};
    int rc = 0;
    double tt = fl_now();
    if (access(model_path, F_OK) == 0 && !fl_fiber_saved_key(model_path, have) && strcmp(have, mk) == 0) {
        fl_config *saved = NULL;
        m = fl_fiber_open_saved(model_path, &saved, &tr);
        fl_config_free(saved);
        if (!m) return fl_fail_ctx("%s", name);
        fl_info("%s: trained before (%s); scoring it with the new evaluation settings", name, model_path);
        sum->runs_rescored++;
    } else {
        const fl_family *fam = fl_family_find(family);
        if (pairs_for(&pairs[fam->space], fam->space, run, vae, subj, ds)) return -1;
        sum->seconds_setup += fl_now() - tt;
        tt = fl_now();
        fl_fiber_train_opts fo;
        fl_fiber_train_opts_from_config(&fo, run);
        m = fl_fiber_new(run, &pairs[fam->space].train);
        if (!m || fl_fiber_train(m, run, &fo, vae, subj, &pairs[fam->space].train,
                                 &pairs[fam->space].val, ckpt, &tr) ||
            fl_fiber_use_ema(m) || fl_fiber_save(m, run, &tr, model_path))
            rc = fl_fail_ctx("%s", name);
        else
            unlink(ckpt); /* the saved model replaces the training state */
        sum->seconds_train += fl_now() - tt;
        sum->runs_trained += !rc;
    }
    fl_eval_result er = {0};
    fl_sampler smp = {0};
    if (!rc) {
        double te = fl_now();
        fl_sample_opts so = fl_sample_opts_eval(run);
        fl_fiber_sampler(m, vae, &so, &smp);
        char took[48];
        snprintf(took, sizeof took, " (trained in %.0f s)", tr.seconds);
        if (fl_evaluate(run, ds, subj, &smp, &er) || fl_eval_relate(run, &er, nn) ||
            write_run(path, run, mk, ek, family, lambda, seed, &tr, &er, ds,
                      (int)fl_cfg_int(run, "sweep.grid_targets"), NULL))
            rc = fl_fail_ctx("%s", name);
        else
            log_result(name, &er, took);
        sum->seconds_eval += fl_now() - te;
    }
    fl_sampler_free(&smp);
    fl_eval_result_free(&er);
    fl_train_result_free(&tr);
    fl_fiber_free(m);
    return rc;
}

/* One NDTM cell whose lock is held: its prior from the cache (trained the first time),
 * then k guided samples per target, scored like a family's. */
static int make_ndtm_cell(const fl_config *run, const char *name, const cell_files *f,
                          const ndtm_cell *cell, sweep_ctx *x)
{
    int which = 2 * (strncmp(cell->prior, "pixel-", 6) == 0) + (strstr(cell->prior, "ood") != NULL);
    double tt = fl_now();
    if (!x->priors[which] && fl_prior_open(run, x->ds, x->vae, &x->priors[which]))
        return fl_fail_ctx("%s", name);
    x->sum->seconds_setup += fl_now() - tt;
    ndtm_cell nd = *cell;
    nd.p = x->priors[which];
    fl_ndtm_opts no;
    if (fl_ndtm_opts_from_config(run, (int)fl_cfg_int(run, "prior.T"), &no)) return fl_fail_ctx("%s", name);
    no.refine_steps = cell->refine ? (int)fl_cfg_int(run, "ndtm.refine_steps") : 0;
    fl_ndtm_prior np = fl_ndtm_prior_of(nd.p);
    /* the leakage test's targets: the same digits, every one in data.fixed_color */
    if (cell->fixed && !x->ds_fixed && fl_dataset_open(run, &x->ds_fixed)) return fl_fail_ctx("%s", name);
    const fl_dataset *ds = cell->fixed ? x->ds_fixed : x->ds;
    fl_sampler smp = {0};
    fl_eval_result er = {0};
    fl_train_result tr = {0};
    double te = fl_now();
    int rc = 0;
    /* the nearest-neighbour line is of the benchmark's targets: no relative loss for others */
    if (fl_ndtm_sampler(&np, x->subj, &no, &smp) || fl_evaluate(run, ds, x->subj, &smp, &er) ||
        (!cell->fixed && fl_eval_relate(run, &er, x->nn)) ||
        write_run(f->path, run, f->mk, f->ek, nd.family, 0, fl_cfg_int(run, "seed"), &tr,
                  &er, ds, (int)fl_cfg_int(run, "sweep.grid_targets"), &nd))
        rc = fl_fail_ctx("%s", name);
    else
        log_result(name, &er, "");
    x->sum->seconds_eval += fl_now() - te;
    x->sum->runs_trained += !rc;
    fl_sampler_free(&smp);
    fl_eval_result_free(&er);
    return rc;
}

/* One cell: reused when its run file has both keys, else made under its lock
 * (runs/<name>.h5.lock), so two processes sharing the sweep folder make it once. wait:
 * block while another process holds it; else return 1 at once (left for later). */
static int run_cell(const fl_config *run, const char *name, const ndtm_cell *nd, bool wait,
                    sweep_ctx *x)
{
    fl_sweep_summary *sum = x->sum;
    cell_files f;
    snprintf(f.path, sizeof f.path, "%s/runs/%s.h5", sum->dir, name);
    snprintf(f.ckpt, sizeof f.ckpt, "%s/checkpoints/%s.ckpt", sum->dir, name);
    snprintf(f.model_path, sizeof f.model_path, "%s/models/%s.h5", sum->dir, name);
    if (nd) {   /* what an NDTM cell's samples depend on: no fiber model is trained, and its
                 * prior is the cached one whose name carries the prior's own key */
        const char *secs[] = {"data", "subject", "vae", "prior", "ndtm", "seed"};
        char prior[4200];
        if (fl_prior_cache_path(run, prior, sizeof prior)) return -1;
        char *json = fl_config_json(run, secs, 6);
        if (!json) return fl_fail("out of memory");
        uint64_t h = fl_fnv1a64(fl_fnv1a64(FL_FNV_OFFSET, json, strlen(json)), prior, strlen(prior));
        free(json);
        snprintf(f.mk, sizeof f.mk, "%016llx", (unsigned long long)h);
    } else {
        fl_config_hash_role(run, FL_ROLE_MODEL, f.mk);
    }
    fl_config_hash_role(run, FL_ROLE_EVAL, f.ek);
    bool done = cell_done(&f);
    fl_lock *lk = NULL;
    if (!done) {
        int got = fl_lock_take(f.path, wait, &lk);
        if (got < 0) return -1;
        if (got == 1) {
            fl_info("%s: another process is making it; back to it after the others", name);
            return 1;
        }
        done = cell_done(&f);   /* made by the process we waited for */
    }
    int rc = 0;
    if (done) {
        fl_info("%s: done before, reused", name);
        sum->runs_reused++;
    } else {
        fl_remove_temps_of(f.ckpt);   /* a killed run's; the lock is held */
        fl_remove_temps_of(f.model_path);
        rc = (nd ? make_ndtm_cell(run, name, &f, nd, x) : make_cell(run, name, &f, x)) ? -1 : 0;
    }
    fl_lock_release(lk);
    return rc;
}

int fl_sweep_run(const fl_config *c, fl_sweep_summary *sum)
{
    return fl_sweep_run_share(c, NULL, sum);
}

/* The grid: the families' cells (family-major, then λ, then seed), then the NDTM cells
 * (γ-major, then prior, terminal cost, refinement, seed), then the leakage cells (γ-major,
 * then prior, terminal cost, seed). */
typedef struct {
    int nf, nl, ns, ng, np, nt, nr;
    int nc;              /* the leakage test's priors: the correlated ones of sweep.ndtm_priors */
    int n_fam, n_ndtm, n_leak;
} grid_dims;

static void grid_of(const fl_config *c, grid_dims *g)
{
    g->nf = fl_cfg_len(c, "sweep.families");
    g->nl = fl_cfg_len(c, "sweep.lambdas");
    g->ns = fl_cfg_len(c, "sweep.seeds");
    g->ng = fl_cfg_len(c, "sweep.ndtm_gammas");
    g->np = fl_cfg_len(c, "sweep.ndtm_priors");
    g->nt = fl_cfg_len(c, "sweep.ndtm_targets");
    g->nr = fl_cfg_len(c, "sweep.ndtm_refine");
    g->n_fam = g->nf * g->nl * g->ns;
    g->n_ndtm = g->ng * g->np * g->nt * g->nr * g->ns;
    g->nc = 0;
    for (int i = 0; i < g->np; i++) g->nc += strstr(fl_cfg_list_str(c, "sweep.ndtm_priors", i), "correlated") != NULL;
    g->n_leak = fl_cfg_bool(c, "sweep.ndtm_leakage") ? g->ng * (g->nc ? g->nc : 1) * g->nt * g->ns : 0;
}

int fl_sweep_grid_size(const fl_config *c)
{
    grid_dims g;
    grid_of(c, &g);
    return g.n_fam + g.n_ndtm + g.n_leak;
}

/* NDTM cell j (0-based among the NDTM cells) and its seed. */
static void ndtm_cell_of(const fl_config *c, const grid_dims *g, int j, ndtm_cell *o, int64_t *seed)
{
    memset(o, 0, sizeof *o);
    int per_g = g->np * g->nt * g->nr * g->ns;
    o->gamma = fl_cfg_list_num(c, "sweep.ndtm_gammas", j / per_g);
    o->prior = fl_cfg_list_str(c, "sweep.ndtm_priors", j / (g->nt * g->nr * g->ns) % g->np);
    o->target = fl_cfg_list_str(c, "sweep.ndtm_targets", j / (g->nr * g->ns) % g->nt);
    o->refine = strcmp(fl_cfg_list_str(c, "sweep.ndtm_refine", j / g->ns % g->nr), "on") == 0;
    *seed = (int64_t)fl_cfg_list_num(c, "sweep.seeds", j % g->ns);
    snprintf(o->family, sizeof o->family, "ndtm-%s-%s%s", o->prior, o->target, o->refine ? "-refined" : "");
}

/* The k-th correlated prior of sweep.ndtm_priors ("correlated" when there is none). */
static const char *leak_prior(const fl_config *c, int k)
{
    for (int i = 0, n = (int)fl_cfg_len(c, "sweep.ndtm_priors"); i < n; i++) {
        const char *p = fl_cfg_list_str(c, "sweep.ndtm_priors", i);
        if (strstr(p, "correlated") && k-- == 0) return p;
    }
    return "correlated";
}

/* Leakage cell j (0-based among them): γ-major, then prior, terminal cost, seed. */
static void leak_cell_of(const fl_config *c, const grid_dims *g, int j, ndtm_cell *o, int64_t *seed)
{
    memset(o, 0, sizeof *o);
    int nc = g->nc ? g->nc : 1;
    o->gamma = fl_cfg_list_num(c, "sweep.ndtm_gammas", j / (nc * g->nt * g->ns));
    o->prior = leak_prior(c, j / (g->nt * g->ns) % nc);
    o->target = fl_cfg_list_str(c, "sweep.ndtm_targets", j / g->ns % g->nt);
    o->fixed = true;
    *seed = (int64_t)fl_cfg_list_num(c, "sweep.seeds", j % g->ns);
    snprintf(o->family, sizeof o->family, "ndtm-%s-%s-fixed", o->prior, o->target);
}

/* The config of an NDTM cell: c with its γ, terminal cost, prior and seed. */
static fl_config *ndtm_config(const fl_config *c, const ndtm_cell *o, int64_t seed)
{
    fl_config *run = fl_config_copy(c);
    bool pixel = strncmp(o->prior, "pixel-", 6) == 0;
    if (!run || fl_cfg_set_num(run, "ndtm.gamma", o->gamma) || fl_cfg_set_str(run, "ndtm.target", o->target) ||
        fl_cfg_set_str(run, "prior.variant", o->prior + (pixel ? 6 : 0)) ||
        fl_cfg_set_str(run, "prior.space", pixel ? "pixel" : "latent") || fl_cfg_set_num(run, "seed", (double)seed) ||
        (o->fixed && fl_cfg_set_str(run, "data.variant", "fixed"))) {
        fl_config_free(run);
        return NULL;
    }
    return run;
}

int fl_sweep_run_share(const fl_config *c, const fl_sweep_share *share, fl_sweep_summary *sum)
{
    fl_sweep_share all = {0, 1, 0, true, false};
    if (!share) share = &all;
    memset(sum, 0, sizeof *sum);
    double t0 = fl_now();
    fl_sweep_dir(c, sum->dir, sizeof sum->dir);
    grid_dims gd;
    grid_of(c, &gd);
    int grid = sum->runs_grid = gd.n_fam + gd.n_ndtm + gd.n_leak;
    if (grid == 0)
        return fl_fail("sweep: the grid is empty (sweep.families, sweep.lambdas, sweep.seeds; "
                       "sweep.ndtm_gammas, sweep.ndtm_priors, sweep.ndtm_targets, sweep.ndtm_refine)");
    if (share->parts < 1 || share->part < 0 || share->part >= share->parts)
        return fl_fail("sweep: share %d of %d does not exist", share->part, share->parts);
    for (int i = 0; i < grid; i++) sum->runs_total += i % share->parts == share->part;
    if (check_settings(c)) return -1;
    char sub[4200];
    const char *subs[] = {"", "/runs", "/checkpoints", "/models", "/grids"};
    for (int i = 0; i < 5; i++) {
        snprintf(sub, sizeof sub, "%s%s", sum->dir, subs[i]);
        if (fl_mkdir_p(sub)) return -1;
        fl_remove_stale_temps(sub, "");   /* left by a run of this sweep that was killed */
    }

    fl_dataset *ds = NULL;
    fl_subject *subj = NULL;
    fl_vae *vae = NULL;
    fl_eval_result nn = {0};
    sweep_ctx x = {0};
    x.sum = sum;
    x.nn = &nn;
    int rc = 0;
    if (fl_dataset_open(c, &ds) || check_sizes(c, fl_dataset_count(ds, FL_TRAIN)) || fl_subject_open(c, ds, &subj) ||
        fl_vae_open(c, ds, &vae) || ensure_references(c, sum->dir, ds, subj, vae, &nn)) {
        rc = -1;
        goto done;
    }
    x.ds = ds;
    x.subj = subj;
    x.vae = vae;
    sum->seconds_setup = fl_now() - t0;
    if (share->setup_only) goto done;

    /* the first pass makes the cells no other process holds; the second waits for the
     * ones another process was making, and so reuses them */
    bool *later = calloc((size_t)grid, sizeof *later);
    if (!later) rc = fl_fail("out of memory");
    int start = ((share->start % grid) + grid) % grid;
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (int k = 0; k < grid && !rc; k++) {
            int i = (start + k) % grid;
            if (i % share->parts != share->part || (pass == 1 && !later[i])) continue;
            char name[160];
            fl_config *run;
            ndtm_cell nd, *ndp = NULL;
            if (i < gd.n_fam) {
                int fi = i / (gd.nl * gd.ns), li = i / gd.ns % gd.nl, si = i % gd.ns;
                const char *family = fl_cfg_list_str(c, "sweep.families", fi);
                double lambda = fl_cfg_list_num(c, "sweep.lambdas", li);
                int64_t seed = (int64_t)fl_cfg_list_num(c, "sweep.seeds", si);
                fl_run_name(family, lambda, seed, name, sizeof name);
                run = cell_config(c, family, lambda, seed);
            } else {
                int64_t seed;
                if (i < gd.n_fam + gd.n_ndtm) ndtm_cell_of(c, &gd, i - gd.n_fam, &nd, &seed);
                else leak_cell_of(c, &gd, i - gd.n_fam - gd.n_ndtm, &nd, &seed);
                snprintf(name, sizeof name, "%s_g%g_seed%lld", nd.family, nd.gamma, (long long)seed);
                run = ndtm_config(c, &nd, seed);
                ndp = &nd;
            }
            int got = run ? run_cell(run, name, ndp, pass == 1, &x) : -1;
            fl_config_free(run);
            later[i] = got == 1;
            rc = got < 0;
        }
    free(later);
    if (!rc && share->report) {
        double tr = fl_now();
        rc = fl_sweep_report(sum->dir);
        sum->seconds_report = fl_now() - tr;
    }
done:
    fl_eval_result_free(&nn);
    for (int i = 0; i < FL_SPACE_COUNT; i++) {
        fl_latents_free(&x.pairs[i].train);
        fl_latents_free(&x.pairs[i].val);
    }
    for (int i = 0; i < 4; i++) fl_prior_free(x.priors[i]);
    fl_dataset_free(x.ds_fixed);
    fl_vae_free(vae);
    fl_subject_free(subj);
    fl_dataset_free(ds);
    sum->seconds_total = fl_now() - t0;
    sum->peak_rss_mib = fl_peak_rss_mib();
    return rc ? -1 : 0;
}
