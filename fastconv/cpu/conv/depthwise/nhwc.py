"""Depthwise convolution, channels-last, reading the user's array in place.

Arrays (all flat, C-contiguous, working dtype): input (N, D, H, W, C), output
(N, OD, OH, OW, K) with K = C*M, weight (KD, KH, KW, K), bias (K,).

One parallel task is one output row (n, od, oh) by one block of output channels.
With channel multiplier 1, a row's interior columns (conv.depthwise.common.interior_columns)
are one call of the vector row of vector/depthwise_row.py: tiles of PIXELS output pixels (2 for
windows over 12 taps) sweep the row, each over every vector of the task's channels (the input
is read in contiguous runs of whole pixels), each input column loaded once per tile and window
row, bias and activation applied before each pixel's single store; rows whose window is
clipped at the top or bottom skip the window rows outside the input. While a row runs, its
task asks for the input rows the next output row adds to its window, into L2 (on AMD Zen:
prefetch_next_rows). Border columns
are single pixels of the same vector code with the window's columns clipped too. Channel
multipliers M > 1 take a per-pixel path that clips the window and accumulates in the output
pixel.

Kernels are specialised on the window (KD, KH, KW), the width stride and dilation and
the dtype (float32 and float64 both take the vector row, lanes = vector bytes / itemsize).
"""

from __future__ import annotations

import functools

from numba import prange, types

from ...._threads import balanced, restore
from ..._jit import simd, specialised_kernel
from ...vector.depthwise_row import REVISION, dw_row, window_literal
from ...vector.prefetch import prefetch_l2
from .common import clamp, u

# Output pixels per tile of the vector row: at stride 1 neighbouring pixels share input columns and
# 8 measured ~8% faster than 4 on MobileNet layers; at stride 2 they share one, and 2 measured 10-20%
# faster than 8 (the row sweeps 2*C apart per pixel; fewer pixels per tile keep it closer to a stream),
# and still 3-8% faster than 4 or 8 with the tiles outside the channel vectors.
PIXELS = {1: 8}


def prefetch_next_rows() -> bool:
    """Whether a row's task asks for the next output row's input rows (into L2) while it runs:
    on AMD Zen (where it was tuned) 10-25% faster on inputs out of cache; on an Intel Ice Lake
    10-25% slower on most MobileNet and dw_vs_standard layers (one thread, inputs out of cache,
    medians of 4x150 calls), whose own prefetchers follow the rows. The CPU Numba compiles for."""
    import llvmlite.binding as ll
    from numba.core import config

    name = config.CPU_NAME if config.CPU_NAME not in (None, "host") else ll.get_host_cpu_name()
    return name.startswith("znver")


@functools.cache
def nhwc_kernel(kd_n: int, kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    """The channels-last kernel for one window, compiled (or loaded from the cache) on first use."""
    pixels = PIXELS.get(sw, 2) if kd_n * kh_n * kw_n <= 12 else 2
    row_shape = window_literal(kd_n, kh_n, kw_n, sw, dw, pixels, pixels_outer=True)  # literals of the intrinsic
    pixel_shape = window_literal(kd_n, kh_n, kw_n, sw, dw, 1, columns=True)
    lanes = simd().vector_bytes // (4 if dtype == "float32" else 8)
    revision = REVISION  # a closure constant: part of Numba's disk-cache key, unlike a global
    line = 64 // (4 if dtype == "float32" else 8)  # elements per cache line
    prefetch = prefetch_next_rows()  # a closure constant, as revision

    def kernel(x, w, bias, out, n_img, in_d, in_h, in_w, c_n, od_n, oh_n, ow_n, sd, sh, dd, dh, pd, ph, pw,
               ow_lo, ow_hi, mult, cblock, lo, hi, window):
        k_n = c_n * mult
        kd_rt, kh_rt, kw_rt = window  # the window at run time: clipped loops stay rolled (less to compile)
        n_cb = (k_n + cblock - 1) // cblock
        rows = od_n * oh_n
        cpix = c_n  # input elements per pixel
        dstep = dd * in_h * in_w * cpix
        hstep = dh * in_w * cpix
        previous = balanced(n_img * rows * n_cb)
        for t in prange(n_img * rows * n_cb):
            cb = t % n_cb
            r = t // n_cb
            n = r // rows
            od = (r - n * rows) // oh_n
            oh = r - n * rows - od * oh_n
            k0 = cb * cblock
            k1 = min(k0 + cblock, k_n)
            id0 = od * sd - pd
            ih0 = oh * sh - ph
            obase = r * ow_n * k_n
            if mult == 1:
                # the window's rows and depths inside the input; its columns at the border pixels
                kd0 = 0 if id0 >= 0 else (dd - 1 - id0) // dd
                kd1 = min(kd_n, (in_d - 1 - id0) // dd + 1)
                kh0 = 0 if ih0 >= 0 else (dh - 1 - ih0) // dh
                kh1 = min(kh_n, (in_h - 1 - ih0) // dh + 1)
                if prefetch and cb == 0 and oh + 1 < oh_n:
                    # the input rows the next output row adds to its window, into L2 while this row runs
                    for kd in range(kd0, kd1):
                        xd = (n * in_d + id0 + kd * dd) * in_h
                        for i_h in range(max(ih0 + (kh_n - 1) * dh + 1, 0), min(ih0 + sh + (kh_n - 1) * dh + 1, in_h)):
                            for e in range((xd + i_h) * in_w * cpix, (xd + i_h + 1) * in_w * cpix, line):
                                prefetch_l2(x, e)
                xrow = ((n * in_d + id0) * in_h + ih0) * in_w * cpix
                dw_row(x, w, bias, out, xrow + (ow_lo * sw - pw) * cpix, obase + ow_lo * k_n, ow_hi - ow_lo, k0, k1,
                       c_n, hstep, dstep, kd0, kd1, kh0, kh1, 0, kw_n, lo, hi, row_shape, lanes, revision)
                for j in range(ow_n - (ow_hi - ow_lo)):
                    ow = j if j < ow_lo else j + (ow_hi - ow_lo)
                    iw0 = ow * sw - pw
                    kw0 = 0 if iw0 >= 0 else (dw - 1 - iw0) // dw
                    kw1 = min(kw_n, (in_w - 1 - iw0) // dw + 1)
                    dw_row(x, w, bias, out, xrow + iw0 * cpix, obase + ow * k_n, 1, k0, k1, c_n, hstep, dstep,
                           kd0, kd1, kh0, kh1, kw0, kw1, lo, hi, pixel_shape, lanes, revision)
                continue
            for ow in range(ow_n):
                # one pixel, window clipped to the input, summed in the output pixel
                ob = obase + ow * k_n
                for k in range(k0, k1):
                    out[u(ob + k)] = bias[u(k)]
                iw0 = ow * sw - pw
                for kd in range(kd_rt):
                    i_d = id0 + kd * dd
                    if i_d < 0 or i_d >= in_d:
                        continue
                    for kh in range(kh_rt):
                        i_h = ih0 + kh * dh
                        if i_h < 0 or i_h >= in_h:
                            continue
                        for kw in range(kw_rt):
                            i_w = iw0 + kw * dw
                            if i_w < 0 or i_w >= in_w:
                                continue
                            xb = (((n * in_d + i_d) * in_h + i_h) * in_w + i_w) * cpix
                            wb = ((kd * kh_rt + kh) * kw_rt + kw) * k_n
                            if mult == 1:
                                for k in range(k0, k1):
                                    out[u(ob + k)] += x[u(xb + k)] * w[u(wb + k)]
                            else:
                                for k in range(k0, k1):
                                    out[u(ob + k)] += x[u(xb + k // mult)] * w[u(wb + k)]
                for k in range(k0, k1):
                    out[u(ob + k)] = clamp(out[u(ob + k)], lo, hi)
        restore(previous)

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    sig = (flat, flat, flat, flat) + (types.int64,) * 19 + (dt, dt, types.UniTuple(types.int64, 3))
    name = f"conv_depthwise_nhwc_k{kd_n}x{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [sig])
