"""Depthwise convolution, channels-last, reading the user's array in place.

Arrays (all flat, C-contiguous, working dtype): input (N, D, H, W, C), output
(N, OD, OH, OW, K) with K = C*M, weight (KD, KH, KW, K), bias (K,).

One parallel task is one output row (n, od, oh) by one block of output channels.
On rows whose window rows all lie inside the input, the interior columns
(conv_depthwise_common.interior_columns) run register tiles of 4 output pixels (2 at strides > 1):
the loop over the block's channels is innermost (contiguous, vectorized), and every
tap of the window is unrolled in it, so each pixel's sum stays in a register and is
written once, bias and activation included. The other pixels (borders, clipped by
the zeros padding) and channel multipliers M > 1 take a per-pixel path that clips
the window and accumulates in the output pixel.

Kernels are specialised on the window (KD, KH, KW), the width stride and dilation and
the dtype: constant trip counts let LLVM unroll the taps and share loads between the
pixels of a tile.
"""

from __future__ import annotations

import functools

from numba import prange, types

from .._jit import specialised_kernel
from .conv_depthwise_common import clamp, u

# Output pixels per register tile: at stride 1 neighbouring pixels share input loads, so 4; at
# larger strides they share none and 2 measured faster (fewer live pointers).
PIXELS = {1: 4}


@functools.cache
def nhwc_kernel(kd_n: int, kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    """The channels-last kernel for one window, compiled (or loaded from the cache) on first use."""
    pixels = PIXELS.get(sw, 2)
    four = pixels == 4

    def kernel(x, w, bias, out, n_img, in_d, in_h, in_w, c_n, od_n, oh_n, ow_n, sd, sh, dd, dh, pd, ph, pw,
               ow_lo, ow_hi, mult, cblock, lo, hi, window):
        k_n = c_n * mult
        kd_rt, kh_rt, kw_rt = window  # the window at run time: clipped loops stay rolled (less to compile)
        n_cb = (k_n + cblock - 1) // cblock
        rows = od_n * oh_n
        cpix = c_n  # input elements per pixel
        dstep = dd * in_h * in_w * cpix
        hstep = dh * in_w * cpix
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
            first = 0
            last = 0
            if mult == 1 and id0 >= 0 and id0 + (kd_n - 1) * dd < in_d and ih0 >= 0 and ih0 + (kh_n - 1) * dh < in_h:
                first = ow_lo
                last = ow_hi
                xrow = ((n * in_d + id0) * in_h + ih0) * in_w * cpix
                ow = first
                while ow + pixels <= last:
                    xb = xrow + (ow * sw - pw) * cpix
                    ob = obase + ow * k_n
                    for c in range(k0, k1):
                        a0 = bias[u(c)]
                        a1 = a0
                        a2 = a0
                        a3 = a0
                        for kd in range(kd_n):
                            for kh in range(kh_n):
                                xt = xb + kd * dstep + kh * hstep + c
                                wt = (kd * kh_n + kh) * kw_n * k_n + c
                                for kw in range(kw_n):
                                    wv = w[u(wt + kw * k_n)]
                                    i = xt + kw * dw * cpix
                                    a0 += x[u(i)] * wv
                                    a1 += x[u(i + sw * cpix)] * wv
                                    if four:
                                        a2 += x[u(i + 2 * sw * cpix)] * wv
                                        a3 += x[u(i + 3 * sw * cpix)] * wv
                        out[u(ob + c)] = clamp(a0, lo, hi)
                        out[u(ob + k_n + c)] = clamp(a1, lo, hi)
                        if four:
                            out[u(ob + 2 * k_n + c)] = clamp(a2, lo, hi)
                            out[u(ob + 3 * k_n + c)] = clamp(a3, lo, hi)
                    ow += pixels
                while ow < last:
                    xb = xrow + (ow * sw - pw) * cpix
                    ob = obase + ow * k_n
                    for c in range(k0, k1):
                        a0 = bias[u(c)]
                        for kd in range(kd_n):
                            for kh in range(kh_n):
                                xt = xb + kd * dstep + kh * hstep + c
                                wt = (kd * kh_n + kh) * kw_n * k_n + c
                                for kw in range(kw_n):
                                    a0 += x[u(xt + kw * dw * cpix)] * w[u(wt + kw * k_n)]
                        out[u(ob + c)] = clamp(a0, lo, hi)
                    ow += 1
            for j in range(ow_n - (last - first)):
                ow = j if j < first else j + (last - first)
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

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    sig = (flat, flat, flat, flat) + (types.int64,) * 19 + (dt, dt, types.UniTuple(types.int64, 3))
    name = f"conv_depthwise_nhwc_k{kd_n}x{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [sig])
