"""The parameter and attribute sections that both estimators' docstrings share."""

PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu'}, default='relu'
        Hidden-layer activation; 'logistic' is the paper's sigmoid. 'leaky_relu'
        (z if z > 0 else negative_slope * z) is cymlp's addition.
    solver : {'lbfgs', 'sgd', 'adam', 'adamw'}, default='adam'
        'sgd' uses ``momentum``, ``nesterovs_momentum`` and ``learning_rate``; 'adam' uses
        ``beta_1``, ``beta_2``, ``epsilon``; 'adamw' is Adam with decoupled weight decay
        (``weight_decay``, Loshchilov & Hutter), cymlp's addition; 'lbfgs' is scipy's
        L-BFGS-B on the full-batch loss and gradient computed by cymlp's engine
        (``max_iter``, ``max_fun``, ``tol``).
    alpha : float, default=1e-4
        L2 penalty; the loss gets ``alpha / 2 * sum ||W||^2 / sum(sample_weight)``.
    batch_size : int or 'auto', default='auto'
        Minibatch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive', 'cosine', 'onecycle'}, \
default='constant'
        SGD step schedule: constant; ``learning_rate_init / (t + 1) ** power_t`` with t
        the samples seen; or divided by 5 each time the loss stalls. cymlp's additions,
        for every stochastic solver, computed per update over ``max_iter`` epochs:
        'cosine' decays the rate from ``learning_rate_init`` to 0 along a half cosine;
        'onecycle' rises linearly from 1/25 of it to it over the warm-up's updates, then
        follows the half cosine down to 1/250000 of it (PyTorch's OneCycleLR's ends).
    max_grad_norm : float or None, default=None
        Stochastic solvers: before each step, scale the whole gradient (every weight
        and bias, the L2 term included) down to this L2 norm when it is longer, as
        ``torch.nn.utils.clip_grad_norm_``. The same bits for any ``n_jobs``.
    scoring : str, callable or None, default=None
        What ``early_stopping`` scores the validation split with, each epoch, into
        ``validation_scores_`` and ``history_['val_score']``: a scikit-learn scorer name
        (e.g. 'neg_log_loss', 'f1_macro') or a callable ``scorer(estimator, X, y)``;
        None is accuracy (MLPClassifier) or R^2 (MLPRegressor). Higher is better.
    warmup_fraction : float in [0, 1), default=0.0
        'cosine' and 'onecycle': the share of the run's updates over which the rate
        rises linearly to ``learning_rate_init`` before the cosine.
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
        or one per hidden layer. Needs a stochastic solver.
    weight_decay : float or None, default=None
        'adamw' only: the decoupled weight decay, W <- (1 - lr weight_decay) W each step
        before Adam's update (None: 0.01). Weights only, not biases. ``alpha`` keeps its
        meaning (an L2 term in the loss) for every solver.
    n_jobs : int or None, default=None
        Threads for training and prediction; None uses the default (``OMP_NUM_THREADS``,
        else all cores; in OpenMP builds also threadpoolctl's limit), -1 all, -2 all but
        one. Results do not depend on it.
"""

ATTRS_DOC = """
    Attributes
    ----------
    coefs_, intercepts_ : lists of ndarray
        Weights (n_in, n_out) and biases of each layer: views into one flat buffer.
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_,
    feature_names_in_
        As in scikit-learn.
    history_ : dict of lists
        Per epoch: 'loss' (training loss), 'seconds', for classifiers 'accuracy' (the
        fraction of training rows whose outputs, computed as the epoch went and before
        their batch's update, predicted their labels: the running accuracy, at no extra
        cost), and with early stopping 'val_loss' (data loss on the validation split)
        and 'val_score'.
"""


def with_shared_docs(cls):
    """Fill a class docstring's %(params)s and %(attrs)s with the shared sections."""
    cls.__doc__ = cls.__doc__.replace("%(params)s", PARAMS_DOC).replace("%(attrs)s", ATTRS_DOC)
    return cls
