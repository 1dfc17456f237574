import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_home():
    env = os.environ.get("CYMLP_DATA_HOME")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mnist():
    """MNIST as float32 in [0, 1]: (X_train, y_train, X_test, y_test).

    Missing data skips the test on a developer machine but fails it under CI (CI set).
    """
    from cymlp.datasets import load_mnist

    try:
        X_train, y_train, X_test, y_test = load_mnist(_data_home(), download=False)
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"MNIST is required under CI: {e}")
        pytest.skip(f"MNIST not available: {e}")
    scale = np.float32(1 / 255)
    return (X_train.astype(np.float32) * scale, y_train,
            X_test.astype(np.float32) * scale, y_test)


@pytest.fixture
def blobs():
    """A small 3-class problem with well separated classes."""
    rng = np.random.RandomState(0)
    centers = np.array([[0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 3]], dtype=float)
    y = rng.randint(0, 3, 300)
    X = centers[y] + rng.normal(scale=0.7, size=(300, 4))
    return X, y
