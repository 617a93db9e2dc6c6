"""Both gradients of a depthwise layer in one pass (fastconv.grad.conv<N>d_backward).

Channels-last, stride 1: separately, the input gradient is the forward depthwise conv of
grad_output with the flipped weight (input_grad.py) and the weight gradient the register-tiled
kernel's strips (weight_grad/depthwise_tiled.py): two calls, three parallel loops, grad_output read
twice. Here a task owns one of the weight gradient's strips of output rows by a block of channels
and computes both: the strip's partial weight-gradient sums (vector.depthwise_grad.dw_grad_nhwc),
then the same rows of the input gradient (vector.depthwise_row.dw_row on grad_output, the rows and
border pixels the forward kernel would compute), while the strip's grad_output is still in cache;
then the strips' sums are added in strip order, on the calling thread.

Channels-last, strided (2-D): separately, the input gradient is depthwise_input_grad.py's rows of
all channels; here the strip task above, after its weight-gradient sums, writes the input
gradient's rows from its first output row times the stride to the next strip's (depthwise_input_grad.
pixel_row), its block of channels only.

Channels-first, strided (stride 2 along the row at most): separately, the input gradient is
depthwise_input_grad.py's planes and the weight gradient the tiled kernel's lane sums per channel.
Here a task owns a run of channels and, per channel and image, adds the image's planes into the
weight gradient's lane accumulators (vector.depthwise_grad.dw_grad_nchw), then builds the same
image's input-gradient planes (depthwise_input_grad.plane_rows) from the grad_output planes just
read.

Channels-first, stride 1: separately, the input gradient is the forward depthwise conv of grad_output with
the flipped weight (depthwise/nchw.py) and the weight gradient the tiled kernel's lane sums per channel,
each reading grad_output. Here a task owns a run of channels and, per channel and image, adds the
image's planes into the weight gradient's lane accumulators, then runs the forward kernel's plane loop
(depthwise.nchw.nchw_rows, with the flipped conv's plan: pads, flat rows, small-plane scratch) on the
grad_output plane just read (one thread, host loaded: 0.66-0.85x the separate calls on MobileNetV2's and
dw_vs_standard's stride-1 layers).

Each sum is the separate calls' own, so the results are bitwise theirs, whatever the thread count.

Where it applies (:func:`backward_plan`): multiplier 1, zeros padding, float32 or float64, a window
whose taps fit the registers; channels-last: window depth 1 and either stride 1, an output the
input's size (pads summing to the dilated window's span) and at run time a finite weight (a NaN or
inf weight must meet the zeros of the padding: the separate calls see to it), or a stride other
than 1 (or pads past the window's span) on 2-D maps; channels-first: stride 1 with pads inside the
window's span (at run time a finite weight, as above), or a stride other than 1 (or pads past the
window's span), at most 2 along the row; at run time C-contiguous, aligned, writeable
arrays. Elsewhere the caller makes the separate calls.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import prange, types

from ..._threads import balanced, restore
from ...dispatch import choose
from ...kernels.geometry import geometry3
from ...spec.adjoint import flipped_conv_spec
from .._jit import simd, specialised_kernel
from ..layout import kernel_ready
from ..vector.depthwise_grad import REVISION as GRAD_REVISION
from ..vector.depthwise_grad import dw_grad_nchw, dw_grad_nhwc, grad_literal
from ..vector.depthwise_row import REVISION as ROW_REVISION
from ..vector.depthwise_row import dw_row, window_literal
from ..weights import all_finite
from .depthwise.common import interior_columns
from .depthwise.nchw import FLAT_STEP, nchw_rows
from .depthwise.nhwc import PIXELS
from .depthwise.run import depthwise_plan
from .depthwise_input_grad import (
    phase_buffers,
    phase_plane,
    phase_scratch,
    pixel_row,
    plane_rows,
    plane_tables,
    source_rows,
)
from .weight_grad.depthwise_tiled import (
    CHANNEL_BLOCK,
    NCHW_TASKS,
    SPARE_REGISTERS,
    _lanes,
    _pixels,
    add_strip_sums,
    lane_sums,
    nhwc_strip,
    zeroed_strip_block,
)


class BackwardPlan(NamedTuple):
    spec: object
    kernel: object
    args: tuple  # the kernel's ints after its arrays
    dtype: np.dtype
    weight: str  # what the kernel reads: "flipped" (taps, C) reversed, then a bias of zeros; "taps" (taps, C);
    # "channels" (C, taps)


def backward_plan(spec) -> BackwardPlan | None:
    """The fused kernel and its arguments for the depthwise ``spec``, or None where it does not apply."""
    geom = geometry3(spec)
    (kd, kh, kw), (sd, sh, sw), (dd, dh, dw) = geom.kernel, geom.stride, geom.dilation
    if not (spec.is_depthwise and spec.out_per_group == 1 and not spec.transposed and spec.padding_mode == "zeros"
            and spec.dtype in ("float32", "float64") and kh * kw + SPARE_REGISTERS + 1 <= simd().registers
            and spec.batch > 0):
        return None
    d, h, w = geom.in_size
    od, oh, ow = geom.out_size
    c = spec.in_channels
    pads = tuple(b for b, _ in geom.pads)
    dtype = np.dtype(spec.dtype)
    strided = flipped_conv_spec(spec) is None  # the input gradient is depthwise_input_grad.py's
    if not spec.channels_last:
        if not strided:
            return _nchw_stride1_plan(spec, geom, dtype)
        if sw > 2:  # (the tiled weight gradient's strides)
            return None
        args = (spec.batch, c, d, h, w, od, oh, ow, kd, sd, sh, dd, dh, *pads,
                *interior_columns(w, kw, sw, dw, pads[2], ow))
        return BackwardPlan(spec, nchw_backward_kernel(kh, kw, sw, dw, spec.dtype), args, dtype, "channels")
    if strided:
        if not (d == od == 1 and kd == 1):
            return None
        args = (spec.batch, h, w, c, oh, ow, sh, dh, pads[1], pads[2], *interior_columns(w, kw, sw, dw, pads[2], ow),
                nhwc_strip(1, oh, w, c, kh, sh, dh, dtype.itemsize))
        return BackwardPlan(spec, nhwc_strided_kernel(kh, kw, sw, dw, spec.dtype), args, dtype, "taps")
    if not (kd == 1 and all(s == 1 for s in geom.stride) and tuple(geom.in_size) == tuple(geom.out_size)):
        return None
    (ph, _), (pw, _) = geom.pads[1:]
    fph, fpw = dh * (kh - 1) - ph, dw * (kw - 1) - pw  # the flipped conv's pads at the start
    args = (spec.batch * d, h, w, c, dh, ph, pw, *interior_columns(w, kw, 1, dw, pw, w), fph, fpw,
            *interior_columns(w, kw, 1, dw, fpw, w), nhwc_strip(d, h, w, c, kh, 1, dh, dtype.itemsize))
    return BackwardPlan(spec, backward_kernel(kh, kw, dw, spec.dtype), args, dtype, "flipped")


def _nchw_stride1_plan(spec, geom, dtype) -> BackwardPlan | None:
    """Channels-first stride 1: the input gradient is the forward depthwise kernel's planes of the
    flipped conv (its plan: pads, interior columns, flat rows, small-plane scratch), where the separate
    call runs that kernel."""
    flipped = flipped_conv_spec(spec)
    if choose("conv", "cpu", flipped).algo != "depthwise":
        return None
    (kd, kh, kw), (dd, dh, dw) = geom.kernel, geom.dilation
    d, h, w = geom.in_size
    od, oh, ow = geom.out_size
    fwd = depthwise_plan(flipped)
    _, _, _, _, fpd, fph, fpw = fwd.steps
    small, hp, wp = fwd.small
    args = (spec.batch, spec.in_channels, d, h, w, od, oh, ow, dd, dh, *(b for b, _ in geom.pads),
            *interior_columns(w, kw, 1, dw, geom.pads[2][0], ow), fpd, fph, fpw, *fwd.columns, fwd.flat_rows, small,
            hp, wp)
    return BackwardPlan(spec, nchw_stride1_kernel(kd, kh, kw, dw, spec.dtype), args, dtype, "flipped channels")


def run_backward(plan: BackwardPlan, grad_output, x, weight):
    """(grad input, grad weight), or None when the arrays or the weight need the separate calls."""
    dtype, spec = plan.dtype, plan.spec
    if not (kernel_ready(grad_output, dtype) and kernel_ready(x, dtype)):
        return None
    w2 = weight.reshape(spec.out_channels, -1)
    gx = np.empty(spec.input_shape, dtype)
    if plan.weight == "channels":  # the strided kernels read no zeros padding: any weight
        gw = np.empty(spec.weight_shape, dtype)
        plan.kernel(x.reshape(-1), grad_output.reshape(-1), np.ascontiguousarray(w2, dtype).reshape(-1),
                    gx.reshape(-1), gw.reshape(-1), *plan.args)
        return gx, gw
    if plan.weight == "flipped channels":  # a NaN or inf weight must meet the padding's zeros: separate calls
        if not all_finite(weight):
            return None
        gw = np.empty(spec.weight_shape, dtype)
        plan.kernel(x.reshape(-1), grad_output.reshape(-1), np.ascontiguousarray(w2[:, ::-1], dtype).reshape(-1),
                    gx.reshape(-1), gw.reshape(-1), *plan.args)
        return gx, gw
    gw = np.zeros(spec.weight_shape, dtype)
    if plan.weight == "taps":
        plan.kernel(x.reshape(-1), grad_output.reshape(-1), np.ascontiguousarray(w2.T, dtype).reshape(-1),
                    gx.reshape(-1), gw.reshape(-1), *plan.args)
        return gx, gw
    if not all_finite(weight):
        return None
    wf = np.ascontiguousarray(w2[:, ::-1].T, dtype)  # flipped, (taps, C)
    plan.kernel(x.reshape(-1), grad_output.reshape(-1), wf.reshape(-1), np.zeros(spec.out_channels, dtype),
                gx.reshape(-1), gw.reshape(-1), *plan.args)
    return gx, gw


@functools.cache
def nhwc_strided_kernel(kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    revision = GRAD_REVISION  # a closure constant: the disk cache's key
    shape = grad_literal(kh_n, kw_n, sw, dw, _pixels(kh_n * kw_n, sw))
    lanes = _lanes(dtype)
    taps = kh_n * kw_n

    def kernel(x, g, wt, gx, out, n_img, in_h, in_w, c_n, oh_n, ow_n, sh, dh, ph, pw, lo, hi, strip):
        """gx (N, H, W, C) = the input gradient, out (C, KH, KW) += the weight gradient, from x (N, H, W, C),
        g (N, OH, OW, C) and the weight wt (KH * KW, C); all flat. A task owns a strip of
        output rows by a block of channels: the strip's partial weight-gradient sums, then the input
        gradient's rows from the strip's first row times the stride to the next strip's (the plane's
        last strip: to the last row), the block's channels."""
        in_plane = in_h * in_w * c_n
        out_plane = oh_n * ow_n * c_n
        per_plane = (oh_n + strip - 1) // strip
        n_strips = n_img * per_plane
        n_cb = (c_n + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        partial = np.empty(n_strips * taps * c_n, x.dtype)  # (strip, tap, channel)
        rows_d = source_rows(1, 1, 1, 1, 0, 1)
        rows_h = source_rows(in_h, kh_n, sh, dh, ph, oh_n)
        cols = source_rows(in_w, kw_n, sw, dw, pw, ow_n)
        previous = balanced(n_strips * n_cb)
        for task in prange(n_strips * n_cb):
            st, k0, k1, base = zeroed_strip_block(task, n_cb, c_n, taps, partial)
            q = st // per_plane
            oh0 = (st - q * per_plane) * strip
            oh1 = min(oh0 + strip, oh_n)
            dw_grad_nhwc(x, g, partial, q * in_plane, q * out_plane, base, c_n, k0, k1, c_n, oh0, oh1, ow_n, lo, hi,
                         in_h, in_w, sh, ph, pw, dh, shape, lanes, revision)
            scratch = np.empty((4, taps), np.int64)
            for ih in range(min(oh0 * sh, in_h), in_h if oh1 == oh_n else min(oh1 * sh, in_h)):
                pixel_row(g, wt, gx, q * in_h + ih, k0, k1, scratch, 1, in_h, in_w, c_n, 1, oh_n, ow_n, 1, kh_n, kw_n,
                          rows_d, rows_h, cols)
        restore(previous)
        add_strip_sums(partial, out, n_strips, taps, c_n, 0, c_n)  # on the calling thread: a few adds a weight

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    name = f"dw_backward_nhwc_strided_k{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [(flat,) * 5 + (types.int64,) * 13])


@functools.cache
def nchw_backward_kernel(kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    revision = GRAD_REVISION  # a closure constant: the disk cache's key
    shape = grad_literal(kh_n, kw_n, sw, dw)
    lanes = _lanes(dtype)
    taps2 = kh_n * kw_n

    def kernel(x, g, w, gx, out, n_img, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, kd_n, sd, sh, dd, dh, pd, ph, pw, lo,
               hi):
        """gx (N, C, D, H, W) = the input gradient, out (C, KD, KH, KW) = the weight gradient, from x
        (N, C, D, H, W), g (N, C, OD, OH, OW) and the weight w (C, KD, KH, KW); all flat. A task owns a
        run of channels; per channel and image, the weight gradient's sums over the planes, then the
        input gradient's planes, from the same grad_output planes."""
        taps = kd_n * taps2
        in_plane = in_h * in_w
        out_plane = oh_n * ow_n
        wq, rows_d, rows_h, cols, starts = plane_tables(in_d, in_h, in_w, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh,
                                                        sw, dd, dh, dw, pd, ph, pw)
        rows, pitch = phase_scratch(in_d, in_h, in_w, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sh, sw, dh, dw, ph, pw)
        n_tasks = min(c_n, NCHW_TASKS)
        previous = balanced(n_tasks)
        for task in prange(n_tasks):
            acc = np.empty(taps * lanes, x.dtype)
            row = np.empty(sw * wq, x.dtype)
            gp, ys = phase_buffers(rows, pitch, in_h, x.dtype)
            for c in range(task * c_n // n_tasks, (task + 1) * c_n // n_tasks):
                acc[:] = 0
                for n in range(n_img):
                    q = n * c_n + c
                    for od in range(od_n):
                        for kd in range(kd_n):
                            i_d = od * sd - pd + kd * dd
                            if i_d < 0 or i_d >= in_d:
                                continue
                            dw_grad_nchw(x, g, acc, (q * in_d + i_d) * in_plane, (q * od_n + od) * out_plane,
                                         kd * taps2 * lanes, oh_n, ow_n, lo, hi, in_h, in_w, sh, ph, pw, dh, shape,
                                         lanes, revision)
                    if rows and phase_plane(g, w, gx, gp, ys, q, c_n, in_h, in_w, oh_n, ow_n, ph, pw, pitch):
                        continue
                    for i_d in range(in_d):
                        plane_rows(g, w, gx, row, q * in_d + i_d, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, kd_n,
                                   kh_n, kw_n, sw, wq, rows_d, rows_h, cols, starts)
                lane_sums(acc, out, c * taps, taps, lanes)
        restore(previous)

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    name = f"dw_backward_nchw_k{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [(flat,) * 5 + (types.int64,) * 18])


@functools.cache
def nchw_stride1_kernel(kd_n: int, kh_n: int, kw_n: int, dw: int, dtype: str):
    revision = GRAD_REVISION  # a closure constant: the disk cache's key
    shape = grad_literal(kh_n, kw_n, 1, dw)
    lanes = _lanes(dtype)
    taps2 = kh_n * kw_n
    taps = kd_n * taps2

    def kernel(x, g, wf, gx, out, n_img, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, dd, dh, pd, ph, pw, lo, hi, fpd, fph,
               fpw, flo, fhi, flat_rows, small, hp_n, wp_n):
        """gx (N, C, D, H, W) = the input gradient, out (C, KD, KH, KW) = the weight gradient, from x
        (N, C, D, H, W), g (N, C, OD, OH, OW) and the flipped weight wf (C, taps reversed); all flat. A
        task owns a run of channels; per channel and image, the weight gradient's sums over the planes,
        then the input gradient's planes (the forward kernel's nchw_rows on g), while g is in cache."""
        in_plane = in_h * in_w
        out_plane = oh_n * ow_n
        rows = in_d * in_h
        zero = x.dtype.type(0)
        lo_clamp, hi_clamp = x.dtype.type(-np.inf), x.dtype.type(np.inf)
        n_tasks = min(c_n, NCHW_TASKS)
        previous = balanced(n_tasks)
        for task in prange(n_tasks):
            acc = np.empty(taps * lanes, x.dtype)
            xs = np.zeros(hp_n * wp_n + FLAT_STEP if small else 1, x.dtype)  # padding stays zero
            ys = np.empty(rows * wp_n + FLAT_STEP if small else 1, x.dtype)
            for c in range(task * c_n // n_tasks, (task + 1) * c_n // n_tasks):
                acc[:] = 0
                for n in range(n_img):
                    q = n * c_n + c
                    for od in range(od_n):
                        for kd in range(kd_n):
                            i_d = od - pd + kd * dd
                            if i_d < 0 or i_d >= in_d:
                                continue
                            dw_grad_nchw(x, g, acc, (q * in_d + i_d) * in_plane, (q * od_n + od) * out_plane,
                                         kd * taps2 * lanes, oh_n, ow_n, lo, hi, in_h, in_w, 1, ph, pw, dh, shape,
                                         lanes, revision)
                    nchw_rows(g, wf, gx, xs, ys, q * od_n * out_plane, q, c * taps, zero, 0, rows, rows,
                              (od_n, oh_n, ow_n, in_h, in_w), (1, 1, dd, dh, fpd, fph, fpw), flo, fhi, lo_clamp,
                              hi_clamp, (kd_n, kh_n, kw_n), flat_rows, small, hp_n, wp_n, kd_n, kh_n, kw_n, 1, dw)
                lane_sums(acc, out, c * taps, taps, lanes)
        restore(previous)

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    name = f"dw_backward_nchw_k{kd_n}x{kh_n}x{kw_n}_s1d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [(flat,) * 5 + (types.int64,) * 20 + (types.boolean,) * 2
                                             + (types.int64,) * 2])


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
