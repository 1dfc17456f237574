"""Seconds per epoch of the paper's network: cymlp vs scikit-learn vs PyTorch, on MNIST
and on dense inputs.

    python benchmarks/bench_paper.py [--epochs 3] [--repeats 3] [--threads N]
                                     [--data-home ../shared/data] [--samples N]

Every library trains the same network (784-100-10, logistic hidden layer, softmax
output, cross-entropy, plain SGD with learning rate 0.1, minibatches of 200, float32
input in [0, 1]) in the same process, the libraries taking turns, and the script prints
the best seconds per epoch of ``--repeats`` fits, the ratio to cymlp and the test
accuracy. It does so on MNIST, whose ~81% zeros cymlp skips, and on dense inputs (MNIST
+ U(0, 1e-3) noise, train and test: no zero left to skip, as in tabular data). Every
peer gets its best: OpenBLAS on the kernels it picks for this CPU (``OPENBLAS_CORETYPE``
and ``OPENBLAS_L2_SIZE`` unset; the kernels threadpoolctl reports are printed) and the
same thread count for cymlp, OpenBLAS and PyTorch. Machines are noisy: compare the
ratios of one run, not absolute times across runs. PyTorch is included when it is
installed.
"""

from __future__ import annotations

import argparse
import warnings

import _bench as B


def main():
    B.clean_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    B.add_arguments(ap)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    import sklearn.neural_network  # noqa: F401  (loads scipy's OpenBLAS before set_threads)

    torch = B.import_torch()
    X, y, X_test, y_test = B.load_mnist(args.data_home, args.samples)
    data = {"MNIST": (X, X_test), "dense": (B.dense(X), B.dense(X_test, seed=1))}
    nt = B.set_threads(B.default_threads(args.threads), torch)
    print(f"paper net 784-100-10, float32, {args.epochs} epoch(s) a fit, best of "
          f"{args.repeats}")
    B.print_env(nt, torch)
    if torch is None:
        print("(PyTorch not installed: skipped)")
    E = args.epochs
    runs = {}
    for d, (Xi, _) in data.items():
        runs["cymlp", d] = lambda Xi=Xi: B.fit_cymlp(Xi, y, (100,), "logistic", 200, E, 0.1,
                                                     nt, init="paper")
        runs["scikit-learn", d] = lambda Xi=Xi: B.fit_sklearn(Xi, y, (100,), "logistic", 200,
                                                              E, 0.1)
        if torch is not None:
            runs["pytorch", d] = lambda Xi=Xi: B.fit_torch(Xi, y, (100,), "logistic", 200, E,
                                                           0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = B.best_of(runs, args.repeats)
    for d, (_, Xt) in data.items():
        base = best["cymlp", d][0]
        print(f"\n{d + ' inputs':14s} {'s/epoch':>9s} {'x cymlp':>8s} {'test acc':>9s}")
        for name in ("cymlp", "scikit-learn", "pytorch"):
            if (name, d) not in best:
                continue
            t, model = best[name, d]
            acc = (B.torch_accuracy(model, Xt, y_test) if name == "pytorch"
                   else model.score(Xt, y_test))
            print(f"{name:14s} {t:9.3f} {t / base:8.2f} {acc:9.4f}")


if __name__ == "__main__":
    main()
