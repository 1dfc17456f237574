"""ONNX export (cymlp.onnx): onnxruntime gives the estimators' labels, and their
probabilities / predictions within 1e-5, for every estimator kind, activation and dtype;
Pipelines convert through skl2onnx; ``cymlp export`` writes the same model."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import cymlp
from cymlp import MLPClassifier, MLPRegressor

onnx = pytest.importorskip("onnx")  # (the test extra installs it; CI fails on the skip)
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from cymlp.onnx import to_onnx  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "tanh", "relu", "leaky_relu"]
DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(dtype):
    rng = np.random.RandomState(0)
    X = rng.randn(300, 6).astype(dtype)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    return X, y


def _run(model, X):
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})


TARGETS = {
    "multiclass": lambda y: y,
    "binary": lambda y: y > 0,
    "strings": lambda y: np.array(["cat", "dog", "emu"])[y],
    "binary-strings": lambda y: np.array(["no", "yes"])[(y > 0).astype(int)],
    "multilabel": lambda y: np.stack([y == 0, y == 1, y == 2], axis=1).astype(int),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("target", list(TARGETS))
def test_classifier_labels_and_probabilities_match(target, activation, dtype):
    X, y = _data(dtype)
    clf = MLPClassifier((7, 5), activation=activation, negative_slope=0.3, max_iter=40,
                        random_state=0).fit(X, TARGETS[target](y))
    label, proba = _run(to_onnx(clf), X)
    expected = clf.predict(X)
    assert label.shape == expected.shape
    np.testing.assert_array_equal(label, expected)
    assert proba.dtype == dtype
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regressor_predictions_match(n_outputs, loss, activation, dtype):
    X, _ = _data(dtype)
    t = np.abs(X[:, :n_outputs]) if n_outputs > 1 else np.abs(X[:, 0])
    reg = MLPRegressor(hidden_layer_sizes=(9,), activation=activation, loss=loss,
                       max_iter=40, random_state=0).fit(X, t)
    (out,) = _run(to_onnx(reg), X)
    assert out.shape == (len(X), n_outputs)
    np.testing.assert_allclose(out.reshape(reg.predict(X).shape), reg.predict(X),
                               rtol=1e-5, atol=1e-5)


def test_the_graph_is_the_forward_pass_not_a_copy_of_outputs():
    """Rows the model never saw (far outside the training range) agree too."""
    X, y = _data(np.float32)
    clf = MLPClassifier((16,), activation="leaky_relu", max_iter=40, random_state=0)
    clf.fit(X, y)
    Xn = np.random.RandomState(9).randn(50, 6).astype(np.float32) * 4
    label, proba = _run(to_onnx(clf), Xn)
    np.testing.assert_array_equal(label, clf.predict(Xn))
    np.testing.assert_allclose(proba, clf.predict_proba(Xn), atol=1e-5)


def test_mnist_paper_network_agrees_on_the_test_set(mnist):
    X_train, y_train, X_test, y_test = mnist
    clf = MLPClassifier((100,), activation="logistic", solver="sgd",
                        learning_rate_init=0.1, batch_size=200, momentum=0.0, alpha=0.0,
                        max_iter=2, random_state=0).fit(X_train, y_train)
    label, proba = _run(to_onnx(clf), X_test)
    np.testing.assert_array_equal(label, clf.predict(X_test))
    np.testing.assert_allclose(proba, clf.predict_proba(X_test), rtol=0, atol=1e-5)
    assert (label == y_test).mean() > 0.85


@pytest.mark.parametrize("dtype", DTYPES)
def test_pipeline_converts_with_skl2onnx(dtype):
    X, y = _data(dtype)
    labels = np.array(["cat", "dog", "emu"])[y]
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=60, random_state=0))
    pipe.fit(X, labels)
    model = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    label, proba = _run(model, X)
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-5)
    if dtype == np.float32:
        # skl2onnx's default ZipMap output (a list of {class: probability}); ONNX's ZipMap
        # takes float32 only, so float64 models need zipmap=False, as with scikit-learn's
        label2, maps = _run(skl2onnx.to_onnx(pipe, X[:1]), X)
        np.testing.assert_array_equal(label2, pipe.predict(X))
        assert maps[0].keys() == {"cat", "dog", "emu"}

    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(8,), max_iter=60,
                                                       random_state=0)).fit(X, X[:, 0])
    (out,) = _run(skl2onnx.to_onnx(reg, X[:1]), X)
    np.testing.assert_allclose(out.ravel(), reg.predict(X), rtol=1e-4, atol=1e-5)


def test_to_onnx_is_a_package_attribute_and_checks_its_input():
    assert cymlp.to_onnx is to_onnx
    with pytest.raises(ValueError, match="not fitted"):
        to_onnx(MLPClassifier())
    with pytest.raises(TypeError, match="cymlp MLPClassifier or MLPRegressor"):
        to_onnx(StandardScaler())


def test_cli_export_writes_the_same_model(tmp_path):
    X, y = _data(np.float32)
    clf = MLPClassifier((7,), max_iter=30, random_state=0).fit(X, y)
    path = tmp_path / "model.npz"
    cymlp.save(clf, path)
    out = tmp_path / "model.onnx"
    r = subprocess.run([sys.executable, "-m", "cymlp", "export", str(path), str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    label, proba = _run(onnx.load(str(out)), X)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)
    # a missing model is one line on stderr and a non-zero exit
    r = subprocess.run([sys.executable, "-m", "cymlp", "export", str(tmp_path / "no.npz"),
                        str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
