"""Two processes on one empty cache, then on one sweep folder (item 4 of issue 17):
each cached model is trained once (the second process waits for its lock, then loads
it), each cell of the grid is made once between the two, both exit 0, no temporary or
lock file stays, and the numbers equal those of the first pair.

usage: concurrency_test.py FIBERLAB_BIN SOURCE_DIR   (exit 77: skipped, no npm digits)"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_tiny as st  # noqa: E402


def both(cmds, cache, cwd):
    """Starts the commands together; their (rc, stdout, stderr). Output goes to files
    (a full pipe would stop a process that the other one waits for)."""
    ps, files = [], []
    for i, c in enumerate(cmds):
        o, e = (open(os.path.join(cwd, "p%d.%s" % (i, k)), "w+") for k in ("out", "err"))
        files.append((o, e))
        ps.append(subprocess.Popen(c, env=st.env(cache), cwd=cwd, stdout=o, stderr=e))
    res = []
    for p, (o, e) in zip(ps, files):
        rc = p.wait()
        o.seek(0)
        e.seek(0)
        res.append((rc, o.read(), e.read()))
        o.close()
        e.close()
    return res


def main():
    binary, source = os.path.abspath(sys.argv[1]), sys.argv[2]
    npm = st.npm_dir(source)
    if not st.have_npm(npm):
        print("skipped: the npm digits are not fetched (scripts/setup.sh)")
        return 77
    tmp = tempfile.mkdtemp(prefix="fl_concurrency.")
    fails = []
    try:
        cfg = st.write_config(tmp)
        cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "results")

        # one empty cache, two sweeps of their own folders
        res = both([st.sweep_cmd(binary, cfg, npm, out, "a"),
                    st.sweep_cmd(binary, cfg, npm, out, "b")], cache, tmp)
        for i, (rc, o, e) in enumerate(res):
            if rc != 0:
                fails.append("sweep %s exited %d:\n%s" % ("ab"[i], rc, e))
        logs = "".join(e for _, _, e in res)
        for what in ["training subject", "training vae"]:
            n = logs.count(what)
            print("%r: %d time(s) in the two logs" % (what, n))
            if n != 1:
                fails.append("%r appears %d times, not once:\n%s" % (what, n, logs))
        waits = [line for line in logs.splitlines() if "waiting for another process" in line]
        print("waited: %d time(s)%s" % (len(waits), "".join("\n  " + w for w in waits)))
        if not waits:
            fails.append("neither process waited for a lock:\n" + logs)
        a, b = st.run_metrics(os.path.join(out, "a")), st.run_metrics(os.path.join(out, "b"))
        if len(a) != 2 or a != b:
            fails.append("the two sweeps differ:\n  a %s\n  b %s" % (a, b))

        # one sweep folder, two processes: each cell made once between them
        res = both([st.sweep_cmd(binary, cfg, npm, out, "c", "sweep.lambdas=0,10,30")] * 2,
                   cache, tmp)
        trained = 0
        for i, (rc, o, e) in enumerate(res):
            if rc != 0:
                fails.append("sweep c (%d) exited %d:\n%s" % (i, rc, e))
            line = next((ln for ln in o.splitlines() if " runs: " in ln), "")
            print("process %d: %s" % (i, line))
            try:
                trained += int(line.split(" runs: ")[1].split(" trained")[0])
            except (IndexError, ValueError):
                fails.append("no summary line in:\n" + o)
        if trained != 3:
            fails.append("the 3 cells were trained %d times between the two processes" % trained)
        c = st.run_metrics(os.path.join(out, "c"))
        if len(c) != 3 or any(c[k] != a[k] for k in a):
            fails.append("sweep c's numbers differ from a's:\n  a %s\n  c %s" % (a, c))
        for e in res:
            if "training subject" in e[2] or "training vae" in e[2]:
                fails.append("the warm cache was trained again:\n" + e[2])
        left = st.leftovers(cache, out)
        if left:
            fails.append("left behind: %s" % left)
        bad = st.check_files_open(cache, out)
        if bad:
            fails.append("files that do not open: %s" % bad)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return st.verdict(fails)


if __name__ == "__main__":
    sys.exit(main())
