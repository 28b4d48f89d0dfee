#!/bin/sh
# Builds the CUDA emulator: OUTDIR/libcudaemu.so plus OUTDIR/cuda_emu.h (which the emulator's
# nvrtcCompileProgram includes in front of the kernel source).
#
#   Tools/cuda/emulator/build.sh OUTDIR
#
# Compiler: $CXX if set, else the Swift toolchain's clang++ (/opt/swift/usr/bin/clang++), else clang++
# or g++ on the PATH. The same compiler later compiles the kernels (SGEMU_CXX overrides it at run time).
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)
cxx=${CXX:-}
if [ -z "$cxx" ]; then
    for candidate in /opt/swift/usr/bin/clang++ clang++ g++; do
        if command -v "$candidate" >/dev/null 2>&1; then
            cxx=$(command -v "$candidate")
            break
        fi
    done
fi
if [ -z "$cxx" ]; then
    echo "build.sh: no C++ compiler found (set CXX, or install clang++ or g++)" >&2
    exit 3
fi
mkdir -p "$out"
cp "$here/cuda_emu.h" "$out/cuda_emu.h"
"$cxx" -std=c++17 -O2 -shared -fPIC -Wall -Wextra -Wno-unused-parameter \
    -DSGEMU_DEFAULT_CXX="\"$cxx\"" "$here/cuda_emu.cpp" -o "$out/libcudaemu.so.tmp" -ldl
mv "$out/libcudaemu.so.tmp" "$out/libcudaemu.so"
echo "$out/libcudaemu.so"
