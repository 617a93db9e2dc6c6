"""Register-tiled depthwise weight-gradient kernels (vector/depthwise_grad.py), one per layout.

The kernels of depthwise.py add each product into an accumulator in memory (a load and a
store per multiply-add). Here a window's taps sum in registers over a whole output plane:

- channels-last (channel multiplier 1): a task owns a strip of output rows of one image by a
  block of channels and sums it through dw_grad_nhwc into partial sums of its own (the strip's
  input rows for the block within STRIP_BYTES, so they stay in cache while each vector of
  channels sweeps them, and every task streams whole pixels: a task per channel vector over
  the image made the prefetchers fetch the other vectors' lines, 3-7x slower on 96 x 112 x 112).
  The strips' sums are then added to the gradient in strip order. Strips and blocks follow
  from the shapes alone: the result does not depend on the thread count;
- channels-first (stride 1 or 2 along the row): a task owns a run of out-channels and one
  accumulator buffer for all of them (a buffer allocated per channel took about half the time
  of 960 7x7 planes); lane i of each tap's vector sums the output columns i, i + L, ... of
  every row and image in a fixed order, and the lanes are added up in lane order at the end.

Kernels are specialised on the 2-D window (KH, KW), the width stride and dilation and the
dtype; depths (3-D) are a loop of the kernel. Windows whose taps do not fit in the vector
registers beside the tile take depthwise.py's kernels (:func:`tiled_call` returns None).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange, types

from ...._threads import balanced, restore
from ....kernels.geometry import geometry3
from ....kernels.inline import inline_helper
from ..._jit import simd, specialised_kernel
from ...vector.depthwise_grad import REVISION, dw_grad_nchw, dw_grad_nhwc, grad_literal
from ..depthwise.common import interior_columns

SPARE_REGISTERS = 3  # beside the taps' accumulators: grad_output and input vectors
# channels-last: a strip's input rows of a task's channels at most (one row at least). Against 128 KiB,
# taller strips re-read fewer halo rows: 8x144x56x56 stride 2 0.96 -> 0.69 ms, 1x144x56x56 stride 2
# 0.107 -> 0.069, 8x128x56x56 1.52 -> 1.40 (2 threads, 2 MiB L2 a core)
STRIP_BYTES = 512 * 1024
CHANNEL_BLOCK = 128  # channels-last: channels per task (a multiple of every vector's lanes)
MIN_TASKS = 8  # channels-last: strips made shorter until (strips x channel blocks) gives this many tasks
NCHW_TASKS = 64  # channels-first: out-channels in at most this many tasks, each allocating its buffers once


def nhwc_strip(planes: int, out_h: int, in_w: int, channels: int, kh: int, sh: int, dh: int, itemsize: int) -> int:
    """Output rows per channels-last strip of ``planes`` output planes of ``out_h`` rows: their input rows
    of a task's channels within STRIP_BYTES, at least MIN_TASKS tasks where the rows allow, a plane's
    strips as even as can be (19 rows as 10 + 9, not 14 + 5: 1x728x19x19 0.095 -> 0.068 ms).
    From the shapes of one image alone (``planes`` its output depth, never the batch): the strips' partial
    sums, and so the result, depend neither on the threads nor on how the images are cut into chunks
    (workspace chunks, Dask blocks)."""
    rows = STRIP_BYTES // max(1, in_w * min(channels, CHANNEL_BLOCK) * itemsize)
    blocks = -(-channels // CHANNEL_BLOCK)
    strip = max(1, min((rows - (kh - 1) * dh) // sh, planes * out_h * blocks // MIN_TASKS))
    return -(-out_h // -(-out_h // strip))


@inline_helper
def zeroed_strip_block(task, n_cb, c_n, taps, partial):
    """(strip, k0, k1, base) of a channels-last strip task (strips x channel blocks of
    CHANNEL_BLOCK), its block of the strip's (tap, channel) partial sums set to zero."""
    st = task // n_cb
    k0 = (task - st * n_cb) * CHANNEL_BLOCK
    k1 = min(k0 + CHANNEL_BLOCK, c_n)
    base = st * taps * c_n
    for t in range(taps):
        for k in range(k0, k1):
            partial[base + t * c_n + k] = 0
    return st, k0, k1, base


@inline_helper
def add_strip_sums(partial, out, n_strips, taps, c_n, k0, k1):
    """out (C, taps) += the strips' partial sums (strip, tap, C) of channels [k0, k1), in strip order."""
    total = np.empty(k1 - k0, partial.dtype)
    for t in range(taps):
        for k in range(k0, k1):
            total[k - k0] = out[k * taps + t]
        for st in range(n_strips):
            row = st * taps * c_n + t * c_n
            for k in range(k0, k1):
                total[k - k0] += partial[row + k]
        for k in range(k0, k1):
            out[k * taps + t] = total[k - k0]


@inline_helper
def lane_sums(acc, out, base, taps, lanes):
    """out[base + t] = the lanes of tap t's accumulator acc[t * lanes:(t + 1) * lanes] added in lane order."""
    for t in range(taps):
        total = acc[t * lanes]
        for i in range(1, lanes):
            total += acc[t * lanes + i]
        out[base + t] = total


def _lanes(dtype: str) -> int:
    return simd().vector_bytes // (4 if dtype == "float32" else 8)


def _pixels(taps: int, sw: int) -> int:
    """Output pixels per channels-last tile: their grad_output vectors stay in registers beside the taps."""
    pixels = 8 if sw == 1 else 4
    while pixels > 1 and taps + pixels + SPARE_REGISTERS > simd().registers:
        pixels //= 2
    return pixels


def tiled_call(spec, x_shape, g_shape, pads, channels_last: bool, dtype: str):
    """(kernel, its arguments after the three arrays) of the register-tiled kernel for the depthwise
    ``spec`` on 5-D arrays of these shapes in the kernel's layout (``pads`` at the start), or None
    where it does not apply."""
    geom = geometry3(spec)
    (kd, kh, kw), (sd, sh, sw), (dd, dh, dw) = geom.kernel, geom.stride, geom.dilation
    if kh * kw + SPARE_REGISTERS + 1 > simd().registers or dtype not in ("float32", "float64"):
        return None
    if channels_last:
        if spec.out_per_group != 1:
            return None
        n, d, h, w, c = x_shape
        od, oh, ow = g_shape[1:4]
        return nhwc_grad_kernel(kh, kw, sw, dw, dtype), (n, d, h, w, c, od, oh, ow, kd, sd, sh, dd, dh, *pads,
                                                          *interior_columns(w, kw, sw, dw, pads[2], ow),
                                                          nhwc_strip(od, oh, w, c, kh, sh, dh,
                                                                     4 if dtype == "float32" else 8))
    if sw > 2:
        return None
    n, c, d, h, w = x_shape
    k, od, oh, ow = g_shape[1:]
    return nchw_grad_kernel(kh, kw, sw, dw, dtype), (n, c, d, h, w, k, od, oh, ow, kd, sd, sh, dd, dh, *pads,
                                                      *interior_columns(w, kw, sw, dw, pads[2], ow),
                                                      spec.out_per_group)


def _signature(dtype: str, ints: int):
    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    return (flat, flat, flat) + (types.int64,) * ints


@functools.cache
def nhwc_grad_kernel(kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    revision = REVISION  # a closure constant: part of the disk cache's key, unlike a global
    shape = grad_literal(kh_n, kw_n, sw, dw, _pixels(kh_n * kw_n, sw))
    lanes = _lanes(dtype)
    taps2 = kh_n * kw_n

    def kernel(x, g, out, n_img, in_d, in_h, in_w, c_n, od_n, oh_n, ow_n, kd_n, sd, sh, dd, dh, pd, ph, pw, lo, hi,
               strip):
        """out (C, KD, KH, KW) += the gradient from x (N, D, H, W, C) and g (N, OD, OH, OW, C), all flat."""
        taps = kd_n * taps2
        in_plane = in_h * in_w * c_n
        out_plane = oh_n * ow_n * c_n
        per_plane = (oh_n + strip - 1) // strip
        n_strips = n_img * od_n * per_plane
        n_cb = (c_n + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        partial = np.empty(n_strips * taps * c_n, x.dtype)  # (strip, tap, channel)
        for task in prange(n_strips * n_cb):
            st, k0, k1, base = zeroed_strip_block(task, n_cb, c_n, taps, partial)
            q = st // per_plane  # n * od_n + od
            od = q % od_n
            oh0 = (st - q * per_plane) * strip
            for kd in range(kd_n):
                i_d = od * sd - pd + kd * dd
                if i_d < 0 or i_d >= in_d:
                    continue
                dw_grad_nhwc(x, g, partial, ((q // od_n) * in_d + i_d) * in_plane, q * out_plane,
                             base + kd * taps2 * c_n, c_n, k0, k1, c_n, oh0, min(oh0 + strip, oh_n), ow_n, lo, hi,
                             in_h, in_w, sh, ph, pw, dh, shape, lanes, revision)
        for cb in prange(n_cb):
            add_strip_sums(partial, out, n_strips, taps, c_n, cb * CHANNEL_BLOCK, min((cb + 1) * CHANNEL_BLOCK, c_n))

    name = f"dw_weight_grad_nhwc_k{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [_signature(dtype, 19)])


@functools.cache
def nchw_grad_kernel(kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    revision = REVISION
    shape = grad_literal(kh_n, kw_n, sw, dw)
    lanes = _lanes(dtype)
    taps2 = kh_n * kw_n

    def kernel(x, g, out, n_img, c_n, in_d, in_h, in_w, k_n, od_n, oh_n, ow_n, kd_n, sd, sh, dd, dh, pd, ph, pw, lo,
               hi, mult):
        """out (K, KD, KH, KW) = the gradient from x (N, C, D, H, W) and g (N, K, OD, OH, OW), all flat."""
        taps = kd_n * taps2
        in_plane = in_h * in_w
        out_plane = oh_n * ow_n
        n_tasks = min(k_n, NCHW_TASKS)
        previous = balanced(n_tasks)
        for task in prange(n_tasks):
            acc = np.empty(taps * lanes, x.dtype)
            for k in range(task * k_n // n_tasks, (task + 1) * k_n // n_tasks):
                c = k // mult
                acc[:] = 0
                for n in range(n_img):
                    for od in range(od_n):
                        for kd in range(kd_n):
                            i_d = od * sd - pd + kd * dd
                            if i_d < 0 or i_d >= in_d:
                                continue
                            dw_grad_nchw(x, g, acc, ((n * c_n + c) * in_d + i_d) * in_plane,
                                         ((n * k_n + k) * od_n + od) * out_plane, kd * taps2 * lanes, oh_n, ow_n, lo,
                                         hi, in_h, in_w, sh, ph, pw, dh, shape, lanes, revision)
                lane_sums(acc, out, k * taps, taps, lanes)
        restore(previous)

    name = f"dw_weight_grad_nchw_k{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [_signature(dtype, 20)])
