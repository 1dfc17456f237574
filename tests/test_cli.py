"""The command line: training run, saved model, errors as one line with exit code."""

import subprocess
import sys

import numpy as np
import pytest

import cymlp
from cymlp.cli import main


@pytest.mark.mnist
def test_train_writes_model(tmp_path, capsys, mnist):
    from conftest import _data_home

    rc = main(["train", "--epochs", "2", "--hidden", "32", "--data-home", str(_data_home()),
               "--no-download", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == 2 and len(lines[0].split()) == 4  # epoch, loss, accuracy, seconds
    model = cymlp.load(tmp_path / "model.npz")
    X_test, y_test = mnist[2], mnist[3]
    assert [c.shape for c in model.coefs_] == [(784, 32), (32, 10)]
    acc = model.score(X_test, y_test)
    assert f"test accuracy {acc:.4f}" in out
    assert acc > 0.8


def test_missing_data_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cymlp", "train", "--data-home", str(tmp_path),
         "--no-download", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("cymlp: error: MNIST files missing")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_bad_flag_exit_code(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "many"])
    assert info.value.code == 2


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert cymlp.__version__ in out and "simd_variant" in out and "openmp" in out


def test_version_single_source():
    import importlib.metadata

    assert importlib.metadata.version("cymlp") == cymlp.__version__
    assert np.__version__  # numpy is importable next to the extension
