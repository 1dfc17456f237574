"""What an installed cymlp carries: files, metadata, build configuration.

Meant for a regular install from a wheel (``pip install .``, .ci/wheel_check.sh,
cibuildwheel's test step); the file checks skip for editable or in-place builds.
"""

import importlib.metadata as md
import os

import pytest

import cymlp
from cymlp._config import config

EXTENSIONS = ("_kernels", "_engine", "_testing")


@pytest.fixture(scope="module")
def dist():
    try:
        return md.distribution("cymlp")
    except md.PackageNotFoundError:
        pytest.skip("cymlp is not installed as a distribution")


@pytest.fixture(scope="module")
def installed_files(dist):
    files = {str(f).replace("\\", "/") for f in dist.files or ()}
    if "cymlp/__init__.py" not in files:
        pytest.skip("not a regular install (editable or in-place build)")
    return files


def test_installed_files_are_the_imported_ones(dist, installed_files):
    init = os.path.realpath(dist.locate_file("cymlp/__init__.py"))
    assert os.path.realpath(cymlp.__file__) == init


def test_wheel_carries_extensions_and_py_typed(installed_files):
    assert "cymlp/py.typed" in installed_files
    for name in EXTENSIONS:
        assert any(f.startswith(f"cymlp/{name}.") and f.endswith((".so", ".pyd"))
                   for f in installed_files), name


def test_wheel_carries_no_sources_or_tests(installed_files):
    unwanted = [f for f in installed_files
                if f.endswith((".c", ".cpp", ".h", ".pyx", ".pxd", ".npz"))
                or f.split("/")[0] in ("tests", "benchmarks", "docs")]
    assert unwanted == []


def test_license_file_installed(installed_files):
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in installed_files)


def test_metadata(dist):
    meta = dist.metadata
    assert meta["Name"] == "cymlp"
    assert meta["Version"] == cymlp.__version__
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["Summary"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "# cymlp" in (meta.get_payload() or meta.get("Description") or "")
    labels = {url.split(",")[0].strip() for url in meta.get_all("Project-URL") or ()}
    assert {"Homepage", "Source", "Issues"} <= labels
    assert meta.get_all("Classifier")


@pytest.mark.skipif("CYMLP_EXPECT_OPENMP" not in os.environ,
                    reason="CYMLP_EXPECT_OPENMP (0 or 1) not set")
def test_openmp_as_built_for_this_platform():
    assert config()["openmp"] is (os.environ["CYMLP_EXPECT_OPENMP"] == "1")


@pytest.mark.skipif("CYMLP_EXPECT_THREADS" not in os.environ,
                    reason="CYMLP_EXPECT_THREADS (openmp, pthreads, win32, none) not set")
def test_threads_backend_as_built_for_this_platform():
    assert config()["threads_backend"] == os.environ["CYMLP_EXPECT_THREADS"]


@pytest.mark.skipif(os.environ.get("CYMLP_EXPECT_SIMD") != "1",
                    reason="CYMLP_EXPECT_SIMD=1 not set")
def test_vector_kernels_compiled_in():
    """A wheel built with vector kernels (e.g. Windows: clang-cl, not cl.exe's plain C)."""
    cfg = config()
    assert "baseline" in cfg["simd_variants_available"]  # SSE2 / NEON: every CPU has it
    if not os.environ.get("CYMLP_SIMD"):
        assert cfg["simd_variant"] != "portable"


def test_simd_variants_are_runtime_choices():
    cfg = config()
    assert "portable" in cfg["simd_variants_available"]
    assert cfg["simd_variant"] in cfg["simd_variants_available"]
