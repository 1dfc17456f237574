"""Seconds per epoch of the paper's network on MNIST: cymlp vs scikit-learn (vs PyTorch).

    python benchmarks/bench_paper.py [--epochs 3] [--data-home ../shared/data]

Every library trains the same network (784-100-10, logistic hidden layer, softmax
output, cross-entropy, plain SGD with learning rate 0.1, minibatches of 200, float32
input in [0, 1]) in the same process, one after the other, and the script prints
seconds per epoch and the ratio to cymlp. Machines are noisy: compare the ratios of one
run, not absolute times across runs. PyTorch is included when it is installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from bench_speed import _settle  # (a sibling script: its directory is on sys.path)


def bench_cymlp(X, y, epochs, n_jobs):
    from cymlp import MLPClassifier

    clf = MLPClassifier((100,), activation="logistic", solver="sgd", learning_rate_init=0.1,
                        momentum=0.0, alpha=0.0, batch_size=200, init="paper",
                        max_iter=epochs, n_iter_no_change=10**9, random_state=0,
                        n_jobs=n_jobs)
    start = time.perf_counter()
    clf.fit(X, y)
    return (time.perf_counter() - start) / clf.n_iter_, clf


def bench_sklearn(X, y, epochs):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier((100,), activation="logistic", solver="sgd", learning_rate_init=0.1,
                        momentum=0.0, alpha=0.0, batch_size=200, max_iter=epochs,
                        n_iter_no_change=10**9, random_state=0)
    start = time.perf_counter()
    clf.fit(X, y)
    return (time.perf_counter() - start) / clf.n_iter_, clf


def bench_torch(X, y, epochs):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.Sigmoid(),
                                torch.nn.Linear(100, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 200):
            idx = perm[i:i + 200]
            opt.zero_grad()
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return (time.perf_counter() - start) / epochs, model


def _torch_accuracy(model, X, y):
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(X)).argmax(1).numpy() == y).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-home", default=os.environ.get("CYMLP_DATA_HOME"))
    ap.add_argument("--n-jobs", type=int, default=None, help="cymlp threads (default all)")
    args = ap.parse_args()

    import cymlp
    from cymlp.datasets import load_mnist

    X, y, X_test, y_test = load_mnist(args.data_home)
    X = X.astype(np.float32) / np.float32(255)
    X_test = X_test.astype(np.float32) / np.float32(255)
    print(f"cymlp {cymlp.__version__} | {platform.machine()} {os.cpu_count()} cores | "
          f"paper net 784-100-10, float32, {args.epochs} epochs each")
    cymlp.show_config()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _settle()
        t, clf = bench_cymlp(X, y, args.epochs, args.n_jobs)
        rows.append(("cymlp", t, clf.score(X_test, y_test)))
        _settle()
        t, clf = bench_sklearn(X, y, args.epochs)
        rows.append(("scikit-learn", t, clf.score(X_test, y_test)))
        try:
            _settle()
            t, model = bench_torch(X, y, args.epochs)
            rows.append(("pytorch", t, _torch_accuracy(model, X_test, y_test)))
        except ImportError:
            print("(PyTorch not installed: skipped)")
    base = rows[0][1]
    print(f"\n{'library':14s} {'s/epoch':>9s} {'x cymlp':>8s} {'test acc':>9s}")
    for name, t, acc in rows:
        print(f"{name:14s} {t:9.3f} {t / base:8.2f} {acc:9.4f}")


if __name__ == "__main__":
    main()
