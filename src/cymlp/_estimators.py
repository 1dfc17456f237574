"""scikit-learn estimators on cymlp's engine.

This is the API boundary: every input is validated here, once, and turned into
C-contiguous float32/float64 arrays (or a canonical CSR matrix) before the engine,
which trusts its inputs, runs. Names, defaults and semantics follow
``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (scikit-learn 1.9), plus
``init``, ``negative_slope``, ``dropout``, ``class_weight``, ``n_jobs`` and ``history_``.
"""

from __future__ import annotations

import itertools
import numbers
import operator
import os
import warnings
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerTags
from sklearn.callback import with_callbacks
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, compute_sample_weight
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    column_or_1d,
    validate_data,
)

from cymlp import _model
from cymlp._docs import with_shared_docs
from cymlp._model import n_params
from cymlp._optimizers import SOLVERS
from cymlp._training import DIVERGED, TrainingMixin
from cymlp._validation import (
    OWN_CONSTRAINTS,
    SHARED_CONSTRAINTS,
    as_engine_input,
    check_finite,
    check_memory,
    check_numeric,
    source,
)


def _one_hot(binarizer: LabelBinarizer, y, dtype) -> np.ndarray:
    """``binarizer.transform(y).astype(dtype)``: for multiclass labels (every one of
    which is in ``binarizer.classes_``) a one-hot array written directly, in a fifth of
    the time of scikit-learn's sparse route (MNIST's 60,000 labels: ~0.6 vs 3 ms)."""
    classes = binarizer.classes_
    if (binarizer.y_type_ == "multiclass" and not binarizer.sparse_output
            and binarizer.neg_label == 0 and binarizer.pos_label == 1 and y.ndim == 1):
        idx = np.searchsorted(classes, y)
        if idx.size and idx.max() < len(classes) and np.array_equal(classes[idx], y):
            Y = np.zeros((len(y), len(classes)), dtype)
            Y[np.arange(len(y)), idx] = 1
            return Y
    return binarizer.transform(y).astype(dtype)


class _BaseMLP(TrainingMixin, BaseEstimator):
    """Shared fit loop of cymlp's multilayer perceptrons (not for direct use)."""

    _parameter_constraints: ClassVar[dict] = {**SHARED_CONSTRAINTS, **OWN_CONSTRAINTS}

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
        weight_decay=None,
        warmup_fraction=0.0,
        scoring=None,
        max_grad_norm=None,
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
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.scoring = scoring
        self.max_grad_norm = max_grad_norm
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
            raise ValueError(f"dropout needs a stochastic solver ({', '.join(SOLVERS)}), "
                             "not lbfgs")

    def _n_threads(self) -> int:
        return _model.n_threads(self.n_jobs)

    def _check_solver(self):
        if self.solver not in SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is "
                "not stochastic."
            )
        return True

    # ---- parameters ---------------------------------------------------------------------

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
        check_memory([n_features, *hidden, n_outputs], np.dtype(dtype).itemsize,
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
        self._optimizer = None
        for attr in ("loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_", "history_", "_no_improvement_count",
                     "_best_params"):
            self.__dict__.pop(attr, None)
        if self.solver in SOLVERS:
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

    # ---- training -----------------------------------------------------------------------

    @with_callbacks
    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._validate_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y, sample_weight = self._validate_input(X, y, sample_weight, incremental,
                                                   reset=first_pass)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], Y.shape[1], X.dtype)
        elif X.dtype != self._params.dtype:
            X = as_engine_input(X, self._params.dtype)
        Y = np.ascontiguousarray(Y, dtype=self._params.dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=self._params.dtype)
        self._sync_params()
        if not self._params.flags.writeable:  # e.g. a model loaded from a read-only memmap
            self._params = self._params.copy()
            self._set_views()
        stochastic = self.solver in SOLVERS
        callbacks = self._callback_context(
            (1 if incremental else self.max_iter) if stochastic else 0)
        meta = {"sample_weight": sample_weight} if sample_weight is not None else None
        callbacks.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=meta)
        if stochastic:
            self._fit_stochastic(X, Y, sample_weight, incremental, callbacks)
        else:
            self._fit_lbfgs(X, Y, sample_weight)
        if not np.isfinite(self._params).all():
            raise ValueError(DIVERGED)
        callbacks.call_on_fit_task_end(estimator=self, X=X, y=y, metadata=meta,
                                       reconstruction_attributes=self._reconstruction_attributes)
        return self

    # ---- prediction ---------------------------------------------------------------------

    def _forward(self, X, mode: int, finite: bool = True, sizes=None) -> np.ndarray:
        """Last-layer values for validated X: mode 0 raw, 1 outputs, 2 log-outputs, 3 the
        activations of the last of ``sizes`` (the layers up to a hidden one; default
        all); ``finite``: a ValueError when any is not finite (else they are returned)."""
        self._sync_params()
        sizes = self._sizes if sizes is None else sizes
        out, status = _model.forward(sizes, self.activation, self.out_activation_,
                                     self.negative_slope, self._params[:n_params(sizes)],
                                     source(X), X.shape[0], mode, self._n_threads())
        if status < 0:  # NaN or inf in X (the fast path of _validate_X_predict leaves
            validate_data(self, X, reset=False)  # that scan to the engine): its error
            raise ValueError("Input X contains NaN or infinity.")
        if status > 0 and finite:
            raise ValueError(_model.OVERFLOW)
        return out

    def transform(self, X: ArrayLike, layer: int = -1) -> np.ndarray:
        """The activations of hidden layer ``layer`` for X, shape (n_samples, width): the
        network as a feature extractor, e.g. inside a Pipeline (scikit-learn #8291).

        ``layer`` counts the hidden layers from 0; negative values count back from the
        last (the default, -1). Dropout is off, as in ``predict``.
        """
        X = self._validate_X_predict(X)
        n_hidden = len(self._sizes) - 2
        if (not isinstance(layer, numbers.Integral) or isinstance(layer, bool)
                or not -n_hidden <= layer < n_hidden):
            raise ValueError(f"layer must be an integer in [{-n_hidden}, {n_hidden - 1}] "
                             f"(this network has {n_hidden} hidden layers), got {layer!r}")
        return self._forward(X, mode=3, sizes=self._sizes[:int(layer) % n_hidden + 2])

    def fit_transform(self, X: ArrayLike, y: ArrayLike, **fit_params) -> np.ndarray:
        """``fit(X, y, **fit_params)``, then the last hidden layer's activations for X."""
        return self.fit(X, y, **fit_params).transform(X)

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
            check_numeric(X)
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
        return as_engine_input(X, self._params.dtype)

    def _validate_Xy(self, X, y, reset, y_numeric=False):
        check_numeric(X)
        dtype = (np.float64, np.float32) if reset else self._params.dtype
        X, y = validate_data(self, X, y, reset=reset, accept_sparse=["csr", "csc"],
                             dtype=dtype, order="C", multi_output=True, y_numeric=y_numeric,
                             ensure_all_finite=False)
        check_finite(X, self, self._n_threads())  # (on the fit's threads)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return as_engine_input(X, X.dtype), y

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
            "params": _model.jsonable_params(self._saved_params()),
            "layer_sizes": [int(s) for s in self._sizes],
            "activation": self.activation,
            "out_activation": self.out_activation_,
            "dtype": str(self._params.dtype),
            "classes_dtype": classes.dtype.str,
            "n_classes": len(classes),
            "fitted": {k: _model.jsonable(getattr(self, k)) for k in _model.FITTED
                       if hasattr(self, k)},
        }
        if hasattr(self, "_label_binarizer"):
            meta["y_type"] = self._label_binarizer.y_type_
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in"] = [str(f) for f in self.feature_names_in_]
        return meta, self._params, classes

    def _saved_params(self) -> dict:
        """get_params() for a model file: a callable ``scoring`` (code, not data) is
        stored as None, with a warning; the model predicts the same either way."""
        params = self.get_params(deep=False)
        if callable(params.get("scoring")):
            warnings.warn("scoring is a callable, which a model file cannot hold: the "
                          "file stores scoring=None (predictions are unaffected; set it "
                          "again before training the loaded model further)", stacklevel=3)
            params["scoring"] = None
        return params

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
        if est.solver in SOLVERS:
            est._no_improvement_count = 0
        est._random_state = check_random_state(est.random_state)
        est._rng = None
        est._optimizer = None
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
        # transform() makes it a transformer too (hidden-layer features): scikit-learn's
        # transformer checks run on it
        tags.transformer_tags = TransformerTags()
        return tags


@with_shared_docs
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
    label_smoothing : float in [0, 1), default=0.0
        The training target mixes the one-hot label with the uniform distribution over
        the classes, ``(1 - label_smoothing) * y + label_smoothing / n_classes`` (as
        PyTorch's ``CrossEntropyLoss(label_smoothing=...)``); for logistic outputs
        (binary, multilabel) each output's equivalent, ``... + label_smoothing / 2``.
        The training loss is the smoothed one; validation scores and losses use the
        labels as they are.
%(attrs)s
    classes_ : ndarray of shape (n_classes,)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
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
        weight_decay=None,
        warmup_fraction=0.0,
        scoring=None,
        max_grad_norm=None,
        class_weight=None,
        label_smoothing=0.0,
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
            weight_decay=weight_decay, warmup_fraction=warmup_fraction, scoring=scoring,
            max_grad_norm=max_grad_norm, n_jobs=n_jobs,
        )
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

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
        Y = _one_hot(self._label_binarizer, y, X.dtype)
        return X, Y, sample_weight

    def _training_targets(self, Y):
        """Y with label smoothing: softmax rows towards 1/n_classes, each logistic
        output towards 1/2."""
        eps = float(self.label_smoothing)
        if eps == 0:
            return Y
        k = Y.shape[1] if self.out_activation_ == "softmax" else 2
        return np.ascontiguousarray((1 - eps) * Y + eps / k, dtype=Y.dtype)

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


@with_shared_docs
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
        weight_decay=None,
        warmup_fraction=0.0,
        scoring=None,
        max_grad_norm=None,
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
            weight_decay=weight_decay, warmup_fraction=warmup_fraction, scoring=scoring,
            max_grad_norm=max_grad_norm, n_jobs=n_jobs,
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
