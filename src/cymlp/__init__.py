"""cymlp: a fast multilayer perceptron whose training loop is typed Cython.

>>> from cymlp import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(100,)).fit(X, y)  # doctest: +SKIP
"""

from cymlp._config import show_config
from cymlp._estimators import MLPClassifier, MLPRegressor
from cymlp._version import __version__
from cymlp.io import load, save

__all__ = ["MLPClassifier", "MLPRegressor", "__version__", "load", "patch_sklearn", "save",
           "show_config", "to_onnx", "unpatch_sklearn"]

_LAZY = {"to_onnx": "cymlp.onnx", "patch_sklearn": "cymlp._patch",
         "unpatch_sklearn": "cymlp._patch"}


def __getattr__(name: str):
    # imported when first asked for: cymlp.to_onnx needs onnx (an optional extra)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cymlp' has no attribute {name!r}")
