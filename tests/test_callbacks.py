"""scikit-learn's callbacks (sklearn.callback, 1.9+): one subtask per epoch, the fitted
estimator of each moment, stopping, and propagation through meta-estimators."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cymlp import MLPClassifier, MLPRegressor

callback = pytest.importorskip("sklearn.callback")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=3,
                               random_state=0)


class Recorder:
    """Records every hook call: (estimator class, task name, task id, hook), and the
    fitted estimator's predictions at the end of each epoch; stops after ``stop_at``."""

    def __init__(self, X=None, stop_at=None, method="predict_proba"):
        self.calls, self.predictions, self.X, self.stop_at = [], [], X, stop_at
        self.method = method

    def setup(self, estimator, context):
        self.calls.append((type(estimator).__name__, "setup"))

    def teardown(self, estimator, context):
        self.calls.append((type(estimator).__name__, "teardown"))

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None):
        self.calls.append((type(estimator).__name__, context.task_name, context.task_id,
                           "begin"))

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        self.calls.append((type(estimator).__name__, context.task_name, context.task_id,
                           "end"))
        if context.task_name == "epoch":
            if self.X is not None:
                self.predictions.append(getattr(fitted_estimator, self.method)(self.X))
            return self.stop_at is not None and context.task_id + 1 >= self.stop_at
        return False


class Propagated(Recorder):
    max_propagation_depth = None  # (an AutoPropagatedCallback: meta-estimators pass it on)


KW = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.1, random_state=0)


def test_one_subtask_per_epoch_with_the_weights_of_that_epoch(data):
    X, y = data
    rec = Recorder(X)
    clf = MLPClassifier(max_iter=4, **KW).set_callbacks(rec)
    clf.fit(X, y)
    epochs = [c for c in rec.calls if c[1] == "epoch"]
    assert [c[2:] for c in epochs] == [(k, h) for k in range(4) for h in ("begin", "end")]
    assert rec.calls[0] == ("MLPClassifier", "setup")
    assert rec.calls[-1] == ("MLPClassifier", "teardown")
    assert rec.calls[-2][1:] == ("fit", 0, "end")
    # the fitted estimator of epoch k predicts as a fit of k + 1 epochs does
    for k, P in enumerate(rec.predictions):
        ref = MLPClassifier(max_iter=k + 1, **KW).fit(X, y)
        np.testing.assert_array_equal(P, ref.predict_proba(X))
    assert len({P.tobytes() for P in rec.predictions}) == 4  # (snapshots, not one view)


def test_a_callback_stops_the_fit(data):
    X, y = data
    clf = MLPClassifier(max_iter=50, **KW).set_callbacks(Recorder(stop_at=3)).fit(X, y)
    assert clf.n_iter_ == 3
    ref = MLPClassifier(max_iter=3, **KW).fit(X, y)
    np.testing.assert_array_equal(clf.coefs_[0], ref.coefs_[0])


def test_partial_fit_and_lbfgs_and_the_regressor(data):
    X, y = data
    rec = Recorder()
    clf = MLPClassifier(**KW).set_callbacks(rec)
    clf.partial_fit(X, y, classes=np.unique(y))
    assert [c[1:] for c in rec.calls if c[1] == "epoch"] == [("epoch", 0, "begin"),
                                                             ("epoch", 0, "end")]
    rec = Recorder()
    MLPClassifier((4,), solver="lbfgs", max_iter=5, random_state=0).set_callbacks(rec).fit(X, y)
    assert [c[1] for c in rec.calls if len(c) == 4] == ["fit", "fit"]  # no epochs
    rec = Recorder(X, method="predict")
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    reg.set_callbacks(rec).fit(X, y.astype(float))
    ref = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, y.astype(float))
    assert len(rec.predictions) == 2
    np.testing.assert_array_equal(rec.predictions[0], ref.predict(X))


def test_without_callbacks_nothing_changes(data):
    X, y = data
    a = MLPClassifier(max_iter=5, **KW).fit(X, y)
    b = MLPClassifier(max_iter=5, **KW).set_callbacks(Recorder()).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert a.loss_curve_ == b.loss_curve_


def test_scoring_monitor_logs_each_epochs_score(data):
    X, y = data
    monitor = callback.ScoringMonitor(scoring="accuracy")
    MLPClassifier(max_iter=3, **KW).set_callbacks(monitor).fit(X, y)
    log = monitor.get_logs()
    rows = [r for r in log.data if r["task_name"] == "epoch"]
    assert [r["task_id"] for r in rows] == [0, 1, 2]
    for r in rows:
        ref = MLPClassifier(max_iter=r["task_id"] + 1, **KW).fit(X, y)
        assert r["accuracy"] == ref.score(X, y)


def test_progress_bar_runs(data, capsys):
    pytest.importorskip("rich")
    X, y = data
    MLPClassifier(max_iter=3, **KW).set_callbacks(callback.ProgressBar()).fit(X, y)


@pytest.mark.parametrize("meta", ["pipeline", "grid"])
def test_callbacks_reach_the_mlp_through_meta_estimators(data, meta):
    X, y = data
    rec = Propagated()
    if meta == "pipeline":
        est = make_pipeline(StandardScaler(), MLPClassifier(max_iter=3, **KW))
    else:
        est = GridSearchCV(MLPClassifier(max_iter=2, **KW), {"alpha": [1e-4, 1e-2]}, cv=2)
    est.set_callbacks(rec).fit(X, y)
    epochs = [c for c in rec.calls if c[0] == "MLPClassifier" and c[1] == "epoch"
              and c[3] == "end"]
    # pipeline: 3 epochs; grid: 2 candidates x 2 folds + the refit, 2 epochs each
    assert len(epochs) == (3 if meta == "pipeline" else 5 * 2)


def test_callbacks_need_fit_callbacks():
    with pytest.raises(TypeError, match="FitCallback"):
        MLPClassifier().set_callbacks(object())
