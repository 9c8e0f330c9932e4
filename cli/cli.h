/* The fiberlab command: one entry per subcommand. Each takes the arguments after its
 * name (argv[0] is the subcommand) and returns the process exit code. */
#ifndef FL_CLI_H
#define FL_CLI_H

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} fl_command;

int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train_subject(int argc, char **argv);
int cmd_train_vae(int argc, char **argv);
int cmd_train_prior(int argc, char **argv);
int cmd_ndtm(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_config(int argc, char **argv);

/* Prints "fiberlab NAME: " and the message to stderr, returns 1 (an exit code). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv has -h or --help (before a "--"). */
int cli_wants_help(int argc, char **argv);

#endif
