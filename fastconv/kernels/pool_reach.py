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

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .._jit_cache import robust_cache

# What an output contributes to the elements of its window (the gather kernels' ``kind``).
AVG, MAX, LP, LP_INF = 0, 1, 2, 3


def gather_kind(spec) -> int:
    """The kind of a PoolSpec or AdaptivePoolSpec's gradient."""
    if spec.mode == "max":
        return MAX
    if spec.mode == "avg":
        return AVG
    return LP_INF if math.isinf(spec.norm_type) else LP


def gather_scalars(spec, kind: int) -> tuple[float, int]:
    """(p, divisor_override or 0) that the gather kernels take: p only matters for LP, the
    divisor only for AVG; the others get fixed placeholders."""
    p = float(getattr(spec, "norm_type", 2.0)) if kind == LP else 2.0
    divisor = int(getattr(spec, "divisor_override", None) or 0) if kind == AVG else 0
    return p, divisor


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


def window_reaches(spec) -> list:
    """The three per-dim Reach of a PoolSpec, lifted to 3-D (a unit dim reaches its one output)."""
    return [adaptive_reach(1, 1)] * (3 - spec.nd) + [
        window_reach(n, o, k, s, d, pads, spec.count_include_pad)
        for n, o, k, s, d, pads in zip(spec.in_size, spec.out_size, spec.kernel, spec.stride, spec.dilation,
                                       spec.pads)]


def adaptive_reaches(spec) -> list:
    """The three per-dim Reach of an AdaptivePoolSpec, lifted to 3-D."""
    return [adaptive_reach(1, 1)] * (3 - spec.nd) + [adaptive_reach(n, o) for n, o in
                                                      zip(spec.in_size, spec.out_size)]


@robust_cache
@njit(nogil=True, error_model="numpy")
def first_stray_index(idx, cl, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, ptr_d, outs_d, ptr_h, outs_h, ptr_w,
                      outs_w):
    """The first flat position q of max-pooling indices ``idx`` (C-contiguous int64 in the
    output's 5-D lifted layout) whose index is neither -1 nor an input element inside q's
    window, per the per-dim reach lists; -1 when every index is one. Serial (cheap next
    to the gather, and usable for either backend without starting a thread pool)."""
    plane = in_d * in_h * in_w
    lanes = c_n if cl else 1
    blocks = idx.size // max(od_n * oh_n * ow_n * lanes, 1)
    w_u = np.uint64(in_w)
    h_u = np.uint64(in_h)
    q = 0
    for _ in range(blocks):
        for od in range(od_n):
            for oh in range(oh_n):
                for ow in range(ow_n):
                    for _m in range(lanes):
                        v = idx[q]
                        if v != -1:
                            if v < 0 or v >= plane:
                                return q
                            rest = np.uint64(v) // w_u
                            iw = v - np.int64(rest * w_u)
                            i_d = np.int64(rest // h_u)
                            ih = np.int64(rest) - i_d * in_h
                            ok = False
                            for a in range(ptr_w[iw], ptr_w[iw + 1]):
                                ok = ok or outs_w[a] == ow
                            if ok:
                                ok = False
                                for a in range(ptr_h[ih], ptr_h[ih + 1]):
                                    ok = ok or outs_h[a] == oh
                            if ok:
                                ok = False
                                for a in range(ptr_d[i_d], ptr_d[i_d + 1]):
                                    ok = ok or outs_d[a] == od
                            if not ok:
                                return q
                        q += 1
    return -1
