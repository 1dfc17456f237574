"""scikit-learn estimators on cymlp's engine.

This is the API boundary: every input is validated here, once, and turned into
C-contiguous float32/float64 arrays before the engine (which trusts its inputs) runs.
Names, defaults and semantics follow ``sklearn.neural_network.MLPClassifier``.
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from cymlp import _engine, _kernels

# One table for activations: name -> engine code (see _kernels.pxd). The derivative of
# each lives beside its forward in _kernels.activation_backward.
ACTIVATIONS = {"identity": 0, "logistic": 1, "tanh": 2, "relu": 3, "leaky_relu": 4}
SOFTMAX = 5
_SOLVERS = {"sgd": 0, "adam": 1}
_PREDICT_CHUNK = 1024  # rows per forward pass at predict time


def n_params(sizes) -> int:
    """Length of the flat parameter buffer for layer widths ``sizes`` (weights + biases)."""
    return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))


class _BaseMLP(BaseEstimator):
    """Shared fit loop of cymlp's multilayer perceptrons (not for direct use)."""

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
        self.n_jobs = n_jobs

    # ---- validation -------------------------------------------------------------------

    def _hidden_sizes(self) -> list[int]:
        hls = self.hidden_layer_sizes
        if isinstance(hls, numbers.Integral):
            hls = [hls]
        try:
            sizes = list(hls)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes must be an int or a sequence of ints, got {hls!r}"
            ) from None
        for s in sizes:
            if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1:
                raise ValueError(f"hidden_layer_sizes must contain only ints >= 1, got {hls!r}")
        return [int(s) for s in sizes]

    def _validate_params(self) -> None:
        def check(name, ok, expected):
            if not ok:
                raise ValueError(
                    f"The '{name}' parameter of {type(self).__name__} must be {expected}. "
                    f"Got {getattr(self, name)!r} instead."
                )

        def real(name, low, high=np.inf, low_open=False, high_open=False):
            v = getattr(self, name)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
            if ok:
                ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
            lo, hi = "(" if low_open else "[", ")" if high_open or high == np.inf else "]"
            check(name, ok, f"a float in the range {lo}{low}, {high}{hi}")

        def integer(name, low):
            v = getattr(self, name)
            ok = isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low
            check(name, ok, f"an int in the range [{low}, inf)")

        def option(name, options):
            check(name, getattr(self, name) in options, f"one of {sorted(options)}")

        self._hidden_sizes()
        option("activation", set(ACTIVATIONS))
        option("solver", {"sgd", "adam", "lbfgs"})
        real("alpha", 0.0)
        bs = self.batch_size
        check(
            "batch_size",
            bs == "auto" or (isinstance(bs, numbers.Integral) and not isinstance(bs, bool)),
            "'auto' or an int",
        )
        option("learning_rate", {"constant", "invscaling", "adaptive"})
        real("learning_rate_init", 0.0, low_open=True)
        real("power_t", 0.0)
        integer("max_iter", 1)
        option("shuffle", {True, False})
        check("verbose", isinstance(self.verbose, numbers.Integral) and self.verbose >= 0,
              "a bool or an int >= 0")
        option("warm_start", {True, False})
        real("momentum", 0.0, 1.0)
        option("nesterovs_momentum", {True, False})
        option("early_stopping", {True, False})
        real("validation_fraction", 0.0, 1.0, low_open=True, high_open=True)
        real("beta_1", 0.0, 1.0, high_open=True)
        real("beta_2", 0.0, 1.0, high_open=True)
        real("epsilon", 0.0, low_open=True)
        real("tol", 0.0)
        integer("n_iter_no_change", 1)
        integer("max_fun", 1)
        option("init", {"glorot", "paper"})
        real("negative_slope", 0.0)
        nj = self.n_jobs
        check(
            "n_jobs",
            nj is None
            or (isinstance(nj, numbers.Integral) and not isinstance(nj, bool) and nj != 0),
            "None or a non-zero int",
        )
        # Features of scikit-learn's MLP that later versions of cymlp will add.
        for name, value, default in (
            ("solver", self.solver, "adam' or 'sgd"),
            ("learning_rate", self.learning_rate, "constant"),
            ("early_stopping", self.early_stopping, False),
        ):
            supported = value in ("adam", "sgd") if name == "solver" else value == default
            if not supported:
                raise NotImplementedError(
                    f"{name}={value!r} is not supported by cymlp yet; use {name}='{default}'"
                    if name != "early_stopping"
                    else "early_stopping=True is not supported by cymlp yet"
                )

    def _n_threads(self) -> int:
        max_threads = _kernels.max_threads()
        if self.n_jobs is None:
            return max_threads
        if self.n_jobs < 0:
            return max(1, max_threads + 1 + self.n_jobs)
        return int(self.n_jobs)

    # ---- parameters ---------------------------------------------------------------------

    def _engine_args(self) -> tuple:
        return (
            self._sizes,
            ACTIVATIONS[self.activation],
            self._out_code,
            float(self.negative_slope),
        )

    def _set_views(self) -> None:
        """coefs_ / intercepts_ as views into the flat parameter buffer."""
        p, off = self._params, 0
        self.coefs_, self.intercepts_ = [], []
        for n_in, n_out in zip(self._sizes[:-1], self._sizes[1:]):
            self.coefs_.append(p[off : off + n_in * n_out].reshape(n_in, n_out))
            off += n_in * n_out
            self.intercepts_.append(p[off : off + n_out])
            off += n_out

    def _sync_params(self) -> None:
        """Re-pack coefs_ / intercepts_ if the user replaced them (rather than edited them)."""
        base = self._params.ctypes.data
        item = self._params.itemsize
        off = 0
        for c, b in zip(self.coefs_, self.intercepts_):
            if c.ctypes.data != base + off * item or not c.flags.c_contiguous:
                break
            off += c.size
            if b.ctypes.data != base + off * item:
                break
            off += b.size
        else:
            if len(self.coefs_) == len(self._sizes) - 1:
                return
        shapes = list(zip(self._sizes[:-1], self._sizes[1:]))
        if len(self.coefs_) != len(shapes) or len(self.intercepts_) != len(shapes) or any(
            np.shape(c) != s or np.shape(b) != (s[1],)
            for c, b, s in zip(self.coefs_, self.intercepts_, shapes)
        ):
            raise ValueError("coefs_ / intercepts_ do not match the network's layer sizes")
        parts = []
        for c, b in zip(self.coefs_, self.intercepts_):
            parts += [np.ravel(c), np.ravel(b)]
        self._params = np.concatenate(parts).astype(self._params.dtype)
        self._set_views()

    def _initialize(self, n_features: int, n_outputs: int, dtype) -> None:
        hidden = self._hidden_sizes()
        self._sizes = [n_features, *hidden, n_outputs]
        self.n_features_in_ = n_features
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(self._sizes)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self._no_improvement_count = 0
        self._random_state = check_random_state(self.random_state)
        parts = []
        for fan_in, fan_out in zip(self._sizes[:-1], self._sizes[1:]):
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
        self._rng = np.array([self._random_state.randint(0, 2**31 - 1)], dtype=np.uint64)
        self._optimizer_state = None

    def _new_optimizer_state(self):
        zeros = np.zeros_like(self._params)
        if self.solver == "adam":
            return {"m": zeros, "v": np.zeros_like(self._params), "step": 0}
        return {"m": zeros, "v": zeros, "step": 0}

    # ---- training -----------------------------------------------------------------------

    def _fit(self, X, Y, incremental: bool):
        """Minibatch training on validated X (n, n_features) and float targets Y (n, n_outputs)."""
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size < 1 or self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. "
                    "It is going to be clipped",
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n))
        if not incremental or self._optimizer_state is None:
            self._optimizer_state = self._new_optimizer_state()
        state = self._optimizer_state
        n_threads = self._n_threads()
        ws = np.empty(_engine.workspace_size(self._sizes, batch_size, n_threads), X.dtype)
        grads = np.empty_like(self._params)
        self._sync_params()
        self.n_iter_ = 0  # as scikit-learn: epochs of this call
        for _ in range(self.max_iter):
            loss, n_batches = _engine.train_epoch(
                *self._engine_args(),
                X,
                Y,
                self._params,
                grads,
                ws,
                batch_size,
                bool(self.shuffle),
                self._rng,
                _SOLVERS[self.solver],
                float(self.learning_rate_init),
                float(self.momentum),
                bool(self.nesterovs_momentum),
                state["m"],
                state["v"],
                float(self.beta_1),
                float(self.beta_2),
                float(self.epsilon),
                state["step"],
                float(self.alpha),
                n_threads,
            )
            state["step"] += n_batches
            self.n_iter_ += 1
            self.loss_ = float(loss)
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if self.loss_ > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_ < self.best_loss_:
                self.best_loss_ = self.loss_
            if self._no_improvement_count > self.n_iter_no_change:
                if self.verbose:
                    print(
                        f"Training loss did not improve more than tol={self.tol:f} for "
                        f"{self.n_iter_no_change} consecutive epochs. Stopping."
                    )
                break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        return self

    def _forward(self, X, mode: int) -> np.ndarray:
        """Last-layer values for validated X: mode 0 logits, 1 outputs, 2 log-outputs."""
        self._sync_params()
        out = np.empty((X.shape[0], self.n_outputs_), dtype=self._params.dtype)
        if X.shape[0] == 0:
            return out
        chunk = min(X.shape[0], _PREDICT_CHUNK)
        n_threads = self._n_threads()
        ws = np.empty(_engine.workspace_size(self._sizes, chunk, n_threads), self._params.dtype)
        _engine.forward(*self._engine_args(), X, self._params, out, ws, chunk, mode, n_threads)
        return out

    def _validate_X_predict(self, X):
        check_is_fitted(self, "_params")
        return validate_data(
            self, X, reset=False, dtype=self._params.dtype, order="C", ensure_2d=True
        )

    def save(self, path) -> None:
        """Write the fitted model to ``path`` (.npz + JSON, never pickle), atomically.

        Read it back with :func:`cymlp.load`.
        """
        from cymlp.io import save

        save(self, path)

    def __getstate__(self) -> dict[str, Any]:
        # coefs_ / intercepts_ are views into _params: rebuild them instead of copying
        state = self.__dict__.copy()
        if "_params" in state:
            self._sync_params()
            state["_params"] = self._params
            state.pop("coefs_", None)
            state.pop("intercepts_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_params" in state:
            self._set_views()


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by cymlp's Cython engine.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier`: the same parameters,
    defaults and fitted attributes where they overlap. Multiclass problems use a softmax
    output with cross-entropy, binary problems one logistic output. float32 input trains
    in float32, float64 in float64 (other dtypes become float64).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu'}, default='relu'
        Hidden-layer activation; 'logistic' is the paper's sigmoid.
    solver : {'adam', 'sgd'}, default='adam'
        'sgd' uses ``momentum`` and ``nesterovs_momentum``; 'adam' uses ``beta_1``,
        ``beta_2``, ``epsilon``. ('lbfgs' is not supported yet.)
    alpha : float, default=1e-4
        L2 penalty; the loss gets ``alpha / 2 * sum ||W||^2 / batch_size``.
    batch_size : int or 'auto', default='auto'
        Minibatch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant'}, default='constant'
        Only a constant step size is supported yet.
    learning_rate_init : float, default=1e-3
        Step size.
    power_t : float, default=0.5
        Accepted for compatibility; used by 'invscaling' (not supported yet).
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Reshuffle the samples every epoch (cymlp's own seeded generator).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and shuffling.
    tol : float, default=1e-4
        Training stops when the loss has not improved by ``tol`` for
        ``n_iter_no_change`` consecutive epochs.
    verbose : bool, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        Continue from the current weights on ``fit``.
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with SGD.
    early_stopping : bool, default=False
        Not supported yet (must be False).
    validation_fraction : float, default=0.1
        Accepted for compatibility; used with ``early_stopping``.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
        See ``tol``.
    max_fun : int, default=15000
        Accepted for compatibility; used by 'lbfgs'.
    init : {'glorot', 'paper'}, default='glorot'
        'glorot' is scikit-learn's initialisation (the same draws for the same
        ``random_state``); 'paper' draws weights uniformly in [-0.5, 0.5] with zero
        biases, as the paper (§4.3.1).
    negative_slope : float, default=0.01
        Slope of 'leaky_relu' for negative inputs.
    n_jobs : int or None, default=None
        Threads for training and prediction; None uses OpenMP's default (all cores,
        or ``OMP_NUM_THREADS`` / threadpoolctl's limit), -1 all, -2 all but one.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray, ``coefs_[i]`` of shape (n_units[i], n_units[i + 1])
    intercepts_ : list of ndarray, ``intercepts_[i]`` of shape (n_units[i + 1],)
    loss_ : float, loss_curve_ : list of float, best_loss_ : float
    n_iter_ : int, t_ : int, n_features_in_ : int, feature_names_in_ : ndarray
    n_layers_ : int, n_outputs_ : int, out_activation_ : str

    Examples
    --------
    >>> from cymlp import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(100,), activation="logistic",
    ...                     solver="sgd", learning_rate_init=0.1, momentum=0.0,
    ...                     alpha=0.0, init="paper").fit(X_train, y_train)  # doctest: +SKIP
    >>> clf.predict(X_test[:3])  # doctest: +SKIP
    """

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and class labels y (n_samples,)."""
        self._validate_params()
        first = not hasattr(self, "_params") or not self.warm_start
        X, Y = self._prepare(X, y, reset=first, classes=None)
        if first or X.shape[1] != self.n_features_in_:
            self._initialize(X.shape[1], Y.shape[1], X.dtype)
        return self._fit(X, Y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing from the current state.

        ``classes`` (all labels that will ever appear) is required on the first call.
        """
        self._validate_params()
        first = not hasattr(self, "_params")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not first and classes is not None and not np.array_equal(
            self.classes_, np.unique(classes)
        ):
            raise ValueError(
                f"`classes={np.unique(classes)!r}` is not the same as on the first call to "
                f"partial_fit, which was: {self.classes_!r}"
            )
        X, Y = self._prepare(X, y, reset=first, classes=classes if first else None)
        if first:
            self._initialize(X.shape[1], Y.shape[1], X.dtype)
        return self._fit(X, Y, incremental=True)

    def _prepare(self, X, y, reset: bool, classes):
        dtype = (np.float64, np.float32) if reset else self._params.dtype
        X, y = validate_data(self, X, y, reset=reset, dtype=dtype, order="C", multi_output=True)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"MLPClassifier supports binary and multiclass targets (1-d labels); got "
                f"{kind!r} targets"
            )
        y = column_or_1d(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else classes)
            if classes is None and len(self.classes_) < 2:
                raise ValueError(
                    f"MLPClassifier needs samples of at least 2 classes; got only class "
                    f"{self.classes_[0]!r}"
                )
            n_classes = len(self.classes_)
            self.out_activation_ = "softmax" if n_classes > 2 else "logistic"
            self._out_code = SOFTMAX if n_classes > 2 else ACTIVATIONS["logistic"]
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"y contains labels not in classes_: {unseen[:10]!r}")
        idx = np.searchsorted(self.classes_, y)
        if len(self.classes_) > 2:
            Y = np.zeros((len(y), len(self.classes_)), dtype=X.dtype)
            Y[np.arange(len(y)), idx] = 1
        else:
            Y = (idx == 1).astype(X.dtype).reshape(-1, 1)
        return X, Y

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes); each row sums to 1."""
        X = self._validate_X_predict(X)
        p = self._forward(X, mode=1)
        if self.out_activation_ == "logistic":
            p = np.hstack([1 - p, p])
        return p

    def predict_log_proba(self, X):
        """Log of the class probabilities, computed from the logits (no log(0))."""
        X = self._validate_X_predict(X)
        if self.out_activation_ == "logistic":
            z = self._forward(X, mode=0)
            return np.hstack([-np.logaddexp(0, z), -np.logaddexp(0, -z)])
        return self._forward(X, mode=2)

    def predict(self, X):
        """Most probable class label for each row of X."""
        X = self._validate_X_predict(X)
        z = self._forward(X, mode=0)
        if self.out_activation_ == "logistic":
            idx = (z[:, 0] > 0).astype(np.intp)  # p > 0.5  <=>  logit > 0
        else:
            idx = np.argmax(z, axis=1)  # softmax is monotone in the logits
        return self.classes_[idx]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
