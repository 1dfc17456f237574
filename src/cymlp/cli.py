"""Command line: ``cymlp train`` (also ``python -m cymlp train``) and ``cymlp info``.

``cymlp train`` trains an MLP on MNIST, by default with the paper's settings
(784-100-10, logistic, SGD with learning rate 0.1, batch 200, weights uniform in
[-0.5, 0.5]); it prints train loss, test accuracy and seconds for every epoch and saves
the model to ``--out``. User mistakes (missing data, bad flags) print one line on
stderr and exit with a non-zero code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

PAPER = {
    "hidden": [100],
    "activation": "logistic",
    "solver": "sgd",
    "lr": 0.1,
    "batch_size": 200,
    "momentum": 0.0,
    "alpha": 0.0,
    "init": "paper",
}


def _parser() -> argparse.ArgumentParser:
    from cymlp._estimators import ACTIVATIONS

    p = argparse.ArgumentParser(prog="cymlp", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on MNIST (the paper's settings by default)")
    t.add_argument("--hidden", type=int, nargs="+", default=PAPER["hidden"], metavar="N",
                   help="hidden layer widths (default: 100)")
    t.add_argument("--activation", choices=sorted(ACTIVATIONS), default=PAPER["activation"],
                   help="hidden activation (default: logistic, the paper's sigmoid)")
    t.add_argument("--solver", choices=["sgd", "adam"], default=PAPER["solver"])
    t.add_argument("--lr", type=float, default=PAPER["lr"], help="learning rate (default 0.1)")
    t.add_argument("--batch-size", type=int, default=PAPER["batch_size"])
    t.add_argument("--momentum", type=float, default=PAPER["momentum"])
    t.add_argument("--alpha", type=float, default=PAPER["alpha"], help="L2 penalty")
    t.add_argument("--init", choices=["paper", "glorot"], default=PAPER["init"])
    t.add_argument("--epochs", type=int, default=150, help="epochs to train (default 150)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--n-jobs", type=int, default=None, help="threads (default: all cores)")
    t.add_argument("--data-home", default=None,
                   help="folder whose mnist/ subfolder holds the data "
                        "(default: $CYMLP_DATA_HOME, else the user cache)")
    t.add_argument("--no-download", action="store_true", help="never download MNIST")
    t.add_argument("--out", default="runs/mnist", help="output folder (default runs/mnist)")
    sub.add_parser("info", help="version, SIMD variant, threads, OpenMP")
    return p


def _train(args) -> int:
    from cymlp import MLPClassifier
    from cymlp.datasets import load_mnist
    from cymlp.io import save

    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    X_train, y_train, X_test, y_test = load_mnist(args.data_home, download=not args.no_download)
    dtype = np.dtype(args.dtype)
    X_train = X_train.astype(dtype) / dtype.type(255)
    X_test = X_test.astype(dtype) / dtype.type(255)
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(args.hidden), activation=args.activation, solver=args.solver,
        learning_rate_init=args.lr, batch_size=args.batch_size, momentum=args.momentum,
        alpha=args.alpha, init=args.init, random_state=args.seed, n_jobs=args.n_jobs,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = "-".join(str(s) for s in [X_train.shape[1], *args.hidden, 10])
    print(f"cymlp: MNIST {sizes} {args.activation}, {args.solver} lr={args.lr} "
          f"batch={args.batch_size}, init={args.init}, {args.epochs} epochs, {dtype.name}")
    print(f"{'epoch':>5}  {'train_loss':>10}  {'test_acc':>8}  {'seconds':>7}", flush=True)
    classes = np.arange(10)
    total = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        clf.partial_fit(X_train, y_train, classes=classes)
        seconds = time.perf_counter() - start
        total += seconds
        acc = clf.score(X_test, y_test)
        print(f"{epoch:5d}  {clf.loss_:10.6f}  {acc:8.4f}  {seconds:7.3f}", flush=True)
    save(clf, out / "model.npz")
    print(f"test accuracy {acc:.4f} after {args.epochs} epochs, {total:.1f} s training; "
          f"model saved to {out / 'model.npz'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cymlp`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        from cymlp import show_config

        show_config()
        return 0
    except (OSError, ValueError) as e:
        print(f"cymlp: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cymlp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
