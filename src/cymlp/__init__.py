"""cymlp: a fast multilayer perceptron whose training loop is typed Cython.

>>> from cymlp import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(100,)).fit(X, y)  # doctest: +SKIP

The names below are imported when first used, so that ``import cymlp`` stays cheap and
``cymlp.inference`` (predicting from a saved model) never loads scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cymlp._version import __version__

__all__ = ["MLPClassifier", "MLPRegressor", "__version__", "load", "patch_sklearn", "save",
           "show_config", "to_onnx", "unpatch_sklearn"]

# name -> the module that defines it (cymlp.to_onnx needs the optional onnx extra)
_LAZY = {
    "MLPClassifier": "cymlp._estimators",
    "MLPRegressor": "cymlp._estimators",
    "load": "cymlp.io",
    "save": "cymlp.io",
    "show_config": "cymlp._config",
    "to_onnx": "cymlp.onnx",
    "patch_sklearn": "cymlp._patch",
    "unpatch_sklearn": "cymlp._patch",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported here
    from cymlp._config import show_config
    from cymlp._estimators import MLPClassifier, MLPRegressor
    from cymlp._patch import patch_sklearn, unpatch_sklearn
    from cymlp.io import load, save
    from cymlp.onnx import to_onnx


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'cymlp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
