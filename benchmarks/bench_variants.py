"""Every SIMD variant of cymlp this CPU can run against scikit-learn on the matching
OpenBLAS kernels and against PyTorch: the paper's network, MNIST and dense inputs.

    python benchmarks/bench_variants.py [--epochs 3] [--repeats 3] [--threads 2]
                                        [--variants avx2,baseline] [--data-home ...]

For each variant in ``cymlp._kernels.simd_variants()`` a child process is started with
``CYMLP_SIMD`` set to it and OpenBLAS (numpy's and scipy's, which scikit-learn runs)
held to the same instruction set through ``OPENBLAS_CORETYPE``:

    avx512    unset: OpenBLAS's best kernels for this CPU (SkylakeX/Cooperlake/...)
    avx2      Haswell (AVX2 + FMA)
    baseline  Nehalem (SSE2 ... SSE4.2; cymlp's baseline is SSE2)
    portable  unset: OpenBLAS's best kernels. The plain-C kernels are what a build with
              no SIMD variant runs (MSVC's Windows wheels today), and its users' numpy
              and scikit-learn still run OpenBLAS's best, so that is the comparison.

``OPENBLAS_L2_SIZE`` is unset everywhere. PyTorch runs its own dispatch in every child
(its CPU capability is printed). In each child the three libraries train the paper's
network (784-100-10 logistic, softmax, cross-entropy, plain SGD lr 0.1, batch 200,
float32 for all three: scikit-learn keeps float32 input in float32) on the same number
of threads, taking turns, on MNIST (~81% zeros, which cymlp skips) and on dense inputs
(MNIST + U(0, 1e-3): no zero to skip); each figure is the best of ``--repeats`` fits.
Each child prints the OpenBLAS kernels threadpoolctl reports, and the round trip of a
cache line between two threads before and after its fits (``_bench.core_ns``). The host
is noisy: compare the ratios within a row, which come from one child.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings

import _bench as B

CORETYPE = {"avx512": None, "avx2": "Haswell", "baseline": "Nehalem", "portable": None}
TARGET = {"avx512": (4.0, 2.5), "avx2": (3.0, 1.8)}  # x scikit-learn, MNIST / dense (issue 15)
RESULT = "RESULT "


def child(args):
    """Time the three libraries under this process's CYMLP_SIMD / OPENBLAS_CORETYPE and
    print one RESULT line of JSON."""
    import sklearn.neural_network  # noqa: F401  (loads scipy's OpenBLAS before set_threads)

    from cymlp import _kernels

    torch = B.import_torch()
    X, y, _, _ = B.load_mnist(args.data_home, args.samples)
    data = {"MNIST": X, "dense": B.dense(X)}
    nt = B.set_threads(args.threads, torch)
    B.print_env(nt, torch)
    if _kernels.simd_variant() != args.child:
        raise SystemExit(f"asked for variant {args.child}, running {_kernels.simd_variant()}")
    E = args.epochs
    runs = {}
    for d, Xi in data.items():
        runs["cymlp", d] = lambda Xi=Xi: B.fit_cymlp(Xi, y, (100,), "logistic", 200, E, 0.1,
                                                     nt)
        runs["sklearn", d] = lambda Xi=Xi: B.fit_sklearn(Xi, y, (100,), "logistic", 200, E,
                                                         0.1)
        if torch is not None:
            runs["torch", d] = lambda Xi=Xi: B.fit_torch(Xi, y, (100,), "logistic", 200, E,
                                                         0.1)
    core = [B.core_ns()] if nt >= 2 else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = B.best_of(runs, args.repeats)
    core += [B.core_ns()] if nt >= 2 else []
    sk_dtype = str(best["sklearn", "MNIST"][1].coefs_[0].dtype)
    blas = sorted({arch for api, internal, arch, _, _ in B.blas_kernels()
                   if internal == "openblas"})
    print(RESULT + json.dumps({
        "variant": _kernels.simd_variant(), "openblas": "/".join(blas), "sklearn_dtype": sk_dtype,
        "core_ns": core,
        "seconds": {f"{lib} {d}": t for (lib, d), (t, _) in best.items()}}), flush=True)


def main():
    B.clean_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    B.add_arguments(ap, threads=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--variants", default=None,
                    help="comma-separated subset of the variants (default: every one this "
                    "CPU can run)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from cymlp import _kernels

    available = _kernels.simd_variants()
    variants = args.variants.split(",") if args.variants else available[::-1]
    print(f"variants this CPU runs: {', '.join(available)}; measuring: {', '.join(variants)}")
    print(f"paper net 784-100-10, float32, {args.threads} threads, {args.epochs} epoch(s) a fit, "
          f"best of {args.repeats}\n")
    results = []
    for v in variants:
        env = B.child_env(CYMLP_SIMD=v, OPENBLAS_CORETYPE=CORETYPE.get(v))
        print(f"--- {v}: CYMLP_SIMD={v}, OPENBLAS_CORETYPE="
              f"{CORETYPE.get(v) or 'unset'}", flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", v, "--epochs",
               str(args.epochs), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        if args.data_home:
            cmd += ["--data-home", args.data_home]
        if args.samples:
            cmd += ["--samples", str(args.samples)]
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as p:
            for line in p.stdout:
                if line.startswith(RESULT):
                    results.append(json.loads(line[len(RESULT):]))
                else:
                    print(f"  [{v}] {line}", end="", flush=True)
        if p.returncode:
            raise SystemExit(f"the {v} child failed (exit {p.returncode})")

    has_torch = any("torch MNIST" in r["seconds"] for r in results)
    head = f"{'variant':9s} {'OpenBLAS':10s}"
    for d in ("MNIST", "dense"):
        head += f" | {d + ' s/ep':>11s} {'skl s':>7s} {'x skl':>6s}"
        if has_torch:
            head += f" {'torch s':>7s} {'x torch':>7s}"
    print(f"\n{head}")
    for r in results:
        s = r["seconds"]
        line = f"{r['variant']:9s} {r['openblas']:10s}"
        for d in ("MNIST", "dense"):
            c = s[f"cymlp {d}"]
            line += f" | {c:11.4f} {s[f'sklearn {d}']:7.4f} {s[f'sklearn {d}'] / c:5.2f}x"
            if has_torch:
                line += f" {s[f'torch {d}']:7.4f} {s[f'torch {d}'] / c:6.2f}x"
        if r["core_ns"]:
            line += " | c2c " + "/".join(f"{ns:.0f}" for ns in r["core_ns"]) + " ns"
        if r["variant"] in TARGET:
            mnist, dense = TARGET[r["variant"]]
            line += f" | target x skl {mnist:.1f} / {dense:.1f}"
        print(line)
    print("\ns/ep: cymlp's seconds per epoch; skl, torch: scikit-learn's and PyTorch's; "
          "x: their time / cymlp's (higher is better for cymlp). scikit-learn trained in "
          + ", ".join(sorted({r["sklearn_dtype"] for r in results})) + ". c2c: the "
          "round trip of a cache line between two threads before and after the child's "
          f"fits (near < {B.NEAR_NS:.0f} ns; with the two vCPUs far apart, cymlp's second "
          "thread gains little on this network, see bench_threads.py).")


if __name__ == "__main__":
    main()
