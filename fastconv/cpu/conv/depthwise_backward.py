"""Both gradients of a channels-last depthwise layer in one pass (fastconv.grad.conv<N>d_backward).

Separately, the input gradient is the forward depthwise conv of grad_output with the flipped
weight (input_grad.py) and the weight gradient the register-tiled kernel's strips
(weight_grad/depthwise_tiled.py): two calls, three parallel loops, grad_output read twice. Here a
task owns one of the weight gradient's strips of output rows by a block of channels and computes
both: the strip's partial weight-gradient sums (vector.depthwise_grad.dw_grad_nhwc), then the same
rows of the input gradient (vector.depthwise_row.dw_row on grad_output, the rows and border pixels
the forward kernel would compute), while the strip's grad_output is still in cache; then the
strips' sums are added in strip order, on the calling thread. Each sum is the separate calls' own,
so the results are bitwise theirs, whatever the thread count.

Where it applies (:func:`backward_plan`): multiplier 1, stride 1, zeros padding, an output the
input's size (pads summing to the dilated window's span), window depth 1, float32 or float64, a
window whose taps fit the registers; at run time C-contiguous, aligned, writeable arrays and a
finite weight (a NaN or inf weight must meet the zeros of the padding: the separate calls see to
it). Elsewhere the caller makes the separate calls.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import prange, types

from ..._threads import balanced, restore
from ...kernels.geometry import geometry3
from .._jit import simd, specialised_kernel
from ..layout import kernel_ready
from ..vector.depthwise_grad import REVISION as GRAD_REVISION
from ..vector.depthwise_grad import dw_grad_nhwc, grad_literal
from ..vector.depthwise_row import REVISION as ROW_REVISION
from ..vector.depthwise_row import dw_row, window_literal
from ..weights import all_finite
from .depthwise.common import interior_columns
from .depthwise.nhwc import PIXELS
from .weight_grad.depthwise_tiled import (
    CHANNEL_BLOCK,
    SPARE_REGISTERS,
    _lanes,
    _pixels,
    add_strip_sums,
    nhwc_strip,
    zeroed_strip_block,
)


class BackwardPlan(NamedTuple):
    spec: object
    kernel: object
    args: tuple  # the kernel's ints after its six arrays
    dtype: np.dtype


def backward_plan(spec) -> BackwardPlan | None:
    """The fused kernel and its arguments for the depthwise ``spec``, or None where it does not apply."""
    geom = geometry3(spec)
    (kd, kh, kw), (_, dh, dw) = geom.kernel, geom.dilation
    if not (spec.is_depthwise and spec.out_per_group == 1 and spec.channels_last and not spec.transposed
            and spec.padding_mode == "zeros" and spec.dtype in ("float32", "float64") and kd == 1
            and all(s == 1 for s in geom.stride) and tuple(geom.in_size) == tuple(geom.out_size)
            and kh * kw + SPARE_REGISTERS + 1 <= simd().registers and spec.batch > 0):
        return None
    (ph, _), (pw, _) = geom.pads[1:]
    d, h, w = geom.in_size
    c = spec.in_channels
    fph, fpw = dh * (kh - 1) - ph, dw * (kw - 1) - pw  # the flipped conv's pads at the start
    itemsize = np.dtype(spec.dtype).itemsize
    args = (spec.batch * d, h, w, c, dh, ph, pw, *interior_columns(w, kw, 1, dw, pw, w), fph, fpw,
            *interior_columns(w, kw, 1, dw, fpw, w), nhwc_strip(d, h, w, c, kh, 1, dh, itemsize))
    return BackwardPlan(spec, backward_kernel(kh, kw, dw, spec.dtype), args, np.dtype(spec.dtype))


def run_backward(plan: BackwardPlan, grad_output, x, weight):
    """(grad input, grad weight), or None when the arrays or the weight need the separate calls."""
    dtype, spec = plan.dtype, plan.spec
    if not (kernel_ready(grad_output, dtype) and kernel_ready(x, dtype) and all_finite(weight)):
        return None
    wf = np.ascontiguousarray(weight.reshape(spec.out_channels, -1)[:, ::-1].T, dtype)  # flipped, (taps, C)
    gx = np.empty(spec.input_shape, dtype)
    gw = np.zeros(spec.weight_shape, dtype)
    plan.kernel(x.reshape(-1), grad_output.reshape(-1), wf.reshape(-1), np.zeros(spec.out_channels, dtype),
                gx.reshape(-1), gw.reshape(-1), *plan.args)
    return gx, gw


@functools.cache
def backward_kernel(kh_n: int, kw_n: int, dw: int, dtype: str):
    grad_revision, row_revision = GRAD_REVISION, ROW_REVISION  # closure constants: the disk cache's key
    taps = kh_n * kw_n
    grad_shape = grad_literal(kh_n, kw_n, 1, dw, _pixels(taps, 1))
    row_shape = window_literal(1, kh_n, kw_n, 1, dw, PIXELS.get(1, 2) if taps <= 12 else 2)
    pixel_shape = window_literal(1, kh_n, kw_n, 1, dw, 1, columns=True)
    lanes = _lanes(dtype)

    def kernel(x, g, wf, zero, gx, out, planes, in_h, in_w, c_n, dh, ph, pw, lo, hi, fph, fpw, flo, fhi, strip):
        """gx (P, H, W, C) = the input gradient, out (C, KH, KW) += the weight gradient, from x and g
        (P, H, W, C), P = N * D planes, and wf the flipped weight (KH * KW, C); all flat."""
        plane = in_h * in_w * c_n
        per_plane = (in_h + strip - 1) // strip
        n_strips = planes * per_plane
        n_cb = (c_n + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        partial = np.empty(n_strips * taps * c_n, x.dtype)  # (strip, tap, channel)
        lo_clamp, hi_clamp = x.dtype.type(-np.inf), x.dtype.type(np.inf)
        hstep = dh * in_w * c_n
        previous = balanced(n_strips * n_cb)
        for task in prange(n_strips * n_cb):
            st, k0, k1, base = zeroed_strip_block(task, n_cb, c_n, taps, partial)
            q = st // per_plane
            oh0 = (st - q * per_plane) * strip
            oh1 = min(oh0 + strip, in_h)
            dw_grad_nhwc(x, g, partial, q * plane, q * plane, base, c_n, k0, k1, c_n, oh0, oh1, in_w, lo, hi, in_h,
                         in_w, 1, ph, pw, dh, grad_shape, lanes, grad_revision)
            for oh in range(oh0, oh1):  # the input gradient's rows: the forward kernel's calls on g
                ih0 = oh - fph
                kh0 = 0 if ih0 >= 0 else (dh - 1 - ih0) // dh
                kh1 = min(kh_n, (in_h - 1 - ih0) // dh + 1)
                grow = (q * in_h + ih0) * in_w * c_n
                obase = (q * in_h + oh) * in_w * c_n
                dw_row(g, wf, zero, gx, grow + (flo - fpw) * c_n, obase + flo * c_n, fhi - flo, k0, k1, c_n, hstep,
                       plane, 0, 1, kh0, kh1, 0, kw_n, lo_clamp, hi_clamp, row_shape, lanes, row_revision)
                for j in range(in_w - (fhi - flo)):
                    ow = j if j < flo else j + (fhi - flo)
                    iw0 = ow - fpw
                    kw0 = 0 if iw0 >= 0 else (dw - 1 - iw0) // dw
                    kw1 = min(kw_n, (in_w - 1 - iw0) // dw + 1)
                    dw_row(g, wf, zero, gx, grow + iw0 * c_n, obase + ow * c_n, 1, k0, k1, c_n, hstep, plane, 0, 1,
                           kh0, kh1, kw0, kw1, lo_clamp, hi_clamp, pixel_shape, lanes, row_revision)
        restore(previous)
        add_strip_sums(partial, out, n_strips, taps, c_n, 0, c_n)  # on the calling thread: a few adds a weight

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    name = f"dw_backward_nhwc_k{kh_n}x{kw_n}_d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [(flat,) * 6 + (types.int64,) * 14])
