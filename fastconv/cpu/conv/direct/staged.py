"""The direct kernel with channels-first output staged per segment: for planes of one output
row (1-D layers: TCN's 64-channel rows of 16000).

The plain kernel's tiles store each of a block's V channels straight into its plane, a
run of the tile's pixels: V write streams, each a line every tile or two, which on long rows
miss the caches and outrun the hardware prefetcher (Ice Lake-SP, one thread, 64 -> 64
channels, width 16000: the kernel 1.36x its channels-last time; width 1600, whose output
stays in L2: 1.03x). Here a task's tiles store a segment into a small channels-first
buffer (rows, V, segment width) in L1 instead, and the task then copies each channel's
run of the segment out: whole lines, one stream at a time. Same tiles, same sums, bitwise.
Measured (one thread, width 16000, the three kernels alternating in one process, host
loaded): plain 4.8-6.1 ms, staged 3.7-5.3, the channels-last kernel 3.5-5.0. Segments of 16
or 32 tiles instead of 8 measured within the noise of 8.
"""

from __future__ import annotations

import functools

from numba import prange, types

from ...._threads import balanced, restore
from ....kernels.inline import inline_helper
from ..._jit import specialised_kernel
from ...vector.aligned import aligned_empty
from ...vector.fma_tile import REVISION, fma_tile, shapes_literal
from .tiled import TileShape, segment_tiles, task_block, tile_origin


@inline_helper
def segment_span(s, group_start, oh_n, tile_row, tile_col, tile_sel, widths):
    """Segment s's first output row, tile range, first column, columns and rows covered."""
    base, t0, t1 = segment_tiles(s, group_start, oh_n)
    c0, c1, rows = tile_col[t0], tile_col[t0], 0
    for i in range(t0, t1):
        c0 = min(c0, tile_col[i])
        c1 = max(c1, tile_col[i] + widths[tile_sel[i]])
        rows = max(rows, tile_row[i] + 1)
    return base, t0, t1, c0, c1 - c0, rows


@functools.cache
def staged_kernel(shape: TileShape):
    """direct_kernel's loop (tiled.direct_kernel: same arguments but ``chan_last`` and
    ``pos``) for channels-first output, each segment through a buffer in L1."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION
    widths_list = tuple(s for _, s in shape.shapes)

    def kernel(x, w, xoff, bias, out, tile_row, tile_col, tile_sel, group_start, n_img, od_n, oh_n, ow_n, img_pitch,
               d_pitch, h_pitch, g_pitch, kb_n, splits, act):
        widths = widths_list
        groups, kg = w.shape[0], w.shape[1]
        plane = od_n * oh_n * ow_n
        k_n = groups * kg
        previous = balanced(groups * kb_n * splits)
        for t in prange(groups * kb_n * splits):
            blk, g, k0, kvalid, first, last, wblk = task_block(t, w, xoff.size, group_start[6], kb_n, splits, v,
                                                               lanes, revision)
            size = 0
            for s in range(first, last):
                _, _, _, _, span, rows = segment_span(s, group_start, oh_n, tile_row, tile_col, tile_sel, widths)
                size = max(size, span * rows)
            stage = aligned_empty(max(size, 1) * v, out.dtype, lanes)
            for n in range(n_img):
                for s in range(first, last):
                    base, t0, t1, c0, span, rows = segment_span(s, group_start, oh_n, tile_row, tile_col, tile_sel,
                                                                widths)
                    for i in range(t0, t1):
                        row = base + tile_row[i]
                        col = tile_col[i]
                        xbase = tile_origin(row, n, g, oh_n, img_pitch, d_pitch, h_pitch, g_pitch) + col
                        fma_tile(x, wblk, xoff, bias, stage, xbase, h_pitch, 0, blk * v,
                                 tile_row[i] * v * span + col - c0, v * span, 1, span, kvalid, act, tile_sel[i],
                                 shapes, v, lanes, revision)
                    for r in range(rows):
                        for k in range(kvalid):
                            src = stage[(r * v + k) * span:(r * v + k + 1) * span]
                            at = (n * k_n + k0 + k) * plane + (base + r) * ow_n + c0
                            dst = out[at:at + span]
                            for j in range(span):
                                dst[j] = src[j]
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    weights = types.Array(dt, 3, "C", readonly=True)
    sig = (flat, weights, ints, flat, flat, ints, ints, ints, ints) + (types.int64,) * 10 + (types.int64,)
    return specialised_kernel(kernel, f"conv_direct_staged_{shape.name}", [sig])
