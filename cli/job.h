/* The processes of one sweep job: the ranks of an MPI job (mpirun -n K fiberlab sweep
 * CONFIG, when fiberlab is built with Open MPI), the local workers of sweep.workers (this
 * process, worker 0, starts K − 1 copies of itself on the same machine: cli_job_spawn),
 * or this process alone. MPI is started only when a launcher says there are several
 * ranks, so a plain run never touches it. */
#ifndef FL_CLI_JOB_H
#define FL_CLI_JOB_H

#include <stdbool.h>
#include <sys/types.h>

#define CLI_JOB_MAX_WORKERS 64

typedef struct {
    int rank, size;   /* 0 and 1 when alone */
    int local_size;   /* ranks on this machine */
    int local_rank;   /* this one's number among them */
    bool mpi;         /* MPI was started (and must be finalized) */
    /* local workers: a worker's pipe to worker 0 (-1: none); worker 0's children and
     * the read ends of their pipes */
    int report_fd;
    int n_kids;
    pid_t kids[CLI_JOB_MAX_WORKERS];
    int kid_fd[CLI_JOB_MAX_WORKERS];
} cli_job;

/* Starts MPI when a launcher set up several ranks and sets the log prefix "[rank r/K] ";
 * in a process that cli_job_spawn started, takes its worker number from the environment
 * and sets "[worker i/K] ". 1 (an exit code) after printing "fiberlab CMD: what" when
 * several ranks were launched but this fiberlab is built without MPI. */
int cli_job_begin(const char *cmd, cli_job *j);
/* Worker 0 of k local workers (j alone, k >= 2): starts k − 1 copies of this program,
 * `fiberlab` with the arguments argv (argv[0] the command, e.g. "sweep"), each knowing its
 * number i from the environment; each dies with SIGTERM if this process dies. Sets j to
 * rank 0 of k on this machine and the log prefix "[worker 0/k] ". 1 after printing
 * "fiberlab CMD: what" when one cannot be started (those already started are stopped). */
int cli_job_spawn(const char *cmd, cli_job *j, int k, char **argv);
/* Waits until every rank has come here, sleeping rather than spinning (a rank that has
 * finished must not take a core from one that is still training), and returns the
 * largest rc of all ranks. Local workers: worker 0 waits for the others to end (a worker
 * that ended with a failure or a signal counts as rc 1); the others return rc. */
int cli_job_agree(cli_job *j, int rc);
/* The sum over the ranks of n values (every rank gets it). Local workers: call it after
 * cli_job_agree; worker 0 gets the sum, the others send theirs to it. */
void cli_job_sum(cli_job *j, double *v, int n);
void cli_job_end(cli_job *j);
/* The MPI library this fiberlab is built with, e.g. "Open MPI v4.1.4", or NULL. */
const char *cli_job_mpi_library(void);

#endif
