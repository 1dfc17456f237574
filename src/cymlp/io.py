"""Model files: ``save(estimator, path)`` and ``load(path)``, no pickle involved.

A model file is a ``.npz`` archive with two entries:

- ``params``: the flat parameter buffer (all weights and biases, see ``_engine``);
- ``metadata``: a JSON document (as a uint8 array) with the format version, cymlp's
  version, the estimator class, its parameters, layer sizes, activations, dtype, the
  training history scalars and, for classifiers, the class labels.

Loading uses ``allow_pickle=False`` and checks every shape and dtype against the
metadata, so a corrupt or tampered file gives a ``ValueError``, never arbitrary code.
Saving writes a temporary file in the same folder and renames it over the target, so an
interrupted save never leaves a half-written model under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state

from cymlp import _model
from cymlp._estimators import MLPClassifier, MLPRegressor
from cymlp._model import FITTED as _FITTED
from cymlp._model import FORMAT, FORMAT_VERSION
from cymlp._model import bad as _bad
from cymlp._version import __version__

__all__ = ["FORMAT_VERSION", "load", "save"]

_ESTIMATORS = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}


def _jsonable_params(est) -> dict:
    params = {}
    for key, value in est.get_params(deep=False).items():
        if isinstance(value, np.generic):
            value = value.item()
        if key == "hidden_layer_sizes":
            value = [int(v) for v in np.atleast_1d(value)]
        elif key == "random_state" and not (value is None or isinstance(value, int)):
            value = None  # a RandomState instance is not part of a model
        elif key == "class_weight" and isinstance(value, dict):
            value = [[k.item() if isinstance(k, np.generic) else k, float(v)]
                     for k, v in value.items()]
        elif key == "dropout" and not isinstance(value, (int, float)):
            value = [float(v) for v in value]
        params[key] = value
    return params


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save(estimator: MLPClassifier | MLPRegressor, path: str | os.PathLike) -> None:
    """Write a fitted cymlp estimator to ``path`` (conventionally ``*.npz``), atomically."""
    name = type(estimator).__name__
    if name not in _ESTIMATORS:
        raise TypeError(f"cannot save {name}; supported: {sorted(_ESTIMATORS)}")
    if not hasattr(estimator, "_params"):
        raise ValueError(f"this {name} is not fitted yet; nothing to save")
    estimator._sync_params()
    classes = np.asarray(getattr(estimator, "classes_", np.zeros(0)))
    if classes.dtype == object:
        if not all(isinstance(c, str) for c in classes):
            raise ValueError("class labels must be numbers or strings to be saved")
        classes = classes.astype(str)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cymlp_version": __version__,
        "estimator": name,
        "params": _jsonable_params(estimator),
        "layer_sizes": [int(s) for s in estimator._sizes],
        "activation": estimator.activation,
        "out_activation": estimator.out_activation_,
        "dtype": str(estimator._params.dtype),
        "classes_dtype": classes.dtype.str,
        "n_classes": len(classes),
        "fitted": {k: _jsonable(getattr(estimator, k)) for k in _FITTED
                   if hasattr(estimator, k)},
    }
    if name == "MLPClassifier":
        meta["y_type"] = estimator._label_binarizer.y_type_
    if hasattr(estimator, "feature_names_in_"):
        meta["feature_names_in"] = [str(f) for f in estimator.feature_names_in_]
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, metadata=blob, params=estimator._params, classes=classes)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_mode(path: Path) -> int:
    """Mode for the saved file: the existing file's, else what open() would give."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def load(path: str | os.PathLike) -> MLPClassifier | MLPRegressor:
    """Read a model written by :func:`save` and return the fitted estimator.

    For an application that only predicts, :func:`cymlp.inference.load` reads the same
    file into a predictor without importing scikit-learn."""
    m = _model.read(path)
    return _from_v2(Path(path), m.meta, m.params, m.classes)


def _label_binarizer(y_type: str, classes: np.ndarray):
    lb = LabelBinarizer()
    if y_type == "multilabel-indicator":
        lb.fit(np.vstack([np.zeros(len(classes), int), np.ones(len(classes), int)]))
    else:
        lb.fit(classes)
    if lb.y_type_ != y_type:
        raise ValueError(f"labels do not make a {y_type} problem")
    return lb


def _from_v2(path, meta: dict, params: np.ndarray, classes: np.ndarray):
    """The estimator for a file that _model.read has checked: its parameters pass the
    estimator's own rules, then the fitted state is set."""
    cls = _ESTIMATORS[meta["estimator"]]
    try:
        kwargs = dict(meta["params"])
        kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
        if isinstance(kwargs.get("class_weight"), list):
            kwargs["class_weight"] = {k: v for k, v in kwargs["class_weight"]}
        est = cls(**kwargs)
        est._validate_params()
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"bad metadata ({type(e).__name__}: {e})") from None
    sizes = [int(s) for s in meta["layer_sizes"]]
    if sizes[1:-1] != est._hidden_sizes():
        raise _bad(path, f"layer sizes {sizes} do not match hidden_layer_sizes")
    if cls is MLPClassifier:
        try:
            lb = _label_binarizer(meta["y_type"], classes)
        except (TypeError, ValueError) as e:
            raise _bad(path, f"class labels: {e}") from None
        if not np.array_equal(lb.classes_, classes):
            raise _bad(path, "class labels do not match the output layer")
        est._label_binarizer = lb
        est.classes_ = lb.classes_
    est._sizes = sizes
    est._params = params
    est._set_views()
    est.out_activation_ = meta["out_activation"]
    est.n_features_in_, est.n_outputs_, est.n_layers_ = sizes[0], sizes[-1], len(sizes)
    if "feature_names_in" in meta:
        est.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
    for key, value in meta["fitted"].items():
        setattr(est, key, value)
    if est.solver in ("sgd", "adam"):
        est._no_improvement_count = 0
    est._random_state = check_random_state(est.random_state)
    est._rng = None
    est._optimizer_state = None
    return est
