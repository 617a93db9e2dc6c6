"""Which pooling outputs read each input position: the gather form of a pooling gradient.

A pooling gradient sums, for each input element, the gradients of the outputs whose
windows contain it. Windows are products of per-dim ranges, so per dim it is enough to
know, for each input position i, the outputs o whose window covers i. ``reach`` holds
that as CSR arrays: outputs ``outs[ptr[i]:ptr[i + 1]]`` (ascending tap order for
sliding windows, ascending o for adaptive cells), built once per call on the host in
NumPy and read by the CPU and GPU kernels alike. The kernels visit them in this fixed
order, so every sum runs in the same order on every run and thread count.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Reach(NamedTuple):
    ptr: np.ndarray  # (n + 1,) int64
    outs: np.ndarray  # (ptr[-1],) int64
    count: np.ndarray  # (o,) int64: taps of each output in this dim that an average divides by


def _csr(hit: np.ndarray, out: np.ndarray) -> tuple:
    ptr = np.zeros(hit.shape[0] + 1, np.int64)
    np.cumsum(hit.sum(1), out=ptr[1:])
    return ptr, np.ascontiguousarray(out[hit], np.int64)


def window_reach(n, o, k, s, d, pads, include_pad=True) -> Reach:
    """Input i of a dim of ``n`` is tap j of output q when q * s - begin + j * d == i,
    0 <= q < o. ``count[q]``: q's taps within [-begin, n + end) (``include_pad``) or
    within [0, n), the forward average's divisor in this dim."""
    begin, end = pads
    i = np.arange(n, dtype=np.int64)[:, None]
    j = np.arange(k, dtype=np.int64)[None, :]
    start = i + begin - j * d  # q * s for the tap j that lands on i
    q = start // s
    hit = (start >= 0) & (start % s == 0) & (q < o)
    ptr, outs = _csr(hit, q)
    taps = np.arange(o, dtype=np.int64)[:, None] * s - begin + np.arange(k, dtype=np.int64)[None, :] * d
    lo, hi = (-begin, n + end) if include_pad else (0, n)
    count = ((taps >= lo) & (taps < hi)).sum(1).astype(np.int64)
    return Reach(ptr, outs, count)


def adaptive_reach(n, o) -> Reach:
    """Cell q of an adaptive dim covers [floor(q n / o), ceil((q + 1) n / o)); input i lies
    in the cells [floor(i o / n), ceil((i + 1) o / n)) (the same rule, n and o swapped)."""
    i = np.arange(n, dtype=np.int64)
    first = (i * o) // n
    last = -(-((i + 1) * o) // n)
    span = int((last - first).max())
    q = first[:, None] + np.arange(span, dtype=np.int64)[None, :]
    ptr, outs = _csr(q < last[:, None], q)
    cells = np.arange(o, dtype=np.int64)
    count = -(-((cells + 1) * n) // o) - (cells * n) // o
    return Reach(ptr, outs, count)
