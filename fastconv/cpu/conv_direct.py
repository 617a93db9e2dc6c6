"""Direct convolution on the CPU: channels-last, output channels innermost.

Each parallel task owns one output row (image, depth, height) and accumulates every
tap into it; the innermost loop runs over the consecutive output channels of one
group, which LLVM vectorizes.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._arrays import working_dtype
from .._jit import parallel_kernel
from ..dispatch import register
from .conv_driver import run_on_padded_chunks
from .layout import activate, geometry3
from .weights import pack_conv_weight


@parallel_kernel
def conv_direct_ndhwc(xp, wpk, bias, out, sd, sh, sw, dd, dh, dw, act):
    """out (N, OD, OH, OW, K) = conv of padded xp (N, Dp, Hp, Wp, C) with wpk (G, KD, KH, KW, Cg, Kg)."""
    n_img, od_n, oh_n, ow_n, k_n = out.shape
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
        for g in range(groups):
            c0 = g * cg
            k0 = g * kg
            for kd in range(kd_n):
                for kh in range(kh_n):
                    xrow = xp[n, od * sd + kd * dd, oh * sh + kh * dh]
                    for kw in range(kw_n):
                        wt = wpk[g, kd, kh, kw]
                        for ow in range(ow_n):
                            xpix = xrow[ow * sw + kw * dw]
                            for ci in range(cg):
                                xv = xpix[c0 + ci]
                                for ko in range(kg):
                                    orow[ow, k0 + ko] += xv * wt[ci, ko]
        if act != 0:
            for ow in range(ow_n):
                for k in range(k_n):
                    orow[ow, k] = activate(orow[ow, k], act)


@register("conv", "cpu", "direct", note="direct loops, channels-last, output channels vectorized")
def conv_direct(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    wpk = pack_conv_weight(weight, spec, dtype)
    geom = geometry3(spec)

    def call(xp, out, b, act):
        conv_direct_ndhwc(xp, wpk, b, out, *geom.stride, *geom.dilation, act)

    return run_on_padded_chunks(spec, x, bias, call)
