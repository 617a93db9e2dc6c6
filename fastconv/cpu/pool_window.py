"""Sliding-window pooling on the CPU: max (with indices), average and Lp.

Working layout: channels-last, 3-D-lifted, C-contiguous input (N, D, H, W, C) in the
working dtype (float32 for float16/float32, float64 for float64); output
(N, OD, OH, OW, C). One kernel per mode serves 1-D, 2-D and 3-D (unit D and H axes).

Padding is implicit: a tap is read only when it lies inside the unpadded input, so
pads of any size, per side, cost nothing. Each parallel task owns one output pixel
and one block of channels; the innermost loop runs over those contiguous channels
and accumulates straight into the output row (no scratch).

Semantics (PyTorch's where it has one):
- max: padded cells never win; the first maximum in scan order wins; a NaN wins over
  everything and a later NaN takes its index (PyTorch CPU: ``v > max || isnan(v)``).
  Indices are flat over each channel's unpadded input plane. A window with no tap in
  the input (only possible with pads beyond PyTorch's limits) gives -inf and index -1; a
  window of -inf values gives the index of its first in-input tap, as PyTorch does.
- avg: sum of the in-input taps / divisor; the divisor is ``divisor_override``, else
  the number of taps within [-begin, in + end) per dim (count_include_pad=True) or
  within the input (False). A zero divisor gives 0.
- lp: (sum over in-input taps of x**p) ** (1/p), as PyTorch's x.pow(p) definition
  (PyTorch rescales windows clipped by ceil_mode; we do not); p = inf gives max |x|.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._arrays import working_dtype
from .._jit import inline_helper, parallel_kernel
from .._workspace import chunks, workspace_limit
from ..dispatch import register
from .layout import channels_last_5d, geometry3, lift3, output_from_working

_INDEX_DTYPE = np.dtype(np.int64)


# ---- shared helpers ------------------------------------------------------------------

@inline_helper
def task_position(t, n_cb, ow_n, oh_n, od_n):
    """Decode a flat task number into (n, od, oh, ow, channel block)."""
    cb = t % n_cb
    p = t // n_cb
    ow = p % ow_n
    p = p // ow_n
    oh = p % oh_n
    p = p // oh_n
    od = p % od_n
    n = p // od_n
    return n, od, oh, ow, cb


@inline_helper
def channel_span(cb, cblock, c_n):
    """Channels [c0, c1) of block cb, as unsigned ints: Numba then skips negative-index
    wraparound on them, which lets LLVM vectorize the channel loops."""
    c0 = cb * cblock
    return np.uint64(c0), np.uint64(min(c0 + cblock, c_n))


@inline_helper
def taps_within(start, k_n, dil, lo, hi):
    """How many of the taps start + j * dil (0 <= j < k_n) lie in [lo, hi)."""
    count = 0
    for j in range(k_n):
        pos = start + j * dil
        if pos >= lo and pos < hi:
            count += 1
    return count


def channel_block(channels: int, pixels: int, tasks: int = 64) -> int:
    """Channels per task: all of them when the output pixels alone make ``tasks`` tasks,
    else blocks (a multiple of 16 channels) that bring the count up to about ``tasks``."""
    if pixels >= tasks or channels <= 16:
        return max(channels, 1)
    blocks = -(-tasks // max(pixels, 1))
    per_block = -(-channels // blocks)
    return min(channels, max(16, (per_block + 15) // 16 * 16))


def run_pool_chunks(spec, x, kernel_call, with_indices: bool):
    """Feed ``kernel_call(xw, out, idx)`` working-layout chunks of images; return the
    user-layout result (and int64 indices when ``with_indices``)."""
    dtype = working_dtype(np.dtype(spec.dtype))
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    out_shape = (spec.batch, *lift3(spec.out_size, 1), spec.channels)
    out = np.empty(out_shape, dtype)
    idx = np.empty(out_shape if with_indices else (1, 1, 1, 1, 1), _INDEX_DTYPE)
    ready = x5.dtype == dtype and x5.flags.c_contiguous and x5.flags.writeable and x5.flags.aligned
    per_image = max(1, math.prod(x5.shape[1:])) * dtype.itemsize
    spans = [(0, spec.batch)] if ready else chunks(spec.batch, per_image, workspace_limit())
    for n0, n1 in spans:
        xw = np.ascontiguousarray(x5[n0:n1], dtype=dtype)
        if not (xw.flags.writeable and xw.flags.aligned):  # another Numba type: copy
            xw = xw.copy()
        kernel_call(xw, out[n0:n1], idx[n0:n1] if with_indices else idx)
    values = output_from_working(out, spec, np.dtype(spec.dtype))
    if with_indices:
        return values, output_from_working(idx, spec, _INDEX_DTYPE)
    return values


# ---- kernels -------------------------------------------------------------------------

@parallel_kernel
def max_pool_ndhwc(x, out, idx, want_idx, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw,
                   pd, ph, pw, cblock):
    """out[n, od, oh, ow, c] = max over in-input taps; idx the flat (d, h, w) winner."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * od_n * oh_n * ow_n * n_cb):
        n, od, oh, ow, cb = task_position(t, n_cb, ow_n, oh_n, od_n)
        c0, c1 = channel_span(cb, cblock, c_n)
        orow = out[n, od, oh, ow]
        for c in range(c0, c1):
            orow[c] = -np.inf
        irow = idx[n, od, oh, ow] if want_idx else idx[0, 0, 0, 0]
        if want_idx:
            for c in range(c0, c1):
                irow[c] = -1
        seen = False
        for kd in range(kd_n):
            i_d = od * sd - pd + kd * dd
            if i_d < 0 or i_d >= in_d:
                continue
            for kh in range(kh_n):
                i_h = oh * sh - ph + kh * dh
                if i_h < 0 or i_h >= in_h:
                    continue
                for kw in range(kw_n):
                    i_w = ow * sw - pw + kw * dw
                    if i_w < 0 or i_w >= in_w:
                        continue
                    xpix = x[n, i_d, i_h, i_w]
                    if want_idx:
                        flat = (i_d * in_h + i_h) * in_w + i_w
                        if not seen:  # the first in-input tap wins ties with -inf, as in PyTorch
                            seen = True
                            for c in range(c0, c1):
                                orow[c] = xpix[c]
                                irow[c] = flat
                            continue
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


@parallel_kernel
def avg_pool_ndhwc(x, out, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw,
                   pd, ph, pw, ed, eh, ew, include_pad, divisor_override, cblock):
    """out = sum of in-input taps / divisor (see the module docstring)."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * od_n * oh_n * ow_n * n_cb):
        n, od, oh, ow, cb = task_position(t, n_cb, ow_n, oh_n, od_n)
        c0, c1 = channel_span(cb, cblock, c_n)
        bd = od * sd - pd
        bh = oh * sh - ph
        bw = ow * sw - pw
        orow = out[n, od, oh, ow]
        for c in range(c0, c1):
            orow[c] = 0.0
        for kd in range(kd_n):
            i_d = bd + kd * dd
            if i_d < 0 or i_d >= in_d:
                continue
            for kh in range(kh_n):
                i_h = bh + kh * dh
                if i_h < 0 or i_h >= in_h:
                    continue
                for kw in range(kw_n):
                    i_w = bw + kw * dw
                    if i_w < 0 or i_w >= in_w:
                        continue
                    xpix = x[n, i_d, i_h, i_w]
                    for c in range(c0, c1):
                        orow[c] += xpix[c]
        if divisor_override > 0:
            div = divisor_override
        elif include_pad:
            div = (taps_within(bd, kd_n, dd, -pd, in_d + ed)
                   * taps_within(bh, kh_n, dh, -ph, in_h + eh)
                   * taps_within(bw, kw_n, dw, -pw, in_w + ew))
        else:
            div = (taps_within(bd, kd_n, dd, 0, in_d)
                   * taps_within(bh, kh_n, dh, 0, in_h)
                   * taps_within(bw, kw_n, dw, 0, in_w))
        if div > 0:
            dv = out.dtype.type(div)  # divide in the working dtype, as PyTorch
            for c in range(c0, c1):
                orow[c] = orow[c] / dv
        else:
            for c in range(c0, c1):
                orow[c] = 0.0


@parallel_kernel
def lp_pool_ndhwc(x, out, p, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw, cblock):
    """out = (sum of in-input x**p) ** (1/p); p = inf: max |x| (NaN propagates)."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    n_cb = (c_n + cblock - 1) // cblock
    # 1: p == 1, 2: p == 2, 3: p == inf, 4: other whole p (repeated squaring), 0: any p
    kind = 1 if p == 1.0 else 2 if p == 2.0 else 3 if p == np.inf else 4 if p == np.floor(p) else 0
    ip = int(p) if kind == 4 else 0
    root = out.dtype.type(1.0 / p)  # the root in the working dtype (powf for float32)
    for t in prange(n_img * od_n * oh_n * ow_n * n_cb):
        n, od, oh, ow, cb = task_position(t, n_cb, ow_n, oh_n, od_n)
        c0, c1 = channel_span(cb, cblock, c_n)
        orow = out[n, od, oh, ow]
        for c in range(c0, c1):
            orow[c] = 0.0
        for kd in range(kd_n):
            i_d = od * sd - pd + kd * dd
            if i_d < 0 or i_d >= in_d:
                continue
            for kh in range(kh_n):
                i_h = oh * sh - ph + kh * dh
                if i_h < 0 or i_h >= in_h:
                    continue
                for kw in range(kw_n):
                    i_w = ow * sw - pw + kw * dw
                    if i_w < 0 or i_w >= in_w:
                        continue
                    xpix = x[n, i_d, i_h, i_w]
                    if kind == 1:
                        for c in range(c0, c1):
                            orow[c] += xpix[c]
                    elif kind == 2:
                        for c in range(c0, c1):
                            v = xpix[c]
                            orow[c] += v * v
                    elif kind == 3:
                        for c in range(c0, c1):
                            v = abs(xpix[c])
                            m = orow[c]
                            orow[c] = v if (v > m) | (v != v) else m
                    elif kind == 4:
                        for c in range(c0, c1):
                            v = xpix[c]
                            r = v
                            for _ in range(ip - 1):
                                r *= v
                            orow[c] += r
                    else:
                        for c in range(c0, c1):
                            orow[c] += xpix[c] ** p
        if kind == 2:
            for c in range(c0, c1):
                orow[c] = np.sqrt(orow[c])
        elif kind == 0 or kind == 4:
            for c in range(c0, c1):
                orow[c] = orow[c] ** root


# ---- registered entry point ----------------------------------------------------------

@register("pool", "cpu", "direct", note="implicit padding, channels-last, channels vectorized")
def pool_direct(spec, x):
    geom = geometry3(spec)
    pads_begin = tuple(b for b, _ in geom.pads)
    pads_end = tuple(e for _, e in geom.pads)
    window = (*geom.kernel, *geom.stride, *geom.dilation, *pads_begin)
    cblock = channel_block(spec.channels, spec.batch * math.prod(spec.out_size))

    if spec.mode == "max":
        def call(xw, out, idx):
            max_pool_ndhwc(xw, out, idx, spec.return_indices, *window, cblock)

        return run_pool_chunks(spec, x, call, spec.return_indices)

    if spec.mode == "avg":
        divisor = int(spec.divisor_override or 0)

        def call(xw, out, idx):
            avg_pool_ndhwc(xw, out, *window, *pads_end, spec.count_include_pad, divisor, cblock)

        return run_pool_chunks(spec, x, call, False)

    if spec.mode == "lp":
        def call(xw, out, idx):
            lp_pool_ndhwc(xw, out, float(spec.norm_type), *window, cblock)

        return run_pool_chunks(spec, x, call, False)

    raise ValueError(f"{spec.op}: unknown pooling mode {spec.mode!r}")
