"""Weight gradient of a depthwise convolution on the CPU (algo "depthwise": one in-channel
per group, channel multiplier M = K / C).

Where it applies, the register-tiled kernels of depthwise_tiled.py run (each tap's sum in a
vector register over rows of output pixels); a repeated call binds one in its call plan
(:func:`_bind`). The kernels here serve the rest (channels-last with M > 1, channels-first
strides past 2, windows whose taps outnumber the registers): the direct kernel's vector runs
over a group's in-channels, here one, so these put the channels (channels-last) or the row
(channels-first) along the vector instead, adding into accumulators in memory in a fixed
order; out-channel k reads in-channel k // M.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import prange

from ...._arrays import working_dtype
from ....dispatch import register
from ....kernels.geometry import geometry3, lift3
from ....kernels.tap_range import reading_outputs
from ..._jit import parallel_kernel
from ...layout import as_working, channels_last_5d
from ..depthwise.common import u
from .depthwise_tiled import tiled_call
from .operands import weight_from_working, weight_grad_chunks

# Out-channels per task: a multiple of this, as few tasks as threads allow. Wider blocks
# stream the rows in longer runs: on one thread (8x96x56x56, 3x3, float32) blocks of 16,
# 32 and 96 channels took 4.8, 3.2 and 2.0 ms (the forward conv 1.6 ms). Each weight's
# sum runs in the same order whatever the block, so the result does not depend on it.
CHANNEL_BLOCK = 16
MAX_BLOCK = 256


def channel_block(channels: int, threads: int) -> int:
    per_task = -(-channels // max(threads, 1))
    return min(MAX_BLOCK, -(-per_task // CHANNEL_BLOCK) * CHANNEL_BLOCK)


@parallel_kernel
def depthwise_weight_grad_ndhwc(x, g, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, multiplier, block):
    """out (K, KD, KH, KW, 1) += depthwise weight gradient from the channels-last input x
    (N, D, H, W, C), zeros beyond its edges after pads (pd, ph, pw) at the start (taps
    there are skipped, column ranges clipped: no padded copy), and g (N, OD, OH, OW, K),
    K = C * multiplier, each sum continuing from out's value (chunks of images add up as
    one call). A task owns a block of out-channels; per output row and tap, the row's
    pixels add into that tap's accumulator row, in the order (n, od, oh, kd, kh, kw, ow);
    indexes are flat and unsigned (see depthwise.common.u) so the channel loop vectorizes."""
    n_img, od_n, oh_n, ow_n, k_n = g.shape
    d_n, h_n, w_n, c_n = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    kd_n, kh_n, kw_n = out.shape[1], out.shape[2], out.shape[3]
    xf = x.reshape(-1)
    gf = g.reshape(-1)
    of = out.reshape(-1)
    taps = kd_n * kh_n * kw_n
    blocks = (k_n + block - 1) // block
    for blk in prange(blocks):
        k0 = blk * block
        k_count = min(block, k_n - k0)
        acc = np.empty(taps * block, out.dtype)
        for tap in range(taps):
            for j in range(k_count):
                acc[u(tap * block + j)] = of[u((k0 + j) * taps + tap)]
        for n in range(n_img):
            for od in range(od_n):
                for oh in range(oh_n):
                    grow = ((n * od_n + od) * oh_n + oh) * ow_n * k_n + k0
                    for kd in range(kd_n):
                        i_d = od * sd + kd * dd - pd
                        if i_d < 0 or i_d >= d_n:
                            continue
                        for kh in range(kh_n):
                            i_h = oh * sh + kh * dh - ph
                            if i_h < 0 or i_h >= h_n:
                                continue
                            xrow = ((n * d_n + i_d) * h_n + i_h) * w_n
                            for kw in range(kw_n):
                                off = kw * dw - pw
                                lo, hi = reading_outputs(ow_n, w_n, off, sw)
                                ab = ((kd * kh_n + kh) * kw_n + kw) * block
                                if multiplier == 1:
                                    for ow in range(lo, hi):
                                        gb = grow + ow * k_n
                                        xb = (xrow + ow * sw + off) * c_n + k0
                                        for j in range(k_count):
                                            acc[u(ab + j)] += gf[u(gb + j)] * xf[u(xb + j)]
                                else:
                                    for ow in range(lo, hi):
                                        gb = grow + ow * k_n
                                        xb = (xrow + ow * sw + off) * c_n
                                        for j in range(k_count):
                                            acc[u(ab + j)] += gf[u(gb + j)] * xf[u(xb + (k0 + j) // multiplier)]
        for tap in range(taps):
            for j in range(k_count):
                of[u((k0 + j) * taps + tap)] = acc[u(tap * block + j)]


@parallel_kernel
def depthwise_weight_grad_nchw(x, g, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, multiplier):
    """out (K, KD, KH, KW) from the unpadded channels-first input x (N, C, D, H, W) and g
    (N, K, OD, OH, OW), zeros padding: taps that land on padding are skipped, column ranges
    clipped (computed once per kw). One task per out-channel; each tap keeps one partial
    sum per output column (the vector runs along the row), added up in column order at
    the end."""
    n_img, k_n, od_n, oh_n, ow_n = g.shape
    c_n, d_n, h_n, w_n = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    kd_n, kh_n, kw_n = out.shape[1], out.shape[2], out.shape[3]
    taps = kd_n * kh_n * kw_n
    xf = x.reshape(-1)
    gf = g.reshape(-1)
    of = out.reshape(-1)
    los = np.empty(kw_n, np.int64)
    his = np.empty(kw_n, np.int64)
    for kw in range(kw_n):
        los[kw], his[kw] = reading_outputs(ow_n, w_n, kw * dw - pw, sw)
    for k in prange(k_n):
        c = k // multiplier
        acc = np.zeros(taps * ow_n, out.dtype)
        for n in range(n_img):
            for od in range(od_n):
                for oh in range(oh_n):
                    grow = (((n * k_n + k) * od_n + od) * oh_n + oh) * ow_n
                    for kd in range(kd_n):
                        i_d = od * sd + kd * dd - pd
                        if i_d < 0 or i_d >= d_n:
                            continue
                        for kh in range(kh_n):
                            i_h = oh * sh + kh * dh - ph
                            if i_h < 0 or i_h >= h_n:
                                continue
                            xrow = (((n * c_n + c) * d_n + i_d) * h_n + i_h) * w_n - pw
                            for kw in range(kw_n):
                                xb = xrow + kw * dw
                                ab = ((kd * kh_n + kh) * kw_n + kw) * ow_n
                                if sw == 1:
                                    for ow in range(los[kw], his[kw]):
                                        acc[u(ab + ow)] += gf[u(grow + ow)] * xf[u(xb + ow)]
                                else:
                                    for ow in range(los[kw], his[kw]):
                                        acc[u(ab + ow)] += gf[u(grow + ow)] * xf[u(xb + ow * sw)]
        for tap in range(taps):
            total = out.dtype.type(0)
            for ow in range(ow_n):
                total += acc[u(tap * ow_n + ow)]
            of[u(k * taps + tap)] = total


def _depthwise(spec):
    if spec.in_per_group != 1:
        return f"needs one input channel per group (groups == in_channels), got {spec.in_per_group}"
    return None


def _nchw(spec, x, grad_output):
    """Channels-first, zeros padding: the kernel reads the user's arrays in place (no padded,
    transposed copies), with the input grad_output's own extent."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    x5 = np.ascontiguousarray(as_working(x, dtype), dtype).reshape(spec.batch, spec.in_channels, *geom.in_size)
    g = np.ascontiguousarray(as_working(grad_output, dtype), dtype)
    g5 = g.reshape(g.shape[0], g.shape[1], *lift3(g.shape[2:], 1))
    out = np.empty((spec.out_channels, *geom.kernel), dtype)
    pads = tuple(b for b, _ in geom.pads)
    tiled = tiled_call(spec, x5.shape, g5.shape, pads, False, dtype.name)
    if tiled is None:
        depthwise_weight_grad_nchw(x5, g5, out, *geom.stride, *geom.dilation, *pads, spec.out_per_group)
    else:
        tiled[0](x5.reshape(-1), g5.reshape(-1), out.reshape(-1), *tiled[1])
    return np.ascontiguousarray(out.reshape(spec.weight_shape), dtype=np.dtype(spec.dtype))


def _nhwc(spec, x, grad_output):
    """Channels-last, zeros padding: the kernel reads the user's arrays in place, clipping
    taps at the borders (no padded copy), with grad_output's own extent."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    x5 = np.ascontiguousarray(as_working(channels_last_5d(x, spec.nd, True), dtype), dtype)
    g5 = np.ascontiguousarray(as_working(channels_last_5d(grad_output, spec.nd, True), dtype), dtype)
    out = np.zeros((spec.out_channels, *geom.kernel, 1), dtype)
    _ndhwc(spec, x5, g5, out, tuple(b for b, _ in geom.pads))
    return weight_from_working(out, spec)


def _ndhwc(spec, x5, g5, out, pads):
    """out (K, KD, KH, KW, 1) += the gradient from channels-last x5 and g5 (5-D, working dtype), pads
    at the start: the register-tiled kernel where it applies, else depthwise_weight_grad_ndhwc."""
    tiled = tiled_call(spec, x5.shape, g5.shape, pads, True, out.dtype.name)
    if tiled is None:
        geom = geometry3(spec)
        block = channel_block(spec.out_channels, numba.get_num_threads())
        depthwise_weight_grad_ndhwc(x5, g5, out, *geom.stride, *geom.dilation, *pads, spec.out_per_group, block)
    else:
        tiled[0](x5.reshape(-1), g5.reshape(-1), out.reshape(-1), *tiled[1])


def _bind(spec):
    """dispatch.Implementation.bind: a repeated call's runner. With zeros padding and the tiled
    kernel, the kernel and its arguments are resolved once and the call reads the user's arrays
    in place (C-contiguous, float32/float64, grad_output of the spec's output shape; other
    arrays take the full path: conv_weight_grad_depthwise)."""
    generic = functools.partial(conv_weight_grad_depthwise, spec)
    dtype = np.dtype(spec.dtype)
    geom = geometry3(spec)
    if spec.padding_mode != "zeros":
        return generic, ()
    cl = spec.channels_last
    image, out_image = ((*geom.in_size, spec.in_channels), (*geom.out_size, spec.out_channels)) if cl else \
        ((spec.in_channels, *geom.in_size), (spec.out_channels, *geom.out_size))
    tiled = tiled_call(spec, (spec.batch, *image), (spec.batch, *out_image), tuple(b for b, _ in geom.pads), cl,
                       dtype.name)
    if tiled is None:
        return generic, ()
    kernel, args = tiled
    weight_shape, g_shape = tuple(spec.weight_shape), tuple(spec.output_shape)

    fill = np.zeros if cl else np.empty  # the channels-last kernel adds to the gradient

    def run(x, grad_output):
        if grad_output.shape != g_shape or not (x.flags.c_contiguous and grad_output.flags.c_contiguous):
            return generic(x, grad_output)
        out = fill(weight_shape, dtype)
        kernel(x.reshape(-1), grad_output.reshape(-1), out.reshape(-1), *args)
        return out

    return run, ()


@register("conv_weight_grad", "cpu", "depthwise", supports=_depthwise, bind=_bind,
          note="taps summed in registers (channels-last: channels along the vector, tasks own strips of rows; "
               "channels-first: the vector along the row, one task per channel); zeros padding read in place "
               "with clipped borders, other modes from a padded channels-last copy; fixed-order sums, no atomics")
def conv_weight_grad_depthwise(spec, x, grad_output):
    if spec.padding_mode == "zeros":
        return _nhwc(spec, x, grad_output) if spec.channels_last else _nchw(spec, x, grad_output)
    geom = geometry3(spec)
    out = np.zeros((spec.out_channels, *geom.kernel, 1), working_dtype(np.dtype(spec.dtype)))
    for xp, g5 in weight_grad_chunks(spec, x, grad_output):
        _ndhwc(spec, xp, g5, out, (0, 0, 0))
    return weight_from_working(out, spec)
