"""Data sets: the IDX file format and MNIST.

``read_idx`` / ``write_idx`` handle the IDX format (LeCun et al.), raw or gzip-compressed.
``load_mnist`` finds the four MNIST files under a *data home*: the ``data_home``
argument, else the ``CYMLP_DATA_HOME`` environment variable, else the user cache
directory; the files sit in ``<data_home>/mnist/``. Missing files are downloaded with
pooch and verified by the SHA-256 of their *decompressed* content, so any faithful
gzip recompression of the originals is accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MNIST_FILES", "get_data_home", "load_mnist", "open_idx", "read_idx", "write_idx"]

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
_IDX_CODES.update({np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09})

# name -> (decompressed size in bytes, SHA-256 of the decompressed content)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        47_040_016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte.gz": (
        60_008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte.gz": (
        7_840_016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        10_008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def _read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped when it starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(f"{path}: cannot read: {e.strerror or e}") from e
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from None
    return data


def _parse_header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(big-endian dtype, shape, header length) from the first bytes of an IDX file."""
    if len(head) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic bytes {head[:2].hex()})")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(head)} of {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
    return _IDX_DTYPES[code], shape, header


def _check_length(path: Path, dtype, shape, header: int, length: int) -> None:
    expected = header + math.prod(shape) * dtype.itemsize  # exact: hostile dims cannot wrap
    if length != expected:
        what = "truncated" if length < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX data {what}: header says shape {shape} ({expected} bytes), "
            f"file has {length} bytes"
        )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a native-endian numpy array.

    Raises ``ValueError`` naming the file and the problem when the magic number, type
    code, dimensions or length are wrong (e.g. a truncated download).
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, header = _parse_header(data[:4 + 4 * 255], path)
    _check_length(path, dtype, shape, header, len(data))
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def open_idx(path: str | os.PathLike) -> np.memmap:
    """Map an uncompressed IDX file as a read-only ``numpy.memmap``, without reading it.

    For data sets larger than memory: slices are read from disk when they are used, e.g.
    ``clf.partial_fit(X[i:i + 10_000], y[i:i + 10_000])`` over the rows. The array has
    the file's big-endian dtype for multi-byte types (numpy converts on use). Validated
    like :func:`read_idx`; a gzip-compressed file raises ``ValueError`` (decompress it
    first, or use :func:`read_idx`).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * 255)
            length = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise OSError(f"{path}: cannot read: {e.strerror or e}") from e
    if head[:2] == b"\x1f\x8b":
        raise ValueError(f"{path}: gzip-compressed; open_idx maps uncompressed IDX files "
                         "(gunzip it first, or use read_idx to load it into memory)")
    dtype, shape, header = _parse_header(head, path)
    _check_length(path, dtype, shape, header, length)
    return np.memmap(path, dtype=dtype, mode="r", offset=header, shape=shape)


def write_idx(path: str | os.PathLike, array: ArrayLike) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    arr = np.asarray(array)
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {arr.ndim}")
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}; use one of uint8, int8, "
                         "int16, int32, float32, float64")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError("IDX dimensions must be < 2**32")
    code = _IDX_CODES[native]
    payload = (
        bytes([0, 0, code, arr.ndim])
        + np.asarray(arr.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    )
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The data home: ``data_home``, else ``$CYMLP_DATA_HOME``, else the user cache dir."""
    if data_home is None:
        data_home = os.environ.get("CYMLP_DATA_HOME") or None
    if data_home is None:
        import pooch

        data_home = pooch.os_cache("cymlp")
    return Path(data_home).expanduser()


def _verify(path: Path) -> None:
    size, sha = MNIST_FILES[path.name]
    data = _read_bytes(path)
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
        raise ValueError(
            f"{path}: content does not match MNIST's SHA-256 ({len(data)} bytes "
            f"decompressed, expected {size}); delete it to download it again"
        )


def _download(name: str, folder: Path) -> None:
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # not a line per mirror tried
    try:
        _try_mirrors(pooch, name, folder)
    finally:
        logger.setLevel(level)


def _try_mirrors(pooch, name: str, folder: Path) -> None:
    errors = []
    for mirror in MNIST_MIRRORS:
        try:
            # hash checked on the decompressed bytes by _verify, not on the .gz
            pooch.retrieve(mirror + name, known_hash=None, fname=name, path=folder,
                           progressbar=False)
            _verify(folder / name)
            return
        except Exception as e:  # network errors, HTTP errors, bad content
            (folder / name).unlink(missing_ok=True)
            errors.append(_short_reason(e))
    raise OSError(", ".join(dict.fromkeys(errors)))  # each reason once


def _short_reason(e: Exception) -> str:
    """A download failure in a few words (requests' messages nest every retry)."""
    text = str(e)
    for needle, reason in (("NameResolution", "no network (host name not resolved)"),
                           ("Name or service not known", "no network (host name not resolved)"),
                           ("timed out", "timed out"), ("Connection refused", "refused"),
                           ("SHA-256", "content does not match MNIST's SHA-256")):
        if needle in text:
            return reason
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first[:120]}"


def load_mnist(
    data_home: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST as ``(X_train, y_train, X_test, y_test)``.

    ``X_*`` are uint8 arrays of shape (n, 784) (rows of 28x28 images, 0 = background),
    ``y_*`` uint8 labels 0-9; 60,000 training and 10,000 test samples. Files are looked
    up in ``<data_home>/mnist/`` (see :func:`get_data_home`), raw or gzip-compressed,
    and fetched from public mirrors when missing and ``download`` is true.
    """
    folder = get_data_home(data_home) / "mnist"
    paths = {}
    missing = []
    for name in MNIST_FILES:
        for candidate in (folder / name, folder / name[:-3]):
            if candidate.exists():
                paths[name] = candidate
                break
        else:
            missing.append(name)
    if missing and download:
        folder.mkdir(parents=True, exist_ok=True)
        failures = []
        for name in missing:
            try:
                _download(name, folder)
                paths[name] = folder / name
            except OSError as e:
                failures.append(str(e))
        missing = [n for n in missing if n not in paths]
        if missing:
            reason = "downloading them failed: " + ", ".join(dict.fromkeys(failures))
    elif missing:
        reason = "not downloaded (download=False)"
    if missing:
        raise FileNotFoundError(
            f"MNIST files missing from {folder}: {', '.join(missing)}\n"
            f"  {reason}\n"
            f"  Put the files there (gzipped or not), or set CYMLP_DATA_HOME (or pass "
            "data_home) to a folder whose mnist/ subfolder holds them."
        )
    arrays = []
    for name in MNIST_FILES:
        arr = read_idx(paths[name])
        if len(arr.tobytes()) + 4 + 4 * arr.ndim != MNIST_FILES[name][0]:
            raise ValueError(f"{paths[name]}: unexpected shape {arr.shape} for MNIST")
        arrays.append(arr)
    X_train, y_train, X_test, y_test = arrays
    return (X_train.reshape(len(X_train), -1), y_train, X_test.reshape(len(X_test), -1), y_test)
