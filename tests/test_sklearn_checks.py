"""scikit-learn's estimator checks, with no check marked expected-to-fail."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from cymlp import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(max_iter=100),
    MLPRegressor(max_iter=100),
    MLPClassifier(solver="lbfgs", max_iter=100),
    # (not with dropout: its random masks make sample_weight=k differ from k repeats)
    MLPClassifier(solver="sgd", activation="logistic", random_state=0),
    MLPRegressor(solver="sgd", activation="tanh", learning_rate="adaptive", random_state=0),
    MLPRegressor(loss="poisson", solver="lbfgs", max_iter=100),
    # issue 18's recipes
    MLPClassifier(solver="adamw", weight_decay=0.05, max_iter=100),
    MLPClassifier(label_smoothing=0.1, max_iter=100),
    MLPRegressor(solver="adamw", learning_rate="onecycle", warmup_fraction=0.2,
                 max_iter=100),
    MLPClassifier(solver="sgd", max_grad_norm=1.0, random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
