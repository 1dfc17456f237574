"""How cymlp's training scales with threads, and how it would on more cores.

For the paper's network on MNIST, its dense-input twin, and the wide 784-512-512-10
relu network: fits at every thread count from 1 to the cores present, interleaved
(each round runs every count once, so a burst of load from elsewhere hits all counts
alike) and repeated; per count the median and spread of s/epoch, and the median
speed-up over one thread. PyTorch trains the same networks at the same counts.

From the engine's profile (``cymlp._engine.profile()``: time inside and outside the
parallel regions, and the threads' waiting at each region's end) it reports the serial
share of an epoch and the waiting, then fits Amdahl's law t(T) = s + p / T and projects
the speed-up at 8 and 16 cores. Measured and projected values are labelled as such.
"fewer T" is the share of the fits' full batches that the engine's thread-count chooser
ran on fewer threads than asked because it measured that faster (CYMLP_ADAPTIVE_THREADS=0 in
the environment turns the chooser off; "-": off, or one thread asked for).

A fit's speed depends on where the two threads' cores are: before and after every fit
with several threads a probe times the round trip of one cache line between two threads,
and a second table gives the medians of the fits made while the cores were near each
other (sharing a cache) and while they were far apart. On this 2-vCPU host the
hypervisor moves the vCPUs between the two every few seconds to minutes.

    CYMLP_DATA_HOME=../shared/data python benchmarks/bench_threads.py
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import _bench as B

NETWORKS = {
    # name: (hidden, activation, batch, learning rate, dense inputs)
    "paper 784-100-10, batch 200": ((100,), "logistic", 200, 0.1, False),
    "paper, dense inputs": ((100,), "logistic", 200, 0.1, True),
    "wide 784-512-512-10 relu, batch 256": ((512, 512), "relu", 256, 0.01, False),
}


def cymlp_epoch(X, y, hidden, activation, batch, lr, threads, epochs):
    """Median s/epoch of one fit (the engine's own epoch times), and its profile."""
    from cymlp import MLPClassifier, _engine

    clf = MLPClassifier(hidden, activation=activation, solver="sgd", learning_rate_init=lr,
                        momentum=0.0, alpha=0.0, batch_size=batch, max_iter=epochs,
                        n_iter_no_change=10**9, random_state=0, n_jobs=threads)
    _engine.reset_parallel_counts()
    with warnings.catch_warnings():  # (a few epochs never converge: that is the point)
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    return statistics.median(clf.history_["seconds"]), _engine.profile()


def probed(threads, fit, *args):
    """fit(*args) between two core-to-core probes (for two threads or more): its result and
    the placement of the vCPUs, 'near' or 'far' when both probes agree, else 'mixed'."""
    B.settle()
    before = B.core_ns() if threads > 1 else float("nan")
    result = fit(*args)
    after = B.core_ns() if threads > 1 else float("nan")
    a, b = B.placement(before), B.placement(after)
    return result, (a if a == b else "mixed")


def by_placement(name, counts, times, torch_times, where, torch_where):
    """Rows of the placement table: per thread count above 1 and placement, the fits,
    their median s/epoch and the median of their rounds' speed-ups, for both libraries."""
    for T in counts[1:]:
        for state in ("near", "far", "mixed"):
            rounds = [r for r, w in enumerate(where[T]) if w == state]
            trounds = [r for r, w in enumerate(torch_where[T]) if w == state]
            if not rounds and not trounds:
                continue
            line = f"{name:38s} {T:2d} {state:>9s} {len(rounds):4d} "
            if rounds:
                med = statistics.median(times[T][r] for r in rounds)
                up = statistics.median(times[1][r] / times[T][r] for r in rounds)
                line += f"{med:11.4f} {up:7.3f}x"
            else:
                line += f"{'-':>11s} {'-':>8s}"
            if trounds:
                up = statistics.median(torch_times[1][r] / torch_times[T][r]
                                       for r in trounds)
                line += f" {len(trounds):10d} {up:7.3f}x"
            print(line)
            name = ""


def amdahl(counts, times):
    """The serial fraction f = s / (s + p) (clipped to [0, 1]) of the least-squares
    t(T) = s + p / T over the measured (T, t)."""
    A = np.array([[1.0, 1.0 / T] for T in counts])
    (s, p), *_ = np.linalg.lstsq(A, np.array(times), rcond=None)
    return min(1.0, max(0.0, s / (s + p)))


def speedup(f, n):
    """Amdahl's law: the speed-up on n cores of work whose serial fraction is f."""
    return 1.0 / (f + (1.0 - f) / n)


def main():
    B.clean_env()
    ap = B.add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]),
                         repeats=8)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per fit (default 2)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = ap.parse_args()
    import os

    cores = args.threads or os.cpu_count()
    counts = list(range(1, cores + 1))
    torch = None if args.no_torch else B.import_torch()
    X, y, _, _ = B.load_mnist(args.data_home, args.samples)
    Xd = B.dense(X)
    B.print_env(cores, torch)
    print(f"\n{args.repeats} rounds, each fitting every thread count once ({counts}); "
          f"{args.epochs} epochs per fit, float32")
    rows = []
    for name, (hidden, act, batch, lr, is_dense) in NETWORKS.items():
        data = Xd if is_dense else X
        times = {T: [] for T in counts}
        torch_times = {T: [] for T in counts}
        profiles = {T: [] for T in counts}
        where = {T: [] for T in counts}
        torch_where = {T: [] for T in counts}
        for _ in range(args.repeats):
            for T in counts:
                (t, prof), w = probed(T, cymlp_epoch, data, y, hidden, act, batch, lr, T,
                                      args.epochs)
                times[T].append(t)
                profiles[T].append(prof)
                where[T].append(w)
                if torch is not None:
                    torch.set_num_threads(T)
                    (tt, _), w = probed(T, B.fit_torch, data, y, hidden, act, batch, 1, lr)
                    torch_times[T].append(tt)
                    torch_where[T].append(w)
        rows.append((name, times, torch_times, profiles, where, torch_where))
        print(f"  {name}: done", flush=True)

    print(f"\n{'network':38s} {'T':>2s} {'median s/ep':>11s} {'min-max':>15s} "
          f"{'speed-up':>8s} {'serial':>7s} {'waiting':>8s} {'fewer T':>7s} "
          f"{'torch s/ep':>10s} {'torch x':>7s}")
    summary = []
    for name, times, torch_times, profiles, _, _ in rows:
        med1 = statistics.median(times[1])
        tmed1 = statistics.median(torch_times[1]) if torch_times[1] else None
        for T in counts:
            med = statistics.median(times[T])
            # the median of the per-round speed-ups (rounds pair up the counts in time)
            up = statistics.median(a / b for a, b in zip(times[1], times[T]))
            prof = profiles[T]
            epoch = sum(p["epoch"] for p in prof)
            serial = sum(p["epoch"] - p["parallel"] for p in prof) / epoch
            waiting = sum(p["waiting"] for p in prof) / (epoch * T)
            batches = sum(p["batches"] for p in prof)
            fewer = f"{sum(p['fewer'] for p in prof) / batches:7.1%}" if batches else "      -"
            tm = statistics.median(torch_times[T]) if torch_times[T] else None
            tup = (statistics.median(a / b for a, b in zip(torch_times[1], torch_times[T]))
                   if tm else None)
            print(f"{name if T == 1 else '':38s} {T:2d} {med:11.4f} "
                  f"{min(times[T]):7.4f}-{max(times[T]):7.4f} {up:7.3f}x {serial:6.1%} "
                  f"{waiting:7.1%} {fewer} "
                  + (f"{tm:10.4f} {tup:6.3f}x" if tm else f"{'-':>10s}"))
        f_fit = amdahl(counts, [statistics.median(times[T]) for T in counts])
        prof1 = profiles[1]
        f_meas = sum(q["epoch"] - q["parallel"] for q in prof1) / sum(q["epoch"] for q in prof1)
        summary.append((name, f_meas, f_fit, med1, tmed1))

    if len(counts) > 1:
        print(f"\nBy placement of the threads' cores: each fit with 2 threads or more is "
              f"'near' when the round trip of a cache line between two threads "
              f"(cymlp._testing.core_to_core_ns) was under {B.NEAR_NS:.0f} ns both just "
              "before and just after it, 'far' when it was over both times, else 'mixed'. "
              "The speed-up is the median over those fits' rounds.")
        print(f"{'network':38s} {'T':>2s} {'placement':>9s} {'fits':>4s} {'median s/ep':>11s} "
              f"{'speed-up':>8s} {'torch fits':>10s} {'torch x':>7s}")
        for name, times, torch_times, _, where, torch_where in rows:
            by_placement(name, counts, times, torch_times, where, torch_where)

    print("\nAmdahl's law, t(T) = s + p / T. 'serial (measured)' is the share of a "
          "one-thread epoch spent outside the parallel regions (engine profile); 'serial "
          "(fit)' is s / (s + p) fitted to the median times above, which also charges the "
          "waiting and the threads' wake-ups to the serial part. The 8- and 16-core "
          "speed-ups are PROJECTED from each, not measured:")
    print(f"{'network':38s} {'serial (measured)':>17s} {'x8':>6s} {'x16':>6s} "
          f"{'serial (fit)':>12s} {'x8':>6s} {'x16':>6s}")
    for name, f_meas, f_fit, _, _ in summary:
        print(f"{name:38s} {f_meas:17.2%} {speedup(f_meas, 8):5.2f}x "
              f"{speedup(f_meas, 16):5.2f}x {f_fit:12.2%} {speedup(f_fit, 8):5.2f}x "
              f"{speedup(f_fit, 16):5.2f}x")
    print(f"\n(done at {time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
