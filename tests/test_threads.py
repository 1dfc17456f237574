"""Threads, with whatever backend this build has (OpenMP, the pthreads / Win32 pool, or
none): n_jobs and OMP_NUM_THREADS honoured, fits in several Python threads at once, and (POSIX
pool) a fork child with its own workers. ``.ci/threads.sh`` runs these against the
pthreads build, which is what the macOS wheels ship. Bit-identity for any n_jobs, at
shapes where the work really is split: test_n_jobs.py."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from cymlp import MLPClassifier, _kernels
from cymlp._config import config

BACKENDS = ("openmp", "pthreads", "win32", "none")
POOL = _kernels.threads_backend() in ("pthreads", "win32")
# (fits of a few epochs do not converge)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _fit(X, y, **kw):
    return MLPClassifier(**kw).fit(X, y)


def _assert_same(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_


@pytest.fixture(scope="module")
def wide():
    """3000 x 400 dense rows, 10 classes: with hidden (256,) and batch 200, both training
    phases and the prediction products are split over threads."""
    rng = np.random.RandomState(0)
    X = rng.rand(3000, 400)
    y = rng.randint(0, 10, 3000)
    return X, y


def test_backend_named():
    cfg = config()
    assert cfg["threads_backend"] in BACKENDS
    assert cfg["openmp"] is (cfg["threads_backend"] == "openmp")
    assert cfg["max_threads"] >= 1
    if cfg["threads_backend"] == "none":
        assert cfg["max_threads"] == 1


def test_fits_in_several_python_threads_at_once(wide):
    """Each fit asks for 2 threads; the pool serves one job at a time and the other
    callers run theirs in their own thread: the same results as one fit after another."""
    X, y = wide
    X = X.astype(np.float32)
    kw = dict(hidden_layer_sizes=(128,), batch_size=200, max_iter=1, n_jobs=2,
              n_iter_no_change=10**9)
    serial = {s: _fit(X, y, random_state=s, **kw) for s in range(3)}
    together = {}

    def run(seed):
        together[seed] = _fit(X, y, random_state=seed, **kw)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in range(3):
        _assert_same(serial[s], together[s])


def _in_subprocess(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_omp_num_threads_sets_the_default():
    code = "from cymlp import _kernels; print(_kernels.max_threads())"
    expected = "1" if _kernels.threads_backend() == "none" else "3"
    assert _in_subprocess(code, OMP_NUM_THREADS="3") == expected


@pytest.mark.skipif(not (POOL and hasattr(os, "fork")), reason="the POSIX pool's fork handling")
def test_fork_child_makes_its_own_workers(wide):
    """After a parallel fit, a forked child (multiprocessing's "fork" start method) fits
    with threads of its own: the parent's workers do not exist in it."""
    code = """
import multiprocessing as mp, warnings
import numpy as np
from cymlp import MLPClassifier
warnings.simplefilter("ignore")
rng = np.random.RandomState(0)
X = rng.rand(1000, 400).astype(np.float32)
y = rng.randint(0, 10, 1000)
kw = dict(hidden_layer_sizes=(128,), max_iter=1, random_state=0, n_jobs=2)
parent = MLPClassifier(**kw).fit(X, y).coefs_[0]
def child(q):
    q.put(MLPClassifier(**kw).fit(X, y).coefs_[0])
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
got = q.get(timeout=300)
p.join(timeout=60)
assert p.exitcode == 0 and np.array_equal(got, parent)
print("ok")
"""
    assert _in_subprocess(code) == "ok"


def test_core_to_core_probe():
    """The probe bench_threads.py prints: two tasks pass a line back and forth. They run
    at once on any parallel backend (it asks for 2 tasks, even on a 1-core machine, where
    the OS time-slices them and the answer is slow but finite); with no threads, the first
    task waits alone and the answer is NaN rather than a hang."""
    from cymlp import _testing

    ns = _testing.core_to_core_ns(200, timeout=2.0)
    if _kernels.threads_backend() == "none":
        assert np.isnan(ns)
    else:
        assert np.isfinite(ns) and ns > 0
    with pytest.raises(ValueError, match="rounds"):
        _testing.core_to_core_ns(0)
