"""Model files: ``save(estimator, path)`` and ``load(path)``, no pickle involved.

A model file is a ``.npz`` archive with three entries:

- ``params``: the flat parameter buffer (all weights and biases, see ``_engine``);
- ``classes``: a classifier's labels (empty for a regressor);
- ``metadata``: a JSON document (as a uint8 array) with the format version, cymlp's
  version, the estimator class, its parameters, layer sizes, activations, dtype, the
  training history scalars and, for classifiers, the target type.

Loading uses ``allow_pickle=False`` and checks every shape and dtype against the
metadata, so a corrupt or tampered file gives a ``ValueError``, never arbitrary code.
Saving writes a temporary file in the same folder and renames it over the target, so an
interrupted save never leaves a half-written model under the final name.

The estimators hand over their state (``_get_state``) and build themselves from a
checked file (``_from_model_file``); ``_model`` reads and writes the archive. For an
application that only predicts, :func:`cymlp.inference.load` reads the same files
without scikit-learn.
"""

from __future__ import annotations

import os

from cymlp import _model
from cymlp._estimators import MLPClassifier, MLPRegressor
from cymlp._model import FORMAT_VERSION

__all__ = ["FORMAT_VERSION", "load", "save"]

_ESTIMATORS = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}


def save(estimator: MLPClassifier | MLPRegressor, path: str | os.PathLike) -> None:
    """Write a fitted cymlp estimator to ``path`` (conventionally ``*.npz``), atomically."""
    name = type(estimator).__name__
    if name not in _ESTIMATORS:
        raise TypeError(f"cannot save {name}; supported: {sorted(_ESTIMATORS)}")
    estimator.save(path)


def load(path: str | os.PathLike) -> MLPClassifier | MLPRegressor:
    """Read a model written by :func:`save` and return the fitted estimator."""
    m = _model.read(path)
    return _ESTIMATORS[m.meta["estimator"]]._from_model_file(path, m)
