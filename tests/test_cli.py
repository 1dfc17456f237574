"""The command line: train / evaluate / predict / info, reports, Ctrl-C, one-line errors."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cymlp
from cymlp.cli import main


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cymlp", *map(str, args)],
                          capture_output=True, text=True, check=False, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """`cymlp train` for 10 epochs of the paper's network with a validation split."""
    from conftest import _data_home

    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--epochs", "10", "--validation", "10000", "--data-home",
               str(_data_home()), "--no-download", "--out", str(out)])
    assert rc == 0
    return out


@pytest.mark.mnist
def test_train_writes_everything(trained, mnist):
    for name in ("model.npz", "history.csv", "curves.png", "report.md"):
        assert (trained / name).stat().st_size > 0, name
    with open(trained / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert all(0 < float(r["val_acc"]) <= 1 for r in rows)
    model = cymlp.load(trained / "model.npz")
    X_test, y_test = mnist[2], mnist[3]
    assert float(rows[-1]["test_acc"]) == pytest.approx(model.score(X_test, y_test), abs=1e-6)
    assert model.score(X_test, y_test) >= 0.9
    report = (trained / "report.md").read_text()
    assert "epoch of minimum validation loss" in report and "0.9634" in report
    assert "| train_samples | 50000 |" in report
    assert (trained / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.mnist
def test_train_prints_epoch_lines_when_not_a_terminal(tmp_path, capsys, mnist):
    from conftest import _data_home

    rc = main(["train", "--epochs", "2", "--hidden", "32", "--data-home", str(_data_home()),
               "--no-download", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == 2 and len(lines[0].split()) == 4  # epoch, loss, accuracy, seconds
    model = cymlp.load(tmp_path / "model.npz")
    assert [c.shape for c in model.coefs_] == [(784, 32), (32, 10)]
    assert f"test accuracy {model.score(mnist[2], mnist[3]):.4f}" in out
    main(["train", "--epochs", "1", "--hidden", "8", "--data-home", str(_data_home()),
          "--no-download", "--out", str(tmp_path), "--quiet"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


@pytest.mark.mnist
def test_evaluate(trained, tmp_path):
    from conftest import _data_home

    proc = run_cli("evaluate", trained / "model.npz", "--data-home", _data_home(),
                   "--no-download", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("test accuracy 0.9")
    assert len([ln for ln in lines if ln.strip()[:1].isdigit()]) == 10  # one row per digit
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.mnist
def test_predict_upscaled_dark_on_light_digits(trained, tmp_path):
    from PIL import Image

    from conftest import _data_home
    from cymlp.datasets import load_mnist

    _, _, X_test, y_test = load_mnist(_data_home(), download=False)
    paths = []
    for i in range(20):
        img = 255 - X_test[i].reshape(28, 28)  # dark ink on white paper
        path = tmp_path / f"digit{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(img).resize((28 * (3 + i % 4),) * 2, Image.BICUBIC).save(path)
        paths.append(path)
    proc = run_cli("predict", trained / "model.npz", *paths, "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split() for ln in proc.stdout.splitlines()]
    assert len(rows) == 20 and all(len(r) == 5 for r in rows)  # file digit p  2 more pairs
    correct = sum(int(r[1]) == y for r, y in zip(rows, y_test[:20]))
    assert correct >= 17, proc.stdout


def test_to_mnist_centres_and_inverts():
    from cymlp.images import to_mnist

    canvas = np.full((200, 300), 250.0)  # light paper, dark off-centre stroke
    canvas[20:120, 30:50] = 10
    img = to_mnist(canvas)
    assert img.shape == (28, 28) and img.max() == pytest.approx(1, abs=0.05)
    rows = np.flatnonzero(img.max(1) > 0)
    assert rows[-1] - rows[0] + 1 == 20  # the long side fills the 20x20 box
    ys, xs = np.indices(img.shape)
    assert (ys * img).sum() / img.sum() == pytest.approx(14, abs=0.6)
    assert (xs * img).sum() / img.sum() == pytest.approx(14, abs=0.6)
    with pytest.raises(ValueError, match="blank"):
        to_mnist(np.zeros((10, 10)))


def test_ctrl_c_stops_after_the_epoch_and_writes_everything(tmp_path, mnist):
    from conftest import _data_home

    proc = subprocess.Popen(
        [sys.executable, "-m", "cymlp", "train", "--epochs", "1000", "--hidden", "16",
         "--validation", "1000", "--data-home", str(_data_home()), "--no-download",
         "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    epochs_seen = 0
    deadline = time.monotonic() + 120
    while epochs_seen < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip()[:1].isdigit():
            epochs_seen += 1
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by Ctrl-C" in out and "Traceback" not in err
    with open(tmp_path / "history.csv") as f:
        done = len(list(csv.DictReader(f)))
    assert 2 <= done < 1000
    assert cymlp.load(tmp_path / "model.npz").n_features_in_ == 784
    assert (tmp_path / "report.md").exists() and (tmp_path / "curves.png").exists()


def test_help_is_plain_text():
    for args in ([], ["train"], ["evaluate"], ["predict"], ["export"], ["info"]):
        proc = run_cli(*args, "--help")
        assert proc.returncode == 0 and "usage: cymlp" in proc.stdout
        assert "`" not in proc.stdout, proc.stdout  # no reStructuredText markup


def test_missing_data_is_a_short_error(tmp_path):
    # the files, the folder, and the variable to set: a few lines, no traceback
    proc = run_cli("train", "--data-home", tmp_path, "--no-download", "--out", tmp_path / "o")
    assert proc.returncode == 1
    assert proc.stderr.startswith("cymlp: error: MNIST files missing")
    assert len(proc.stderr.strip().splitlines()) <= 3 and "CYMLP_DATA_HOME" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04broken zip", b""])
def test_corrupt_model_is_one_line_error(tmp_path, content):
    bad = tmp_path / "model.npz"
    bad.write_bytes(content)
    for args in (["evaluate", bad], ["predict", bad, bad]):
        proc = run_cli(*args)
        assert proc.returncode == 1
        assert proc.stderr.startswith("cymlp: error: ")
        assert "not a valid cymlp model file" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_model_and_image(tmp_path):
    proc = run_cli("evaluate", tmp_path / "none.npz")
    assert proc.returncode == 1 and "no such model file" in proc.stderr
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "model_v1.npz")
    proc = run_cli("predict", fixture, tmp_path / "none.png")  # a 4-feature model
    assert proc.returncode == 1 and "expects 4 features" in proc.stderr
    rng = np.random.RandomState(0)
    cymlp.MLPClassifier((3,), max_iter=1).fit(rng.rand(4, 784), [0, 1, 2, 3]).save(
        tmp_path / "m.npz")
    proc = run_cli("predict", tmp_path / "m.npz", tmp_path / "none.png")
    assert proc.returncode == 1 and "no such image file" in proc.stderr
    (tmp_path / "text.png").write_text("not an image")
    proc = run_cli("predict", tmp_path / "m.npz", tmp_path / "text.png")
    assert proc.returncode == 1 and "cannot read as an image" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["train", "--epochs", "many"], ["fly"], ["train", "--bogus"],
                                  ["train", "--preset", "paper", "--lr", "0.5"]])
def test_bad_flags_are_one_line(args):
    proc = run_cli(*args)
    assert proc.returncode in (1, 2)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert cymlp.__version__ in out and "simd_variant" in out and "openmp" in out


def test_version_single_source():
    import importlib.metadata

    assert importlib.metadata.version("cymlp") == cymlp.__version__


def _refuse(cli, argv):
    """Run cli.main; its error message becomes a SystemExit carrying the message."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    raise SystemExit(f"exit {code}: {err.getvalue()}")


def test_fast_preset_fixes_its_settings(tmp_path):
    """--preset fast refuses flags it fixes; its recipe reaches the estimator (checked
    on the parser and the report's configuration, without the 30-second run)."""
    from cymlp import cli

    # (no data home: a flag it fixes must be refused before the data is even looked for;
    # --solver sgd and --lr 0.1 are the paper's defaults, refused all the same)
    for preset in ("fast", "paper"):
        for flags in (["--solver", "sgd"], ["--lr", "0.1"], ["--hidden", "64"]):
            with pytest.raises(SystemExit, match="fixes"):
                _refuse(cli, ["train", "--preset", preset, *flags, "--out", str(tmp_path),
                              "--data-home", str(tmp_path / "none"), "--no-download"])
    with pytest.raises(SystemExit, match="fixes"):
        _refuse(cli, ["train", "--preset", "fast", "--epochs", "3", "--out", str(tmp_path),
                      "--data-home", str(tmp_path / "none"), "--no-download"])
    fast = cli.FAST
    assert fast["epochs"] == 20 and fast["solver"] == "adamw"
    assert fast["extra"] == {"learning_rate": "onecycle", "warmup_fraction": 0.3,
                             "dropout": 0.2, "label_smoothing": 0.1, "weight_decay": 0.01}
    from cymlp import MLPClassifier
    MLPClassifier(**fast["extra"])._validate_params()  # (every option is a real parameter)
