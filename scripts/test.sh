#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every Criterion suite
# with ctest. With --asan it also builds and runs the suites under AddressSanitizer,
# LeakSanitizer and UndefinedBehaviorSanitizer (build-asan/), and runs each libFuzzer
# target on 1,000 inputs (tests/fuzz/run.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
asan=0
[ "${1:-}" = "--asan" ] && asan=1
"$root/scripts/setup.sh"
ctest --test-dir "$root/build" --output-on-failure -j"$(nproc)"
if [ "$asan" -eq 1 ]; then
    "$root/scripts/setup.sh" --asan --build-dir "$root/build-asan"
    # the sanitizer options (LeakSanitizer on, suppressions in tests/lsan.supp) are set
    # on every test by tests/CMakeLists.txt, so that ctest run by hand applies them too
    ctest --test-dir "$root/build-asan" --output-on-failure -j"$(nproc)"
    # a smoke run of every fuzz target (tests/fuzz/README.md): 1,000 inputs each, mutated
    # with a fixed seed from the seeds (and what earlier runs in this build/ grew), so a
    # fresh clone runs the same inputs every time; at most 60 s a target. A crash, a
    # sanitizer report or a leak fails the run. (Seed 1's 1,966th dataset input reaches
    # an out-of-bounds read inside libhdf5 1.10.8: tests/fuzz/README.md.)
    FL_BUILD="$root/build" FL_FUZZ_FLAGS="-seed=1 -runs=1000" "$root/tests/fuzz/run.sh" 60
fi
