"""spatial_pyramid_pool's input gradient on the GPU, in gather form over the levels.

One thread per input element (grid-stride, thread order following the user's layout, as
pool_grad.py). Each visits the levels in order and, within a level, the adaptive cells
that contain it (the per-dim CSR lists of kernels.pool_reach, one row per level),
reading its cells' gradients straight from the pyramid's (N, C * sum(l ** nd))
grad_output: the average's share (divided by the cell's size), or the whole gradient
where the forward's max index is this element. A level's sum is added to the element's
total in level order, as the CPU adds its levels' gradients. One kernel, no per-level
arrays, no atomics: the same bits on every run. float16 sums in float32 and rounds once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..kernels.element_index import element_position
from ..kernels.geometry import lift3
from ..kernels.pool_reach import adaptive_reach
from . import streams
from ._jit import SUFFIX, WORK, Kernel, array, elementwise, i64, layout_name, specialised
from .pad import contiguous


@specialised
def pyramid_grad_kernel(routed: bool, dtype: str, channels_last: bool) -> Kernel:
    """``routed``: max mode (gradient to the forward's index), else the average's share."""
    work = WORK[dtype]
    cl = channels_last

    def kernel_fn(g, idx, gi, c_n, in_d, in_h, in_w, sizes, cols, ptr_d, outs_d, cnt_d, ptr_h, outs_h, cnt_h,
                  ptr_w, outs_w, cnt_w):
        n_img = g.shape[0]
        total = n_img * c_n * in_d * in_h * in_w
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            n, c, i_d, ih, iw = element_position(i, cl, c_n, in_d, in_h, in_w)
            flat = (i_d * in_h + ih) * in_w + iw
            acc = work(0)
            for lv in range(sizes.shape[0]):
                oh_n = sizes[lv, 1]
                ow_n = sizes[lv, 2]
                base = cols[lv] + c * sizes[lv, 0] * oh_n * ow_n
                part = work(0)
                for a in range(ptr_d[lv, i_d], ptr_d[lv, i_d + 1]):
                    od = outs_d[lv, a]
                    for b in range(ptr_h[lv, ih], ptr_h[lv, ih + 1]):
                        oh = outs_h[lv, b]
                        for f in range(ptr_w[lv, iw], ptr_w[lv, iw + 1]):
                            ow = outs_w[lv, f]
                            q = base + (od * oh_n + oh) * ow_n + ow
                            if routed:
                                if idx[n, q] == flat:
                                    part += work(g[n, q])
                            else:
                                part += work(g[n, q]) / work(cnt_d[lv, od] * cnt_h[lv, oh] * cnt_w[lv, ow])
                acc += part
            gi[i] = acc
            i += step

    argtypes = ((array(dtype, 2), array(i64, 2), array(dtype, 1)) + (i64,) * 4 + (array(i64, 2), array(i64, 1))
                + (array(i64, 2),) * 9)
    name = f"pyramid_{'max' if routed else 'avg'}_pool_grad_{layout_name(3, cl)}_{SUFFIX[dtype]}"
    return Kernel(name, kernel_fn, argtypes, 256, 0)


def pyramid_launch(mode: str, dtype: str, channels_last: bool, elements: int):
    return elementwise(pyramid_grad_kernel(mode == "max", dtype, channels_last), elements, "pyramid pool gradient")


def level_tables(in_size, levels) -> tuple:
    """The levels' cells lifted to 3-D and their reach lists: (sizes (L, 3), cols (L,): the
    cells before each level's, then per dim d, h, w: ptr, outs, count as (L, *) arrays, rows
    zero-padded to the longest level)."""
    in3 = lift3(tuple(in_size), 1)
    nd = len(in_size)
    sizes = np.array([lift3((int(lv),) * nd, 1) for lv in levels], np.int64)
    cells = [math.prod(s) for s in sizes]
    cols = np.array([sum(cells[:i]) for i in range(len(cells))], np.int64)
    tables = []
    for axis in range(3):
        reaches = [adaptive_reach(in3[axis], int(s[axis])) for s in sizes]
        for field in range(3):
            rows = [r[field] for r in reaches]
            table = np.zeros((len(rows), max(max(len(a) for a in rows), 1)), np.int64)
            for row, a in zip(table, rows):
                row[:len(a)] = a
            tables.append(table)
    return sizes, cols, tables


def pyramid_grad(grad_output, indices, in_shape, levels, mode: str, dtype: str, channels_last: bool):
    """The input gradient (device array of ``in_shape``, user layout) of spatial_pyramid_pool
    from its grad_output (N, C * sum(l ** nd)) and, for max mode, the levels' forward indices
    side by side in the same layout (int64)."""
    spatial = in_shape[1:-1] if channels_last else in_shape[2:]
    channels = in_shape[-1] if channels_last else in_shape[1]
    gi = streams.device_array(math.prod(in_shape), np.dtype(dtype))
    if gi.size:
        sizes, cols, tables = level_tables(spatial, levels)
        cols = cols * channels  # each level's block is C cells wide per channel
        idx = contiguous(indices) if indices is not None else streams.device_array((1, 1), np.int64)
        in3 = lift3(tuple(spatial), 1)
        pyramid_launch(mode, dtype, channels_last, gi.size)(
            contiguous(grad_output), idx, gi, channels, *in3, streams.to_device(sizes), streams.to_device(cols),
            *(streams.to_device(t) for t in tables))
    return gi.reshape(*in_shape)
