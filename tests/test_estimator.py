"""MLPClassifier: the scikit-learn API, dtypes, labels, determinism and input errors."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

from cymlp import MLPClassifier


def fit_quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def test_learns_blobs(blobs):
    X, y = blobs
    clf = fit_quiet(MLPClassifier((16,), max_iter=100, random_state=0), X, y)
    assert clf.score(X, y) > 0.95
    assert clf.classes_.tolist() == [0, 1, 2]
    assert clf.n_features_in_ == 4 and clf.n_outputs_ == 3 and clf.n_layers_ == 3
    assert clf.out_activation_ == "softmax"
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (3,)]
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.t_ == clf.n_iter_ * len(X)
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.loss_ == clf.loss_curve_[-1]


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["logistic", "relu", "tanh"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_same_weights_as_scikit_learn(solver, activation, n_classes, blobs):
    """Same random_state, no shuffling: sklearn's init and updates, number for number."""
    X, y = blobs
    y = y % n_classes
    kw = dict(hidden_layer_sizes=(7, 5), activation=activation, solver=solver,
              batch_size=32, max_iter=5, shuffle=False, random_state=3, alpha=1e-3,
              learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True, tol=0)
    ours = fit_quiet(MLPClassifier(**kw), X, y)
    ref = fit_quiet(SkMLPClassifier(**kw), X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-9,
                               atol=1e-12)
    assert ours.out_activation_ == ref.out_activation_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_proba_rows_sum_to_one(dtype, blobs):
    X, y = blobs
    clf = fit_quiet(MLPClassifier((10,), max_iter=20, random_state=0), X.astype(dtype), y)
    P = clf.predict_proba(X.astype(dtype))
    assert P.shape == (len(X), 3) and P.dtype == dtype
    np.testing.assert_allclose(P.sum(1), 1, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X.astype(dtype))), P, rtol=1e-4)
    np.testing.assert_array_equal(clf.predict(X.astype(dtype)), clf.classes_[P.argmax(1)])


def test_dtype_is_kept(blobs):
    X, y = blobs
    for dtype, expected in [(np.float32, np.float32), (np.float64, np.float64),
                            (np.int64, np.float64), (np.float16, np.float64)]:
        clf = fit_quiet(MLPClassifier((5,), max_iter=2, random_state=0),
                        (X * 10).astype(dtype), y)
        assert all(c.dtype == expected for c in clf.coefs_ + clf.intercepts_), dtype


def test_float32_close_to_float64(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0, shuffle=False)
    a = fit_quiet(MLPClassifier(**kw), X.astype(np.float32), y)
    b = fit_quiet(MLPClassifier(**kw), X, y)
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-3, atol=1e-4)


def test_string_labels_round_trip(blobs):
    X, y = blobs
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = fit_quiet(MLPClassifier((16,), max_iter=200, random_state=0), X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(names)
    assert clf.score(X, names) > 0.9
    binary = np.where(y == 0, "no", "yes")
    clf = fit_quiet(MLPClassifier((16,), max_iter=200, random_state=0), X, binary)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.predict_proba(X).shape == (len(X), 2)
    assert clf.score(X, binary) > 0.9


def test_same_random_state_same_weights_and_threads_do_not_matter(blobs):
    X, y = blobs
    runs = [fit_quiet(MLPClassifier((30,), max_iter=5, random_state=7, n_jobs=nj), X, y)
            for nj in (1, 1, 2)]
    for other in runs[1:]:
        for a, b in zip(runs[0].coefs_, other.coefs_):
            np.testing.assert_array_equal(a, b)
    c = fit_quiet(MLPClassifier((30,), max_iter=5, random_state=8), X, y)
    assert not np.array_equal(runs[0].coefs_[0], c.coefs_[0])


def test_partial_fit_equals_fit_without_shuffle(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(9,), solver="sgd", batch_size=50, shuffle=False,
              random_state=0, learning_rate_init=0.1)
    full = fit_quiet(MLPClassifier(max_iter=1, **kw), X, y)
    inc = MLPClassifier(**kw)
    for start in range(0, len(X), 50):
        inc.partial_fit(X[start:start + 50], y[start:start + 50], classes=[0, 1, 2])
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # and whole epochs: partial_fit k times == fit with max_iter=k (Adam state carried over)
    kw["solver"] = "adam"
    full = fit_quiet(MLPClassifier(max_iter=3, **kw), X, y)
    inc = MLPClassifier(**kw)
    for _ in range(3):
        inc.partial_fit(X, y, classes=np.unique(y))
    for a, b in zip(full.coefs_, inc.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_partial_fit_needs_classes_and_rejects_new_labels(blobs):
    X, y = blobs
    clf = MLPClassifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    assert clf.n_outputs_ == 3
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1])


def test_non_contiguous_input_same_result(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
    a = fit_quiet(MLPClassifier(**kw), X, y)
    b = fit_quiet(MLPClassifier(**kw), np.asfortranarray(X), y)
    wide = np.zeros((len(X), 8))
    wide[:, ::2] = X
    c = fit_quiet(MLPClassifier(**kw), wide[:, ::2], y)
    for other in (b, c):
        np.testing.assert_array_equal(a.coefs_[0], other.coefs_[0])
    np.testing.assert_array_equal(a.predict_proba(X), a.predict_proba(wide[:, ::2]))


def test_warm_start_continues(blobs):
    X, y = blobs
    clf = fit_quiet(MLPClassifier((6,), max_iter=2, random_state=0, warm_start=True), X, y)
    before = clf.coefs_[0].copy()
    fit_quiet(clf, X, y)
    assert not np.array_equal(before, clf.coefs_[0])
    assert len(clf.loss_curve_) == 4
    cold = fit_quiet(MLPClassifier((6,), max_iter=2, random_state=0), X, y)
    fit_quiet(cold, X, y)
    assert len(cold.loss_curve_) == 2


def test_stops_when_loss_stalls_and_warns_at_max_iter(blobs):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(5,), max_iter=500, tol=10.0, n_iter_no_change=3,
              random_state=0)
    clf = MLPClassifier(**kw).fit(X, y)
    # epoch 1 sets best_loss_, epochs 2-5 fail to improve by 10.0: 4 > 3 stops after 5
    assert clf.n_iter_ == 5 == SkMLPClassifier(**kw).fit(X, y).n_iter_
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier((5,), max_iter=2, random_state=0).fit(X, y)


def test_verbose_prints_loss(blobs, capsys):
    X, y = blobs
    fit_quiet(MLPClassifier((5,), max_iter=2, random_state=0, verbose=True), X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_paper_init(blobs):
    X, y = blobs
    clf = MLPClassifier((50,), init="paper", max_iter=1, learning_rate_init=1e-12,
                        solver="sgd", momentum=0, random_state=0)
    fit_quiet(clf, X, y)
    W = np.concatenate([c.ravel() for c in clf.coefs_])
    assert W.min() >= -0.5 and W.max() <= 0.5 and W.std() > 0.25
    assert all(np.abs(b).max() < 1e-9 for b in clf.intercepts_)


def test_edited_or_replaced_coefs_are_used(blobs):
    X, y = blobs
    clf = fit_quiet(MLPClassifier((6,), max_iter=3, random_state=0), X, y)
    clf.coefs_[1][...] = 0
    clf.intercepts_[1][...] = [0, 0, 5]
    assert set(clf.predict(X)) == {2}
    clf.intercepts_ = [clf.intercepts_[0].copy(), np.array([0.0, 7.0, 0.0])]
    assert set(clf.predict(X)) == {1}


def test_pickle_round_trip(blobs):
    X, y = blobs
    clf = fit_quiet(MLPClassifier((6,), max_iter=3, random_state=0), X, y)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))
    clone.coefs_[0][...] = 0  # still views into the restored buffer
    assert not np.array_equal(clone.predict_proba(X), clf.predict_proba(X))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_rejected(bad, blobs):
    X, y = blobs
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        MLPClassifier().fit(X, y)
    clf = fit_quiet(MLPClassifier((4,), max_iter=1), blobs[0], y)
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        clf.predict(X)


def test_shape_errors(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier().fit(X, y[:-1])
    clf = fit_quiet(MLPClassifier((4,), max_iter=1), X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="2D array"):
        clf.predict(X[0])
    # one class, as scikit-learn: trains and predicts that class
    one = fit_quiet(MLPClassifier((3,), max_iter=2), X, np.full(len(X), 7))
    assert set(one.predict(X)) == {7}
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, X[:, 0])


@pytest.mark.parametrize("params, match", [
    ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "abc"}, "hidden_layer_sizes"),
    ({"activation": "softplus"}, "activation"),
    ({"solver": "newton"}, "solver"),
    ({"learning_rate_init": 0.0}, "learning_rate_init"),
    ({"alpha": -1.0}, "alpha"),
    ({"max_iter": 0}, "max_iter"),
    ({"momentum": 1.5}, "momentum"),
    ({"beta_1": 1.0}, "beta_1"),
    ({"batch_size": "big"}, "batch_size"),
    ({"init": "he"}, "init"),
    ({"n_jobs": 0}, "n_jobs"),
])
def test_bad_parameters(params, match, blobs):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(*blobs)


def test_batch_size_clipped_with_warning(blobs):
    X, y = blobs
    with pytest.warns(UserWarning, match="clipped"):
        fit_quiet(MLPClassifier((4,), batch_size=10_000, max_iter=1), X, y)


def test_get_params_matches_scikit_learn():
    ours = MLPClassifier().get_params()
    ref = SkMLPClassifier().get_params()
    for key, value in ref.items():
        assert ours[key] == value, key
