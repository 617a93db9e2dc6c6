"""Weight gradient of any convolution on the CPU (algo "direct").

One task per (group, block of out-channels, tap): it owns those weights' gradients and
sums over batch and output pixels in a fixed order (n, od, oh, ow), the in-channels of
its group along the vector. Tasks never share an output, so there are no atomics and
the result is bitwise the same for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....dispatch import register
from ....kernels.geometry import geometry3
from ..._jit import parallel_kernel
from ..depthwise.common import u
from .operands import weight_from_working, weight_grad_operands

# Out-channels per task: each pixel's in-channel row is loaded once for this many
# multiply-adds, and the task's gradient rows (OUT_BLOCK x Cg) stay in L1. Measured on one
# thread (8x64x28x28, 3x3, 64 out-channels, float32): 1: 41 ms, 4: 15 ms, 8: 11 ms.
OUT_BLOCK = 8


@parallel_kernel
def weight_grad_ndhwc(xp, g, out, groups, sd, sh, sw, dd, dh, dw, out_block):
    """out (K, KD, KH, KW, Cg) = sum over n and output pixels of g (N, OD, OH, OW, K) times
    the padded input xp (N, Dp, Hp, Wp, C) at the tap's position. Indexes the arrays flat
    (unsigned, see depthwise.common.u) so the in-channel loop vectorizes."""
    n_img, od_n, oh_n, ow_n, k_n = g.shape
    dp, hp, wp, c_n = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    kd_n, kh_n, kw_n, cg = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    xf = xp.reshape(-1)
    gf = g.reshape(-1)
    of = out.reshape(-1)
    kg = k_n // groups
    blocks = (kg + out_block - 1) // out_block
    taps = kd_n * kh_n * kw_n
    for task in prange(groups * blocks * taps):
        grp = task // (blocks * taps)
        r = task - grp * (blocks * taps)
        blk = r // taps
        tap = r - blk * taps
        kd = tap // (kh_n * kw_n)
        kh = (tap // kw_n) % kh_n
        kw = tap % kw_n
        k0 = grp * kg + blk * out_block
        k_count = min(out_block, grp * kg + kg - k0)
        c0 = grp * cg
        acc = np.zeros(out_block * cg, out.dtype)
        for n in range(n_img):
            for od in range(od_n):
                for oh in range(oh_n):
                    xrow = (((n * dp + od * sd + kd * dd) * hp + oh * sh + kh * dh) * wp + kw * dw) * c_n + c0
                    grow = ((n * od_n + od) * oh_n + oh) * ow_n * k_n + k0
                    for ow in range(ow_n):
                        xb = xrow + ow * sw * c_n
                        gb = grow + ow * k_n
                        for j in range(k_count):
                            gv = gf[u(gb + j)]
                            ab = j * cg
                            for c in range(cg):
                                acc[u(ab + c)] += gv * xf[u(xb + c)]
        for j in range(k_count):
            ob = (((k0 + j) * kd_n + kd) * kh_n + kh) * kw_n + kw
            for c in range(cg):
                of[u(ob * cg + c)] = acc[u(j * cg + c)]


@register("conv_weight_grad", "cpu", "direct",
          note="tasks own (group, out-channel block, tap) weights; fixed-order sums, no atomics")
def conv_weight_grad_direct(spec, x, grad_output):
    xp, g5, dtype = weight_grad_operands(spec, x, grad_output)
    geom = geometry3(spec)
    out = np.empty((spec.out_channels, *geom.kernel, spec.in_per_group), dtype)
    weight_grad_ndhwc(xp, g5, out, spec.groups, *geom.stride, *geom.dilation, OUT_BLOCK)
    return weight_from_working(out, spec)
