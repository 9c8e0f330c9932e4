"""Sums a libtorch profile (the Chrome trace ct_profile_begin/ct_profile_end write; in
bench_families: FIBERLAB_TORCH_PROFILE=PATH) per op: calls and self time (an event's
duration less that of the events nested in it on its thread), and per class of work —
GEMM, convolution, elementwise, reduction, copies and views, optimizer, autograd nodes.

    python3 profile_ops.py TRACE [STEPS] [TOP]

STEPS (the number of profiled training steps) turns counts and times into per-step
figures. The profiler's own cost inflates every op's time by about the same amount, so
read the counts and the shares, not the absolute times."""
import json
import sys
from collections import defaultdict

CLASSES = [
    ("GEMM", ("addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")),
    ("convolution", ("conv", "mkldnn")),
    ("reduction", ("aten::sum", "aten::mean", "aten::norm", "aten::std", "aten::var", "aten::max",
                   "aten::min", "aten::amax", "aten::logsumexp")),
    ("copy/view", ("aten::copy_", "aten::cat", "aten::narrow", "aten::slice", "aten::as_strided",
                   "aten::view", "aten::reshape", "aten::t", "aten::transpose", "aten::expand",
                   "aten::split", "aten::contiguous", "aten::clone", "aten::unsqueeze",
                   "aten::squeeze", "aten::permute", "aten::select", "aten::index", "aten::to",
                   "aten::_to_copy", "aten::detach", "aten::alias", "aten::unbind",
                   "aten::stack", "aten::empty", "aten::zeros", "aten::zero_", "aten::fill_",
                   "aten::ones", "aten::resize_", "aten::empty_strided", "aten::empty_like",
                   "aten::zeros_like", "aten::ones_like", "aten::_reshape_alias",
                   "aten::_unsafe_view", "aten::new_empty_strided", "aten::new_zeros",
                   "aten::lift_fresh")),
]


def klass(name):
    if not name.startswith("aten::") and "Backward" in name or name.startswith("autograd::"):
        return "autograd node"
    for k, keys in CLASSES:
        if any(key in name for key in keys):
            return k
    return "elementwise/other ATen" if name.startswith("aten::") else "other: " + name


def main(path, steps=1, top=25):
    with open(path) as f:
        events = [e for e in json.load(f) if e.get("ph") == "X"]
    by_tid = defaultdict(list)
    for e in events:
        by_tid[e["tid"]].append(e)
    self_time = defaultdict(float)
    calls = defaultdict(int)
    top_level = defaultdict(float)   # time of events with no parent: what the step spends in ATen
    for evs in by_tid.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []   # (end, event index)
        child = [0.0] * len(evs)
        for i, e in enumerate(evs):
            while stack and stack[-1][0] <= e["ts"]:
                stack.pop()
            if stack:
                child[stack[-1][1]] += e["dur"]
            else:
                top_level[klass(e["name"])] += e["dur"]
            stack.append((e["ts"] + e["dur"], i))
        for i, e in enumerate(evs):
            self_time[e["name"]] += e["dur"] - child[i]
            calls[e["name"]] += 1
    total = sum(self_time.values())
    per_class = defaultdict(float)
    per_class_calls = defaultdict(int)
    for n, t in self_time.items():
        per_class[klass(n)] += t
        per_class_calls[klass(n)] += calls[n]
    print(f"{path}: {sum(calls.values()) / steps:.0f} profiled events per step, "
          f"{total / steps / 1e3:.2f} ms of self time per step (profiler included)")
    print(f"{'class':28s} {'events/step':>12s} {'self ms/step':>13s} {'share':>7s}")
    for k, t in sorted(per_class.items(), key=lambda kv: -kv[1]):
        print(f"{k[:28]:28s} {per_class_calls[k] / steps:12.0f} {t / steps / 1e3:13.3f} {t / total:7.1%}")
    print(f"\n{'op':40s} {'calls/step':>10s} {'self ms/step':>13s} {'share':>7s}")
    for n, t in sorted(self_time.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{n[:40]:40s} {calls[n] / steps:10.0f} {t / steps / 1e3:13.3f} {t / total:7.1%}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1,
         int(sys.argv[3]) if len(sys.argv) > 3 else 25)
