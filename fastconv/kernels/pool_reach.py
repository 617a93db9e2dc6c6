"""Which pooling outputs read each input position: the gather form of a pooling gradient.

A pooling gradient sums, for each input element, the gradients of the outputs whose
windows contain it. Windows are products of per-dim ranges, so per dim it is enough to
know, for each input position i, the outputs o whose window covers i. ``reach`` holds
that as CSR arrays: outputs ``outs[ptr[i]:ptr[i + 1]]`` (ascending tap order for
sliding windows, ascending o for adaptive cells), built on the host in NumPy once per
spec (kept in fastconv's plan cache: a tiny layer's reaches cost more than its gradient)
and read by the CPU and GPU kernels alike, which never write them. The kernels visit them in this fixed
order, so every sum runs in the same order on every run and thread count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .._cache import cached_plan
from .._jit_cache import robust_cache
from .inline import inline_helper

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


@cached_plan
def window_reaches(spec) -> list:
    """The three per-dim Reach of a PoolSpec, lifted to 3-D (a unit dim reaches its one output)."""
    return [adaptive_reach(1, 1)] * (3 - spec.nd) + [
        window_reach(n, o, k, s, d, pads, spec.count_include_pad)
        for n, o, k, s, d, pads in zip(spec.in_size, spec.out_size, spec.kernel, spec.stride, spec.dilation,
                                       spec.pads)]


@cached_plan
def adaptive_reaches(spec) -> list:
    """The three per-dim Reach of an AdaptivePoolSpec, lifted to 3-D."""
    return [adaptive_reach(1, 1)] * (3 - spec.nd) + [adaptive_reach(n, o) for n, o in
                                                      zip(spec.in_size, spec.out_size)]


def output_spans(reach: Reach, o: int) -> tuple:
    """Per output cell of one dim, the input cells its window covers, as (first, last, step)
    arrays: each window's cells (clipped to the input) are evenly spaced, by the dilation
    (sliding windows) or 1 (adaptive cells). An output covering none has first > last."""
    cells = np.repeat(np.arange(len(reach.ptr) - 1, dtype=np.int64), np.diff(reach.ptr))
    first = np.full(o, np.iinfo(np.int64).max, np.int64)
    last = np.full(o, -1, np.int64)
    np.minimum.at(first, reach.outs, cells)
    np.maximum.at(last, reach.outs, cells)
    covered = np.bincount(reach.outs, minlength=o)
    step = np.where(covered > 1, (last - first) // np.maximum(covered - 1, 1), 1)
    return first, last, step


@inline_helper
def exact_quotient(v, n, inv_n):
    """v // n for 0 <= v < 2**52 and n >= 1, by a multiply with ``inv_n`` = 1 / n and one
    correction: a 64-bit division took most of first_stray_index's time."""
    r = np.int64(v * inv_n)
    if r * n > v:
        r -= 1
    elif (r + 1) * n <= v:
        r += 1
    return r


@robust_cache
@njit(nogil=True, error_model="numpy")
def first_stray_index(idx, cl, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, first_d, last_d, step_d, first_h, last_h,
                      step_h, first_w, last_w, step_w):
    """The first flat position q of max-pooling indices ``idx`` (C-contiguous int64 in the
    output's 5-D lifted layout) whose index is neither -1 nor an input element inside q's
    window, per the per-dim spans of :func:`output_spans`; -1 when every index is one.
    Serial (cheap next to the gather, and usable for either backend without starting a
    thread pool). One flat loop with the output's position kept by counters, the window
    tests written out: nested loops over the output's axes, or the tests as an inlined
    helper returning a short-circuit ``or``, each ran 10x slower (1.6M indices: 91 ms
    against 9, one core)."""
    plane = in_d * in_h * in_w
    lanes = c_n if cl else 1
    inv_w = 1.0 / max(in_w, 1)
    inv_h = 1.0 / max(in_h, 1)
    od = oh = ow = m = 0
    for q in range(idx.size):
        v = idx[q]
        if v != -1:
            if v < 0 or v >= plane:
                return q
            rest = exact_quotient(v, in_w, inv_w)
            i_d = exact_quotient(rest, in_h, inv_h)
            iw = v - rest * in_w
            ih = rest - i_d * in_h
            r = iw - first_w[ow]
            bad = r < 0 or iw > last_w[ow] or (step_w[ow] != 1 and r % step_w[ow] != 0)
            r = ih - first_h[oh]
            bad |= r < 0 or ih > last_h[oh] or (step_h[oh] != 1 and r % step_h[oh] != 0)
            r = i_d - first_d[od]
            bad |= r < 0 or i_d > last_d[od] or (step_d[od] != 1 and r % step_d[od] != 0)
            if bad:
                return q
        m += 1
        if m == lanes:
            m = 0
            ow += 1
            if ow == ow_n:
                ow = 0
                oh += 1
                if oh == oh_n:
                    oh = 0
                    od += 1
                    if od == od_n:
                        od = 0
    return -1
