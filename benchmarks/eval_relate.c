/* The numbers beyond the paper that need more than one result: the relative fiber loss
 * (against the nearest-neighbour line) and the bootstrap intervals of every mean
 * (DESIGN.md §5). The targets are resampled with replacement, each bringing all of its
 * samples, so the interval reflects which digits were drawn as targets — the samples
 * of one target are not independent draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/eval.h"
#include "core/colorlaw.h"
#include "core/log.h"
#include "core/rng.h"

typedef struct {
    int64_t *row;            /* (n) the target row of each sample */
    double *count, *loss, *dfib, *tail, *nn;   /* (N) per target: samples, sums, NN loss */
} per_target;

static void per_target_free(per_target *p)
{
    free(p->row);
    free(p->count);
    free(p->loss);
    free(p->dfib);
    free(p->tail);
    free(p->nn);
}

/* Rows of r's targets indexed by test position, and the per-target sums. */
static int per_target_of(const fl_eval_result *r, const fl_eval_result *nn, per_target *p)
{
    memset(p, 0, sizeof *p);
    int64_t N = r->n_targets, n = r->n_samples, top = 0;
    for (int64_t t = 0; t < N; t++) top = r->target_index[t] > top ? r->target_index[t] : top;
    for (int64_t t = 0; nn && t < nn->n_targets; t++) top = nn->target_index[t] > top ? nn->target_index[t] : top;
    int64_t *rowof = malloc((size_t)(top + 1) * sizeof *rowof);
    p->row = malloc((size_t)(n ? n : 1) * sizeof *p->row);
    size_t nb = (size_t)(N ? N : 1) * sizeof(double);
    p->count = calloc(1, nb), p->loss = calloc(1, nb), p->dfib = calloc(1, nb);
    p->tail = calloc(1, nb), p->nn = malloc(nb);
    if (!rowof || !p->row || !p->count || !p->loss || !p->dfib || !p->tail || !p->nn) {
        free(rowof);
        per_target_free(p);
        return fl_fail("out of memory");
    }
    for (int64_t i = 0; i <= top; i++) rowof[i] = -1;
    for (int64_t t = 0; t < N; t++) rowof[r->target_index[t]] = t;
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        int64_t s = r->sample_target[i], t = s >= 0 && s <= top ? rowof[s] : -1;
        if (t < 0) {
            rc = fl_fail("%s: sample %lld has target %lld, which is not among its targets", r->name,
                         (long long)i, (long long)s);
            break;
        }
        p->row[i] = t;
        p->count[t] += 1;
        p->loss[t] += r->loss[i];
        p->dfib[t] += r->dfib ? r->dfib[i] : NAN;
        p->tail[t] += !(r->loss[i] <= r->tail_loss);
    }
    int64_t matched = 0;
    for (int64_t t = 0; t < N; t++) p->nn[t] = NAN;
    for (int64_t t = 0; nn && t < nn->n_targets; t++) {
        int64_t row = rowof[nn->target_index[t]];
        if (row >= 0) {
            p->nn[row] = nn->target_loss[t];
            rowof[nn->target_index[t]] = -1;   /* each target once */
            matched++;
        }
    }
    if (!rc && nn && matched < N)
        rc = fl_fail("%s: the line %s has %lld of its %lld targets (the same eval.n_targets?)",
                     r->name, nn->name, (long long)matched, (long long)N);
    free(rowof);
    if (rc) per_target_free(p);
    return rc;
}

int fl_eval_relate(const fl_config *c, fl_eval_result *r, const fl_eval_result *nn)
{
    int64_t N = r->n_targets, n = r->n_samples;
    per_target p;
    if (N <= 0 || n <= 0) return fl_fail("%s: no samples to relate", r->name);
    if (per_target_of(r, nn, &p)) return -1;
    int rc = 0;
    if (nn) {
        free(r->rel_loss);
        r->rel_loss = malloc((size_t)n * sizeof *r->rel_loss);
        if (!r->rel_loss) rc = fl_fail("out of memory");
        for (int64_t i = 0; !rc && i < n; i++) r->rel_loss[i] = (float)(r->loss[i] / p.nn[p.row[i]]);
        double s = 0, w = 0;
        for (int64_t t = 0; t < N; t++) s += p.count[t] * p.nn[t], w += p.count[t];
        r->nn_mean = s / w;
        r->rel_mean = r->fiber_mean / r->nn_mean;
    } else {
        free(r->rel_loss);
        r->rel_loss = NULL;
        r->nn_mean = r->rel_mean = NAN;
    }
    r->n_boot = (int)fl_cfg_int(c, "eval.bootstrap");
    r->ci_level = fl_cfg_num(c, "eval.ci_level");
    r->ci.fiber = fl_ci_none(r->fiber_mean);
    r->ci.rel = fl_ci_none(r->rel_mean);
    r->ci.dfib = fl_ci_none(r->dfib_mean);
    r->ci.kl = fl_ci_none(r->color.kl_mean);
    r->ci.w1 = fl_ci_none(r->color.w1_mean);
    r->ci.tail = fl_ci_none(r->tail_share);
    int B = r->n_boot;
    fl_colorlaw law = fl_colorlaw_paper();
    fl_color_resampler *cr = rc || B == 0 ? NULL : fl_color_resampler_new(&law, r->colors, n, r->kl_bins);
    double *draw = B ? malloc((size_t)B * 6 * sizeof *draw) : NULL;
    double *mult = malloc((size_t)N * sizeof *mult), *w = malloc((size_t)n * sizeof *w);
    if (!rc && B > 0 && (!cr || !draw || !mult || !w)) rc = cr ? fl_fail("out of memory") : -1;
    if (!rc && B > 0) {
        /* W1 of a resample is a Riemann sum: shift it by the sum's error on the full set */
        fl_color_metrics m;
        for (int64_t i = 0; i < n; i++) w[i] = 1;
        fl_color_resampler_eval(cr, w, &m);
        double w1_shift = r->color.w1_mean - m.w1_mean;
        fl_rng g;
        fl_rng_seed_stream(&g, (uint64_t)fl_cfg_int(c, "seed"), 0xb0075ull);
        for (int b = 0; b < B; b++) {
            memset(mult, 0, (size_t)N * sizeof *mult);
            for (int64_t t = 0; t < N; t++) mult[fl_rng_below(&g, (uint64_t)N)] += 1;
            double cnt = 0, loss = 0, dfib = 0, tail = 0, nns = 0;
            for (int64_t t = 0; t < N; t++) {
                if (mult[t] == 0) continue;
                cnt += mult[t] * p.count[t];
                loss += mult[t] * p.loss[t];
                dfib += mult[t] * p.dfib[t];
                tail += mult[t] * p.tail[t];
                nns += mult[t] * p.count[t] * p.nn[t];
            }
            for (int64_t i = 0; i < n; i++) w[i] = mult[p.row[i]];
            fl_color_resampler_eval(cr, w, &m);
            double *d = draw + 6 * (size_t)b;
            d[0] = loss / cnt;
            d[1] = nn ? (loss / cnt) / (nns / cnt) : NAN;
            d[2] = dfib / cnt;
            d[3] = m.kl_mean;
            d[4] = m.w1_mean + w1_shift;
            d[5] = tail / cnt;
        }
        /* the draws of one metric at a time */
        fl_ci *out[6] = {&r->ci.fiber, &r->ci.rel, &r->ci.dfib, &r->ci.kl, &r->ci.w1, &r->ci.tail};
        double *col = malloc((size_t)B * sizeof *col);
        if (!col) rc = fl_fail("out of memory");
        for (int j = 0; !rc && j < 6; j++) {
            for (int b = 0; b < B; b++) col[b] = draw[6 * (size_t)b + j];
            *out[j] = fl_ci_percentile(out[j]->mean, col, B, r->ci_level);
            /* KL and W1 of a histogram are biased upward, more so on a resample (it holds
             * fewer distinct samples): their draws sit above the estimate. Shift the
             * interval by that bias (the draws' median − the estimate), so it keeps the
             * spread from the choice of targets around the estimate; both are ≥ 0. */
            if ((j == 3 || j == 4) && !isnan(out[j]->lo)) {
                double bias = col[B / 2] - out[j]->mean;   /* col is sorted */
                out[j]->lo = fmax(0, out[j]->lo - bias);
                out[j]->hi = fmax(out[j]->lo, out[j]->hi - bias);
            }
        }
        free(col);
    }
    fl_color_resampler_free(cr);
    free(draw);
    free(mult);
    free(w);
    per_target_free(&p);
    return rc;
}

int fl_eval_read_targets(const char *path, const char *group, fl_eval_result *r)
{
    memset(r, 0, sizeof *r);
    fl_h5r *h = fl_h5r_open(path);
    if (!h) return -1;
    char ti[600], tl[600];
    snprintf(ti, sizeof ti, "%s/target_index", group);
    snprintf(tl, sizeof tl, "%s/target_loss", group);
    int64_t n1 = 0, n2 = 0;
    int rc = fl_h5r_attr_str(h, group, "name", r->name, sizeof r->name) ||
             fl_h5r_attr_f64(h, group, "fiber_mean", &r->fiber_mean);
    if (!rc) {
        r->target_index = fl_h5r_read_alloc(h, ti, FL_I64, &n1);
        r->target_loss = r->target_index ? fl_h5r_read_alloc(h, tl, FL_F32, &n2) : NULL;
        rc = !r->target_loss;
        if (!rc && n1 != n2) rc = fl_fail("%s: %s and %s differ in length", path, ti, tl);
    }
    fl_h5r_close(h);
    r->n_targets = n1;
    if (rc) {
        fl_eval_result_free(r);
        return fl_fail_ctx("%s: the line %s", path, group);
    }
    return 0;
}
