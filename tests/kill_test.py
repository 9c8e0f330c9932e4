"""kill -9 anywhere leaves a consistent store (item 3 of issue 17): a tiny sweep is killed
at random moments in every phase — dataset build, subject, VAE, references, fiber
training, evaluation, report — and rerun after each kill, in rounds from an empty cache
and folder. After each rerun: what was finished before (run files, cached models) is not
redone, every file opens; after the completed rerun of each round: its numbers equal an
uninterrupted run's and no temporary (*.tmp.<pid>) is left.

usage: kill_test.py FIBERLAB_BIN SOURCE_DIR [KILLS [SEED]]   (exit 77: skipped, no npm
digits). Plain builds only: under AddressSanitizer a run is several times slower and the
test would not fit CI's time."""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_tiny as st  # noqa: E402

# (phase, a line that starts it in the log (None: the start of the process), the
# longest random wait after it, in seconds); a phase's kill waits for its line or any
# later phase's (the work of a phase may be done already, by the run killed before)
PHASES = [
    ("dataset", None, 1.5),
    ("subject", "training subject", 0.8),
    ("vae", "training vae", 0.5),
    ("references", "computing the reference lines", 0.5),
    ("fiber training", "nf λ=0 seed 0", 0.6),
    ("evaluation", "nf λ=0 seed 0 100%", 0.15),    # the training's last progress line
    ("fiber training", "nf λ=30 seed 0", 0.6),
    ("evaluation", "nf λ=30 seed 0 100%", 0.15),
    ("report", "nf_lam30_seed0: fiber loss", 0.15),
]
# the fiber models train longer than in sweep_tiny, so that their phases can be hit
EXTRA = ["train.steps=200"]


def landed_in(lines):
    """The phase the last log line of a killed process says it was in."""
    last = lines[-1] if lines else ""
    if not last:
        return "dataset"
    if "subject" in last and "training" in last or last.startswith("subject-"):
        return "subject"
    if last.startswith(("training vae", "vae ")):
        return "vae"
    if last.startswith(("computing the reference", "nearest_neighbour", "augmented", "vae_recon")):
        return "references"
    if last.startswith("nf λ="):
        return "evaluation" if " 100% " in last else "fiber training"
    if last.startswith("nf_lam30_seed0: fiber loss"):
        return "report"
    if last.startswith(("vae_prior", "nf_lam0_seed0")):
        return "fiber training"   # the next cell's pairs and training
    return "other: " + last[:60]


def finished(cache, sweep):
    """The files whose presence says a step is done, with their mtimes."""
    out = {}
    for d in [os.path.join(cache, "models"), os.path.join(cache, "datasets"),
              os.path.join(sweep, "runs"), os.path.join(sweep, "models")]:
        if os.path.isdir(d):
            for f in os.listdir(d):
                if ".tmp." not in f and not f.endswith((".lock", ".train")):
                    out[os.path.join(d, f)] = os.stat(os.path.join(d, f)).st_mtime_ns
    return out


def wait_for(p, log_path, markers, timeout=300):
    """Until one of markers is in the log (True) or the process ended (False)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if None in markers:
            return True
        with open(log_path, errors="replace") as f:
            text = f.read()
        if any(m in text for m in markers):
            return True
        if p.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def main():
    binary, source = os.path.abspath(sys.argv[1]), sys.argv[2]
    kills_wanted = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rnd = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 17)
    npm = st.npm_dir(source)
    if not st.have_npm(npm):
        print("skipped: the npm digits are not fetched (scripts/setup.sh)")
        return 77
    tmp = tempfile.mkdtemp(prefix="fl_kill.")
    fails, landed, n_kills, n_runs = [], {}, 0, 0
    t_start = time.time()
    try:
        cfg = st.write_config(tmp)
        ref = st.run(st.sweep_cmd(binary, cfg, npm, os.path.join(tmp, "ref"), "t", *EXTRA),
                     os.path.join(tmp, "ref_cache"), tmp)
        if ref.returncode != 0:
            print("the uninterrupted sweep failed:\n" + ref.stderr)
            return 1
        want = st.run_metrics(os.path.join(tmp, "ref", "t"))
        print("uninterrupted: %.1f s, %d runs" % (time.time() - t_start, len(want)))
        rounds = 0
        while n_kills < kills_wanted:
            rounds += 1
            cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out")
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            sweep = os.path.join(out, "t")
            cmd = st.sweep_cmd(binary, cfg, npm, out, "t", *EXTRA)
            for k, (phase, _, wait_max) in enumerate(PHASES + [("complete", None, None)]):
                before = finished(cache, sweep)
                log_path = os.path.join(tmp, "log.txt")
                with open(log_path, "w") as log:
                    p = subprocess.Popen(cmd, env=st.env(cache), cwd=tmp, stdout=subprocess.DEVNULL,
                                         stderr=log)
                    n_runs += 1
                    killed = False
                    if wait_max is not None and wait_for(p, log_path, [m for _, m, _ in PHASES[k:]]):
                        time.sleep(rnd.uniform(0, wait_max))
                        if p.poll() is None:
                            p.kill()
                            killed = True
                    rc = p.wait()
                with open(log_path, errors="replace") as f:
                    log_text = f.read()
                lines = [ln for ln in log_text.splitlines() if ln.strip()]
                if killed:
                    n_kills += 1
                    where = landed_in(lines)
                    landed[where] = landed.get(where, 0) + 1
                    print("kill %2d (round %d, aimed at %s, landed in %s): last line: %s" % (
                        n_kills, rounds, phase, where, lines[-1][:90] if lines else "(none)"))
                elif rc != 0:
                    fails.append("round %d, %s: the sweep exited %d:\n%s" % (rounds, phase, rc, log_text))
                    break
                # what was finished before is not made again
                after = finished(cache, sweep)
                for path, mtime in before.items():
                    if after.get(path) != mtime:
                        fails.append("round %d, %s: %s was made again" % (rounds, phase, path))
                for what, stem in [("training subject", "subject"), ("training vae", "vae-")]:
                    if what in log_text and any(os.path.basename(q).startswith(stem) for q in before):
                        fails.append("round %d, %s: %r although it was cached" % (rounds, phase, what))
                bad = st.check_files_open(cache, out)
                if bad:
                    fails.append("round %d, %s: files that do not open: %s" % (rounds, phase, bad))
                if not killed:
                    break   # the sweep finished: the round ends with its checks below
            got = st.run_metrics(sweep)
            if got != want:
                fails.append("round %d: the numbers differ from the uninterrupted run's:\n  want %s\n"
                             "  got  %s" % (rounds, want, got))
            left = [q for q in st.leftovers(cache, out) if ".tmp." in q]
            if left:
                fails.append("round %d: temporaries left after the completed rerun: %s" % (rounds, left))
            locks = [q for q in st.leftovers(cache, out) if q.endswith(".lock")]
            if locks:
                print("round %d: lock files left (harmless, taken over): %s" % (rounds, locks))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d kills in %d processes over %d rounds, %.0f s; kills by phase: %s" % (
        n_kills, n_runs, rounds, time.time() - t_start,
        ", ".join("%s %d" % kv for kv in landed.items())))
    return st.verdict(fails)


if __name__ == "__main__":
    sys.exit(main())
