#!/usr/bin/env bash
# Builds the fuzz targets (build.sh) and runs each for SECONDS (default 10) on its seed
# corpus (tests/fuzz/corpus/<target>/, kept) plus what it grows (BUILD/fuzz/corpus/,
# not kept); prints each target's executions and time. A crash stops that target and
# leaves its input in BUILD/fuzz/crashes/<target>/: fix it and copy the input to
# tests/fuzz/crashes/<target>/, where test_fuzz_inputs replays it in every build.
# usage: run.sh [SECONDS [TARGET ...]]   env: FL_BUILD (default build), FL_FUZZ_FLAGS
# (more libFuzzer flags, e.g. "-runs=1000000", or "-fork=1 -ignore_crashes=1
# -ignore_ooms=1" for a long run that keeps going past findings in libhdf5)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
secs=${1:-10}
shift || true
build=${FL_BUILD:-$root/build}
targets=("$@")
"$root/tests/fuzz/build.sh" "$build" "${targets[@]}" || exit 1
[ ${#targets[@]} -eq 0 ] && targets=(config idx npm samples cached dataset)
fails=0
for t in "${targets[@]}"; do
    corpus="$build/fuzz/corpus/$t" crashes="$build/fuzz/crashes/$t"
    mkdir -p "$corpus" "$crashes"
    log="$build/fuzz/$t.log"
    # -rss_limit_mb: libtorch alone takes ~400 MB; a reader that allocates what a header
    # claims is a finding (malloc_limit_mb)
    # allocator_may_return_null: HDF5 mallocs what a corrupt file's metadata claims
    # (16 EB) and fails the open on NULL, as it does under glibc; an allocation that
    # succeeds past -malloc_limit_mb is still a finding. tests/fuzz/lsan.supp: an HDF5 leak.
    ASAN_OPTIONS=allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS} \
    LSAN_OPTIONS=suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
    "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
        -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$crashes/" ${FL_FUZZ_FLAGS:-} \
        "$corpus" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1)
    # -fork=1: the parent's "#N: ... oom/timeout/crash: a/b/c" lines count the jobs' executions
    # and findings together (with -ignore_crashes=1 the run goes on and exits 0)
    forked=$(grep -E '^#[0-9]+: .*oom/timeout/crash' "$log" | tail -1)
    if [ -n "$forked" ]; then
        runs=$(echo "$forked" | sed -E 's/^#([0-9]+):.*/\1/')
        took=$(echo "$forked" | sed -E 's/.* time: ([0-9]+)s.*/\1/')
        found=$(echo "$forked" | sed -E 's/.*oom\/timeout\/crash: ([0-9\/]+).*/\1/')
    fi
    if [ $rc -eq 0 ] && [ -n "$forked" ]; then
        echo "fuzz_$t: ${runs:-?} executions in ${took:-$secs} s (forked jobs), oom/timeout/crash $found; inputs in $crashes/"
    elif [ $rc -eq 0 ]; then
        echo "fuzz_$t: ${runs:-?} executions in ${took:-$secs} s, no crash"
    else
        echo "fuzz_$t: FAILED (exit $rc) after ${runs:-?} executions; input in $crashes/, log $log"
        grep -m3 -E 'ERROR|SUMMARY|runtime error' "$log" | sed 's/^/    /'
        fails=$((fails + 1))
    fi
done
exit $((fails > 0))
