"""A trained network without scikit-learn: the model file's reader, the forward pass and
the rules that turn outputs into labels and probabilities.

Imports numpy and the engine only, so that ``cymlp.inference`` (an application that only
predicts) never loads scikit-learn or scipy. The estimators (``_estimators``) and the
model files (``io``) use the same functions, so both paths give the same answers.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cymlp import _engine, _kernels
from cymlp._version import __version__

# One table for activations: name -> engine code (see _kernels.pxd). Each one's forward
# and derivative are matrix-product epilogue ops, side by side in _gemm_epi.h.
ACTIVATIONS = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3, "leaky_relu": 4}
OUTPUT_ACTIVATIONS = {"identity": 0, "logistic": 1, "softmax": 5, "exp": 6}
CHUNK = 1024  # rows per forward pass at predict time and per chunk in full-batch passes

FORMAT = "cymlp-model"
FORMAT_VERSION = 2
# fitted attributes stored in the metadata when the estimator has them
FITTED = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
          "best_validation_score_", "history_")
Y_TYPES = ("binary", "multiclass", "multilabel-indicator")
# the integer dtype of LabelBinarizer's thresholded labels (scikit-learn's indexing_dtype)
_INDEX_DTYPE = np.asarray(0).dtype

_ENGINES = threading.local()  # forward-pass engines, per thread (see engine)


def n_params(sizes) -> int:
    """Length of the flat parameter buffer for layer widths ``sizes`` (weights + biases)."""
    return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))


def layer_views(params: np.ndarray, sizes) -> tuple[list, list]:
    """``coefs_`` (n_in, n_out) and ``intercepts_`` (n_out,) as views into ``params``."""
    coefs, intercepts, off = [], [], 0
    for n_in, n_out in itertools.pairwise(sizes):
        coefs.append(params[off : off + n_in * n_out].reshape(n_in, n_out))
        off += n_in * n_out
        intercepts.append(params[off : off + n_out])
        off += n_out
    return coefs, intercepts


# ---- the forward pass -------------------------------------------------------------------

def n_threads(n_jobs: int | None) -> int:
    """Threads for ``n_jobs`` as scikit-learn reads it: None for the default (the
    threadpoolctl limit, ``OMP_NUM_THREADS``, else all cores), -1 all, -2 all but one."""
    max_threads = _kernels.max_threads()
    if n_jobs is None:
        return max_threads
    if n_jobs < 0:
        return max(1, max_threads + 1 + n_jobs)
    return int(n_jobs)


def engine(sizes, activation: str, out_activation: str, slope: float, dtype, rows: int,
           n_threads: int) -> _engine.Engine:
    """A forward-pass engine for batches of up to ``rows`` rows, kept per thread and
    reused across calls (so a small predict sets up and allocates nothing)."""
    cache = getattr(_ENGINES, "cache", None)
    if cache is None:
        cache = _ENGINES.cache = {}
    key = (activation, out_activation, slope, np.dtype(dtype).char, rows, n_threads, *sizes)
    found = cache.get(key)
    if found is None:
        found = _engine.Engine(sizes, ACTIVATIONS[activation], OUTPUT_ACTIVATIONS[out_activation],
                               slope, None, rows, n_threads, dtype, False)
        if len(cache) > 8:
            cache.clear()
        cache[key] = found
    return found


def forward(sizes, activation: str, out_activation: str, slope: float, params: np.ndarray,
            rows: tuple, n: int, mode: int, n_threads: int):
    """Last-layer values of ``n`` validated rows (``rows``: the engine's source, X, data,
    indices, indptr) and the engine's status: mode 0 raw, 1 outputs, 2 log-outputs;
    status -1 for NaN or inf in X, > 0 when outputs overflowed."""
    out = np.empty((n, sizes[-1]), dtype=params.dtype)
    if n == 0:
        return out, 0
    status = engine(sizes, activation, out_activation, float(slope), params.dtype,
                    min(n, CHUNK), n_threads).forward(rows, params, out, mode)
    return out, status


OVERFLOW = ("The network's outputs overflowed (non-finite values) for some rows of X; the "
            "inputs may contain values far larger than those it was trained on.")


# ---- outputs to answers -----------------------------------------------------------------

def labels_from_output(P: np.ndarray, y_type: str, classes: np.ndarray) -> np.ndarray:
    """scikit-learn's ``LabelBinarizer.inverse_transform`` of the outputs: the first
    argmax (softmax), or each logistic output thresholded at 0.5, its
    ``(pos_label + neg_label) / 2``; an indicator matrix for multilabel."""
    if y_type == "multiclass":
        return classes[P.argmax(axis=1)]
    y = (P > 0.5).astype(_INDEX_DTYPE)
    if y_type == "multilabel-indicator":
        return y
    if len(classes) == 1:
        return np.repeat(classes[0], len(y))
    return classes[y.ravel()]


def proba_from_output(P: np.ndarray) -> np.ndarray:
    """``predict_proba`` from the outputs: a binary model's one logistic output becomes
    the columns (1 - p, p); no probability is exactly 0 (the smallest normal float)."""
    if P.shape[1] == 1:
        P = np.hstack([1 - P, P])
        np.maximum(P, np.finfo(P.dtype).tiny, out=P)
    return P


def log_proba_from_logits(Z: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``predict_log_proba`` of logistic outputs from the logits Z and ``predict_proba``
    P: log(p) where p >= 1/2, so that saturated outputs tie as in P and argmax agrees,
    and -log(1 + exp(-z)) below, exact where p underflows."""
    if Z.shape[1] == 1:
        Z = np.hstack([-Z, Z])
    upper = P >= 0.5
    L = -np.logaddexp(0, -Z)
    L[upper] = np.log(P[upper])
    return L


# ---- model files ------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelFile:
    """A model file's contents, checked for consistency (see :func:`read`)."""

    meta: dict
    params: np.ndarray
    classes: np.ndarray
    sizes: list
    dtype: np.dtype

    @property
    def is_classifier(self) -> bool:
        return self.meta["estimator"] == "MLPClassifier"


def jsonable_params(params: dict) -> dict:
    """get_params() as JSON: numpy scalars as Python numbers, lists for tuples and
    arrays, no RandomState instance (it is not part of a model)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if key == "hidden_layer_sizes":
            value = [int(v) for v in np.atleast_1d(value)]
        elif key == "random_state" and not (value is None or isinstance(value, int)):
            value = None
        elif key == "class_weight" and isinstance(value, dict):
            value = [[k.item() if isinstance(k, np.generic) else k, float(v)]
                     for k, v in value.items()]
        elif key == "dropout" and not isinstance(value, (int, float)):
            value = [float(v) for v in value]
        out[key] = value
    return out


def jsonable(value):
    """value with numpy scalars as Python numbers and tuples as lists (JSON-ready)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write(path: str | os.PathLike, meta: dict, params: np.ndarray,
          classes: np.ndarray) -> None:
    """Write a model file atomically: a temporary file in the same folder, renamed over
    ``path``, so an interrupted save never leaves a half-written model under that name.
    ``meta`` is the estimator's JSON-ready state; the format fields are added here."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "cymlp_version": __version__,
            **meta}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, metadata=blob, params=params, classes=classes)
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


def bad(path, what: str) -> ValueError:
    return ValueError(f"{path}: not a valid cymlp model file: {what}")


def read(path: str | os.PathLike) -> ModelFile:
    """Read and check a model file written by ``cymlp.save``: never unpickles, and every
    shape, dtype and label is checked against the metadata (a ``ValueError`` names what
    is wrong). Format 1 files are upgraded."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise bad(path, "not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise bad(path, "not an .npz archive")
            missing = {"metadata", "params", "classes"} - set(npz.files)
            if missing:
                raise bad(path, f"missing entries {sorted(missing)}")
            blob, params, classes = npz["metadata"], npz["params"], npz["classes"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    except ValueError as e:
        if str(e).startswith(f"{path}:"):
            raise
        raise bad(path, str(e)) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as e:
        raise bad(path, f"{type(e).__name__}: {e}") from None
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise bad(path, "metadata entry is not a byte string")
    try:
        meta = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(path, f"metadata is not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(path, "metadata does not describe a cymlp model")
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise bad(path, f"format version {version!r} is not supported by cymlp "
                        f"{__version__} (supports 1 to {FORMAT_VERSION})")
    if version == 1:
        meta = _upgrade_v1(path, meta)
    return _check(path, meta, params, classes)


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
        raise bad(path, f"bad format-1 metadata ({type(e).__name__}: {e})") from None
    if meta.get("estimator") != "MLPClassifier":
        raise bad(path, "format 1 holds only MLPClassifier models")
    return meta


def _check(path, meta: dict, params: np.ndarray, classes: np.ndarray) -> ModelFile:
    name = meta.get("estimator")
    if name not in ("MLPClassifier", "MLPRegressor"):
        raise bad(path, f"unknown estimator {name!r}")
    try:
        est_params = meta["params"]
        hidden = [int(h) for h in np.atleast_1d(est_params["hidden_layer_sizes"])]
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes {hidden} has a layer without units")
        sizes = [int(s) for s in meta["layer_sizes"]]
        dtype = np.dtype(meta["dtype"])
        out_act = meta["out_activation"]
        n_classes = int(meta["n_classes"])
        fitted = meta["fitted"]
        if not isinstance(fitted, dict):
            raise ValueError("fitted is not a mapping")
        if not set(fitted) <= set(FITTED):
            raise ValueError(f"unknown fitted attributes {sorted(set(fitted) - set(FITTED))}")
        slope = float(est_params.get("negative_slope", 0.01))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad(path, f"bad metadata ({type(e).__name__}: {e})") from None
    if dtype not in (np.float32, np.float64):
        raise bad(path, f"unsupported parameter dtype {dtype}")
    if len(sizes) < 2 or any(s < 1 for s in sizes) or sizes[1:-1] != hidden:
        raise bad(path, f"layer sizes {sizes} do not match hidden_layer_sizes")
    expected = n_params(sizes)
    if params.dtype != dtype or params.shape != (expected,):
        raise bad(path, f"params has {params.dtype} {params.shape}, metadata says "
                        f"{dtype} ({expected},)")
    if not np.all(np.isfinite(params)):
        raise bad(path, "params contain NaN or infinity")
    activation = meta.get("activation")
    if activation not in ACTIVATIONS or est_params.get("activation") != activation:
        raise bad(path, "activations do not match")
    if not (slope >= 0 and np.isfinite(slope)):
        raise bad(path, f"negative_slope {slope} is not a finite number >= 0")
    if classes.ndim != 1 or len(classes) != n_classes or classes.dtype.str != meta.get(
        "classes_dtype"
    ):
        raise bad(path, "class labels do not match the metadata")
    if name == "MLPClassifier":
        _check_labels(path, meta.get("y_type"), classes, out_act, sizes[-1])
    elif out_act != ("exp" if est_params.get("loss") == "poisson" else "identity") or n_classes:
        raise bad(path, "output activation does not match the loss")
    names = meta.get("feature_names_in")
    if names is not None and (not isinstance(names, list) or len(names) != sizes[0]
                              or not all(isinstance(n, str) for n in names)):
        raise bad(path, "feature names do not match the input layer")
    n_jobs = est_params.get("n_jobs")
    if n_jobs is not None and (type(n_jobs) is not int or n_jobs == 0):
        raise bad(path, f"n_jobs {n_jobs!r} is not a non-zero integer or None")
    return ModelFile(meta, np.ascontiguousarray(params), classes, sizes, dtype)


def _check_labels(path, y_type, classes: np.ndarray, out_act: str, n_out: int) -> None:
    """The class labels make the problem the metadata names, in LabelBinarizer's order
    (sorted, unique; 0..n-1 for multilabel), and fit the output layer."""
    if y_type not in Y_TYPES:
        raise bad(path, f"class labels: unknown target type {y_type!r}")
    n = len(classes)
    if y_type == "multilabel-indicator":
        ordered = classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(n))
        fits = n >= 1
    else:
        ordered = n >= 1 and bool(np.all(classes[1:] > classes[:-1]))
        fits = n <= 2 if y_type == "binary" else n > 2
    if not (ordered and fits):
        raise bad(path, f"class labels: labels do not make a {y_type} problem")
    expected_out = "softmax" if y_type == "multiclass" else "logistic"
    if out_act != expected_out or n_out != (1 if y_type == "binary" else n):
        raise bad(path, "class labels do not match the output layer")
