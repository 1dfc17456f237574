"""The training thread-count chooser (``_engine._adapt_record``): with n_jobs > 1 it times
the steps and runs fewer threads (1, 2, 4, ...) while that is faster. Results never
depend on it (a step's numbers do not depend on its thread count); these tests check the
rule on synthetic timings (``_engine._adapt_trace``), and real fits that switch count
batch by batch."""

import numpy as np
import pytest

from cymlp import MLPClassifier, _engine, _kernels
from cymlp._config import config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _trace(times, batches, most=2):
    """Counts the chooser runs ``batches`` batches at, a batch at c threads taking
    times(i, c) seconds."""
    return _engine._adapt_trace(most, times, batches)


def _steady(t1, t2):
    return lambda i, c: t1 if c == 1 else t2


def test_one_thread_wins_when_it_is_faster():
    counts = _trace(_steady(1.0, 1.3), 4000)
    assert counts[0] == 2  # it starts at n_jobs
    assert (counts[100:] == 1).mean() > 0.97
    # and keeps checking the other count (backing off to every ADAPT_MAX_AT_ONE batches)
    assert (counts[100:] == 2).sum() >= 3


def test_the_threads_stay_when_they_are_faster():
    counts = _trace(_steady(1.6, 1.0), 10000)
    assert (counts == 2).mean() > 0.99
    assert (counts[5000:] == 1).sum() <= 2 * 9  # trials back off to one per 4096 batches


def test_the_choice_follows_a_change_of_placement():
    def times(i, c):  # two threads pay off, then (the far state) do not, then do again
        slow = 1000 <= i < 3000
        return 1.0 if c == 1 else (1.15 if slow else 0.62)

    counts = _trace(times, 7000)
    assert (counts[:1000] == 2).mean() > 0.95
    # a slow-down at n_jobs calls a trial at once, whatever the trial interval has grown to
    first = 1000 + int(np.argmax(counts[1000:] == 1))
    assert first < 1000 + 64, first
    assert (counts[1100:3000] == 1).mean() > 0.9
    # back at one thread the trials are at most ADAPT_MAX_AT_ONE batches apart
    assert (counts[3000 + 1100:] == 2).mean() > 0.95


@pytest.mark.parametrize("batches", [600, 20000])  # a short fit (2 epochs of MNIST), a long one
@pytest.mark.parametrize("t2", [0.55, 0.62, 0.9, 1.0, 1.15, 1.3])
@pytest.mark.parametrize("noise", [0.02, 0.15])
def test_what_the_trials_cost(batches, t2, noise):
    """Against always running the faster count, the chooser's trials and mistakes cost a
    long fit under 1% when one count is faster by more than the noise, and under 3% at
    worst; a short one, which starts at n_jobs and tries the other count soonest, 2%."""
    rng = np.random.default_rng(1)
    jitter = 1 + noise * rng.standard_normal(batches)
    counts = _trace(lambda i, c: jitter[i] * (1.0 if c == 1 else t2), batches)
    cost = np.where(counts == 2, t2, 1.0).mean() / min(t2, 1.0) - 1
    if batches < 1000:
        assert cost < 0.02, cost
    else:
        assert cost < (0.01 if abs(t2 - 1) > 1.5 * noise else 0.03), cost


def test_one_thread_engines_never_adapt():
    assert (_trace(_steady(1.0, 0.1), 500, most=1) == 1).all()


# a many-core machine where the paper network's steps stop paying beyond 4 threads
CURVE = {1: 1.0, 2: 0.6, 4: 0.45, 8: 0.6, 16: 0.9}


@pytest.mark.parametrize("noise", [0.0, 0.15])
def test_many_cores_settle_where_more_threads_stop_paying(noise):
    rng = np.random.default_rng(2)
    jitter = 1 + noise * rng.standard_normal(20000)
    counts = _trace(lambda i, c: jitter[i] * CURVE[c], 20000, most=16)
    assert counts[0] == 16 and set(counts) <= set(CURVE)
    assert int(np.argmax(counts == 4)) < 100  # 16 -> 8 -> 4 in the first 100 batches
    assert (counts[600:] == 4).mean() > 0.97
    # against always running 4 threads: under 1% for the fit, 10% for its first 600 batches
    cost = np.vectorize(CURVE.get)(counts).mean() / CURVE[4] - 1
    assert cost < 0.01, cost
    assert np.vectorize(CURVE.get)(counts[:600]).mean() / CURVE[4] - 1 < 0.10


def test_many_cores_follow_a_change_of_placement():
    slow = {1: 1.0, 2: 0.6, 4: 0.8, 8: 1.0, 16: 1.2}  # 4 threads lose their edge, then regain it
    counts = _trace(lambda i, c: (slow if 5000 <= i < 10000 else CURVE)[c], 15000, most=16)
    assert (counts[1000:5000] == 4).mean() > 0.98
    assert int(np.argmax(counts[5000:] == 2)) < 64  # a slow-down calls a trial at once
    assert (counts[5200:10000] == 2).mean() > 0.98
    assert (counts[10000 + 1100:] == 4).mean() > 0.98  # trials up: every 1,024 at most


def test_many_cores_one_thread():
    counts = _trace(lambda i, c: 1.0 + 0.1 * (c > 1) * c, 4000, most=8)
    assert int(np.argmax(counts == 1)) < 100
    assert (counts[200:] == 1).mean() > 0.95


@pytest.mark.parametrize("most, levels", [(2, {1, 2}), (3, {1, 2, 3}), (6, {1, 2, 4, 6}),
                                          (8, {1, 2, 4, 8}), (12, {1, 2, 4, 8, 12})])
def test_the_counts_tried(most, levels):
    """Powers of two below n_jobs, and n_jobs; more threads always faster: n_jobs stays."""
    counts = _trace(lambda i, c: 1.0 / c, 5000, most=most)
    assert set(counts) <= levels
    assert (counts == most).mean() > 0.98


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, (1200, 300)).astype(np.float32)
    X[X < 0.6] = 0
    y = rng.randint(0, 10, 1200)
    return X, y


def _fit(X, y, n_jobs):
    return MLPClassifier((128,), batch_size=100, max_iter=3, random_state=0,
                         solver="sgd", learning_rate_init=0.05, n_jobs=n_jobs).fit(X, y)


def _forced_fit(X, y, n_jobs, period):
    """A fit at n_jobs with the chooser forced down its counts every ``period`` full
    batches, and the engine's profile of it."""
    _engine._set_adapt_alternate(period)
    try:
        _engine.reset_parallel_counts()
        clf = _fit(X, y, n_jobs)
        return clf, _engine.profile()
    finally:
        _engine._set_adapt_alternate(0)


def _assert_same_fit(clf, ref):
    for a, b in zip(clf.coefs_ + clf.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert clf.loss_curve_ == ref.loss_curve_


@pytest.mark.parametrize("period", [1, 3])
def test_switching_count_mid_fit_keeps_the_bits(data, period):
    """Real steps at 2 and 1 threads in turn (the chooser forced to switch every
    ``period`` batches) give the weights of one thread: the workspace, the packed
    weights and the alternating input copies carry over a change of count."""
    if _kernels.threads_backend() == "none":
        pytest.skip("built without threads")
    X, y = data
    clf, prof = _forced_fit(X, y, 2, period)
    # 12 full batches per epoch, 3 epochs; about half of them on one thread
    assert prof["batches"] == 36
    assert 12 <= prof["fewer"] <= 24
    assert _engine.parallel_counts()["rows"] == 36 - prof["fewer"]
    _assert_same_fit(clf, _fit(X, y, 1))


def test_stepping_through_the_counts_keeps_the_bits(data):
    """n_jobs=4 forced down its counts every batch (4, 2, 1, 4, ...): the weights of one
    thread, with every count run (more threads than this machine's cores is fine)."""
    if _kernels.threads_backend() == "none":
        pytest.skip("built without threads")
    X, y = data
    clf, prof = _forced_fit(X, y, 4, 1)
    assert prof["batches"] == 36 and prof["fewer"] == 24  # 12 each at 4, 2 and 1
    _assert_same_fit(clf, _fit(X, y, 1))


def test_the_switch_can_be_turned_off(data, monkeypatch):
    if _kernels.threads_backend() == "none":
        pytest.skip("built without threads")
    X, y = data
    monkeypatch.setenv("CYMLP_ADAPTIVE_THREADS", "0")
    assert not _engine.adaptive_threads_enabled() and config()["adaptive_threads"] is False
    _engine._set_adapt_alternate(1)  # would switch every batch if it were on
    try:
        _engine.reset_parallel_counts()
        _fit(X, y, 2)
        prof = _engine.profile()
    finally:
        _engine._set_adapt_alternate(0)
    assert prof["batches"] == 0 and prof["fewer"] == 0
    assert _engine.parallel_counts()["rows"] == 36
    monkeypatch.setenv("CYMLP_ADAPTIVE_THREADS", "1")
    assert _engine.adaptive_threads_enabled() and config()["adaptive_threads"] is True
