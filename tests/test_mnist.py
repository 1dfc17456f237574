"""The paper's network on real MNIST (short runs; the 150-epoch result is in benchmarks/)."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from cymlp import MLPClassifier

PAPER = dict(hidden_layer_sizes=(100,), activation="logistic", solver="sgd",
             learning_rate_init=0.1, batch_size=200, momentum=0.0, alpha=0.0, init="paper")

pytestmark = pytest.mark.mnist


def test_paper_config_ten_epochs(mnist):
    X_train, y_train, X_test, y_test = mnist
    clf = MLPClassifier(max_iter=10, random_state=0, **PAPER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    assert clf.coefs_[0].dtype == np.float32
    assert clf.n_iter_ == 10
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    accuracy = clf.score(X_test, y_test)
    assert accuracy >= 0.92, accuracy
    P = clf.predict_proba(X_test)
    np.testing.assert_allclose(P.sum(1), 1, rtol=1e-5)


def test_default_adam_relu_two_epochs(mnist):
    X_train, y_train, X_test, y_test = mnist
    clf = MLPClassifier(max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.94
