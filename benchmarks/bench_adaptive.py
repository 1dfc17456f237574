"""What the engine's thread-count chooser gains and costs: paired fits in one process.

Each round fits one network three times in a row: one thread, then n_jobs threads with
the chooser off (CYMLP_ADAPTIVE_THREADS=0) and with it on, in turns; a core-to-core
probe (``_bench.core_ns``) runs before and after the round and classifies it as near,
far or mixed (see bench_threads.py). Neighbouring fits see the same host state, so the
ratios within a round cancel most of the noise that medians of separate runs keep. It
prints each round, then per placement the median speed-ups over one thread of the fixed
and the adaptive fits and the median ratio fixed / adaptive (> 1: the chooser is faster).
"fewer T" is the share of the adaptive fit's full batches run on fewer threads than asked.

    CYMLP_DATA_HOME=../shared/data python benchmarks/bench_adaptive.py [--seconds 300]
                                                                      [--network wide]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import _bench as B
from bench_threads import NETWORKS, cymlp_epoch


def fit(args, X, y, threads, adaptive):
    os.environ["CYMLP_ADAPTIVE_THREADS"] = "1" if adaptive else "0"  # read by each engine
    hidden, act, batch, lr, _ = NETWORKS[args.network]
    t, prof = cymlp_epoch(X, y, hidden, act, batch, lr, threads, args.epochs)
    return t, prof["fewer"] / prof["batches"] if prof["batches"] else 0.0


def main():
    B.clean_env()
    ap = B.add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]),
                         threads=2)
    ap.add_argument("--seconds", type=float, default=300, help="rounds for this long")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per fit (default 2)")
    ap.add_argument("--network", default="paper", choices=["paper", "dense", "wide"])
    args = ap.parse_args()
    args.network = next(n for n in NETWORKS if n.startswith(args.network))
    X, y, _, _ = B.load_mnist(args.data_home, args.samples)
    if NETWORKS[args.network][4]:
        X = B.dense(X)
    T = args.threads
    B.print_env(T)
    print(f"\n{args.network}: rounds of 1 thread, {T} fixed, {T} adaptive; "
          f"{args.epochs} epochs per fit, float32")
    rounds = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        c0 = B.core_ns()
        t1, _ = fit(args, X, y, 1, False)
        if len(rounds) % 2:  # (the order alternates: no setting is always the last)
            ta, share = fit(args, X, y, T, True)
            tf, _ = fit(args, X, y, T, False)
        else:
            tf, _ = fit(args, X, y, T, False)
            ta, share = fit(args, X, y, T, True)
        c1 = B.core_ns()
        where = B.placement(max(c0, c1)) if B.placement(c0) == B.placement(c1) else "mixed"
        rounds.append((where, t1, tf, ta))
        print(f"{where:5s} c2c {c0:4.0f}/{c1:4.0f} ns  1 T {t1:.4f}  fixed {tf:.4f} "
              f"({t1 / tf:.3f}x)  adaptive {ta:.4f} ({t1 / ta:.3f}x, {share:.0%} fewer T)",
              flush=True)
    print(f"\n{'placement':9s} {'rounds':>6s} {'fixed':>7s} {'adaptive':>8s} "
          f"{'fixed/adaptive':>14s}   (median speed-ups over 1 thread)")
    for where in ("near", "far", "mixed"):
        r = [x for x in rounds if x[0] == where]
        if r:
            print(f"{where:9s} {len(r):6d} {statistics.median(a / b for _, a, b, _ in r):6.3f}x "
                  f"{statistics.median(a / c for _, a, _, c in r):7.3f}x "
                  f"{statistics.median(b / c for _, _, b, c in r):14.3f}")
    print(f"\n(done at {time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
