"""Cross-build cymlp's extensions for aarch64 with setup.py's own settings (.ci/aarch64.sh).

Run from a copy of the source tree: python aarch64_build.py SYSCONFIGDATA OUT_DIR

setup.py is executed with setuptools.setup() stubbed out, so its cythonize() call runs as
written (directives, macros, include dirs) and its BuildExt picks the compile and link
flags (the release flags, and OpenMP probed with the cross compiler) as in a real build.
The C files are then compiled and linked the way distutils would on an aarch64 Python:
its CC, CFLAGS, CCSHARED and LDSHARED (SYSCONFIGDATA: the target Python's
_sysconfigdata_*.py), its headers (found from that file's location in the sysroot), and
setup.py's flags last, so they win (-O3 over -O2, -g0 over -g).
"""

import logging
import os
import runpy
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import setuptools
from setuptools import Distribution
from setuptools._distutils.ccompiler import new_compiler
from setuptools.command import build_ext as _build_ext


def main(sysconfigdata, out_dir):
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the compiler commands
    config = runpy.run_path(sysconfigdata)["build_time_vars"]
    usr = Path(sysconfigdata).resolve().parents[2]  # <sysroot>/usr/lib/python3.X/... -> usr
    py_dir = Path(config["INCLUDEPY"]).name  # python3.11
    includes = [str(usr / "include" / py_dir), str(usr / "include")]  # pyconfig.h dispatches

    captured = {}
    setuptools.setup = lambda **kw: captured.update(kw)
    runpy.run_path("setup.py", run_name="__main__")  # cythonizes
    extensions, build_cls = captured["ext_modules"], captured["cmdclass"]["build_ext"]

    cc = shlex.split(config["CC"])
    compiler = new_compiler(compiler="unix", verbose=1)
    compiler.set_executables(
        compiler=cc, compiler_so=[*cc, *shlex.split(config["CFLAGS"]), config["CCSHARED"]],
        linker_so=shlex.split(config["LDSHARED"]), linker_exe=cc,
    )
    # setup.py's BuildExt sets each extension's flags, then calls the base class
    _build_ext.build_ext.build_extensions = lambda self: None
    cmd = build_cls(Distribution({"ext_modules": extensions}))
    cmd.extensions, cmd.compiler = extensions, compiler
    cmd.build_extensions()

    def build(ext):  # one extension, in a thread of its own (the compilers run in parallel)
        objects = compiler.compile(
            ext.sources, output_dir=os.path.join(out_dir, "obj"), macros=ext.define_macros,
            include_dirs=[*ext.include_dirs, *includes], extra_postargs=ext.extra_compile_args,
        )
        target = os.path.join(out_dir, *ext.name.split(".")) + config["EXT_SUFFIX"]
        compiler.link_shared_object(objects, target, extra_postargs=ext.extra_link_args)

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(build, extensions))  # (list: re-raises a failed build's error)


if __name__ == "__main__":
    main(*sys.argv[1:])
