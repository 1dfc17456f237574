"""Model files: round trip, atomic writes, and refusal of corrupt or hostile files."""

import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import cymlp
from conftest import model_entries, tamper_model, write_model
from cymlp import MLPClassifier


@pytest.fixture
def fitted(blobs):
    X, y = blobs
    names = np.array(["a", "b", "c"])[y]
    clf = MLPClassifier((8, 4), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X.astype(np.float32), names)


def test_round_trip(tmp_path, fitted, blobs):
    X = blobs[0].astype(np.float32)
    path = tmp_path / "model.npz"
    cymlp.save(fitted, path)
    back = cymlp.load(path)
    assert type(back) is MLPClassifier
    np.testing.assert_array_equal(back.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), fitted.predict(X))
    assert back.get_params() == fitted.get_params()
    assert back.coefs_[0].dtype == np.float32
    assert back.loss_curve_ == fitted.loss_curve_ and back.n_iter_ == fitted.n_iter_
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left


def test_save_unfitted_fails(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        cymlp.save(MLPClassifier(), tmp_path / "m.npz")


def test_failed_save_keeps_previous_file(tmp_path, fitted, monkeypatch):
    path = tmp_path / "model.npz"
    cymlp.save(fitted, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        cymlp.save(fitted, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(format_version=99), "format version 99"),
    (lambda m: m.update(format="other"), "does not describe"),
    (lambda m: m.update(estimator="Evil"), "unknown estimator"),
    (lambda m: m.update(layer_sizes=[4, 9, 4, 3]), "layer sizes"),
    (lambda m: m.update(dtype="float64"), "params has"),
    (lambda m: m["params"].update(activation="tanh"), "activations do not match"),
    (lambda m: m["params"].update(hidden_layer_sizes=[8, 0]), "bad metadata"),
    (lambda m: m.update(n_classes=2), "class labels"),
    (lambda m: m.pop("fitted"), "bad metadata"),
    (lambda m: m["fitted"].update(evil_=1), "unknown fitted attributes"),
    (lambda m: m.update(y_type="multilabel-indicator"), "class labels"),
])
def test_tampered_metadata(tmp_path, fitted, change, match):
    path = tmp_path / "m.npz"
    cymlp.save(fitted, path)
    tamper_model(path, change=change)
    with pytest.raises(ValueError, match=match):
        cymlp.load(path)


def test_tampered_arrays(tmp_path, fitted):
    path = tmp_path / "m.npz"
    cymlp.save(fitted, path)
    entries = model_entries(path)
    for key, value, match in [("params", entries["params"][:-1], "params has"),
                              ("params", entries["params"] * np.nan, "NaN"),
                              ("classes", entries["classes"][:2], "class labels")]:
        write_model(path, {**entries, key: value})
        with pytest.raises(ValueError, match=match):
            cymlp.load(path)
    write_model(path, {k: v for k, v in entries.items() if k != "classes"})
    with pytest.raises(ValueError, match="missing entries"):
        cymlp.load(path)


@pytest.mark.parametrize("cut", [0, 10, 100, 1000, -10])
def test_truncated_file(tmp_path, fitted, cut):
    path = tmp_path / "m.npz"
    cymlp.save(fitted, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="not a valid cymlp model file"):
        cymlp.load(path)


def test_pickled_content_is_refused_without_running_it(tmp_path, fitted):
    path = tmp_path / "m.npz"
    cymlp.save(fitted, path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    entries = model_entries(path)
    buf = io.BytesIO()
    np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        for k, v in entries.items():
            if k != "params":
                b = io.BytesIO()
                np.save(b, v)
                z.writestr(f"{k}.npy", b.getvalue())
        z.writestr("params.npy", buf.getvalue())
    with pytest.raises(ValueError, match="not a valid cymlp model file"):
        cymlp.load(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="not a valid cymlp model file"):
        cymlp.load(path)


def test_v1_fixture_still_loads():
    """A model file written in format 1 (the first cymlp 0.1.0 layout) keeps loading."""
    import pathlib

    here = pathlib.Path(__file__).parent / "fixtures"
    expected = json.loads((here / "model_v1_expected.json").read_text())
    model = cymlp.load(here / "model_v1.npz")
    X = np.array(expected["X"])
    assert model.predict(X).tolist() == expected["predict"]
    np.testing.assert_allclose(model.predict_proba(X), expected["predict_proba"], rtol=1e-12)
    assert model.n_iter_ == 30 and len(model.loss_curve_) == 30


def test_saved_file_mode_follows_umask(tmp_path, fitted):
    import os

    path = tmp_path / "m.npz"
    old = os.umask(0o022)
    try:
        cymlp.save(fitted, path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    fitted.save(path)  # the method, over an existing file: mode kept
    assert path.stat().st_mode & 0o777 == 0o644


def test_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        cymlp.load(tmp_path / "none.npz")
