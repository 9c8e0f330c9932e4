/* The common options of the config-driven commands. */
#define _GNU_SOURCE
#include "cli/cli_opts.h"

#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/blas.h"
#include "core/log.h"
#include "ctorch/ct.h"

int cli_opts_parse(const char *cmd, int argc, char **argv, cli_opts *o,
                   int (*other)(void *ctx, int argc, char **argv, int i), void *ctx)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--config") == 0 || strcmp(s, "--out") == 0) {
            if (i + 1 >= argc) return cli_fail(cmd, "%s needs a file", s);
            if (s[2] == 'c') o->config = argv[++i];
            else o->out = argv[++i];
            continue;
        }
        int used = other ? other(ctx, argc, argv, i) : 0;
        if (used < 0) return 1;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        if (s[0] != '-' && strchr(s, '=')) {
            if (o->n_overrides == CLI_MAX_OVERRIDES) return cli_fail(cmd, "too many key=value settings");
            o->overrides[o->n_overrides++] = s;
            continue;
        }
        return cli_fail(cmd, "unexpected argument '%s' (see --help)", s);
    }
    return 0;
}

/* Makes the config's `device` the default device of every tensor made from here on:
 * "cuda" alone is GPU slot mod the number of GPUs, an index is taken as it is. 0, or 1
 * after printing "fiberlab CMD: device: why" when the device is not there (a libtorch
 * without CUDA, an index past the last GPU); the config has checked its form. */
static int device_use(const char *cmd, const fl_config *c, int slot)
{
    const char *s = fl_cfg_str(c, "device");
    ct_device d = {CT_CPU, 0};
    ct_device_parse(s, &d);
    if (d.kind == CT_CUDA) {
        if (!ct_cuda_available())
            return cli_fail(cmd, "device: '%s' is not available: this libtorch (%s) has no CUDA "
                                 "or sees no GPU (Debian's libtorch-dev is built without CUDA)",
                            s, ct_torch_version());
        int n = ct_cuda_device_count();
        if (strcmp(s, "cuda") == 0) d.index = slot % n;
        else if (d.index >= n)
            return cli_fail(cmd, "device: '%s' is not available: this machine has %d GPU%s (cuda:0 "
                                 "to cuda:%d)", s, n, n == 1 ? "" : "s", n - 1);
    }
    ct_set_default_device(d);
    return 0;
}

fl_config *cli_opts_config(const char *cmd, const cli_opts *o)
{
    fl_config *c = o->config ? fl_config_load(o->config) : fl_config_default();
    if (!c) {
        cli_fail(cmd, "%s", fl_error());
        return NULL;
    }
    return cli_opts_config_over(cmd, o, c, false);
}

fl_config *cli_opts_config_over(const char *cmd, const cli_opts *o, fl_config *c, bool eval_only)
{
    for (int i = 0; i < o->n_overrides; i++) {
        char key[256];
        const char *eq = strchr(o->overrides[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - o->overrides[i]), o->overrides[i]);
        if (eval_only && fl_config_role(key) == FL_ROLE_MODEL) {
            cli_fail(cmd, "%s: changes the trained model; a saved model is scored with other "
                          "evaluation settings (eval.*) only", key);
            fl_config_free(c);
            return NULL;
        }
        if (fl_config_override(c, o->overrides[i])) {
            cli_fail(cmd, "%s", fl_error());
            fl_config_free(c);
            return NULL;
        }
    }
    int threads = (int)fl_cfg_int(c, "threads");
    fl_threads_set(threads, FL_WORK_CONV);
    if (device_use(cmd, c, o->device_slot)) {
        fl_config_free(c);
        return NULL;
    }
    return c;
}

int cli_opt_retrain(void *ctx, int argc, char **argv, int i)
{
    (void)argc;
    if (strcmp(argv[i], "--retrain") != 0) return 0;
    *(int *)ctx = 1;
    return 1;
}

int cli_remove_cached(const char *cmd, const char *path, const char *what)
{
    if (access(path, F_OK) != 0 || unlink(path) == 0) return 0;
    return cli_fail(cmd, "%s: cannot remove the cached %s", path, what);
}
