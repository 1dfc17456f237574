"""cymlp's speed targets, measured against PyTorch (CPU), scikit-learn and numpy in one run.

    python benchmarks/bench_speed.py [--data-home ../shared/data] [--epochs 5] [--repeats 3]
                                     [--threads N] [--per-sample 10000] [--samples N]

Rows: the paper's network (784-100-10 logistic, SGD lr 0.1, batch 200) in s/epoch; a
wide network (784-512-512-10 relu, batch 256); both on MNIST and on dense inputs (MNIST
+ U(0, 1e-3) noise: no zero left for cymlp to skip, as in a user's tabular data);
per-sample SGD (batch 1, 10,000 samples) against PyTorch's eager per-step loop, in
samples/s; one-row latency of predict / predict_proba (float32 and float64 rows)
and batch throughput, beside onnxruntime; and GFLOP/s of cymlp's
matrix kernel against numpy's sgemm on the training shapes. float32 throughout.

Every peer gets its best: OpenBLAS (numpy's, scikit-learn's) on the kernels it picks
for this CPU (``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are unset for this process;
the kernels threadpoolctl reports are printed), the same thread count for cymlp,
OpenBLAS and PyTorch (``--threads``, default cymlp's: OMP_NUM_THREADS or all cores).
The machine is shared and noisy: compare ratios within one run. Each training time is
the best of ``--repeats`` runs, the libraries taking turns, so a burst of load from
elsewhere on the host counts against none of them (kernel timings are the best of as
many runs too). A fit's time per epoch includes its once-per-fit work (input
validation, e.g. the finite check of X: ~23 ms for cymlp on MNIST), so a fit of a few
epochs overstates the cost of an epoch; 5 epochs (2 of the wide network) keep that
share small.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import _bench as B


def kernel_table(threads, repeats):
    """GFLOP/s of cymlp's matrix kernel and numpy's sgemm on the training shapes: all of
    cymlp's first, then numpy's, because OpenBLAS's threads keep spinning for a while
    after each call and would steal the cores from cymlp's threads if the two alternated."""
    from cymlp import _testing

    print(f"\n{'kernel shape (M,N,K)':26s} {'cymlp GF/s':>10s} {'numpy GF/s':>10s} {'ratio':>6s}")
    rng = np.random.RandomState(0)
    shapes = [(200, 100, 784, "A.W"), (784, 100, 200, "A^T.delta"),
              (200, 784, 100, "delta.W^T"), (256, 512, 784, "wide A.W")]
    operands = [(rng.rand(M, K).astype(np.float32), rng.rand(K, N).astype(np.float32))
                for M, N, K, _ in shapes]
    gflops = {}
    for lib in ("cymlp", "numpy"):
        for (M, N, K, what), (A, W) in zip(shapes, operands):
            reps = max(5, int(4e9 / (2 * M * N * K)))
            B.settle()
            best = np.inf
            for _ in range(repeats):
                if lib == "cymlp":
                    _testing.matmul(A, W, threads)
                    t0 = time.perf_counter()
                    _testing.matmul(A, W, threads, repeat=reps)  # the kernel alone
                else:
                    A @ W
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        A @ W
                best = min(best, time.perf_counter() - t0)
            gflops[lib, what] = 2 * M * N * K * reps / best / 1e9
    for M, N, K, what in shapes:
        c, n = gflops["cymlp", what], gflops["numpy", what]
        print(f"{what + ' ' + str((M, N, K)):26s} {c:10.1f} {n:10.1f} {c / n:6.2f}")


def _ort_session(onnx_model: bytes, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model, so, providers=["CPUExecutionProvider"])


def latency_child(folder: str) -> None:
    """The one-row latencies, in a process of their own as an application has: it loads
    the saved models (cymlp's estimators with cymlp.load, the predictor with
    cymlp.inference.load, scikit-learn's by pickle, the ONNX graph in onnxruntime with 1
    thread, as a per-request caller would set it) and times them in turns."""
    import pickle

    import cymlp
    from cymlp import inference

    d = Path(folder)
    one32 = np.load(d / "row.npy")
    one64 = one32.astype(np.float64)
    clf, reg = cymlp.load(d / "clf.npz"), cymlp.load(d / "reg.npz")
    pred = inference.load(d / "clf.npz")
    sk = pickle.loads((d / "sk.pkl").read_bytes())
    calls = {  # name -> (fn, x)
        "c32": (clf.predict, one32), "i32": (pred.predict, one32),
        "c64": (clf.predict, one64), "i64": (pred.predict, one64),
        "cp": (clf.predict_proba, one32), "ip": (pred.predict_proba, one32),
        "r32": (reg.predict, one32), "r64": (reg.predict, one64),
    }
    if (d / "clf.onnx").exists():
        sess = _ort_session((d / "clf.onnx").read_bytes(), 1)
        calls["o32"] = (lambda x: sess.run(["label"], {"X": x}), one32)
        calls["o64"] = (lambda x: sess.run(["label"], {"X": x.astype(np.float32)}), one64)
        calls["op"] = (lambda x: sess.run(["probabilities"], {"X": x}), one32)
    B.settle()
    t = B.turn_latencies(calls)
    sk_t = B.turn_latencies({"s32": (sk.predict, one32), "s64": (sk.predict, one64),
                             "sp": (sk.predict_proba, one32)}, rounds=3, per_round=100)
    rows = [  # (what, cymlp estimator, cymlp.inference, onnxruntime, scikit-learn, target)
        ("predict, float32 row", t["c32"], t["i32"], t.get("o32"), sk_t["s32"], 8),
        ("predict, float64 row (float32 model)", t["c64"], t["i64"], t.get("o64"),
         sk_t["s64"], 15),
        ("predict_proba, float32 row", t["cp"], t["ip"], t.get("op"), sk_t["sp"], 8),
        ("MLPRegressor.predict, float32 row", t["r32"], None, None, None, 8),
        ("MLPRegressor.predict, float64 row", t["r64"], None, None, None, 15),
    ]
    head = "one row, median us (best of 7 rounds)"
    print(f"{head:38s} {'cymlp':>7s} {'infer.':>7s} {'ORT':>7s} {'sklearn':>8s} "
          f"{'target':>7s}")
    for what, *values, target in rows:
        cells = [f"{v * 1e6:7.1f}" if v else f"{'-':>7s}" for v in values]
        print(f"{what:38s} {' '.join(cells[:3])} {cells[3]:>8s} {target:7d}")


def prediction_table(clf, sk, X, y, nt, torch, tmodel):
    """One-row latency of predict (float32 row; float64 row into the float32 model, as
    pandas hands rows over) and predict_proba, in a child process (latency_child), and
    batch throughput of predict_proba here: cymlp's estimator and cymlp.inference's
    predictor beside onnxruntime on the same network (cymlp.to_onnx's graph) and
    scikit-learn / PyTorch."""
    import pickle
    import subprocess
    import tempfile

    from cymlp import MLPRegressor, inference

    one32 = X[:1].copy()
    batch = X[:10000].copy()
    reg = MLPRegressor(hidden_layer_sizes=(100,), activation="logistic", solver="sgd",
                       learning_rate_init=0.01, max_iter=1, batch_size=200, random_state=0,
                       n_jobs=nt).fit(X[:10000], y[:10000].astype(np.float32))
    sessn = None
    with tempfile.TemporaryDirectory() as folder:
        d = Path(folder)
        np.save(d / "row.npy", one32)
        clf.save(d / "clf.npz")
        reg.save(d / "reg.npz")
        (d / "sk.pkl").write_bytes(pickle.dumps(sk))
        pred = inference.load(d / "clf.npz")
        try:
            import onnxruntime as ort

            import cymlp

            model = cymlp.to_onnx(clf).SerializeToString()
            (d / "clf.onnx").write_bytes(model)
            sessn = _ort_session(model, nt)
            print(f"\nonnxruntime {ort.__version__}: 1 thread for one row, {nt} for batches")
        except ImportError:
            print("\nonnxruntime not installed (pip install 'cymlp[onnx]'): no ORT column")
        if tmodel is not None:
            with torch.no_grad():
                xt = torch.from_numpy(one32)
                lt = B.turn_latencies({"t": (lambda x: torch.softmax(tmodel(x), 1), xt)})
            print(f"PyTorch forward + softmax, one row: {lt['t'] * 1e6:.1f} us")
        print("one-row latencies in a fresh process that loads the saved models:")
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__, "--latency-child", folder], check=True,
                       env=B.child_env())

    def per_second(fn, repeats=5):
        best = float("inf")
        for _ in range(repeats):
            B.settle()
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return len(batch) / best

    thr = [("cymlp predict_proba", per_second(lambda: clf.predict_proba(batch))),
           ("cymlp.inference predict_proba", per_second(lambda: pred.predict_proba(batch)))]
    if sessn is not None:
        thr.append(("onnxruntime (probabilities)",
                    per_second(lambda: sessn.run(["probabilities"], {"X": batch}))))
    thr.append(("scikit-learn predict_proba", per_second(lambda: sk.predict_proba(batch))))
    print(f"\nbatch of {len(batch)} MNIST rows, {nt} threads, best of 5: rows/s")
    for name, r in thr:
        print(f"  {name:32s} {r:12,.0f}  ({r / thr[0][1]:.2f}x cymlp's)")


def main():
    if sys.argv[1:2] == ["--latency-child"]:
        latency_child(sys.argv[2])
        return
    B.clean_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    B.add_arguments(ap)
    ap.add_argument("--epochs", type=int, default=5,
                    help="epochs per fit of the paper's network (the wide one: half as many)")
    ap.add_argument("--per-sample", type=int, default=10000,
                    help="samples of the batch-1 SGD row")
    args = ap.parse_args()

    import sklearn.neural_network  # noqa: F401  (loads scipy's OpenBLAS before set_threads)

    torch = B.import_torch()
    X, y, _, _ = B.load_mnist(args.data_home, args.samples)
    Xd = B.dense(X)
    nt = B.set_threads(B.default_threads(args.threads), torch)
    B.print_env(nt, torch)
    kernel_table(nt, args.repeats)

    E, R = args.epochs, args.repeats
    EW = max(1, E // 2)
    data = {"MNIST": X, "dense": Xd}
    rows = []  # (name, other's seconds, cymlp's seconds, target for other / cymlp or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 1. the paper's network, MNIST and dense inputs taking turns
        runs = {}
        for d, Xi in data.items():
            runs["cymlp", d] = lambda Xi=Xi: B.fit_cymlp(Xi, y, (100,), "logistic", 200, E,
                                                         0.1, nt)
            runs["sklearn", d] = lambda Xi=Xi: B.fit_sklearn(Xi, y, (100,), "logistic", 200,
                                                             E, 0.1)
            if torch is not None:
                runs["torch", d] = lambda Xi=Xi: B.fit_torch(Xi, y, (100,), "logistic", 200,
                                                             E, 0.1)
        best = B.best_of(runs, R)
        clf, sk = best["cymlp", "MNIST"][1], best["sklearn", "MNIST"][1]
        targets = {("sklearn", "MNIST"): 3.5, ("torch", "MNIST"): 2.5}
        for d in data:
            for peer, label in (("sklearn", "scikit-learn"), ("torch", "PyTorch")):
                if (peer, d) in best:
                    rows.append((f"paper net, {d}, s/epoch: {label} / cymlp",
                                 best[peer, d][0], best["cymlp", d][0], targets.get((peer, d))))
        if torch is not None:
            tmodel = best["torch", "MNIST"][1]
            # 2. wide network
            runs = {}
            for d, Xi in data.items():
                runs["cymlp", d] = lambda Xi=Xi: B.fit_cymlp(Xi, y, (512, 512), "relu", 256,
                                                             EW, 0.05, nt)
                runs["torch", d] = lambda Xi=Xi: B.fit_torch(Xi, y, (512, 512), "relu", 256,
                                                             EW, 0.05)
            best = B.best_of(runs, R)
            for d in data:
                rows.append((f"wide net, {d}, s/epoch: PyTorch / cymlp", best["torch", d][0],
                             best["cymlp", d][0], 1.3 if d == "MNIST" else None))
            # 3. per-sample SGD on 10,000 samples (seconds per epoch of them: the ratio
            # of samples/s, cymlp / PyTorch's eager per-step loop)
            Xs, ys = X[:args.per_sample], y[:args.per_sample]
            best = B.best_of({
                "cymlp": lambda: B.fit_cymlp(Xs, ys, (100,), "logistic", 1, 1, 0.01, nt),
                "torch": lambda: B.fit_torch(Xs, ys, (100,), "logistic", 1, 1, 0.01)}, R)
            rows.append(("per-sample SGD, MNIST, samples/s: cymlp / PyTorch's eager "
                         "per-step loop", best["torch"][0], best["cymlp"][0], 20))
    # 4. prediction: one-row latency and batch throughput, onnxruntime beside each
    prediction_table(clf, sk, X, y, nt, torch, tmodel if torch is not None else None)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'ratio (higher is better for cymlp)':{w}s} {'value':>7s} {'target':>7s}"
          f" {'other s':>9s} {'cymlp s':>9s}")
    for name, a, b, target in rows:
        t = f"{target:7.1f}" if target else f"{'-':>7s}"
        print(f"{name:{w}s} {a / b:7.2f} {t} {a:9.4f} {b:9.4f}")


if __name__ == "__main__":
    main()
