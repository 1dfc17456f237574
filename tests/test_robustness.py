"""Hardening: hostile input, divergence, interruption, threads, leaks, determinism."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning

from cymlp import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


# ---- 1. boundary validation -------------------------------------------------------------

@pytest.mark.parametrize("bad, error, match", [
    (lambda X: X.astype(str), ValueError, "contains strings"),
    (lambda X: X.astype(str).astype(object), ValueError, "contains strings"),
    (lambda X: np.where(X > 0, X, {"a": 1}), TypeError, "must be a string"),
    (lambda X: X.astype(complex), ValueError, "Complex data not supported"),
    (lambda X: X.astype("datetime64[s]"), ValueError, "contains datetimes"),
    (lambda X: [[1, 2], [3]], ValueError, "inhomogeneous|sequence"),
    (lambda X: X[:, :, None], ValueError, "dim 3"),
    (lambda X: X[0], ValueError, "Expected 2D array"),
    (lambda X: X[:0], ValueError, "0 sample"),
    (lambda X: X[:, :0], ValueError, "0 feature"),
    (lambda X: np.where(X > 2, np.nan, X), ValueError, "NaN"),
    (lambda X: np.where(X > 2, np.inf, X), ValueError, "infinity"),
])
def test_bad_X_rejected_before_native_code(data, bad, error, match):
    X, y = data
    Xb = bad(X)
    yb = y[: len(Xb)] if len(Xb) != len(y) else y
    with pytest.raises(error, match=match):
        MLPClassifier(max_iter=1).fit(Xb, yb)
    if isinstance(Xb, np.ndarray) and Xb.ndim == 2 and Xb.shape[0] and Xb.shape[1] == 6:
        fitted = MLPClassifier((3,), max_iter=1).fit(X, y)
        with pytest.raises(error, match=match):
            fitted.predict(Xb)


@pytest.mark.parametrize("dtype", [bool, np.int8, np.int64, np.uint16, np.float16, object])
def test_convertible_dtypes_become_float64(data, dtype):
    X, y = data
    clf = MLPClassifier((4,), max_iter=2, random_state=0).fit((X > 0).astype(dtype), y)
    assert clf.coefs_[0].dtype == np.float64
    assert clf.predict((X > 0).astype(dtype)).shape == y.shape


def test_bad_targets_and_weights(data):
    X, y = data
    with pytest.raises(ValueError, match="NaN"):
        MLPRegressor(max_iter=1).fit(X, np.where(y > 0, np.nan, 1.0))
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier(max_iter=1).fit(X, np.where(y > 0, np.nan, 1.0))
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.full(len(y), np.inf))
    with pytest.raises(ValueError, match="Negative"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match=r"sample_weight\.shape"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier(max_iter=1).fit(X, y[:-1])
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson", max_iter=1).fit(X, y - 1.0)
    with pytest.raises(ValueError, match="at least one non-zero"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.zeros(len(y)))
    # a minibatch whose weights are all zero is skipped, not divided by zero
    sw = np.r_[np.zeros(60), np.ones(60)]
    clf = MLPClassifier((4,), batch_size=30, shuffle=False, max_iter=2, random_state=0)
    clf.fit(X, y, sample_weight=sw)
    assert all(np.isfinite(c).all() for c in clf.coefs_) and np.isfinite(clf.loss_curve_).all()


def test_huge_layer_fails_fast_before_allocating(data):
    X, y = data
    start = time.perf_counter()
    with pytest.raises(MemoryError, match="GiB"):
        MLPClassifier(hidden_layer_sizes=(10**9,)).fit(X, y)
    with pytest.raises(MemoryError, match="smaller hidden_layer_sizes"):
        MLPRegressor(hidden_layer_sizes=(100_000, 100_000)).fit(X, y)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X_in_predict_fast_path(data, dtype, bad):
    """X already of the model's dtype and layout skips validate_data; the engine scans
    it instead and the same scikit-learn error comes out, for every predict method."""
    X, y = data
    clf = MLPClassifier((5,), max_iter=5, random_state=0).fit(X.astype(dtype), y)
    Xb = X.astype(dtype)
    Xb[7, 3] = bad
    for method in (clf.predict, clf.predict_proba, clf.predict_log_proba):
        with pytest.raises(ValueError, match=r"NaN|infinity"):
            method(Xb)
    P = clf.predict_proba(X.astype(dtype) * 1e3)  # saturated: no probability is 0
    assert (P > 0).all() and np.isfinite(np.log(P)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 1 << 20, -1])  # first, past thread 0's share, last
def test_non_finite_X_in_fit_on_threads(dtype, bad, where):
    """fit scans a dense X for finiteness on its threads (_engine.all_finite, one per
    2**20 values at least): a NaN or infinity anywhere, in either thread's share, gives
    scikit-learn's error, and a refit with bad X leaves the fitted model as it was."""
    from cymlp import _engine

    rng = np.random.RandomState(0)
    X = rng.uniform(size=(2**21 // 64 + 3, 64)).astype(dtype)  # 2**21 + 192 values
    y = rng.randint(0, 3, len(X))
    assert _engine.all_finite(X.reshape(-1), 2) and _engine.all_finite(X.reshape(-1), 1)
    Xb = X.copy()
    Xb.reshape(-1)[where] = bad
    for n_threads in (1, 2, 7):
        assert not _engine.all_finite(Xb.reshape(-1), n_threads)
    clf = MLPClassifier((3,), max_iter=1, batch_size=2000, random_state=0, n_jobs=2)
    clf.fit(X[:3000], y[:3000])
    before = [c.copy() for c in clf.coefs_]
    with pytest.raises(ValueError, match="NaN" if bad != bad else "infinity"):
        clf.fit(Xb, y)
    for a, b in zip(clf.coefs_, before):
        np.testing.assert_array_equal(a, b)


def test_engine_refuses_arrays_it_was_not_promised(data):
    """The engine re-checks dtype, layout and sizes once per call (never per batch)."""
    from cymlp import _engine

    X, y = data
    clf = MLPClassifier((4,), max_iter=1, random_state=0).fit(X, y)
    out = np.empty((len(X), clf.n_outputs_))
    engine = clf._engine(8)
    with pytest.raises(TypeError, match="C-contiguous"):
        engine.forward((np.asfortranarray(X), None, None, None), clf._params, out, 1)
    with pytest.raises(TypeError, match="params"):
        engine.forward((X, None, None, None), clf._params[:-1].copy(), out, 1)
    with pytest.raises(TypeError, match="params"):
        engine.forward((X, None, None, None), clf._params.astype(np.float32), out, 1)
    with pytest.raises(TypeError, match="out"):
        engine.forward((X, None, None, None), clf._params, out[:, :1].copy(), 1)
    with pytest.raises(TypeError, match="X must be"):
        engine.forward((X.tolist(), None, None, None), clf._params, out, 1)
    with pytest.raises(ValueError, match="train_epoch needs"):
        engine.train_epoch((X, None, None, None), out, None, clf._params, clf._params,
                           None, False, np.zeros(1, np.uint64), 0.0, 1.0)
    with pytest.raises(ValueError, match="rows >= 1"):
        _engine.Engine(clf._sizes, 0, 0, 0.0, None, 0, 1, np.float64)
    with pytest.raises(TypeError, match="float32 or float64"):
        _engine.Engine(clf._sizes, 0, 0, 0.0, None, 8, 1, np.int64)


# ---- 2. divergence ------------------------------------------------------------------------

def _finite_or_clear_error(predict, X):
    """Predictions are finite, or a ValueError says why: never NaN handed back."""
    try:
        out = predict(X)
    except ValueError as e:
        assert "overflowed" in str(e)
    else:
        assert np.isfinite(out).all()


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_divergence_keeps_last_finite_weights(data, solver):
    X, y = data
    # (Adam's steps are bounded by the learning rate: it needs an absurd one to overflow)
    reg = MLPRegressor(hidden_layer_sizes=(10,), solver=solver,
                       learning_rate_init=10.0 if solver == "sgd" else 1e20, momentum=0.0,
                       max_iter=200, random_state=0)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        reg.fit(X.astype(np.float32), X[:, 0] * 100)
    assert all(np.isfinite(c).all() for c in reg.coefs_ + reg.intercepts_)
    assert len(reg.loss_curve_) == reg.n_iter_ and np.isfinite(reg.loss_curve_).all()
    _finite_or_clear_error(reg.predict, X.astype(np.float32))
    clf = MLPClassifier((10,), solver=solver, momentum=0.0, max_iter=200, random_state=0,
                        learning_rate_init=1e6 if solver == "sgd" else 1e20)
    X32 = (X * 1e18).astype(np.float32)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        clf.fit(X32, y)
    assert all(np.isfinite(c).all() for c in clf.coefs_ + clf.intercepts_)
    _finite_or_clear_error(clf.predict_proba, X32)


@pytest.mark.parametrize("lr, scale", [(10.0, 1.0), (1e20, 1.0), (1e150, 1e150)],
                         ids=["diverges-epoch-5", "diverges-epoch-2", "diverges-at-once"])
def test_divergence_with_early_stopping_finishes_as_scikit_learn_does(data, lr, scale):
    """scikit-learn >= 1.6 (#29504): with early stopping a diverging fit raises nothing;
    the diverged epochs score nan and the fit ends with the weights of the best score
    (the initial ones if no epoch had a finite score)."""
    X, _ = data
    X = X * scale
    target = X[:, 0] / scale * 100
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", learning_rate_init=lr, momentum=0.0,
              max_iter=15, random_state=0, early_stopping=True, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (scikit-learn's overflows)
        ref = sk.MLPRegressor(**kw).fit(X, target)
    ours = MLPRegressor(**kw).fit(X, target)
    scores, ref_scores = np.array(ours.validation_scores_), np.array(ref.validation_scores_)
    assert np.isnan(scores).any() and ours.n_iter_ == ref.n_iter_ == 15
    np.testing.assert_array_equal(np.isnan(scores), np.isnan(ref_scores))
    np.testing.assert_allclose(scores[~np.isnan(scores)], ref_scores[~np.isnan(scores)],
                               rtol=1e-9)
    assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_, rel=1e-9)
    np.testing.assert_array_equal(np.isfinite(ours.loss_curve_), np.isfinite(ref.loss_curve_))
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert len(ours.history_["val_score"]) == len(ours.loss_curve_) == 15


def test_divergence_with_early_stopping_classifier(data):
    """The same for a classifier: the epochs after the divergence score nan (scikit-learn
    scores the labels it reads off NaN probabilities, unless they are floats), and the
    model keeps the weights of the best finite score, which predict finite values."""
    X, y = data
    y = y % 2
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", momentum=0.0, learning_rate_init=1e3,
              max_iter=15, random_state=0, early_stopping=True, shuffle=False)
    X32 = (X * 1e5).astype(np.float32)  # (float32 overflows in the 6th epoch)
    clf = MLPClassifier(**kw).fit(X32, y)
    scores = np.array(clf.validation_scores_)
    first_nan = np.flatnonzero(np.isnan(scores))[0]
    assert 0 < first_nan and np.isnan(scores[first_nan:]).all()
    assert clf.best_validation_score_ == np.max(scores[:first_nan])
    assert len(clf.loss_curve_) == len(scores) == clf.n_iter_ == 15
    # the weights are those of the best epoch: a fit that ends there ends with them
    best = int(np.argmax(scores[:first_nan])) + 1
    ref = MLPClassifier(**dict(kw, max_iter=best)).fit(X32, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(c).all() for c in clf.coefs_ + clf.intercepts_)
    _finite_or_clear_error(clf.predict_proba, X32)


def test_overflowing_outputs_are_an_error_not_nan(data):
    X, _ = data
    reg = MLPRegressor(hidden_layer_sizes=(4,), loss="poisson", max_iter=5,
                       random_state=0).fit(X, np.abs(X[:, 0]))
    with pytest.raises(ValueError, match="overflowed"):
        reg.predict(X * 1e30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflowing_probabilities_are_an_error_not_garbage(data, dtype):
    """Hidden units that overflow to inf make NaN probabilities: an error, never NaN
    quietly clamped into a tiny probability."""
    X, y = data
    clf = MLPClassifier((6, 6), max_iter=20, random_state=0).fit(X.astype(dtype), y)
    scale = dtype(1e30 if dtype == np.float32 else 1e200)
    clf.coefs_[0] *= scale  # finite weights and inputs whose products are not
    huge = X.astype(dtype) * scale
    assert np.isfinite(huge).all() and np.isfinite(clf.coefs_[0]).all()
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(ValueError, match="overflowed"):
            method(huge)


# ---- 3. interruption ----------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    from cymlp import MLPClassifier
    rng = np.random.RandomState(0)
    X = rng.rand(20000, 300).astype(np.float32)
    y = rng.randint(0, 10, 20000)
    kw = dict(hidden_layer_sizes=(256,), max_iter=10000, random_state=0, n_jobs=1,
              n_iter_no_change=10**9)
    clf = MLPClassifier(verbose=True, **kw)
    try:
        clf.fit(X, y)
    except KeyboardInterrupt:
        done = clf.n_iter_
        assert len(clf.loss_curve_) == done
        # the weights are exactly those after `done` epochs
        ref = MLPClassifier(**dict(kw, max_iter=done))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.fit(X, y)
        same = all(np.array_equal(a, b) for a, b in zip(clf.coefs_, ref.coefs_))
        print("INTERRUPTED", done, same, np.isfinite(clf.predict_proba(X[:5])).all(),
              flush=True)
        sys.exit(0)
    print("NOT INTERRUPTED", flush=True)
""")


def test_sigint_during_fit_keeps_last_completed_epoch(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("Iteration 2,"):
            break
    time.sleep(0.05)  # land in the middle of an epoch
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    words = out.strip().splitlines()[-1].split()
    assert words[0] == "INTERRUPTED", out
    assert int(words[1]) >= 2 and words[2] == "True" and words[3] == "True", out


def _interrupt_at(monkeypatch, where, epoch):
    """Send this process a SIGINT at one point of epoch ``epoch`` of the next fit:
    'after_epoch' as the engine's epoch returns (before any of its bookkeeping),
    'bookkeeping' in the middle of it (when the epoch's loss is recorded and the
    no-improvement count is next), 'scoring' while the validation split is scored."""
    import cymlp._estimators as est
    from cymlp import _engine

    seen = {"epochs": 0}

    class Engine(_engine.Engine):
        def train_epoch(self, *args):
            out = super().train_epoch(*args)
            seen["epochs"] += 1
            if where == "after_epoch" and seen["epochs"] == epoch:
                signal.raise_signal(signal.SIGINT)
            return out

    monkeypatch.setattr(_engine, "Engine", Engine)
    if where in ("bookkeeping", "scoring"):
        name = "_update_no_improvement_count" if where == "bookkeeping" else "_forward"
        real = getattr(est._BaseMLP, name)

        def hook(self, *args, **kw):
            if seen["epochs"] == epoch:
                signal.raise_signal(signal.SIGINT)
            return real(self, *args, **kw)

        monkeypatch.setattr(est._BaseMLP, name, hook)


@pytest.mark.parametrize("where", ["after_epoch", "bookkeeping"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_interrupt_then_partial_fit_equals_fit_of_one_more_epoch(data, monkeypatch, where,
                                                                 solver):
    """An interrupt leaves the model at the end of its last completed epoch, parameters,
    optimizer state, generator and bookkeeping alike: one more partial_fit then gives
    the bits of a fresh fit of that many epochs plus one."""
    X, y = data
    kw = dict(hidden_layer_sizes=(16,), solver=solver, batch_size=32, random_state=0,
              max_iter=50, n_iter_no_change=10**6, dropout=0.1, learning_rate="invscaling",
              learning_rate_init=0.05)
    batches = -(-len(X) // 32)
    clf = MLPClassifier(**kw)
    _interrupt_at(monkeypatch, where, 3)
    with pytest.warns(UserWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    monkeypatch.undo()
    done = clf.n_iter_
    # interrupted before the epoch's bookkeeping began, the epoch is dropped; once it
    # began, the epoch is completed
    assert done == (2 if where == "after_epoch" else 3)
    assert len(clf.loss_curve_) == len(clf.history_["loss"]) == done
    assert clf.t_ == done * len(X) and clf._optimizer.step == done * batches
    clf.partial_fit(X, y)
    ref = MLPClassifier(**dict(kw, max_iter=done + 1)).fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    for key in ("m", "v", "step", "lr"):
        np.testing.assert_array_equal(getattr(clf._optimizer, key), getattr(ref._optimizer, key))
    np.testing.assert_array_equal(clf._rng, ref._rng)
    assert clf.loss_curve_ == ref.loss_curve_ and clf.t_ == ref.t_


@pytest.mark.parametrize("where", ["after_epoch", "bookkeeping", "scoring"])
def test_interrupt_with_early_stopping_keeps_the_best_weights(data, monkeypatch, where):
    """With early stopping an interrupted fit ends as a finished one does: the weights of
    the best validation score among the completed epochs, which every record counts."""
    X, y = data
    kw = dict(hidden_layer_sizes=(16,), batch_size=32, random_state=0, max_iter=50,
              early_stopping=True, n_iter_no_change=10**6, learning_rate_init=0.01)
    clf = MLPClassifier(**kw)
    _interrupt_at(monkeypatch, where, 4)
    with pytest.warns(UserWarning, match="interrupted"), pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    monkeypatch.undo()
    done = clf.n_iter_
    assert done == (3 if where == "after_epoch" else 4)
    assert len(clf.loss_curve_) == len(clf.validation_scores_) == done
    assert len(clf.history_["val_score"]) == len(clf.history_["val_loss"]) == done
    ref = MLPClassifier(**dict(kw, max_iter=done))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X, y)
    assert clf.validation_scores_ == ref.validation_scores_
    assert clf.best_validation_score_ == ref.best_validation_score_
    for a, b in zip(clf.coefs_ + clf.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)


# ---- 4. threads -------------------------------------------------------------------------

def test_predict_from_8_threads_equals_serial(data):
    X, y = data
    clf = MLPClassifier((32, 16), max_iter=20, random_state=0).fit(X, y)
    Xs = [np.random.RandomState(i).normal(size=(1 + 37 * i, 6)) for i in range(8)]
    expected = [clf.predict_proba(x) for x in Xs]
    results = [None] * 8
    errors = []

    def work(i):
        try:
            for _ in range(30):
                results[i] = clf.predict_proba(Xs[i])
                assert np.array_equal(results[i], expected[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


def test_two_fits_in_two_threads_release_the_gil():
    """Fits in two Python threads give the serial results, and an epoch runs without the
    GIL: while a fit runs, the main thread keeps running Python. Holding the GIL for an
    epoch (one of three) would stall it for about a third of the fit; the check allows
    stalls up to 15% of it, so a busy machine does not fail it (no speed is measured)."""
    rng = np.random.RandomState(0)
    X = rng.rand(20000, 300).astype(np.float32)
    y = rng.randint(0, 5, 20000)
    kw = dict(hidden_layer_sizes=(256,), max_iter=3, n_iter_no_change=10**9, n_jobs=1)

    def fit(seed, out):
        out[seed] = MLPClassifier(random_state=seed, **kw).fit(X, y)

    serial = {}
    fit(0, serial)
    fit(1, serial)
    parallel = {}
    threads = [threading.Thread(target=fit, args=(s, parallel)) for s in (0, 1)]
    start = last = time.perf_counter()
    gap = 0.0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.001)
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
    total = time.perf_counter() - start
    for t in threads:
        t.join()
    for s in (0, 1):
        np.testing.assert_array_equal(parallel[s].coefs_[0], serial[s].coefs_[0])
    assert gap < 0.15 * total, (gap, total)


# ---- 7. leaks ---------------------------------------------------------------------------

def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_fit_predict_200_times_keeps_rss_flat(data):
    X, y = data
    Xf = X.astype(np.float32)

    def once():
        clf = MLPClassifier((64,), max_iter=3, random_state=0).fit(Xf, y)
        clf.predict_proba(Xf)
        reg = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=5).fit(X, X[:, 0])
        reg.predict(X)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(20):
            once()
        before = _rss_mb()
        for _ in range(200):
            once()
        after = _rss_mb()
    assert after - before < 5, (before, after)


# ---- 8. determinism ---------------------------------------------------------------------

@pytest.mark.parametrize("n_jobs", [1, 2])
def test_bit_identical_across_runs(data, n_jobs):
    X, y = data
    kw = dict(hidden_layer_sizes=(30, 20), dropout=0.2, alpha=1e-3, random_state=5,
              max_iter=15, n_jobs=n_jobs)
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(**kw).fit(X, y)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_


def test_thread_count_changes_nothing(data):
    """Documented guarantee: n_jobs changes speed only, not a single bit of the result."""
    X, y = data
    kw = dict(hidden_layer_sizes=(30, 20), dropout=0.2, alpha=1e-3, random_state=5,
              max_iter=15)
    a = MLPClassifier(n_jobs=1, **kw).fit(X, y)
    b = MLPClassifier(n_jobs=2, **kw).fit(X, y)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_
