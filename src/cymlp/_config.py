"""Build and run-time configuration: SIMD variant, threading backend, threads."""

from __future__ import annotations

from cymlp import _kernels
from cymlp._version import __version__


def config() -> dict:
    """cymlp's version, matrix-product variant in use and available, threading backend
    ("openmp", "pthreads", "win32" or "none"; ``openmp`` is True for the first), the
    default thread count (``n_jobs=None``), and the least work of a training step that
    runs on several threads (smaller networks and batches run that part on one thread,
    which is faster for them: ``threads_min_rows`` batch rows per thread for the forward
    and backward passes, and rows per thread for prediction; ``threads_min_step_work``
    multiply-adds, (batch rows + 1) x parameters, for the weight gradients and update),
    and whether training with several threads runs fewer while that is faster
    (``adaptive_threads``; CYMLP_ADAPTIVE_THREADS=0 turns it off)."""
    from cymlp import _engine

    least = _engine.thread_thresholds()
    return {
        "version": __version__,
        "simd_variant": _kernels.simd_variant(),
        "simd_variants_available": _kernels.simd_variants(),
        "threads_backend": _kernels.threads_backend(),
        "openmp": _kernels.openmp_enabled(),
        "max_threads": _kernels.max_threads(),
        "threads_min_rows": least["rows_per_thread"],
        "threads_min_step_work": least["step_work"],
        "adaptive_threads": _engine.adaptive_threads_enabled(),
    }


def show_config() -> None:
    """Print :func:`config` one item per line."""
    for key, value in config().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:24s} {value}")
