"""Parameter rules: scikit-learn's ``_parameter_constraints`` for every parameter cymlp
shares with its MLPs, the same InvalidParameterError at the same boundaries, and cymlp's
own parameters validated the same way."""

import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options
from sklearn.utils.estimator_checks import check_param_validation

import cymlp
from cymlp import MLPClassifier, MLPRegressor

PAIRS = [(MLPClassifier, sk.MLPClassifier), (MLPRegressor, sk.MLPRegressor)]


def _describe(constraint):
    """A constraint as comparable data (option sets are unordered)."""
    if isinstance(constraint, Options):  # (StrOptions too)
        return type(constraint).__name__, constraint.type, frozenset(constraint.options)
    if isinstance(constraint, Interval):
        return "Interval", constraint.type, constraint.left, constraint.right, constraint.closed
    assert isinstance(constraint, str | type) or constraint is None, constraint
    return constraint


# string options cymlp adds to scikit-learn's
ADDED_OPTIONS = {"activation": {"leaky_relu"}, "solver": {"adamw"},
                 "learning_rate": {"cosine", "onecycle"}}


@pytest.mark.parametrize("ours, ref", PAIRS)
def test_shared_parameters_have_scikit_learns_constraints(ours, ref):
    shared = set(ref._parameter_constraints)
    assert shared <= set(ours._parameter_constraints)
    for name in sorted(shared):
        mine = [_describe(c) for c in ours._parameter_constraints[name]]
        theirs = [_describe(c) for c in ref._parameter_constraints[name]]
        if name in ADDED_OPTIONS:  # a superset: cymlp's additions
            (options,) = ours._parameter_constraints[name]
            (ref_options,) = ref._parameter_constraints[name]
            assert options.options == ref_options.options | ADDED_OPTIONS[name]
        else:
            assert mine == theirs, name


@pytest.mark.parametrize("estimator", [MLPClassifier(), MLPRegressor(),
                                       MLPClassifier(solver="sgd"),
                                       MLPRegressor(loss="poisson", solver="lbfgs")],
                         ids=["classifier", "regressor", "classifier-sgd", "poisson-lbfgs"])
def test_scikit_learns_parameter_validation_check(estimator):
    """scikit-learn's own check (not part of parametrize_with_checks): every parameter
    has a constraint, and fit and partial_fit refuse a value of a bad type or outside
    each constraint with InvalidParameterError, before anything else."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_param_validation(type(estimator).__name__, estimator)


# (parameter, values) at and around every boundary of the shared constraints
BOUNDARIES = [
    ("hidden_layer_sizes", [0, 1, 3, (0,), (3, 0), (3,), [], "3", 1.5, (2.5,)]),
    ("activation", ["relu", "softplus", None]),
    ("solver", ["sgd", "lbfgs", "newton"]),
    ("alpha", [-1e-6, 0.0, 0, 10.0, np.inf, np.nan, "0"]),
    ("batch_size", [0, 1, 20, 10**6, "auto", "big", 1.0, -1, True]),
    ("learning_rate", ["adaptive", "linear"]),
    ("learning_rate_init", [0.0, 1e-12, -1.0, np.inf, np.nan]),
    ("power_t", [-1e-6, 0.0, 2.0, np.inf]),
    ("max_iter", [0, 1, 2, 1.0, -3, np.inf]),
    ("shuffle", [True, np.False_, 1, "yes", None]),
    ("random_state", [None, 0, 2**32 - 1, 2**32, -1, np.random.RandomState(0), "x"]),
    ("tol", [-1e-6, 0.0, 1e9, np.inf]),
    ("verbose", [-1, 0, 2, True, np.True_, 0.5]),
    ("warm_start", [False, 0]),
    ("momentum", [-1e-6, 0.0, 1.0, 1.000001]),
    ("nesterovs_momentum", [np.True_, "no"]),
    ("early_stopping", [np.False_, 1]),
    ("validation_fraction", [-1e-6, 0.0, 0.5, 0.999, 1.0]),
    ("beta_1", [-1e-6, 0.0, 0.999999, 1.0]),
    ("beta_2", [-1e-6, 0.0, 0.999999, 1.0]),
    ("epsilon", [0.0, 1e-300, -1e-8, np.inf]),
    ("n_iter_no_change", [0, 1, 5, np.inf, -np.inf, 1.5, 2.0]),
    ("max_fun", [0, 1, 100, 1.0]),
]
CASES = [(name, value) for name, values in BOUNDARIES for value in values]


def _outcome(est, X, y):
    """'ok', 'invalid' (InvalidParameterError) or the name of another error type."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
        except InvalidParameterError:
            return "invalid"
        except (ValueError, TypeError) as e:
            return type(e).__name__
    return "ok"


@pytest.mark.parametrize("ours, ref", PAIRS, ids=["classifier", "regressor"])
@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_boundary_accepted_or_refused_as_scikit_learn_does(ours, ref, name, value):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(int) if ours is MLPClassifier else X[:, 0]
    kw = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0, max_fun=50)
    kw[name] = value
    expected = _outcome(ref(**kw), X, y)
    got = _outcome(ours(**kw), X, y)
    if expected in ("ok", "invalid"):
        assert got == expected
    else:  # scikit-learn fails later (hidden_layer_sizes=(0,): ValueError; (2.5,): a
        # TypeError from numpy): cymlp refuses too, with a ValueError that says why
        assert got in ("ValueError", "invalid"), (got, expected)


def test_early_stopping_with_no_validation_split_refused(blobs):
    """validation_fraction=0 is a valid parameter, but not with early stopping: both
    refuse it with a ValueError (scikit-learn's comes from train_test_split)."""
    X, y = blobs
    with pytest.raises(ValueError, match=r"test_size=0\.0"):
        sk.MLPClassifier(early_stopping=True, validation_fraction=0.0, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match=r"validation_fraction=0\.0 leaves no validation"):
        MLPClassifier(early_stopping=True, validation_fraction=0.0, max_iter=2).fit(X, y)
    MLPClassifier((3,), validation_fraction=0.0, max_iter=2).fit(X, y)


@pytest.mark.parametrize("params, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"init": "he"}, "init"),
    ({"negative_slope": -0.1}, "negative_slope"),
    ({"negative_slope": np.inf}, "negative_slope"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": [0.1, 1.0]}, "dropout"),
    ({"dropout": [0.1]}, "dropout"),  # two hidden layers
    ({"n_jobs": 0}, "n_jobs"),
    ({"n_jobs": 1.5}, "n_jobs"),
    ({"class_weight": "even"}, "class_weight"),
])
def test_cymlp_parameters_refused_with_invalid_parameter_error(params, match, blobs):
    X, y = blobs
    est = MLPClassifier(hidden_layer_sizes=(4, 4), **params)
    with pytest.raises(InvalidParameterError, match=match):
        est.fit(X, y)
    with pytest.raises(InvalidParameterError, match=match):
        est.partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_checks_parameters_before_classes(blobs):
    X, y = blobs
    with pytest.raises(InvalidParameterError, match="batch_size"):
        MLPClassifier(batch_size=0).partial_fit(X, y)  # (classes missing too)


def test_n_iter_no_change_inf_trains_max_iter_epochs_and_round_trips(blobs, tmp_path):
    X, y = blobs
    kw = dict(hidden_layer_sizes=(5,), max_iter=12, tol=10.0, random_state=0,
              n_iter_no_change=np.inf)
    with pytest.warns(Warning, match="Maximum iterations"):
        ours = MLPClassifier(**kw).fit(X, y)
    ref = sk.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_ == 12  # never stops on the loss (tol is huge)
    ours.save(tmp_path / "m.npz")
    back = cymlp.load(tmp_path / "m.npz")
    assert back.n_iter_no_change == np.inf
    np.testing.assert_array_equal(back.predict_proba(X), ours.predict_proba(X))


def test_batch_size_above_n_samples_is_clipped_with_scikit_learns_warning(blobs):
    X, y = blobs
    for est in (MLPClassifier, sk.MLPClassifier):
        with pytest.warns(UserWarning, match="It is going to be clipped"):
            est(hidden_layer_sizes=(3,), batch_size=len(X) + 1, max_iter=1).fit(X, y)
