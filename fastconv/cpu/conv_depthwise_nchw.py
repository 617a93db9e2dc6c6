"""Depthwise convolution, channels-first, reading the user's array in place.

Arrays (all flat, C-contiguous, working dtype): input (N, C, D, H, W), output
(N, K, OD, OH, OW) with K = C*M, weight (K, KD*KH*KW), bias (K,).

One parallel task is one (image, output channel, block of output rows). Output
channel k reads input channel k // M. On a row whose window rows all lie inside the
input, the interior columns (conv_depthwise_common.interior_columns) are one loop over
output columns with every tap unrolled in it: the sum stays in a register, the
channel's weights are loop-invariant, and for stride 1 the loads are contiguous
(vectorized along the row). Rows clipped by the zeros padding at the top or bottom
sum their valid window rows into the output row; border columns take a clipped
per-pixel path.

Kernels are specialised on the window (KD, KH, KW), the width stride and dilation and
the dtype.
"""

from __future__ import annotations

import functools

from numba import prange, types

from .._jit import specialised_kernel
from .conv_depthwise_common import clamp, u


@functools.cache
def nchw_kernel(kd_n: int, kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    """The channels-first kernel for one window, compiled (or loaded from the cache) on first use."""
    taps = kd_n * kh_n * kw_n

    def kernel(x, w, bias, out, n_img, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, sd, sh, dd, dh, pd, ph, pw,
               ow_lo, ow_hi, mult, rblock, lo, hi, window):
        k_n = c_n * mult
        kd_rt, kh_rt, kw_rt = window  # the window at run time: clipped loops stay rolled (less to compile)
        rows = od_n * oh_n
        n_rb = (rows + rblock - 1) // rblock
        plane = in_d * in_h * in_w
        dstep = dd * in_h * in_w
        hstep = dh * in_w
        for t in prange(n_img * k_n * n_rb):
            rb = t % n_rb
            q = t // n_rb  # n * k_n + k
            k = q % k_n
            n = q // k_n
            xplane = (n * c_n + k // mult) * plane
            wk = k * taps
            b = bias[k]
            for r in range(rb * rblock, min(rows, (rb + 1) * rblock)):
                od = r // oh_n
                oh = r - od * oh_n
                id0 = od * sd - pd
                ih0 = oh * sh - ph
                ob = (q * rows + r) * ow_n
                if id0 >= 0 and id0 + (kd_n - 1) * dd < in_d and ih0 >= 0 and ih0 + (kh_n - 1) * dh < in_h:
                    xr = xplane + (id0 * in_h + ih0) * in_w - pw
                    for ow in range(ow_lo, ow_hi):
                        acc = b
                        for kd in range(kd_n):
                            for kh in range(kh_n):
                                xt = xr + kd * dstep + kh * hstep + ow * sw
                                wt = wk + (kd * kh_n + kh) * kw_n
                                for kw in range(kw_n):
                                    acc += x[u(xt + kw * dw)] * w[u(wt + kw)]
                        out[u(ob + ow)] = clamp(acc, lo, hi)
                else:
                    for ow in range(ow_lo, ow_hi):
                        out[u(ob + ow)] = b
                    for kd in range(kd_n):
                        i_d = id0 + kd * dd
                        if i_d < 0 or i_d >= in_d:
                            continue
                        for kh in range(kh_n):
                            i_h = ih0 + kh * dh
                            if i_h < 0 or i_h >= in_h:
                                continue
                            xt = xplane + (i_d * in_h + i_h) * in_w - pw
                            wt = wk + (kd * kh_n + kh) * kw_n
                            for ow in range(ow_lo, ow_hi):
                                acc = out[u(ob + ow)]
                                for kw in range(kw_n):
                                    acc += x[u(xt + ow * sw + kw * dw)] * w[u(wt + kw)]
                                out[u(ob + ow)] = acc
                    for ow in range(ow_lo, ow_hi):
                        out[u(ob + ow)] = clamp(out[u(ob + ow)], lo, hi)
                for j in range(ow_n - (ow_hi - ow_lo)):
                    ow = j if j < ow_lo else j + (ow_hi - ow_lo)
                    # a border pixel: the window clipped to the input
                    acc = b
                    for kd in range(kd_rt):
                        i_d = id0 + kd * dd
                        if i_d < 0 or i_d >= in_d:
                            continue
                        for kh in range(kh_rt):
                            i_h = ih0 + kh * dh
                            if i_h < 0 or i_h >= in_h:
                                continue
                            for kw in range(kw_rt):
                                i_w = ow * sw - pw + kw * dw
                                if i_w >= 0 and i_w < in_w:
                                    acc += x[u(xplane + (i_d * in_h + i_h) * in_w + i_w)] * \
                                        w[u(wk + (kd * kh_rt + kh) * kw_rt + kw)]
                    out[u(ob + ow)] = clamp(acc, lo, hi)

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    sig = (flat, flat, flat, flat) + (types.int64,) * 19 + (dt, dt, types.UniTuple(types.int64, 3))
    name = f"conv_depthwise_nchw_k{kd_n}x{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [sig])
