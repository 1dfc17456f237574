"""Fingerprints of trained weights, to show a refactor changed no bit of any result.

    python benchmarks/weights_hash.py [--variants portable,baseline,avx2] > before.txt
    ... change the code, rebuild ...
    python benchmarks/weights_hash.py [--variants ...] > after.txt
    diff before.txt after.txt            # no output: bit-identical

For each SIMD variant (a child process per variant, ``CYMLP_SIMD`` set), it fits small
models over the grid solver x hidden activation x dtype x n_jobs (classifier and
regressor, with and without dropout, sample weights, early stopping, momentum and
Nesterov, L-BFGS), at shapes large enough that the threaded paths, several K blocks and
zero skipping all run, and prints one SHA-256 line per fit over its ``coefs_``,
``intercepts_``, ``loss_curve_`` and ``predict_proba`` / ``predict`` output, then one
line over all of them. It checks no tolerance: any changed bit changes a hash.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import warnings

import numpy as np


def _digest(model, X) -> str:
    h = hashlib.sha256()
    for a in list(model.coefs_) + list(model.intercepts_):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(np.asarray(getattr(model, "loss_curve_", []), dtype=np.float64).tobytes())
    out = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
    h.update(np.ascontiguousarray(out).tobytes())
    return h.hexdigest()[:16]


def _data(dtype):
    rng = np.random.RandomState(0)
    X = rng.rand(1200, 300)
    X[X < 0.7] = 0.0  # zeros to skip, as in MNIST
    y = (X[:, :10].sum(1) * 3).astype(int) % 4
    return X.astype(dtype), y


def run_variant() -> list[str]:
    from sklearn.exceptions import ConvergenceWarning

    from cymlp import MLPClassifier, MLPRegressor

    warnings.simplefilter("ignore", ConvergenceWarning)
    lines = []
    grid = itertools.product(["sgd", "adam", "lbfgs"],
                             ["identity", "logistic", "tanh", "relu", "leaky_relu"],
                             [np.float32, np.float64], [1, 2])
    for solver, act, dtype, n_jobs in grid:
        X, y = _data(dtype)
        kw = dict(hidden_layer_sizes=(160, 40), activation=act, solver=solver,
                  random_state=1, n_jobs=n_jobs, max_iter=3, batch_size=200)
        if solver == "lbfgs":
            kw.update(max_iter=8)
        clf = MLPClassifier(**kw).fit(X, y)
        reg = MLPRegressor(**kw).fit(X, X[:, :3].sum(1))
        name = f"{solver} {act} {np.dtype(dtype).name} n_jobs={n_jobs}"
        lines.append(f"clf {name}: {_digest(clf, X)}")
        lines.append(f"reg {name}: {_digest(reg, X)}")
    extras = {
        "dropout": dict(dropout=0.2),
        "momentum-nesterov": dict(momentum=0.9, nesterovs_momentum=True),
        "invscaling": dict(learning_rate="invscaling", power_t=0.3),
        "early-stopping": dict(early_stopping=True, validation_fraction=0.2, max_iter=6),
        "alpha": dict(alpha=1e-2),
    }
    for label, extra in extras.items():
        for dtype, n_jobs in itertools.product([np.float32, np.float64], [1, 2]):
            X, y = _data(dtype)
            kw = dict(hidden_layer_sizes=(160,), activation="logistic", solver="sgd",
                      random_state=2, n_jobs=n_jobs, max_iter=3, batch_size=200)
            kw.update(extra)
            clf = MLPClassifier(**kw).fit(X, y)
            lines.append(f"clf {label} {np.dtype(dtype).name} n_jobs={n_jobs}: "
                         f"{_digest(clf, X)}")
    for dtype in (np.float32, np.float64):
        X, y = _data(dtype)
        w = np.random.RandomState(3).rand(len(y))
        clf = MLPClassifier((64,), random_state=4, max_iter=3).fit(X, y, sample_weight=w)
        lines.append(f"clf sample_weight {np.dtype(dtype).name}: {_digest(clf, X)}")
        multi = np.stack([y == 0, y == 1], axis=1).astype(int)
        ml = MLPClassifier((64,), random_state=4, max_iter=3).fit(X, multi)
        lines.append(f"clf multilabel {np.dtype(dtype).name}: {_digest(ml, X)}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=None,
                    help="comma-separated SIMD variants (default: all this CPU runs)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_variant()))
        return
    from cymlp import _kernels

    variants = args.variants.split(",") if args.variants else _kernels.simd_variants()
    total = hashlib.sha256()
    for variant in variants:
        env = dict(os.environ, CYMLP_SIMD=variant)
        out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                             capture_output=True, text=True).stdout
        for line in json.loads(out.strip().splitlines()[-1]):
            print(f"{variant} {line}")
            total.update(f"{variant} {line}\n".encode())
    print(f"all: {total.hexdigest()}")


if __name__ == "__main__":
    main()
