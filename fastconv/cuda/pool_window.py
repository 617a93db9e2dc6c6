"""Sliding-window pooling on the GPU: max (with indices), average and Lp.

One thread per output element, grid-stride; the thread order follows the layout so
that neighbouring threads touch neighbouring words: output column fastest for
NC(D)HW (window rows are then read as coalesced runs), channel fastest for N(D)HWC.
The input is read in the user's layout and dtype straight from the device array
(float16 converted to float32 on load); padding is implicit -- a tap is read only
when it lies inside the input, so pads of any size cost nothing and padded cells
never win a max. The window loops are unrolled: the kernel size is static.

Semantics are the CPU kernels' (fastconv.cpu.pool.window), tap for tap:
- max: NaN wins and a later NaN takes its index (``v > m or v != v`` in scan order);
  indices are int64, flat over each channel's unpadded plane. The first in-input tap
  seeds the window (PyTorch's rule), so a window of -inf values reports its first
  tap; a window with no tap in the input gives -inf and index -1.
- avg: in-input sum / divisor: ``divisor_override``, else the taps within
  [-begin, in + end) (count_include_pad) or within the input, counted by the CPU
  module's ``taps_within`` helper; a zero divisor gives 0.
- lp: (sum of |x|**p) ** (1/p) with the CPU's cases p = 1, 2, inf, whole p, any p.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..dispatch import register
from ..kernels.element_index import element_position
from ..kernels.geometry import geometry3
from ..kernels.pool_taps import taps_within
from . import streams
from ._jit import SUFFIX, WORK, WORK_NP, Kernel, array, dims, elementwise, i64, layout_name, lowest, specialised
from .pad import lift5


def lp_kind(p: float) -> int:
    """The Lp kernel variant for ``p``: 1 sums |x| (p = 1), 2 squares (p = 2), 3 takes
    max |x| (p = inf), 4 raises to a whole power, 0 to any other power."""
    if p == 1.0:
        return 1
    if p == 2.0:
        return 2
    if math.isinf(p):
        return 3
    return 4 if p == math.floor(p) else 0


@specialised
def window_pool_kernel(mode: str, nd: int, kernel3: tuple, dtype: str, channels_last: bool, variant: int) -> Kernel:
    """variant: max -> 1 when indices are wanted; lp -> the lp kind; avg -> 0."""
    kd_n, kh_n, kw_n = kernel3
    work = WORK[dtype]
    cl = channels_last
    want_idx = mode == "max" and variant == 1
    kind = variant if mode == "lp" else -1
    is_max = mode == "max"
    is_avg = mode == "avg"
    neg_inf = lowest(dtype)  # -inf, or an integer dtype's minimum (integers: max pooling only)

    def kernel(x, out, idx, sd, sh, sw, dd, dh, dw, pd, ph, pw, ed, eh, ew, include_pad, divisor, p, ip):
        if cl:
            n_img, in_d, in_h, in_w, c_n = x.shape
            od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
        else:
            n_img, c_n, in_d, in_h, in_w = x.shape
            od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
        total = n_img * c_n * od_n * oh_n * ow_n
        inv_p = 1.0 / p
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            n, c, od, oh, ow = element_position(i, cl, c_n, od_n, oh_n, ow_n)
            bd = od * sd - pd
            bh = oh * sh - ph
            bw = ow * sw - pw
            acc = work(0)
            if is_max or kind == 3:
                acc = work(neg_inf)
            best = -1
            for kd in range(kd_n):
                i_d = bd + kd * dd
                if i_d >= 0 and i_d < in_d:
                    for kh in range(kh_n):
                        i_h = bh + kh * dh
                        if i_h >= 0 and i_h < in_h:
                            for kw in range(kw_n):
                                i_w = bw + kw * dw
                                if i_w >= 0 and i_w < in_w:
                                    if cl:
                                        v = work(x[n, i_d, i_h, i_w, c])
                                    else:
                                        v = work(x[n, c, i_d, i_h, i_w])
                                    if is_max:
                                        if best < 0 or v > acc or v != v:
                                            acc = v
                                            best = (i_d * in_h + i_h) * in_w + i_w
                                    elif is_avg:
                                        acc += v
                                    elif kind == 1:
                                        acc += abs(v)
                                    elif kind == 2:
                                        acc += v * v
                                    elif kind == 3:
                                        a = abs(v)
                                        if a > acc or a != a:
                                            acc = a
                                    elif kind == 4:
                                        acc += abs(v) ** ip
                                    else:
                                        acc += abs(v) ** p
            if is_avg:
                if divisor > 0:
                    div = divisor
                elif include_pad:
                    div = (taps_within(bd, kd_n, dd, -pd, in_d + ed) * taps_within(bh, kh_n, dh, -ph, in_h + eh)
                           * taps_within(bw, kw_n, dw, -pw, in_w + ew))
                else:
                    div = (taps_within(bd, kd_n, dd, 0, in_d) * taps_within(bh, kh_n, dh, 0, in_h)
                           * taps_within(bw, kw_n, dw, 0, in_w))
                if div > 0:
                    acc = work(acc / work(div))  # the cast keeps acc one type for integer dtypes
                else:
                    acc = work(0)
            elif kind == 2:
                acc = work(math.sqrt(acc))
            elif kind == 0 or kind == 4:
                acc = work(acc ** work(inv_p))
            if cl:
                out[n, od, oh, ow, c] = acc
                if want_idx:
                    idx[n, od, oh, ow, c] = best
            else:
                out[n, c, od, oh, ow] = acc
                if want_idx:
                    idx[n, c, od, oh, ow] = best
            i += step

    what = {"max": "max_idx" if want_idx else "max", "avg": "avg", "lp": f"lp{variant}"}[mode]
    name = f"{what}_pool{nd}d_{layout_name(nd, cl)}_k{dims(kernel3[3 - nd:])}_{SUFFIX[dtype]}"
    work_t = WORK[dtype]
    argtypes = (array(dtype, 5), array(dtype, 5), array(i64, 5)) + (i64,) * 14 + (work_t, i64)
    # With the block size alone as its bound, ptxas squeezes the unrolled 3-D windows
    # into 48 registers and spills; asking for 4 resident blocks (64 registers) does
    # not, except where pow() is inlined (Lp with p not in {1, 2, inf}): 2 blocks.
    min_blocks = 2 if mode == "lp" and variant in (0, 4) else 4
    return Kernel(name, kernel, argtypes, 256, 0, min_blocks=min_blocks)


def _variant(spec) -> int:
    if spec.mode == "max":
        return int(spec.return_indices)
    if spec.mode == "lp":
        return lp_kind(spec.norm_type)
    return 0


def window_launch(spec):
    geom = geometry3(spec)
    kernel = window_pool_kernel(spec.mode, spec.nd, geom.kernel, spec.dtype, spec.channels_last, _variant(spec))
    total = spec.batch * spec.channels * int(np.prod(spec.out_size))
    return elementwise(kernel, total, f"{spec.mode} pool")


def launches(spec) -> list:
    return [window_launch(spec)]


def pool_outputs(spec, want_idx: bool):
    """(values, indices or a 1-element dummy) as 5-D device arrays in the user's layout."""
    od, oh, ow = (1,) * (3 - spec.nd) + tuple(spec.out_size)
    shape = (spec.batch, od, oh, ow, spec.channels) if spec.channels_last else (spec.batch, spec.channels, od, oh, ow)
    out = streams.device_array(shape, np.dtype(spec.dtype))
    idx = streams.device_array(shape if want_idx else (1, 1, 1, 1, 1), np.int64)
    return out, idx


def pool_result(spec, out, idx, want_idx: bool):
    values = out.reshape(*spec.output_shape)
    return (values, idx.reshape(*spec.output_shape)) if want_idx else values


@register("pool", "cuda", "direct", note="numba.cuda: one thread per output, implicit padding, unrolled window")
def pool_direct(spec, x):
    geom = geometry3(spec)
    x5 = lift5(x, spec.nd, spec.channels_last)
    want_idx = spec.mode == "max" and spec.return_indices
    out, idx = pool_outputs(spec, want_idx)
    p = float(spec.norm_type)
    ip = int(p) if spec.mode == "lp" and lp_kind(p) == 4 else 0
    window_launch(spec)(
        x5, out, idx, *geom.stride, *geom.dilation, *(b for b, _ in geom.pads), *(e for _, e in geom.pads),
        int(spec.count_include_pad), int(spec.divisor_override or 0), WORK_NP[spec.dtype](p), ip,
    )
    return pool_result(spec, out, idx, want_idx)
