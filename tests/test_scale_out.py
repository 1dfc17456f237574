"""Beyond one machine: dask-ml's Incremental on a LocalCluster and grid search on the
dask joblib backend. dask, distributed and dask-ml are in the 'test' extra: a failing
import fails these tests instead of skipping them (the memory-mapped training tests, which
need none of them, are in test_memmap.py)."""

import warnings

import dask.array as da
import numpy as np
import pytest
from dask.distributed import Client, LocalCluster
from dask_ml.wrappers import Incremental
from sklearn.exceptions import ConvergenceWarning

import cymlp


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each, on loopback; stopped after the tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one OpenMP thread per worker, whatever the caller's OMP_NUM_THREADS (dask's
        # nanny only sets it when it is unset)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               env={"OMP_NUM_THREADS": "1"})
    with cluster, Client(cluster) as c:
        yield c


def test_workers_use_one_thread_each(client):
    """Workers x threads stays within the cores (two workers, one thread each)."""
    from cymlp import _kernels

    threads = client.run(_kernels.max_threads)
    assert len(threads) == 2 and set(threads.values()) == {1}


@pytest.mark.mnist
def test_incremental_mnist_on_local_cluster(client, mnist):
    X_train, y_train, X_test, y_test = mnist
    X = da.from_array(X_train, chunks=(10_000, 784))
    y = da.from_array(y_train.astype(np.int64), chunks=10_000)
    inc = Incremental(cymlp.MLPClassifier(hidden_layer_sizes=(100,), random_state=0),
                      scoring="accuracy", shuffle_blocks=True, random_state=0)
    for _ in range(3):  # three passes, block by block, the model moving between workers
        inc.partial_fit(X, y, classes=np.arange(10))
    model = inc.estimator_
    assert isinstance(model, cymlp.MLPClassifier) and model.n_iter_ == 1
    assert len(model.loss_curve_) == 18  # 6 blocks x 3 passes, one epoch each
    accuracy = inc.score(da.from_array(X_test, chunks=5_000),
                         da.from_array(y_test.astype(np.int64), chunks=5_000))
    assert accuracy >= 0.92, accuracy


def test_grid_search_on_dask_backend(client):
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(n_samples=600, n_features=20, n_informative=8,
                               n_classes=3, random_state=0)
    grid = GridSearchCV(cymlp.MLPClassifier(max_iter=200, random_state=0),
                        {"hidden_layer_sizes": [(16,), (64,)], "alpha": [1e-4, 1e-1]},
                        cv=3, n_jobs=-1)
    with warnings.catch_warnings(), joblib.parallel_backend("dask"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.75
    assert len(grid.cv_results_["mean_test_score"]) == 4
    np.testing.assert_array_equal(grid.predict(X), grid.best_estimator_.predict(X))
