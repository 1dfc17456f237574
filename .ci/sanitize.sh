#!/usr/bin/env bash
# Sanitizer step of CI: a debug build of cymlp (CYMLP_SANITIZE=1: Cython's boundscheck,
# wraparound and initializedcheck on, -fsanitize=address,undefined, errors fatal) in a
# fresh venv, then the fast tests under it with libasan preloaded into Python.
# Any AddressSanitizer or UndefinedBehaviorSanitizer report fails the run. Two tests are
# left out here and run in the plain builds of the other steps: the GIL test, whose two
# fits in two threads instrumentation skews, and the memory-growth test, which reads the
# process's RSS: under ASan that counts the allocator's quarantine of freed blocks (256 MB
# by default, filled and recycled as the test allocates) and shadow pages, not our
# allocations.
# CI is set for the tests, so a test that skips (say, for want of MNIST) fails the run
# unless tests/conftest.py allow-lists it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
data_home=$(cd "${CYMLP_DATA_HOME:-../shared/data}" && pwd)
# the four MNIST files themselves (gzipped or not), not only the folder: the MNIST tests
# below must run, not skip
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
            t10k-labels-idx1-ubyte; do
    if [ ! -f "$data_home/mnist/$name.gz" ] && [ ! -f "$data_home/mnist/$name" ]; then
        echo "sanitize: MNIST file $name(.gz) missing in $data_home/mnist" >&2
        exit 1
    fi
done
work=$(mktemp -d /tmp/cymlp-asan.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== sanitize: building with CYMLP_SANITIZE=1"
. .ci/_copy_build.sh
copy_build "$work" CYMLP_SANITIZE=1

libasan=$(gcc -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)" >&2; exit 1; }
cp -r tests "$work/tests"
cd "$work"
echo "== sanitize: fast tests under ASan + UBSan"
set +e
LD_PRELOAD="$libasan" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
CYMLP_DATA_HOME="$data_home" OMP_NUM_THREADS=2 CI="${CI:-true}" \
    "$work/venv/bin/python" -m pytest -p no:cacheprovider -q -k "not release_the_gil and not keeps_rss_flat" \
    tests/test_kernels.py tests/test_gradients.py tests/test_estimator.py tests/test_parity.py \
    tests/test_io.py tests/test_datasets.py tests/test_robustness.py tests/test_sklearn_checks.py \
    tests/test_fuzz_files.py tests/test_threads.py tests/test_n_jobs.py tests/test_params.py
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "sanitize: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
