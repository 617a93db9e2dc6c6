"""Transposed convolution on the CPU, in gather form.

Each output pixel sums its own contributions: for tap k, the input position is
(o + pad_begin - k * dilation) / stride when that is a whole number inside the input.
No scatter, so no races, and the result is deterministic.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...._arrays import working_dtype
from ....dispatch import register
from ....kernels.activation import ACTIVATION_CODES, activate
from ....kernels.geometry import geometry3
from ....kernels.transpose_taps import source_position
from ..._jit import parallel_kernel
from ...layout import as_working, bias_vector, channels_last_5d, output_from_working
from ...weights import pack_transposed_weight


@parallel_kernel
def conv_transpose_ndhwc(x, wpk, bias, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, act):
    """out (N, OD, OH, OW, K) from x (N, D, H, W, C) and wpk (G, KD, KH, KW, Cg, Kg)."""
    n_img, od_n, oh_n, ow_n, k_n = out.shape
    d_n, h_n, w_n = x.shape[1], x.shape[2], x.shape[3]
    groups, kd_n, kh_n, kw_n, cg, kg = wpk.shape
    for t in prange(n_img * od_n * oh_n):
        n = t // (od_n * oh_n)
        r = t - n * (od_n * oh_n)
        od = r // oh_n
        oh = r - od * oh_n
        orow = out[n, od, oh]
        for ow in range(ow_n):
            for k in range(k_n):
                orow[ow, k] = bias[k]
        for kd in range(kd_n):
            i_d = source_position(od, pd, kd, dd, sd, d_n)
            if i_d < 0:
                continue
            for kh in range(kh_n):
                i_h = source_position(oh, ph, kh, dh, sh, h_n)
                if i_h < 0:
                    continue
                xrow = x[n, i_d, i_h]
                for kw in range(kw_n):
                    for ow in range(ow_n):
                        i_w = source_position(ow, pw, kw, dw, sw, w_n)
                        if i_w < 0:
                            continue
                        xpix = xrow[i_w]
                        for g in range(groups):
                            wt = wpk[g, kd, kh, kw]
                            for ci in range(cg):
                                xv = xpix[g * cg + ci]
                                for ko in range(kg):
                                    orow[ow, g * kg + ko] += xv * wt[ci, ko]
        if act != 0:
            for ow in range(ow_n):
                for k in range(k_n):
                    orow[ow, k] = activate(orow[ow, k], act)


@register("conv_transpose", "cpu", "direct", note="gather form, deterministic, no atomics")
def conv_transpose_direct(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    wpk = pack_transposed_weight(weight, spec, dtype)
    geom = geometry3(spec)
    x5 = np.ascontiguousarray(as_working(channels_last_5d(x, spec.nd, spec.channels_last), dtype))
    out = np.empty((spec.batch, *geom.out_size, spec.out_channels), dtype)
    conv_transpose_ndhwc(
        x5, wpk, bias_vector(bias, spec, dtype), out, *geom.stride, *geom.dilation,
        *(b for b, _ in geom.pads), ACTIVATION_CODES[spec.activation],
    )
    return output_from_working(out, spec, np.dtype(spec.dtype))
