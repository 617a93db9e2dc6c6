"""Classic image filters as conv2d weights.

Every function returns a weight of shape (1, 1, kh, kw), ready for
``fastconv.conv2d(x, w, padding="same")`` on a single-channel image; use
:func:`for_channels` for a depthwise weight (C, 1, kh, kw) that filters every channel
of a C-channel image on its own (``conv2d(x, w, groups=C)`` or ``depthwise_conv2d``).

Orientation: conv2d is cross-correlation, as in PyTorch,
``out[i, j] = sum_{a, b} w[a, b] * x[i + a - pad_h, j + b - pad_w]``; the kernel is not
flipped. Row 0 of a kernel is the top (smallest H), column 0 the left (smallest W). So
a derivative filter for ``axis`` responds positively where intensity increases
along that axis (H downwards, W to the right), as ``scipy.ndimage.sobel`` does. (For
a true convolution, ``np.flip`` the kernel; the symmetric filters do not change.)

Axes: ``axis=0`` / ``-2`` / ``"y"`` / ``"h"`` is the height, ``axis=1`` / ``-1`` /
``"x"`` / ``"w"`` the width. Sizes are an int or an (kh, kw) pair. ``dtype`` is float16,
float32 (default) or float64.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "box",
    "for_channels",
    "gaussian",
    "identity",
    "laplacian",
    "prewitt",
    "scharr",
    "sharpen",
    "sobel",
]

_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_AXIS_NAMES = {"y": 0, "h": 0, "x": 1, "w": 1}


def _dtype(fn, dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{fn}: dtype={dtype!r} is not a dtype; expected float16, float32 or float64") from None
    if dt not in _DTYPES:
        raise TypeError(f"{fn}: dtype={dt} is not supported; expected float16, float32 or float64")
    return dt


def _axis(fn, axis) -> int:
    if isinstance(axis, str) and axis.lower() in _AXIS_NAMES:
        return _AXIS_NAMES[axis.lower()]
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) and -2 <= axis <= 1:
        return int(axis) % 2
    raise ValueError(f"{fn}: axis={axis!r} must be 0, 1, -2, -1, 'y'/'h' (height) or 'x'/'w' (width)")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _size2(fn, name, size, *, odd=False) -> tuple:
    if _is_int(size):
        pair = (int(size),) * 2
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2 \
            and all(_is_int(v) for v in size):
        pair = tuple(int(v) for v in size)
    else:
        raise ValueError(f"{fn}: {name}={size!r} must be an int or a pair of ints (kh, kw)")
    if any(v < 1 for v in pair):
        raise ValueError(f"{fn}: {name}={size!r} must be >= 1")
    if odd and any(v % 2 == 0 for v in pair):
        raise ValueError(f"{fn}: {name}={size!r} must be odd (the kernel needs a centre tap)")
    return pair


def _weight(kernel2d, dtype) -> np.ndarray:
    k = np.asarray(kernel2d, dtype=np.float64)
    return np.ascontiguousarray(k.astype(dtype).reshape(1, 1, *k.shape))


def _derivative(fn, smooth, axis, normalize, dtype):
    dt = _dtype(fn, dtype)
    ax = _axis(fn, axis)
    smooth = np.asarray(smooth, dtype=np.float64)
    diff = np.array([-1.0, 0.0, 1.0])
    k = np.outer(diff, smooth) if ax == 0 else np.outer(smooth, diff)
    if normalize:
        k = k / (2 * smooth.sum())
    return _weight(k, dt)


def sobel(axis=-1, *, normalize=False, dtype=np.float32) -> np.ndarray:
    """Sobel derivative along ``axis`` (default the width), smoothing [1, 2, 1] across it.

    ``axis=-1`` gives [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]. On a ramp of slope 1 the
    response is 8, or 1 with ``normalize=True`` (kernel / 8). Same as
    ``scipy.ndimage.sobel`` away from the border.
    """
    return _derivative("sobel", (1, 2, 1), axis, normalize, dtype)


def scharr(axis=-1, *, normalize=False, dtype=np.float32) -> np.ndarray:
    """Scharr derivative along ``axis``, smoothing [3, 10, 3] across it.

    ``axis=-1`` gives [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]; a slope-1 ramp gives 32
    (1 with ``normalize=True``).
    """
    return _derivative("scharr", (3, 10, 3), axis, normalize, dtype)


def prewitt(axis=-1, *, normalize=False, dtype=np.float32) -> np.ndarray:
    """Prewitt derivative along ``axis``, smoothing [1, 1, 1] across it.

    ``axis=-1`` gives [[-1, 0, 1]] * 3; a slope-1 ramp gives 6 (1 with ``normalize=True``).
    Same as ``scipy.ndimage.prewitt`` away from the border.
    """
    return _derivative("prewitt", (1, 1, 1), axis, normalize, dtype)


def laplacian(diagonal=False, *, dtype=np.float32) -> np.ndarray:
    """Discrete Laplacian: [[0, 1, 0], [1, -4, 1], [0, 1, 0]], or with ``diagonal=True``
    the 8-neighbour [[1, 1, 1], [1, -8, 1], [1, 1, 1]].

    On x**2 + y**2 the 4-neighbour form gives 4 (as ``scipy.ndimage.laplace``), the
    8-neighbour form 12 (it sums three second differences per axis).
    """
    dt = _dtype("laplacian", dtype)
    if diagonal:
        k = np.ones((3, 3))
        k[1, 1] = -8.0
    else:
        k = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    return _weight(k, dt)


def gaussian(size=3, sigma=None, *, dtype=np.float32) -> np.ndarray:
    """Gaussian blur, sampled at integer offsets from the centre and normalised to sum 1.

    ``size`` an int or (kh, kw); ``sigma`` a number or (sigma_h, sigma_w), by default
    OpenCV's ``0.3 * ((size - 1) / 2 - 1) + 0.8``. Separable: the outer product of the
    1-D kernels ``exp(-t**2 / (2 sigma**2))``, ``t = j - (size - 1) / 2``. For odd sizes
    equal to ``scipy.ndimage.gaussian_filter`` with ``radius = size // 2`` away from the
    border.
    """
    fn = "gaussian"
    dt = _dtype(fn, dtype)
    kh, kw = _size2(fn, "size", size)
    if sigma is None:
        sig = tuple(0.3 * ((k - 1) * 0.5 - 1) + 0.8 for k in (kh, kw))
    elif isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        sig = (float(sigma),) * 2
    elif isinstance(sigma, Sequence) and not isinstance(sigma, str) and len(sigma) == 2 and all(
            isinstance(s, numbers.Real) and not isinstance(s, bool) for s in sigma):
        sig = tuple(float(s) for s in sigma)
    else:
        raise ValueError(f"{fn}: sigma={sigma!r} must be a number, a pair of numbers or None")
    if not all(s > 0 and math.isfinite(s) for s in sig):
        raise ValueError(f"{fn}: sigma={sigma!r} must be positive and finite")

    def one(k, s):
        t = np.arange(k) - (k - 1) / 2
        g = np.exp(-0.5 * (t / s) ** 2)
        return g / g.sum()

    return _weight(np.outer(one(kh, sig[0]), one(kw, sig[1])), dt)


def box(size=3, *, normalize=True, dtype=np.float32) -> np.ndarray:
    """Box (mean) filter: ones / (kh * kw), or plain ones with ``normalize=False``."""
    fn = "box"
    dt = _dtype(fn, dtype)
    kh, kw = _size2(fn, "size", size)
    k = np.ones((kh, kw))
    return _weight(k / k.size if normalize else k, dt)


def sharpen(amount=1.0, *, dtype=np.float32) -> np.ndarray:
    """Unsharp-style sharpening, identity - amount * laplacian():
    [[0, -a, 0], [-a, 1 + 4a, -a], [0, -a, 0]]; ``amount=1`` is the classic
    [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]. Sums to 1, so flat regions are unchanged."""
    fn = "sharpen"
    dt = _dtype(fn, dtype)
    if not isinstance(amount, numbers.Real) or isinstance(amount, bool) or not math.isfinite(amount):
        raise ValueError(f"sharpen: amount={amount!r} must be a finite number")
    a = float(amount)
    k = np.array([[0.0, -a, 0.0], [-a, 1.0 + 4.0 * a, -a], [0.0, -a, 0.0]])
    return _weight(k, dt)


def identity(size=3, *, dtype=np.float32) -> np.ndarray:
    """A single 1 at the centre of an odd (kh, kw) kernel: with padding="same" (or
    size // 2) conv2d returns its input."""
    fn = "identity"
    dt = _dtype(fn, dtype)
    kh, kw = _size2(fn, "size", size, odd=True)
    k = np.zeros((kh, kw))
    k[kh // 2, kw // 2] = 1.0
    return _weight(k, dt)


def for_channels(kernel, channels) -> np.ndarray:
    """Depthwise weight (C, 1, kh, kw): ``kernel`` ((1, 1, kh, kw) or (kh, kw)) repeated
    for each of ``channels`` channels. Use with ``conv2d(x, w, groups=C)`` or
    ``depthwise_conv2d(x, w)``; the dtype is the kernel's."""
    fn = "for_channels"
    k = np.asarray(kernel)
    if k.ndim == 4 and k.shape[:2] == (1, 1):
        k = k[0, 0]
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"{fn}: kernel has shape {np.shape(kernel)}; expected (1, 1, kh, kw) or (kh, kw)")
    if k.dtype not in _DTYPES:
        raise TypeError(f"{fn}: kernel has dtype {k.dtype}; expected float16, float32 or float64")
    if not _is_int(channels):
        raise TypeError(f"{fn}: channels must be an int, got {type(channels).__name__}")
    if channels < 1:
        raise ValueError(f"{fn}: channels={channels} must be >= 1")
    return np.ascontiguousarray(np.broadcast_to(k, (int(channels), 1, *k.shape)))
