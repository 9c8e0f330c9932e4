#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every Criterion suite
# with ctest. With --asan it also builds and runs the suites under AddressSanitizer,
# LeakSanitizer and UndefinedBehaviorSanitizer (build-asan/).
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
fi
