"""scikit-learn parity (same weights for the same data and seeds), the features beyond
scikit-learn, and interoperability with its tools."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.base import clone
from sklearn.datasets import make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import PoissonRegressor
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import compute_sample_weight

from cymlp import MLPClassifier, MLPRegressor
from cymlp._optimizers import SGD

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def assert_same_model(ours, ref, rtol=1e-9, atol=1e-12):
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def numpy_predict_proba(clf, X):
    """predict_proba written out in numpy from coefs_ / intercepts_ (float64)."""
    f = {"identity": lambda z: z, "logistic": lambda z: 1 / (1 + np.exp(-z)),
         "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0),
         "leaky_relu": lambda z: np.where(z > 0, z, clf.negative_slope * z)}[clf.activation]
    a = np.asarray(X, dtype=np.float64)
    for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        a = f(a @ W + b)
    z = a @ clf.coefs_[-1] + clf.intercepts_[-1]
    if clf.out_activation_ == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    p = 1 / (1 + np.exp(-z))
    return np.hstack([1 - p, p]) if p.shape[1] == 1 else p


@pytest.fixture
def regression():
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, noise=0.5,
                           random_state=0)
    return X, y / 50


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_sgd_schedules_match_sklearn(learning_rate, blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate=learning_rate,
              learning_rate_init=0.2, power_t=0.3, batch_size=50, shuffle=False,
              max_iter=60, tol=1e-3, n_iter_no_change=2, random_state=0)
    ours, ref = MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_
    assert_same_model(ours, ref)


@pytest.mark.parametrize("kw", [dict(solver="sgd", momentum=0.0, alpha=0.0),  # fused path
                                dict(solver="sgd", momentum=0.9, alpha=1e-3),
                                dict(solver="adam", alpha=1e-3)])
def test_one_row_batches_match_sklearn(kw, blobs):
    """batch_size=1 (the paper's per-example form) takes the outer-product gradient,
    applied directly and skipping zero inputs for plain SGD; same weights as sklearn."""
    X, y = blobs
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # zero inputs, which plain SGD skips
    kw = dict(hidden_layer_sizes=(7,), batch_size=1, shuffle=False, max_iter=3,
              learning_rate_init=0.01, random_state=0, **kw)
    ours, ref = MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert_same_model(ours, ref)
    assert ours.loss_curve_ == pytest.approx(ref.loss_curve_, rel=1e-9)
    assert_same_model(MLPClassifier(n_jobs=2, **kw).fit(X, y), ours, rtol=0, atol=0)


def test_early_stopping_matches_sklearn(blobs):
    X, y = blobs
    y = y % 2  # sklearn stratifies binary problems only; cymlp also multiclass
    kw = dict(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.2,
              shuffle=False, max_iter=200, n_iter_no_change=3, random_state=1)
    ours, ref = MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert ours.validation_scores_ == pytest.approx(ref.validation_scores_, abs=1e-12)
    assert ours.best_validation_score_ == ref.best_validation_score_
    assert ours.best_loss_ is None and ours.n_iter_ == ref.n_iter_
    assert_same_model(ours, ref)  # best weights restored
    assert len(ours.history_["val_loss"]) == ours.n_iter_ == len(ours.history_["val_score"])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        ours.partial_fit(X, y)


def test_early_stopping_split_is_stratified_for_multiclass(blobs, monkeypatch):
    import cymlp._training as est

    X, y = blobs
    seen = {}
    real_split = est.train_test_split

    def spy(*arrays, **kw):
        seen["stratify"] = kw["stratify"]
        return real_split(*arrays, **kw)

    monkeypatch.setattr(est, "train_test_split", spy)
    clf = MLPClassifier((5,), early_stopping=True, validation_fraction=0.1, max_iter=5,
                        random_state=0).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    np.testing.assert_array_equal(seen["stratify"], y)  # class indices, all three classes
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.05).fit(X[:12], y[:12])


MNIST_ROWS = 10_000  # 50 batches of 200 per epoch


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_mnist_rows_match_sklearn_in_float64(mnist, solver):
    """Real shapes: 784 mostly-zero features, 130 hidden units, batches of 200. The
    products run over several blocks of the sum (K = 784 > 256) and ragged column tiles
    (130 = 2 x 64 + 2), the forward products read the weights packed and kept up to date
    by the updates, and zero inputs are skipped; scikit-learn computes none of that, yet
    the weights agree to 1e-9 after two epochs."""
    X = mnist[0][:MNIST_ROWS].astype(np.float64)
    y = mnist[1][:MNIST_ROWS]
    assert (X == 0).mean() > 0.75
    kw = dict(hidden_layer_sizes=(130,), solver=solver, batch_size=200, max_iter=2,
              shuffle=False, random_state=0, learning_rate_init=0.01)
    ours = MLPClassifier(init="glorot", **kw).fit(X, y)
    ref = sk.MLPClassifier(**kw).fit(X, y)
    assert ours.coefs_[0].dtype == np.float64 and ours.n_iter_ == ref.n_iter_ == 2
    assert_same_model(ours, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X[:2000]), ref.predict_proba(X[:2000]),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("solver, activation", [("sgd", "relu"), ("adam", "logistic")])
def test_mnist_rows_match_sklearn_in_float32(mnist, solver, activation):
    """float32 against scikit-learn's own float32 training (float32 data keeps float32
    weights in both): the same numbers up to float32 rounding, which each library does in
    its own order: within 1e-3 of each weight (or of the largest, where a weight is tiny).

    (Not Adam with relu: a relu unit whose input is within float32 rounding of 0 can be
    on in one library and off in the other, and Adam's normalised steps turn that into
    differences of 1e-2 within two epochs; on these rows it happens at the 41st step.)"""
    X = mnist[0][:MNIST_ROWS]
    y = mnist[1][:MNIST_ROWS]
    kw = dict(hidden_layer_sizes=(130,), solver=solver, activation=activation,
              batch_size=200, max_iter=2, shuffle=False, random_state=0)
    ours = MLPClassifier(init="glorot", **kw).fit(X, y)
    ref = sk.MLPClassifier(**kw).fit(X, y)
    assert ours.coefs_[0].dtype == ref.coefs_[0].dtype == np.float32
    scale = max(np.abs(c).max() for c in ref.coefs_)
    assert_same_model(ours, ref, rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(ours.predict_proba(X[:2000]), ref.predict_proba(X[:2000]),
                               rtol=1e-3, atol=1e-5)


def test_lbfgs_matches_sklearn(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=50, random_state=0,
              alpha=1e-2)
    ours, ref = MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    assert not hasattr(ours, "loss_curve_") and not hasattr(ours, "history_")
    assert not hasattr(ours, "partial_fit")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier((6,), solver="lbfgs", max_iter=2, random_state=0).fit(X, y)


def test_lbfgs_float32_and_sparse(blobs):
    X, y = blobs
    a = MLPClassifier((6,), solver="lbfgs", max_iter=30, random_state=0).fit(
        X.astype(np.float32), y)
    assert a.coefs_[0].dtype == np.float32 and a.score(X, y) > 0.9
    b = MLPClassifier((6,), solver="lbfgs", max_iter=30, random_state=0).fit(
        sp.csr_matrix(X), y)
    c = MLPClassifier((6,), solver="lbfgs", max_iter=30, random_state=0).fit(X, y)
    assert_same_model(b, c, rtol=1e-10)


def test_multilabel_matches_sklearn():
    X, Y = make_multilabel_classification(n_samples=150, n_features=6, n_classes=4,
                                          random_state=0)
    kw = dict(hidden_layer_sizes=(10,), batch_size=30, shuffle=False, max_iter=20,
              random_state=0)
    ours, ref = MLPClassifier(**kw).fit(X, Y), sk.MLPClassifier(**kw).fit(X, Y)
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 4
    assert_same_model(ours, ref)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.predict_proba(X).shape == (150, 4)
    np.testing.assert_allclose(np.exp(ours.predict_log_proba(X)), ours.predict_proba(X),
                               rtol=1e-10)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_regressor_matches_sklearn(loss, outputs, solver, regression):
    X, y = regression
    y = y[:, 0] if outputs == 1 else y
    if loss == "poisson":
        y = np.exp(y / 4)
    kw = dict(loss=loss, hidden_layer_sizes=(7,), activation="tanh", solver=solver,
              batch_size=40, shuffle=False, max_iter=8, random_state=0,
              learning_rate_init=0.01)
    ours, ref = MLPRegressor(**kw).fit(X, y), sk.MLPRegressor(**kw).fit(X, y)
    assert_same_model(ours, ref)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)
    assert ours.predict(X).shape == y.shape


def test_sample_weight_matches_sklearn(blobs):
    X, y = blobs
    sw = np.random.RandomState(0).uniform(0, 3, len(y))
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=64, shuffle=False,
              max_iter=5, random_state=0)
    ours = MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    ref = sk.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    assert_same_model(ours, ref)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    with pytest.raises(ValueError, match="Negative values"):
        MLPClassifier().fit(X, y, sample_weight=-sw)


def test_poisson_glm_equivalence():
    """One identity hidden unit makes the network a Poisson GLM."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3))
    y = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1] + 0.5))
    glm = PoissonRegressor(alpha=0, tol=1e-10, max_iter=1000).fit(X, y)
    net = MLPRegressor(loss="poisson", hidden_layer_sizes=(1,), activation="identity",
                       solver="lbfgs", alpha=0, tol=1e-10, max_iter=2000, random_state=0)
    net.fit(X, y)
    np.testing.assert_allclose(net.predict(X), glm.predict(X), rtol=1e-4)
    with pytest.raises(ValueError, match="negative"):
        net.fit(X, y - 5.0)


def test_sparse_input_equals_dense(blobs):
    X, y = blobs
    X = np.where(np.abs(X) > 1, X, 0.0)
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    dense = MLPClassifier(**kw).fit(X, y)
    for fmt in (sp.csr_matrix, sp.csc_matrix):
        sparse = MLPClassifier(**kw).fit(fmt(X), y)
        for a, b in zip(dense.coefs_, sparse.coefs_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sparse.predict_proba(fmt(X)), dense.predict_proba(X))
    # non-canonical CSR (duplicate entries are summed, as scipy defines them)
    csr = sp.csr_matrix((np.array([1.0, 2.0, 4.0]), np.array([0, 0, 3]), np.array([0, 2, 3])),
                        shape=(2, 4))
    assert not csr.has_canonical_format
    np.testing.assert_array_equal(csr.toarray(), [[3, 0, 0, 0], [0, 0, 0, 4]])
    small = MLPClassifier((3,), max_iter=1, random_state=0).fit(np.eye(4), [0, 1, 0, 1])
    np.testing.assert_array_equal(small.predict_proba(csr), small.predict_proba(csr.toarray()))


def test_class_weight(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    for cw in ("balanced", {0: 5.0, 2: 0.5}):
        a = MLPClassifier(class_weight=cw, **kw).fit(X, y)
        b = MLPClassifier(**kw).fit(X, y, sample_weight=compute_sample_weight(cw, y))
        assert_same_model(a, b, rtol=1e-12)
    sw = np.linspace(0.5, 2, len(y))
    a = MLPClassifier(class_weight={1: 3.0}, **kw).fit(X, y, sample_weight=sw)
    b = MLPClassifier(**kw).fit(X, y, sample_weight=sw * np.where(y == 1, 3.0, 1.0))
    assert_same_model(a, b, rtol=1e-12)
    with pytest.raises(ValueError, match="not supported with partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


def test_dropout(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(32, 16), max_iter=60, random_state=0)
    plain = MLPClassifier(**kw).fit(X, y)
    drop = MLPClassifier(dropout=0.3, **kw).fit(X, y)
    again = MLPClassifier(dropout=[0.3, 0.3], **kw).fit(X, y)
    assert not np.array_equal(plain.coefs_[0], drop.coefs_[0])
    np.testing.assert_array_equal(drop.coefs_[0], again.coefs_[0])  # seeded
    # no dropout at prediction time: the plain forward pass through the learnt weights
    np.testing.assert_allclose(drop.predict_proba(X), numpy_predict_proba(drop, X),
                               rtol=1e-12, atol=1e-300)
    assert drop.score(X, y) > 0.9
    only_second = MLPClassifier(dropout=[0.0, 0.5], **kw).fit(X, y)
    assert not np.array_equal(only_second.coefs_[0], drop.coefs_[0])
    for bad in (1.0, -0.1, [0.1], [0.1, 0.2, 0.3], "x"):
        with pytest.raises(ValueError, match="dropout"):
            MLPClassifier(dropout=bad, hidden_layer_sizes=(4, 4)).fit(X, y)
    with pytest.raises(ValueError, match="stochastic solver"):
        MLPClassifier(dropout=0.2, solver="lbfgs").fit(X, y)


def test_dropout_keeps_expected_activation():
    """Inverted dropout: a unit is zeroed with probability p and scaled by 1/(1-p), so a
    network whose only hidden unit outputs 1 still sees 1 on average."""
    from cymlp import _engine

    sizes = [1, 2000, 1]
    n = 50
    params = np.zeros(2000 + 2000 + 2000 + 1)
    params[2000:4000] = 50.0  # b_0: logistic hidden units output ~1
    params[4000:6000] = 1.0 / 2000  # W_1 averages them
    X = np.zeros((n, 1))
    Y = np.zeros((n, 1))
    grads = np.empty_like(params)
    engine = _engine.Engine(sizes, 1, 0, 0.0, [0.4], n, 1, params.dtype)
    rng = np.array([1], dtype=np.uint64)
    # lr tiny: one update barely moves, but the loss reflects the dropped-out forward pass
    sgd = SGD(params, MLPClassifier(solver="sgd", learning_rate_init=1e-12, momentum=0.0))
    loss, _, hits = engine.train_epoch((X, None, None, None), Y, None, params, grads, sgd,
                                       False, rng, 0.0, 1.0)
    assert hits is None  # (an identity output: no labels to hit)
    # output = mean of 2000 units, each 0 or 1/0.6: mean 1, var 0.4/0.6/2000; loss = out^2/2
    assert loss == pytest.approx(0.5 * (1 + 0.4 / 0.6 / 2000), rel=0.02)


def test_leaky_relu_slope_zero_is_relu(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    a = MLPClassifier(activation="leaky_relu", negative_slope=0.0, **kw).fit(X, y)
    b = MLPClassifier(activation="relu", **kw).fit(X, y)
    assert_same_model(a, b, rtol=0, atol=0)
    c = MLPClassifier(activation="leaky_relu", negative_slope=0.2, **kw).fit(X, y)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_history(blobs):
    X, y = blobs
    clf = MLPClassifier((8,), max_iter=7, random_state=0).fit(X, y)
    assert clf.history_["loss"] == clf.loss_curve_
    assert len(clf.history_["seconds"]) == 7 and min(clf.history_["seconds"]) > 0
    assert "val_loss" not in clf.history_
    clf.partial_fit(X, y)
    assert len(clf.history_["loss"]) == 8


@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_running_accuracy_is_predicts_accuracy_before_each_update(blobs, target):
    """history_['accuracy'] counts the rows whose outputs, before their batch's update,
    predicted their labels. With one batch per epoch and no shuffling, that is the
    accuracy predict() gives just before the epoch."""
    X, y = blobs
    if target == "binary":
        y = y % 2
    elif target == "multilabel":
        y = np.stack([y % 2, y // 2 % 2, (y == 0)], axis=1).astype(int)
    clf = MLPClassifier((6,), solver="sgd", learning_rate_init=0.3, batch_size=len(X),
                        shuffle=False, random_state=0)
    expected = []
    for _ in range(6):
        if hasattr(clf, "coefs_"):
            hit = clf.predict(X) == y
            expected.append(float(np.mean(hit.all(axis=1) if hit.ndim == 2 else hit)))
        clf.partial_fit(X, y, classes=np.unique(y) if target != "multilabel" else np.arange(3))
    assert clf.history_["accuracy"][1:] == expected
    assert len(set(expected)) > 1  # (it moved: the test would see a stale count)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X, y.astype(float))
    assert "accuracy" not in reg.history_


def test_feature_names(blobs):
    import pandas as pd  # (in the 'test' extra)

    X, y = blobs
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = MLPClassifier((4,), max_iter=3, random_state=0).fit(df, y)
    assert clf.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


def test_warm_start_needs_same_classes(blobs):
    X, y = blobs
    clf = MLPClassifier((4,), max_iter=2, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        clf.fit(X[y < 2], y[y < 2])


def test_pipeline_grid_search_cross_val_clone(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, random_state=0))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.9
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.9
    fitted = grid.best_estimator_[-1]
    cloned = clone(fitted)
    assert not hasattr(cloned, "coefs_") and cloned.get_params() == fitted.get_params()


def test_pickle_and_joblib_round_trip(tmp_path, blobs, regression):
    X, y = blobs
    for est, Xf, yf in [(MLPClassifier((6,), max_iter=5, random_state=0), X, y),
                        (MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0),
                         *regression)]:
        est.fit(Xf, yf)
        restored = pickle.loads(pickle.dumps(est))
        joblib.dump(est, tmp_path / "m.joblib")
        loaded = joblib.load(tmp_path / "m.joblib")
        for other in (restored, loaded):
            np.testing.assert_array_equal(other.predict(Xf), est.predict(Xf))


def test_save_load_regressor_and_multilabel(tmp_path, regression):
    import cymlp

    X, y = regression
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0,
                       early_stopping=True).fit(X, y)
    reg.save(tmp_path / "r.npz")
    back = cymlp.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    assert back.validation_scores_ == reg.validation_scores_
    Xm, Ym = make_multilabel_classification(n_samples=50, n_classes=3, random_state=0)
    clf = MLPClassifier((5,), max_iter=5, random_state=0).fit(Xm, Ym)
    clf.save(tmp_path / "c.npz")
    np.testing.assert_array_equal(cymlp.load(tmp_path / "c.npz").predict(Xm), clf.predict(Xm))
