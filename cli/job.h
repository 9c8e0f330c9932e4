/* The processes of one sweep job: the ranks of an MPI job (mpirun -n K fiberlab sweep
 * CONFIG, when fiberlab is built with Open MPI), or this process alone. MPI is started
 * only when a launcher says there are several ranks, so a plain run never touches it. */
#ifndef FL_CLI_JOB_H
#define FL_CLI_JOB_H

#include <stdbool.h>

typedef struct {
    int rank, size;   /* 0 and 1 when alone */
    int local_size;   /* ranks on this machine */
    bool mpi;         /* MPI was started (and must be finalized) */
} cli_job;

/* Starts MPI when a launcher set up several ranks and sets the log prefix "[rank r/K] ".
 * 1 (an exit code) after printing "fiberlab CMD: what" when several ranks were launched
 * but this fiberlab is built without MPI. */
int cli_job_begin(const char *cmd, cli_job *j);
/* Waits until every rank has come here, sleeping rather than spinning (a rank that has
 * finished must not take a core from one that is still training), and returns the
 * largest rc of all ranks. */
int cli_job_agree(const cli_job *j, int rc);
/* The sum over the ranks of n values (every rank gets it). */
void cli_job_sum(const cli_job *j, double *v, int n);
void cli_job_end(cli_job *j);
/* The MPI library this fiberlab is built with, e.g. "Open MPI v4.1.4", or NULL. */
const char *cli_job_mpi_library(void);

#endif
