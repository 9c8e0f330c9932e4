#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang-14 into BUILD/fuzz/:
# each target's harness and the parsers it fuzzes are compiled with
# -fsanitize=fuzzer,address,undefined; the rest of fiberlab (and libtorch) is linked
# from the plain build in BUILD as it is, uninstrumented. usage: build.sh [BUILD [TARGET ...]]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
shift || true
cc=${FL_FUZZ_CC:-clang-14}
cxx=${FL_FUZZ_CXX:-clang++-14}
command -v "$cc" >/dev/null || { echo "build.sh: $cc not found (apt-get install clang-14)" >&2; exit 1; }
[ -f "$build/libfiberlab_lib.a" ] && [ -f "$build/libctorch.a" ] ||
    { echo "build.sh: $build has no libfiberlab_lib.a / libctorch.a: build fiberlab first" >&2; exit 1; }
# the libraries the fiberlab command links, as CMake wrote them
libs=$(sed 's/.* -o fiberlab //' "$build/CMakeFiles/fiberlab.dir/link.txt")
libs=${libs//\"/}   # the quotes CMake puts around some paths
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DFL_SOURCE_DIR=\"$root\"
        -I$root -I$build/generated -isystem /usr/include/hdf5/serial"
out="$build/fuzz"
cd "$build"   # the link line names the libraries relative to it
mkdir -p "$out/obj"
# the C++ archive reader behind cached models and checkpoints, instrumented once
arch="$out/obj/ct_archive.o"
if [ ! -f "$arch" ] || [ "$root/ctorch/ct_archive.cpp" -nt "$arch" ]; then
    # vptr and function checks need the C++ UBSan runtime, which a C link leaves out
    $cxx -g -O1 -std=gnu++17 ${san/fuzzer,/fuzzer-no-link,} -fno-sanitize=vptr,function -D_GLIBCXX_USE_CXX11_ABI=1 \
        -I"$root/ctorch" -isystem /usr/include/torch/csrc/api/include -isystem /usr/include/hdf5/serial \
        -c "$root/ctorch/ct_archive.cpp" -o "$arch"
fi
# target: the sources it fuzzes (instrumented)
declare -A parsers=(
    [config]="core/config.c core/schema.c"
    [idx]="datasets/idx.c"
    [npm]="datasets/npm_json.c"
    [samples]="benchmarks/eval.c core/h5.c"
    [cached]="trainers/model_cache.c trainers/vae.c core/h5.c"
    [dataset]="datasets/store.c core/h5.c"
)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${!parsers[@]}")
for t in "${targets[@]}"; do
    srcs=""
    for s in ${parsers[$t]}; do srcs="$srcs $root/$s"; done
    extra=""
    [ "$t" = cached ] && extra="$arch"
    # shellcheck disable=SC2086
    $cc $cflags $san -DFL_FUZZ_TARGET=fuzz_$t "$root/tests/fuzz/fuzz_$t.c" "$root/tests/fuzz/fuzz_util.c" \
        $srcs $extra -o "$out/fuzz_$t" -Wl,--allow-multiple-definition $libs -lstdc++
    echo "built $out/fuzz_$t"
done
