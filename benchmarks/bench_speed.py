"""cymlp's speed targets, measured against PyTorch (CPU), scikit-learn and numpy in one run.

    python benchmarks/bench_speed.py [--data-home ../shared/data] [--epochs 5] [--repeats 3]

Rows: the paper's network (784-100-10 logistic, SGD lr 0.1, batch 200) in s/epoch; a
wide network (784-512-512-10 relu, batch 256); per-sample SGD (batch 1, 10,000 samples)
in samples/s; the median latency of predict_proba on one sample; and GFLOP/s of
cymlp's matrix kernel against numpy's sgemm on the training shapes. float32 throughout,
all threads (2 here). The machine is shared and noisy: compare ratios within one run.
Each training time is the best of ``--repeats`` runs, the libraries taking turns, so a
burst of load from elsewhere on the host counts against none of them (kernel timings
are the best of as many runs too). A fit's time per epoch includes its once-per-fit
work (input validation, e.g. the finite check of X: ~23 ms for cymlp on MNIST), so a
fit of a few epochs overstates the cost of an epoch; 5 epochs (2 of the wide network)
keep that share small.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings

import numpy as np


def _torch_epoch(X, y, sizes, act, batch, epochs, lr=0.1):
    import torch

    torch.manual_seed(0)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), act()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    _settle()
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return (time.perf_counter() - start) / epochs, model


def _cymlp_epoch(X, y, hidden, act, batch, epochs, lr=0.1):
    from cymlp import MLPClassifier

    clf = MLPClassifier(hidden, activation=act, solver="sgd", learning_rate_init=lr,
                        momentum=0.0, alpha=0.0, batch_size=batch, max_iter=epochs,
                        n_iter_no_change=10**9, random_state=0)
    _settle()
    start = time.perf_counter()
    clf.fit(X, y)
    return (time.perf_counter() - start) / clf.n_iter_, clf


def _sklearn_epoch(X, y, epochs):
    from sklearn.neural_network import MLPClassifier as Sk

    sk = Sk((100,), activation="logistic", solver="sgd", learning_rate_init=0.1,
            momentum=0.0, alpha=0.0, batch_size=200, max_iter=epochs, random_state=0)
    _settle()
    start = time.perf_counter()
    sk.fit(X, y)
    return (time.perf_counter() - start) / sk.n_iter_, sk


def _best_of(runs, repeats):
    """{name: (best seconds, model of the last run)} of runs {name: () -> (s, model)},
    each run ``repeats`` times, taking turns."""
    best = {}
    for _ in range(repeats):
        for name, run in runs.items():
            t, model = run()
            best[name] = (min(t, best.get(name, (np.inf,))[0]), model)
    return best


def _settle():
    """Let other libraries' thread pools stop spinning (OpenBLAS and OpenMP workers
    busy-wait for a while after each call and would steal the 2 cores)."""
    time.sleep(0.5)


def _median_latency(fn, x, repeats=2000):
    _settle()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-home", default=os.environ.get("CYMLP_DATA_HOME"))
    ap.add_argument("--epochs", type=int, default=5,
                    help="epochs per fit of the paper's network (the wide one: half as many)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import cymlp
    from cymlp import _kernels
    from cymlp.datasets import load_mnist

    try:
        import torch
    except ImportError:
        torch = None
    X, y, _, _ = load_mnist(args.data_home)
    X = X.astype(np.float32) / np.float32(255)
    cymlp.show_config()
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    # 5. kernel GFLOP/s vs numpy sgemm: all of cymlp's first, then numpy's, because
    # OpenBLAS's threads keep spinning for a while after each call and would steal the
    # cores from cymlp's threads if the two alternated
    print(f"\n{'kernel shape (M,N,K)':26s} {'cymlp GF/s':>10s} {'numpy GF/s':>10s} {'ratio':>6s}")
    rng = np.random.RandomState(0)
    nt = _kernels.max_threads()
    shapes = [(200, 100, 784, "A.W"), (784, 100, 200, "A^T.delta"),
              (200, 784, 100, "delta.W^T"), (256, 512, 784, "wide A.W")]
    operands = [(rng.rand(M, K).astype(np.float32), rng.rand(K, N).astype(np.float32))
                for M, N, K, _ in shapes]
    gflops = {}
    for lib in ("cymlp", "numpy"):
        for (M, N, K, what), (A, B) in zip(shapes, operands):
            reps = max(5, int(4e9 / (2 * M * N * K)))
            _settle()
            best = np.inf
            for _ in range(args.repeats):  # the best of a few, as for training below
                if lib == "cymlp":
                    _kernels.matmul(A, B, nt)
                    t0 = time.perf_counter()
                    _kernels.matmul(A, B, nt, repeat=reps)  # the kernel alone
                else:
                    A @ B
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        A @ B
                best = min(best, time.perf_counter() - t0)
            gflops[lib, what] = 2 * M * N * K * reps / best / 1e9
    for M, N, K, what in shapes:
        c, n = gflops["cymlp", what], gflops["numpy", what]
        print(f"{what + ' ' + str((M, N, K)):26s} {c:10.1f} {n:10.1f} {c / n:6.2f}")
    E, R = args.epochs, args.repeats
    EW = max(1, E // 2)
    rows = []  # (name, other's seconds, cymlp's seconds, target for other / cymlp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 1. the paper's network
        runs = {"cymlp": lambda: _cymlp_epoch(X, y, (100,), "logistic", 200, E),
                "sklearn": lambda: _sklearn_epoch(X, y, E)}
        if torch is not None:
            runs["torch"] = lambda: _torch_epoch(X, y, [784, 100, 10], torch.nn.Sigmoid,
                                                 200, E)
        best = _best_of(runs, R)
        (t_c, clf), (t_s, sk) = best["cymlp"], best["sklearn"]
        rows.append(("paper net s/epoch: scikit-learn / cymlp", t_s, t_c, 3.5))
        if torch is not None:
            t_t, tmodel = best["torch"]
            rows.append(("paper net s/epoch: PyTorch / cymlp", t_t, t_c, 2.5))
            # 2. wide network
            best = _best_of({
                "cymlp": lambda: _cymlp_epoch(X, y, (512, 512), "relu", 256, EW, lr=0.05),
                "torch": lambda: _torch_epoch(X, y, [784, 512, 512, 10], torch.nn.ReLU, 256,
                                              EW, lr=0.05)}, R)
            rows.append(("wide net s/epoch: PyTorch / cymlp", best["torch"][0],
                         best["cymlp"][0], 1.3))
            # 3. per-sample SGD on 10,000 samples (seconds per epoch of them: the ratio
            # of samples/s, cymlp / PyTorch)
            Xs, ys = X[:10000], y[:10000]
            best = _best_of({
                "cymlp": lambda: _cymlp_epoch(Xs, ys, (100,), "logistic", 1, 1, lr=0.01),
                "torch": lambda: _torch_epoch(Xs, ys, [784, 100, 10], torch.nn.Sigmoid, 1, 1,
                                              lr=0.01)}, R)
            rows.append(("per-sample SGD samples/s: cymlp / PyTorch", best["torch"][0],
                         best["cymlp"][0], 20))
    # 4. predict latency on one sample
    one = X[:1].copy()
    lat_c = _median_latency(clf.predict_proba, one)
    lat_s = _median_latency(sk.predict_proba, one)
    print(f"\npredict_proba, 1 sample, median: cymlp {lat_c * 1e6:.1f} us, "
          f"scikit-learn {lat_s * 1e6:.1f} us (target: cymlp <= 10 us)")
    if torch is not None:
        with torch.no_grad():
            xt = torch.from_numpy(one)
            lat_t = _median_latency(lambda x: torch.softmax(tmodel(x), 1), xt)
        print(f"PyTorch forward+softmax, 1 sample, median: {lat_t * 1e6:.1f} us")
    print(f"\n{'ratio (higher is better for cymlp)':44s} {'value':>7s} {'target':>7s}"
          f" {'other s':>9s} {'cymlp s':>9s}")
    for name, a, b, target in rows:
        print(f"{name:44s} {a / b:7.2f} {target:7.1f} {a:9.4f} {b:9.4f}")


if __name__ == "__main__":
    main()
