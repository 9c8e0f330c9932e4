/* Colorize, the background estimate and decolorize (DESIGN.md §1), on arrays and on
 * tensors; and the color draws of the three variants. */
#include "datasets/colormnist.h"

#include <math.h>
#include <string.h>

#include "core/log.h"

static const char *const variant_names[FL_VARIANT_COUNT] = {"correlated", "ood", "fixed"};

const char *fl_variant_name(fl_variant v) { return v < FL_VARIANT_COUNT ? variant_names[v] : "?"; }

int fl_variant_parse(const char *name, fl_variant *out)
{
    for (int i = 0; i < FL_VARIANT_COUNT; i++)
        if (strcmp(name, variant_names[i]) == 0) {
            *out = (fl_variant)i;
            return 0;
        }
    return fl_fail("unknown color variant '%s' (%s)", name, FL_VARIANTS);
}

double fl_color_fg(double b)
{
    double t = b + 0.5;
    return t - floor(t);
}

/* A color in [0, 1) rounded to float; a value that rounds up to 1 wraps to 0. */
static float quantize(double c)
{
    c -= floor(c);
    float f = (float)c;
    return f < 1.0f ? f : 0.0f;
}

void fl_draw_colors(fl_variant v, const fl_colorlaw *law, const double fixed[3], fl_rng *r,
                    int64_t n, float *bg, float *fg)
{
    for (int64_t i = 0; i < n; i++) {
        float *b = bg + 3 * i, *f = fg + 3 * i;
        switch (v) {
        case FL_VARIANT_CORRELATED:
            for (int k = 0; k < 3; k++) b[k] = quantize(fl_colorlaw_sample(law, r));
            for (int k = 0; k < 3; k++) f[k] = (float)fl_color_fg(b[k]);
            break;
        case FL_VARIANT_OOD:
            for (int k = 0; k < 3; k++) b[k] = quantize(fl_colorlaw_sample(law, r));
            for (int k = 0; k < 3; k++) f[k] = quantize(fl_colorlaw_sample(law, r));
            break;
        default: /* FL_VARIANT_FIXED */
            for (int k = 0; k < 3; k++) b[k] = quantize(fixed[k]);
            for (int k = 0; k < 3; k++) f[k] = (float)fl_color_fg(b[k]);
            break;
        }
    }
}

void fl_colorize_f32(const float *gray, const float *bg, const float *fg, int64_t n, int h,
                     int w, float *out)
{
    size_t px = (size_t)h * (size_t)w;
    for (int64_t i = 0; i < n; i++) {
        const float *x = gray + (size_t)i * px;
        for (int k = 0; k < 3; k++) {
            double b = bg[3 * i + k], f = fg[3 * i + k];
            float *o = out + ((size_t)i * 3 + (size_t)k) * px;
            for (size_t j = 0; j < px; j++) {
                double g = x[j];
                o[j] = (float)((1.0 - g) * b + g * f);
            }
        }
    }
}

/* min over c in [lo, hi] of Σ_j (a_j − c)², with Σ a and Σ a² given, and its argmin. */
static double clipped_residual(double sum, double sum2, double n, double lo, double hi, double *c)
{
    double mean = sum / n;
    *c = mean < lo ? lo : mean > hi ? hi : mean;
    double r = sum2 - sum * mean + n * (mean - *c) * (mean - *c);   /* Σ(a−ā)² + n(ā−c)² */
    return r > 0 ? r : 0;
}

double fl_fiber_distance_f32(const float *img, const float *gray, int h, int w, double c_best[3])
{
    size_t px = (size_t)h * (size_t)w;
    double total = 0;
    for (int k = 0; k < 3; k++) {
        const float *x = img + (size_t)k * px;
        /* branch +: a = x̂ − 0.5 x*, c ∈ [0, 0.5]; branch −: a = x̂ + 0.5 x*, c ∈ [0.5, 1] */
        double sp = 0, sp2 = 0, sm = 0, sm2 = 0;
        for (size_t j = 0; j < px; j++) {
            double ap = (double)x[j] - 0.5 * gray[j], am = (double)x[j] + 0.5 * gray[j];
            sp += ap;
            sp2 += ap * ap;
            sm += am;
            sm2 += am * am;
        }
        double cp, cm;
        double rp = clipped_residual(sp, sp2, (double)px, 0.0, 0.5, &cp);
        double rm = clipped_residual(sm, sm2, (double)px, 0.5, 1.0, &cm);
        total += rp <= rm ? rp : rm;
        if (c_best) c_best[k] = rp <= rm ? cp : cm;
    }
    return sqrt(total / (3.0 * (double)px));
}

/* b̂ of one channel plane, exact in double for a constant column. */
static double left_mean(const float *plane, int h, int w)
{
    double s = 0;
    for (int r = 0; r < h; r++) s += plane[(size_t)r * (size_t)w];
    return s / h;
}

void fl_background_f32(const float *img, int64_t n, int h, int w, float *bg)
{
    size_t px = (size_t)h * (size_t)w;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++)
            bg[3 * i + k] = (float)left_mean(img + ((size_t)i * 3 + (size_t)k) * px, h, w);
}

void fl_decolorize_f32(const float *img, int64_t n, int h, int w, float *gray)
{
    size_t px = (size_t)h * (size_t)w;
    for (int64_t i = 0; i < n; i++) {
        const float *x = img + (size_t)i * 3 * px;
        double b[3], inv[3];
        for (int k = 0; k < 3; k++) {
            b[k] = left_mean(x + (size_t)k * px, h, w);
            inv[k] = 1.0 / (fl_color_fg(b[k]) - b[k]);
        }
        float *g = gray + (size_t)i * px;
        for (size_t j = 0; j < px; j++) {
            double s = (x[j] - b[0]) * inv[0] + (x[px + j] - b[1]) * inv[1] +
                       (x[2 * px + j] - b[2]) * inv[2];
            g[j] = (float)(s / 3.0);
        }
    }
}

/* ---- tensors ------------------------------------------------------------------------ */

static bool check_shape(const char *fn, const ct_tensor *x, int ndim, int dim1, int64_t dim1_size)
{
    if (ct_ndim(x) == ndim && (dim1 < 0 || ct_size(x, dim1) == dim1_size)) return true;
    char d[128];
    ct_describe(x, d, sizeof d);
    ct_set_error("%s: expected a %d-dim tensor with %lld at dim %d, got %s", fn, ndim,
                 (long long)dim1_size, dim1, d);
    return false;
}

ct_tensor *fl_color_fg_t(const ct_tensor *bg)
{
    if (!bg) return NULL;
    ct_scope *s = ct_scope_begin();
    ct_tensor *f = ct_scope_keep(s, ct_remainders(ct_adds(bg, 0.5), 1.0));
    ct_scope_end(s);
    return f;
}

/* b̂ in double, (B, 3). */
static ct_tensor *background_f64(const ct_tensor *x)
{
    ct_tensor *col = ct_select(x, 3, 0);                         /* (B, 3, H) */
    return ct_mean_dim(ct_to_dtype(col, CT_F64), 2, false);      /* (B, 3) */
}

ct_tensor *fl_background(const ct_tensor *x)
{
    if (!x) return NULL;
    if (!check_shape("fl_background", x, 4, 1, 3)) return NULL;
    ct_scope *s = ct_scope_begin();
    ct_tensor *b = ct_scope_keep(s, ct_to_dtype(background_f64(x), ct_dtype_of(x)));
    ct_scope_end(s);
    return b;
}

ct_tensor *fl_decolorize(const ct_tensor *x)
{
    if (!x) return NULL;
    if (!check_shape("fl_decolorize", x, 4, 1, 3)) return NULL;
    ct_scope *s = ct_scope_begin();
    int64_t B = ct_size(x, 0);
    ct_dtype dt = ct_dtype_of(x);
    ct_tensor *b64 = background_f64(x);                                  /* (B, 3) */
    ct_tensor *d64 = ct_sub(fl_color_fg_t(b64), b64);                    /* ±0.5 */
    ct_tensor *b = ct_reshape(ct_to_dtype(b64, dt), CT_SHAPE(B, 3, 1, 1));
    ct_tensor *d = ct_reshape(ct_to_dtype(d64, dt), CT_SHAPE(B, 3, 1, 1));
    ct_tensor *y = ct_div(ct_sub(x, b), d);                              /* (B, 3, H, W) */
    ct_tensor *g = ct_scope_keep(s, ct_mean_dim(y, 1, true));            /* (B, 1, H, W) */
    ct_scope_end(s);
    return g;
}

const char *fl_decolorize_mode_name(fl_decolorize_mode m)
{
    static const char *names[] = {"signed", "abs", "contrast"};
    return m >= 0 && m < FL_DECOLORIZE_COUNT ? names[m] : "?";
}

int fl_decolorize_mode_parse(const char *name, fl_decolorize_mode *out)
{
    for (int m = 0; m < FL_DECOLORIZE_COUNT; m++)
        if (strcmp(name, fl_decolorize_mode_name((fl_decolorize_mode)m)) == 0) {
            *out = (fl_decolorize_mode)m;
            return 0;
        }
    return fl_fail("subject.decolorize: unknown mode '%s' (expected %s)", name, FL_DECOLORIZE_MODES);
}

ct_tensor *fl_decolorize_as(const ct_tensor *x, fl_decolorize_mode m)
{
    if (m == FL_DECOLORIZE_SIGNED) return fl_decolorize(x);
    if (!x) return NULL;
    if (!check_shape("fl_decolorize_as", x, 4, 1, 3)) return NULL;
    ct_scope *s = ct_scope_begin();
    int64_t B = ct_size(x, 0);
    ct_tensor *b = ct_reshape(ct_to_dtype(background_f64(x), ct_dtype_of(x)), CT_SHAPE(B, 3, 1, 1));
    ct_tensor *r = ct_sub(x, b);                                          /* x̃ − b̂ */
    ct_tensor *y;
    if (m == FL_DECOLORIZE_ABS) {
        y = ct_muls(ct_abs(r), 2.0);                                      /* |x̃ − b̂| / 0.5 */
    } else {
        /* the polarity of each channel from the sign of its total contrast (±0.5 Σ x on a
         * colorized image); 0 counts as + */
        ct_tensor *tot = ct_sum_dim(ct_sum_dim(ct_detach(r), 3, true), 2, true); /* (B, 3, 1, 1) */
        ct_tensor *pos = ct_to_dtype(ct_gts(ct_muls(tot, -1.0), 0.0), ct_dtype_of(x)); /* 1 where < 0 */
        ct_tensor *sg = ct_rsubs(ct_muls(pos, 2.0), 1.0);                 /* +1 or −1 */
        y = ct_muls(ct_mul(r, sg), 2.0);
    }
    ct_tensor *g = ct_scope_keep(s, ct_mean_dim(y, 1, true));            /* (B, 1, H, W) */
    ct_scope_end(s);
    return g;
}

ct_tensor *fl_colorize(const ct_tensor *gray, const ct_tensor *bg, const ct_tensor *fg)
{
    if (!gray || !bg || !fg) return NULL;
    if (!check_shape("fl_colorize (gray)", gray, 4, 1, 1) ||
        !check_shape("fl_colorize (bg)", bg, 2, 1, 3) || !check_shape("fl_colorize (fg)", fg, 2, 1, 3))
        return NULL;
    int64_t B = ct_size(gray, 0);
    if (ct_size(bg, 0) != B || ct_size(fg, 0) != B) {
        ct_set_error("fl_colorize: batch sizes differ: gray %lld, bg %lld, fg %lld",
                     (long long)B, (long long)ct_size(bg, 0), (long long)ct_size(fg, 0));
        return NULL;
    }
    ct_scope *s = ct_scope_begin();
    ct_tensor *b = ct_reshape(bg, CT_SHAPE(B, 3, 1, 1));
    ct_tensor *f = ct_reshape(fg, CT_SHAPE(B, 3, 1, 1));
    ct_tensor *out = ct_add(ct_mul(ct_rsubs(gray, 1.0), b), ct_mul(gray, f)); /* (B, 3, H, W) */
    out = ct_scope_keep(s, out);
    ct_scope_end(s);
    return out;
}
