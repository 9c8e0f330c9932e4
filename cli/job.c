/* The ranks of an MPI sweep job, the local workers of sweep.workers, or one process. */
#define _GNU_SOURCE   /* pipe2 */
#include "cli/job.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
static const char *const local_rank_vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", NULL};

/* "i/k/fd" in the environment of a local worker that cli_job_spawn started */
#define WORKER_ENV "FIBERLAB_WORKER"

static void set_prefix(const char *what, int rank, int size)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "[%s %d/%d] ", what, rank, size);
    fl_log_set_prefix(prefix);
}

int cli_job_begin(const char *cmd, cli_job *j)
{
    memset(j, 0, sizeof *j);
    j->size = j->local_size = 1;
    j->report_fd = -1;
    const char *w = getenv(WORKER_ENV);
    if (w) {
        int i, k, fd;
        if (sscanf(w, "%d/%d/%d", &i, &k, &fd) != 3 || k < 2 || k > CLI_JOB_MAX_WORKERS || i < 1 ||
            i >= k || fd < 0)
            return cli_fail(cmd, "%s='%s' is not a worker of this program's", WORKER_ENV, w);
        unsetenv(WORKER_ENV);   /* not for what this worker starts in turn */
        j->rank = j->local_rank = i;
        j->size = j->local_size = k;
        j->report_fd = fd;
        set_prefix("worker", i, k);
        return 0;
    }
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
    j->local_rank = env_int(local_rank_vars, j->rank);
    set_prefix("rank", j->rank, j->size);
    return 0;
#else
    return cli_fail(cmd, "launched as one of %d MPI ranks, but this fiberlab is built without "
                         "MPI (install libopenmpi-dev and rebuild); or run the shards with --shard i/n",
                    launched);
#endif
}

/* Stops the workers still running (0: reaped) and closes their pipes. */
static void stop_kids(cli_job *j)
{
    for (int i = 0; i < j->n_kids; i++)
        if (j->kids[i] > 0) kill(j->kids[i], SIGTERM);
    for (int i = 0; i < j->n_kids; i++) {
        if (j->kids[i] > 0)
            while (waitpid(j->kids[i], NULL, 0) < 0 && errno == EINTR) {}
        close(j->kid_fd[i]);
    }
    j->n_kids = 0;
}

extern char **environ;

int cli_job_spawn(const char *cmd, cli_job *j, int k, char **argv)
{
    if (j->size != 1 || k < 2 || k > CLI_JOB_MAX_WORKERS)
        return cli_fail(cmd, "cannot start %d workers here", k);
    int argc = 0, envc = 0;
    while (argv[argc]) argc++;
    while (environ[envc]) envc++;
    /* everything the child needs is made before fork: this process may have threads */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    char **envp = calloc((size_t)envc + 2, sizeof *envp);
    if (!args || !envp) {
        free(args);
        free(envp);
        return cli_fail(cmd, "out of memory");
    }
    args[0] = "fiberlab";
    for (int a = 0; a < argc; a++) args[a + 1] = argv[a];
    int e = 0;
    for (int a = 0; a < envc; a++)
        if (strncmp(environ[a], WORKER_ENV "=", strlen(WORKER_ENV) + 1) != 0) envp[e++] = environ[a];
    char worker[64];
    envp[e] = worker;
    pid_t parent = getpid();
    int rc = 0;
    for (int i = 1; i < k && !rc; i++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC)) {
            rc = cli_fail(cmd, "worker %d: pipe: %s", i, strerror(errno));
            break;
        }
        snprintf(worker, sizeof worker, "%s=%d/%d/%d", WORKER_ENV, i, k, fds[1]);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            /* only async-signal-safe calls until exec */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(1);
            fcntl(fds[1], F_SETFD, 0);   /* this worker's end stays open across exec */
            execve("/proc/self/exe", args, envp);
            _exit(127);
        }
        close(fds[1]);
        if (pid < 0) {
            rc = cli_fail(cmd, "worker %d: fork: %s", i, strerror(errno));
            close(fds[0]);
            break;
        }
        j->kids[j->n_kids] = pid;
        j->kid_fd[j->n_kids++] = fds[0];
    }
    free(args);
    free(envp);
    if (rc) {
        stop_kids(j);
        return rc;
    }
    j->size = j->local_size = k;
    set_prefix("worker", 0, k);
    return 0;
}

int cli_job_agree(cli_job *j, int rc)
{
    if (j->report_fd >= 0) return rc;
    if (j->n_kids) {
        int all = rc;
        for (int i = 0; i < j->n_kids; i++) {
            int st = 0;
            pid_t r;
            while ((r = waitpid(j->kids[i], &st, 0)) < 0 && errno == EINTR) {}
            if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) all = 1;
            j->kids[i] = 0;
        }
        return all;
    }
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

void cli_job_sum(cli_job *j, double *v, int n)
{
    if (j->report_fd >= 0) {
        ssize_t want = (ssize_t)(n * sizeof *v), done = 0;
        while (done < want) {
            ssize_t w = write(j->report_fd, (const char *)v + done, (size_t)(want - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            done += w;
        }
        return;
    }
    for (int i = 0; i < j->n_kids; i++) {
        double got[16] = {0};
        ssize_t want = (ssize_t)((n < 16 ? n : 16) * sizeof *got), done = 0;
        while (done < want) {   /* the worker has ended: what it sent is in the pipe */
            ssize_t r = read(j->kid_fd[i], (char *)got + done, (size_t)(want - done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            done += r;
        }
        if (done == want)
            for (int a = 0; a < n && a < 16; a++) v[a] += got[a];
    }
    if (j->n_kids) return;
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
    stop_kids(j);   /* none left after cli_job_agree; a failure before it stops them */
    if (j->report_fd >= 0) close(j->report_fd);
    j->report_fd = -1;
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
