"""Turn a photo or scan of one handwritten digit into an MNIST-style 28x28 image.

MNIST's own preprocessing (LeCun et al.): the digit is white ink on black, its bounding
box is scaled to fit a 20x20 box keeping the aspect ratio, and it is placed in a 28x28
image so that its centre of mass is at the centre. ``load_digit`` does the same for any
PNG/JPEG: grayscale, invert when the background is light, crop to the ink, scale,
centre by mass. Needs Pillow (``pip install 'cymlp[images]'``).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_digit", "to_mnist"]


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'cymlp[images]'") from None
    return Image


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """MNIST-style 28x28 float image in [0, 1] (ink = 1) from a 2-d grayscale array."""
    Image = _pil()
    img = np.asarray(gray, dtype=np.float64)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"expected a 2-d grayscale image, got shape {img.shape}")
    lo, hi = img.min(), img.max()
    if hi - lo < 1e-9:
        raise ValueError("the image is blank (a single colour): no digit to read")
    img = (img - lo) / (hi - lo)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if np.median(border) > 0.5:  # light background: make the ink bright
        img = 1.0 - img
    img[img < 0.2] = 0.0  # paper texture and JPEG noise are not ink
    rows = np.flatnonzero(img.max(axis=1) > 0)
    cols = np.flatnonzero(img.max(axis=0) > 0)
    img = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = img.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray((img * 255).astype(np.uint8)).resize(size, Image.LANCZOS)
    small = np.asarray(small, dtype=np.float64) / 255.0
    total = small.sum()
    if total <= 0:
        raise ValueError("no ink left after scaling the digit to 20x20")
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / total, (xs * small).sum() / total
    top, left = round(14 - cy), round(14 - cx)
    top = min(max(top, 0), 28 - small.shape[0])
    left = min(max(left, 0), 28 - small.shape[1])
    out = np.zeros((28, 28))
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.clip(out, 0.0, 1.0)


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG of one digit and return it as a 28x28 MNIST-style image in [0, 1]."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                # transparent pixels are background: put them on white
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            gray = np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such image file") from None
    except OSError as e:  # includes PIL.UnidentifiedImageError
        raise ValueError(f"{path}: cannot read as an image ({e})") from None
    try:
        return to_mnist(gray)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
