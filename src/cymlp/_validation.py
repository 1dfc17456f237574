"""Input validation at the API boundary: parameter rules, numeric inputs, memory, and the
conversion to the arrays the engine takes (C-contiguous float32/float64, or canonical
CSR with intp indices). Nothing past this point checks values again.
"""

from __future__ import annotations

import numbers
import os

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import get_scorer_names
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_array

from cymlp import _engine
from cymlp._model import ACTIVATIONS, n_params
from cymlp._optimizers import ALL_SOLVERS, SCHEDULES

# scikit-learn 1.9's BaseMultilayerPerceptron._parameter_constraints, for the parameters
# cymlp shares with it (tests/test_params.py compares them with the installed
# scikit-learn's); 'activation' adds 'leaky_relu'.
SHARED_CONSTRAINTS: dict = {
    "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "solver": [StrOptions(set(ALL_SOLVERS))],
    "alpha": [Interval(numbers.Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
    "learning_rate": [StrOptions(set(SCHEDULES))],
    "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
    "power_t": [Interval(numbers.Real, 0, None, closed="left")],
    "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    "shuffle": ["boolean"],
    "random_state": ["random_state"],
    "tol": [Interval(numbers.Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "warm_start": ["boolean"],
    "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
    "nesterovs_momentum": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
    "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
    "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
    "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
    "n_iter_no_change": [
        Interval(numbers.Integral, 1, None, closed="left"),
        Options(numbers.Real, {np.inf}),
    ],
    "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
}
# cymlp's own parameters (a rate list for dropout is checked by _dropout_rates)
OWN_CONSTRAINTS: dict = {
    "init": [StrOptions({"glorot", "paper"})],
    "negative_slope": [Interval(numbers.Real, 0, None, closed="left")],
    "dropout": [Interval(numbers.Real, 0, 1, closed="left"), "array-like"],
    "weight_decay": [None, Interval(numbers.Real, 0, None, closed="left")],
    "warmup_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
    "scoring": [None, StrOptions(set(get_scorer_names())), callable],
    "max_grad_norm": [None, Interval(numbers.Real, 0, None, closed="neither")],
    "n_jobs": [
        None,
        Interval(numbers.Integral, None, -1, closed="right"),
        Interval(numbers.Integral, 1, None, closed="left"),
    ],
}


def memory_limit() -> int:
    """Bytes of physical memory (a generous 1 TiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def check_memory(sizes, itemsize: int, batch_size: int) -> None:
    """Fail fast, before allocating, when a network cannot fit in memory: parameters,
    gradients and two optimizer states, plus one batch of activations and deltas."""
    need = itemsize * (4 * n_params(sizes) + 3 * max(1, batch_size) * sum(sizes))
    have = memory_limit()
    if need > have:
        raise MemoryError(
            f"a network with layer sizes {list(sizes)} needs about {need / 2**30:.1f} GiB "
            f"to train, more than this machine's {have / 2**30:.1f} GiB of memory; use "
            "smaller hidden_layer_sizes"
        )


# (complex numbers are refused by scikit-learn's own check: "Complex data not supported")
_REJECTED_KINDS = {"U": "strings", "S": "bytes", "V": "records", "M": "datetimes",
                   "m": "timedeltas"}


def _object_kinds(values) -> set:
    """'U' when an object array holds text (numeric-looking or not), else nothing: object
    arrays of numbers are converted, other objects fail numpy's float conversion."""
    return {"U"} if any(isinstance(v, (str, bytes)) for v in values) else set()


def check_numeric(X, name: str = "X") -> None:
    """Refuse inputs that scikit-learn would silently coerce: strings (also numeric-looking
    ones, also inside object arrays), datetimes, records. bool, integers, floats and object
    arrays of numbers are converted to float."""
    if hasattr(X, "dtypes") and not hasattr(X, "dtype"):  # a DataFrame
        kinds = {getattr(d, "kind", "O") for d in X.dtypes}
        if "O" in kinds:
            kinds |= _object_kinds(v for col in X.columns for v in X[col])
    elif sp.issparse(X):
        kinds = {X.dtype.kind}
    else:
        try:
            arr = X if isinstance(X, np.ndarray) else np.asarray(X)
        except (ValueError, TypeError):
            return  # ragged nested lists and the like: validate_data explains
        kinds = {arr.dtype.kind}
        if arr.dtype.kind == "O":
            kinds |= _object_kinds(arr.flat)
    bad = sorted(_REJECTED_KINDS[k] for k in kinds if k in _REJECTED_KINDS)
    if bad:
        raise ValueError(
            f"{name} contains {', '.join(bad)}; cymlp needs real numbers (bool, integers "
            "or floats): encode or convert such columns first"
        )


def source(X):
    """The engine's ``source`` (X, data, indices, indptr) for dense X or a CSR matrix."""
    if type(X) is not np.ndarray and sp.issparse(X):
        return None, X.data, X.indices, X.indptr
    return X, None, None, None


def check_finite(X, estimator, n_threads: int) -> None:
    """scikit-learn's finiteness check of an X that ``validate_data`` returned with
    ``ensure_all_finite=False``, with its error message: a dense X is scanned by the
    engine on up to ``n_threads`` threads (the scan is memory-bound, ~10 ms for MNIST on
    one thread); a sparse one, and a dense one found not finite, by ``check_array``."""
    if sp.issparse(X) or not _engine.all_finite(X.reshape(-1), n_threads):
        check_array(X, accept_sparse=True, dtype=None, input_name="X", estimator=estimator)


def as_engine_input(X, dtype):
    """C-contiguous dense array, or canonical CSR with intp indices, of ``dtype``."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=dtype)
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        X.indices = X.indices.astype(np.intp, copy=False)
        X.indptr = X.indptr.astype(np.intp, copy=False)
        X.data = np.ascontiguousarray(X.data, dtype=dtype)
        return X
    return np.ascontiguousarray(X, dtype=dtype)
