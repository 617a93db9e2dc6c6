"""Max pooling's gradient on the CPU (window and adaptive): each output's gradient goes to
the input element the forward's index names, so no window is searched again and no
element tests the outputs that could reach it.

A task owns elements no other task writes: one (n, c) plane (channels-first) or one
image's block of up to ``LANES`` channels (channels-last). It zeroes them, then walks its
outputs in the order in which the gather form (gather_grad) visits an element's windows:
od, then oh, each in its reach list's order (tap order for sliding windows, which is
descending output order; ascending for adaptive cells), then ow ascending. So every sum
is the gather form's, bitwise, on any thread count. An index outside the plane (-1: a
window that chose nothing) adds nothing, and none is read or written past its plane.
"""

from __future__ import annotations

from numba import prange

from .._jit import parallel_kernel

# Channels per channels-last task: a 64-byte line of float32 gradients.
LANES = 16


@parallel_kernel
def max_pool_grad_scatter(g, idx, gi, cl, n_img, c_n, plane, od_n, oh_n, ow_n, descending):
    """gi (flat, the input's 5-D logical shape) = the gradient routed through ``idx``."""
    zero = gi.dtype.type(0)
    rows = od_n * oh_n
    outs = rows * ow_n
    blocks = (c_n + LANES - 1) // LANES if cl else c_n
    for t in prange(n_img * blocks):
        if cl:
            n = t // blocks
            c0 = (t % blocks) * LANES
            width = min(LANES, c_n - c0)
            base_e = n * plane * c_n + c0
            base_q = n * outs * c_n + c0
            for s in range(plane):
                gi[base_e + s * c_n:base_e + s * c_n + width] = zero
            for i in range(rows):
                r = rows - 1 - i if descending else i
                for ow in range(ow_n):
                    q = base_q + (r * ow_n + ow) * c_n
                    for m in range(width):
                        e = idx[q + m]
                        if e >= 0 and e < plane:
                            gi[base_e + e * c_n + m] += g[q + m]
        else:
            base_e = t * plane
            base_q = t * outs
            gi[base_e:base_e + plane] = zero
            for i in range(rows):
                r = rows - 1 - i if descending else i
                q = base_q + r * ow_n
                for ow in range(ow_n):
                    e = idx[q + ow]
                    if e >= 0 and e < plane:
                        gi[base_e + e] += g[q + ow]
