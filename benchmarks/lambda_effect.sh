#!/bin/sh
# The λ effect on the demo's NF setting over 3 seeds (issue 10, item 4): trains the
# sweep results/lambda_effect (configs/nf.json with sweep.seeds=0,1,2; finished runs
# are reused) and checks it with benchmarks/lambda_effect.py. Extra arguments are
# key=value overrides for the sweep, e.g. train.steps=3000.
#   benchmarks/lambda_effect.sh [key=value ...]
set -e
cd "$(dirname "$0")/.."
name=lambda_effect
for a in "$@"; do case "$a" in sweep.name=*) name=${a#sweep.name=} ;; esac; done
./build/fiberlab sweep configs/nf.json sweep.name=lambda_effect sweep.seeds=0,1,2 "$@"
exec /usr/bin/python3 benchmarks/lambda_effect.py "results/$name"
