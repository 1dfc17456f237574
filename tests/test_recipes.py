"""Training recipes beyond scikit-learn (issue 18), each against an independent
reference: formulas written out in numpy, finite differences, or the plain solver."""

from itertools import pairwise

import numpy as np
import pytest
from sklearn.datasets import make_classification

from cymlp import MLPClassifier, _engine, _testing
from cymlp._model import ACTIVATIONS, OUTPUT_ACTIVATIONS, n_params

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=120, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    return X, y


class _FirstWeights:
    """A fit callback that keeps the weights at the start of the first epoch."""

    params = None

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        if context.task_name == "epoch" and self.params is None:
            self.params = fitted_estimator._params

    def on_fit_task_end(self, estimator, context):
        return False


# ---- AdamW ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adamw_step_is_its_formula(dtype):
    """W <- (1 - lr wd) W - lr sqrt(1 - b2^t)/(1 - b1^t) m / (sqrt(v) + eps), m and v as
    Adam's, on g = scale (grads + l2 W) taken at the weights before the decay."""
    rng = np.random.RandomState(0)
    p, g = rng.normal(size=50).astype(dtype), rng.normal(size=50).astype(dtype)
    m, v = (rng.normal(size=50) * 0.1).astype(dtype), rng.uniform(size=50).astype(dtype)
    t, lr, b1, b2, eps, wd, scale, l2 = 3, 0.01, 0.9, 0.999, 1e-8, 0.05, 0.5, 0.1
    p64, g64, m64, v64 = (a.astype(np.float64) for a in (p, g, m, v))
    grad = scale * (g64 + l2 * p64)
    m2 = b1 * m64 + (1 - b1) * grad
    v2 = b2 * v64 + (1 - b2) * grad * grad
    p2 = (1 - lr * wd) * p64 - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m2 / (np.sqrt(v2) + eps)
    _testing.adam(p, g, m, v, lr, b1, b2, eps, t, scale=scale, l2=l2, weight_decay=wd)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(m, m2, rtol=tol)
    np.testing.assert_allclose(v, v2, rtol=tol)
    np.testing.assert_allclose(p, p2, rtol=tol, atol=tol)


def test_adamw_without_decay_is_adam(data):
    X, y = data
    kw = dict(hidden_layer_sizes=(7,), max_iter=5, random_state=0, alpha=1e-3)
    a = MLPClassifier(solver="adam", **kw).fit(X, y)
    b = MLPClassifier(solver="adamw", weight_decay=0.0, **kw).fit(X, y)
    for u, w in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, w)
    c = MLPClassifier(solver="adamw", **kw).fit(X, y)  # weight_decay None: 0.01
    assert c._optimizer.weight_decay == 0.01
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_adamw_first_step_against_numpy(data, alpha):
    """One full-batch step of the estimator against the same step written in numpy on
    the engine's full-batch gradient (a separate code path): weights decay, biases do
    not, and alpha's L2 term stays in the gradient."""
    X, y = data
    lr, wd, b1, b2, eps = 0.01, 0.2, 0.9, 0.999, 1e-8
    kw = dict(hidden_layer_sizes=(6,), random_state=0, batch_size=len(X), shuffle=False,
              learning_rate_init=lr, alpha=alpha)
    clf = MLPClassifier(solver="adamw", weight_decay=wd, max_iter=1, **kw)
    clf.set_callbacks(_FirstWeights())
    clf.fit(X, y)
    W0 = clf._skl_callbacks[0].params  # the weights the step started from
    Y = np.eye(3)[y]
    engine = _engine.Engine(clf._sizes, ACTIVATIONS["relu"], OUTPUT_ACTIVATIONS["softmax"],
                            0.01, None, len(X), 1, np.float64, False)
    g = np.empty_like(W0)
    engine.loss_and_grad((np.ascontiguousarray(X), None, None, None), Y, None, W0, g,
                         alpha, 1.0)  # (already averaged, L2 included)
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    step = lr * np.sqrt(1 - b2) / (1 - b1)
    is_weight = np.zeros_like(W0, dtype=bool)
    off = 0
    for n_in, n_out in pairwise(clf._sizes):
        is_weight[off:off + n_in * n_out] = True
        off += n_in * n_out + n_out
    decay = np.where(is_weight, 1 - lr * wd, 1.0)
    expected = decay * W0 - step * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(clf._params, expected, rtol=1e-9, atol=1e-12)
    assert not np.allclose(clf._params[is_weight], (W0 - step * m / (np.sqrt(v) + eps))[is_weight])


# ---- label smoothing -----------------------------------------------------------------

def _numpy_forward(params, sizes, X):
    """relu hidden layers and the last layer's logits, in numpy."""
    a, off = X, 0
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        W = params[off:off + n_in * n_out].reshape(n_in, n_out)
        off += n_in * n_out
        b = params[off:off + n_out]
        off += n_out
        a = a @ W + b
        if i < len(sizes) - 2:
            a = np.maximum(a, 0)
    return a


@pytest.mark.parametrize("target", ["multiclass", "binary"])
def test_label_smoothed_loss_is_its_formula(data, target):
    """The first epoch's loss (one full batch, taken before its step) is the smoothed
    cross-entropy of the initial weights, written out in numpy: softmax targets
    (1 - e) y + e / K (PyTorch's CrossEntropyLoss(label_smoothing=e)), a logistic
    output's (1 - e) y + e / 2."""
    X, y = data
    if target == "binary":
        y = y % 2
    eps = 0.2
    clf = MLPClassifier((6,), label_smoothing=eps, alpha=0.0, batch_size=len(X),
                        shuffle=False, max_iter=1, random_state=0)
    clf.set_callbacks(_FirstWeights()).fit(X, y)
    z = _numpy_forward(clf._skl_callbacks[0].params, clf._sizes, X)
    if target == "multiclass":
        K = 3
        q = (1 - eps) * np.eye(K)[y] + eps / K
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        expected = -(q * logp).sum(1).mean()
    else:
        q = (1 - eps) * y[:, None] + eps / 2
        expected = np.mean(np.logaddexp(0, z) - q * z)  # -[q log s(z) + (1-q) log(1-s(z))]
    assert clf.loss_curve_[0] == pytest.approx(expected, rel=1e-12)
    plain = MLPClassifier((6,), alpha=0.0, batch_size=len(X), shuffle=False, max_iter=1,
                          random_state=0).fit(X, y)
    assert plain.loss_curve_[0] != pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("out", ["softmax", "logistic"])
def test_label_smoothed_gradient_matches_finite_differences(data, out):
    X, y = data
    eps, K = 0.15, 3
    clf = MLPClassifier(label_smoothing=eps)
    clf.out_activation_ = out
    Y = clf._training_targets(np.eye(K)[y])
    assert np.allclose(Y.sum(1), 1 if out == "softmax" else 1 + eps / 2)
    sizes = [X.shape[1], 5, K]
    rng = np.random.RandomState(1)
    params = rng.normal(scale=0.5, size=n_params(sizes))
    engine = _engine.Engine(sizes, ACTIVATIONS["tanh"], OUTPUT_ACTIVATIONS[out], 0.0, None,
                            len(X), 1, np.float64, False)
    src = (np.ascontiguousarray(X), None, None, None)
    g = np.empty_like(params)
    engine.loss_and_grad(src, Y, None, params, g, 0.0, 1.0)
    h, scratch = 1e-6, np.empty_like(params)
    for k in rng.choice(len(params), 25, replace=False):
        p_hi, p_lo = params.copy(), params.copy()
        p_hi[k] += h
        p_lo[k] -= h
        numeric = (engine.loss_and_grad(src, Y, None, p_hi, scratch, 0.0, 1.0)
                   - engine.loss_and_grad(src, Y, None, p_lo, scratch, 0.0, 1.0)) / (2 * h)
        assert g[k] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_label_smoothing_zero_changes_nothing_and_validation_uses_plain_labels(data):
    X, y = data
    kw = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=0)
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(label_smoothing=0.0, **kw).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    es = dict(kw, early_stopping=True, n_iter_no_change=100)
    c = MLPClassifier(label_smoothing=0.3, **es).fit(X, y)
    d = MLPClassifier(**es).fit(X, y)
    # the validation split and its scoring are the same; the weights differ
    assert len(c.validation_scores_) == len(d.validation_scores_) == 4
    assert not np.array_equal(c.coefs_[0], d.coefs_[0])


def test_model_files_keep_the_new_parameters(data, tmp_path):
    import cymlp

    X, y = data
    clf = MLPClassifier((5,), solver="adamw", weight_decay=0.03, label_smoothing=0.1,
                        max_iter=3, random_state=0).fit(X, y)
    clf.save(tmp_path / "m.npz")
    back = cymlp.load(tmp_path / "m.npz")
    assert back.get_params() == clf.get_params()
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    back.partial_fit(X, y)  # training continues with the stored options
    assert back.n_iter_ == 1


# ---- transform -----------------------------------------------------------------------

def _numpy_hidden(clf, X, layer):
    """Hidden layer ``layer``'s activations, written out in numpy."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
         "logistic": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z,
         "leaky_relu": lambda z: np.where(z > 0, z, clf.negative_slope * z)}[clf.activation]
    a = X
    for W, b in zip(clf.coefs_[:layer + 1], clf.intercepts_[:layer + 1]):
        a = f(a @ W + b)
    return a


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transform_gives_each_hidden_layers_activations(data, activation, dtype):
    X, y = data
    X = X.astype(dtype)
    clf = MLPClassifier((9, 7, 5), activation=activation, max_iter=5, random_state=0,
                        dropout=0.2).fit(X, y)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for layer, width in zip((0, 1, 2, -1, -3), (9, 7, 5, 5, 9)):
        H = clf.transform(X, layer=layer)
        assert H.shape == (len(X), width) and H.dtype == dtype
        np.testing.assert_allclose(H, _numpy_hidden(clf, X.astype(np.float64), layer % 3),
                                   rtol=tol, atol=tol)
    np.testing.assert_array_equal(clf.transform(X), clf.transform(X, layer=2))
    np.testing.assert_array_equal(clf.transform(X[:1]), clf.transform(X)[:1])  # (one row)
    for bad in (3, -4, 1.0, True, "0"):
        with pytest.raises(ValueError, match="layer must be an integer"):
            clf.transform(X, layer=bad)


def test_transform_in_a_pipeline(data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = data
    mlp = MLPClassifier((16,), max_iter=50, random_state=0)
    pipe = make_pipeline(mlp, LogisticRegression(max_iter=500)).fit(X, y)
    features = MLPClassifier((16,), max_iter=50, random_state=0).fit(X, y).transform(X)
    ref = LogisticRegression(max_iter=500).fit(features, y)
    np.testing.assert_array_equal(pipe.predict(X), ref.predict(features))
    with pytest.raises(Exception, match="not fitted"):
        MLPClassifier().transform(X)


# ---- per-step schedules --------------------------------------------------------------

def _schedule_numpy(name, lr, T, W, k):
    """Rate of the update with k updates before it: linear warm-up over W updates, then
    a half cosine; cosine from lr to 0, onecycle from lr/25 up to lr and down to
    lr/25e4 (PyTorch's OneCycleLR's ends)."""
    start, low = (0.0, 0.0) if name == "cosine" else (lr / 25, lr / 25e4)
    if k < W:
        return start + (lr - start) * (k + 1) / W
    k = min(k, T)
    return low + (lr - low) * (1 + np.cos(np.pi * (k - W) / (T - W))) / 2


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
@pytest.mark.parametrize("warmup", [0, 7])
def test_schedule_formulas(name, warmup):
    from cymlp._optimizers import STEP_SCHEDULES

    T = 40
    got = [_testing.scheduled_lr(STEP_SCHEDULES[name], 0.1, T, warmup, k + 1)
           for k in range(T + 3)]
    want = [_schedule_numpy(name, 0.1, T, warmup, k) for k in range(T + 3)]
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-18)
    if warmup:  # rises linearly to the peak, which the first cosine step keeps
        assert got[warmup - 1] == pytest.approx(0.1) and got[warmup] == pytest.approx(0.1)
    assert got[T:] == [got[T]] * 3  # held at the end value past the planned run
    if name == "cosine":
        assert got[T] == pytest.approx(0.0, abs=1e-18)
    # a warm-up as long as the run (warmup_fraction near 1): a rate, never NaN
    whole = [_testing.scheduled_lr(STEP_SCHEDULES[name], 0.1, 5, 5, k + 1) for k in range(8)]
    assert np.isfinite(whole).all() and whole[4] == pytest.approx(0.1)


def test_cosine_without_warmup_is_pytorchs_cosine_annealing():
    """Without warm-up, cosine is torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T,
    eta_min=0), stepped once per update (when PyTorch is installed)."""
    torch = pytest.importorskip("torch")  # (a bench extra: allowed to skip without it)
    from cymlp._optimizers import STEP_SCHEDULES

    T = 30
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T, eta_min=0)
    for k in range(T):
        assert _testing.scheduled_lr(STEP_SCHEDULES["cosine"], 0.1, T, 0, k + 1) == \
            pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()


class _EpochWeights(_FirstWeights):
    """Keeps the weights at the start of every epoch."""

    def __init__(self):
        self.all = []

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        if context.task_name == "epoch":
            self.all.append(fitted_estimator._params)


@pytest.mark.parametrize("solver", ["sgd", "adamw"])
@pytest.mark.parametrize("name, warmup", [("cosine", 0.0), ("onecycle", 0.25)])
def test_the_fit_takes_each_steps_scheduled_rate(data, solver, name, warmup):
    """Plain SGD, one batch per epoch: each update is W <- W - lr_k g(W), with g the
    engine's full-batch gradient, so lr_k = -(W_k+1 - W_k) / g(W_k) elementwise must be
    the schedule's. With adamw the rates differ from a constant run's."""
    X, y = data
    E = 8
    kw = dict(hidden_layer_sizes=(5,), batch_size=len(X), shuffle=False, alpha=0.0,
              max_iter=E, learning_rate=name, warmup_fraction=warmup,
              learning_rate_init=0.05, random_state=0)
    if solver == "adamw":
        a = MLPClassifier(solver="adamw", **kw).fit(X, y)
        b = MLPClassifier(solver="adamw", **dict(kw, learning_rate="constant")).fit(X, y)
        assert not np.array_equal(a.coefs_[0], b.coefs_[0])
        return
    rec = _EpochWeights()
    clf = MLPClassifier(solver="sgd", momentum=0.0, **kw).set_callbacks(rec).fit(X, y)
    weights = [*rec.all, clf._params]
    engine = _engine.Engine(clf._sizes, ACTIVATIONS["relu"], OUTPUT_ACTIVATIONS["softmax"],
                            0.0, None, len(X), 1, np.float64, False)
    Y = np.eye(3)[y]
    W_steps = round(warmup * E)
    for k in range(E):
        g = np.empty_like(weights[k])
        engine.loss_and_grad((np.ascontiguousarray(X), None, None, None), Y, None,
                             weights[k], g, 0.0, 1.0)
        big = np.abs(g) > 1e-3
        rate = np.median(-(weights[k + 1] - weights[k])[big] / g[big])
        assert rate == pytest.approx(_schedule_numpy(name, 0.05, E, W_steps, k), rel=1e-6)


# ---- scoring -------------------------------------------------------------------------

def test_scoring_accuracy_is_the_default_path(data):
    X, y = data
    kw = dict(hidden_layer_sizes=(6,), early_stopping=True, max_iter=6,
              n_iter_no_change=100, random_state=0)
    a = MLPClassifier(**kw).fit(X, y)
    b = MLPClassifier(scoring="accuracy", **kw).fit(X, y)
    assert a.validation_scores_ == b.validation_scores_
    c = MLPClassifier(scoring="neg_log_loss", **kw).fit(X, y)
    assert all(s < 0 for s in c.validation_scores_)
    assert c.history_["val_score"] == c.validation_scores_
    assert a.loss_curve_ == c.loss_curve_  # (the scores do not change the training)


class _Programmed:
    """A scorer that returns a fixed sequence, one value per call, and records the
    estimator's weights at each call."""

    def __init__(self, values):
        self.values, self.weights = list(values), []

    def __call__(self, estimator, X, y, sample_weight=None):
        self.weights.append(estimator._params.copy())
        return self.values[len(self.weights) - 1]


def test_early_stopping_follows_any_scorer(data):
    X, y = data
    scores = [0.1, 0.5, 0.9, 0.7, 0.8, 0.6, 0.85, 0.2, 0.3, 0.1]
    scorer = _Programmed(scores)
    clf = MLPClassifier((6,), early_stopping=True, scoring=scorer, n_iter_no_change=3,
                        tol=0.0, max_iter=50, random_state=0).fit(X, y)
    # best 0.9 at epoch 3; 0.7, 0.8, 0.6, 0.85 do not beat it: the fourth such epoch
    # (more than n_iter_no_change) stops the fit, with the best epoch's weights
    assert clf.validation_scores_ == scores[:7] and clf.n_iter_ == 7
    assert clf.best_validation_score_ == 0.9
    np.testing.assert_array_equal(clf._params, scorer.weights[2])  # the best epoch's


def test_scoring_is_validated():
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = np.random.RandomState(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(InvalidParameterError, match="scoring"):
        MLPClassifier(scoring="no_such_score").fit(X, y)


def test_a_callable_scoring_is_not_saved_silently(data, tmp_path):
    import cymlp

    X, y = data
    clf = MLPClassifier((4,), early_stopping=True, scoring=_Programmed([0.5] * 20),
                        max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="scoring is a callable"):
        clf.save(tmp_path / "m.npz")
    back = cymlp.load(tmp_path / "m.npz")
    assert back.scoring is None
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    clf.set_params(scoring="f1_macro").save(tmp_path / "n.npz")
    assert cymlp.load(tmp_path / "n.npz").scoring == "f1_macro"


# ---- gradient clipping ---------------------------------------------------------------

@pytest.mark.parametrize("max_norm", [0.05, 1e3])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_clipped_step_against_numpy(data, max_norm, alpha):
    """One full-batch plain-SGD step: W1 = W0 - lr c g, g the engine's full-batch
    gradient (L2 term included), c = min(1, max_norm / (||g|| + 1e-6)) as
    torch.nn.utils.clip_grad_norm_; a large max_norm leaves the step as it was."""
    X, y = data
    lr = 0.1
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", momentum=0.0, batch_size=len(X),
              shuffle=False, learning_rate_init=lr, alpha=alpha, max_iter=1, random_state=0)
    clf = MLPClassifier(max_grad_norm=max_norm, **kw).set_callbacks(_FirstWeights()).fit(X, y)
    W0 = clf._skl_callbacks[0].params
    engine = _engine.Engine(clf._sizes, ACTIVATIONS["relu"], OUTPUT_ACTIVATIONS["softmax"],
                            0.0, None, len(X), 1, np.float64, False)
    g = np.empty_like(W0)
    engine.loss_and_grad((np.ascontiguousarray(X), None, None, None), np.eye(3)[y], None,
                         W0, g, alpha, 1.0)
    c = min(1.0, max_norm / (np.linalg.norm(g) + 1e-6))
    np.testing.assert_allclose(clf._params, W0 - lr * c * g, rtol=1e-10, atol=1e-13)
    plain = MLPClassifier(**kw).fit(X, y)
    if c == 1.0:
        np.testing.assert_array_equal(clf._params, plain._params)
    else:
        assert c < 0.5 and not np.allclose(clf._params, plain._params)
