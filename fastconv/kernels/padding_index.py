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
