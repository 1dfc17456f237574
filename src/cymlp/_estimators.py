"""scikit-learn estimators on cymlp's engine.

This is the API boundary: every input is validated here, once, and turned into
C-contiguous float32/float64 arrays (or a canonical CSR matrix) before the engine,
which trusts its inputs, runs. Names, defaults and semantics follow
``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (scikit-learn 1.9), plus
``init``, ``negative_slope``, ``dropout``, ``class_weight``, ``n_jobs`` and ``history_``.
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
import operator
import os
import signal
import threading
import time
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, compute_sample_weight
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import (
    _check_sample_weight,
    column_or_1d,
    validate_data,
)

from cymlp import _engine, _model
from cymlp._model import ACTIVATIONS, OUTPUT_ACTIVATIONS, n_params
from cymlp._model import CHUNK as _CHUNK

_SOLVERS = {"sgd": 0, "adam": 1}
_STOCHASTIC = ("sgd", "adam")


# scikit-learn 1.9's BaseMultilayerPerceptron._parameter_constraints, for the parameters
# cymlp shares with it (tests/test_params.py compares them with the installed
# scikit-learn's); 'activation' adds 'leaky_relu'.
_SHARED_CONSTRAINTS: dict = {
    "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
    "alpha": [Interval(numbers.Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
    "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
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
_OWN_CONSTRAINTS: dict = {
    "init": [StrOptions({"glorot", "paper"})],
    "negative_slope": [Interval(numbers.Real, 0, None, closed="left")],
    "dropout": [Interval(numbers.Real, 0, 1, closed="left"), "array-like"],
    "n_jobs": [
        None,
        Interval(numbers.Integral, None, -1, closed="right"),
        Interval(numbers.Integral, 1, None, closed="left"),
    ],
}


@contextlib.contextmanager
def _sigint_held():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then
    hand it to the handler that was installed (Python's default raises KeyboardInterrupt
    there). Only the main thread runs Python's signal handlers, so elsewhere, or when the
    handler is not a Python callable, this does nothing."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    held = []
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    except ValueError:  # (not the main interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(signal.SIGINT, held[0])


def _memory_limit() -> int:
    """Bytes of physical memory (a generous 1 TiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def _check_memory(sizes, itemsize: int, batch_size: int) -> None:
    """Fail fast, before allocating, when a network cannot fit in memory: parameters,
    gradients and two optimizer states, plus one batch of activations and deltas."""
    need = itemsize * (4 * n_params(sizes) + 3 * max(1, batch_size) * sum(sizes))
    have = _memory_limit()
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


def _check_numeric(X, name: str = "X") -> None:
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


def _rows(X):
    """(X, data, indices, indptr) engine arguments for dense X or a CSR matrix."""
    if type(X) is not np.ndarray and sp.issparse(X):
        return None, X.data, X.indices, X.indptr
    return X, None, None, None


def _as_engine_input(X, dtype):
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


def _jsonable_params(est) -> dict:
    """get_params() as JSON: numpy scalars as Python numbers, lists for tuples and
    arrays, no RandomState instance (it is not part of a model)."""
    params = {}
    for key, value in est.get_params(deep=False).items():
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


class _BaseMLP(BaseEstimator):
    """Shared fit loop of cymlp's multilayer perceptrons (not for direct use)."""

    _parameter_constraints: ClassVar[dict] = {**_SHARED_CONSTRAINTS, **_OWN_CONSTRAINTS}

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        init="glorot",
        negative_slope=0.01,
        dropout=0.0,
        n_jobs=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.init = init
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.n_jobs = n_jobs

    # ---- validation -------------------------------------------------------------------

    def _hidden_sizes(self) -> list[int]:
        """Widths of the hidden layers (after _validate_params' type check): each an
        int >= 1, as scikit-learn's fit requires (it says so for 0 and crashes on 2.5)."""
        hls = self.hidden_layer_sizes
        sizes = [hls] if isinstance(hls, numbers.Integral) else list(hls)
        for s in sizes:
            if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _dropout_rates(self) -> list[float] | None:
        """One dropout rate per hidden layer, or None when dropout is off."""
        n_hidden = len(self._hidden_sizes())
        d = self.dropout
        rates = [d] * n_hidden if isinstance(d, numbers.Real) else list(d)
        if len(rates) != n_hidden or not all(
            isinstance(r, numbers.Real) and not isinstance(r, bool) and 0 <= r < 1
            for r in rates
        ):
            raise InvalidParameterError(
                f"The 'dropout' parameter of {type(self).__name__} must be a float in "
                f"[0, 1) or one such rate per hidden layer ({n_hidden}). Got {d!r} instead."
            )
        return [float(r) for r in rates] if any(r > 0 for r in rates) else None

    def _validate_params(self) -> None:
        """scikit-learn's parameter rules (InvalidParameterError, as its fit raises),
        then what they cannot say: layer widths, dropout rates, dropout with lbfgs."""
        validate_parameter_constraints(self._parameter_constraints,
                                       self.get_params(deep=False),
                                       caller_name=type(self).__name__)
        self._hidden_sizes()
        self._dropout_rates()
        if self.solver == "lbfgs" and self._dropout_rates() is not None:
            raise ValueError("dropout needs a stochastic solver ('sgd' or 'adam'), not lbfgs")

    def _n_threads(self) -> int:
        return _model.n_threads(self.n_jobs)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                "not stochastic."
            )
        return True

    # ---- parameters ---------------------------------------------------------------------

    @property
    def _loss_scale(self) -> float:
        # scikit-learn averages the half squared error over the outputs too
        if self.out_activation_ == "identity":
            return 1.0 / self.n_outputs_
        return 1.0

    def _engine_args(self) -> tuple:
        return (
            self._sizes,
            ACTIVATIONS[self.activation],
            OUTPUT_ACTIVATIONS[self.out_activation_],
            float(self.negative_slope),
        )

    def _set_views(self) -> None:
        """coefs_ / intercepts_ as views into the flat parameter buffer."""
        self.coefs_, self.intercepts_ = _model.layer_views(self._params, self._sizes)
        self._views = (*self.coefs_, *self.intercepts_)

    def _sync_params(self) -> None:
        """Re-pack coefs_ / intercepts_ if the user replaced them (rather than edited them)."""
        views = getattr(self, "_views", ())
        arrays = (*self.coefs_, *self.intercepts_)
        if len(views) == len(arrays) and all(map(operator.is_, views, arrays)):
            return  # the very views _set_views made: in-place edits are already in _params
        base = self._params.ctypes.data
        item = self._params.itemsize
        off = 0
        for c, b in zip(self.coefs_, self.intercepts_):
            if (
                not isinstance(c, np.ndarray)
                or not isinstance(b, np.ndarray)
                or c.ctypes.data != base + off * item
                or not c.flags.c_contiguous
            ):
                break
            off += c.size
            if b.ctypes.data != base + off * item:
                break
            off += b.size
        else:
            if len(self.coefs_) == len(self._sizes) - 1:
                return
        shapes = list(itertools.pairwise(self._sizes))
        if (
            len(self.coefs_) != len(shapes)
            or len(self.intercepts_) != len(shapes)
            or any(
                np.shape(c) != s or np.shape(b) != (s[1],)
                for c, b, s in zip(self.coefs_, self.intercepts_, shapes)
            )
        ):
            raise ValueError("coefs_ / intercepts_ do not match the network's layer sizes")
        parts = []
        for c, b in zip(self.coefs_, self.intercepts_):
            parts += [np.ravel(c), np.ravel(b)]
        self._params = np.concatenate(parts).astype(self._params.dtype)
        self._set_views()

    def _initialize(self, n_features: int, n_outputs: int, dtype) -> None:
        hidden = self._hidden_sizes()
        _check_memory([n_features, *hidden, n_outputs], np.dtype(dtype).itemsize,
                      self.batch_size if self.batch_size != "auto" else 200)
        self._sizes = [n_features, *hidden, n_outputs]
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(self._sizes)
        self.n_iter_ = 0
        self.t_ = 0
        parts = []
        for fan_in, fan_out in itertools.pairwise(self._sizes):
            if self.init == "paper":
                # paper §4.3.1: weights uniform in [-0.5, 0.5], biases zero
                parts.append(self._random_state.uniform(-0.5, 0.5, fan_in * fan_out))
                parts.append(np.zeros(fan_out))
            else:
                # Glorot & Bengio (2010), as scikit-learn (factor 2 for logistic)
                factor = 2.0 if self.activation == "logistic" else 6.0
                bound = np.sqrt(factor / (fan_in + fan_out))
                parts.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).ravel())
                parts.append(self._random_state.uniform(-bound, bound, fan_out))
        self._params = np.ascontiguousarray(np.concatenate(parts), dtype=dtype)
        self._set_views()
        self._rng = None  # seeded on first use, after the early-stopping split (as sklearn)
        self._optimizer_state = None
        for attr in ("loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_", "history_", "_no_improvement_count",
                     "_best_params"):
            self.__dict__.pop(attr, None)
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.history_ = {"loss": [], "seconds": []}
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
                self.history_.update(val_loss=[], val_score=[])
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _new_optimizer_state(self):
        m = np.zeros_like(self._params)
        v = np.zeros_like(self._params) if self.solver == "adam" else m
        return {"m": m, "v": v, "step": 0, "lr": float(self.learning_rate_init)}

    # ---- training -----------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._validate_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y, sample_weight = self._validate_input(X, y, sample_weight, incremental,
                                                   reset=first_pass)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], Y.shape[1], X.dtype)
        elif X.dtype != self._params.dtype:
            X = _as_engine_input(X, self._params.dtype)
        Y = np.ascontiguousarray(Y, dtype=self._params.dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=self._params.dtype)
        self._sync_params()
        if not self._params.flags.writeable:  # e.g. a model loaded from a read-only memmap
            self._params = self._params.copy()
            self._set_views()
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(X, Y, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, Y, sample_weight)
        if not np.isfinite(self._params).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _fit_lbfgs(self, X, Y, sample_weight):
        n = X.shape[0]
        n_threads = self._n_threads()
        chunk = max(1, min(n, 4 * _CHUNK))
        ws = np.empty(_engine.workspace_size(self._sizes, chunk, n_threads, training=False),
                      self._params.dtype)
        grads = np.empty_like(self._params)
        args = (*self._engine_args(), *_rows(X), Y, sample_weight)

        def loss_grad(x):
            self._params[...] = x
            loss = _engine.loss_and_grad(*args, self._params, grads, ws, n, chunk,
                                         float(self.alpha), self._loss_scale, n_threads)
            return loss, grads.astype(np.float64)

        start = self._params.copy()
        try:
            opt = scipy.optimize.minimize(
                loss_grad,
                self._params.astype(np.float64),
                method="L-BFGS-B",
                jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            )
        except KeyboardInterrupt:
            self._params[...] = start  # L-BFGS has no epochs: keep the weights it started from
            raise
        if not np.isfinite(opt.x).all():
            self._params[...] = start
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        self.n_iter_ = _check_optimize_result("lbfgs", opt, self.max_iter)
        self.loss_ = float(opt.fun)
        self._params[...] = opt.x

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:  # (< 1 is refused by _validate_params, as in scikit-learn)
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. "
                "It is going to be clipped",
                stacklevel=4,
            )
        return int(np.clip(self.batch_size, 1, n))

    def _fit_stochastic(self, X, Y, sample_weight, incremental):
        if not incremental or self._optimizer_state is None:
            self._optimizer_state = self._new_optimizer_state()
        state = self._optimizer_state
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("validation_fraction=0.0 leaves no validation split for "
                             "early_stopping=True; use a fraction in (0, 1)")
        X_val = Y_val = y_val = sw_val = None
        if self.early_stopping and "_best_params" not in self.__dict__:
            # as scikit-learn's _best_coefs: what the fit ends with if no epoch scores
            self._best_params = self._params.copy()
        if self.early_stopping:
            stratify = None  # stratified for binary and multiclass, not multilabel
            if is_classifier(self) and self.out_activation_ == "softmax":
                stratify = Y.argmax(1)
                counts = np.unique(stratify, return_counts=True)[1]
                n_val = int(np.ceil(self.validation_fraction * len(stratify)))
                if counts.min() < 2 or min(n_val, len(stratify) - n_val) < len(counts):
                    stratify = None  # too few samples per class to stratify
            elif is_classifier(self) and self.n_outputs_ == 1:
                # as scikit-learn, which stratifies binary problems only: its labels
                # (so its error when a class has one member)
                stratify = Y.astype(bool)
            parts = [X, Y] + ([sample_weight] if sample_weight is not None else [])
            split = train_test_split(*parts, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, X_val, Y, Y_val = (_as_engine_input(a, self._params.dtype) for a in split[:4])
            if sample_weight is not None:
                sample_weight, sw_val = (np.ascontiguousarray(a) for a in split[4:])
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            y_val = self._decode(Y_val)
        if self._rng is None:
            self._rng = np.array([self._random_state.randint(0, 2**31 - 1)], dtype=np.uint64)
        n = X.shape[0]
        batch_size = self._batch_size(n)
        n_threads = self._n_threads()
        dropout = self._dropout_rates()
        dtype = self._params.dtype
        ws = np.empty(_engine.workspace_size(self._sizes, batch_size, n_threads, dropout), dtype)
        grads = np.empty_like(self._params)
        rows = _rows(X)
        self.n_iter_ = 0  # as scikit-learn: epochs of this call
        # the state of the last completed epoch: what an interrupt (or, without early
        # stopping, a diverging epoch) puts back. _end_epoch updates it in the same step
        # as the epoch's bookkeeping, so the two always agree.
        saved = [self._params.copy(), state["m"].copy(), state["v"].copy(), self._rng.copy()]
        try:
            for _ in range(self.max_iter):
                start = time.perf_counter()
                loss, n_batches = _engine.train_epoch(
                    *self._engine_args(), dropout, *rows, Y, sample_weight, self._params,
                    grads, ws, n, batch_size, bool(self.shuffle), self._rng,
                    _SOLVERS[self.solver], state["lr"], float(self.momentum),
                    bool(self.nesterovs_momentum), state["m"], state["v"],
                    float(self.beta_1), float(self.beta_2), float(self.epsilon),
                    state["step"], float(self.alpha), self._loss_scale, n_threads,
                )
                # An interrupt up to here drops the epoch (the except clause restores
                # `saved`); from here on it is held until the epoch is recorded whole.
                with _sigint_held():
                    stop = self._end_epoch(loss, n_batches, n, time.perf_counter() - start,
                                           state, saved, (X_val, Y_val, y_val, sw_val))
                if stop or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        "and the optimization hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=4,
                    )
        except KeyboardInterrupt:
            # stopped within an epoch: back to the last completed one, then re-raise
            self._restore(saved, state)
            if self.early_stopping:  # as at the end of a fit: the best weights so far
                self._params[...] = self._best_params
            what = "best validation score" if self.early_stopping else "last completed epoch"
            warnings.warn(f"Training interrupted by user; the model keeps the weights of "
                          f"the {what}.", stacklevel=4)
            raise
        if self.early_stopping:
            self._params[...] = self._best_params

    def _end_epoch(self, loss, n_batches, n, seconds, state, saved, validation) -> bool:
        """Everything that records a finished epoch, as one step (run under _sigint_held):
        the divergence check, counters, curves, validation score, learning-rate schedule,
        stopping rule, and last the snapshot `saved` of the epoch's parameters, optimizer
        state and generator. Returns True to stop training."""
        if not (np.isfinite(loss) and np.isfinite(self._params).all()):
            if not self.early_stopping:
                self._restore(saved, state)
                raise ValueError(
                    "Solver produced non-finite parameter weights. The input data may"
                    " contain large values and need to be preprocessed. (cymlp kept "
                    "the weights of the last finite epoch; a smaller learning_rate_init "
                    "may help.)"
                )
            # with early stopping, scikit-learn (>= 1.6, #29504) carries on: the epoch
            # scores nan, and the fit ends with the best weights it saw
        state["step"] += n_batches
        self.n_iter_ += 1
        self.loss_ = float(loss)
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        self.history_["loss"].append(self.loss_)
        self.history_["seconds"].append(seconds)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(*validation)
        if self.learning_rate == "invscaling" and self.solver == "sgd":
            state["lr"] = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
        stop = False
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            stop = self._trigger_stopping(msg, state)
            if not stop:
                self._no_improvement_count = 0
        for keep, current in zip(saved, (self._params, state["m"], state["v"], self._rng)):
            np.copyto(keep, current)
        return stop

    def _restore(self, saved, state) -> None:
        for keep, current in zip(saved, (self._params, state["m"], state["v"], self._rng)):
            np.copyto(current, keep)

    def _trigger_stopping(self, msg, state) -> bool:
        """scikit-learn's rule: 'adaptive' SGD divides the step by 5 before giving up."""
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if state["lr"] <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        state["lr"] /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {state['lr']:f}")
        return False

    def _update_no_improvement_count(self, X_val, Y_val, y_val, sw_val):
        if self.early_stopping:
            # (non-finite outputs of a diverged epoch score nan, as in scikit-learn)
            P = self._forward(X_val, mode=1, finite=False)
            score = self._score_from_output(P, y_val, sw_val)
            self.validation_scores_.append(score)
            self.history_["val_score"].append(score)
            self.history_["val_loss"].append(self._data_loss(X_val, Y_val, sw_val))
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _data_loss(self, X, Y, sample_weight) -> float:
        chunk = max(1, min(X.shape[0], _CHUNK))
        n_threads = self._n_threads()
        ws = np.empty(_engine.workspace_size(self._sizes, chunk, n_threads, training=False),
                      self._params.dtype)
        return float(_engine.data_loss(*self._engine_args(), *_rows(X), Y, sample_weight,
                                       self._params, ws, X.shape[0], chunk, self._loss_scale,
                                       n_threads))

    # ---- prediction ---------------------------------------------------------------------

    def _forward(self, X, mode: int, finite: bool = True) -> np.ndarray:
        """Last-layer values for validated X: mode 0 raw, 1 outputs, 2 log-outputs;
        ``finite``: a ValueError when any is not finite (else they are returned)."""
        self._sync_params()
        out, status = _model.forward(self, self._sizes, self.activation, self.out_activation_,
                                     self.negative_slope, self._params, _rows(X), X.shape[0],
                                     mode, self._n_threads())
        if status < 0:  # NaN or inf in X (the fast path of _validate_X_predict leaves
            validate_data(self, X, reset=False)  # that scan to the engine): its error
            raise ValueError("Input X contains NaN or infinity.")
        if status > 0 and finite:
            raise ValueError(_model.OVERFLOW)
        return out

    def _workspace(self, rows: int, n_threads: int) -> np.ndarray:
        """Scratch for predicting ``rows`` rows (see _model.workspace)."""
        return _model.workspace(self, self._params.dtype, self._sizes, rows, n_threads)

    def _validate_X_predict(self, X):
        if "_params" not in self.__dict__:  # check_is_fitted's test, without its scan
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        if type(X) is list:  # a list pays its conversion, then takes the fast path
            try:
                X = np.asarray(X)
            except (ValueError, TypeError):
                pass  # ragged and the like: validate_data explains
        if type(X) is not np.ndarray or X.dtype.kind not in "biuf":
            _check_numeric(X)
        if (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype.kind in "biuf"
            and X.shape[0] > 0
            and X.shape[1] == self.n_features_in_
            and not hasattr(self, "feature_names_in_")
        ):
            # what validate_data would return; the engine checks finiteness, after the
            # conversion as scikit-learn does (a float64 beyond float32's range is inf)
            return np.ascontiguousarray(X, dtype=self._params.dtype)
        X = validate_data(self, X, reset=False, accept_sparse=["csr", "csc"],
                          dtype=self._params.dtype, order="C")
        return _as_engine_input(X, self._params.dtype)

    def _validate_Xy(self, X, y, reset, y_numeric=False):
        _check_numeric(X)
        dtype = (np.float64, np.float32) if reset else self._params.dtype
        X, y = validate_data(self, X, y, reset=reset, accept_sparse=["csr", "csc"],
                             dtype=dtype, order="C", multi_output=True, y_numeric=y_numeric)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return _as_engine_input(X, X.dtype), y

    # ---- persistence --------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` (.npz + JSON, never pickle), atomically.

        Read it back with :func:`cymlp.load` (or :func:`cymlp.inference.load`).
        """
        _model.write(path, *self._get_state())

    def _get_state(self) -> tuple[dict, np.ndarray, np.ndarray]:
        """What a model file holds: (JSON-ready metadata, flat parameters, labels)."""
        name = type(self).__name__
        if "_params" not in self.__dict__:
            raise ValueError(f"this {name} is not fitted yet; nothing to save")
        self._sync_params()
        classes = np.asarray(getattr(self, "classes_", np.zeros(0)))
        if classes.dtype == object:
            if not all(isinstance(c, str) for c in classes):
                raise ValueError("class labels must be numbers or strings to be saved")
            classes = classes.astype(str)
        meta = {
            "estimator": name,
            "params": _jsonable_params(self),
            "layer_sizes": [int(s) for s in self._sizes],
            "activation": self.activation,
            "out_activation": self.out_activation_,
            "dtype": str(self._params.dtype),
            "classes_dtype": classes.dtype.str,
            "n_classes": len(classes),
            "fitted": {k: _jsonable(getattr(self, k)) for k in _model.FITTED
                       if hasattr(self, k)},
        }
        if hasattr(self, "_label_binarizer"):
            meta["y_type"] = self._label_binarizer.y_type_
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in"] = [str(f) for f in self.feature_names_in_]
        return meta, self._params, classes

    @classmethod
    def _from_model_file(cls, path, m: _model.ModelFile):
        """The fitted estimator of a file that ``_model.read`` has checked: its
        parameters must also pass this estimator's own rules."""
        meta = m.meta
        try:
            kwargs = dict(meta["params"])
            kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
            if isinstance(kwargs.get("class_weight"), list):
                kwargs["class_weight"] = {k: v for k, v in kwargs["class_weight"]}
            est = cls(**kwargs)
            est._validate_params()
        except (KeyError, TypeError, ValueError) as e:
            raise _model.bad(path, f"bad metadata ({type(e).__name__}: {e})") from None
        sizes = m.sizes  # (read checked them against hidden_layer_sizes)
        est._set_labels(path, meta.get("y_type"), m.classes)
        est._sizes = list(sizes)
        est._params = m.params
        est._set_views()
        est.out_activation_ = meta["out_activation"]
        est.n_features_in_, est.n_outputs_, est.n_layers_ = sizes[0], sizes[-1], len(sizes)
        if "feature_names_in" in meta:
            est.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        for key, value in meta["fitted"].items():
            setattr(est, key, value)
        if est.solver in _STOCHASTIC:
            est._no_improvement_count = 0
        est._random_state = check_random_state(est.random_state)
        est._rng = None
        est._optimizer_state = None
        return est

    def _set_labels(self, path, y_type, classes) -> None:
        """A loaded classifier's labels (regressors have none)."""

    def __getstate__(self) -> dict[str, Any]:
        # coefs_ / intercepts_ are views into _params: rebuild them instead of copying
        state = self.__dict__.copy()
        if "_params" in state:
            self._sync_params()
            state["_params"] = self._params
            for key in ("coefs_", "intercepts_", "_views"):
                state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_params" in state:
            self._set_views()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu'}, default='relu'
        Hidden-layer activation; 'logistic' is the paper's sigmoid. 'leaky_relu'
        (z if z > 0 else negative_slope * z) is cymlp's addition.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'sgd' uses ``momentum``, ``nesterovs_momentum`` and ``learning_rate``; 'adam' uses
        ``beta_1``, ``beta_2``, ``epsilon``; 'lbfgs' is scipy's L-BFGS-B on the full-batch
        loss and gradient computed by cymlp's engine (``max_iter``, ``max_fun``, ``tol``).
    alpha : float, default=1e-4
        L2 penalty; the loss gets ``alpha / 2 * sum ||W||^2 / sum(sample_weight)``.
    batch_size : int or 'auto', default='auto'
        Minibatch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        SGD step schedule: constant; ``learning_rate_init / (t + 1) ** power_t`` with t
        the samples seen; or divided by 5 each time the loss stalls.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Maximum epochs (stochastic solvers) or iterations (lbfgs).
    shuffle : bool, default=True
        Reshuffle the samples every epoch (cymlp's own seeded generator).
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, the early-stopping split, shuffling and dropout.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for classifiers), stop
        when its score stalls and restore the best weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Maximum loss evaluations for lbfgs.
    init : {'glorot', 'paper'}, default='glorot'
        'glorot' is scikit-learn's initialisation (the same draws for the same
        ``random_state``); 'paper' draws weights uniformly in [-0.5, 0.5] with zero
        biases, as the paper does (§4.3.1).
    negative_slope : float, default=0.01
        Slope of 'leaky_relu' for negative inputs.
    dropout : float or sequence of float, default=0.0
        Inverted dropout on the hidden layers during training only: one rate for all,
        or one per hidden layer. Needs 'sgd' or 'adam'.
    n_jobs : int or None, default=None
        Threads for training and prediction; None uses the default (``OMP_NUM_THREADS``,
        else all cores; in OpenMP builds also threadpoolctl's limit), -1 all, -2 all but
        one. Results do not depend on it.
"""

_ATTRS_DOC = """
    Attributes
    ----------
    coefs_, intercepts_ : lists of ndarray
        Weights (n_in, n_out) and biases of each layer: views into one flat buffer.
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_,
    feature_names_in_
        As in scikit-learn.
    history_ : dict of lists
        Per epoch: 'loss' (training loss), 'seconds', and with early stopping
        'val_loss' (data loss on the validation split) and 'val_score'.
"""


def _init_signature_doc(cls):
    cls.__doc__ = cls.__doc__.replace("%(params)s", _PARAMS_DOC).replace("%(attrs)s", _ATTRS_DOC)
    return cls


@_init_signature_doc
class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by cymlp's Cython engine.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier`: the same parameters,
    defaults and fitted attributes. Multiclass problems use a softmax output with
    cross-entropy; binary and multilabel problems logistic outputs. float32 input
    trains in float32, float64 in float64 (other dtypes become float64); sparse CSR/CSC
    input is densified one batch at a time.
%(params)s
    class_weight : dict, 'balanced' or None, default=None
        Weights multiplied into ``sample_weight``: ``{label: weight}``, or 'balanced'
        (``n_samples / (n_classes * bincount(y))``; not with ``partial_fit``).
%(attrs)s
    classes_ : ndarray of shape (n_classes,)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        init="glorot",
        negative_slope=0.01,
        dropout=0.0,
        class_weight=None,
        n_jobs=None,
    ):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, init=init, negative_slope=negative_slope, dropout=dropout,
            n_jobs=n_jobs,
        )
        self.class_weight = class_weight

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
            ) -> MLPClassifier:
        """Train on X (n_samples, n_features) and labels y (n_samples,) or a label
        indicator matrix (n_samples, n_labels)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: ArrayLike | None = None) -> MLPClassifier:
        """One epoch over (X, y), continuing from the current state.

        ``classes`` (all labels that will ever appear) is required on the first call.
        """
        self._validate_params()  # (before the classes, as scikit-learn)
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, sample_weight, incremental, reset):
        X, y = self._validate_Xy(X, y, reset)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                 ensure_non_negative=True)
        if self.class_weight is not None:
            if self._label_binarizer.y_type_.startswith("multilabel"):
                raise ValueError("class_weight is not supported for multilabel targets")
            if incremental and isinstance(self.class_weight, str):
                raise ValueError(
                    "class_weight='balanced' is not supported with partial_fit: compute "
                    "the weights on the whole data (sklearn.utils.compute_class_weight) "
                    "and pass them as a dict"
                )
            cw = compute_sample_weight(self.class_weight, y)
            sample_weight = cw if sample_weight is None else sample_weight * cw
        Y = self._label_binarizer.transform(y).astype(X.dtype)
        return X, Y, sample_weight

    def _initialize(self, n_features, n_outputs, dtype):
        multiclass = self._label_binarizer.y_type_ == "multiclass"
        self.out_activation_ = "softmax" if multiclass else "logistic"
        super()._initialize(n_features, n_outputs, dtype)

    def _set_labels(self, path, y_type, classes) -> None:
        lb = LabelBinarizer()
        try:
            if y_type == "multilabel-indicator":
                lb.fit(np.vstack([np.zeros(len(classes), int), np.ones(len(classes), int)]))
            else:
                lb.fit(classes)
        except (TypeError, ValueError) as e:
            raise _model.bad(path, f"class labels: {e}") from None
        if lb.y_type_ != y_type or not np.array_equal(lb.classes_, classes):
            raise _model.bad(path, "class labels do not match the output layer")
        self._label_binarizer = lb
        self.classes_ = lb.classes_

    def _decode(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _labels_from_output(self, P):
        """``LabelBinarizer.inverse_transform`` of the outputs, without its per-call
        cost: the first argmax (softmax), or each output thresholded at 0.5 as its
        ``(pos_label + neg_label) / 2`` (logistic). A binarizer fitted on a sparse ``y``
        answers itself (its labels come back sparse)."""
        lb = self._label_binarizer
        if getattr(lb, "sparse_input_", False) or lb.y_type_ not in _model.Y_TYPES:
            return lb.inverse_transform(P.ravel() if self.n_outputs_ == 1 else P)
        return _model.labels_from_output(P, lb.y_type_, self.classes_)

    def _score_from_output(self, P, y, sample_weight):
        if not np.isfinite(P).all():
            return np.nan
        return accuracy_score(y, self._labels_from_output(P), sample_weight=sample_weight)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels: the most probable class (or each label with p > 0.5)."""
        return self._labels_from_output(self._forward(self._validate_X_predict(X), mode=1))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes); rows sum to 1 except in
        the multilabel case (one independent probability per label).

        No probability is exactly 0: values that underflow are raised to the smallest
        normal float, so that ``log(predict_proba(X))`` stays finite and agrees with
        :meth:`predict_log_proba`.
        """
        return _model.proba_from_output(self._forward(self._validate_X_predict(X), mode=1))

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log of :meth:`predict_proba`, never log(0).

        Softmax outputs: log-softmax of the logits. Logistic outputs (binary,
        multilabel): log(p) where p >= 1/2, so that saturated probabilities (p = 1.0
        beyond z ~ 37) tie here as in ``predict_proba`` and argmax agrees with it, and
        -log(1 + exp(-z)) from the logit below, exact where p underflows.
        """
        X = self._validate_X_predict(X)
        if self.out_activation_ == "softmax":
            return self._forward(X, mode=2)
        return _model.log_proba_from_logits(
            self._forward(X, mode=0), _model.proba_from_output(self._forward(X, mode=1)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


@_init_signature_doc
class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor trained by cymlp's Cython engine.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor`: identity output with
    half squared error, or exp output with half Poisson deviance; one or several
    outputs. float32 input trains in float32, float64 in float64.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'poisson' needs y >= 0 and predicts exp(z).
%(params)s
%(attrs)s
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        init="glorot",
        negative_slope=0.01,
        dropout=0.0,
        n_jobs=None,
    ):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, init=init, negative_slope=negative_slope, dropout=dropout,
            n_jobs=n_jobs,
        )
        self.loss = loss

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
            ) -> MLPRegressor:
        """Train on X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_outputs)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
                    ) -> MLPRegressor:
        """One epoch over (X, y), continuing from the current state."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, sample_weight, incremental, reset):
        X, y = self._validate_Xy(X, y, reset, y_numeric=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "loss='poisson'.")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                 ensure_non_negative=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if not reset and hasattr(self, "n_outputs_") and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs, the model was fitted with "
                             f"{self.n_outputs_}")
        return X, Y, sample_weight

    def _initialize(self, n_features, n_outputs, dtype):
        self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        super()._initialize(n_features, n_outputs, dtype)

    def _decode(self, Y):
        return Y.ravel() if self.n_outputs_ == 1 else Y

    def _score_from_output(self, P, y, sample_weight):
        if not np.isfinite(P).all():
            return np.nan
        return r2_score(y, self._decode(P), sample_weight=sample_weight)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs)."""
        return self._decode(self._forward(self._validate_X_predict(X), mode=1))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags
