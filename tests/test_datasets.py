"""IDX reading/writing, every corrupt-file case, and MNIST loading."""

import gzip

import numpy as np
import pytest

from cymlp import datasets
from cymlp.datasets import MNIST_FILES, load_mnist, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    rng = np.random.RandomState(0)
    arr = (rng.uniform(-100, 100, (3, 4, 5))).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)


def test_write_rejects_unsupported(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.complex64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.float32(1.0))


def _idx_bytes(arr):
    return (bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            + arr.astype(np.uint8).tobytes())


GOOD = _idx_bytes(np.arange(24).reshape(2, 3, 4))


@pytest.mark.parametrize("data, match", [
    (b"", "only 0 bytes"),
    (b"\x00\x00", "only 2 bytes"),
    (b"\x01\x00" + GOOD[2:], "bad magic"),
    (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX type code 0x07"),
    (GOOD[:3] + b"\x00", "0 dimensions"),
    (GOOD[:10], "truncated IDX header"),
    (GOOD[:-1], "truncated"),
    (GOOD + b"\x00", "trailing bytes"),
    (gzip.compress(GOOD)[:-9], "corrupt or truncated gzip"),
    (b"\x1f\x8b" + b"garbage" * 5, "corrupt or truncated gzip"),
])
def test_corrupt_files(tmp_path, data, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert "bad.idx" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(OSError, match="cannot read"):
        read_idx(tmp_path / "nope.idx")


def test_data_home_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("CYMLP_DATA_HOME", str(tmp_path / "env"))
    assert datasets.get_data_home() == tmp_path / "env"
    assert datasets.get_data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CYMLP_DATA_HOME")
    assert "cymlp" in str(datasets.get_data_home())


def test_offline_missing_names_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    for name in MNIST_FILES:
        assert name in message
    assert str(tmp_path / "mnist") in message


def test_failed_download_is_reported_and_cleaned(tmp_path, monkeypatch):
    import pooch

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        (path / fname).write_bytes(gzip.compress(b"not mnist"))
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    with pytest.raises(FileNotFoundError, match="does not match MNIST's SHA-256"):
        load_mnist(tmp_path, download=True)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_failed_download_reads_in_a_few_lines(tmp_path, monkeypatch):
    # two mirrors that refuse the connection: the error names the files, the folder, the
    # variable to set and the reason once, not every mirror's exception for every file
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("http://127.0.0.1:9/a/",
                                                    "http://127.0.0.1:9/b/"))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=True)
    message = str(info.value)
    assert len(message.splitlines()) <= 4 and len(message) < 600, message
    for name in MNIST_FILES:
        assert message.count(name) == 1
    assert str(tmp_path / "mnist") in message and "CYMLP_DATA_HOME" in message
    assert message.count("refused") == 1, message


def test_download_verified_by_decompressed_hash(tmp_path, monkeypatch):
    """A recompressed but faithful file passes: hashes are of the decompressed bytes."""
    import pooch

    payloads = {name: _idx_bytes(np.zeros(1)) for name in MNIST_FILES}
    monkeypatch.setattr(datasets, "MNIST_FILES", {
        name: (len(p), __import__("hashlib").sha256(p).hexdigest())
        for name, p in payloads.items()})

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        (path / fname).write_bytes(gzip.compress(payloads[fname], compresslevel=1))
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    X_train, _, _, y_test = load_mnist(tmp_path, download=True)
    assert X_train.shape == (1, 1) and y_test.shape == (1,)


@pytest.mark.mnist
def test_load_mnist(mnist):
    from conftest import _data_home

    X_train, y_train, X_test, y_test = load_mnist(_data_home(), download=False)
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert X_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert set(np.unique(y_train)) == set(range(10))
    assert X_train.max() == 255 and X_train.min() == 0
    np.testing.assert_array_equal(np.bincount(y_test)[:3], [980, 1135, 1032])
