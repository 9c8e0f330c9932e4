#!/usr/bin/python3
"""The λ effect, checked on a finished sweep (issue 10, item 4).

    benchmarks/lambda_effect.sh            # runs the sweep, then this script
    /usr/bin/python3 benchmarks/lambda_effect.py results/lambda_effect [--family nf]

Reads <dir>/index.json (the report's cells: Student-t intervals over seeds) and the run
files in <dir>/runs/, and prints

1. each λ's mean fiber loss, relative fiber loss, d_fib, KL and share above the tail
   threshold with their intervals, and for every λ > 0 whether its fiber-loss interval
   lies wholly below λ = 0's (non-overlapping) while its mean KL stays within 2× of
   λ = 0's;
2. where the tail comes from: the samples binned by the distance of their background
   color (the left pixel column, per channel, the closest of the three) to 0.5, the
   point where decolorize's f(b) = (b + 0.5) mod 1 jumps, with each bin's share of the
   samples, its tail share and its mean fiber loss.

Exit status 0 when every λ > 0 meets the claim, 1 when one does not, 2 on bad input.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

try:
    import h5py
except ImportError:  # the tail breakdown needs the run files
    h5py = None

BINS = [(0.0, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, 0.10), (0.10, 0.51)]
# the color law of DESIGN.md §1 (a wrapped Gaussian mixture on [0, 1))
LAW = [(0.60, 0.70, 0.080), (0.35, 0.50, 0.015), (0.05, 0.10, 0.020)]


def law_near_half(d):
    """P(min_k |c_k - 0.5| < d) for c_1, c_2, c_3 i.i.d. from the law."""
    def cdf(x, mu, s):
        return 0.5 * (1 + math.erf((x - mu) / (s * math.sqrt(2))))
    p = 0.0
    for w, mu, s in LAW:
        for n in range(-2, 3):  # the wraps
            p += w * (cdf(0.5 + d + n, mu, s) - cdf(0.5 - d + n, mu, s))
    return 1 - (1 - min(p, 1.0)) ** 3


def fmt(mean, ci, digits=4):
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    return f"{mean:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def tail_breakdown(path, tail_loss):
    with h5py.File(path, "r") as f:
        loss = f["eval/loss"][:]
        colors = f["eval/colors"][:]
    dist = np.abs(colors - 0.5).min(axis=1)
    tail = loss > tail_loss
    rows = []
    for lo, hi in BINS:
        m = (dist >= lo) & (dist < hi)
        n = int(m.sum())
        rows.append((lo, hi, n / len(loss), tail[m].mean() if n else float("nan"),
                     loss[m].mean() if n else float("nan"),
                     tail[m].sum() / max(tail.sum(), 1)))
    return rows, tail.mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", default="results/lambda_effect")
    ap.add_argument("--family", default="nf")
    ap.add_argument("--kl-factor", type=float, default=2.0)
    a = ap.parse_args()
    index = os.path.join(a.dir, "index.json")
    try:
        with open(index) as f:
            idx = json.load(f)
    except (OSError, ValueError) as e:
        print(f"lambda_effect: {index}: {e}", file=sys.stderr)
        return 2
    cells = sorted((c for c in idx.get("cells", []) if c["family"] == a.family),
                   key=lambda c: c["lambda"])
    base = next((c for c in cells if c["lambda"] == 0), None)
    if base is None or len(cells) < 2:
        print(f"lambda_effect: {index}: no {a.family} cells at λ = 0 and λ > 0", file=sys.stderr)
        return 2
    print(f"{a.family}: means with 95% intervals ({base['interval']}, {base['seeds']} seeds)")
    print(f"{'λ':>6}  {'fiber loss':26}  {'relative':22}  {'d_fib':26}  {'mean KL':26}  {'tail':24}  claim")
    ok = True
    for c in cells:
        claim = ""
        if c["lambda"] != 0:
            below = c["fiber_ci"][1] < base["fiber_ci"][0]
            kl_ok = c["kl_mean"] <= a.kl_factor * base["kl_mean"]
            claim = ("fiber loss below λ=0 (CIs apart)" if below else "fiber-loss CIs overlap λ=0") + \
                    (f", KL within {a.kl_factor:g}×" if kl_ok else f", KL above {a.kl_factor:g}×")
            claim += ": holds" if below and kl_ok else ": fails"
            ok = ok and below and kl_ok
        print(f"{c['lambda']:>6g}  {fmt(c['fiber_mean'], c['fiber_ci']):26}  "
              f"{fmt(c['relative_mean'], c['relative_ci'], 3):22}  {fmt(c['dfib_mean'], c['dfib_ci']):26}  "
              f"{fmt(c['kl_mean'], c['kl_ci']):26}  {fmt(c['tail_share'], c['tail_ci']):24}  {claim}")
    if h5py is None:
        print("lambda_effect: python3-h5py is missing: no tail breakdown", file=sys.stderr)
        return 0 if ok else 1
    print("\nwhere the tail comes from: samples by min_k |b_k - 0.5| (b: the sample's background color)")
    print(f"{'run':22} {'bin':14} {'share':>7} {'tail':>7} {'mean loss':>10} {'of the tail':>12}")
    for lo, hi in BINS:
        print(f"{'the color law':22} [{lo:.2f}, {min(hi, 0.5):.2f}) "
              f"{law_near_half(min(hi, 0.5)) - law_near_half(lo):7.3f}")
    for r in sorted((r for r in idx["runs"] if r["family"] == a.family),
                    key=lambda r: (r["lambda"], r["seed"])):
        rows, share = tail_breakdown(os.path.join(a.dir, r["file"]), r.get("tail_loss", 5))
        name = os.path.basename(r["file"])[:-3]
        for lo, hi, frac, tail, mean, of_tail in rows:
            print(f"{name:22} [{lo:.2f}, {min(hi, 0.5):.2f}) {frac:7.3f} {tail:7.3f} {mean:10.3f} {of_tail:12.3f}")
        print(f"{name:22} {'all':14} {1:7.3f} {share:7.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
