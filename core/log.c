/* Error messages, log lines, timing and progress bars. */
#include "core/log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ctorch/ct.h"

static bool quiet;
static char line_prefix[64];

int fl_fail(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ct_set_error("%s", buf);
    return -1;
}

int fl_fail_ctx(const char *fmt, ...)
{
    char ctx[512], old[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", ct_last_error());
    ct_set_error("%s: %s", ctx, old[0] ? old : "failed");
    return -1;
}

const char *fl_error(void) { return ct_last_error(); }

void fl_log_set_quiet(bool q) { quiet = q; }
bool fl_log_quiet(void) { return quiet; }

void fl_log_set_prefix(const char *prefix)
{
    snprintf(line_prefix, sizeof line_prefix, "%s", prefix ? prefix : "");
}

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
    fputs(line_prefix, stderr);
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void fl_info(const char *fmt, ...)
{
    if (quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void fl_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

double fl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double fl_peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

struct fl_progress {
    char label[64], unit[16];
    int64_t total, done;
    double t0, last_draw;
    bool tty;
};

fl_progress *fl_progress_new(const char *label, int64_t total, const char *unit)
{
    fl_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->t0 = p->last_draw = fl_now();
    p->tty = isatty(STDERR_FILENO) && !getenv("FIBERLAB_PLAIN_LOG");
    return p;
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void draw(fl_progress *p, const char *extra, bool final)
{
    double el = fl_now() - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : NAN;
    char e[32], r[32];
    fmt_time(e, sizeof e, final ? el : eta);
    snprintf(r, sizeof r, rate >= 10 ? "%.0f" : "%.2f", rate);
    int pct = p->total > 0 ? (int)(100 * p->done / p->total) : 100;
    if (p->tty) {
        char bar[21];
        int fill = pct / 5;
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
        bar[20] = 0;
        fprintf(stderr, "\r\033[K%s%s [%s] %3d%% %lld/%lld %s %s/s %s %s", line_prefix, p->label, bar, pct,
                (long long)p->done, (long long)p->total, r, p->unit, final ? "in" : "eta", e);
        if (extra && *extra) fprintf(stderr, "  %s", extra);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s%s %3d%% %lld/%lld %s %s/s %s %s%s%s\n", line_prefix, p->label, pct,
                (long long)p->done, (long long)p->total, r, p->unit, final ? "time" : "eta",
                e, extra && *extra ? "  " : "", extra ? extra : "");
    }
    fflush(stderr);
}

void fl_progress_update(fl_progress *p, int64_t done, const char *extra)
{
    if (!p || quiet) return;
    p->done = done;
    double now = fl_now();
    double every = p->tty ? 0.1 : 10.0;
    if (now - p->last_draw < every || done >= p->total) return; /* the final line says it */
    p->last_draw = now;
    draw(p, extra, false);
}

void fl_progress_free(fl_progress *p)
{
    if (!p) return;
    if (!quiet) draw(p, NULL, true);
    free(p);
}
