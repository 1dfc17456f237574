"""What every benchmark shares: OpenBLAS on its best kernels, one thread count for every
library, settling between libraries, best-of timing with the libraries taking turns, the
data (MNIST and its dense twin), the three trainers, and a printout of what actually ran.

A script in this folder imports it (the script's directory is on ``sys.path``) and calls
:func:`clean_env` first thing in ``main()``, then :func:`set_threads` once every library
it times is imported, then :func:`print_env`.
"""

from __future__ import annotations

import itertools
import os
import platform
import sys
import time

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_CHILD = "CYMLP_BENCH_CHILD"  # set by child_env: this process's OpenBLAS variables are chosen
_REMOVED = "CYMLP_BENCH_REMOVED"  # what clean_env took out, to print


def clean_env():
    """Run this benchmark without ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``.

    OpenBLAS reads them once, when numpy (or scipy) loads it, and then keeps the kernels
    they chose (e.g. AVX2 ones on an AVX-512 CPU), so unsetting them later does nothing.
    When either is set, this re-executes the same command line without them, before any
    timing. A child process started with :func:`child_env` keeps the values chosen for it.
    """
    if os.environ.get(_CHILD) or not any(v in os.environ for v in BLAS_VARS):
        return
    removed = [f"{v}={os.environ.pop(v)}" for v in BLAS_VARS if v in os.environ]
    os.environ[_REMOVED] = " ".join(removed)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def child_env(**chosen):
    """The environment for a child process: this one's without the OpenBLAS variables,
    plus ``chosen`` (e.g. ``CYMLP_SIMD="avx2", OPENBLAS_CORETYPE="Haswell"``; None leaves
    a variable unset)."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS and k != _REMOVED}
    env.update({k: v for k, v in chosen.items() if v is not None})
    env[_CHILD] = "1"
    return env


def add_arguments(ap, repeats=3, threads=None):
    """The options every script takes: --data-home, --repeats, --threads, --samples."""
    ap.add_argument("--data-home", default=os.environ.get("CYMLP_DATA_HOME"),
                    help="the folder whose mnist/ holds the IDX files")
    ap.add_argument("--repeats", type=int, default=repeats,
                    help="fits per library; the best counts (default %(default)s)")
    ap.add_argument("--threads", type=int, default=threads,
                    help="threads for every library (default: "
                    + (f"{threads})" if threads else "cymlp's, OMP_NUM_THREADS or all cores)"))
    ap.add_argument("--samples", type=int, default=None,
                    help="train on the first N images only (a quick check that it runs)")
    return ap


_limits = None


def set_threads(n, torch=None):
    """``n`` threads for everyone: OpenBLAS (numpy, scikit-learn) and OpenMP through
    threadpoolctl, PyTorch through ``torch.set_num_threads`` (pass the module, or None),
    cymlp through the ``n_jobs=n`` its trainer passes. Call it after the libraries are
    imported: threadpoolctl limits the libraries loaded when it is called."""
    global _limits
    from threadpoolctl import threadpool_limits

    _limits = threadpool_limits(limits=n)  # kept for the life of the process
    if torch is not None:
        torch.set_num_threads(n)
    return n


def default_threads(requested=None):
    """``requested``, or cymlp's default thread count (OMP_NUM_THREADS, or all cores)."""
    from cymlp import _kernels

    return requested or _kernels.max_threads()


def blas_kernels():
    """[(user_api, internal_api, architecture, num_threads, library file)] of every BLAS
    and OpenMP runtime loaded in this process, as threadpoolctl reports them."""
    from threadpoolctl import threadpool_info

    return sorted((i["user_api"], i["internal_api"], i.get("architecture", "-"),
                   i["num_threads"], os.path.basename(i["filepath"])) for i in threadpool_info())


def print_env(threads, torch=None):
    """Print the machine, cymlp's configuration, the peers' versions and threads, and the
    kernels threadpoolctl reports (OpenBLAS's ``architecture`` is the kernel set in use)."""
    import numpy as np

    import cymlp

    print(f"{platform.machine()}, {os.cpu_count()} cores | python "
          f"{platform.python_version()} | numpy {np.__version__} | {threads} threads for "
          "every library")
    cymlp.show_config()
    if threads >= 2:
        print_core_ns("at start")
    if "sklearn" in sys.modules:
        print(f"scikit-learn             {sys.modules['sklearn'].__version__}")
    if torch is not None:
        print(f"torch                    {torch.__version__}, {torch.get_num_threads()} threads, "
              f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    removed = os.environ.get(_REMOVED)
    chosen = [f"{v}={os.environ[v]}" for v in BLAS_VARS if v in os.environ]
    print("OpenBLAS environment     " + (", ".join(chosen) if chosen else "default (unset)")
          + (f"; unset for this run: {removed}" if removed else ""))
    for user_api, api, arch, n, lib in blas_kernels():
        print(f"threadpoolctl            {user_api}: {api} {arch}, {n} threads ({lib})")


NEAR_NS = 200.0


def core_ns():
    """The round trip of one cache line between two of cymlp's threads, in ns
    (``cymlp._testing.core_to_core_ns``, 20,000 round trips: a few ms). On a virtual
    machine it says where the hypervisor has put the two vCPUs: on this project's 2-vCPU
    host, 50-100 ns (two cores that share a cache) or 320-400 ns (farther apart), and a
    second thread's data then costs several times more to share."""
    from cymlp import _testing

    _testing.core_to_core_ns(200)  # (the threads' start-up is not part of it)
    return _testing.core_to_core_ns(20000)


def placement(ns):
    """'near' below NEAR_NS round trip, 'far' at or above, '?' when not measured."""
    if ns != ns:
        return "?"
    return "near" if ns < NEAR_NS else "far"


def print_core_ns(when):
    ns = core_ns()
    print(f"core-to-core round trip  {ns:.0f} ns {when} ({placement(ns)}; near < "
          f"{NEAR_NS:.0f} ns)", flush=True)


def settle():
    """Let other libraries' thread pools stop spinning (OpenBLAS and OpenMP workers
    busy-wait for a while after each call and would steal the cores)."""
    time.sleep(0.5)


def best_of(runs, repeats):
    """{name: (best seconds, model of the last run)} of runs {name: () -> (s, model)}, each
    run ``repeats`` times, the runs taking turns so that a burst of load from elsewhere on
    the host counts against none of them."""
    best = {}
    for _ in range(repeats):
        for name, run in runs.items():
            t, model = run()
            best[name] = (min(t, best[name][0]) if name in best else t, model)
    return best


def median_latency(fn, x, repeats=2000):
    """Median seconds of ``fn(x)`` over ``repeats`` calls."""
    import numpy as np

    settle()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def turn_latencies(calls: dict, rounds: int = 7, per_round: int = 300) -> dict:
    """Median seconds of each ``fn(x)`` in ``calls`` (name -> (fn, x)), measured in
    ``rounds`` rounds that take turns between the functions; each gets the best of its
    rounds' medians, so a burst of load from elsewhere counts against none of them."""
    import numpy as np

    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, (fn, x) in calls.items():
            for _ in range(20):  # warm: caches, branch predictors, scratch memory
                fn(x)
            times = []
            for _ in range(per_round):
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
            best[name] = min(best[name], float(np.median(times)))
    return best


# ---- data ----------------------------------------------------------------------------

def load_mnist(data_home, n=None):
    """MNIST as float32 in [0, 1]: X, y, X_test, y_test (the first ``n`` training images
    when ``n`` is given: for a quick check that a script runs)."""
    import numpy as np

    from cymlp.datasets import load_mnist

    X, y, X_test, y_test = load_mnist(data_home)
    X, y = X[:n], y[:n]
    return (X.astype(np.float32) / np.float32(255), y,
            X_test.astype(np.float32) / np.float32(255), y_test)


def dense(X, seed=0):
    """X + noise from U(0, 1e-3], so that no zero is left to skip: the dense twin of MNIST
    (a user's tabular data has no zeros; the images are ~81% zeros, which cymlp skips)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    noise = np.float32(1) - rng.random(X.shape, dtype=np.float32)  # (0, 1]
    noise *= np.float32(1e-3)
    noise += X
    return noise


# ---- trainers: seconds per epoch and the model, for the same network and SGD ----------

def fit_cymlp(X, y, hidden, activation, batch, epochs, lr, threads, **params):
    """cymlp's MLPClassifier, plain SGD (no momentum, no L2), ``threads`` threads."""
    from cymlp import MLPClassifier

    clf = MLPClassifier(hidden, activation=activation, solver="sgd", learning_rate_init=lr,
                        momentum=0.0, alpha=0.0, batch_size=batch, max_iter=epochs,
                        n_iter_no_change=10**9, random_state=0, n_jobs=threads, **params)
    settle()
    start = time.perf_counter()
    clf.fit(X, y)
    return (time.perf_counter() - start) / clf.n_iter_, clf


def fit_sklearn(X, y, hidden, activation, batch, epochs, lr):
    """scikit-learn's MLPClassifier with the same settings (float32 input stays float32;
    its threads are OpenBLAS's, set by :func:`set_threads`)."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden, activation=activation, solver="sgd", learning_rate_init=lr,
                        momentum=0.0, alpha=0.0, batch_size=batch, max_iter=epochs,
                        n_iter_no_change=10**9, random_state=0)
    settle()
    start = time.perf_counter()
    clf.fit(X, y)
    return (time.perf_counter() - start) / clf.n_iter_, clf


def fit_torch(X, y, hidden, activation, batch, epochs, lr):
    """PyTorch (CPU), the same network as nn.Sequential trained by its eager loop: shuffle,
    slice a minibatch, forward, cross-entropy, backward, ``torch.optim.SGD`` step."""
    import numpy as np
    import torch

    act = {"logistic": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}
    torch.manual_seed(0)
    layers = []
    for a, b in itertools.pairwise([X.shape[1], *hidden, int(y.max()) + 1]):
        layers += [torch.nn.Linear(a, b), act[activation]()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    settle()
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return (time.perf_counter() - start) / epochs, model


def torch_accuracy(model, X, y):
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(X)).argmax(1).numpy() == y).mean())


def import_torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch
