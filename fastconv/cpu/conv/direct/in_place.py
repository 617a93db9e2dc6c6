"""The direct kernel over channels-last input read in place (or one padded copy of it),
for 2-D layers whose channels fill whole vectors: the tile of vector/channels_last_tile.py,
its channel count, pixel stride and tap spacing compiled in, sums taps outer and channels
inner.

Which layers (:func:`in_place_plan`, from the spec alone, so that every cut of a call sums
a pixel in the same order): channels-last float32 (or float16, computed in float32), one
group, input channels a multiple of the vector's lanes, kernel at most MAX_KERNEL along each
dim, not dilated (res.d2, 256 channels at dilation 2, measured no faster: 7.61-7.87 ms against
7.64-7.69, one thread), not a transposed-weight call. Padding (any mode) comes from one padded channels-last
copy of each chunk; without padding, C-contiguous float32 input is read as it is.

The tiling of the output plane is the plain kernel's (tiled.plane_tiles); the weights are
packed taps outer first (vector.fma_tile.pack_weight_block_taps_outer), a task per block.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from numba import prange, types

from ...._threads import balanced, restore
from ....kernels.padding_index import source_index
from ..._jit import specialised_kernel
from ...vector.aligned import aligned_empty
from ...vector.channels_last_tile import REVISION as TILE_REVISION
from ...vector.channels_last_tile import fma_tile_channels_last, geometry_literal
from ...vector.fma_tile import REVISION, pack_weight_block_taps_outer, shapes_literal
from .tiled import TileShape, segment_tiles

# Weights up to this size (all blocks) run every block on a segment before the next segment: its input is read
# from L2 by all but the first (std.c128.56 channels-last, 590 KB of weights, one thread, alternating calls:
# 8.71 ms against 9.28 block by block); larger ones block by block (res.d2, 2.4 MB: 7.61 against 8.51).
BLOCKS_INNER_BYTES = 768 << 10
MAX_KERNEL = 3  # larger windows keep the row-planar kernel (one compile per channel count and geometry is enough)


class InPlacePlan(NamedTuple):
    geometry: str  # the tile's literal: channels, pixel stride, taps along W, their spacing
    padded: tuple  # (Hp, Wp): the input the kernel reads (the user's when pads is False)
    pads: bool  # the input needs a padded copy
    pitches: tuple  # image, output row step, output column step, tap row step (in elements)
    kh_n: int
    maps: tuple  # the padded copy's source indices along D, H and W (kernels.padding_index)


def in_place_plan(spec, geom, shape: TileShape) -> InPlacePlan | None:
    """The plan of a layer this kernel runs (see the module docstring), else None."""
    if not (spec.channels_last and spec.nd == 2 and spec.groups == 1 and shape.dtype == "float32"):
        return None
    c = spec.in_channels
    kh_n, kw_n = geom.kernel[1:]
    if c % shape.lanes or max(kh_n, kw_n) > MAX_KERNEL or max(geom.dilation) > 1:
        return None
    (_, sh, sw), (_, dh, dw) = geom.stride, geom.dilation
    hp, wp = (n + b + e for n, (b, e) in zip(geom.in_size[1:], geom.pads[1:]))
    pads = any(b or e for b, e in geom.pads[1:])
    row = wp * c
    maps = tuple(source_index(n, b, e, spec.padding_mode) for n, (b, e) in zip(geom.in_size, geom.pads))
    return InPlacePlan(geometry_literal(c, sw * c, kw_n, dw * c), (hp, wp), pads,
                       (hp * row, sh * row, sw * c, dh * row), kh_n, maps)


@functools.cache
def in_place_kernel(shape: TileShape, geometry: str):
    """The parallel kernel for one tile shape and geometry literal, compiled (or loaded from
    Numba's cache) on first request, e.g. ``conv_direct_in_place_p14v32_f32_128_128_3_128_1``."""
    v, lanes, shapes = shape.v, shape.lanes, shapes_literal(shape.shapes)
    revision, tile_revision = REVISION, TILE_REVISION
    kw_n = int(geometry.split(",")[2])

    def kernel(x, w, bias, out, tile_row, tile_col, tile_sel, group_start, n_img, oh_n, ow_n, img_pitch, h_pitch,
               w_pitch, tap_row, kh_n, kb_n, splits, act, blocks_inner):
        """x (N, Hp, Wp, C) flat, w (1, K, C * taps), the output channels-last. The weights are
        packed first, every block of V output channels (a task per block); then a task per
        1/splits of the segments, with blocks_inner every block in turn on each segment, else a
        task per block and 1/splits of the segments (see BLOCKS_INNER_BYTES)."""
        kg, steps = w.shape[1], w.shape[2]
        plane = oh_n * ow_n
        taps = kh_n * kw_n
        n_seg = group_start[6]
        wall = aligned_empty(kb_n * steps * v, w.dtype, lanes)
        previous = balanced(kb_n)
        for kb in prange(kb_n):
            pack_weight_block_taps_outer(w, 0, kb, taps, wall[kb * steps * v:(kb + 1) * steps * v], v, lanes,
                                         revision)
        restore(previous)
        tasks = splits if blocks_inner else kb_n * splits
        previous = balanced(tasks)
        for t in prange(tasks):
            split = t if blocks_inner else t // kb_n
            kb0 = 0 if blocks_inner else t - split * kb_n
            for n in range(n_img):
                for s in range(split * n_seg // splits, (split + 1) * n_seg // splits):
                    base, t0, t1 = segment_tiles(s, group_start, oh_n)
                    for kb in range(kb0, kb_n if blocks_inner else kb0 + 1):
                        k0 = kb * v
                        kvalid = min(v, kg - k0)
                        wblk = wall[kb * steps * v:(kb + 1) * steps * v]
                        for i in range(t0, t1):
                            row = base + tile_row[i]
                            col = tile_col[i]
                            xbase = n * img_pitch + row * h_pitch + col * w_pitch
                            obase = (n * plane + row * ow_n + col) * kg + k0
                            fma_tile_channels_last(x, wblk, bias, out, xbase, h_pitch, tap_row, kh_n, 0, k0,
                                                   obase, ow_n * kg, kg, 1, kvalid, act, tile_sel[i], shapes, v,
                                                   lanes, geometry, tile_revision)
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    weights = types.Array(dt, 3, "C", readonly=True)
    sig = (flat, weights, flat, flat, ints, ints, ints, ints) + (types.int64,) * 11 + (types.boolean,)
    name = f"conv_direct_in_place_{shape.name}_{geometry.replace(',', '_')}"
    return specialised_kernel(kernel, name, [sig])
