# Sourced by .ci/sanitize.sh and .ci/threads.sh: build a copy of the tree, so that the
# generated C of a special build never lands in the source tree.
#   copy_build WORK [VAR=value ...]
# copies src/cymlp and the packaging files into WORK (without generated C, .so files or
# caches), makes a fresh venv WORK/venv and installs the copy with its [test] extra,
# with the given build variables set (e.g. CYMLP_SANITIZE=1).
copy_build() {
    local work=$1
    shift
    mkdir -p "$work/src"
    cp -r src/cymlp "$work/src/"
    cp setup.py pyproject.toml README.md LICENSE MANIFEST.in "$work/"
    find "$work/src" \( -name '*.c' -o -name '*.so' -o -name '__pycache__' \) -prune \
        -exec rm -rf {} +
    python3 -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install --quiet --upgrade pip
    env "$@" "$work/venv/bin/python" -m pip install --quiet "$work[test]"
}
