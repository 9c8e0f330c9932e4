#!/bin/sh
# The speed-up of `mpirun -n 2` with one thread per rank, and of two local workers
# (sweep.workers=2, threads=0: one thread each), over one process with two threads, on a
# many-cell sweep (issue 15, benchmark): the demo's NF setting over a grid
# of 8 cells (λ ∈ {0, 1, 10, 30} × seeds {0, 1}) at a short budget, each mode in a fresh
# folder under a scratch out_dir, the dataset, subject and VAE from the warm cache (the
# first step makes them if they are missing and is not timed). The three modes alternate
# (ROUNDS times) because these machines are noisy; the ratio is of the medians.
#   benchmarks/perf/bench_distribute.sh [ROUNDS] [key=value ...]
set -e
cd "$(dirname "$0")/../.."
rounds=${1:-1}
[ $# -gt 0 ] && shift
bin=./build/fiberlab
out=$(mktemp -d /tmp/fl_bench_distribute.XXXXXX)
trap 'rm -rf "$out"' EXIT
grid="sweep.families=nf sweep.lambdas=0,1,10,30 sweep.seeds=0,1 train.steps=300 \
eval.n_targets=200 eval.samples_per_target=10 out_dir=$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "cores: $(nproc)"
$bin info | grep -E '^(kernel|mpi) '
$bin train-vae --config configs/nf.json >/dev/null 2>&1   # warm cache, untimed
now() { date +%s.%N; }
one="" mpi="" wrk=""
for r in $(seq 1 "$rounds"); do
    t=$(now)
    # shellcheck disable=SC2086
    $bin sweep configs/nf.json $grid sweep.name=one$r threads=2 "$@" >"$out/one$r.log" 2>&1
    one="$one $(awk "BEGIN {print $(now) - $t}")"
    t=$(now)
    # shellcheck disable=SC2086
    mpirun -n 2 --bind-to none $bin sweep configs/nf.json $grid sweep.name=mpi$r threads=1 "$@" \
        >"$out/mpi$r.log" 2>&1
    mpi="$mpi $(awk "BEGIN {print $(now) - $t}")"
    t=$(now)
    # shellcheck disable=SC2086
    $bin sweep configs/nf.json $grid sweep.name=wrk$r threads=0 sweep.workers=2 "$@" \
        >"$out/wrk$r.log" 2>&1
    wrk="$wrk $(awk "BEGIN {print $(now) - $t}")"
    grep -h ' runs: ' "$out/one$r.log" "$out/mpi$r.log" "$out/wrk$r.log" | sed 's/^/  /'
    echo "round $r: one process, 2 threads: $(echo "$one" | awk '{print $NF}') s;" \
         "mpirun -n 2, 1 thread each: $(echo "$mpi" | awk '{print $NF}') s;" \
         "sweep.workers=2: $(echo "$wrk" | awk '{print $NF}') s"
done
med() { echo "$1" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
m1=$(med "$one")
m2=$(med "$mpi")
m3=$(med "$wrk")
echo "median wall time: one process $m1 s, mpirun -n 2 $m2 s (speed-up" \
     "$(awk "BEGIN {printf \"%.2f\", $m1 / $m2}")x), sweep.workers=2 $m3 s (speed-up" \
     "$(awk "BEGIN {printf \"%.2f\", $m1 / $m3}")x)"
