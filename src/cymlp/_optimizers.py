"""The stochastic solvers, one class each: hyperparameters, state, learning-rate schedule.

The step itself is native: ``kind`` names it in ``_optim.pxd`` (``optimizer_step``) and
``_native/_optim.h``, and the engine reads the attributes below once per epoch. The
state vectors ``m`` and ``v`` have the parameters' shape and layout (one flat buffer).

``SOLVERS`` is the one list of solver names: its stochastic solvers plus ``"lbfgs"``
(scipy's L-BFGS-B on the full-batch loss, in ``_training``); ``SCHEDULES`` the one list
of ``learning_rate`` values.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Optimizer:
    """Base of the stochastic solvers: ``lr`` (the current learning rate), ``step``
    (updates made so far, which Adam's bias correction counts), state ``m`` / ``v``."""

    kind: ClassVar[int]
    # what the engine reads; a solver sets the ones its step uses
    momentum = 0.0
    nesterov = False
    beta_1 = beta_2 = epsilon = 0.0
    weight_decay = 0.0

    def __init__(self, params: np.ndarray, est) -> None:
        self.lr = float(est.learning_rate_init)
        self.step = 0
        self.m = np.zeros_like(params)
        self.v = self.m
        # a per-step schedule, for every solver (the engine computes each step's rate)
        self.schedule_code = STEP_SCHEDULES.get(est.learning_rate, 0)
        self.warmup_fraction = float(est.warmup_fraction)
        self.total_steps = self.warmup_steps = 0.0
        # clip each step's whole gradient to this L2 norm (0: off)
        self.max_grad_norm = float(est.max_grad_norm or 0.0)

    def plan(self, max_iter: int, batches_per_epoch: int) -> None:
        """The run a per-step schedule spans: max_iter epochs of that many updates."""
        if self.total_steps == 0:  # (partial_fit: planned on the first call)
            self.total_steps = float(max_iter * batches_per_epoch)
            self.warmup_steps = float(round(self.warmup_fraction * self.total_steps))

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The state vectors, for the fit loop's snapshot of the last completed epoch."""
        return self.m, self.v

    def end_epoch(self, t: int) -> None:
        """The schedule's per-epoch update, after ``t`` samples seen in all."""

    def on_plateau(self, msg: str, verbose: bool) -> bool:
        """The loss or score stopped improving: True to stop training (the default)."""
        if verbose:
            print(msg + " Stopping.")
        return True


class SGD(Optimizer):
    """Gradient descent with momentum, as scikit-learn's SGDOptimizer (paper §3.6):
    v <- momentum v - lr g, W <- W + v (or Nesterov's look-ahead). ``learning_rate``
    'constant', 'invscaling' (lr = learning_rate_init / (t + 1)^power_t after each
    epoch) or 'adaptive' (lr / 5 when progress stalls, until below 1e-6)."""

    kind = 0

    def __init__(self, params: np.ndarray, est) -> None:
        super().__init__(params, est)
        self.lr_init = self.lr
        self.momentum = float(est.momentum)
        self.nesterov = bool(est.nesterovs_momentum)
        self.schedule = est.learning_rate
        self.power_t = float(est.power_t)

    def end_epoch(self, t: int) -> None:
        if self.schedule == "invscaling":
            self.lr = self.lr_init / (t + 1) ** self.power_t

    def on_plateau(self, msg: str, verbose: bool) -> bool:
        if self.schedule != "adaptive":
            return super().on_plateau(msg, verbose)
        if self.lr <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.lr /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.lr:f}")
        return False


class Adam(Optimizer):
    """Adam (Kingma & Ba), as scikit-learn's AdamOptimizer, with a constant
    ``learning_rate_init`` and bias-corrected moments ``m`` and ``v``."""

    kind = 1

    def __init__(self, params: np.ndarray, est) -> None:
        super().__init__(params, est)
        self.v = np.zeros_like(params)
        self.beta_1 = float(est.beta_1)
        self.beta_2 = float(est.beta_2)
        self.epsilon = float(est.epsilon)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization"): each step first shrinks the weights, W <- (1 - lr weight_decay) W,
    then takes Adam's step on the gradient (which still holds alpha's L2 term, if any).
    ``weight_decay`` None means 0.01. Biases are not decayed (nor penalised by alpha)."""

    kind = 2

    def __init__(self, params: np.ndarray, est) -> None:
        super().__init__(params, est)
        wd = est.weight_decay
        self.weight_decay = 0.01 if wd is None else float(wd)


SOLVERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
ALL_SOLVERS = ("lbfgs", *SOLVERS)
# the schedules computed per update, for every solver: their codes in _optim.pxd
STEP_SCHEDULES = {"cosine": 1, "onecycle": 2}
# learning_rate's values: SGD's per-epoch schedules (with Adam the rate stays constant,
# as in scikit-learn), then the per-step ones
SCHEDULES = ("constant", "invscaling", "adaptive", *STEP_SCHEDULES)
