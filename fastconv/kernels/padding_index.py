"""Where each padded position reads from, for every padding mode and any pad size.

One int64 map per spatial axis: entry ``j`` of the padded axis is input index
``map[j]``, or -1 for a constant (zeros/constant mode) cell. Used by the CPU and the
GPU padding kernels alike.
"""

from __future__ import annotations

import numpy as np


def source_index(n: int, begin: int, end: int, mode: str) -> np.ndarray:
    """Input index for each of the ``begin + n + end`` padded positions of one axis."""
    pos = np.arange(-begin, n + end, dtype=np.int64)
    if mode in ("zeros", "constant"):
        return np.where((pos >= 0) & (pos < n), pos, -1)
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    if mode == "circular":
        return np.mod(pos, n)
    if mode == "reflect":  # mirror without repeating the edge: period 2(n-1)
        if n == 1:
            return np.zeros_like(pos)
        m = np.mod(pos, 2 * (n - 1))
        return np.where(m < n, m, 2 * (n - 1) - m)
    if mode == "symmetric":  # mirror repeating the edge sample: period 2n
        m = np.mod(pos, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    raise ValueError(f"padding_mode={mode!r} is not supported")


def gather_lists(n: int, begin: int, end: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`source_index`, for folding a padded copy's gradient back.

    Returns ``(starts, positions)``, int64: the padded positions that copy input index
    ``i`` are ``positions[starts[i]:starts[i + 1]]``, in increasing order (a fixed
    summation order, so a fold is deterministic). Constant cells (-1) belong to no input.
    """
    source = source_index(n, begin, end, mode)
    positions = np.argsort(source, kind="stable").astype(np.int64)
    positions = positions[source[positions] >= 0]
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(source[source >= 0], minlength=n), out=starts[1:])
    return starts, positions
