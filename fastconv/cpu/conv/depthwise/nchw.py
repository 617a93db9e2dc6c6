"""Depthwise convolution, channels-first, reading the user's array in place.

Arrays (all flat, C-contiguous, working dtype): input (N, C, D, H, W), output
(N, K, OD, OH, OW) with K = C*M, weight (K, KD*KH*KW), bias (K,).

One parallel task is one (image, output channel, block of output rows). Output
channel k reads input channel k // M. On a row whose window rows all lie inside the
input, the interior columns (conv.depthwise.common.interior_columns) are one loop over
output columns with every tap unrolled in it: the sum stays in a register, the
channel's weights are loop-invariant, and for stride 1 the loads are contiguous
(vectorized along the row). With ``flat_rows`` (stride 1 and output rows as wide as
input rows, e.g. 3x3 "same"), consecutive such rows are one loop over the flattened
plane, every tap a fixed offset: small maps (7x7, 14x14) then fill whole vectors; the
border columns that loop passes through are rewritten by the clipped path. Rows clipped
by the zeros padding at the top or bottom sum their valid window rows into the output
row; border columns take a clipped per-pixel path.

Small 2-D planes (``small``: few columns, equal strides, no depth) where borders would be
most of the work: each task copies its plane into a zero-padded scratch plane of
``hp_n x wp_n`` and runs one flat loop over it with no borders at all. At stride S the
scratch holds the padded plane as S x S phase planes (every S-th row and column from each
offset), so every tap of the flat loop still reads contiguously.

Kernels are specialised on the window (KD, KH, KW), the width stride and dilation and
the dtype.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange, types

from ...._threads import balanced, restore
from ....kernels.inline import inline_helper
from ..._jit import specialised_kernel
from .common import clamp, u

FLAT_STEP = 16  # the small-plane loop's length is rounded up to this (no scalar remainder after vectors)


@inline_helper
def nchw_rows(x, w, out, xs, ys, xplane, q, wk, b, r, r_end, rows, sizes, steps, ow_lo, ow_hi, lo, hi, window,
              flat_rows, small, hq_n, wq_n, kd_n, kh_n, kw_n, sw, dw):
    """Output rows [r, r_end) of plane q (of od_n * oh_n = rows rows) from the input plane at xplane and the
    weights at wk (the module docstring's paths); xs, ys: the small plane's scratch (xs zeroed once). sizes:
    (in_d, in_h, in_w, oh_n, ow_n), steps: (sd, sh, dd, dh, pd, ph, pw) (at most 30 arguments: Numba inlines
    no call that Python passes as *args)."""
    in_d, in_h, in_w, oh_n, ow_n = sizes
    sd, sh, dd, dh, pd, ph, pw = steps
    dstep = dd * in_h * in_w
    hstep = dh * in_w
    kd_rt, kh_rt, kw_rt = window  # the window at run time: clipped loops stay rolled (less to compile)
    if small:
        # the plane, zero-padded, in scratch as sw x sw phase planes of hq_n x wq_n (phase (a, c)
        # holds padded pixel (sw * i + a, sw * j + c) at (i, j); one plane at stride 1): output
        # pixel (oh, ow) is q = oh * wq_n + ow of a flat loop whose every tap reads its phase
        # plane at q + a fixed offset (sh == sw), contiguous; written with row pitch wq_n
        for ih in range(in_h):
            pr = ih + ph
            for cp in range(sw):
                xrow = ((pr % sw * sw + cp) * hq_n + pr // sw) * wq_n
                for iw in range((cp - pw % sw + sw) % sw, in_w, sw):
                    xs[u(xrow + (iw + pw) // sw)] = x[u(xplane + ih * in_w + iw)]
        q0 = r * wq_n
        for j in range(((r_end - r - 1) * wq_n + ow_n + FLAT_STEP - 1) // FLAT_STEP * FLAT_STEP):
            acc = b
            for kh in range(kh_n):
                for kw in range(kw_n):
                    tap = ((kh * dh % sw * sw + kw * dw % sw) * hq_n + kh * dh // sw) * wq_n + kw * dw // sw
                    acc += xs[u(q0 + j + tap)] * w[u(wk + kh * kw_n + kw)]
            ys[u(j)] = clamp(acc, lo, hi)
        for i in range(r_end - r):
            ob = (q * rows + r + i) * ow_n
            for ow in range(ow_n):
                out[u(ob + ow)] = ys[u(i * wq_n + ow)]
        r = r_end
    while r < r_end:
        od = r // oh_n
        oh = r - od * oh_n
        id0 = od * sd - pd
        ih0 = oh * sh - ph
        ob = (q * rows + r) * ow_n
        run = 1  # rows done by this step
        if id0 >= 0 and id0 + (kd_n - 1) * dd < in_d and ih0 >= 0 and ih0 + (kh_n - 1) * dh < in_h:
            if flat_rows:
                while r + run < r_end and oh + run < oh_n and ih0 + run + (kh_n - 1) * dh < in_h:
                    run += 1
            xr = xplane + (id0 * in_h + ih0) * in_w - pw
            for ow in range(ow_lo, (run - 1) * ow_n + ow_hi):
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
        # border pixels, windows clipped to the input (in a run, they overwrite what the
        # flat loop wrote there from the neighbouring rows)
        for j in range(run * (ow_n - (ow_hi - ow_lo))):
            i = j // (ow_n - (ow_hi - ow_lo))
            jj = j - i * (ow_n - (ow_hi - ow_lo))
            ow = jj if jj < ow_lo else jj + (ow_hi - ow_lo)
            acc = b
            for kd in range(kd_rt):
                i_d = id0 + kd * dd
                if i_d < 0 or i_d >= in_d:
                    continue
                for kh in range(kh_rt):
                    i_h = ih0 + i * sh + kh * dh
                    if i_h < 0 or i_h >= in_h:
                        continue
                    for kw in range(kw_rt):
                        i_w = ow * sw - pw + kw * dw
                        if i_w >= 0 and i_w < in_w:
                            acc += x[u(xplane + (i_d * in_h + i_h) * in_w + i_w)] * \
                                w[u(wk + (kd * kh_rt + kh) * kw_rt + kw)]
            out[u(ob + i * ow_n + ow)] = clamp(acc, lo, hi)
        r += run


@functools.cache
def nchw_kernel(kd_n: int, kh_n: int, kw_n: int, sw: int, dw: int, dtype: str):
    """The channels-first kernel for one window, compiled (or loaded from the cache) on first use."""
    taps = kd_n * kh_n * kw_n

    def kernel(x, w, bias, out, n_img, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n, sd, sh, dd, dh, pd, ph, pw,
               ow_lo, ow_hi, mult, rblock, lo, hi, window, flat_rows, small, hp_n, wp_n, n_chunks):
        k_n = c_n * mult
        rows = od_n * oh_n
        n_rb = (rows + rblock - 1) // rblock
        plane = in_d * in_h * in_w
        n_tasks = n_img * k_n * n_rb
        hq_n = (hp_n + sw - 1) // sw  # the small plane's phase planes
        wq_n = (wp_n + sw - 1) // sw
        previous = balanced(n_chunks)
        for chunk in prange(n_chunks):
            # scratch for small planes, once per chunk of tasks: padding stays zero, the flat loop
            # runs a multiple of FLAT_STEP long (the extra reads hit the zeroed tail)
            xs = np.zeros(sw * sw * hq_n * wq_n + FLAT_STEP if small else 1, x.dtype)
            ys = np.empty(rblock * wq_n + FLAT_STEP if small else 1, x.dtype)
            for t in range(chunk * n_tasks // n_chunks, (chunk + 1) * n_tasks // n_chunks):
                rb = t % n_rb
                q = t // n_rb  # n * k_n + k
                k = q % k_n
                n = q // k_n
                xplane = (n * c_n + k // mult) * plane
                wk = k * taps
                b = bias[k]
                r = rb * rblock
                r_end = min(rows, r + rblock)
                nchw_rows(x, w, out, xs, ys, xplane, q, wk, b, r, r_end, rows, (in_d, in_h, in_w, oh_n, ow_n),
                          (sd, sh, dd, dh, pd, ph, pw), ow_lo, ow_hi, lo, hi, window, flat_rows, small, hq_n, wq_n,
                          kd_n, kh_n, kw_n, sw, dw)
        restore(previous)

    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    sig = (flat, flat, flat, flat) + (types.int64,) * 19 + (dt, dt, types.UniTuple(types.int64, 3)) + (
        types.boolean, types.boolean, types.int64, types.int64, types.int64)
    name = f"conv_depthwise_nchw_k{kd_n}x{kh_n}x{kw_n}_s{sw}d{dw}_{'f32' if dtype == 'float32' else 'f64'}"
    return specialised_kernel(kernel, name, [sig])
