"""Property-based tests: mutated, truncated and random IDX and model files never crash
and only ever raise the documented exception (ValueError)."""

import gzip
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cymlp
from cymlp.datasets import read_idx, write_idx

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _idx_bytes(arr, compress):
    buf = io.BytesIO()
    header = bytes([0, 0, {np.dtype(np.uint8): 8, np.dtype(np.int8): 9,
                           np.dtype(np.int16): 11, np.dtype(np.int32): 12,
                           np.dtype(np.float32): 13, np.dtype(np.float64): 14}[arr.dtype],
                    arr.ndim])
    buf.write(header + np.asarray(arr.shape, ">u4").tobytes()
              + arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    data = buf.getvalue()
    return gzip.compress(data) if compress else data


arrays = st.tuples(
    st.sampled_from(DTYPES),
    st.lists(st.integers(1, 5), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
).map(lambda t: np.random.RandomState(t[2]).randint(0, 100, size=t[1]).astype(t[0]))


def _read(tmp_path, data):
    path = tmp_path / "f.idx"
    path.write_bytes(data)
    try:
        out = read_idx(path)
    except ValueError as e:
        assert "f.idx" in str(e)  # names the file
        return None
    assert isinstance(out, np.ndarray)
    return out


@SETTINGS
@given(arr=arrays, compress=st.booleans())
def test_idx_round_trip_property(tmp_path, arr, compress):
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path), arr)


@SETTINGS
@given(arr=arrays, compress=st.booleans(), cut=st.integers(0, 10**6))
def test_truncated_idx(tmp_path, arr, compress, cut):
    data = _idx_bytes(arr, compress)
    cut = cut % len(data)
    assert _read(tmp_path, data[:cut]) is None  # any strict prefix is rejected


@SETTINGS
@given(arr=arrays, compress=st.booleans(),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                      max_size=8))
def test_mutated_idx(tmp_path, arr, compress, flips):
    data = bytearray(_idx_bytes(arr, compress))
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    _read(tmp_path, bytes(data))


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_as_idx(tmp_path, data):
    _read(tmp_path, data)
    _read(tmp_path, b"\x00\x00" + data)  # past the magic check, into the header


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    clf = cymlp.MLPClassifier((4,), max_iter=3, tol=10, n_iter_no_change=1, random_state=0)
    clf.fit(X, rng.randint(0, 3, 40))
    path = tmp_path_factory.mktemp("m") / "m.npz"
    clf.save(path)
    return path.read_bytes(), X


def _load(tmp_path, data, X):
    path = tmp_path / "m.npz"
    path.write_bytes(data)
    try:
        model = cymlp.load(path)
    except ValueError as e:
        assert "not a valid cymlp model file" in str(e)
        return
    assert np.isfinite(model.predict_proba(X)).all()  # whatever loads, works


@SETTINGS
@given(cut=st.integers(0, 10**6))
def test_truncated_model(tmp_path, model_bytes, cut):
    data, X = model_bytes
    _load(tmp_path, data[: cut % len(data)], X)


@SETTINGS
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                      max_size=8))
def test_mutated_model(tmp_path, model_bytes, flips):
    data, X = model_bytes
    data = bytearray(data)
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    _load(tmp_path, bytes(data), X)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes_as_model(tmp_path, model_bytes, data):
    _load(tmp_path, data, model_bytes[1])
    _load(tmp_path, b"PK\x03\x04" + data, model_bytes[1])
