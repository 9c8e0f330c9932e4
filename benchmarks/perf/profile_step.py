"""Where one training step's time goes, per family: runs bench_families' worker (the
trainer's loss and optimizer step, the λ > 0 fiber term through stand-ins of the VAE
decoder and the subject) under `perf record` and sums perf's samples per class of code:

  GEMM               OpenBLAS (sgemm and its packing): the matrix products of every
                     linear layer and of libtorch's transposed convolutions
  convolution        oneDNN (libdnnl, its JIT kernels) and libtorch's convolution code
  ATen kernels       elementwise ops, reductions and copies: ATen's CPU kernels (named,
                     or unnamed in their region of libtorch, KERNEL_REGION), Sleef, libm,
                     ctorch's fused coupling loops
  optimizer          ctorch's fused Adam pass and the clipping norm
  autograd+dispatch  the autograd engine, the dispatcher, tensor bookkeeping and the rest
                     of libtorch and libc10, ctorch's wrappers
  memory+kernel      malloc/free, memset/memcpy; the OS kernel (page faults, interrupts)
  other              everything else

Start-up and warm-up are not sampled (perf record -D, the delay measured by a short
run first). Prints a Markdown table with
the steps/s of the run and the BLAS work per step (bench_families counts it at sgemm_).

    python3 profile_step.py BUILD_DIR [SECONDS_PER_CASE [FAMILY ...]]
"""
import json
import re
import subprocess
import sys
import tempfile
import time

CASES = [  # family, batch, λ, fsteps (differentiable sampler steps of DIFF/FM at λ > 0)
    ("nf", 64, 0, 0), ("nf", 256, 0, 0), ("nf", 64, 1, 0),
    ("mlf", 64, 0, 0), ("mlf", 256, 0, 0), ("mlf", 64, 1, 0),
    ("dnf", 64, 0, 0), ("dnf", 256, 0, 0), ("dnf", 64, 1, 0),
    ("fff", 64, 0, 0), ("fff", 256, 0, 0), ("fff", 64, 1, 0),
    ("fif", 64, 0, 0), ("fif", 256, 0, 0), ("fif", 64, 1, 0),
    ("diff", 64, 0, 0), ("diff", 256, 0, 0), ("diff", 64, 1, 4),
    ("fm", 64, 0, 0), ("fm", 256, 0, 0), ("fm", 64, 1, 4),
]

CLASSES = ["GEMM", "convolution", "ATen kernels", "optimizer", "autograd+dispatch",
           "memory+kernel", "other"]

# Debian's libtorch_cpu exports no symbols past this address: the region of ATen's
# per-CPU kernels (ATen/native/cpu, built once per instruction set, hidden). perf cannot
# name what runs there; it is counted with the named ATen kernels.
KERNEL_REGION = 0x468E7A0


def klass(dso, sym):
    if "openblas" in dso or "libblas" in dso or re.search(r"[sd]gemm|gemm_", sym):
        return "GEMM"
    if "dnnl" in dso or dso.startswith("[JIT]") or re.search(r"conv|im2col|col2im|mkldnn|dnnl", sym):
        return "convolution"
    if re.search(r"fused_adam|sum_squares|adam_range|squares_f|optim", sym):
        return "optimizer"
    if "libtorch_cpu" in dso and re.fullmatch(r"0x[0-9a-f]+", sym):
        return "ATen kernels" if int(sym, 16) >= KERNEL_REGION else "autograd+dispatch"
    if "sleef" in dso or "libm." in dso or re.search(
            r"vectorized|Vectorized|cpu_kernel|serial_for_each|TensorIterator|AffineCoupling|coupling_", sym):
        return "ATen kernels"
    if dso.startswith("[kernel") or re.search(r"malloc|free|_int_|memset|memcpy|memmove|"
                                              r"unlink_chunk|consolidate", sym):
        return "memory+kernel"
    if "libtorch" in dso or "libc10" in dso or "ld-linux" in dso or "libstdc++" in dso or \
            re.search(r"autograd|Engine|Node|ct::|ct_", sym):
        return "autograd+dispatch"
    return "other"


STARTUP = re.compile(r"_dl_|do_lookup|check_match|strcmp|dl_main")

def profile(build, fam, batch, lam, fsteps, seconds):
    worker = f"{build}/benchmarks/perf/bench_families"
    # steps for about `seconds`: a short run first
    t0 = time.monotonic()
    probe = subprocess.run([worker, "--worker", fam, str(batch), "5", str(lam), str(fsteps), "2", "0"],
                           capture_output=True, text=True, check=True)
    wall = time.monotonic() - t0
    first = json.loads(probe.stdout.splitlines()[0])
    sps = first["steps_per_s"]
    # start-up and warm-up (loading libtorch, building the model) are not sampled: perf
    # waits that long (-D) plus a margin
    delay_ms = int(1000 * (wall - first["seconds"]) + 300)
    steps = max(10, int(sps * seconds))
    with tempfile.NamedTemporaryFile(suffix=".perf") as data:
        run = subprocess.run(["perf", "record", "-q", "-F", "999", "-D", str(delay_ms), "-o", data.name,
                              worker, "--worker",
                              fam, str(batch), str(steps), str(lam), str(fsteps), "2", "0"],
                             capture_output=True, text=True, check=True)
        line = json.loads([l for l in run.stdout.splitlines() if l.startswith("{")][0])
        rep = subprocess.run(["perf", "report", "-i", data.name, "--no-children", "--sort", "dso,sym",
                              "-g", "none", "--percent-limit", "0", "--stdio"],
                             capture_output=True, text=True, check=True).stdout
    share = dict.fromkeys(CLASSES, 0.0)
    for row in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+(?: tid \d+)?)\s+\[[.k]\]\s+(.*)", row)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        if "ld-linux" in dso and STARTUP.search(sym):
            continue   # start-up: loading libtorch
        share[klass(dso, sym)] += pct
    total = sum(share.values()) or 1.0
    return line, {k: 100.0 * v / total for k, v in share.items()}


def main(build, seconds=6.0, only=()):
    cpu = open("/proc/cpuinfo").read()
    name = re.search(r"model name\s*:\s*(.*)", cpu).group(1)
    fam_ = re.search(r"cpu family\s*:\s*(\d+)", cpu).group(1)
    print(f"CPU {name} (family {fam_}); perf samples at 999 Hz over ~{seconds:.0f} s per row; "
          f"OpenBLAS threads as training sets them (1 at batch 64, all at 256), libtorch 1 thread")
    print("| family | batch | λ | steps/s | GFLOP/step | " + " | ".join(CLASSES) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(CLASSES))
    for fam, batch, lam, fsteps in CASES:
        if only and fam not in only:
            continue
        line, share = profile(build, fam, batch, lam, fsteps, seconds)
        lam_s = f"{lam:g}" + (f" ({fsteps} steps)" if fsteps else "")
        print(f"| {fam.upper()} | {batch} | {lam_s} | {line['steps_per_s']:.1f} | "
              f"{line['gemm_flop'] / 1e9:.2f} | " + " | ".join(f"{share[k]:.0f}%" for k in CLASSES) + " |",
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 6.0, tuple(sys.argv[3:]))
