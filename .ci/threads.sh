#!/usr/bin/env bash
# Threads step of CI: the backend the macOS wheels ship (CYMLP_THREADS=pthreads: cymlp's
# pool of POSIX threads, no OpenMP runtime), built on Linux into a fresh venv from a copy
# of the tree, then:
#   - tests/native/test_threads.c (the pool on its own: every task once, many jobs,
#     concurrent callers, nesting, fork, shutdown), compiled natively with gcc;
#   - the kernel, gradient, parity, estimator and thread tests under that build, with
#     OMP_NUM_THREADS=2 (tests/test_n_jobs.py: bit-identical results for n_jobs 1, 2, 3
#     at shapes where the work is split).
# The win32 pool is compiled with MinGW and run under wine by .ci/windows.sh, which runs
# every tests/native/test_*.c.
set -euo pipefail
cd "$(dirname "$0")/.."
data_home=$(cd "${CYMLP_DATA_HOME:-../shared/data}" && pwd)
work=$(mktemp -d /tmp/cymlp-threads.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "== threads: the pthreads pool (macOS wheels' backend), built and tested on Linux"

echo "== threads: tests/native/test_threads.c, pthreads pool, gcc"
gcc -O2 -Wall -Wextra -I src/cymlp/_native tests/native/test_threads.c -o "$work/test_threads"
"$work/test_threads"

echo "== threads: building with CYMLP_THREADS=pthreads"
. .ci/_copy_build.sh
copy_build "$work" CYMLP_THREADS=pthreads

cp -r tests "$work/tests"
cd "$work"
"$work/venv/bin/python" - <<'EOF'
import subprocess
import cymlp
from cymlp import _engine, _kernels, _testing
cymlp.show_config()
assert _kernels.threads_backend() == "pthreads", _kernels.threads_backend()
for mod in (_kernels, _engine, _testing):  # no OpenMP runtime anywhere
    ldd = subprocess.run(["ldd", mod.__file__], capture_output=True, text=True).stdout
    assert "libgomp" not in ldd and "libomp" not in ldd, ldd
EOF
echo "== threads: tests under the pthreads build"
set +e
CYMLP_DATA_HOME="$data_home" OMP_NUM_THREADS=2 CYMLP_EXPECT_THREADS=pthreads \
    "$work/venv/bin/python" -m pytest -p no:cacheprovider -q \
    tests/test_threads.py tests/test_n_jobs.py tests/test_kernels.py tests/test_gradients.py \
    tests/test_parity.py \
    tests/test_estimator.py tests/test_packaging.py
rc=$?
set -e
echo "== threads: $(($(date +%s) - start)) s"
if [ "$rc" -eq 5 ]; then
    echo "threads: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
