"""MNIST with default parameters: cymlp's MLPClassifier vs scikit-learn's, in one run.

    python benchmarks/bench_default.py [--max-iter 20] [--repeats 1] [--threads N]
                                       [--data-home ../shared/data] [--samples N]

Both estimators are built with their defaults (hidden (100,), relu, adam, lr 1e-3,
batch 200, alpha 1e-4) plus ``max_iter`` and ``random_state=0`` (and cymlp's ``n_jobs``
set to the thread count), and fitted on the 60,000 training images as float32 in [0, 1];
the script prints fit seconds (the best of ``--repeats``, the two taking turns), the
speed-up and test accuracy of each. scikit-learn's OpenBLAS runs the kernels it picks
for this CPU (``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset; the kernels
threadpoolctl reports are printed) on as many threads as cymlp. PyTorch takes no part.
The machine is shared and noisy: compare the ratio of one run.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _bench as B


def _fit(cls, X, y, max_iter, **params):
    clf = cls(max_iter=max_iter, random_state=0, **params)
    B.settle()
    start = time.perf_counter()
    clf.fit(X, y)
    return time.perf_counter() - start, clf


def main():
    B.clean_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    B.add_arguments(ap, repeats=1)
    ap.add_argument("--max-iter", type=int, default=20)
    args = ap.parse_args()

    from sklearn.neural_network import MLPClassifier as SkMLP

    import cymlp

    X, y, X_test, y_test = B.load_mnist(args.data_home, args.samples)
    nt = B.set_threads(B.default_threads(args.threads))
    B.print_env(nt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = B.best_of({
            "cymlp": lambda: _fit(cymlp.MLPClassifier, X, y, args.max_iter, n_jobs=nt),
            "scikit-learn": lambda: _fit(SkMLP, X, y, args.max_iter)}, args.repeats)
    print(f"\nMNIST, default parameters, max_iter={args.max_iter}, float32")
    print(f"{'library':14s} {'fit s':>8s} {'epochs':>6s} {'s/epoch':>8s} {'speed-up':>8s} "
          f"{'test acc':>8s}")
    acc = {}
    sk_seconds, sk = best["scikit-learn"]
    base = sk_seconds / sk.n_iter_
    for name, (seconds, clf) in best.items():
        per_epoch = seconds / clf.n_iter_
        acc[name] = clf.score(X_test, y_test)
        print(f"{name:14s} {seconds:8.2f} {clf.n_iter_:6d} {per_epoch:8.3f} "
              f"{base / per_epoch:7.2f}x {acc[name]:8.4f}")
    print(f"accuracy difference (cymlp - scikit-learn): "
          f"{100 * (acc['cymlp'] - acc['scikit-learn']):+.2f} points")


if __name__ == "__main__":
    main()
