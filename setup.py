"""Build cymlp's Cython extensions (metadata lives in pyproject.toml).

Environment variables:
  CYMLP_NATIVE=1    add -march=native (local builds only; never for distributed wheels)
  CYMLP_PORTABLE=1  compile only the plain-C matrix kernel (what MSVC's cl.exe gets anyway)
  CYMLP_THREADS=    threading backend (src/cymlp/_native/_threads.h): openmp, pthreads (a pool of
                    POSIX threads), win32 (the same pool on Windows threads) or none.
                    Unset: OpenMP when the compiler has it, else the platform's pool.
                    Windows with clang-cl: the win32 pool (clang-cl's OpenMP would need
                    LLVM's libomp in the wheel).
  CYMLP_NO_OPENMP=1 the same as CYMLP_THREADS=none (older switch)
  CYMLP_WIN_CC      Windows: the C compiler. Unset or "auto": clang-cl when found (PATH,
                    the Visual Studio environment, %ProgramFiles%/LLVM/bin), for the
                    vector kernels, else cl.exe (plain-C kernel only); "clang-cl" (or the
                    path of a clang-cl.exe): clang-cl, or fail; "cl": cl.exe
  CYMLP_SANITIZE=1  debug build for tests: Cython boundscheck/wraparound/initializedcheck
                    on, -fsanitize=address,undefined (run Python with LD_PRELOAD=libasan)
"""

import glob
import os
import shutil
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MODULES = ["_kernels", "_engine", "_testing"]
OPENMP_TEST = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
THREADS = ("openmp", "pthreads", "win32", "none")
# clang-cl's optimisation flags, after setuptools' MSVC options (/O2 /MD ...): what -O3
# -fno-math-errno -fno-trapping-math are for gcc and clang below. .ci/windows.sh compiles
# its kernel tests with these too.
CLANG_CL_FLAGS = ["/O2", "/clang:-O3", "/clang:-fno-math-errno", "/clang:-fno-trapping-math"]


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


def _find_clang_cl(vc_path):
    """The clang-cl.exe CYMLP_WIN_CC asks for (see the top), or None for cl.exe."""
    want = os.environ.get("CYMLP_WIN_CC", "").strip() or "auto"
    if want.lower() in ("cl", "cl.exe", "msvc"):
        return None
    if want.lower() not in ("auto", "clang-cl", "clang-cl.exe"):
        if not os.path.isfile(want):
            raise RuntimeError(f"CYMLP_WIN_CC={want!r}: no such file")
        return want
    llvm = os.path.join(os.environ.get("ProgramFiles", r"C:\Program Files"), "LLVM", "bin")
    for path in (os.environ.get("PATH"), vc_path, llvm):
        found = shutil.which("clang-cl.exe", path=path) if path else None
        if found:
            return found
    if want.lower() != "auto":
        raise RuntimeError("CYMLP_WIN_CC=clang-cl, but no clang-cl.exe was found: install "
                           "LLVM (or Visual Studio's C++ Clang tools) or put it on PATH")
    return None


class BuildExt(build_ext):
    """build_ext that picks optimisation and threading flags for the compiler in use."""

    def _use_clang_cl(self):
        """Windows: compile with clang-cl in place of cl.exe (True when it does).

        clang-cl takes cl.exe's options and links with MSVC's link.exe and runtime, and
        it compiles the GCC vector extensions and target attributes of _gemm.h, so a
        Windows build gets the SSE2, AVX2+FMA and AVX-512 kernels, chosen from cpuid at
        import as on Linux; cl.exe gets the plain-C kernel only (CYMLP_PORTABLE)."""
        if self.compiler.compiler_type != "msvc":
            return False
        if not getattr(self.compiler, "initialized", True):
            self.compiler.initialize()  # finds cl.exe, link.exe and the SDK (vcvarsall)
        clang_cl = _find_clang_cl(getattr(self.compiler, "_paths", None))
        if clang_cl is None:
            print("cymlp: compiling with cl.exe: the plain-C kernel only (set "
                  "CYMLP_WIN_CC=clang-cl, with LLVM installed, for the SIMD kernels)",
                  file=sys.stderr)
            return False
        print(f"cymlp: compiling with {clang_cl}", file=sys.stderr)
        self.compiler.cc = clang_cl
        # /GL is cl.exe's link-time code generation, which clang-cl ignores (with a warning)
        self.compiler.compile_options = [o for o in self.compiler.compile_options if o != "/GL"]
        return True

    def _threads_flags(self, clang_cl=False):
        """(backend, compile flags, link flags)"""
        name = _threads_requested()
        native = "win32" if sys.platform == "win32" else "pthreads"
        if clang_cl and name is None:
            # not OpenMP: clang-cl's /openmp needs LLVM's libomp, which the wheel would
            # have to carry (and which could meet other OpenMP runtimes in one process)
            name = "win32"
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
        clang_cl = self._use_clang_cl()
        threads, omp_c, omp_l = self._threads_flags(clang_cl)
        print(f"cymlp: threading backend {threads}", file=sys.stderr)
        lflags = [*omp_l]
        if clang_cl:
            cflags = [*CLANG_CL_FLAGS, *omp_c]
        elif self.compiler.compiler_type == "msvc":
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
        include_dirs=["src/cymlp/_native"],  # the C the Cython wraps
        define_macros=macros,
        # rebuild when the C headers change (Cython does not track them)
        depends=sorted(glob.glob("src/cymlp/_native/*.h")),
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
