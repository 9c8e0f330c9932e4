/* The ranks of an MPI sweep job, or one process. */
#include "cli/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/log.h"

#ifdef FL_HAVE_MPI
#include <mpi.h>
#endif

/* The number of ranks a launcher says this job has (Open MPI's mpirun, or a PMI launcher
 * such as Slurm's srun), and this process's rank; 1 and 0 without one. */
static int env_int(const char *const names[], int fallback)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        char *end;
        long x = v ? strtol(v, &end, 10) : 0;
        if (v && *v && !*end && x >= 0 && x < 1 << 20) return (int)x;
    }
    return fallback;
}

static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", NULL};
static const char *const local_vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", NULL};

int cli_job_begin(const char *cmd, cli_job *j)
{
    memset(j, 0, sizeof *j);
    j->size = j->local_size = 1;
    int launched = env_int(size_vars, 1);
    if (launched <= 1) return 0;
#ifdef FL_HAVE_MPI
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return cli_fail(cmd, "MPI_Init failed (launched with %d ranks)", launched);
    j->mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &j->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &j->size);
    j->local_size = env_int(local_vars, 1);
    if (j->local_size < 1) j->local_size = 1;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "[rank %d/%d] ", j->rank, j->size);
    fl_log_set_prefix(prefix);
    return 0;
#else
    return cli_fail(cmd, "launched as one of %d MPI ranks, but this fiberlab is built without "
                         "MPI (install libopenmpi-dev and rebuild); or run the shards with --shard i/n",
                    launched);
#endif
}

int cli_job_agree(const cli_job *j, int rc)
{
#ifdef FL_HAVE_MPI
    if (!j->mpi) return rc;
    /* Open MPI's blocking collectives poll at full speed: wait in a non-blocking barrier,
     * asleep between tests, then reduce (everyone has arrived, so that is quick) */
    MPI_Request req;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    while (!done) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    int all = rc;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
#else
    (void)j;
    return rc;
#endif
}

void cli_job_sum(const cli_job *j, double *v, int n)
{
#ifdef FL_HAVE_MPI
    if (j->mpi) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)j;
    (void)v;
    (void)n;
#endif
}

void cli_job_end(cli_job *j)
{
#ifdef FL_HAVE_MPI
    if (j->mpi) MPI_Finalize();
#endif
    j->mpi = false;
    fl_log_set_prefix(NULL);
}

const char *cli_job_mpi_library(void)
{
#ifdef FL_HAVE_MPI
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (MPI_Get_library_version(v, &n) != MPI_SUCCESS) return "MPI";
    v[strcspn(v, ",\n")] = 0;   /* "Open MPI v4.1.4, package: …" */
    return v;
#else
    return NULL;
#endif
}
