"""Training over a memory-mapped IDX file larger than the memory the process may use
(numpy and the standard library only: nothing here needs the 'dask' extra)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cymlp.datasets import open_idx, write_idx

CHILD = textwrap.dedent("""
    import resource, sys
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))  # anonymous memory only
    import numpy as np
    from cymlp import MLPClassifier
    from cymlp.datasets import open_idx
    X, y = open_idx(sys.argv[1]), open_idx(sys.argv[2])
    assert isinstance(X, np.memmap) and not X.flags.writeable
    clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, n_jobs=1)
    step = 20_000
    for start in range(0, len(X), step):
        clf.partial_fit(X[start:start + step] / np.float32(255), y[start:start + step],
                        classes=np.arange(10))
    try:
        np.array(X)  # loading the whole file must not fit under the limit
        loaded = True
    except MemoryError:
        loaded = False
    print("OK", len(clf.loss_curve_), loaded, flush=True)
""")


def test_training_over_a_memmap_larger_than_the_memory_limit(tmp_path):
    limit = 400 * 2**20
    rows, width = 800_000, 784  # 627 MB of pixels, more than the limit
    x_path, y_path = tmp_path / "x.idx", tmp_path / "y.idx"
    rng = np.random.RandomState(0)
    block = rng.randint(0, 256, size=(10_000, width)).astype(np.uint8)
    with open(x_path, "wb") as f:  # stream the file: it never exists whole in memory
        f.write(bytes([0, 0, 0x08, 2]) + np.asarray([rows, width], ">u4").tobytes())
        for _ in range(rows // len(block)):
            f.write(block.tobytes())
    write_idx(y_path, rng.randint(0, 10, rows).astype(np.uint8))
    assert x_path.stat().st_size > limit
    X = open_idx(x_path)
    assert X.shape == (rows, width) and X.dtype == np.uint8
    np.testing.assert_array_equal(X[10_000:10_005], block[:5])
    proc = subprocess.run([sys.executable, "-c", CHILD, str(x_path), str(y_path), str(limit)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["OK", str(rows // 20_000), "False"], proc.stdout


def test_open_idx_validates(tmp_path):
    import gzip

    path = tmp_path / "a.idx"
    write_idx(path, np.arange(12, dtype=np.int32).reshape(3, 4))
    m = open_idx(path)
    np.testing.assert_array_equal(m, np.arange(12).reshape(3, 4))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        open_idx(path)
    gz = tmp_path / "a.idx.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    with pytest.raises(ValueError, match="gzip-compressed"):
        open_idx(gz)
    with pytest.raises(OSError, match="cannot read"):
        open_idx(tmp_path / "missing.idx")
