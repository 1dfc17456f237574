"""Products skip the steps where a tile's rows of A are all zero, after a scan of A that
costs more than it saves on dense operands; the engine passes GEMM_DENSE_A (no scan)
for dense inputs and for hidden layers without relu or dropout. Both paths must give the
same bits: these tests fit with the scan forced on, forced off and decided, and compare."""

import numpy as np
import pytest
import scipy.sparse as sp
from cymlp._testing import matmul

from cymlp import MLPClassifier, MLPRegressor, _engine

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def policy():
    yield _engine._set_scan_policy
    _engine._set_scan_policy(0)


def _mnist_like(rng, n, d, zeros):
    X = rng.uniform(0, 1, (n, d)).astype(np.float32)
    X[:, : d // 8] = 0  # always-blank columns (MNIST's border)
    X[rng.uniform(size=X.shape) < zeros] = 0
    return X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_which_inputs_count_as_dense(dtype):
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 1, (1000, 64)).astype(dtype)
    assert _engine._inputs_dense(X)
    X[rng.uniform(size=X.shape) < 1 / 64] = 0  # under 1 in 32 zeros: dense
    assert _engine._inputs_dense(X)
    X[rng.uniform(size=X.shape) < 1 / 16] = 0  # over 1 in 32: scanned
    assert not _engine._inputs_dense(X)
    assert not _engine._inputs_dense(_mnist_like(rng, 300, 784, 0.7).astype(dtype))
    assert not _engine._inputs_dense(np.zeros((0, 5), dtype))
    with pytest.raises(ValueError, match="C-contiguous"):
        _engine._inputs_dense(np.asfortranarray(X))


@pytest.mark.parametrize("dense_a", [False, True])
@pytest.mark.parametrize("shape", [(200, 100, 784), (784, 100, 200), (37, 5, 300)])
def test_the_flag_gives_the_same_bits(shape, dense_a):
    rng = np.random.default_rng(1)
    M, N, K = shape
    A = _mnist_like(rng, M, K, 0.6)
    B = rng.standard_normal((K, N)).astype(np.float32)
    ref = matmul(A, B)
    np.testing.assert_array_equal(matmul(A, B, dense_a=dense_a), ref)
    # A^T read in place (the weight gradient's a^T . delta), on 2 threads
    np.testing.assert_array_equal(matmul(np.ascontiguousarray(A.T).T, B, n_threads=2,
                                         dense_a=dense_a), ref)


def _fits(make, X, y, policy):
    out = []
    for p in (1, 2, 0):  # always scan, never, decided
        policy(p)
        est = make().fit(X, y)
        out.append(est)
    return out


def _same(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert getattr(a, "loss_curve_", None) == getattr(b, "loss_curve_", None)
    assert a.loss_ == b.loss_


@pytest.mark.parametrize("inputs", ["dense", "sparse", "csr"])
@pytest.mark.parametrize("activation, dropout", [("logistic", None), ("relu", None),
                                                 ("tanh", 0.3)])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_training_gives_the_same_bits(policy, inputs, activation, dropout, n_jobs):
    rng = np.random.default_rng(2)
    X = rng.uniform(0.05, 1, (600, 120)).astype(np.float32)
    if inputs != "dense":
        X = _mnist_like(rng, 600, 120, 0.7)
    y = rng.integers(0, 4, 600)
    if inputs == "csr":
        X = sp.csr_matrix(X)
    kw = {} if dropout is None else {"dropout": dropout}

    def make():
        return MLPClassifier(hidden_layer_sizes=(48, 32), activation=activation, solver="sgd",
                             learning_rate_init=0.1, batch_size=100, max_iter=3,
                             random_state=0, n_jobs=n_jobs, **kw)

    scanned, unscanned, decided = _fits(make, X, y, policy)
    _same(scanned, unscanned)
    _same(scanned, decided)


def test_lbfgs_and_predict_give_the_same_bits(policy):
    rng = np.random.default_rng(3)
    X = rng.uniform(0.05, 1, (300, 50))
    y = X @ rng.standard_normal(50)

    def make():
        return MLPRegressor(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=30, random_state=0)

    fits = _fits(make, X, y, policy)
    _same(fits[0], fits[1])
    _same(fits[0], fits[2])
    preds = []
    for p in (1, 2, 0):
        policy(p)
        preds.append(fits[0].predict(X))
    np.testing.assert_array_equal(preds[0], preds[1])
    np.testing.assert_array_equal(preds[0], preds[2])


def test_the_policy_hook_checks_its_argument():
    with pytest.raises(ValueError, match="0, 1 or 2"):
        _engine._set_scan_policy(3)
