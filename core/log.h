/* Errors, log lines and progress bars for everything above ctorch.
 * Errors: library functions return 0 on success and -1 on failure, after setting one
 * thread-local message (shared with ctorch's ct_last_error, so a libtorch failure and
 * our own read the same way). The CLI prints it on one line and exits non-zero. */
#ifndef FL_LOG_H
#define FL_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* Sets the message and returns -1. */
int fl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefixes the current message (e.g. a ctorch error) with context; returns -1. */
int fl_fail_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *fl_error(void);   /* the current message, "" when none */

/* Log lines on stderr. Quiet drops info lines (warnings and errors stay). */
void fl_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fl_log_set_quiet(bool quiet);
/* Text put before every log line and progress line (e.g. "[rank 1/2] "); "" or NULL: none. */
void fl_log_set_prefix(const char *prefix);
bool fl_log_quiet(void);

/* Seconds on a monotonic clock. */
double fl_now(void);
/* Peak resident memory of this process so far, in MiB. */
double fl_peak_rss_mib(void);

/* A progress bar on a terminal (label, bar, rate, ETA and a free text such as the
 * loss terms), redrawn at most 10 times a second; plain log lines every
 * `interval` seconds otherwise. */
typedef struct fl_progress fl_progress;
fl_progress *fl_progress_new(const char *label, int64_t total, const char *unit);
void fl_progress_update(fl_progress *p, int64_t done, const char *extra);
void fl_progress_free(fl_progress *p);  /* prints the final line; NULL is a no-op */

#endif
