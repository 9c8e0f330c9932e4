"""A sweep spread over processes (issue 15, item 6): `--shard 0/2` and `--shard 1/2` into
one folder make every cell of the grid once between them (cell k belongs to shard
k % 2); `mpirun -n 2 fiberlab sweep` on one machine, and `sweep.workers=2` without MPI,
make every cell once between their two processes, both working, and write one report;
the numbers of all equal those of one plain process; a malformed --shard is refused
before anything runs; a worker that fails makes the sweep fail; `fiberlab train` makes
its one run alone even when the config asks for NDTM cells and workers.

usage: distribute_test.py FIBERLAB_BIN SOURCE_DIR [--mpi]
  --mpi: fiberlab is built with MPI, so the mpirun part must run (else it is skipped)
(exit 77: skipped, no npm digits)"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_tiny as st  # noqa: E402

GRID = ["sweep.lambdas=0,30", "sweep.seeds=0,1"]   # 4 cells: k = 2 · λ index + seed
CELLS = ["nf_lam0_seed0", "nf_lam0_seed1", "nf_lam30_seed0", "nf_lam30_seed1"]


def summary_count(stdout, what):
    """N of "… runs: N trained, …" in a sweep's summary; None when there is none."""
    line = next((ln for ln in stdout.splitlines() if " runs: " in ln), "")
    try:
        return int(line.split(" runs: ")[1].split(" " + what)[0])
    except (IndexError, ValueError):
        return None


def check_job(r, who, folder, ref, fails):
    """The checks of a job of two processes (who: "rank" or "worker") that made GRID's
    cells into folder: one job summary with 4 trained, log lines of both, each cell
    trained once with both working, one process's numbers, one report."""
    print("%s job: exit %d; %s" % (who, r.returncode,
                                   [ln for ln in r.stdout.splitlines() if "runs:" in ln]))
    if r.returncode != 0:
        fails.append("the %s job exited %d:\n%s\n%s" % (who, r.returncode, r.stdout, r.stderr))
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("[%s " % who)]
    for k in range(2):
        if not any(ln.startswith("[%s %d/2] " % (who, k)) for ln in lines):
            fails.append("no log line of %s %d:\n%s" % (who, k, r.stderr))
    if r.stdout.count(" runs: ") != 1 or "2 %ss, 4 runs: 4 trained" % who not in r.stdout:
        fails.append("not one job summary with 4 trained:\n%s" % r.stdout)
    # each process trained at least one cell, and each cell was trained once
    per = [sum(1 for ln in lines if ln.startswith("[%s %d/2] " % (who, k)) and
               "steps/s" in ln and " 100% " in ln) for k in range(2)]
    print("finished trainings per %s: %s" % (who, per))
    if sum(per) != 4 or min(per) == 0:
        fails.append("trainings per %s %s: not 4 in all with both working" % (who, per))
    got = st.run_metrics(folder)
    if got != ref:
        fails.append("the %s job's numbers differ from one process's:\n  %s\n  %s" % (who, got, ref))
    for f in ("fidelity_consistency.png", "report.md"):
        if not os.path.exists(os.path.join(folder, f)):
            fails.append("the %s job wrote no %s" % (who, f))
    try:
        with open(os.path.join(folder, "report.md")) as f:
            md = f.read()
    except OSError:
        md = ""
    for cell in ("NF λ = 0 | 2 |", "NF λ = 30 | 2 |"):
        if cell not in md:
            fails.append("the %s job's report.md has no row '%s'" % (who, cell))


def main():
    binary, source = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    want_mpi = "--mpi" in sys.argv[3:]
    npm = st.npm_dir(source)
    if not st.have_npm(npm):
        print("skipped: the npm digits are not fetched (scripts/setup.sh)")
        return 77
    tmp = tempfile.mkdtemp(prefix="fl_distribute.")
    fails = []
    try:
        cfg = st.write_config(tmp)
        cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "results")

        # the reference: one process, every cell (it also fills the cache)
        r = st.run(st.sweep_cmd(binary, cfg, npm, out, "one", *GRID), cache, tmp)
        if r.returncode != 0:
            fails.append("the plain sweep exited %d:\n%s" % (r.returncode, r.stderr))
        ref = st.run_metrics(os.path.join(out, "one"))
        print("one process: %s" % sorted(ref))
        if sorted(ref) != CELLS:
            fails.append("the plain sweep made %s, not %s" % (sorted(ref), CELLS))

        # a malformed shard is refused before anything runs
        for bad in ["2/2", "1/0", "-1/2", "1/2x", "a/b", "1"]:
            r = st.run(st.sweep_cmd(binary, cfg, npm, out, "bad", *GRID) + ["--shard", bad],
                       cache, tmp)
            if r.returncode == 0 or "--shard" not in r.stderr or \
                    os.path.exists(os.path.join(out, "bad")):
                fails.append("--shard %s: exit %d, %r" % (bad, r.returncode, r.stderr))

        # two shards, one after the other, into one folder
        got = {}
        for i in range(2):
            r = st.run(st.sweep_cmd(binary, cfg, npm, out, "shards", *GRID) +
                       ["--shard", "%d/2" % i], cache, tmp)
            if r.returncode != 0:
                fails.append("shard %d/2 exited %d:\n%s" % (i, r.returncode, r.stderr))
            have = st.run_metrics(os.path.join(out, "shards"))
            got[i] = sorted(set(have) - set().union(*[set(v) for v in got.values()]))
            print("shard %d/2 made %s; %s" % (i, got[i], r.stdout.splitlines()[:1]))
            want = [c for k, c in enumerate(CELLS) if k % 2 == i]
            if got[i] != want:
                fails.append("shard %d/2 made %s, not %s" % (i, got[i], want))
            if summary_count(r.stdout, "trained") != 2:
                fails.append("shard %d/2's summary does not say 2 trained:\n%s" % (i, r.stdout))
        shards = st.run_metrics(os.path.join(out, "shards"))
        if shards != ref:
            fails.append("the shards' numbers differ from one process's:\n  %s\n  %s" % (shards, ref))
        try:
            with open(os.path.join(out, "shards", "index.json")) as f:
                n_index = len(json.load(f)["runs"])
        except (OSError, ValueError, KeyError) as e:
            n_index = "none (%s)" % e
        if n_index != 4:
            fails.append("the last shard's index.json lists %s runs, not 4" % n_index)

        # two local workers, without MPI
        r = st.run(st.sweep_cmd(binary, cfg, npm, out, "workers", *GRID) + ["sweep.workers=2"],
                   cache, tmp)
        check_job(r, "worker", os.path.join(out, "workers"), ref, fails)
        # a cell that fails (its run file's place is taken by a folder) makes its worker,
        # and so the job, fail; the other cells are made and stay
        bad = os.path.join(out, "workers_bad")
        os.makedirs(os.path.join(bad, "runs", CELLS[3] + ".h5"))
        r = st.run(st.sweep_cmd(binary, cfg, npm, out, "workers_bad", *GRID) +
                   ["sweep.workers=2"], cache, tmp)
        made = [c for c in CELLS if os.path.isfile(os.path.join(bad, "runs", c + ".h5"))]
        print("a failing cell: exit %d, made %s" % (r.returncode, made))
        if r.returncode == 0 or "fiberlab sweep: worker" not in r.stderr:
            fails.append("a sweep with a failing cell exited %d:\n%s" % (r.returncode, r.stderr))
        if made != CELLS[:3]:
            fails.append("a sweep with a failing cell left %s, not %s" % (made, CELLS[:3]))

        # fiberlab train is one run in one process, whatever grid and workers the config has
        r = st.run([binary, "train", "--config", cfg, "data.path=" + npm, "out_dir=" + out,
                    "sweep.name=train", "threads=1", "model.family=nf", "train.lambda=30",
                    "sweep.ndtm_gammas=1", "sweep.workers=2"], cache, tmp)
        made = sorted(st.run_metrics(os.path.join(out, "train")))
        print("fiberlab train: exit %d, made %s" % (r.returncode, made))
        if r.returncode != 0 or made != ["nf_lam30_seed0"] or "1 runs: 1 trained" not in r.stdout \
                or "[worker" in r.stderr:
            fails.append("fiberlab train made %s (exit %d):\n%s\n%s" % (made, r.returncode, r.stdout,
                                                                        r.stderr))

        # an MPI job of two ranks on this machine
        mpirun = shutil.which("mpirun")
        if want_mpi and not mpirun:
            fails.append("fiberlab is built with MPI but mpirun is not installed")
        elif want_mpi:
            env = st.env(cache)
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                       OMPI_MCA_rmaps_base_oversubscribe="1")
            cmd = [mpirun, "-n", "2"] + st.sweep_cmd(binary, cfg, npm, out, "mpi", *GRID)
            r = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
            print("mpirun -n 2: exit %d; %s" % (r.returncode,
                                                 [ln for ln in r.stdout.splitlines() if "runs:" in ln]))
            if r.returncode != 0:
                fails.append("mpirun -n 2 exited %d:\n%s\n%s" % (r.returncode, r.stdout, r.stderr))
            check_job(r, "rank", os.path.join(out, "mpi"), ref, fails)
        else:
            print("skipped the mpirun part: fiberlab is built without MPI")

        left = st.leftovers(cache, out)
        if left:
            fails.append("left behind: %s" % left)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return st.verdict(fails)


if __name__ == "__main__":
    sys.exit(main())
