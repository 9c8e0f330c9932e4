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

/* A colour-blind-safe palette (Okabe & Ito), cmap0 indices 2.. */
static const int palette[][3] = {{0, 114, 178},  {213, 94, 0},   {0, 158, 115}, {204, 121, 167},
                                 {230, 159, 0},  {86, 180, 233}, {240, 228, 66}, {0, 0, 0}};
#define N_COLORS ((int)(sizeof palette / sizeof palette[0]))
#define GREY 10

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

int fl_plot_fidelity_consistency(const char *path, const char *title, const char *ylabel,
                                 const fl_plot_series *series, int n_series,
                                 const fl_plot_hline *lines, int n_lines)
{
    const char *ext = ext_of(path);
    const char *dev = strcmp(ext, "png") == 0 ? "pngcairo" : strcmp(ext, "svg") == 0 ? "svgcairo" : NULL;
    if (!dev) return fl_fail("%s: plots are written as .png or .svg", path);

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
    if (xmin > xmax) return fl_fail("%s: nothing to plot (no run with a finite KL)", path);
    double xpad = fmax(0.15, 0.08 * (xmax - xmin)), ypad = fmax(1e-3, 0.08 * (ymax - ymin));
    xmin = floor((xmin - xpad) * 10) / 10;
    xmax = ceil((xmax + xpad + 0.3) * 10) / 10; /* room for the λ labels and the legend */
    ymin = fmax(0, ymin - ypad);
    ymax += ypad;

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%s", path, (long)getpid(), ext);
    PLINT strm;
    plmkstrm(&strm);
    plsdev(dev);
    plsfnam(tmp);
    plsetopt("geometry", strcmp(dev, "pngcairo") == 0 ? "1000x720" : "720x520");
    plscol0(0, 255, 255, 255); /* white background */
    plscol0(1, 0, 0, 0);
    for (int i = 0; i < N_COLORS; i++) plscol0(2 + i, palette[i][0], palette[i][1], palette[i][2]);
    plscol0(GREY, 120, 120, 120);
    plinit();
    pladv(0);
    plvpor(0.11, 0.95, 0.12, 0.90);
    plwind(xmin, xmax, ymin, ymax);
    plcol0(1);
    plwidth(1.0);
    plbox("bcnstl", 0, 0, "bcnstv", 0, 0);
    pllab("consistency: mean KL(q#d color#u ‖ p) over R, G, B [nats] (log scale)",
          ylabel ? ylabel : "fidelity: fiber loss (RMS in representation space)", title ? title : "");

    /* reference lines: dashed, labelled at the left */
    for (int l = 0; l < n_lines; l++) {
        if (!isfinite(lines[l].value)) continue;
        PLFLT x[2] = {xmin, xmax}, y[2] = {lines[l].value, lines[l].value};
        plcol0(GREY);
        pllsty(2 + l % 7);
        plline(2, x, y);
        pllsty(1);
        plschr(0, 0.75);
        plptex(xmin + 0.02 * (xmax - xmin), lines[l].value + 0.012 * (ymax - ymin), 1, 0, 0.0,
               lines[l].label);
        plschr(0, 1.0);
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
            snprintf(lab, sizeof lab, "λ=%g", se->lambda[i]);
            plschr(0, 0.7);
            plptex(x[j] + 0.015 * (xmax - xmin), y[j] + 0.015 * (ymax - ymin), 1, 0, 0, lab);
            plschr(0, 1.0);
            j++;
        }
        plschr(0, 1.4);
        plstring(m, x, y, "#(840)");
        plschr(0, 1.0);
        if (s < n_leg) {
            opt[s] = PL_LEGEND_LINE | PL_LEGEND_SYMBOL;
            text[s] = se->label;
            lcol[s] = scol[s] = col;
            lsty[s] = 1;
            lwid[s] = 2.0;
            sscale[s] = 1.4;
            snum[s] = 1;
            sym[s] = "#(840)";
        }
    }
    plwidth(1.0);
    if (n_leg > 0) {
        PLFLT lw, lh;
        PLINT tcol[16];
        for (int s = 0; s < n_leg; s++) tcol[s] = 1;
        pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
                 PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE, 0.02, 0.02, 0.08, 0, 1,
                 1, 0, 0, n_leg, opt, 1.0, 0.9, 2.0, 0.0, tcol, text, NULL, NULL, NULL, NULL,
                 lcol, lsty, lwid, scol, sscale, snum, sym);
    }
    plend1();
    if (access(tmp, F_OK) != 0) return fl_fail("%s: PLplot wrote nothing (driver %s)", path, dev);
    if (!is_complete(tmp, ext)) {
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
