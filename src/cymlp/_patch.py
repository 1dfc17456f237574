"""``cymlp.patch_sklearn()``: scikit-learn's MLP estimators replaced by cymlp's.

After the call, ``from sklearn.neural_network import MLPClassifier, MLPRegressor`` (and
attribute access through ``sklearn.neural_network`` or its ``_multilayer_perceptron``
module) gives cymlp's classes, which take the same parameters and give scikit-learn's
results. Code that imported the names before the call keeps the classes it has: call it
first, as with scikit-learn-intelex's ``patch_sklearn``.
"""

from __future__ import annotations

import importlib

_NAMES = ("MLPClassifier", "MLPRegressor")
_MODULES = ("sklearn.neural_network", "sklearn.neural_network._multilayer_perceptron")
_originals: dict[tuple[str, str], type] = {}


def patch_sklearn() -> None:
    """Make ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` cymlp's.

    Calling it again does nothing; :func:`unpatch_sklearn` restores scikit-learn's."""
    from cymlp import _estimators

    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name in _NAMES:
            key = (module_name, name)
            if key not in _originals:
                _originals[key] = getattr(module, name)
            setattr(module, name, getattr(_estimators, name))


def unpatch_sklearn() -> None:
    """Undo :func:`patch_sklearn` (does nothing if it was not called)."""
    for (module_name, name), cls in list(_originals.items()):
        setattr(importlib.import_module(module_name), name, cls)
        del _originals[(module_name, name)]


def sklearn_is_patched() -> bool:
    """True between :func:`patch_sklearn` and :func:`unpatch_sklearn`."""
    return bool(_originals)
