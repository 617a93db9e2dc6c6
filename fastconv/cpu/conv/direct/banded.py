"""The direct kernel restricted, per region of the output, to the taps that read the input.

With zeros padding and a large dilation many (output, tap) pairs read padding (DeepLab's
ASPP, 3x3 at rate 18 on 33x33: 60%). Per spatial dim the outputs fall into bands whose
taps inside the input are one range (conv.taps.tap_bands); a region is a product of bands
(conv.taps.regions), a box of outputs that all read the same box of taps. Each region is
tiled as a plane of its own (tiled.plane_tiles) and its tiles run only the reduction steps
(input channel, tap) of its box: their input offsets (xoff) and their rows of the task's
packed weight block (woff, read by vector.fma_tile.fma_tile_indexed). The packed input is
the plain kernel's (padding included); a region's tiles never read its padding.

Segments run in the order of their first output row modulo the dilation (per stride):
output rows dilation apart read the same input rows through different taps, often from
different regions (ASPP at rate 18: rows 0 and 18 both read input rows 0 and 18), so the
second finds them in cache (single-threaded, 14-31% less time than region by region at
rates 12-36 on 33x33 and 65x65 maps).

The plan is taken where the tile cost model (tiled.plane_cost, per step, times the steps)
puts it under GAIN of the whole plane's; a region whose taps all read padding runs one
step that reads a padded zero (its bias). Weights with NaN or inf take the plain kernel
(0 * inf must be NaN).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import prange, types

from ...._threads import balanced, restore
from ..._jit import specialised_kernel
from ...vector.fma_tile import REVISION, fma_tile_indexed, shapes_literal
from ..taps import regions
from .tiled import TileShape, plane_cost, plane_tiles, segment_tiles, task_block, tile_origin

# Banded when its modelled cost is under this share of the whole plane's (regions' narrow
# tiles and the extra index loads are not all in the model).
GAIN = 0.8
# Band widths under which bands merge (conv.taps.tap_bands): the plan takes the cheapest.
MIN_BANDS = (1, 2, 4, 8, 16)

# Columns of BandedPlan.regions
OD0, OH0, OW0, ROH, STEP0, STEP1, TILE0, LAY0, LAY1, FIELDS = range(10)


class BandedPlan(NamedTuple):
    regions: np.ndarray  # (regions, FIELDS): origin, rows per depth, steps, tiles, layout
    xoff: np.ndarray  # every region's input offsets, concatenated
    woff: np.ndarray  # their weight rows (step * V) in the task's packed block
    row: np.ndarray  # every region's PlaneTiles, concatenated (tile indices relative to TILE0)
    col: np.ndarray
    sel: np.ndarray
    layouts: np.ndarray  # their group_start arrays
    order: np.ndarray  # (segments, 2): the region and its own segment index of each segment, in run order


def zero_padded(spec) -> bool:
    return spec.padding_mode == "zeros" or (spec.padding_mode == "constant" and spec.padding_value == 0)


def _region_steps(taps, kernel, cg):
    """Reduction steps (c, kd, kh, kw flattened) of a box of taps; step 0 alone when empty."""
    index = np.arange(cg * int(np.prod(kernel))).reshape(cg, *kernel)
    steps = index[:, slice(*taps[0]), slice(*taps[1]), slice(*taps[2])].reshape(-1)
    return steps if steps.size else index.reshape(-1)[:1]


def _period(dilation: int, stride: int) -> int:
    """Output rows whose taps reach the same input rows: this far apart (1: none)."""
    return dilation // stride if dilation % stride == 0 else 1


def banded_plan(geom, xoff, cg, shape: TileShape, streams_l2: bool) -> BandedPlan | None:
    """The cheapest banding of the output plane by the model, or None when no banding
    beats GAIN of the plain kernel's modelled cost."""
    full = plane_cost(*geom.out_size, shape, streams_l2) * xoff.size
    best, best_cost = None, GAIN * full
    for min_band in MIN_BANDS:
        boxes = list(regions(geom, min_band))
        if len(boxes) == 1:
            continue
        steps = [_region_steps(taps, geom.kernel, cg) for _, taps in boxes]
        cost = sum(plane_cost(b[1] - b[0], b[3] - b[2], b[5] - b[4], shape, streams_l2) * s.size
                   for (b, _), s in zip(boxes, steps))
        if cost < best_cost:
            best, best_cost = (boxes, steps), cost
    if best is None:
        return None
    table, rows, cols, sels, layouts, keys = [], [], [], [], [], []
    pd, ph = (_period(d, st) for d, st in zip(geom.dilation[:2], geom.stride[:2]))
    step = tile = lay = 0
    for q, ((box, _), s) in enumerate(zip(*best)):
        roh = box[3] - box[2]
        tiles = plane_tiles(box[1] - box[0], roh, box[5] - box[4], shape, streams_l2)
        t_row, t_col, _, start = tiles.expand(roh)
        for i in range(tiles.segments):  # by the first tile of each segment
            od, oh = box[0] + t_row[start[i]] // roh, box[2] + t_row[start[i]] % roh
            keys.append((od % pd, oh % ph, od, oh, box[4] + t_col[start[i]], q, i))
        table.append([box[0], box[2], box[4], roh, step, step + s.size, tile, lay, lay + tiles.group_start.size])
        step, tile, lay = step + s.size, tile + tiles.row.size, lay + tiles.group_start.size
        rows.append(tiles.row)
        cols.append(tiles.col)
        sels.append(tiles.sel)
        layouts.append(tiles.group_start)
    steps = np.concatenate(best[1])
    order = np.array([k[-2:] for k in sorted(keys)], np.int64).reshape(-1, 2)
    return BandedPlan(np.array(table, np.int64), np.ascontiguousarray(xoff[steps]), steps * shape.v,
                      *(np.concatenate(a).astype(np.int64) for a in (rows, cols, sels, layouts)), order)


@functools.cache
def banded_kernel(shape: TileShape):
    """The direct kernel over a BandedPlan's regions (tiled.direct_kernel's tasks, layouts
    and arguments otherwise), e.g. ``conv_direct_banded_p14v32_f32``."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION

    def kernel(x, w, xoff, woff, bias, out, regions, tile_row, tile_col, tile_sel, layouts, order, n_img, od_n, oh_n,
               ow_n, img_pitch, d_pitch, h_pitch, g_pitch, kb_n, splits, chan_last, act):
        """One task per (group, block of V output channels, 1/splits of all regions' segments
        in ``order``)."""
        groups, kg = w.shape[0], w.shape[1]
        plane = od_n * oh_n * ow_n
        k_n = groups * kg
        previous = balanced(groups * kb_n * splits)
        for t in prange(groups * kb_n * splits):
            blk, g, k0, kvalid, first, last, wblk = task_block(t, w, w.shape[2], order.shape[0], kb_n, splits, v,
                                                               lanes, revision)
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
                        xbase = tile_origin(row, n, g, oh_n, img_pitch, d_pitch, h_pitch, g_pitch) + col
                        if chan_last:
                            obase = (n * plane + row * ow_n + col) * k_n + k0
                            fma_tile_indexed(x, wblk, rxoff, bias, out, xbase, h_pitch, 0, blk * v, obase,
                                             ow_n * k_n, k_n, 1, kvalid, act, rwoff, tile_sel[i], shapes, v, lanes,
                                             revision)
                        else:
                            obase = (n * k_n + k0) * plane + row * ow_n + col
                            fma_tile_indexed(x, wblk, rxoff, bias, out, xbase, h_pitch, 0, blk * v, obase, ow_n,
                                             1, plane, kvalid, act, rwoff, tile_sel[i], shapes, v, lanes, revision)
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    table = types.Array(types.int64, 2, "C")
    weights = types.Array(dt, 3, "C", readonly=True)
    sig = ((flat, weights, ints, ints, flat, flat, table, ints, ints, ints, ints, table) + (types.int64,) * 10
           + (types.boolean, types.int64))
    return specialised_kernel(kernel, f"conv_direct_banded_{shape.name}", [sig])
