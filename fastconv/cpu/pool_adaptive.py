"""Adaptive average and max pooling on the CPU (global pooling is output size 1).

Output cell i of a dim with input n and output o reads [floor(i n / o), ceil((i+1) n / o)),
as PyTorch. Same working layout and task split as :mod:`fastconv.cpu.pool_window`:
channels-last (N, D, H, W, C) input, one task per output pixel and channel block,
contiguous channels innermost. Max follows PyTorch CPU: the first maximum wins, a NaN
wins and a later NaN takes its index; indices are flat over the channel's input plane.
"""

from __future__ import annotations

import math

from numba import prange

from .._jit import inline_helper, parallel_kernel
from ..dispatch import register
from .pool_window import channel_block, channel_span, run_pool_chunks, task_position


@inline_helper
def adaptive_start(i, n, o):
    return (i * n) // o


@inline_helper
def adaptive_end(i, n, o):
    return ((i + 1) * n + o - 1) // o


@parallel_kernel
def adaptive_avg_ndhwc(x, out, cblock):
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * od_n * oh_n * ow_n * n_cb):
        n, od, oh, ow, cb = task_position(t, n_cb, ow_n, oh_n, od_n)
        c0, c1 = channel_span(cb, cblock, c_n)
        d0 = adaptive_start(od, in_d, od_n)
        d1 = adaptive_end(od, in_d, od_n)
        h0 = adaptive_start(oh, in_h, oh_n)
        h1 = adaptive_end(oh, in_h, oh_n)
        w0 = adaptive_start(ow, in_w, ow_n)
        w1 = adaptive_end(ow, in_w, ow_n)
        orow = out[n, od, oh, ow]
        for c in range(c0, c1):
            orow[c] = 0.0
        for i_d in range(d0, d1):
            for i_h in range(h0, h1):
                for i_w in range(w0, w1):
                    xpix = x[n, i_d, i_h, i_w]
                    for c in range(c0, c1):
                        orow[c] += xpix[c]
        count = out.dtype.type((d1 - d0) * (h1 - h0) * (w1 - w0))
        for c in range(c0, c1):
            orow[c] = orow[c] / count


@parallel_kernel
def adaptive_max_ndhwc(x, out, idx, want_idx, cblock):
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * od_n * oh_n * ow_n * n_cb):
        n, od, oh, ow, cb = task_position(t, n_cb, ow_n, oh_n, od_n)
        c0, c1 = channel_span(cb, cblock, c_n)
        d0 = adaptive_start(od, in_d, od_n)
        d1 = adaptive_end(od, in_d, od_n)
        h0 = adaptive_start(oh, in_h, oh_n)
        h1 = adaptive_end(oh, in_h, oh_n)
        w0 = adaptive_start(ow, in_w, ow_n)
        w1 = adaptive_end(ow, in_w, ow_n)
        orow = out[n, od, oh, ow]
        irow = idx[n, od, oh, ow] if want_idx else idx[0, 0, 0, 0]
        for c in range(c0, c1):
            orow[c] = -math.inf
        if want_idx:
            for c in range(c0, c1):
                irow[c] = -1
        for i_d in range(d0, d1):
            for i_h in range(h0, h1):
                for i_w in range(w0, w1):
                    xpix = x[n, i_d, i_h, i_w]
                    if want_idx:
                        flat = (i_d * in_h + i_h) * in_w + i_w
                        for c in range(c0, c1):
                            v = xpix[c]
                            m = orow[c]
                            take = (v > m) | (v != v)
                            orow[c] = v if take else m
                            irow[c] = flat if take else irow[c]
                    else:
                        for c in range(c0, c1):
                            v = xpix[c]
                            m = orow[c]
                            orow[c] = v if (v > m) | (v != v) else m


@register("adaptive_pool", "cpu", "direct", note="channels-last, channels vectorized")
def adaptive_pool_direct(spec, x):
    cblock = channel_block(spec.channels, spec.batch * math.prod(spec.out_size))
    if spec.mode == "avg":
        return run_pool_chunks(spec, x, lambda xw, out, idx: adaptive_avg_ndhwc(xw, out, cblock), False)
    if spec.mode == "max":
        def call(xw, out, idx):
            adaptive_max_ndhwc(xw, out, idx, spec.return_indices, cblock)

        return run_pool_chunks(spec, x, call, spec.return_indices)
    raise ValueError(f"{spec.op}: unknown adaptive pooling mode {spec.mode!r}")
