"""s/epoch of the paper's network under two or more builds of cymlp, in one run.

Each build is a source tree built in place (``python setup.py build_ext --inplace``,
e.g. once with the default OpenMP and once with ``CYMLP_THREADS=pthreads``); builds
cannot share a process, so each gets a child process (``PYTHONPATH`` = its ``src``) that
loads MNIST once and then fits when told to. The children take turns, fit by fit
(the order alternating), so that a busy machine slows them alike; each figure is the best
and the median of ``--repeats`` fits.

    python benchmarks/bench_backends.py openmp=/tmp/cymlp-omp/src pthreads=src

A build given as ``name=path@k`` fits with k threads instead of ``--n-jobs``
(``serial=src@1``: the one-thread reference in the same run).

The network: 784-100-10, logistic hidden layer, softmax output, SGD lr 0.1 without
momentum, batch 200, float32, ``--n-jobs`` threads (default 2).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import os, sys, time, warnings
import numpy as np
import cymlp
from cymlp import MLPClassifier, _kernels
from cymlp.datasets import load_mnist

warnings.simplefilter("ignore")
n_jobs, epochs, data_home = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
X, y, _, _ = load_mnist(data_home, download=False)
X = X.astype(np.float32) * np.float32(1 / 255)
print(f"{_kernels.threads_backend()} {_kernels.simd_variant()} {cymlp.__file__}", flush=True)
for line in sys.stdin:
    if line.strip() != "fit":
        break
    clf = MLPClassifier((100,), activation="logistic", solver="sgd", learning_rate_init=0.1,
                        momentum=0.0, alpha=0.0, batch_size=200, max_iter=epochs,
                        n_iter_no_change=10**9, random_state=0, n_jobs=n_jobs)
    start = time.perf_counter()
    clf.fit(X, y)
    print((time.perf_counter() - start) / clf.n_iter_, clf.loss_, flush=True)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+",
                    help="name=path/to/src[@n_jobs] (a tree built in place)")
    ap.add_argument("--repeats", type=int, default=8, help="fits per build")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per fit")
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()
    data_home = os.environ.get("CYMLP_DATA_HOME", "../shared/data")
    children = {}
    for spec in args.builds:
        name, path = spec.split("=", 1)
        path, _, n_jobs = path.partition("@")
        env = {**os.environ, "PYTHONPATH": os.path.abspath(path)}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, n_jobs or str(args.n_jobs), str(args.epochs),
             data_home],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        print(f"{name}: {child.stdout.readline().strip()}, n_jobs={n_jobs or args.n_jobs}",
              flush=True)
        children[name] = child
    times = {name: [] for name in children}
    losses = {}
    names = list(children)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(0.5)  # (the other build's threads stop spinning)
            child = children[name]
            child.stdin.write("fit\n")
            child.stdin.flush()
            seconds, loss = child.stdout.readline().split()
            times[name].append(float(seconds))
            losses.setdefault(name, set()).add(loss)
    for child in children.values():
        child.stdin.close()
        child.wait()
    print(f"paper network, MNIST float32, {args.epochs} epochs per "
          f"fit, {args.repeats} fits per build, in turns")
    print(f"{'build':12s} {'best s/epoch':>12s} {'median':>8s} {'worst':>8s}  loss")
    base = None
    for name, t in times.items():
        best = min(t)
        base = base or best
        print(f"{name:12s} {best:12.4f} {statistics.median(t):8.4f} {max(t):8.4f}  "
              f"{' '.join(sorted(losses[name]))}  (best: {best / base:.3f}x the first)")


if __name__ == "__main__":
    main()
