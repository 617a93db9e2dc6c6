"""Depthwise convolution on the CPU (groups == channels, channel multiplier M).

Channels-last: the innermost loop runs over channels, so one tap of one output pixel
is a vector multiply-add across all channels.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._arrays import working_dtype
from .._jit import parallel_kernel
from ..dispatch import register
from .conv_driver import run_on_padded_chunks
from .layout import activate, geometry3
from .weights import pack_depthwise_weight


@parallel_kernel
def conv_depthwise_ndhwc(xp, wdw, bias, out, sd, sh, sw, dd, dh, dw, mult, act):
    """out (N, OD, OH, OW, C*M); xp (N, Dp, Hp, Wp, C) padded; wdw (KD, KH, KW, C*M)."""
    n_img, od_n, oh_n, ow_n, k_n = out.shape
    kd_n, kh_n, kw_n, _ = wdw.shape
    c_n = xp.shape[4]
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
            for kh in range(kh_n):
                xrow = xp[n, od * sd + kd * dd, oh * sh + kh * dh]
                for kw in range(kw_n):
                    wt = wdw[kd, kh, kw]
                    for ow in range(ow_n):
                        xpix = xrow[ow * sw + kw * dw]
                        opix = orow[ow]
                        if mult == 1:
                            for c in range(c_n):
                                opix[c] += xpix[c] * wt[c]
                        else:
                            for c in range(c_n):
                                xv = xpix[c]
                                for m in range(mult):
                                    opix[c * mult + m] += xv * wt[c * mult + m]
        if act != 0:
            for ow in range(ow_n):
                for k in range(k_n):
                    orow[ow, k] = activate(orow[ow, k], act)


def _depthwise_only(spec):
    return None if spec.is_depthwise else "groups must equal input channels (depthwise)"


@register("conv", "cpu", "depthwise", supports=_depthwise_only,
          note="dedicated depthwise kernel, channels vectorized")
def conv_depthwise(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    wdw = pack_depthwise_weight(weight, spec, dtype)
    geom = geometry3(spec)
    mult = spec.out_per_group

    def call(xp, out, b, act):
        conv_depthwise_ndhwc(xp, wdw, b, out, *geom.stride, *geom.dilation, mult, act)

    return run_on_padded_chunks(spec, x, bias, call)
