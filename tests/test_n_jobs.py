"""n_jobs changes speed only: bit-identical results for 1, 2 and 3 threads at shapes where
every threaded path runs, with each test checking that the threads were really used.

Training splits each batch's rows over threads (phase 1) and the weight rows over threads
(phase 2); the engine counts the parallel regions split into more than one task
(``_engine.parallel_counts()``). Prediction and L-BFGS thread inside the matrix products,
which use threads for products of at least ``_engine.GEMM_PARALLEL_MIN`` multiply-adds
with more than ``_engine.GEMM_SMALL_M`` rows: the tests check their shapes against that
rule.
"""

from itertools import pairwise

import numpy as np
import pytest
import scipy.sparse as sp

from cymlp import MLPClassifier, _engine, _kernels
from cymlp._model import CHUNK as _CHUNK

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, N_IN, HIDDEN, N_CLASSES, BATCH, EPOCHS = 3000, 400, 256, 10, 200, 2
JOBS = (2, 3)


@pytest.fixture(scope="module", autouse=True)
def threads():
    # OpenMP and the pthreads/win32 pools all split the work; only a "none" build cannot
    if _kernels.threads_backend() == "none":
        # allow-listed in conftest.py only where CYMLP_EXPECT_THREADS=none says so
        pytest.skip("built without threads: no threads to compare")


@pytest.fixture(autouse=True)
def fixed_thread_count(monkeypatch):
    # these tests count the parallel regions: the thread-count chooser stays off, so
    # that a loaded host cannot move a step to one thread (test_adaptive_threads.py)
    monkeypatch.setenv("CYMLP_ADAPTIVE_THREADS", "0")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, (N, N_IN))
    X[X < 0.5] = 0  # half zeros: the products' zero skipping runs on the threads too
    y = rng.randint(0, N_CLASSES, N)
    return X, y


def _gemm_threads(M, N_, K, n_threads):
    """Threads gemm uses for an (M, K) x (K, N) product (its rule, _gemm_impl.h)."""
    if n_threads < 2 or M <= _engine.GEMM_SMALL_M or M * N_ * K < _engine.GEMM_PARALLEL_MIN:
        return 1
    return n_threads


def _forward_products(rows):
    """(M, N, K) of each layer's product for a forward pass of ``rows`` rows."""
    sizes = [N_IN, HIDDEN, N_CLASSES]
    return [(rows, n_out, n_in) for n_in, n_out in pairwise(sizes)]


def _fit(X, y, n_jobs, **kw):
    params = dict(hidden_layer_sizes=(HIDDEN,), batch_size=BATCH, max_iter=EPOCHS,
                  random_state=0, n_jobs=n_jobs)
    _engine.reset_parallel_counts()
    clf = MLPClassifier(**{**params, **kw}).fit(X, y)
    return clf, _engine.parallel_counts()


def _assert_same_bits(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)
    assert a.loss_ == b.loss_
    assert getattr(a, "loss_curve_", None) == getattr(b, "loss_curve_", None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [
    dict(solver="sgd", learning_rate_init=0.05),
    dict(solver="adam", alpha=1e-3),
    dict(solver="sgd", dropout=0.3, learning_rate_init=0.05),
    dict(solver="adam", dropout=[0.2]),
    dict(solver="adamw", max_grad_norm=0.05, alpha=1e-3),
    dict(solver="sgd", max_grad_norm=0.05, learning_rate="cosine", warmup_fraction=0.1),
], ids=["sgd", "adam", "sgd-dropout", "adam-dropout", "adamw-clip", "sgd-clip-cosine"])
def test_training_bit_identical_for_any_thread_count(data, dtype, kw):
    X, y = data
    X = X.astype(dtype)
    ref, counts = _fit(X, y, 1, **kw)
    assert counts == {"rows": 0, "features": 0, "forward": 0}
    n_updates = EPOCHS * N // BATCH
    assert ref.n_iter_ == EPOCHS and ref.coefs_[0].dtype == dtype
    for n_jobs in JOBS:
        clf, counts = _fit(X, y, n_jobs, **kw)
        # every update of every epoch ran both phases on more than one thread (clipping:
        # phase 2 in two passes, the gradient and then the clipped step)
        passes = 2 if kw.get("max_grad_norm") else 1
        assert counts == {"rows": n_updates, "features": passes * n_updates, "forward": 0}, (
            n_jobs, counts)
        _assert_same_bits(clf, ref)


def test_sparse_training_bit_identical_for_any_thread_count(data):
    """CSR rows are scattered into the batch by each thread for its own rows."""
    X, y = data
    X = sp.csr_matrix(X.astype(np.float32))
    ref, _ = _fit(X, y, 1, solver="adam")
    n_updates = EPOCHS * N // BATCH
    for n_jobs in JOBS:
        clf, counts = _fit(X, y, n_jobs, solver="adam")
        assert counts == {"rows": n_updates, "features": n_updates, "forward": 0}, (n_jobs, counts)
        _assert_same_bits(clf, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_bit_identical_for_any_thread_count(data, dtype):
    X, y = data
    X = X.astype(dtype)
    # loss_and_grad runs over chunks of up to 4 * _CHUNK rows: here one chunk of N rows
    rows = min(N, 4 * _CHUNK)
    sizes = [N_IN, HIDDEN, N_CLASSES]
    products = _forward_products(rows)
    products += [(n_in, n_out, rows) for n_in, n_out in pairwise(sizes)]  # a^T delta
    products += [(rows, HIDDEN, N_CLASSES)]  # delta . W^T
    kw = dict(solver="lbfgs", max_iter=8, alpha=1e-3)
    ref, counts = _fit(X, y, 1, **kw)
    assert counts == {"rows": 0, "features": 0, "forward": 0}  # (no training epochs)
    for n_jobs in JOBS:
        assert all(_gemm_threads(*p, n_jobs) == n_jobs for p in products), products
        clf, _ = _fit(X, y, n_jobs, **kw)
        assert clf.n_iter_ == ref.n_iter_
        _assert_same_bits(clf, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_bit_identical_for_any_thread_count(data, dtype):
    """Batches of many rows split each chunk's rows over the threads (counted); a few rows
    keep one task and thread inside the products. Both give one thread's bits."""
    from cymlp._config import config

    X, y = data
    X = X.astype(dtype)
    few = X[:20]
    least = config()["threads_min_rows"]
    clf, _ = _fit(X, y, 1, solver="adam")
    methods = ("predict_proba", "predict_log_proba")
    expected = {m: getattr(clf, m)(X) for m in methods}
    expected_few = {m: getattr(clf, m)(few) for m in methods}
    assert expected["predict_proba"].dtype == dtype
    for n_jobs in JOBS:
        # prediction runs _CHUNK rows at a time, the last chunk shorter: every chunk has
        # enough rows to split, the 20 rows do not, and their products thread instead
        assert min(N - s for s in range(0, N, _CHUNK)) >= least * n_jobs > len(few)
        assert _gemm_threads(*_forward_products(len(few))[0], n_jobs) == n_jobs
        clf.set_params(n_jobs=n_jobs)
        _engine.reset_parallel_counts()
        for method, P in expected.items():
            np.testing.assert_array_equal(getattr(clf, method)(X), P, err_msg=method)
        assert _engine.parallel_counts()["forward"] == 2 * -(-N // _CHUNK)
        for method, P in expected_few.items():
            np.testing.assert_array_equal(getattr(clf, method)(few), P, err_msg=method)
        assert _engine.parallel_counts()["forward"] == 2 * -(-N // _CHUNK)


def test_counters_see_no_threads_when_the_batch_is_small(data):
    """The counters are not stuck: a one-row batch stays on one thread in both phases
    (few rows per thread, and a few hundred thousand multiply-adds)."""
    X, y = data
    _, counts = _fit(X[:50], y[:50], 2, solver="sgd", batch_size=1, max_iter=1)
    assert counts == {"rows": 0, "features": 0, "forward": 0}


def test_profile_accounts_for_the_epochs(data):
    """The engine's profile (benchmarks/bench_threads.py reads it) adds up: the parallel
    regions lie within the epochs, each region's wall time is split between its tasks'
    work and their waiting, and one thread waits for nobody (up to timer overhead)."""
    X, y = data
    for n_jobs in (1, 2):
        _engine.reset_parallel_counts()
        clf, _ = _fit(X, y, n_jobs, solver="sgd")
        prof = _engine.profile()
        assert 0 < prof["parallel"] <= prof["epoch"] <= sum(clf.history_["seconds"])
        assert prof["busy"] + prof["waiting"] == pytest.approx(n_jobs * prof["parallel"])
        if n_jobs == 1:
            assert prof["waiting"] < 0.05 * prof["busy"]
    _engine.reset_parallel_counts()
    assert set(_engine.profile().values()) == {0.0}


def test_steps_below_the_reported_thresholds_stay_on_one_thread(data):
    """show_config's threads_min_rows and threads_min_step_work are the rules the engine
    applies: a batch one row short of either runs that phase on one thread, and one that
    reaches it splits the phase (and the results stay the bits of one thread)."""
    from cymlp._config import config

    X, y = data
    cfg = config()
    rows = cfg["threads_min_rows"] * 2  # rows per thread, 2 threads
    X1, y1 = X[:rows * 4], y[:rows * 4]  # whole batches only
    _, counts = _fit(X1, y1, 2, batch_size=rows - 1, max_iter=1)
    assert counts["rows"] == 0
    ref, _ = _fit(X1, y1, 1, batch_size=rows, max_iter=1)
    clf, counts = _fit(X1, y1, 2, batch_size=rows, max_iter=1)
    assert counts["rows"] == 4
    _assert_same_bits(clf, ref)
    n_params = (N_IN + 1) * HIDDEN + (HIDDEN + 1) * N_CLASSES
    least = -(-cfg["threads_min_step_work"] // n_params) - 1  # (least + 1) x params >= it
    X2, y2 = X[:least * 60], y[:least * 60]
    assert len(np.unique(y2)) == N_CLASSES  # (the output layer has N_CLASSES units)
    _, counts = _fit(X2, y2, 2, batch_size=least - 1, max_iter=1, shuffle=False)
    assert counts["features"] == 0
    clf, counts = _fit(X2, y2, 2, batch_size=least, max_iter=1, shuffle=False)
    assert sum(c.size + b.size for c, b in zip(clf.coefs_, clf.intercepts_)) == n_params
    assert counts["features"] == 60
