"""Command line: ``cymlp train | evaluate | predict | export | info`` (also ``python -m cymlp``).

``cymlp train`` trains an MLP on MNIST, by default with the paper's settings
(784-100-10, logistic, SGD with learning rate 0.1, batch 200, weights uniform in
[-0.5, 0.5]), shows progress per epoch and writes ``model.npz``, ``history.csv``,
``curves.png`` and ``report.md`` to ``--out``. ``--preset paper`` runs the paper's whole
experiment (1000 epochs, the last 10,000 training images held out for validation).
User mistakes (missing data, corrupt model, bad flags) print one line on stderr and exit
with a non-zero code.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import signal
import sys
import time
import warnings
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
# --preset fast: a 784-512-512-10 relu network with the recipes scikit-learn lacks (AdamW,
# one-cycle rate with warm-up, dropout, label smoothing), 20 epochs on all 60,000 images;
# the epoch count was fixed before any run, never chosen on the test set.
FAST = {
    "hidden": [512, 512], "activation": "relu", "solver": "adamw", "lr": 2e-3,
    "batch_size": 256, "alpha": 0.0, "init": "glorot", "epochs": 20,
    "extra": {"learning_rate": "onecycle", "warmup_fraction": 0.3, "dropout": 0.2,
              "label_smoothing": 0.1, "weight_decay": 0.01},
}
# The paper's reported numbers (§5.2), shown beside ours in report.md.
PAPER_RESULTS = {"accuracy_epoch_200": 0.9634, "accuracy_final": 0.97,
                 "min_val_loss_epoch": 513, "epochs": 1000}
HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc",
                  "seconds"]


DESCRIPTION = """\
A fast multilayer perceptron (scikit-learn API, Cython engine), and its MNIST tools.

  cymlp train                   train the paper's 784-100-10 network on MNIST
  cymlp train --preset paper    the paper's whole experiment (1000 epochs, curves)
  cymlp evaluate MODEL.npz      test accuracy, per-class scores, confusion matrix
  cymlp predict MODEL.npz IMG   classify a picture of a handwritten digit
  cymlp export MODEL.npz OUT.onnx
  cymlp info                    version, SIMD kernels, threads

MNIST is read from $CYMLP_DATA_HOME/mnist, else from your cache folder, where it is
downloaded (checksum-verified) when missing.
'cymlp COMMAND --help' lists a command's options."""


class UserError(Exception):
    """A mistake on the command line: reported as one line, exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, exit code 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from cymlp._model import ACTIVATIONS
    from cymlp._optimizers import SOLVERS

    p = _Parser(prog="cymlp", formatter_class=argparse.RawDescriptionHelpFormatter,
                description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train on MNIST (the paper's settings by default)")
    t.add_argument("--preset", choices=["paper", "fast"],
                   help="paper: the paper's full experiment (1000 epochs, validation = "
                        "last 10,000 training images); fast: 784-512-512-10 relu, "
                        "AdamW + one-cycle, dropout, label smoothing, 20 epochs (>= 98.5%%)")
    # (defaults None: filled from PAPER after parsing, so that a preset can tell a flag
    # given on the command line from one left alone)
    t.add_argument("--hidden", type=int, nargs="+", metavar="N",
                   help="hidden layer widths (default: 100)")
    t.add_argument("--activation", choices=sorted(ACTIVATIONS),
                   help="hidden activation (default: logistic, the paper's sigmoid)")
    t.add_argument("--solver", choices=list(SOLVERS), help="(default: sgd)")
    t.add_argument("--lr", type=float, help="learning rate (default 0.1)")
    t.add_argument("--batch-size", type=int, help="(default: 200)")
    t.add_argument("--momentum", type=float, help="(default: 0)")
    t.add_argument("--alpha", type=float, help="L2 penalty (default: 0)")
    t.add_argument("--init", choices=["paper", "glorot"], help="(default: paper)")
    t.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default 150; 1000 with --preset paper)")
    t.add_argument("--validation", type=int, default=None, metavar="N",
                   help="hold out the last N training images for validation "
                        "(default 0; 10000 with --preset paper)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--n-jobs", type=int, default=None, help="threads (default: all cores)")
    _data_args(t)
    t.add_argument("--out", default="runs/mnist", help="output folder (default runs/mnist)")
    t.add_argument("--quiet", action="store_true", help="no per-epoch output")

    e = sub.add_parser("evaluate", help="test accuracy, per-class scores, confusion.png")
    e.add_argument("model", help="model file written by cymlp train / cymlp.save")
    _data_args(e)
    e.add_argument("--out", default=None,
                   help="folder for confusion.png (default: the model's folder)")

    pr = sub.add_parser("predict", help="classify images of handwritten digits")
    pr.add_argument("model", help="model file written by cymlp train / cymlp.save")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    pr.add_argument("--top-k", type=int, default=1, help="print the k most likely digits")

    x = sub.add_parser("export", help="write a model as ONNX (needs the onnx extra)")
    x.add_argument("model", help="model file written by cymlp train / cymlp.save")
    x.add_argument("output", help="the .onnx file to write")

    sub.add_parser("info", help="version, SIMD variant, threading backend, threads")
    return p


def _data_args(p):
    p.add_argument("--data-home", default=None,
                   help="folder whose mnist/ subfolder holds the data "
                        "(default: $CYMLP_DATA_HOME, else the user cache)")
    p.add_argument("--no-download", action="store_true", help="never download MNIST")


def _load_data(args, dtype):
    from cymlp.datasets import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(args.data_home, download=not args.no_download)
    scale = dtype.type(1 / 255)
    return X_train.astype(dtype) * scale, y_train, X_test.astype(dtype) * scale, y_test


def _metrics(clf, X, y):
    """(mean cross-entropy, accuracy) of clf on (X, y), from log-probabilities."""
    log_p = clf.predict_log_proba(X)
    idx = np.searchsorted(clf.classes_, y)
    return (float(-log_p[np.arange(len(y)), idx].mean()),
            float(np.mean(log_p.argmax(1) == idx)))


class _EpochCallback:
    """A scikit-learn fit callback (sklearn.callback) that calls ``fn(estimator)`` after
    each epoch; fn returning True stops the fit."""

    def __init__(self, fn):
        self.fn = fn

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        return context.task_name == "epoch" and bool(self.fn(estimator))


class _StopFlag:
    """First Ctrl-C asks to stop after the current epoch; a second one interrupts."""

    def __init__(self):
        self.stop = False

    def __call__(self, signum, frame):
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print("\ncymlp: stopping after this epoch (Ctrl-C again to abort)", file=sys.stderr)


def _train(args) -> int:
    from sklearn.exceptions import ConvergenceWarning

    from cymlp import MLPClassifier, save

    paper = args.preset == "paper"
    fixed_flags = any(getattr(args, k) is not None for k in PAPER)
    extra = {}
    if args.preset == "fast":
        if fixed_flags or args.epochs is not None:
            raise UserError("--preset fast fixes the network, optimiser and epochs; drop "
                            "those flags")
        for k in ("hidden", "activation", "solver", "lr", "batch_size", "init", "alpha"):
            setattr(args, k, FAST[k])
        args.epochs, extra = FAST["epochs"], FAST["extra"]
    if paper and fixed_flags:
        raise UserError("--preset paper fixes the network and optimiser; drop those flags")
    for k, v in PAPER.items():  # the flags left alone: the paper's settings
        if getattr(args, k) is None:
            setattr(args, k, v)
    epochs = args.epochs if args.epochs is not None else (1000 if paper else 150)
    n_val = args.validation if args.validation is not None else (10_000 if paper else 0)
    if epochs < 1:
        raise UserError("--epochs must be >= 1")
    if not 0 <= n_val < 60_000:
        raise UserError("--validation must be between 0 and 59999")
    dtype = np.dtype(args.dtype)
    X, y, X_test, y_test = _load_data(args, dtype)
    if n_val:
        X, X_val, y, y_val = X[:-n_val], X[-n_val:], y[:-n_val], y[-n_val:]
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(args.hidden), activation=args.activation, solver=args.solver,
        learning_rate_init=args.lr, batch_size=args.batch_size, momentum=args.momentum,
        alpha=args.alpha, init=args.init, random_state=args.seed, n_jobs=args.n_jobs,
        max_iter=epochs, n_iter_no_change=epochs + 1,  # every epoch asked for runs
        **extra,
    )
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {out}: {e.strerror or e}") from None
    config = {
        "network": "-".join(str(s) for s in [X.shape[1], *args.hidden, 10]),
        "activation": args.activation, "solver": args.solver, "learning_rate": args.lr,
        "batch_size": args.batch_size, "momentum": args.momentum, "alpha": args.alpha,
        "init": args.init, "epochs": epochs, "train_samples": len(X),
        "validation_samples": n_val, "seed": args.seed, "dtype": dtype.name,
        "preset": args.preset or "none", **extra,
    }
    show_bar = not args.quiet and sys.stdout.isatty()
    if not args.quiet:
        print("cymlp train: " + ", ".join(f"{k}={v}" for k, v in config.items()), flush=True)
        if not show_bar:
            print(f"{'epoch':>5}  {'train_loss':>10}  {'test_acc':>8}  {'seconds':>7}",
                  flush=True)
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True)
    flag = _StopFlag()
    previous = signal.signal(signal.SIGINT, flag)
    history: list[dict] = []

    def after_epoch(clf):
        """Each epoch's row (from fit's epoch callback); True stops the fit."""
        epoch = len(history) + 1
        row = {"epoch": epoch, "seconds": clf.history_["seconds"][-1]}
        # the training pass's own running values (each batch before its update): a
        # second pass over the training set would cost half an epoch
        row["train_loss"], row["train_acc"] = clf.loss_, clf.history_["accuracy"][-1]
        row["val_loss"], row["val_acc"] = _metrics(clf, X_val, y_val) if n_val else ("", "")
        row["test_acc"] = float(clf.score(X_test, y_test))
        history.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", acc=f"{row['test_acc']:.4f}")
            bar.update(1)
        elif not args.quiet:
            print(f"{epoch:5d}  {row['train_loss']:10.6f}  {row['test_acc']:8.4f}  "
                  f"{row['seconds']:7.3f}", flush=True)
        return flag.stop

    started = time.perf_counter()
    try:
        # one fit of all the epochs (its input checks once, not per epoch)
        clf.set_callbacks(_EpochCallback(after_epoch))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
    finally:
        clf.set_callbacks()  # (the saved model keeps no reference to this run)
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    total = time.perf_counter() - started
    if not history:
        raise UserError("interrupted before the first epoch finished; nothing written")
    save(clf, out / "model.npz")
    _write_history(out / "history.csv", history)
    wrote = ["model.npz", "history.csv"]
    if _plot_curves(out / "curves.png", history):
        wrote.append("curves.png")
    _write_report(out / "report.md", config, history, total, plotted="curves.png" in wrote)
    wrote.append("report.md")
    last = history[-1]
    stopped = f" (stopped by Ctrl-C after {len(history)} of {epochs})" if flag.stop else ""
    print(f"test accuracy {last['test_acc']:.4f} after {len(history)} epochs{stopped}, "
          f"{total:.1f} s; wrote {', '.join(wrote)} to {out}")
    return 130 if flag.stop else 0


def _write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("cymlp: matplotlib is not installed, skipping plots "
              "(pip install 'cymlp[plot]')", file=sys.stderr)
        return None
    return plt


def _min_val_epoch(history):
    vals = [(r["val_loss"], r["epoch"]) for r in history if r["val_loss"] != ""]
    return min(vals)[1] if vals else None


def _plot_curves(path: Path, history: list[dict]) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    ep = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(ep, [r["train_loss"] for r in history], label="train")
    ax_acc.plot(ep, [r["train_acc"] for r in history], label="train")
    best = _min_val_epoch(history)
    if best is not None:
        ax_loss.plot(ep, [r["val_loss"] for r in history], label="validation")
        ax_acc.plot(ep, [r["val_acc"] for r in history], label="validation")
        best_loss = history[best - 1]["val_loss"]
        ax_loss.axvline(best, color="grey", linestyle=":")
        ax_loss.plot([best], [best_loss], "o", color="C3",
                     label=f"min validation loss (epoch {best})")
    ax_acc.plot(ep, [r["test_acc"] for r in history], label="test", alpha=0.8)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _machine() -> str:
    from cymlp._config import config

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    c = config()
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, cymlp {c['version']} "
            f"({c['simd_variant']} kernels, {c['max_threads']} threads, "
            f"{c['threads_backend']} threading)")


def _write_report(path: Path, config: dict, history: list[dict], total: float,
                  plotted: bool) -> None:
    def acc_at(epoch):
        return f"{history[epoch - 1]['test_acc']:.4f}" if len(history) >= epoch else "—"

    best = _min_val_epoch(history)
    best_text = str(best) if best is not None else "— (no validation split)"
    final = history[-1]
    lines = [
        "# cymlp training report", "",
        "## Configuration", "",
        "| setting | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in config.items()], "",
        "## Results", "",
        "| | cymlp | paper (§5.2) |", "|---|---:|---:|",
        f"| test accuracy at epoch 200 | {acc_at(200)} | "
        f"{PAPER_RESULTS['accuracy_epoch_200']:.4f} |",
        f"| test accuracy at the end (epoch {final['epoch']}) | {final['test_acc']:.4f} | "
        f"≈{PAPER_RESULTS['accuracy_final']:.2f} (epoch {PAPER_RESULTS['epochs']}) |",
        f"| epoch of minimum validation loss | {best_text} | "
        f"{PAPER_RESULTS['min_val_loss_epoch']} |",
        f"| final train loss | {final['train_loss']:.4f} | |",
        f"| epochs run | {len(history)} of {config['epochs']} | {PAPER_RESULTS['epochs']} |",
        f"| total time | {total:.1f} s ({sum(r['seconds'] for r in history) / len(history):.3f} "
        "s/epoch training) | |", "",
        f"Machine: {_machine()}.", "",
        "Train loss and accuracy are running values over each epoch's minibatches (each "
        "batch scored by the weights before its update, as the training loop computes "
        "them; the loss includes the L2 term when alpha > 0); validation and test use "
        "the weights at the end of the epoch.", "",
    ]
    if best is not None:
        lines += [f"Validation loss bottomed out at epoch {best} "
                  f"({history[best - 1]['val_loss']:.4f}); after that the network starts to "
                  "overfit (the paper saw the same turn at epoch 513).", ""]
    if plotted:
        lines += ["![loss and accuracy curves](curves.png)", ""]
    path.write_text("\n".join(lines))


def _evaluate(args) -> int:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from cymlp import load

    model = load(args.model)
    if model.n_features_in_ != 784:
        raise UserError(f"{args.model}: model expects {model.n_features_in_} features, "
                        "MNIST has 784")
    _, _, X_test, y_test = _load_data(args, model.coefs_[0].dtype)
    pred = model.predict(X_test)
    acc = float(np.mean(pred == y_test))
    labels = np.arange(10)
    p, r, f1, support = precision_recall_fscore_support(y_test, pred, labels=labels,
                                                        zero_division=0)
    print(f"test accuracy {acc:.4f} ({int(np.sum(pred == y_test))} of {len(y_test)})")
    print(f"{'digit':>5}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}")
    for d in labels:
        print(f"{d:5d}  {p[d]:9.4f}  {r[d]:6.4f}  {f1[d]:6.4f}  {support[d]:7d}")
    cm = confusion_matrix(y_test, pred, labels=labels)
    out = Path(args.out) if args.out else Path(args.model).parent
    plt = _pyplot()
    if plt is not None:
        out.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 5.5))
        im = ax.imshow(cm, cmap="Blues")
        for i in labels:
            for j in labels:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set(xticks=labels, yticks=labels, xlabel="predicted", ylabel="true",
               title=f"MNIST test, accuracy {acc:.4f}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "confusion.png", dpi=100)
        plt.close(fig)
        print(f"wrote {out / 'confusion.png'}")
    return 0


def _predict(args) -> int:
    from cymlp import load
    from cymlp.images import load_digit

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    model = load(args.model)
    if model.n_features_in_ != 784:
        raise UserError(f"{args.model}: model expects {model.n_features_in_} features, "
                        "not 28x28 images")
    X = np.stack([load_digit(path) for path in args.images]).astype(model.coefs_[0].dtype)
    proba = model.predict_proba(X.reshape(len(X), -1))
    k = min(args.top_k, proba.shape[1])
    for path, p in zip(args.images, proba):
        order = np.argsort(-p, kind="stable")[:k]
        best = f"{path}  {model.classes_[order[0]]}  {p[order[0]]:.4f}"
        if k > 1:
            best += "  " + " ".join(f"{model.classes_[i]}:{p[i]:.4f}" for i in order[1:])
        print(best)
    return 0


def _export(args) -> int:
    from cymlp import load
    from cymlp.onnx import to_onnx

    model = to_onnx(load(args.model))
    Path(args.output).write_bytes(model.SerializeToString())
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cymlp`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "export":
            return _export(args)
        from cymlp import show_config

        show_config()
        return 0
    except BrokenPipeError:  # e.g. `cymlp evaluate ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError, UserError, ImportError) as e:
        print(f"cymlp: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cymlp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
