#!/bin/sh
# ctorch on a GPU: builds ctorch and benchmarks/perf/cuda_check.c against the libtorch of
# the Python torch on this machine (a CUDA build: torch.utils.cmake_prefix_path), then
# runs the check (its lines, then "N passed, N failed"). For a machine with a GPU and
# PyTorch but not fiberlab's other dependencies: ctorch's archives need HDF5, which such
# a machine may lack, so ct_archive.cpp is left out: ctorch is linked as a shared library
# bound lazily, whose archive functions (never called here) stay unresolved. Everything
# else of ctorch is compiled as it is.
#   benchmarks/perf/cuda_check.sh [BUILD_DIR] [DEVICE]     (defaults: /tmp/ct_cuda, cuda:0)
set -e
cd "$(dirname "$0")/../.."
out=${1:-/tmp/ct_cuda}
dev=${2:-cuda:0}
py=${PYTHON:-python3}
torch_dir=$($py -c 'import os, torch; print(os.path.dirname(torch.__file__))')
abi=$($py -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
ver=$($py -c 'import torch; print(torch.__version__.split("+")[0])')
cuda=$($py -c 'import torch; print(torch.version.cuda)')
echo "torch $ver (CUDA $cuda) in $torch_dir; C++ ABI $abi"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p "$out"
flags="-std=c++17 -O2 -fPIC -D_GLIBCXX_USE_CXX11_ABI=$abi -DCT_TORCH_VERSION=\"$ver\" \
 -isystem $torch_dir/include -isystem $torch_dir/include/torch/csrc/api/include"
t0=$(date +%s)
pids=""
for f in ctorch/*.cpp; do
    case $f in ctorch/ct_archive.cpp) continue ;; esac
    o="$out/$(basename "$f" .cpp).o"
    extra=""
    [ "$f" = ctorch/ct_optim_kernel.cpp ] && extra="-O3 -fno-math-errno"
    # shellcheck disable=SC2086
    g++ $flags $extra -c "$f" -o "$o" &
    pids="$pids $!"
done
failed=0
for p in $pids; do wait "$p" || failed=1; done
[ "$failed" -eq 0 ] || { echo "ctorch did not compile against torch $ver" >&2; exit 1; }
# libtorch_cuda registers CUDA with libtorch when it loads: link it even though no symbol
# of it is referenced (a CPU-only torch has none: then the check runs `cpu` only)
gpu_libs=""
[ -e "$torch_dir/lib/libtorch_cuda.so" ] && gpu_libs="-ltorch_cuda -lc10_cuda"
# a shared ctorch, bound lazily: the archive functions it calls but lacks are never called
# shellcheck disable=SC2086
g++ -shared "$out"/ct_*.o -o "$out/libct_check.so" -L"$torch_dir/lib" -Wl,-rpath,"$torch_dir/lib" \
    -Wl,-z,lazy -Wl,--no-as-needed $gpu_libs -ltorch -ltorch_cpu -lc10 -Wl,--as-needed -lpthread
gcc -std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -Ictorch -c benchmarks/perf/cuda_check.c -o "$out/check_main.o"
gcc "$out/check_main.o" -o "$out/cuda_check" -L"$out" -lct_check -Wl,-rpath,"$out" -Wl,-z,lazy \
    -Wl,--allow-shlib-undefined -lm
echo "built in $(($(date +%s) - t0)) s"
"$out/cuda_check" "$dev"
