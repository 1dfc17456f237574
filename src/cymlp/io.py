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
import zipfile
from pathlib import Path

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state

from cymlp._estimators import MLPClassifier, MLPRegressor, n_params
from cymlp._version import __version__

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT = "cymlp-model"
FORMAT_VERSION = 2
_ESTIMATORS = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}
# fitted attributes stored in the metadata when the estimator has them
_FITTED = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
           "best_validation_score_", "history_")


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


def _bad(path, what: str) -> ValueError:
    return ValueError(f"{path}: not a valid cymlp model file: {what}")


def load(path: str | os.PathLike) -> MLPClassifier | MLPRegressor:
    """Read a model written by :func:`save` and return the fitted estimator."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise _bad(path, "not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise _bad(path, "not an .npz archive")
            missing = {"metadata", "params", "classes"} - set(npz.files)
            if missing:
                raise _bad(path, f"missing entries {sorted(missing)}")
            blob, params, classes = npz["metadata"], npz["params"], npz["classes"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    except ValueError as e:
        if str(e).startswith(f"{path}:"):
            raise
        raise _bad(path, str(e)) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as e:
        raise _bad(path, f"{type(e).__name__}: {e}") from None
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise _bad(path, "metadata entry is not a byte string")
    try:
        meta = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"metadata is not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, "metadata does not describe a cymlp model")
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise _bad(path, f"format version {version!r} is not supported by cymlp "
                         f"{__version__} (supports 1 to {FORMAT_VERSION})")
    if version == 1:
        meta = _upgrade_v1(path, meta)
    return _from_v2(path, meta, params, classes)


def _upgrade_v1(path, meta: dict) -> dict:
    """Format 1 (cymlp 0.1.0 before MLPRegressor): classifiers only, the fitted scalars at
    the top level and no y_type (binary or multiclass by the number of classes)."""
    try:
        meta = dict(meta)
        fitted = {"loss_curve_": meta.pop("loss_curve")}
        for key in ("n_iter_", "t_", "loss_", "best_loss_"):
            fitted[key] = meta.pop(key)
        meta["fitted"] = fitted
        meta["y_type"] = "binary" if int(meta["n_classes"]) == 2 else "multiclass"
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"bad format-1 metadata ({type(e).__name__}: {e})") from None
    if meta.get("estimator") != "MLPClassifier":
        raise _bad(path, "format 1 holds only MLPClassifier models")
    return meta


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
    name = meta.get("estimator")
    cls = _ESTIMATORS.get(name)
    if cls is None:
        raise _bad(path, f"unknown estimator {name!r}")
    try:
        kwargs = dict(meta["params"])
        kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
        if isinstance(kwargs.get("class_weight"), list):
            kwargs["class_weight"] = {k: v for k, v in kwargs["class_weight"]}
        est = cls(**kwargs)
        est._validate_params()
        sizes = [int(s) for s in meta["layer_sizes"]]
        dtype = np.dtype(meta["dtype"])
        out_act = meta["out_activation"]
        n_classes = int(meta["n_classes"])
        fitted = dict(meta["fitted"])
        if not set(fitted) <= set(_FITTED):
            raise ValueError(f"unknown fitted attributes {sorted(set(fitted) - set(_FITTED))}")
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"bad metadata ({type(e).__name__}: {e})") from None
    if dtype not in (np.float32, np.float64):
        raise _bad(path, f"unsupported parameter dtype {dtype}")
    if len(sizes) < 2 or any(s < 1 for s in sizes) or sizes[1:-1] != est._hidden_sizes():
        raise _bad(path, f"layer sizes {sizes} do not match hidden_layer_sizes")
    expected = n_params(sizes)
    if params.dtype != dtype or params.shape != (expected,):
        raise _bad(path, f"params has {params.dtype} {params.shape}, metadata says "
                         f"{dtype} ({expected},)")
    if not np.all(np.isfinite(params)):
        raise _bad(path, "params contain NaN or infinity")
    if est.activation != meta.get("activation"):
        raise _bad(path, "activations do not match")
    if classes.ndim != 1 or len(classes) != n_classes or classes.dtype.str != meta.get(
        "classes_dtype"
    ):
        raise _bad(path, "class labels do not match the metadata")
    if name == "MLPClassifier":
        y_type = meta.get("y_type")
        try:
            lb = _label_binarizer(y_type, classes)
        except (TypeError, ValueError) as e:
            raise _bad(path, f"class labels: {e}") from None
        expected_out = "softmax" if y_type == "multiclass" else "logistic"
        n_out = n_classes if y_type != "binary" else 1
        if out_act != expected_out or sizes[-1] != n_out or not np.array_equal(
            lb.classes_, classes
        ):
            raise _bad(path, "class labels do not match the output layer")
        est._label_binarizer = lb
        est.classes_ = lb.classes_
    elif out_act != ("exp" if est.loss == "poisson" else "identity") or n_classes:
        raise _bad(path, "output activation does not match the loss")
    est._sizes = sizes
    est._params = np.ascontiguousarray(params)
    est._set_views()
    est.out_activation_ = out_act
    est.n_features_in_, est.n_outputs_, est.n_layers_ = sizes[0], sizes[-1], len(sizes)
    if "feature_names_in" in meta:
        names = np.asarray(meta["feature_names_in"], dtype=object)
        if names.shape != (sizes[0],):
            raise _bad(path, "feature names do not match the input layer")
        est.feature_names_in_ = names
    for key, value in fitted.items():
        setattr(est, key, value)
    if est.solver in ("sgd", "adam"):
        est._no_improvement_count = 0
    est._random_state = check_random_state(est.random_state)
    est._rng = None
    est._optimizer_state = None
    return est
