#!/usr/bin/env bash
# aarch64 step of CI: cymlp's extensions cross-compiled for aarch64 and its kernel,
# gradient, parity and estimator tests run on them under QEMU user emulation, with the
# NEON kernels forced (CYMLP_SIMD=baseline: _gemm.h's baseline variant is NEON on aarch64).
#
#  1. host tools: Debian's gcc-aarch64-linux-gnu and qemu-user-static (apt-get, if missing),
#     and a venv with the build requirements of pyproject.toml (Cython, setuptools)
#  2. an arm64 sysroot folder: Debian's python3.11, its libraries, libgomp1 and the Python
#     headers, fetched with apt-get download (a private apt state for arm64: the host's
#     dpkg architectures and package lists are left alone) and unpacked with dpkg -x
#  3. site-packages for it: numpy, scipy, scikit-learn, pytest... from PyPI's aarch64 wheels
#  4. the build: .ci/aarch64_build.py runs setup.py's cythonize and BuildExt as written and
#     compiles with aarch64-linux-gnu-gcc, the target Python's flags, then setup.py's
#  5. the tests under qemu-aarch64-static, in one process that first prints show_config()
#     and fails unless the NEON variant is in use
#
# Everything lands in $CYMLP_AARCH64_WORK (default /tmp/cymlp-aarch64) and is reused by the
# next run: steps 1-3 while their inputs are unchanged, the build while the sources
# (.pyx/.pxd/.h, setup.py) and tools are. Delete the folder to start from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# absolute: the tests run from a folder of their own (test_parity reads MNIST rows)
data_home=$(cd "${CYMLP_DATA_HOME:-../shared/data}" && pwd)
work=${CYMLP_AARCH64_WORK:-/tmp/cymlp-aarch64}
pyver=3.11           # Debian 12's Python, the one the sysroot and the wheels are for
py=python$pyver
glibc_minor=36       # Debian 12's glibc 2.36: the newest manylinux_2_X tag it runs
deb_roots="$py-minimal lib$py-stdlib libgomp1 libstdc++6"  # (numpy's wheel needs libstdc++)
tests=(tests/test_kernels.py tests/test_gradients.py tests/test_parity.py
       tests/test_estimator.py)
# Left to the native run, for time: test_kernels' runs of the plain-C variant (a third of
# the emulated time; aarch64 runs it only when CYMLP_SIMD forces it), and a grid search in
# joblib worker processes, each a new emulated Python importing scikit-learn (it passes
# here too, but costs ~2.5 min of CPU alone).
deselect=(-k "not portable"
          --deselect tests/test_parity.py::test_pipeline_grid_search_cross_val_clone)
mkdir -p "$work"
exec 9>"$work/.lock"
flock 9              # one run at a time per work folder (runs reuse and replace its parts)
start=$SECONDS

# ---- 1. host tools --------------------------------------------------------------------
need=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu \
         qemu-user-static; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "== aarch64: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q -o DPkg::Lock::Timeout=600 update
    apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${need[@]}"
fi

host="$work/host-venv"
build_reqs=$(python3 -c 'import tomllib; print("\n".join(
    tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
if [ "$(cat "$host/.stamp" 2>/dev/null)" != "$build_reqs" ]; then
    echo "== aarch64: host venv with the build requirements"
    rm -rf "$host"
    python3 -m venv "$host"
    mapfile -t reqs <<<"$build_reqs"
    "$host/bin/python" -m pip install --quiet "${reqs[@]}"
    echo "$build_reqs" >"$host/.stamp"
fi

# ---- 2. the arm64 sysroot -------------------------------------------------------------
sysroot="$work/sysroot"
if [ "$(cat "$sysroot/.stamp" 2>/dev/null)" != "$deb_roots" ]; then
    echo "== aarch64: sysroot from Debian's arm64 packages"
    rm -rf "$sysroot" "$work/apt" "$work/debs"
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs" \
             "$sysroot.tmp"
    apt_arm64=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
               -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache"
               -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
    apt-get -q "${apt_arm64[@]}" update
    # the roots and the libraries they depend on (not the tools: perl, dpkg, tar)
    # shellcheck disable=SC2086
    pkgs=$(apt-cache -q "${apt_arm64[@]}" depends --recurse --no-recommends --no-suggests \
               --no-conflicts --no-breaks --no-replaces --no-enhances $deb_roots \
           | grep -E '^(lib|python3|zlib1g)' | grep -v '^libperl' | sort -u)
    # shellcheck disable=SC2086
    (cd "$work/debs" && apt-get "${apt_arm64[@]}" -qq download $pkgs "lib$py-dev")
    for deb in "$work/debs"/*.deb; do dpkg -x "$deb" "$sysroot.tmp"; done
    rm -rf "$sysroot"
    mv "$sysroot.tmp" "$sysroot"
    echo "$deb_roots" >"$sysroot/.stamp"
fi
# The emulated Python, as a host executable. Its argv[0] (qemu -0) makes it sys.executable,
# so the processes it starts (joblib's workers, multiprocessing) run under QEMU too: with no
# binfmt_misc the kernel cannot exec an aarch64 binary itself.
qpython="$sysroot/usr/bin/$py-qemu"
# shellcheck disable=SC2016  # ($0 and $@ are the wrapper's own)
printf '#!/bin/sh\nexec qemu-aarch64-static -L "%s" -0 "$0" "%s" "$@"\n' \
    "$sysroot" "$sysroot/usr/bin/$py" >"$qpython"
chmod +x "$qpython"

# ---- 3. site-packages from aarch64 wheels ---------------------------------------------
# cymlp's dependencies, and from the test extra what the chosen tests import
site="$work/site"
run_reqs=$(python3 -c 'import re, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
test = [r for r in p["optional-dependencies"]["test"]
        if re.match(r"(pytest|joblib|pandas)\b", r)]
print("\n".join(p["dependencies"] + test))')
if [ "$(cat "$site/.stamp" 2>/dev/null)" != "$run_reqs" ]; then
    echo "== aarch64: site-packages from PyPI's manylinux aarch64 wheels"
    rm -rf "$site" "$site.tmp"
    platforms=(--platform manylinux2014_aarch64)
    for minor in $(seq "$glibc_minor" -1 17); do
        platforms+=(--platform "manylinux_2_${minor}_aarch64")
    done
    mapfile -t reqs <<<"$run_reqs"
    "$host/bin/python" -m pip install --quiet --target "$site.tmp" --only-binary=:all: \
        --implementation cp --python-version "$pyver" --abi "cp${pyver/./}" \
        "${platforms[@]}" "${reqs[@]}"
    mv "$site.tmp" "$site"
    echo "$run_reqs" >"$site/.stamp"
fi

# ---- 4. the cross-build ---------------------------------------------------------------
build="$work/build"
key=$( (cat src/cymlp/*.pyx src/cymlp/*.pxd src/cymlp/_native/*.h setup.py .ci/aarch64_build.py
        aarch64-linux-gnu-gcc --version; "$host/bin/python" -m pip freeze) | sha256sum)
if [ "$(cat "$build/.stamp" 2>/dev/null)" != "$key" ]; then
    echo "== aarch64: cythonize and cross-compile"
    rm -rf "$build"
    mkdir -p "$build/src"
    cp -r src/cymlp "$build/src/"
    cp setup.py pyproject.toml "$build/"
    find "$build/src" \( -name '*.c' -o -name '*.so' -o -name '__pycache__' \) -prune \
        -exec rm -rf {} +
    # a release build whatever the caller's environment (as [tool.cibuildwheel] sets it)
    (cd "$build" && CYMLP_NATIVE=0 CYMLP_PORTABLE=0 CYMLP_NO_OPENMP=0 CYMLP_SANITIZE=0 \
        "$host/bin/python" "$root/.ci/aarch64_build.py" \
        "$sysroot/usr/lib/$py/_sysconfigdata__linux_aarch64-linux-gnu.py" out)
    echo "$key" >"$build/.stamp"
fi
# the NEON kernels are in the binary: vector FMAs in the baseline functions
so=$(echo "$build"/out/cymlp/_kernels.*.so)
n_fmla=0
for fn in $(aarch64-linux-gnu-nm "$so" | awk '$3 ~ /_baseline$/ {print $3}'); do
    n=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn --disassemble="$fn" "$so" \
        | grep -cE 'fmla[[:space:]]+v[0-9]+\.(4s|2d)' || true)
    n_fmla=$((n_fmla + n))
done
echo "aarch64: $n_fmla NEON vector FMAs (fmla .4s/.2d) in _kernels' baseline functions"
[ "$n_fmla" -gt 0 ] || { echo "aarch64: no NEON FMAs in the baseline kernels" >&2; exit 1; }

# ---- 5. the tests under QEMU ----------------------------------------------------------
# The package (its Python files and the aarch64 .so files) and copies of the tests, so
# nothing from the source tree is imported; test_parity's MNIST rows come from data_home.
run="$work/run"
rm -rf "$run"
mkdir -p "$run/pkg"
cp -r src/cymlp "$run/pkg/"
find "$run/pkg" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.h' -o -name '*.c' \
    -o -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$build"/out/cymlp/*.so "$run/pkg/cymlp/"
cp -r tests pyproject.toml "$run/"
setup_s=$((SECONDS - start))
neon=baseline  # _gemm.h: the baseline variant is SSE2 on x86-64, NEON on aarch64
echo "== aarch64: ${tests[*]} under qemu-aarch64-static, CYMLP_SIMD=$neon (NEON)"
cd "$run"
set +e
# (the timeout only guards CI's budget against a hang under emulation)
CYMLP_SIMD=$neon OMP_NUM_THREADS=2 PYTHONPATH="$run/pkg:$site" CYMLP_DATA_HOME="$data_home" \
timeout --kill-after=60 2400 "$qpython" -c '
import os
import sys

import pytest

import cymlp
from cymlp._config import config

cymlp.show_config()
variant, neon = config()["simd_variant"], os.environ["CYMLP_SIMD"]
if variant != neon:
    sys.exit(f"aarch64: variant {variant!r} in use, not the NEON one ({neon!r})")
if not config()["openmp"]:
    sys.exit("aarch64: built without OpenMP, unlike the aarch64 wheels")
sys.exit(pytest.main(["-p", "no:cacheprovider", "--durations=5", *sys.argv[1:]]))
' "${tests[@]}" "${deselect[@]}"
rc=$?
set -e
echo "aarch64: setup ${setup_s} s, tests $((SECONDS - start - setup_s)) s"
if [ "$rc" -eq 5 ]; then
    echo "aarch64: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
