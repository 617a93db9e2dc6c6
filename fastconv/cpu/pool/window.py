"""Sliding-window pooling on the CPU: max (with indices), average and Lp.

The user's array is read in its own layout (see :mod:`fastconv.cpu.pool.run`):
channels-first calls run the kernels of :mod:`fastconv.cpu.pool.window_nchw`,
channels-last ones the kernels here, which take C-contiguous (N, D, H, W, C) input in
the working dtype (float32 for float16/float32, float64 for float64) and write
(N, OD, OH, OW, C). One kernel per mode serves 1-D, 2-D and 3-D (unit D and H axes).

Padding is implicit: a tap is read only when it lies inside the unpadded input, so
pads of any size, per side, cost nothing. Each parallel task owns one output row
(n, od, oh) and one block of channels; for each output pixel the window's in-input
taps are found once, and the innermost loop runs over the contiguous channels,
accumulating straight into the output (no scratch): the first tap stores, the others
update, and the average's last tap also divides, so no pass over the channels is
spent on initialising or dividing. The average adds four taps per pass over the
channels (in tap order, so the sums are those of one tap per pass): 10-25% faster
than one pass per tap on 3x3 and 2x2 windows; max gained nothing from it.

Semantics (PyTorch's where it has one):
- max: padded cells never win; the first maximum in scan order wins; a NaN wins over
  everything and a later NaN takes its index (PyTorch CPU: ``v > max || isnan(v)``).
  Indices are flat over each channel's unpadded input plane. A window with no tap in
  the input (only possible with pads beyond PyTorch's limits) gives -inf and index -1; a
  window of -inf values gives the index of its first in-input tap, as PyTorch does.
- avg: sum of the in-input taps / divisor; the divisor is ``divisor_override``, else
  the number of taps within [-begin, in + end) per dim (count_include_pad=True) or
  within the input (False). A zero divisor gives 0.
- lp: (sum over in-input taps of |x|**p) ** (1/p), the Lp norm as ONNX LpPool defines
  it (PyTorch raises x, not |x|, to the power p, so on negative input it gives negative
  values for p = 1 and NaN for other odd or fractional p; it also rescales windows
  clipped by ceil_mode; we do neither); p = inf gives max |x|.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._cache import cached_plan
from ...dispatch import register
from ...kernels.geometry import lift3
from ...kernels.pool_taps import avg_divisor, lowest, next_tap, span, taps_within
from .run import bind_plan, make_plan, run_pool, twin
from .window_nchw import avg_pool_nchw, lp_pool_nchw, max_pool_nchw

__all__ = ["taps_within", "channel_block", "channel_blocks", "pool_direct"]


def channel_blocks(spec) -> tuple:
    """(parallel, serial) channel-block arguments of a channels-last kernel: blocks that
    make tasks enough for the threads, and one block of all channels for the serial
    kernel (a 13x13 window over 256 channels ran 2x faster in one block than in 16)."""
    rows = spec.batch * math.prod(spec.out_size[:-1])
    return (channel_block(spec.channels, rows),), (max(spec.channels, 1),)


def channel_block(channels: int, rows: int, tasks: int = 16) -> int:
    """Channels per task: all of them when the output rows alone make ``tasks`` tasks,
    else blocks (a multiple of 16 channels) that bring the count up to about ``tasks``."""
    if rows >= tasks or channels <= 16:
        return max(channels, 1)
    blocks = -(-tasks // max(rows, 1))
    per_block = -(-channels // blocks)
    return min(channels, max(16, (per_block + 15) // 16 * 16))


# ---- channels-last kernels -----------------------------------------------------------

def _max_pool_ndhwc(x, out, idx, want_idx, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw,
                    pd, ph, pw, cblock):
    """out[n, od, oh, ow, c] = max over in-input taps; idx the flat (d, h, w) winner."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    jf = idx.reshape(idx.size)
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * od_n * oh_n * n_cb):
        cb = t % n_cb
        r = t // n_cb  # output row (n, od, oh)
        oh = r % oh_n
        od = (r // oh_n) % od_n
        n = r // (oh_n * od_n)
        c0 = cb * cblock
        width = min(cblock, c_n - c0)
        d_lo, d_hi = span(od * sd - pd, dd, in_d, kd_n)
        h_lo, h_hi = span(oh * sh - ph, dh, in_h, kh_n)
        for ow in range(ow_n):
            o = np.uint64((r * ow_n + ow) * c_n + c0)
            w_lo, w_hi = span(ow * sw - pw, dw, in_w, kw_n)
            # the first in-input tap is stored as is (it wins ties with -inf, as in
            # PyTorch); no separate -inf pass
            first = True
            for kd in range(d_lo, d_hi):
                i_d = od * sd - pd + kd * dd
                for kh in range(h_lo, h_hi):
                    row = (i_d * in_h + oh * sh - ph + kh * dh) * in_w
                    for kw in range(w_lo, w_hi):
                        flat = row + ow * sw - pw + kw * dw
                        xs = np.uint64((n * in_d * in_h * in_w + flat) * c_n + c0)
                        if first:
                            first = False
                            for c in range(width):
                                uc = np.uint64(c)
                                of[o + uc] = xf[xs + uc]
                            if want_idx:
                                for c in range(width):
                                    jf[o + np.uint64(c)] = flat
                        elif want_idx:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = xf[xs + uc]
                                m = of[o + uc]
                                take = (v > m) | (v != v)
                                of[o + uc] = v if take else m
                                jf[o + uc] = flat if take else jf[o + uc]
                        else:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = xf[xs + uc]
                                m = of[o + uc]
                                of[o + uc] = v if (v > m) | (v != v) else m
            if first:  # no tap inside the input
                for c in range(width):
                    of[o + np.uint64(c)] = lowest(out)
                if want_idx:
                    for c in range(width):
                        jf[o + np.uint64(c)] = -1


def _avg_pool_ndhwc(x, out, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw,
                    pd, ph, pw, ed, eh, ew, include_pad, divisor_override, cblock):
    """out = sum of in-input taps / divisor (see the module docstring)."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    zero = out.dtype.type(0)
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * od_n * oh_n * n_cb):
        cb = t % n_cb
        r = t // n_cb
        oh = r % oh_n
        od = (r // oh_n) % od_n
        n = r // (oh_n * od_n)
        c0 = cb * cblock
        width = min(cblock, c_n - c0)
        d_lo, d_hi = span(od * sd - pd, dd, in_d, kd_n)
        h_lo, h_hi = span(oh * sh - ph, dh, in_h, kh_n)
        vert = (avg_divisor(od * sd - pd, kd_n, dd, pd, ed, in_d, include_pad)
                * avg_divisor(oh * sh - ph, kh_n, dh, ph, eh, in_h, include_pad))
        img = n * in_d * in_h * in_w
        for ow in range(ow_n):
            o = np.uint64((r * ow_n + ow) * c_n + c0)
            w_lo, w_hi = span(ow * sw - pw, dw, in_w, kw_n)
            taps = (d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo)
            if divisor_override > 0:
                div = divisor_override
            else:
                div = vert * avg_divisor(ow * sw - pw, kw_n, dw, pw, ew, in_w, include_pad)
            if taps == 0 or div <= 0:
                for c in range(width):
                    of[o + np.uint64(c)] = zero
                continue
            dv = out.dtype.type(div)  # divide in the working dtype, as PyTorch
            # Taps in (kd, kh, kw) order, four per pass over the channels while four
            # remain, then one: the first pass starts from 0, the last one divides
            kd, kh, kw = d_lo, h_lo, w_lo
            done = 0
            while done < taps:
                first = done == 0
                m = 4 if taps - done >= 4 else 1
                done += m
                x0 = np.uint64((img + ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                                + ow * sw - pw + kw * dw) * c_n + c0)
                kd, kh, kw = next_tap(kd, kh, kw, h_lo, h_hi, w_lo, w_hi)
                if m == 1:
                    if done == taps:
                        for c in range(width):
                            uc = np.uint64(c)
                            of[o + uc] = ((zero if first else of[o + uc]) + xf[x0 + uc]) / dv
                    else:
                        for c in range(width):
                            uc = np.uint64(c)
                            of[o + uc] = (zero if first else of[o + uc]) + xf[x0 + uc]
                    continue
                x1 = np.uint64((img + ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                                + ow * sw - pw + kw * dw) * c_n + c0)
                kd, kh, kw = next_tap(kd, kh, kw, h_lo, h_hi, w_lo, w_hi)
                x2 = np.uint64((img + ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                                + ow * sw - pw + kw * dw) * c_n + c0)
                kd, kh, kw = next_tap(kd, kh, kw, h_lo, h_hi, w_lo, w_hi)
                x3 = np.uint64((img + ((od * sd - pd + kd * dd) * in_h + oh * sh - ph + kh * dh) * in_w
                                + ow * sw - pw + kw * dw) * c_n + c0)
                kd, kh, kw = next_tap(kd, kh, kw, h_lo, h_hi, w_lo, w_hi)
                if done == taps:
                    for c in range(width):
                        uc = np.uint64(c)
                        s = (zero if first else of[o + uc]) + xf[x0 + uc]
                        of[o + uc] = (((s + xf[x1 + uc]) + xf[x2 + uc]) + xf[x3 + uc]) / dv
                else:
                    for c in range(width):
                        uc = np.uint64(c)
                        s = (zero if first else of[o + uc]) + xf[x0 + uc]
                        of[o + uc] = ((s + xf[x1 + uc]) + xf[x2 + uc]) + xf[x3 + uc]


def _lp_pool_ndhwc(x, out, p, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw, cblock):
    """out = (sum of in-input |x|**p) ** (1/p); p = inf: max |x| (NaN propagates)."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    zero = out.dtype.type(0)
    n_cb = (c_n + cblock - 1) // cblock
    # 1: p == 1, 2: p == 2, 3: p == inf, 4: other whole p (repeated products), 0: any p
    kind = 1 if p == 1.0 else 2 if p == 2.0 else 3 if p == np.inf else 4 if p == np.floor(p) else 0
    ip = int(p) if kind == 4 else 0
    root = out.dtype.type(1.0 / p)  # the root in the working dtype (powf for float32)
    for t in prange(n_img * od_n * oh_n * n_cb):
        cb = t % n_cb
        r = t // n_cb
        oh = r % oh_n
        od = (r // oh_n) % od_n
        n = r // (oh_n * od_n)
        c0 = cb * cblock
        width = min(cblock, c_n - c0)
        d_lo, d_hi = span(od * sd - pd, dd, in_d, kd_n)
        h_lo, h_hi = span(oh * sh - ph, dh, in_h, kh_n)
        for ow in range(ow_n):
            o = np.uint64((r * ow_n + ow) * c_n + c0)
            for c in range(width):
                of[o + np.uint64(c)] = zero
            w_lo, w_hi = span(ow * sw - pw, dw, in_w, kw_n)
            for kd in range(d_lo, d_hi):
                i_d = od * sd - pd + kd * dd
                for kh in range(h_lo, h_hi):
                    row = (i_d * in_h + oh * sh - ph + kh * dh) * in_w
                    for kw in range(w_lo, w_hi):
                        xs = np.uint64((n * in_d * in_h * in_w + row + ow * sw - pw + kw * dw) * c_n + c0)
                        if kind == 1:
                            for c in range(width):
                                uc = np.uint64(c)
                                of[o + uc] += abs(xf[xs + uc])
                        elif kind == 2:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = xf[xs + uc]
                                of[o + uc] += v * v
                        elif kind == 3:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = abs(xf[xs + uc])
                                m = of[o + uc]
                                of[o + uc] = v if (v > m) | (v != v) else m
                        elif kind == 4:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = abs(xf[xs + uc])
                                pw_ = v
                                for _ in range(ip - 1):
                                    pw_ *= v
                                of[o + uc] += pw_
                        else:
                            for c in range(width):
                                uc = np.uint64(c)
                                of[o + uc] += abs(xf[xs + uc]) ** p
            if kind == 2:
                for c in range(width):
                    of[o + np.uint64(c)] = np.sqrt(of[o + np.uint64(c)])
            elif kind == 0 or kind == 4:
                for c in range(width):
                    of[o + np.uint64(c)] = of[o + np.uint64(c)] ** root


max_pool_ndhwc = twin(_max_pool_ndhwc)
avg_pool_ndhwc = twin(_avg_pool_ndhwc)
lp_pool_ndhwc = twin(_lp_pool_ndhwc)


# ---- registered entry point ----------------------------------------------------------

def window_args(spec):
    """(window geometry, end pads), lifted to 3-D: kernel, stride, dilation, begin pads."""
    pads = lift3(spec.pads, (0, 0))
    window = (*lift3(spec.kernel, 1), *lift3(spec.stride, 1), *lift3(spec.dilation, 1),
              *(b for b, _ in pads))
    return window, tuple(e for _, e in pads)


def _make_plan(spec):
    window, pads_end = window_args(spec)
    outputs = spec.batch * spec.channels * math.prod(spec.out_size)
    work = outputs * math.prod(spec.kernel) + spec.batch * spec.channels * math.prod(spec.in_size)
    cl = spec.channels_last
    tail, serial_tail = channel_blocks(spec) if cl else ((), ())
    if spec.mode == "max":
        head = (spec.return_indices, *window)
        return make_plan(spec, max_pool_ndhwc if cl else max_pool_nchw, (*head, *tail), True, work,
                         serial_args=(*head, *serial_tail))
    if spec.mode == "avg":
        head = (*window, *pads_end, spec.count_include_pad, int(spec.divisor_override or 0))
        return make_plan(spec, avg_pool_ndhwc if cl else avg_pool_nchw, (*head, *tail), False, work,
                         serial_args=(*head, *serial_tail))
    if spec.mode == "lp":
        head = (float(spec.norm_type), *window)
        return make_plan(spec, lp_pool_ndhwc if cl else lp_pool_nchw, (*head, *tail), False, work,
                         serial_args=(*head, *serial_tail))
    raise ValueError(f"{spec.op}: unknown pooling mode {spec.mode!r}")


_plan = cached_plan(_make_plan)


@register("pool", "cpu", "direct", bind=bind_plan(_make_plan),
          note="implicit padding, reads either layout in place, vectorized")
def pool_direct(spec, x):
    return run_pool(spec, x, _plan(spec))
