"""cymlp.inference: a saved model's predictions without scikit-learn.

The predictor must give the estimator's answers bit for bit, refuse what cymlp.load
refuses, be safe to share between threads, and its process must not import
scikit-learn, scipy, pooch or tqdm.
"""

import subprocess
import sys
import threading

import numpy as np
import pytest

import cymlp
from conftest import tamper_model
from cymlp import MLPClassifier, MLPRegressor
from cymlp.inference import ClassifierPredictor, RegressorPredictor, load

rng = np.random.default_rng(0)
X = rng.normal(size=(90, 5))
HEAVY = ("sklearn", "scipy", "pooch", "tqdm")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _saved(tmp_path, est, dtype, y):
    est.fit(X.astype(dtype), y)
    path = tmp_path / "m.npz"
    est.save(path)
    return est, path


CLASSIFIERS = {
    "binary": rng.choice(["a", "b"], size=90),
    "multiclass": rng.integers(0, 4, size=90),
    "multilabel": (rng.random((90, 3)) > 0.5).astype(int),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["logistic", "leaky_relu"])
@pytest.mark.parametrize("target", list(CLASSIFIERS))
def test_classifier_predictor_gives_the_estimators_answers(tmp_path, target, activation,
                                                           dtype):
    est, path = _saved(tmp_path, MLPClassifier((6,), activation=activation, max_iter=40,
                                               negative_slope=0.2, random_state=0),
                       dtype, CLASSIFIERS[target])
    model = load(path)
    assert isinstance(model, ClassifierPredictor)
    np.testing.assert_array_equal(model.classes_, est.classes_)
    assert model.n_features_in_ == est.n_features_in_ == 5
    for rows in (X[:1], X, X.astype(np.float32), X[:3].tolist()):
        for method in ("predict", "predict_proba", "predict_log_proba"):
            got, expected = getattr(model, method)(rows), getattr(est, method)(rows)
            assert got.dtype == expected.dtype and got.shape == expected.shape, method
            np.testing.assert_array_equal(got, expected, err_msg=method)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss, n_out", [("squared_error", 1), ("squared_error", 2),
                                         ("poisson", 1)])
def test_regressor_predictor_gives_the_estimators_answers(tmp_path, loss, n_out, dtype):
    y = np.abs(X[:, :n_out]) if n_out > 1 else np.abs(X[:, 0])
    est, path = _saved(tmp_path, MLPRegressor(loss=loss, hidden_layer_sizes=(4, 3),
                                              activation="tanh", max_iter=40,
                                              random_state=0), dtype, y)
    model = load(path)
    assert isinstance(model, RegressorPredictor)
    assert not hasattr(model, "predict_proba")
    for rows in (X[:1], X):
        got, expected = model.predict(rows), est.predict(rows)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_sparse_rows_predict_as_dense(tmp_path):
    import scipy.sparse as sp

    Xs = X.copy()
    Xs[np.abs(Xs) < 0.8] = 0
    _, path = _saved(tmp_path, MLPClassifier((6,), max_iter=5, random_state=0), np.float64,
                     CLASSIFIERS["multiclass"])
    model = load(path)
    np.testing.assert_array_equal(model.predict_proba(sp.csr_matrix(Xs)),
                                  model.predict_proba(Xs))


def test_bad_inputs_raise_value_errors(tmp_path):
    _, path = _saved(tmp_path, MLPClassifier((6,), max_iter=5, random_state=0), np.float32,
                     CLASSIFIERS["binary"])
    model = load(path)
    nan = X[:2].copy()
    nan[1, 1] = np.nan
    cases = [(nan, "NaN"), (X[:2, :4], "4 features"), (X[0], "2D"), (np.empty((0, 5)), "0 sample"),
             ([["x"] * 5], "dtype"), ([[1, 2], [3]], "2-D array")]
    for rows, match in cases:
        with pytest.raises(ValueError, match=match):
            model.predict(rows)
    with pytest.raises(ValueError, match="n_jobs"):
        load(path, n_jobs=0)


def _corrupt_copies(tmp_path, path):
    """A few ways a model file goes bad (test_fuzz_files.py covers many more), each
    written beside it; yields (what, the bad file)."""
    bad = tmp_path / "bad-truncated.npz"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    yield "truncated", bad
    for what, change, arrays in [
        ("layer sizes", lambda m: m.update(layer_sizes=[5, 7, 1]), {}),
        ("activation", lambda m: m.update(activation="softplus"), {}),
        ("y_type", lambda m: m.update(y_type="multiclass"), {}),
        ("params", None, {"params": np.zeros(3, np.float32)}),
        ("nan", None, {"params": np.full(6 * 5 + 6 + 6 + 1, np.nan, np.float32)}),
    ]:
        bad = tmp_path / f"bad-{what.replace(' ', '_')}.npz"
        tamper_model(path, bad, change, **arrays)
        yield what, bad


def test_corrupt_files_raise_value_error_as_cymlp_load(tmp_path):
    _, path = _saved(tmp_path, MLPClassifier((6,), max_iter=5, random_state=0), np.float32,
                     CLASSIFIERS["binary"])
    for _what, bad in _corrupt_copies(tmp_path, path):
        for reader in (load, cymlp.load):
            with pytest.raises(ValueError, match="not a valid cymlp model file"):
                reader(bad)
    assert isinstance(cymlp.load(path), MLPClassifier)  # the full estimator, as before


def test_one_predictor_shared_by_threads(tmp_path):
    Xb = rng.normal(size=(3000, 5))
    _, path = _saved(tmp_path, MLPClassifier((64,), max_iter=3, random_state=0), np.float32,
                     rng.integers(0, 4, size=90))
    model = load(path)
    sizes = [1, 7, 1024, 3000]
    expected = {n: model.predict_proba(Xb[:n]) for n in sizes}
    errors = []

    def work(seed):
        r = np.random.default_rng(seed)
        for _ in range(30):
            n = sizes[r.integers(len(sizes))]
            if not np.array_equal(model.predict_proba(Xb[:n]), expected[n]):
                errors.append(n)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_inference_process_imports_no_scikit_learn(tmp_path):
    _, path = _saved(tmp_path, MLPClassifier((6,), max_iter=5, random_state=0), np.float32,
                     CLASSIFIERS["multiclass"])
    code = (
        "import sys\n"
        "import cymlp\n"
        "from cymlp.inference import load\n"
        f"m = load({str(path)!r})\n"
        "print(m.predict([[0.1, 0.2, 0.3, 0.4, 0.5]]))\n"
        f"heavy = sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY!r})\n"
        "assert not heavy, heavy\n"
        "cymlp.__version__\n"
        "assert 'sklearn' not in sys.modules\n"
        "cymlp.MLPClassifier  # the estimators import scikit-learn when asked for\n"
        "assert 'sklearn' in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_package_attributes_stay_reachable():
    for name in cymlp.__all__:
        assert getattr(cymlp, name) is not None
    assert set(cymlp.__all__) <= set(dir(cymlp))
    with pytest.raises(AttributeError):
        cymlp.no_such_name  # noqa: B018


def test_dataframes_are_checked_and_converted_as_by_the_estimator(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X[:, :4], columns=["a", "b", "c", "d"])
    est, path = MLPClassifier((6,), max_iter=5, random_state=0), tmp_path / "m.npz"
    est.fit(df, CLASSIFIERS["binary"]).save(path)
    model = load(path)
    np.testing.assert_array_equal(model.feature_names_in_, est.feature_names_in_)
    np.testing.assert_array_equal(model.predict_proba(df), est.predict_proba(df))
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(df[["b", "a", "c", "d"]])  # the estimator refuses it too
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(df[["b", "a", "c", "d"]])
    mixed = df.assign(a=df["a"] > 0, b=df["b"].astype("Float64"))  # bool + nullable float
    np.testing.assert_array_equal(model.predict_proba(mixed), est.predict_proba(mixed))
    objects = np.asarray(df.to_numpy(), dtype=object)  # numbers held as objects
    np.testing.assert_array_equal(load(path).predict_proba(objects),
                                  est.predict_proba(objects.astype(float)))


def test_log_proba_of_a_frame_fitted_model_warns_nothing(tmp_path):
    import warnings

    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X[:, :4], columns=["a", "b", "c", "d"])
    for y in (CLASSIFIERS["binary"], CLASSIFIERS["multilabel"]):
        est = MLPClassifier((6,), max_iter=5, random_state=0).fit(df, y)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est.predict_log_proba(df)


@pytest.mark.parametrize("fitted", [[], [["n_iter_", 3]], "x"])
def test_fitted_entry_that_is_not_a_mapping_is_a_value_error(tmp_path, fitted):
    _, path = _saved(tmp_path, MLPClassifier((6,), max_iter=5, random_state=0), np.float32,
                     CLASSIFIERS["binary"])
    bad = tmp_path / "bad.npz"
    tamper_model(path, bad, lambda m: m.update(fitted=fitted))
    for reader in (load, cymlp.load):
        with pytest.raises(ValueError, match="not a valid cymlp model file"):
            reader(bad)


@pytest.mark.parametrize("names", [[["a"], ["b"], ["c"], ["d"], ["e"]], ["a", "b"],
                                   [1, 2, 3, 4, 5]])
def test_feature_names_entry_must_be_the_input_layers_names(tmp_path, names):
    _, path = _saved(tmp_path, MLPClassifier((6,), max_iter=5, random_state=0), np.float32,
                     CLASSIFIERS["binary"])
    bad = tmp_path / "bad.npz"
    tamper_model(path, bad, lambda m: m.update(feature_names_in=names))
    for reader in (load, cymlp.load):
        with pytest.raises(ValueError, match="feature names do not match"):
            reader(bad)
