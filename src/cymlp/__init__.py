"""cymlp: a fast multilayer perceptron whose training loop is typed Cython.

>>> from cymlp import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(100,)).fit(X, y)  # doctest: +SKIP
"""

from cymlp._config import show_config
from cymlp._estimators import MLPClassifier, MLPRegressor
from cymlp._version import __version__
from cymlp.io import load, save

__all__ = ["MLPClassifier", "MLPRegressor", "__version__", "load", "save", "show_config",
           "to_onnx"]


def __getattr__(name: str):
    # cymlp.to_onnx imports onnx (an optional extra) only when asked for
    if name == "to_onnx":
        from cymlp.onnx import to_onnx

        return to_onnx
    raise AttributeError(f"module 'cymlp' has no attribute {name!r}")
