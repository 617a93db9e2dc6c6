"""The direct kernel restricted, per region of the output, to the taps that read the input,
reading channels-last input in place.

With zeros padding and a large dilation many (output, tap) pairs read padding (DeepLab's
ASPP, 3x3 at rate 18 on 33x33: 60%). Per spatial dim the outputs fall into bands whose
taps inside the input are one range (conv.taps.tap_bands, unmerged); a region is a product
of bands (conv.taps.regions), a box of outputs that all read the same box of taps, every
one of them inside the input. So no padding is read and nothing is packed: the tiles read
the contiguous channels-last input (the user's, or one copy of it) with their pixels C *
stride_w apart (vector.fma_tile.fma_tile_strided_indexed_rolled). Each region is tiled as a
plane of its own (tiled.plane_tiles) and its tiles run only the reduction steps of its box:
their input offsets (xoff) and their rows of the task's packed weight block (woff). A region
whose taps all read padding runs one step on a zero (its bias). A taps-outer layer's tasks
pack their block taps outer too (vector.fma_tile.pack_weight_block_taps_outer), so that a
tile reads its weights in order: packed channels outer, consecutive steps read rows taps x V
elements apart, across a new 4 KiB page every few steps (ASPP at rate 6, one thread: 7% of
the call).

The order of a pixel's sum must not depend on how a call is cut (Dask blocks, workspace
chunks): a block without padding, or one whose own plan differs from the whole array's,
must add the same products in the same order. Two orders keep that, each from the spec's
kernel and dilation alone (:func:`taps_outer`):

- layers dilated TAPS_OUTER_DILATION or more (any dim; windows of two or more dims) always run this kernel, taps outer
  and channels inner (a step's pixels read the next element of the same cache lines as the
  step before): with zeros padding over the regions, with any other padding (or a NaN or
  inf weight, which must meet the padded zeros: 0 * inf is NaN) over one padded
  channels-last copy as a single region of every tap (run.py). A pixel's sum is its taps
  inside the input (or every tap), taps outer, whichever regions or blocks it falls in;
- other layers run it, channels outer, only where the tile cost model (tiled.plane_cost,
  per step, times the steps) puts it under GAIN of the plain kernel's: a region's sums are
  then the plain kernel's without the zero products of its padding taps, bitwise, so a
  call that takes the plain kernel instead agrees.

Measured single-threaded (process CPU time, 1x33x33x512 -> 256 and 1x28x28x256 -> 256
float32, channels-last / channels-first, ms): rates 18 / 12 / 6 plain 35.8 / 30.6 / 20.6,
channels outer 8.2 / 15.4 / 22.8, taps outer 7.2 / 10.0 / 12.6 (channels-first 8.8 / 11.8 /
15.6, its copy included); rate 4: plain 5.9 / 6.0, taps outer 4.8 / 5.7; rate 2: plain 5.9 /
6.0, taps outer 5.3 / 6.4, and through conv2d (interleaved processes, TAPS_OUTER_DILATION 2
against 4) 1.02 / 1.13x the plain kernel's time, so rate 2 keeps it. Every tap over a padded copy
(other padding modes): 7.1 at rates 2 and 4 (the plain kernel 5.9-6.0), 19.5-21.5 on ASPP's
(plain 20.6-36.5). Packing the input row-planar without its padding for the plain 14-pixel
tiles (fma_tile_indexed) took 11-25% longer on ASPP's layers.

Segments run in the order of their first output row modulo the dilation (per stride):
output rows dilation apart read the same input rows through different taps, often from
different regions (ASPP at rate 18: rows 0 and 18 both read input rows 0 and 18), so the
second finds them in cache.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import prange, types

from ...._threads import balanced, restore
from ....kernels.inline import inline_helper
from ..._jit import specialised_kernel
from ...vector.aligned import aligned_empty
from ...vector.fma_tile import REVISION, fma_tile_strided_indexed_rolled, pack_weight_block_taps_outer, shapes_literal
from ..taps import regions
from .pointwise import strided_shape
from .tiled import MAX_ROWS, TileShape, plane_cost, plane_tiles, segment_tiles, task_place, tile_origin

# Layers dilated less than TAPS_OUTER_DILATION: banded (channels outer) when its modelled cost
# is under this share of the whole plane's (regions' narrow tiles, the extra index loads and the
# strided reads are not all in the model; 0.8 took ASPP's rate 6 channels outer, 1.15x the plain
# kernel's time).
GAIN = 0.6
# Layers dilated this much or more (any dim) always run this kernel, taps outer (see above).
TAPS_OUTER_DILATION = 4

# Columns of BandedPlan.regions
OD0, OH0, OW0, ROH, STEP0, STEP1, TILE0, LAY0, LAY1, EMPTY, FIELDS = range(11)


class BandedPlan(NamedTuple):
    shape: TileShape  # banded_shape of the plain kernel's
    regions: np.ndarray  # (regions, FIELDS): origin, rows per depth, steps, tiles, layout, no taps
    xoff: np.ndarray  # every region's input offsets, concatenated
    woff: np.ndarray  # their weight rows (packed_row * V) in the task's packed block
    taps: int  # the block packed taps outer (pack_weight_block_taps_outer's T): every tap, or 1 (channels outer)
    row: np.ndarray  # every region's PlaneTiles, concatenated (tile indices relative to TILE0)
    col: np.ndarray
    sel: np.ndarray
    layouts: np.ndarray  # their group_start arrays
    order: np.ndarray  # (segments, 2): the region and its own segment index of each segment, in run order
    pitches: tuple  # in the contiguous (N, D, H, W, C) input: image, output depth and row steps, group, pixel step


def zero_padded(spec) -> bool:
    return spec.padding_mode == "zeros" or (spec.padding_mode == "constant" and spec.padding_value == 0)


def taps_outer(geom) -> bool:
    """Whether a layer's sums run taps outer and channels inner, always in this kernel: a
    window of two or more dims dilated TAPS_OUTER_DILATION or more. A 1-D window (TCN's
    dilated causal convs) keeps the plain kernel's order and plan: forced onto this kernel,
    TCN's 64-channel layers at rates 4-256 took 1.6-1.7x PyTorch's time against 1.0-1.1
    (the committed quiet run at 4a971f1 against the one before)."""
    return sum(k > 1 for k in geom.kernel) >= 2 and max(geom.dilation) >= TAPS_OUTER_DILATION


def _region_steps(taps, kernel, cg, outer: bool):
    """Reduction steps (c, kd, kh, kw flattened, the packed weight's order) of a box of taps,
    taps outer and channels inner, or in the plain kernel's order (channels outer)."""
    index = np.arange(cg * int(np.prod(kernel))).reshape(cg, *kernel)
    box = index[:, slice(*taps[0]), slice(*taps[1]), slice(*taps[2])]
    return (np.moveaxis(box, 0, -1) if outer else box).reshape(-1)


def packed_row(steps: np.ndarray, cg: int, taps: int) -> np.ndarray:
    """Where steps (c, kd, kh, kw flattened) lie in a block packed with T = ``taps`` by
    pack_weight_block_taps_outer: (tap, c) flattened (T = 1: the steps themselves)."""
    return steps % taps * cg + steps // taps


def channels_last_offsets(geom, channels: int, cg: int) -> np.ndarray:
    """Where step (c, kd, kh, kw) reads in contiguous channels-last input, relative to channel
    0 of the tile's group at its first output's tap-0 position with no padding (negative
    where the tap lies before that)."""
    (kd_n, kh_n, kw_n), (dd, dh, dw) = geom.kernel, geom.dilation
    _, h_n, w_n = geom.in_size
    pd, ph, pw = (p[0] for p in geom.pads)
    kd = np.arange(kd_n)[None, :, None, None] * dd - pd
    kh = np.arange(kh_n)[None, None, :, None] * dh - ph
    kw = np.arange(kw_n)[None, None, None, :] * dw - pw
    pixel = (kd * h_n + kh) * w_n + kw
    return np.ascontiguousarray((pixel * channels + np.arange(cg)[:, None, None, None]).reshape(-1), np.int64)


def banded_shape(shape: TileShape) -> TileShape:
    """pointwise.strided_shape's one-row tiles (a strided tile's broadcasts are all live at
    once: wider ones spill) and tiles of several rows with as many pixels."""
    one_row = strided_shape(shape)
    p = one_row.pixels
    rows = [(min(p // s, MAX_ROWS), s) for s in sorted({p // 2, 4, 3, 2, 1}, reverse=True) if s <= p // 2]
    return one_row._replace(shapes=tuple(dict.fromkeys(one_row.shapes + tuple(rows))))


def _period(dilation: int, stride: int) -> int:
    """Output rows whose taps reach the same input rows: this far apart (1: none)."""
    return dilation // stride if dilation % stride == 0 else 1


def banded_plan(geom, channels: int, cg: int, shape: TileShape, streams_l2: bool) -> BandedPlan | None:
    """The output plane in regions of exact bands tiled in banded_shape(shape): always for a
    taps_outer geometry, else None when that does not beat GAIN of the plain kernel's
    modelled cost (in ``shape``)."""
    boxes = list(regions(geom, 1))
    outer = taps_outer(geom)
    if len(boxes) == 1 and not outer:
        return None
    plain, shape = shape, banded_shape(shape)
    steps = [_region_steps(taps, geom.kernel, cg, outer) for _, taps in boxes]
    cost = sum(plane_cost(b[1] - b[0], b[3] - b[2], b[5] - b[4], shape, streams_l2) * max(s.size, 1)
               for (b, _), s in zip(boxes, steps))
    if not outer and cost >= GAIN * plane_cost(*geom.out_size, plain, streams_l2) * cg * int(np.prod(geom.kernel)):
        return None
    xoff_all = channels_last_offsets(geom, channels, cg)
    taps = int(np.prod(geom.kernel)) if outer else 1
    table, xoffs, woffs, rows, cols, sels, layouts, keys = [], [], [], [], [], [], [], []
    pd, ph = (_period(d, st) for d, st in zip(geom.dilation[:2], geom.stride[:2]))
    step = tile = lay = 0
    for q, ((box, _), s) in enumerate(zip(boxes, steps)):
        roh = box[3] - box[2]
        tiles = plane_tiles(box[1] - box[0], roh, box[5] - box[4], shape, streams_l2)
        t_row, t_col, _, start = tiles.expand(roh)
        for i in range(tiles.segments):  # by the first tile of each segment
            od, oh = box[0] + t_row[start[i]] // roh, box[2] + t_row[start[i]] % roh
            keys.append((od % pd, oh % ph, od, oh, box[4] + t_col[start[i]], q, i))
        n = max(s.size, 1)  # no taps: one step on a zero
        table.append([box[0], box[2], box[4], roh, step, step + n, tile, lay, lay + tiles.group_start.size,
                      s.size == 0])
        xoffs.append(xoff_all[s] if s.size else np.zeros(1, np.int64))
        woffs.append(packed_row(s, cg, taps) * shape.v if s.size else np.zeros(1, np.int64))
        step, tile, lay = step + n, tile + tiles.row.size, lay + tiles.group_start.size
        rows.append(tiles.row)
        cols.append(tiles.col)
        sels.append(tiles.sel)
        layouts.append(tiles.group_start)
    order = np.array([k[-2:] for k in sorted(keys)], np.int64).reshape(-1, 2)
    d_n, h_n, w_n = geom.in_size
    pixel = w_n * channels
    pitches = (d_n * h_n * pixel, geom.stride[0] * h_n * pixel, geom.stride[1] * pixel, cg,
               geom.stride[2] * channels)
    xoff, woff, row, col, sel, layout = (np.concatenate(a).astype(np.int64)
                                         for a in (xoffs, woffs, rows, cols, sels, layouts))
    return BandedPlan(shape, np.array(table, np.int64), xoff, woff, taps, row, col, sel, layout, order, pitches)


@inline_helper
def _task_block(t, w, taps, n_segments, kb_n, splits, v, lanes, revision):
    """tiled.task_block with the weight block packed for BandedPlan.taps."""
    blk, g, kb, k0, kvalid, first, last = task_place(t, w.shape[0], w.shape[1], n_segments, kb_n, splits, v)
    wblk = aligned_empty(w.shape[2] * v, w.dtype, lanes)
    pack_weight_block_taps_outer(w, g, kb, taps, wblk, v, lanes, revision)
    return blk, g, k0, kvalid, first, last, wblk


@functools.cache
def banded_kernel(shape: TileShape):
    """The direct kernel over a BandedPlan's regions (tiled.direct_kernel's tasks, layouts
    and arguments otherwise, x the contiguous channels-last input, or its padded copy, and
    the pitches the plan's), e.g. ``conv_direct_banded_p14v32_f32``."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION

    def kernel(x, w, xoff, woff, taps, bias, out, regions, tile_row, tile_col, tile_sel, layouts, order, n_img, od_n,
               oh_n, ow_n, img_pitch, d_pitch, h_pitch, g_pitch, xpix, kb_n, splits, chan_last, act):
        """One task per (group, block of V output channels, 1/splits of all regions' segments
        in ``order``)."""
        groups, kg = w.shape[0], w.shape[1]
        plane = od_n * oh_n * ow_n
        k_n = groups * kg
        previous = balanced(groups * kb_n * splits)
        for t in prange(groups * kb_n * splits):
            blk, g, k0, kvalid, first, last, wblk = _task_block(t, w, taps, order.shape[0], kb_n, splits, v, lanes,
                                                                revision)
            zero = np.zeros(1, w.dtype)
            for n in range(n_img):
                for s in range(first, last):
                    reg = regions[order[s, 0]]
                    rxoff = xoff[reg[STEP0]:reg[STEP1]]
                    rwoff = woff[reg[STEP0]:reg[STEP1]]
                    roh = reg[ROH]
                    base, t0, t1 = segment_tiles(order[s, 1], layouts[reg[LAY0]:reg[LAY1]], roh)
                    for i in range(reg[TILE0] + t0, reg[TILE0] + t1):
                        local = base + tile_row[i]
                        od = reg[OD0] + local // roh
                        row = od * oh_n + reg[OH0] + local - (local // roh) * roh
                        col = reg[OW0] + tile_col[i]
                        if chan_last:
                            obase = (n * plane + row * ow_n + col) * k_n + k0
                            orow, pstride, kstride = ow_n * k_n, k_n, 1
                        else:
                            obase = (n * k_n + k0) * plane + row * ow_n + col
                            orow, pstride, kstride = ow_n, 1, plane
                        if reg[EMPTY]:
                            fma_tile_strided_indexed_rolled(zero, wblk, rxoff, bias, out, 0, 0, 0, blk * v, obase,
                                                            orow, pstride, kstride, kvalid, act, 0, rwoff, tile_sel[i],
                                                            shapes, v, lanes, revision)
                        else:
                            xbase = tile_origin(row, n, g, oh_n, img_pitch, d_pitch, h_pitch, g_pitch) + col * xpix
                            fma_tile_strided_indexed_rolled(x, wblk, rxoff, bias, out, xbase, h_pitch, 0, blk * v,
                                                            obase, orow, pstride, kstride, kvalid, act, xpix, rwoff,
                                                            tile_sel[i], shapes, v, lanes, revision)
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    table = types.Array(types.int64, 2, "C")
    weights = types.Array(dt, 3, "C", readonly=True)
    sig = ((types.Array(dt, 1, "C", readonly=True), weights, ints, ints, types.int64, flat, flat, table, ints, ints,
            ints, ints, table) + (types.int64,) * 11 + (types.boolean, types.int64))
    return specialised_kernel(kernel, f"conv_direct_banded_{shape.name}", [sig])
