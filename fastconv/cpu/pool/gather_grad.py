"""Pooling gradients on the CPU, in gather form: each input element sums, in a fixed
order, the gradients of the outputs whose windows contain it (no scatter, no atomics).
Max pooling (window and adaptive) routes through its indices instead, in the same order
(cpu/pool/max_grad.py); the max branch here serves Lp pooling with p = inf.

One kernel serves sliding-window (max/avg/Lp) and adaptive pooling, 1-D to 3-D, either
layout: the windows reach an input element through per-dim CSR lists
(:mod:`fastconv.kernels.pool_reach`), visited d, then h, then w, each in list order, so
a result is bitwise the same on every run and for every thread count. Each parallel
task owns one input row (channels-first: (n, c, d, h); channels-last: (n, d, h), all
channels), so no two tasks write one element.

What an output q contributes to an input element e of its window (``kind``):
- AVG: g[q] / divisor(q), the divisor as the forward's (divisor_override, else the
  product of the per-dim counts; a divisor <= 0 contributes 0);
- MAX: g[q] when the forward's index of q is e (ties and NaN as the forward decided),
  run from the outputs' side by max_grad.py in the same order;
- LP (p finite): g[q] * y[q] ** (1 - p), with y the forward's output, 0 where y == 0;
  the sum is then multiplied by sign(x[e]) * |x[e]| ** (p - 1) (0 where x[e] == 0);
  the derivative of (sum |x| ** p) ** (1 / p), taken as 0 where it is not finite;
- LP_INF: as MAX, with the indices of max |x|, times sign(x[e]).

Arrays are C-contiguous in the working dtype (float32 for float16/float32, float64),
lifted to 5-D: (N, C, D, H, W) or (N, D, H, W, C); sums run in the working dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._arrays import working_dtype
from ...dispatch import register
from ...kernels.geometry import lift3
from ...kernels.pool_reach import MAX, adaptive_reaches, gather_kind, gather_scalars, window_reaches
from .._jit import parallel_kernel
from .max_grad import max_pool_grad_scatter


@parallel_kernel
def pool_grad_gather(g, idx, y, x, gi, kind, p, divisor_override, cl, n_img, c_n,
                     in_d, in_h, in_w, od_n, oh_n, ow_n,
                     ptr_d, outs_d, cnt_d, ptr_h, outs_h, cnt_h, ptr_w, outs_w, cnt_w):
    """gi = the gradient of the input (module docstring); flat arrays, 5-D logical shapes.

    A task's row is zeroed, then for each (od, oh) reaching it, each element of the row
    adds its w outputs' contributions: per element, the (od, oh, ow) order of the
    module docstring. The innermost loop runs over the lanes that share an output
    offset: all channels (channels-last, contiguous) or the one channel. A contribution
    that does not apply adds +0, which leaves every sum as it was (none is -0).

    LP_INF walks the row's outputs instead, each adding its gradient to the element its
    index names when that lies in the row: per element the same (od, oh, ow) order and the
    same sums, for a third of the work of testing every window of every element (3x3
    stride 2). It relies on the indices lying inside their windows (fastconv.grad checks
    them: kernels.pool_reach.first_stray_index); an index past the row is never written.
    MAX does not come here: run_gather routes it through max_grad's scatter (each output
    visited once, not once per input row its window spans).
    """
    zero = gi.dtype.type(0)
    one = gi.dtype.type(1)
    pw = gi.dtype.type(p)
    lanes = c_n if cl else 1
    rows = n_img * in_d * in_h * (1 if cl else c_n)
    for t in prange(rows):
        ih = t % in_h
        i_d = (t // in_h) % in_d
        if cl:
            c = 0
            n = t // (in_h * in_d)
            row_e = ((n * in_d + i_d) * in_h + ih) * in_w * c_n
        else:
            c = (t // (in_h * in_d)) % c_n
            n = t // (in_h * in_d * c_n)
            row_e = t * in_w
        for j in range(in_w * lanes):
            gi[row_e + j] = zero
        for a in range(ptr_d[i_d], ptr_d[i_d + 1]):
            od = outs_d[a]
            for b in range(ptr_h[ih], ptr_h[ih + 1]):
                oh = outs_h[b]
                if cl:
                    row_q = ((n * od_n + od) * oh_n + oh) * ow_n * c_n
                else:
                    row_q = (((n * c_n + c) * od_n + od) * oh_n + oh) * ow_n
                if kind == 3:  # each output of the row adds its gradient to the element it chose
                    row_flat = (i_d * in_h + ih) * in_w
                    for ow in range(ow_n):
                        q0 = row_q + ow * lanes
                        for m in range(lanes):
                            iw = idx[q0 + m] - row_flat
                            if iw >= 0 and iw < in_w:
                                gi[row_e + iw * lanes + m] += g[q0 + m]
                    continue
                div_dh = cnt_d[od] * cnt_h[oh]
                for iw in range(in_w):
                    e0 = row_e + iw * lanes
                    for f in range(ptr_w[iw], ptr_w[iw + 1]):
                        ow = outs_w[f]
                        q0 = row_q + ow * lanes
                        if kind == 0:
                            div = divisor_override if divisor_override > 0 else div_dh * cnt_w[ow]
                            if div > 0:
                                dv = gi.dtype.type(div)
                                for m in range(lanes):
                                    gi[e0 + m] += g[q0 + m] / dv
                        elif p == 1.0:
                            for m in range(lanes):
                                gi[e0 + m] += zero if y[q0 + m] == zero else g[q0 + m]
                        elif p == 2.0:
                            for m in range(lanes):
                                yq = y[q0 + m]
                                gi[e0 + m] += zero if yq == zero else g[q0 + m] / yq
                        else:
                            for m in range(lanes):
                                yq = y[q0 + m]
                                gi[e0 + m] += zero if yq == zero else g[q0 + m] * yq ** (one - pw)
        if kind == 2 or kind == 3:
            for j in range(in_w * lanes):
                e = row_e + j
                xe = x[e]
                acc = gi[e]
                if xe == zero or acc == zero:
                    acc = zero
                elif kind == 3 or p == 1.0:
                    acc = acc if xe > zero else -acc
                elif p == 2.0:
                    acc *= xe
                else:
                    mag = abs(xe) ** (pw - one)
                    acc = acc * mag if xe > zero else -(acc * mag)
                gi[e] = acc


# ---- plans and entry points --------------------------------------------------------------

_NO_INDEX = np.zeros(1, np.int64)


def _flat(a, dtype):
    """A C-contiguous 1-D array of ``a`` in ``dtype`` (a view when it already is one)."""
    return np.ascontiguousarray(a, dtype).reshape(-1)


def run_gather(spec, reaches, g, idx, y, x, descending=True):
    """The input gradient of ``spec`` (forward PoolSpec / AdaptivePoolSpec, batched) from the
    output gradient ``g`` (the spec's output shape), in the user's layout and dtype.
    ``idx``: the forward's indices (max; Lp with p = inf: those of max |x|); ``y``: the
    forward's output in the working dtype (Lp with finite p); ``x``: the input (Lp).
    ``descending``: the reach lists run in descending output order (sliding windows)."""
    dtype = np.dtype(spec.dtype)
    wd = working_dtype(dtype)
    kind = gather_kind(spec)
    dummy = np.zeros(1, wd)
    gi = np.empty(math.prod(spec.input_shape), wd)
    (in_d, in_h, in_w), (od_n, oh_n, ow_n) = lift3(spec.in_size, 1), lift3(spec.out_size, 1)
    if gi.size and kind == MAX:  # the same sums in the same order as the gather below, from the outputs' side
        max_pool_grad_scatter(_flat(g, wd), _flat(idx, np.int64), gi, spec.channels_last, spec.batch,
                              spec.channels, in_d * in_h * in_w, od_n, oh_n, ow_n, descending)
    elif gi.size:
        p, divisor = gather_scalars(spec, kind)
        geometry = tuple(v for r in reaches for v in r)
        pool_grad_gather(_flat(g, wd), _NO_INDEX if idx is None else _flat(idx, np.int64),
                         dummy if y is None else _flat(y, wd), dummy if x is None else _flat(x, wd), gi,
                         kind, p, divisor, spec.channels_last, spec.batch, spec.channels,
                         in_d, in_h, in_w, od_n, oh_n, ow_n, *geometry)
    gi = gi.reshape(spec.input_shape)
    return gi if wd == dtype else gi.astype(dtype)


@register("pool_grad", "cpu", "gather",
          note="gather form: each input element sums its windows; max pooling through its indices (Numba)")
def pool_grad_cpu(spec, g, idx, y, x):
    return run_gather(spec, window_reaches(spec), g, idx, y, x)


@register("adaptive_pool_grad", "cpu", "gather", note="gather form over adaptive cells (Numba)")
def adaptive_pool_grad_cpu(spec, g, idx):
    return run_gather(spec, adaptive_reaches(spec), g, idx, None, None, descending=False)
