"""Sliding-window pooling kernels for channels-first input, read in place.

Input (N, C, D, H, W), output (N, C, OD, OH, OW), both C-contiguous in the working
dtype (see :mod:`fastconv.cpu.pool.run`). One parallel task per output row
(n, c, od, oh). For each of its in-input taps (kd, kh, kw) the innermost loop runs
over the output columns whose tap lies inside the input, so padding costs nothing and
the loop vectorizes over columns. Each output sees its taps in (kd, kh, kw) order, as
in the channels-last kernels, so both layouts give bitwise-identical results.
Semantics: :mod:`fastconv.cpu.pool.window`.

Indices into the flat arrays are unsigned: Numba then emits no negative-index
wraparound, which would block vectorization.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...kernels.inline import inline_helper
from ...kernels.pool_taps import avg_divisor, lowest, span
from .run import twin


@inline_helper
def column_spans(kw_n, dw, pw, sw, in_w, ow_n):
    """[lo, hi) per kernel column kw: the output columns whose tap kw lies in the input."""
    cols = np.empty((kw_n, 2), np.int64)
    for kw in range(kw_n):
        lo, hi = span(kw * dw - pw, sw, in_w, ow_n)
        cols[kw, 0] = lo
        cols[kw, 1] = hi
    return cols


@inline_helper
def max_into(xf, of, xs, os, n, step):
    """of[os + j] = max(of[os + j], xf[xs + j * step]) for j < n, NaN winning; a
    constant ``step`` (inlined) lets LLVM vectorize strided reads by shuffles."""
    for j in range(n):
        uj = np.uint64(j)
        v = xf[xs + uj * step]
        m = of[os + uj]
        of[os + uj] = v if (v > m) | (v != v) else m


def _max_pool_nchw(x, out, idx, want_idx, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw):
    """out = max over in-input taps; idx the flat (d, h, w) of the winner."""
    n_img, c_n, in_d, in_h, in_w = x.shape
    od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    jf = idx.reshape(idx.size)
    plane = in_d * in_h * in_w
    usw = np.uint64(sw)
    cols = column_spans(kw_n, dw, pw, sw, in_w, ow_n)
    for t in prange(n_img * c_n * od_n * oh_n):
        oh = t % oh_n
        p = t // oh_n
        od = p % od_n
        x0 = (p // od_n) * plane
        o0 = np.uint64(t * ow_n)
        for j in range(ow_n):
            of[o0 + np.uint64(j)] = lowest(out)  # -inf, or an integer dtype's minimum
        if want_idx:
            for j in range(ow_n):
                jf[o0 + np.uint64(j)] = -1
        d_lo, d_hi = span(od * sd - pd, dd, in_d, kd_n)
        h_lo, h_hi = span(oh * sh - ph, dh, in_h, kh_n)
        for kd in range(d_lo, d_hi):
            for kh in range(h_lo, h_hi):
                row = ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                for kw in range(kw_n):
                    off = kw * dw - pw
                    lo = cols[kw, 0]
                    hi = cols[kw, 1]
                    first = row + lo * sw + off  # flat (d, h, w) of column lo's tap
                    xs = np.uint64(x0 + first)
                    os = o0 + np.uint64(lo)
                    if want_idx:
                        for j in range(hi - lo):
                            uj = np.uint64(j)
                            v = xf[xs + uj * usw]
                            m = of[os + uj]
                            k = jf[os + uj]
                            take = (v > m) | (v != v) | (k < 0)  # k < 0: the first in-input tap
                            of[os + uj] = v if take else m
                            jf[os + uj] = first + j * sw if take else k
                    elif sw == 1:
                        max_into(xf, of, xs, os, hi - lo, np.uint64(1))
                    elif sw == 2:
                        max_into(xf, of, xs, os, hi - lo, np.uint64(2))
                    else:
                        max_into(xf, of, xs, os, hi - lo, usw)


def _avg_pool_nchw(x, out, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw, ed, eh, ew,
                   include_pad, divisor_override):
    """out = sum of in-input taps / divisor."""
    n_img, c_n, in_d, in_h, in_w = x.shape
    od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    plane = in_d * in_h * in_w
    usw = np.uint64(sw)
    zero = out.dtype.type(0)
    cols = column_spans(kw_n, dw, pw, sw, in_w, ow_n)
    col_div = np.empty(ow_n, np.int64)
    for j in range(ow_n):
        col_div[j] = avg_divisor(j * sw - pw, kw_n, dw, pw, ew, in_w, include_pad)
    for t in prange(n_img * c_n * od_n * oh_n):
        oh = t % oh_n
        p = t // oh_n
        od = p % od_n
        x0 = (p // od_n) * plane
        o0 = np.uint64(t * ow_n)
        for j in range(ow_n):
            of[o0 + np.uint64(j)] = zero
        d_lo, d_hi = span(od * sd - pd, dd, in_d, kd_n)
        h_lo, h_hi = span(oh * sh - ph, dh, in_h, kh_n)
        for kd in range(d_lo, d_hi):
            for kh in range(h_lo, h_hi):
                row = ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                for kw in range(kw_n):
                    off = kw * dw - pw
                    lo = cols[kw, 0]
                    hi = cols[kw, 1]
                    xs = np.uint64(x0 + row + lo * sw + off)
                    os = o0 + np.uint64(lo)
                    for j in range(hi - lo):
                        uj = np.uint64(j)
                        of[os + uj] += xf[xs + uj * usw]
        if divisor_override > 0:
            dv = out.dtype.type(divisor_override)
            for j in range(ow_n):
                of[o0 + np.uint64(j)] = of[o0 + np.uint64(j)] / dv
            continue
        vert = (avg_divisor(od * sd - pd, kd_n, dd, pd, ed, in_d, include_pad)
                * avg_divisor(oh * sh - ph, kh_n, dh, ph, eh, in_h, include_pad))
        for j in range(ow_n):
            div = vert * col_div[j]
            o = o0 + np.uint64(j)
            of[o] = of[o] / out.dtype.type(div) if div > 0 else zero


def _lp_pool_nchw(x, out, p, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw):
    """out = (sum of in-input |x|**p) ** (1/p); p = inf: max |x| (NaN propagates)."""
    n_img, c_n, in_d, in_h, in_w = x.shape
    od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    plane = in_d * in_h * in_w
    usw = np.uint64(sw)
    zero = out.dtype.type(0)
    cols = column_spans(kw_n, dw, pw, sw, in_w, ow_n)
    # 1: p == 1, 2: p == 2, 3: p == inf, 4: other whole p (repeated products), 0: any p
    kind = 1 if p == 1.0 else 2 if p == 2.0 else 3 if p == np.inf else 4 if p == np.floor(p) else 0
    ip = int(p) if kind == 4 else 0
    root = out.dtype.type(1.0 / p)
    for t in prange(n_img * c_n * od_n * oh_n):
        oh = t % oh_n
        q = t // oh_n
        od = q % od_n
        x0 = (q // od_n) * plane
        o0 = np.uint64(t * ow_n)
        for j in range(ow_n):
            of[o0 + np.uint64(j)] = zero
        d_lo, d_hi = span(od * sd - pd, dd, in_d, kd_n)
        h_lo, h_hi = span(oh * sh - ph, dh, in_h, kh_n)
        for kd in range(d_lo, d_hi):
            for kh in range(h_lo, h_hi):
                row = ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                for kw in range(kw_n):
                    off = kw * dw - pw
                    lo = cols[kw, 0]
                    hi = cols[kw, 1]
                    xs = np.uint64(x0 + row + lo * sw + off)
                    os = o0 + np.uint64(lo)
                    if kind == 1:
                        for j in range(hi - lo):
                            uj = np.uint64(j)
                            of[os + uj] += abs(xf[xs + uj * usw])
                    elif kind == 2:
                        for j in range(hi - lo):
                            uj = np.uint64(j)
                            v = xf[xs + uj * usw]
                            of[os + uj] += v * v
                    elif kind == 3:
                        for j in range(hi - lo):
                            uj = np.uint64(j)
                            v = abs(xf[xs + uj * usw])
                            m = of[os + uj]
                            of[os + uj] = v if (v > m) | (v != v) else m
                    elif kind == 4:
                        for j in range(hi - lo):
                            uj = np.uint64(j)
                            v = abs(xf[xs + uj * usw])
                            r = v
                            for _ in range(ip - 1):
                                r *= v
                            of[os + uj] += r
                    else:
                        for j in range(hi - lo):
                            uj = np.uint64(j)
                            of[os + uj] += abs(xf[xs + uj * usw]) ** p
        if kind == 2:
            for j in range(ow_n):
                of[o0 + np.uint64(j)] = np.sqrt(of[o0 + np.uint64(j)])
        elif kind == 0 or kind == 4:
            for j in range(ow_n):
                of[o0 + np.uint64(j)] = of[o0 + np.uint64(j)] ** root


max_pool_nchw = twin(_max_pool_nchw)
avg_pool_nchw = twin(_avg_pool_nchw)
lp_pool_nchw = twin(_lp_pool_nchw)
