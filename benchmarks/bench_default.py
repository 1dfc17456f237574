"""MNIST with default parameters: cymlp's MLPClassifier vs scikit-learn's, in one run.

    python benchmarks/bench_default.py [--max-iter 20] [--data-home ../shared/data]

Both estimators are built with their defaults (hidden (100,), relu, adam, lr 1e-3,
batch 200, alpha 1e-4) plus ``max_iter`` and ``random_state=0``, and fitted on the 60,000
training images as float32 in [0, 1]; the script prints fit seconds, the speed-up and
test accuracy of each. The machine is shared and noisy: compare the ratio of one run.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--data-home", default=os.environ.get("CYMLP_DATA_HOME"))
    args = ap.parse_args()

    from sklearn.neural_network import MLPClassifier as SkMLP

    import cymlp
    from cymlp.datasets import load_mnist

    X, y, X_test, y_test = load_mnist(args.data_home)
    X = X.astype(np.float32) / np.float32(255)
    X_test = X_test.astype(np.float32) / np.float32(255)
    cymlp.show_config()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in (("cymlp", cymlp.MLPClassifier), ("scikit-learn", SkMLP)):
            clf = cls(max_iter=args.max_iter, random_state=0)
            start = time.perf_counter()
            clf.fit(X, y)
            seconds = time.perf_counter() - start
            rows.append((name, seconds, clf.n_iter_, clf.score(X_test, y_test)))
    print(f"\nMNIST, default parameters, max_iter={args.max_iter}, float32")
    print(f"{'library':14s} {'fit s':>8s} {'epochs':>6s} {'s/epoch':>8s} {'speed-up':>8s} "
          f"{'test acc':>8s}")
    base = rows[1][1] / rows[1][2]
    for name, seconds, epochs, acc in rows:
        per_epoch = seconds / epochs
        print(f"{name:14s} {seconds:8.2f} {epochs:6d} {per_epoch:8.3f} "
              f"{base / per_epoch:7.2f}x {acc:8.4f}")
    print(f"accuracy difference (cymlp - scikit-learn): {100 * (rows[0][3] - rows[1][3]):+.2f} "
          "points")


if __name__ == "__main__":
    main()
