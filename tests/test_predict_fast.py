"""predict's fast path gives what the general path gives.

Labels are read off the outputs without scikit-learn's LabelBinarizer, and float64,
integer and list inputs are converted straight to the model's dtype when they need no
other check. The reference for labels is LabelBinarizer.inverse_transform itself (what
predict called before); the reference for inputs is scikit-learn's validate_data
conversion, spelled out as np.ascontiguousarray(X, dtype=model dtype).
"""

import numpy as np
import pytest
from sklearn.preprocessing import LabelBinarizer

from cymlp import MLPClassifier, MLPRegressor

rng = np.random.default_rng(0)
X = rng.normal(size=(120, 6))


def _fit(y, dtype=np.float32, **kw):
    kw = {"hidden_layer_sizes": (7,), "max_iter": 30, "random_state": 0, **kw}
    return MLPClassifier(**kw).fit(X.astype(dtype), y)


TARGETS = {
    "binary-int": rng.choice([3, 7], size=120),
    "binary-str": rng.choice(["no", "yes"], size=120),
    "binary-bool": rng.random(120) > 0.5,
    "multiclass-int": rng.integers(0, 4, size=120),
    "multiclass-str": rng.choice(["cat", "dog", "emu"], size=120),
    "multilabel": (rng.random((120, 3)) > 0.5).astype(int),
    "one-class": np.full(120, 5),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", list(TARGETS))
def test_labels_are_label_binarizers(target, dtype):
    y = TARGETS[target]
    clf = _fit(y, dtype)
    lb = LabelBinarizer().fit(y)
    for rows in (X[:1], X):
        P = clf.predict_proba(rows.astype(dtype))
        if clf.n_outputs_ == 1:
            P = P[:, 1]  # the one logistic output, as the binarizer saw it
        expected = lb.inverse_transform(P)
        got = clf.predict(rows.astype(dtype))
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_ties_and_the_threshold_follow_the_binarizer():
    # outputs exactly at 0.5 are the negative class, and argmax takes the first maximum
    clf = _fit(TARGETS["binary-int"])
    lb = clf._label_binarizer
    P = np.array([[0.5], [0.5000001], [0.4999999]], dtype=np.float32)
    np.testing.assert_array_equal(clf._labels_from_output(P), lb.inverse_transform(P.ravel()))
    clf = _fit(TARGETS["multiclass-int"])
    P = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.4, 0.4, 0.1]], dtype=np.float32)
    np.testing.assert_array_equal(clf._labels_from_output(P),
                                  clf._label_binarizer.inverse_transform(P))


def _forms(rows):
    """The same rows as a user may hand them over."""
    f64 = np.asarray(rows, dtype=np.float64)
    return {
        "float64": f64,
        "float64-fortran": np.asfortranarray(f64),
        "float64-strided": np.repeat(f64, 2, axis=0)[::2],
        "int64": np.round(f64 * 10).astype(np.int64),
        "bool": f64 > 0,
        "list": f64.tolist(),
        "list-of-int": np.round(f64 * 10).astype(int).tolist(),
        "float16": f64.astype(np.float16),
    }


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("model_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows", [1, 50])
def test_inputs_of_any_dtype_predict_as_their_conversion(model_dtype, n_rows):
    clf = _fit(TARGETS["multiclass-str"], model_dtype)
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=30, random_state=0).fit(
        X.astype(model_dtype), X[:, 0] * 2 + X[:, 1])
    for name, rows in _forms(X[:n_rows]).items():
        ref = np.ascontiguousarray(np.asarray(rows), dtype=model_dtype)
        for method in (clf.predict, clf.predict_proba, clf.predict_log_proba, reg.predict):
            got, expected = method(rows), method(ref)
            assert got.dtype == expected.dtype, (name, method)
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} {method}")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fast_path_keeps_the_errors():
    clf = _fit(TARGETS["binary-int"])
    big = X[:2].copy()
    big[1, 3] = 1e300  # finite in float64, inf once converted to the model's float32
    with pytest.raises(ValueError, match="infinity or a value too large"):
        clf.predict(big)
    nan = X[:2].copy()
    nan[0, 0] = np.nan
    for rows in (nan, nan.tolist()):
        with pytest.raises(ValueError, match="NaN"):
            clf.predict(rows)
    with pytest.raises(ValueError, match="0 sample"):
        clf.predict(np.empty((0, 6)))
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:2, :5])
    with pytest.raises(ValueError, match="strings"):
        clf.predict([["1", "2", "3", "4", "5", "6"]])
    with pytest.raises(ValueError, match="2D array"):
        clf.predict(X[0].tolist())
    with pytest.raises(ValueError):
        clf.predict([[1, 2, 3], [4, 5]])  # ragged
