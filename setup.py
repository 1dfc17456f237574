"""Build cymlp's Cython extensions (metadata lives in pyproject.toml).

Environment variables:
  CYMLP_NATIVE=1    add -march=native (local builds only; never for distributed wheels)
  CYMLP_PORTABLE=1  compile only the plain-C matrix kernel (what MSVC gets anyway)
  CYMLP_THREADS=    threading backend (src/cymlp/_threads.h): openmp, pthreads (a pool of
                    POSIX threads), win32 (the same pool on Windows threads) or none.
                    Unset: OpenMP when the compiler has it, else the platform's pool.
  CYMLP_NO_OPENMP=1 the same as CYMLP_THREADS=none (older switch)
  CYMLP_SANITIZE=1  debug build for tests: Cython boundscheck/wraparound/initializedcheck
                    on, -fsanitize=address,undefined (run Python with LD_PRELOAD=libasan)
"""

import os
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODULES = ["_kernels", "_optim", "_engine"]
OPENMP_TEST = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
THREADS = ("openmp", "pthreads", "win32", "none")


def _flag(name):
    return os.environ.get(name, "").strip() not in ("", "0")


def _threads_requested():
    """CYMLP_THREADS (or "none" for CYMLP_NO_OPENMP=1); None: choose (see the docstring)."""
    name = os.environ.get("CYMLP_THREADS", "").strip().lower()
    if name and name not in THREADS:
        sys.exit(f"cymlp: CYMLP_THREADS={name!r}: expected one of {', '.join(THREADS)}")
    if not name and _flag("CYMLP_NO_OPENMP"):
        name = "none"
    native = "win32" if sys.platform == "win32" else "pthreads"
    if name in ("pthreads", "win32") and name != native:
        sys.exit(f"cymlp: CYMLP_THREADS={name} is not for this platform; use {native}")
    return name or None


class BuildExt(build_ext):
    """build_ext that picks optimisation and threading flags for the compiler in use."""

    def _threads_flags(self):
        """(backend, compile flags, link flags)"""
        name = _threads_requested()
        native = "win32" if sys.platform == "win32" else "pthreads"
        if name in (None, "openmp"):
            cflags, lflags = self._openmp_flags()
            if cflags:
                return "openmp", cflags, lflags
            if name == "openmp":
                sys.exit("cymlp: CYMLP_THREADS=openmp, but the compiler has no OpenMP")
            print(f"cymlp: OpenMP not found, threads from the {native} pool",
                  file=sys.stderr)
            name = native
        if name == "pthreads" and self.compiler.compiler_type != "msvc":
            return name, ["-pthread"], ["-pthread"]  # (glibc < 2.34: libpthread)
        return name, [], []

    def _openmp_flags(self):
        if self.compiler.compiler_type == "msvc":
            return ["/openmp"], []
        candidates = [(["-fopenmp"], ["-fopenmp"])]
        if sys.platform == "darwin":  # Apple clang + Homebrew libomp
            candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
        for cflags, lflags in candidates:
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "omp_test.c")
                with open(src, "w") as f:
                    f.write(OPENMP_TEST)
                try:
                    objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                    self.compiler.link_executable(
                        objs, os.path.join(tmp, "omp_test"), extra_postargs=lflags
                    )
                except Exception:
                    continue
            return cflags, lflags
        return [], []

    def build_extensions(self):
        threads, omp_c, omp_l = self._threads_flags()
        print(f"cymlp: threading backend {threads}", file=sys.stderr)
        lflags = [*omp_l]
        if self.compiler.compiler_type == "msvc":
            cflags = ["/O2", *omp_c]
        elif SANITIZE:
            sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                          "-fno-omit-frame-pointer"]
            cflags = ["-O1", "-g", "-fno-math-errno", *sanitizers, *omp_c]
            lflags += sanitizers
        else:
            # -g0: no debug info (Python's default CFLAGS have -g; it doubles the wheel).
            # -fno-trapping-math: nothing here traps on FP exceptions, and without it GCC
            # keeps the branches of float selects (clamps, relu, NaN checks) out of
            # vectorised loops
            cflags = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math", *omp_c]
            if _flag("CYMLP_NATIVE"):
                cflags.append("-march=native")
        for ext in self.extensions:
            ext.define_macros = [*ext.define_macros, (f"CYMLP_THREADS_{threads.upper()}", "1")]
            ext.extra_compile_args = [*ext.extra_compile_args, *cflags]
            ext.extra_link_args = [*ext.extra_link_args, *lflags]
        super().build_extensions()


SANITIZE = _flag("CYMLP_SANITIZE")
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if _flag("CYMLP_PORTABLE"):
    macros.append(("CYMLP_PORTABLE", "1"))

extensions = [
    Extension(
        f"cymlp.{name}",
        [f"src/cymlp/{name}.pyx"],
        include_dirs=["src/cymlp"],
        define_macros=macros,
        # rebuild when the C headers change (Cython does not track them)
        depends=["src/cymlp/_gemm.h", "src/cymlp/_gemm_impl.h", "src/cymlp/_gemm_epi.h",
                 "src/cymlp/_gemm_micro.h", "src/cymlp/_vmath.h", "src/cymlp/_threads.h"],
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        # checks off in the hot loops (inputs are validated at the API boundary), on in
        # the sanitizer build
        compiler_directives={"language_level": 3, "boundscheck": SANITIZE,
                             "wraparound": SANITIZE, "initializedcheck": SANITIZE},
        force=SANITIZE,
        include_path=["src"],
    ),
    cmdclass={"build_ext": BuildExt},
)
