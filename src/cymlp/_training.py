"""The fit loops of cymlp's estimators: L-BFGS on the full-batch loss, and epochs of a
stochastic solver (``_optimizers``) with curves, early stopping and Ctrl-C handling.

``TrainingMixin`` is mixed into the estimators' base class; it runs on validated,
engine-ready arrays (``_validation``) and an ``_engine.Engine`` set up once per fit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings

import numpy as np
import scipy.optimize
from sklearn.base import is_classifier
from sklearn.callback import CallbackSupportMixin  # (scikit-learn >= 1.9)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import train_test_split
from sklearn.utils.optimize import _check_optimize_result

from cymlp import _engine
from cymlp._model import ACTIVATIONS, CHUNK, OUTPUT_ACTIVATIONS, layer_views
from cymlp._optimizers import SOLVERS
from cymlp._validation import as_engine_input, source


class _NoCallbacks:
    """The callback context of a fit without callbacks: every hook does nothing."""

    def subcontext(self, **kw):
        return self

    def call_on_fit_task_begin(self, **kw):
        return self

    def call_on_fit_task_end(self, **kw):
        return False


DIVERGED = ("Solver produced non-finite parameter weights. The input data may contain "
            "large values and need to be preprocessed.")


@contextlib.contextmanager
def sigint_held():
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


class TrainingMixin(CallbackSupportMixin):
    """The fit loops (see the module docstring); the estimator provides the network
    (``_sizes``, ``_params``, ``out_activation_``) and its scoring (``_forward``,
    ``_score_from_output``, ``_decode``).

    scikit-learn's callbacks (``set_callbacks``): a fit is one task with one subtask per
    epoch ("epoch"; L-BFGS has none), each with ``X``, ``y`` (the labels),
    ``metadata`` (``sample_weight``) and a ``fitted_estimator`` that predicts with the
    weights of that moment. A callback's ``on_fit_task_end`` returning True stops the
    fit after that epoch.
    """

    def _callback_context(self, max_subtasks: int):
        """The fit's root callback context, or one that does nothing when no callback
        is set (so that a fit without callbacks pays nothing per epoch)."""
        if not getattr(self, "_skl_callbacks", None) or not hasattr(
                self, "_init_callback_context"):
            return _NoCallbacks()
        return self._init_callback_context(max_subtasks=max_subtasks)

    def _reconstruction_attributes(self) -> dict:
        """What a copy of this estimator needs to stand alone as this moment's model:
        its own weights and curves, and no optimizer or generator shared with the fit
        (a callback that trains the copy further must not move this fit)."""
        params = self._params.copy()
        coefs, intercepts = layer_views(params, self._sizes)
        attrs = {"_params": params, "coefs_": coefs, "intercepts_": intercepts,
                 "_views": (*coefs, *intercepts), "_optimizer": None, "_rng": None}
        for name in ("loss_curve_", "validation_scores_"):
            if isinstance(getattr(self, name, None), list):
                attrs[name] = list(getattr(self, name))
        if isinstance(getattr(self, "history_", None), dict):
            attrs["history_"] = {k: list(v) for k, v in self.history_.items()}
        return attrs

    def _engine(self, rows: int, training: bool = False, dropout=None) -> _engine.Engine:
        """An engine for this network, for batches of up to ``rows`` rows."""
        return _engine.Engine(self._sizes, ACTIVATIONS[self.activation],
                              OUTPUT_ACTIVATIONS[self.out_activation_],
                              float(self.negative_slope), dropout, rows, self._n_threads(),
                              self._params.dtype, training)

    @property
    def _loss_scale(self) -> float:
        # scikit-learn averages the half squared error over the outputs too
        if self.out_activation_ == "identity":
            return 1.0 / self.n_outputs_
        return 1.0

    def _training_targets(self, Y):
        """The targets the loss is taken against (a classifier smooths its labels)."""
        return Y

    def _fit_lbfgs(self, X, Y, sample_weight):
        Y = self._training_targets(Y)
        engine = self._engine(max(1, min(X.shape[0], 4 * CHUNK)))
        grads = np.empty_like(self._params)
        rows = source(X)

        def loss_grad(x):
            self._params[...] = x
            loss = engine.loss_and_grad(rows, Y, sample_weight, self._params, grads,
                                        float(self.alpha), self._loss_scale)
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
            raise ValueError(DIVERGED)
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

    def _validation_split(self, X, Y, sample_weight):
        """scikit-learn's early-stopping split: (X, Y, sample_weight) to train on and
        (X_val, Y_val, y_val, sw_val) to score."""
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
        X, X_val, Y, Y_val = (as_engine_input(a, self._params.dtype) for a in split[:4])
        sw_val = None
        if sample_weight is not None:
            sample_weight, sw_val = (np.ascontiguousarray(a) for a in split[4:])
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return (X, Y, sample_weight), (X_val, Y_val, self._decode(Y_val), sw_val)

    def _fit_stochastic(self, X, Y, sample_weight, incremental, callbacks):
        if not incremental or self._optimizer is None:
            self._optimizer = SOLVERS[self.solver](self._params, self)
        opt = self._optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("validation_fraction=0.0 leaves no validation split for "
                             "early_stopping=True; use a fraction in (0, 1)")
        validation = (None, None, None, None)
        if self.early_stopping and "_best_params" not in self.__dict__:
            # as scikit-learn's _best_coefs: what the fit ends with if no epoch scores
            self._best_params = self._params.copy()
        if self.early_stopping:
            (X, Y, sample_weight), validation = self._validation_split(X, Y, sample_weight)
        labels = (lambda Y=Y: self._decode(Y)) if is_classifier(self) else Y  # (callbacks)
        Y = self._training_targets(Y)
        if self._rng is None:
            self._rng = np.array([self._random_state.randint(0, 2**31 - 1)], dtype=np.uint64)
        n = X.shape[0]
        batch_size = self._batch_size(n)
        opt.plan(self.max_iter, -(-n // batch_size))
        engine = self._engine(batch_size, True, self._dropout_rates())
        grads = np.empty_like(self._params)
        rows = source(X)
        # what the callbacks get, lazily (a callable is called only when a callback asks)
        meta = {"sample_weight": sample_weight} if sample_weight is not None else None
        attrs = self._reconstruction_attributes
        self.n_iter_ = 0  # as scikit-learn: epochs of this call
        # the state of the last completed epoch: what an interrupt (or, without early
        # stopping, a diverging epoch) puts back. _end_epoch updates it in the same step
        # as the epoch's bookkeeping, so the two always agree.
        saved = [a.copy() for a in self._snapshot()]
        try:
            for _ in range(self.max_iter):
                epoch = callbacks.subcontext(task_name="epoch")
                epoch.call_on_fit_task_begin(estimator=self, X=X, y=labels, metadata=meta,
                                             reconstruction_attributes=attrs)
                start = time.perf_counter()
                loss, n_batches, hits = engine.train_epoch(
                    rows, Y, sample_weight, self._params, grads, opt, bool(self.shuffle),
                    self._rng, float(self.alpha), self._loss_scale)
                # An interrupt up to here drops the epoch (the except clause restores
                # `saved`); from here on it is held until the epoch is recorded whole.
                with sigint_held():
                    stop = self._end_epoch(loss, n_batches, hits, n,
                                           time.perf_counter() - start, saved, validation)
                stop |= epoch.call_on_fit_task_end(estimator=self, X=X, y=labels,
                                                   metadata=meta,
                                                   reconstruction_attributes=attrs)
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
            self._restore(saved)
            if self.early_stopping:  # as at the end of a fit: the best weights so far
                self._params[...] = self._best_params
            what = "best validation score" if self.early_stopping else "last completed epoch"
            warnings.warn(f"Training interrupted by user; the model keeps the weights of "
                          f"the {what}.", stacklevel=4)
            raise
        if self.early_stopping:
            self._params[...] = self._best_params

    def _snapshot(self) -> tuple:
        """What the fit puts back after an interrupt: weights, optimizer state, generator."""
        return (self._params, *self._optimizer.arrays, self._rng)

    def _end_epoch(self, loss, n_batches, hits, n, seconds, saved, validation) -> bool:
        """Everything that records a finished epoch, as one step (run under sigint_held):
        the divergence check, counters, curves, validation score, learning-rate schedule,
        stopping rule, and last the snapshot `saved` of the epoch's parameters, optimizer
        state and generator. Returns True to stop training."""
        opt = self._optimizer
        if not (np.isfinite(loss) and np.isfinite(self._params).all()):
            if not self.early_stopping:
                self._restore(saved)
                raise ValueError(
                    DIVERGED + " (cymlp kept the weights of the last finite epoch; a "
                    "smaller learning_rate_init may help.)"
                )
            # with early stopping, scikit-learn (>= 1.6, #29504) carries on: the epoch
            # scores nan, and the fit ends with the best weights it saw
        opt.step += n_batches
        self.n_iter_ += 1
        self.loss_ = float(loss)
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        self.history_["loss"].append(self.loss_)
        self.history_["seconds"].append(seconds)
        if hits is not None:  # a classifier (model files saved before had no such curve)
            self.history_.setdefault("accuracy", []).append(hits / n)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(*validation)
        opt.end_epoch(self.t_)
        stop = False
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            stop = opt.on_plateau(msg, self.verbose)
            if not stop:
                self._no_improvement_count = 0
        for keep, current in zip(saved, self._snapshot()):
            np.copyto(keep, current)
        return stop

    def _restore(self, saved) -> None:
        for keep, current in zip(saved, self._snapshot()):
            np.copyto(current, keep)

    def _update_no_improvement_count(self, X_val, Y_val, y_val, sw_val):
        if self.early_stopping:
            # (non-finite outputs of a diverged epoch score nan, as in scikit-learn)
            P = self._forward(X_val, mode=1, finite=False)
            if self.scoring is None or not np.isfinite(P).all():
                score = self._score_from_output(P, y_val, sw_val)
            else:  # any scorer, on the estimator as it stands (scikit-learn #24411)
                kw = {"sample_weight": sw_val} if sw_val is not None else {}
                with warnings.catch_warnings():  # (X_val is the split of X's array: a
                    warnings.filterwarnings(     # fit on a DataFrame would warn each epoch)
                        "ignore", message="X does not have valid feature names")
                    score = float(check_scoring(self, self.scoring)(self, X_val, y_val, **kw))
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
        engine = self._engine(max(1, min(X.shape[0], CHUNK)))
        return float(engine.data_loss(source(X), Y, sample_weight, self._params,
                                      self._loss_scale))
