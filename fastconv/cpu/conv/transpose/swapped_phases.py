"""Every phase of a tiled transposed conv (tiled.py) in one parallel call whose tasks pack each
phase's weights straight from the transposed weight: no forward weight is built first.

A task owns one block of V output channels and one range of each phase's segments. It packs its
block once, every tap of the transposed weight (C, K, T) with channel axes swapped
(vector.swapped_pack: step c * T + t holds tap t of reduction channel c), as the stride-1 input
gradient does; then runs the phases' tiles by fma_tile_indexed, whose step r reads its V weights
at woff[r] of that block (the phase's taps only), each output written at its interleaved place of
the channels-last result, ``k_pitch`` = s_w * K elements from one output pixel of the phase to
its next. ``images_outer``: image by image, every phase of an image before the next (its packed
input stays in L2 while every phase reads it), else phase by phase, every image of a phase (its
weights stay in L2): tiled.L2_BLOCK_BYTES chooses. So the weight is read once per
task, as by the forward conv, where building the phases' forward weights first
(phase_split.phase_weights) reads and writes the whole weight once more, and packing per phase
would transpose every tap once per phase (phase-major blocks, each phase's steps contiguous, measured
DCGAN's up1 0.87 of the time but ResNet-50's l4 3x3 stride-2 input gradient 1.4-1.6x: four passes
over a 9 MB weight for a 7x7 plane).

Per phase p: its input offset x_at[p] within a packed image, output offset out_at[p], reduction
offsets xoff[at[p]:at[p + 1]] and weight offsets woff[at[p]:at[p + 1]], tiles tile_*[tile_at[p]:]
with segment layout group_start[p] (conv.direct.tiled.PlaneTiles).
"""

from __future__ import annotations

import functools

from numba import prange, types

from ...._threads import balanced, restore
from ..._jit import specialised_kernel
from ...vector.aligned import aligned_empty
from ...vector.fma_tile import REVISION, fma_tile_indexed, shapes_literal
from ...vector.swapped_pack import REVISION as SWAPPED_REVISION
from ...vector.swapped_pack import pack_swapped_block
from ..direct.tiled import TileShape, segment_tiles, tile_origin


@functools.cache
def swapped_phases_kernel(shape: TileShape):
    """The kernel for one tile shape, compiled (or loaded from Numba's cache) on first request."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION
    swapped_revision = SWAPPED_REVISION

    def kernel(x, w, xoff, woff, at, taps, bias, out, x_at, out_at, tile_row, tile_col, tile_sel, tile_at, group_start,
               n_img, od_n, oh_n, ow_n, img_pitch, d_pitch, h_pitch, k_pitch, kb_n, splits, images_outer, act):
        kin, kg = w.shape[0], w.shape[1]
        plane = od_n * oh_n * ow_n
        previous = balanced(kb_n * splits)
        for t in prange(kb_n * splits):
            kb = t % kb_n
            split = t // kb_n
            k0 = kb * v
            kvalid = min(v, kg - k0)
            wblk = aligned_empty(kin * taps.size * v, w.dtype, lanes)
            pack_swapped_block(w, 0, kb, kin, taps, taps.size, wblk, v, lanes, swapped_revision)
            for q in range(n_img * x_at.size):
                n, p = (q // x_at.size, q % x_at.size) if images_outer else (q % n_img, q // n_img)
                steps = xoff[at[p]:at[p + 1]]
                wsteps = woff[at[p]:at[p + 1]]
                layout = group_start[p]
                first = split * layout[6] // splits
                last = (split + 1) * layout[6] // splits
                for s in range(first, last):
                    base, t0, t1 = segment_tiles(s, layout, oh_n)
                    for i in range(tile_at[p] + t0, tile_at[p] + t1):
                        row = base + tile_row[i]
                        col = tile_col[i]
                        xbase = x_at[p] + tile_origin(row, n, 0, oh_n, img_pitch, d_pitch, h_pitch, 0) + col
                        obase = out_at[p] + (n * plane + row * ow_n + col) * k_pitch + k0
                        fma_tile_indexed(x, wblk, steps, bias, out, xbase, h_pitch, 0, k0, obase, ow_n * k_pitch,
                                         k_pitch, 1, kvalid, act, wsteps, tile_sel[i], shapes, v, lanes, revision)
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    ints2 = types.Array(types.int64, 2, "C")
    weights = types.Array(dt, 3, "C", readonly=True)
    sig = ((flat, weights, ints, ints, ints, ints, flat, flat, ints, ints, ints, ints, ints, ints, ints2)
           + (types.int64,) * 12)
    return specialised_kernel(kernel, f"conv_transpose_swapped_phases_{shape.name}", [sig])
