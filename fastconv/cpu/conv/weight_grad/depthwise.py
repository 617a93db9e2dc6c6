"""Weight gradient of a depthwise convolution on the CPU (algo "depthwise": one in-channel
per group, channel multiplier M = K / C).

The direct kernel's vector runs over a group's in-channels, here one. This kernel puts
the channels along the vector instead: a task owns a block of out-channels for every
tap, and for each output pixel adds grad_output's channel row times the input row the
tap reads, in a fixed order (n, od, oh, ow, tap); out-channel k reads in-channel k // M.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....dispatch import register
from ....kernels.geometry import geometry3
from ..._jit import parallel_kernel
from .operands import weight_from_working, weight_grad_operands

# Out-channels per task: a few vectors, so two threads have tasks at 32 channels and up.
CHANNEL_BLOCK = 16


@parallel_kernel
def depthwise_weight_grad_ndhwc(xp, g, out, sd, sh, sw, dd, dh, dw, multiplier, block):
    """out (K, KD, KH, KW, 1): depthwise weight gradient from the padded input xp
    (N, Dp, Hp, Wp, C) and g (N, OD, OH, OW, K), K = C * multiplier."""
    n_img, od_n, oh_n, ow_n, k_n = g.shape
    kd_n, kh_n, kw_n = out.shape[1], out.shape[2], out.shape[3]
    taps = kd_n * kh_n * kw_n
    blocks = (k_n + block - 1) // block
    for blk in prange(blocks):
        k0 = blk * block
        k_count = min(block, k_n - k0)
        acc = np.zeros((taps, block), out.dtype)
        for n in range(n_img):
            for od in range(od_n):
                for oh in range(oh_n):
                    grow = g[n, od, oh]
                    for ow in range(ow_n):
                        gpix = grow[ow]
                        tap = 0
                        for kd in range(kd_n):
                            i_d = od * sd + kd * dd
                            for kh in range(kh_n):
                                xrow = xp[n, i_d, oh * sh + kh * dh]
                                for kw in range(kw_n):
                                    xpix = xrow[ow * sw + kw * dw]
                                    if multiplier == 1:
                                        for j in range(k_count):
                                            acc[tap, j] += gpix[k0 + j] * xpix[k0 + j]
                                    else:
                                        for j in range(k_count):
                                            acc[tap, j] += gpix[k0 + j] * xpix[(k0 + j) // multiplier]
                                    tap += 1
        for tap in range(taps):
            kd = tap // (kh_n * kw_n)
            kh = (tap // kw_n) % kh_n
            kw = tap % kw_n
            for j in range(k_count):
                out[k0 + j, kd, kh, kw, 0] = acc[tap, j]


def _depthwise(spec):
    if spec.in_per_group != 1:
        return f"needs one input channel per group (groups == in_channels), got {spec.in_per_group}"
    return None


@register("conv_weight_grad", "cpu", "depthwise", supports=_depthwise,
          note="channels along the vector, every tap per task; fixed-order sums, no atomics")
def conv_weight_grad_depthwise(spec, x, grad_output):
    xp, g5, dtype = weight_grad_operands(spec, x, grad_output)
    geom = geometry3(spec)
    out = np.empty((spec.out_channels, *geom.kernel, 1), dtype)
    depthwise_weight_grad_ndhwc(xp, g5, out, *geom.stride, *geom.dilation, spec.out_per_group, CHANNEL_BLOCK)
    return weight_from_working(out, spec)
