"""Predict from a saved model without scikit-learn: for applications that embed one.

>>> from cymlp.inference import load
>>> model = load("model.npz")            # doctest: +SKIP
>>> model.predict(rows)                   # doctest: +SKIP

``load`` reads a file written by ``clf.save(path)`` / ``cymlp.save`` with the same checks
as :func:`cymlp.load` (a corrupt or tampered file raises ``ValueError``) and returns a
predictor whose answers are the estimator's, bit for bit. Importing this module loads
numpy and cymlp's engine only: not scikit-learn, scipy, pooch or tqdm. A predictor is
immutable and thread-safe: each thread gets its own scratch memory.
"""

from __future__ import annotations

import numbers
import os

import numpy as np
from numpy.typing import ArrayLike

from cymlp import _model

__all__ = ["ClassifierPredictor", "RegressorPredictor", "load"]


def load(path: str | os.PathLike, n_jobs: int | None = None
         ) -> ClassifierPredictor | RegressorPredictor:
    """The predictor for the model file at ``path``.

    ``n_jobs``: threads per prediction, as the estimators' (default: the model's own
    ``n_jobs``, else ``OMP_NUM_THREADS``, else all cores); results do not depend on it.
    """
    m = _model.read(path)
    cls = ClassifierPredictor if m.is_classifier else RegressorPredictor
    return cls(m, n_jobs)


class _Predictor:
    """The forward pass of a model file's network (shared by both predictors)."""

    def __init__(self, m: _model.ModelFile, n_jobs: int | None):
        meta = m.meta
        self._sizes = tuple(m.sizes)
        self._params = m.params
        self._params.flags.writeable = False
        self._activation = meta["activation"]
        self._slope = float(meta["params"].get("negative_slope", 0.01))
        self.out_activation_: str = meta["out_activation"]
        self.n_features_in_: int = m.sizes[0]
        self.n_outputs_: int = m.sizes[-1]
        self.dtype: np.dtype = m.dtype
        self.coefs_, self.intercepts_ = _model.layer_views(self._params, m.sizes)
        if "feature_names_in" in meta:
            self.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        if n_jobs is None:
            n_jobs = meta["params"].get("n_jobs")
        if n_jobs is not None and (not isinstance(n_jobs, numbers.Integral)
                                   or isinstance(n_jobs, bool) or n_jobs == 0):
            raise ValueError(f"n_jobs must be a non-zero integer or None, got {n_jobs!r}")
        self._n_jobs = None if n_jobs is None else int(n_jobs)

    def _n_threads(self) -> int:
        return _model.n_threads(self._n_jobs)

    def _rows(self, X):
        """(engine rows, n) for X: a 2-D array-like of numbers (or a scipy sparse matrix)
        converted to the model's dtype, checked as the estimators check it."""
        if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse, already imported
            X = X.tocsr().astype(self.dtype)
            X.sum_duplicates()
            data = np.ascontiguousarray(X.data, dtype=self.dtype)
            rows = (None, data, X.indices.astype(np.intp), X.indptr.astype(np.intp))
            if not np.isfinite(data).all():
                raise ValueError("Input X contains NaN or infinity.")
        else:
            frame = hasattr(X, "dtypes") and hasattr(X, "columns")  # a DataFrame
            if frame:
                self._check_columns(X.columns)
            try:
                if frame:
                    X = X.to_numpy(dtype=self.dtype, na_value=np.nan)
                X = np.asarray(X)
                if X.dtype.kind == "O":  # numbers as objects convert; text does not
                    if any(isinstance(v, (str, bytes)) for v in X.flat):
                        raise TypeError("it holds strings")
                    X = X.astype(self.dtype)
            except (ValueError, TypeError) as e:
                raise ValueError(f"X is not a 2-D array of numbers: {e}") from None
            if X.dtype.kind not in "biuf":
                raise ValueError(f"X has dtype {X.dtype}; cymlp needs real numbers (bool, "
                                 "integers or floats)")
            if X.ndim != 2:
                raise ValueError(f"Expected a 2D array, got {X.ndim}D; reshape a single row "
                                 "with X.reshape(1, -1)")
            rows = (np.ascontiguousarray(X, dtype=self.dtype), None, None, None)
        n, d = X.shape
        if n == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape=(0, {d})) while a "
                             "minimum of 1 is required.")
        if d != self.n_features_in_:
            raise ValueError(f"X has {d} features, but this model is expecting "
                             f"{self.n_features_in_} features as input.")
        return rows, n

    def _check_columns(self, columns) -> None:
        """A DataFrame's columns must be the names the model was fitted with, in order
        (scikit-learn's rule); a model fitted without names takes any."""
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return
        given = np.asarray([str(c) for c in columns], dtype=object)
        if given.shape != names.shape or not np.array_equal(given, names):
            raise ValueError("The feature names should match those that were passed "
                             f"during fit: expected {list(names)}, got {list(given)}")

    def _forward(self, X, mode: int) -> np.ndarray:
        return self._run(*self._rows(X), mode)

    def _run(self, rows, n: int, mode: int) -> np.ndarray:
        out, status = _model.forward(self._sizes, self._activation,
                                     self.out_activation_, self._slope, self._params, rows,
                                     n, mode, self._n_threads())
        if status < 0:
            raise ValueError("Input X contains NaN or infinity.")
        if status > 0:
            raise ValueError(_model.OVERFLOW)
        return out


class ClassifierPredictor(_Predictor):
    """A saved ``MLPClassifier``'s ``predict``, ``predict_proba`` and
    ``predict_log_proba``, with its ``classes_`` and ``n_features_in_``."""

    def __init__(self, m: _model.ModelFile, n_jobs: int | None = None):
        super().__init__(m, n_jobs)
        self.classes_: np.ndarray = m.classes
        self._y_type: str = m.meta["y_type"]

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels: the most probable class (or each label with p > 0.5)."""
        return _model.labels_from_output(self._forward(X, mode=1), self._y_type,
                                         self.classes_)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), as the estimator's."""
        return _model.proba_from_output(self._forward(X, mode=1))

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log of :meth:`predict_proba`, as the estimator's (never log(0))."""
        if self.out_activation_ == "softmax":
            return self._forward(X, mode=2)
        rows, n = self._rows(X)
        return _model.log_proba_from_logits(
            self._run(rows, n, 0), _model.proba_from_output(self._run(rows, n, 1)))


class RegressorPredictor(_Predictor):
    """A saved ``MLPRegressor``'s ``predict``, with its ``n_features_in_``."""

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs)."""
        out = self._forward(X, mode=1)
        return out.ravel() if self.n_outputs_ == 1 else out
