/* PLplot rendering of the fidelity-versus-consistency figure. */
#include "benchmarks/plot.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <plplot/plplot.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/log.h"

/* A colour-blind-safe palette (Okabe & Ito), then darker and paler tones of it for
 * series past the eighth; cmap0 indices 2.. */
static const int palette[][3] = {{0, 114, 178},  {213, 94, 0},    {0, 158, 115},  {204, 121, 167},
                                 {230, 159, 0},  {86, 180, 233},  {240, 228, 66}, {0, 0, 0},
                                 {0, 60, 100},   {130, 55, 0},    {0, 90, 65},    {150, 150, 150}};
#define N_COLORS ((int)(sizeof palette / sizeof palette[0]))
#define GREY 15
/* the marker of series s: circles for the first N_COLORS, then squares */
static const char *marker(int s) { return s < N_COLORS ? "#(840)" : "#(841)"; }

/* An interval bound b[i], or v itself when there is none. */
static double bound(const double *b, int i, double v) { return b && isfinite(b[i]) ? b[i] : v; }

static const char *ext_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : "";
}

/* Whether the file cairo wrote is whole: cairo reports no write errors, so a full disk
 * leaves a truncated SVG (no closing tag) or PNG (no IEND chunk) behind. */
static bool is_complete(const char *file, const char *ext)
{
    FILE *f = fopen(file, "rb");
    if (!f) return false;
    char tail[64] = "";
    size_t n = 0;
    if (fseek(f, -(long)(sizeof tail - 1), SEEK_END) != 0) rewind(f);
    n = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    if (strcmp(ext, "png") == 0) {
        static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
        return n >= sizeof iend && memcmp(tail + n - sizeof iend, iend, sizeof iend) == 0;
    }
    tail[n] = 0;
    return strstr(tail, "</svg>") != NULL;
}

/* Whether some point of the series has a positive x and a finite y. */
static bool has_points(const fl_plot_series *series, int n_series)
{
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++)
            if (series[s].kl[i] > 0 && isfinite(series[s].fib[i])) return true;
    return false;
}

/* One panel in the next (sub)page: x = log10 of the series' kl (whatever consistency
 * measure it holds), y = fib, error bars, the λ labels, reference lines, and the legend
 * when legend is set. -1 when there is nothing to plot. */
static int draw_panel(const char *title, const char *xlabel, const char *ylabel,
                      const fl_plot_series *series, int n_series, const fl_plot_hline *lines,
                      int n_lines, bool legend, double text_scale, bool subpage)
{
    /* ranges: x = log10(KL), y = fiber loss (or d_fib), with error bars and reference lines */
    double xmin = DBL_MAX, xmax = -DBL_MAX, ymin = DBL_MAX, ymax = -DBL_MAX;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            double k = series[s].kl[i], f = series[s].fib[i];
            if (!(k > 0) || !isfinite(f)) continue;
            double klo = bound(series[s].kl_lo, i, k), khi = bound(series[s].kl_hi, i, k);
            xmin = fmin(xmin, log10(fmax(klo, k / 10)));
            xmax = fmax(xmax, log10(khi));
            ymin = fmin(ymin, bound(series[s].fib_lo, i, f));
            ymax = fmax(ymax, bound(series[s].fib_hi, i, f));
        }
    for (int l = 0; l < n_lines; l++)
        if (isfinite(lines[l].value)) {
            ymin = fmin(ymin, lines[l].value);
            ymax = fmax(ymax, lines[l].value);
        }
    if (xmin > xmax) return -1;
    double xpad = fmax(0.15, 0.08 * (xmax - xmin)), ypad = fmax(1e-3, 0.08 * (ymax - ymin));
    xmin = floor((xmin - xpad) * 10) / 10;
    xmax = ceil((xmax + xpad + 0.3) * 10) / 10; /* room for the λ labels and the legend */
    ymin = fmax(0, ymin - ypad);
    ymax += ypad;

    pladv(0);
    if (subpage) plvpor(0.17, 0.96, 0.19, 0.90);   /* room for the labels at a panel's size */
    else if (legend) plvpor(0.09, 0.66, 0.12, 0.90);   /* the legend outside, on the right */
    else plvpor(0.11, 0.95, 0.12, 0.90);
    plwind(xmin, xmax, ymin, ymax);
    plschr(0, text_scale);
    plcol0(1);
    plwidth(1.0);
    plbox("bcnstl", 0, 0, "bcnstv", 0, 0);
    pllab(xlabel, ylabel, title ? title : "");

    /* reference lines: dashed, labelled at the left */
    for (int l = 0; l < n_lines; l++) {
        if (!isfinite(lines[l].value)) continue;
        PLFLT x[2] = {xmin, xmax}, y[2] = {lines[l].value, lines[l].value};
        plcol0(GREY);
        pllsty(2 + l % 7);
        plline(2, x, y);
        pllsty(1);
        plschr(0, 0.75 * text_scale);
        plptex(xmin + 0.02 * (xmax - xmin), lines[l].value + 0.012 * (ymax - ymin), 1, 0, 0.0,
               lines[l].label);
        plschr(0, text_scale);
    }

    /* series: a line through the λ values, markers, error bars, λ labels */
    PLINT opt[16], lcol[16], lsty[16], scol[16], snum[16];
    PLFLT lwid[16], sscale[16];
    const char *text[16], *sym[16];
    int n_leg = n_series < 16 ? n_series : 16;
    for (int s = 0; s < n_series; s++) {
        const fl_plot_series *se = &series[s];
        int col = 2 + s % N_COLORS;
        PLFLT x[256], y[256];
        int m = 0;
        for (int i = 0; i < se->n && m < 256; i++)
            if (se->kl[i] > 0 && isfinite(se->fib[i])) {
                x[m] = log10(se->kl[i]);
                y[m++] = se->fib[i];
            }
        plcol0(col);
        plwidth(2.0);
        if (m > 1) plline(m, x, y);
        plwidth(1.2);
        for (int i = 0, j = 0; i < se->n; i++) {
            if (!(se->kl[i] > 0 && isfinite(se->fib[i]))) continue;
            PLFLT flo = bound(se->fib_lo, i, se->fib[i]), fhi = bound(se->fib_hi, i, se->fib[i]);
            if (fhi > flo) {
                PLFLT xx = x[j];
                plerry(1, &xx, &flo, &fhi);
            }
            double klo = bound(se->kl_lo, i, se->kl[i]), khi = bound(se->kl_hi, i, se->kl[i]);
            if (khi > klo) {
                PLFLT yy = y[j], lo = log10(fmax(klo, se->kl[i] / 10)), hi = log10(khi);
                plerrx(1, &lo, &hi, &yy);
            }
            char lab[32];
            snprintf(lab, sizeof lab, "%s=%g", se->param ? se->param : "λ", se->lambda[i]);
            plschr(0, 0.7 * text_scale);
            plptex(x[j] + 0.015 * (xmax - xmin), y[j] + 0.015 * (ymax - ymin), 1, 0, 0, lab);
            plschr(0, text_scale);
            j++;
        }
        plschr(0, 1.4 * text_scale);
        plstring(m, x, y, marker(s));
        plschr(0, text_scale);
        if (legend && s < n_leg) {
            opt[s] = PL_LEGEND_LINE | PL_LEGEND_SYMBOL;
            text[s] = se->label;
            lcol[s] = scol[s] = col;
            lsty[s] = 1;
            lwid[s] = 2.0;
            sscale[s] = 1.4;
            snum[s] = 1;
            sym[s] = marker(s);
        }
    }
    plwidth(1.0);
    if (legend && n_leg > 0) {
        PLFLT lw, lh;
        PLINT tcol[16];
        for (int s = 0; s < n_leg; s++) tcol[s] = 1;
        pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
                 subpage ? PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE
                         : PL_POSITION_RIGHT | PL_POSITION_OUTSIDE,
                 0.02, subpage ? 0.02 : 0.0, 0.06, 0, 1, 1, 0, 0, n_leg, opt, 1.0, subpage ? 0.9 : 0.75, 2.0, 0.0, tcol,
                 text, NULL, NULL, NULL, NULL, lcol, lsty, lwid, scol, sscale, snum, sym);
    }
    return 0;
}

/* A plot file being drawn: PLplot's stream on a temporary beside the target. */
typedef struct {
    const char *path, *ext, *dev;
    char tmp[4200];
} plot_file;

/* Starts a plot of nx × ny panels into a temporary beside path (.png or .svg). */
static int plot_begin(plot_file *pf, const char *path, int nx, int ny)
{
    pf->path = path;
    pf->ext = ext_of(path);
    pf->dev = strcmp(pf->ext, "png") == 0 ? "pngcairo" : strcmp(pf->ext, "svg") == 0 ? "svgcairo" : NULL;
    if (!pf->dev) return fl_fail("%s: plots are written as .png or .svg", path);
    snprintf(pf->tmp, sizeof pf->tmp, "%s.tmp.%ld.%s", path, (long)getpid(), pf->ext);
    PLINT strm;
    plmkstrm(&strm);
    plsdev(pf->dev);
    plsfnam(pf->tmp);
    char geometry[32];   /* 1200 × 720 pixels (860 × 520 points) for one panel, 600 × 450 a panel else */
    bool png = strcmp(pf->dev, "pngcairo") == 0;
    if (nx == 1 && ny == 1) snprintf(geometry, sizeof geometry, "%s", png ? "1200x720" : "860x520");
    else snprintf(geometry, sizeof geometry, "%dx%d", nx * (png ? 600 : 430), ny * (png ? 450 : 325));
    plsetopt("geometry", geometry);
    plscol0(0, 255, 255, 255); /* white background */
    plscol0(1, 0, 0, 0);
    for (int i = 0; i < N_COLORS; i++) plscol0(2 + i, palette[i][0], palette[i][1], palette[i][2]);
    plscol0(GREY, 120, 120, 120);
    if (nx > 1 || ny > 1) plssub(nx, ny);
    plinit();
    return 0;
}

/* Ends the stream and renames the temporary into place when cairo wrote it whole. */
static int plot_end(plot_file *pf)
{
    plend1();
    const char *path = pf->path, *tmp = pf->tmp;
    if (access(tmp, F_OK) != 0) return fl_fail("%s: PLplot wrote nothing (driver %s)", path, pf->dev);
    if (!is_complete(tmp, pf->ext)) {
        /* cairo drops the errno of its failed writes; a full disk is the usual cause */
        struct statvfs fs;
        bool full = statvfs(tmp, &fs) == 0 && fs.f_bavail == 0;
        unlink(tmp);
        return fl_fail("%s: the plot came out incomplete%s", path,
                       full ? ": No space left on device" : " (a write failed: disk full or a file size limit?)");
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return fl_fail("%s: %s", path, strerror(errno));
    }
    return 0;
}

int fl_plot_fidelity_consistency(const char *path, const char *title, const char *ylabel,
                                 const fl_plot_series *series, int n_series,
                                 const fl_plot_hline *lines, int n_lines)
{
    if (!has_points(series, n_series)) return fl_fail("%s: nothing to plot (no run with a finite KL)", path);
    plot_file pf;
    if (plot_begin(&pf, path, 1, 1)) return -1;
    draw_panel(title, "consistency: mean KL(q#d color#u ‖ p) over R, G, B [nats] (log scale)",
               ylabel ? ylabel : "fidelity: fiber loss (RMS in representation space)", series,
               n_series, lines, n_lines, true, 1.0, false);
    return plot_end(&pf);
}

int fl_plot_channels(const char *path, const char *title, const fl_plot_series *series, int n_series,
                     const fl_plot_hline *lines, int n_lines)
{
    if (n_series > 16) n_series = 16;
    if (!has_points(series, n_series)) return fl_fail("%s: nothing to plot (no run with a finite KL)", path);
    plot_file pf;
    if (plot_begin(&pf, path, 3, 2)) return -1;
    static const char *const channel[3] = {"R", "G", "B"};
    for (int panel = 0; panel < 6; panel++) {
        int k = panel % 3;
        bool w1 = panel >= 3;
        fl_plot_series one[16];
        for (int s = 0; s < n_series; s++) {
            one[s] = series[s];
            one[s].kl = w1 ? series[s].w1_rgb[k] : series[s].kl_rgb[k];
            one[s].kl_lo = one[s].kl_hi = NULL;   /* the runs keep intervals of the means only */
        }
        char xl[96], tl[160];
        snprintf(xl, sizeof xl, "%s of the %s channel (log scale)", w1 ? "W#d1#u" : "KL(q ‖ p) [nats]", channel[k]);
        snprintf(tl, sizeof tl, "%s%s%s", panel == 0 && title ? title : "", panel == 0 && title ? ": " : "", channel[k]);
        if (draw_panel(tl, xl, k == 0 ? "fiber loss" : "", one, n_series, lines, n_lines, panel == 0, 0.9, true)) {
            pladv(0);   /* no point with a positive value: an empty panel */
        }
    }
    return plot_end(&pf);
}

int fl_plot_curves(const char *path, const char *title, const fl_plot_curves_set *sets, int n_sets)
{
    if (n_sets < 1) return fl_fail("%s: no loss curves to plot", path);
    int nx = n_sets < 3 ? n_sets : 3, ny = (n_sets + 2) / 3;
    plot_file pf;
    if (plot_begin(&pf, path, nx, ny)) return -1;
    for (int s = 0; s < n_sets; s++) {
        const fl_plot_curves_set *cs = &sets[s];
        double xmin = DBL_MAX, xmax = -DBL_MAX, ymin = DBL_MAX, ymax = -DBL_MAX;
        for (int l = 0; l < cs->n_lines; l++)
            for (int i = 0; i < cs->lines[l].n; i++)
                if (isfinite(cs->lines[l].y[i])) {
                    xmin = fmin(xmin, cs->lines[l].x[i]);
                    xmax = fmax(xmax, cs->lines[l].x[i]);
                    ymin = fmin(ymin, cs->lines[l].y[i]);
                    ymax = fmax(ymax, cs->lines[l].y[i]);
                }
        pladv(0);
        if (xmin > xmax) continue;   /* no finite point: an empty panel */
        if (xmax <= xmin) xmax = xmin + 1;
        double pad = fmax(1e-6, 0.05 * (ymax - ymin));
        plvpor(0.16, 0.96, 0.17, 0.88);
        plwind(xmin, xmax, ymin - pad, ymax + pad);
        plschr(0, 0.9);
        plcol0(1);
        plwidth(1.0);
        plbox("bcnst", 0, 0, "bcnstv", 0, 0);
        char tl[160];
        snprintf(tl, sizeof tl, "%s%s%s", title && s == 0 ? title : "", title && s == 0 ? ": " : "", cs->label);
        pllab("step", cs->ylabel ? cs->ylabel : "loss", tl);
        PLINT opt[16], lcol[16], lsty[16];
        PLFLT lwid[16];
        const char *text[16];
        int n_leg = cs->n_lines < 16 ? cs->n_lines : 16;
        for (int l = 0; l < cs->n_lines; l++) {
            PLFLT x[4096], y[4096];
            int m = 0;
            for (int i = 0; i < cs->lines[l].n && m < 4096; i++)
                if (isfinite(cs->lines[l].y[i])) x[m] = cs->lines[l].x[i], y[m++] = cs->lines[l].y[i];
            int col = 2 + l % N_COLORS;
            plcol0(col);
            plwidth(1.5);
            if (m > 1) plline(m, x, y);
            if (l < n_leg) {
                opt[l] = PL_LEGEND_LINE;
                text[l] = cs->lines[l].label;
                lcol[l] = col;
                lsty[l] = 1;
                lwid[l] = 1.5;
            }
        }
        plwidth(1.0);
        PLFLT lw, lh;
        PLINT tcol[16];
        for (int l = 0; l < n_leg; l++) tcol[l] = 1;
        pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
                 PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE, 0.02, 0.02, 0.08, 0, 1,
                 1, 0, 0, n_leg, opt, 1.0, 0.9, 2.0, 0.0, tcol, text, NULL, NULL, NULL, NULL, lcol,
                 lsty, lwid, NULL, NULL, NULL, NULL);
    }
    return plot_end(&pf);
}
