/* Options shared by the commands that work on a config (train-subject, train-vae,
 * eval): --config FILE, --out FILE, key=value overrides, and the runtime settings
 * (threads) applied from the config. */
#ifndef FL_CLI_OPTS_H
#define FL_CLI_OPTS_H

#include <stdbool.h>

#include "core/config.h"

#define CLI_MAX_OVERRIDES 128
typedef struct {
    const char *config;    /* --config FILE */
    const char *out;       /* --out FILE */
    const char *overrides[CLI_MAX_OVERRIDES];
    int n_overrides;
    int device_slot;       /* the GPU `device=cuda` takes: this slot mod the GPUs (0 unless
                              a sweep's worker or rank sets its number) */
} cli_opts;

/* Parses argv[1..]: the common options, and the command's own through other (returns
 * the number of arguments it consumed at argv[*i], 0 when the argument is not its own,
 * -1 after printing an error). Returns 0, or 1 (an exit code) after printing an error. */
int cli_opts_parse(const char *cmd, int argc, char **argv, cli_opts *o,
                   int (*other)(void *ctx, int argc, char **argv, int i), void *ctx);
/* The config of the options (file, then overrides), with ct_set_num_threads applied
 * from `threads` (0: every core this process may run on) and the default device from
 * `device` ("cuda": the GPU o->device_slot mod their number); NULL after printing
 * "fiberlab CMD: what" (for a device that is not there: "fiberlab CMD: device: why"). */
fl_config *cli_opts_config(const char *cmd, const cli_opts *o);
/* The same over the config c (taken: freed on failure); with eval_only, an override of
 * a key that changes a trained model (fl_config_role MODEL) is refused. */
fl_config *cli_opts_config_over(const char *cmd, const cli_opts *o, fl_config *c, bool eval_only);

/* The `other` of cli_opts_parse for commands whose one own option is --retrain: sets
 * *(int *)ctx to 1. */
int cli_opt_retrain(void *ctx, int argc, char **argv, int i);
/* --retrain: removes the cached file at path when there is one; 0, or 1 after printing
 * "fiberlab CMD: PATH: cannot remove the cached WHAT". */
int cli_remove_cached(const char *cmd, const char *path, const char *what);

#endif
