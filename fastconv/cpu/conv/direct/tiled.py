"""Register-tiled direct convolution: kernels specialised on (tile shapes, V, dtype).

Working layouts (all flat, C-contiguous):

- input, padded and "row-planar": (N, Dp, Hp, C, SW, WQ). Each (image, depth, row,
  channel) is one run of the W axis, split into SW = stride_w phases so that output
  pixels ow, ow+1, ... read consecutive elements for every tap: tap kw of output ow
  reads phase (kw*dw) % SW, element ow + (kw*dw) // SW. WQ = OW + ((KW-1)*dw) // SW.
- weights: per task, one block of V output channels as (C/G, KD, KH, KW, V), zero-padded,
  packed by the task into its own scratch buffer (vector.fma_tile.pack_weight_block).
- output: the user's layout, written directly (channels-last or channels-first).

A parallel task is one (group, block of V output channels, range of segments of the
output plane); it packs its weights, then walks its segments of every image in the
tiles chosen by :func:`plane_tiles`, each a call of the register tile in
vector/fma_tile.py.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np
from numba import prange, types

from ...._cache import cached_plan
from ...._threads import balanced, restore
from ....kernels.inline import inline_helper
from ..._jit import Simd, parallel_kernel, simd, specialised_kernel
from ...vector.aligned import aligned_empty
from ...vector.fma_tile import REVISION, fma_tile, pack_weight_block, shapes_literal
from ...vector.planar_pack import REVISION as PLANAR_REVISION
from ...vector.planar_pack import pack_planar_row
from ...vector.swapped_pack import REVISION as SWAPPED_REVISION
from ...vector.swapped_pack import pack_swapped_block

# ---------------------------------------------------------------------------------------
# Tile shapes and the tiling of an output plane
# ---------------------------------------------------------------------------------------

SPARE_REGISTERS = 4  # weights (up to 2 vectors), one broadcast, one for the compiler
L1_BYTES = 32 * 1024  # a channel block of weights larger than this streams from L2
MAX_ROWS = 8  # one general register per tile row holds its input pointer


class TileShape(NamedTuple):
    shapes: tuple  # ((rows, pixels per row), ...) of the register tiles the kernel carries
    v: int  # output channels per tile
    lanes: int  # elements per vector register
    dtype: str  # working dtype: float32 or float64

    @property
    def pixels(self) -> int:
        return max(r * s for r, s in self.shapes)

    @property
    def n_vec(self) -> int:
        return self.v // self.lanes

    @property
    def name(self) -> str:
        return f"p{self.pixels}v{self.v}_{'f32' if self.dtype == 'float32' else 'f64'}"


def tile_shape(out_per_group: int, dtype: str, registers: Simd | None = None, channels_last: bool = False) -> TileShape:
    """The register tiles for a group of ``out_per_group`` output channels.

    V covers the group's channels with the fewest wasted lanes: two full vectors when
    there are more channels than one vector holds, else one vector (narrower vectors
    for small groups). The pixels of a tile, P, fill the vector registers: with two
    accumulator vectors per pixel, 14 on AVX-512 (32 registers), 6 on AVX2. Tiles of
    one row come in widths P, P/2, 4, 2, 1; narrow planes get tiles of several rows
    (2x7, 3x4, 4x3, 7x2, 8x1 on AVX-512) so that every weight load still feeds about P
    pixels. ``registers`` is the target's (``simd()``, the default); tests pass others to
    check the plans of other CPUs.

    Channels-last float32 output of more than three vectors' channels up to four, with 32
    registers: four vectors of 6 pixels (all of a 64-channel float32 layer's outputs in one
    block: the input is walked once, not once per block of two vectors; a channels-first
    tile of 6 pixels would store through the general path). The same sums, in the same
    order, as any other tile.
    """
    width, registers = registers or simd()
    lanes = width // np.dtype(dtype).itemsize
    if channels_last and dtype == "float32" and registers >= 32 and 3 * lanes < out_per_group <= 4 * lanes:
        n_vec = 4
    elif out_per_group > lanes:
        n_vec = 2
    else:
        n_vec = 1
        while lanes > 2 and out_per_group <= lanes // 2:
            lanes //= 2
    p = min((registers - SPARE_REGISTERS - max(n_vec - 2, 0)) // n_vec, 28)
    shapes = [(1, s) for s in sorted({p, (p + 1) // 2, 4, 2, 1}, reverse=True) if s <= p]
    shapes += [(min(p // s, MAX_ROWS), s) for s in sorted({p // 2, 7, 4, 3, 2, 1}, reverse=True) if s <= p // 2]
    return TileShape(tuple(dict.fromkeys(shapes)), n_vec * lanes, lanes, dtype)


def step_cycles(q: int, n_vec: int, streams_l2: bool) -> float:
    """Model of one reduction step of a q-pixel tile: FMAs on two ports, loads on two, and
    when the weights stream from L2, about 16 bytes of them per cycle (measured: 7-pixel
    tiles ran at half the speed of 14-pixel ones on 512-channel layers)."""
    l2 = n_vec * 64 / 16 if streams_l2 else 0.0
    return max(q * n_vec / 2, (q + n_vec + 1) / 2, l2) + 0.5


@cached_plan
def group_tiles(ow_n: int, rows: int, shapes: tuple, n_vec: int, streams_l2: bool) -> tuple:
    """((row offset, start column, shape index), ...) covering ``rows`` output rows of
    ``ow_n`` columns at the least modelled cost, and that cost.

    Columns are covered by tiles of ``rows`` rows, or by one-row tiles stacked ``rows``
    high; tiles lie inside the plane, and one may overlap the one before it (it
    recomputes a few pixels at full speed rather than running narrow tiles). Long rows
    start with the cheapest-per-column tile repeated; a dynamic programme covers the
    last columns (fewer than three of those tiles' widths).
    """
    options = []  # (width, cost, [(row offset, shape index), ...])
    for i, (r, s) in enumerate(shapes):
        if r == rows:
            options.append((s, step_cycles(r * s, n_vec, streams_l2), [(0, i)]))
        if r == 1 and rows > 1:
            options.append((s, rows * step_cycles(s, n_vec, streams_l2), [(k, i) for k in range(rows)]))
    bulk_width, bulk_cost, bulk_parts = min(options, key=lambda o: (o[1] / o[0], -o[0]))
    n_bulk = max(0, (ow_n - 2 * bulk_width) // bulk_width)
    tail = ow_n - n_bulk * bulk_width
    cost = [0.0] + [float("inf")] * tail
    choice = [None] * (tail + 1)
    for end in range(1, tail + 1):
        for o, (width, c, _) in enumerate(options):
            if width > end:
                continue
            for covered in range(end - width, end):  # covered == end - width: no overlap
                if cost[covered] + c < cost[end] - 1e-9:
                    cost[end], choice[end] = cost[covered] + c, (covered, o)
    tiles = [(k, j * bulk_width, i) for j in range(n_bulk) for k, i in bulk_parts]
    end = tail
    while end > 0:
        covered, o = choice[end]
        width, _, parts = options[o]
        tiles += [(k, n_bulk * bulk_width + end - width, i) for k, i in parts]
        end = covered
    return tuple(sorted(tiles, key=lambda t: (t[1], t[0]))), n_bulk * bulk_cost + cost[tail]


# Where the header fields of PlaneTiles.group_start are (the segment bounds follow).
N_A, Q_A, Q_B, H_A, S_A, S_B, SEGMENTS, HEAD = range(8)


class PlaneTiles(NamedTuple):
    """The tiling of an output plane, by kinds of row group: its size is the tiles of one
    row group of each kind, not the tiles of the plane.

    A plane of oh_n rows (per depth) is Q_A row groups of H_A rows, then Q_B single rows;
    every group of a kind has the same tiles and the same segment cuts. Kind A's tiles
    come first in ``row``/``col``/``sel``, then kind B's (from N_A). ``group_start`` is
    the header (N_A, Q_A, Q_B, H_A, S_A, S_B, SEGMENTS), then kind A's S_A + 1 segment
    bounds and kind B's S_B + 1, as tile indices within a group; segment s of the plane
    is found by :func:`segment_tiles`.
    """

    row: np.ndarray  # each kind's tile: its row inside the group
    col: np.ndarray  # first output column
    sel: np.ndarray  # index of its shape in TileShape.shapes
    group_start: np.ndarray  # header and segment bounds (see above)

    @property
    def segments(self) -> int:
        """Segments of the whole plane (every depth): the units of parallel work."""
        return int(self.group_start[SEGMENTS])

    def last_groups(self, oh_n: int, od_n: int):
        """(rows, cols, sels) of the tiles of each kind's last row group at the last depth:
        the tiles that reach furthest into their image (for bounds checks)."""
        n_a, q_a, q_b, h_a = (int(v) for v in self.group_start[[N_A, Q_A, Q_B, H_A]])
        depth = (od_n - 1) * oh_n
        base = np.where(np.arange(self.row.size) < n_a, depth + (q_a - 1) * h_a, depth + q_a * h_a + q_b - 1)
        return base + self.row, self.col, self.sel  # kind B has no tiles when q_b == 0

    def expand(self, oh_n: int):
        """(row, col, sel, start) per tile of the whole plane, rows counted over (depth,
        height), tiles of segment i at [start[i], start[i+1]): for tests and checks."""
        rows, cols, sels, starts = [], [], [], [0]
        for s in range(self.segments):
            base, t0, t1 = segment_tiles(s, self.group_start, oh_n)
            rows += [base + r for r in self.row[t0:t1]]
            cols += list(self.col[t0:t1])
            sels += list(self.sel[t0:t1])
            starts.append(len(rows))
        return tuple(np.array(a, np.int64) for a in (rows, cols, sels, starts))


@inline_helper
def segment_tiles(s, layout, oh_n):
    """Segment s of a plane tiled as PlaneTiles says: the first output row of its row group
    (counted over depth and height) and the range of its tiles in the kinds' arrays."""
    n_a, q_a, q_b, h_a, s_a, s_b = layout[0], layout[1], layout[2], layout[3], layout[4], layout[5]
    per_depth = q_a * s_a + q_b * s_b
    od = s // per_depth
    rem = s - od * per_depth
    if rem < q_a * s_a:
        j = rem // s_a
        at = 7 + rem - j * s_a
        return od * oh_n + j * h_a, layout[at], layout[at + 1]
    rem -= q_a * s_a
    j = rem // s_b
    at = 7 + s_a + 1 + rem - j * s_b
    return od * oh_n + q_a * h_a + j, n_a + layout[at], n_a + layout[at + 1]


SEGMENT_TILES = 8  # long rows are cut into segments of this many tiles, for parallel tasks


def _heights(oh_n: int, shape: TileShape):
    return [h for h in sorted({r for r, _ in shape.shapes}) if h <= oh_n]


def _rows_cost(oh_n: int, ow_n: int, height: int, shape: TileShape, streams_l2: bool) -> float:
    """Modelled cycles of one reduction step over oh_n rows: oh_n // height groups of height
    rows, the rest one row each, summed in that order."""
    one = group_tiles(ow_n, 1, shape.shapes, shape.n_vec, streams_l2)[1]
    full = group_tiles(ow_n, height, shape.shapes, shape.n_vec, streams_l2)[1]
    return sum(itertools.chain(itertools.repeat(full, oh_n // height), itertools.repeat(one, oh_n % height)))


def plane_cost(od_n: int, oh_n: int, ow_n: int, shape: TileShape, streams_l2: bool) -> float:
    """Modelled cycles of one reduction step over the plane as :func:`plane_tiles` tiles it."""
    return od_n * min(_rows_cost(oh_n, ow_n, h, shape, streams_l2) for h in _heights(oh_n, shape))


@cached_plan
def plane_tiles(od_n: int, oh_n: int, ow_n: int, shape: TileShape, streams_l2: bool) -> PlaneTiles:
    """Tiles covering the output plane: rows in groups of R (the cheapest R by the
    model; leftover rows one at a time), each group covered by :func:`group_tiles`.

    Parallel tasks take whole "segments": a row group, or for long rows a run of
    SEGMENT_TILES tiles of it (cut only where tiles do not overlap, so no two tasks
    write the same pixel). Segments never span two depths. The result holds one row
    group of each kind (PlaneTiles), a few kilobytes for any plane.
    """
    height = min(_heights(oh_n, shape), key=lambda h: _rows_cost(oh_n, ow_n, h, shape, streams_l2))
    kinds = [(height, oh_n // height), (1, oh_n % height)]
    rows, cols, sels, bounds, counts = [], [], [], [], []
    for g, count in kinds:
        tiles = group_tiles(ow_n, g, shape.shapes, shape.n_vec, streams_l2)[0] if count else ()
        cuts, end = [0], -1  # segment starts inside the group
        for t, (k, c, i) in enumerate(tiles):
            if t - cuts[-1] >= SEGMENT_TILES * g and c > end:
                cuts.append(t)
            end = max(end, c + shape.shapes[i][1] - 1)
            rows.append(k)
            cols.append(c)
            sels.append(i)
        bounds.append(cuts + [len(tiles)] if tiles else [0])
        counts.append(len(tiles))
    s_a, s_b = len(bounds[0]) - 1, len(bounds[1]) - 1
    header = [counts[0], kinds[0][1], kinds[1][1], height, s_a, s_b, od_n * (kinds[0][1] * s_a + kinds[1][1] * s_b)]
    as_array = lambda a: np.array(a, np.int64)  # noqa: E731
    return PlaneTiles(as_array(rows), as_array(cols), as_array(sels), as_array(header + bounds[0] + bounds[1]))


# ---------------------------------------------------------------------------------------
# Input in the row-planar, stride-phase-split layout
# ---------------------------------------------------------------------------------------


class RowPlanar(NamedTuple):
    """Shape of the packed input and where every reduction step reads."""
    dp: int
    hp: int
    phases: int
    wq: int

    def image_elems(self, channels: int) -> int:
        return self.dp * self.hp * channels * self.phases * self.wq


def row_planar(geom) -> RowPlanar:
    dp, hp = ((n + b + e) for n, (b, e) in zip(geom.in_size[:2], geom.pads[:2]))
    sw = geom.stride[2]
    wq = geom.out_size[2] + ((geom.kernel[2] - 1) * geom.dilation[2]) // sw
    return RowPlanar(dp, hp, sw, wq)


def column_map(w_map: np.ndarray, phases: int, wq: int) -> np.ndarray:
    """(phases, wq) source column of each packed element: w_map's entry, or -2 past the
    padded row (never read by an output pixel; filled with zero)."""
    j = np.arange(phases, dtype=np.int64)[:, None] + phases * np.arange(wq, dtype=np.int64)[None, :]
    return np.where(j < len(w_map), w_map[np.minimum(j, len(w_map) - 1)], -2)


PACK_TASKS = 16  # images x rows fewer than this are also cut along channels (or the row): 1-D layers are one row


def pack_row_planar(x, map_d, map_h, map_w, fill, out):
    """out (N, Dp, Hp, C, SW, WQ) from x (N, D, H, W, C): map entries are source indices,
    -1 for the padding value, -2 for zero.

    Channels-last input with 8 or more channels is read along C (one pass over the
    row): with consecutive channels, whole vectors of them at a time, transposed in
    registers (vector.planar_pack); other input along W, one channel at a time (a pass
    per channel would re-read a long channels-last row from memory C times: 1-D rows of
    16000 ran 2x slower). Fewer than PACK_TASKS rows are cut into pieces (of channels,
    or of the row read along C) so that every thread packs, in chunks of
    :func:`balanced` (a preempted worker's pieces are taken over).
    """
    channels_inner = x.strides[4] < x.strides[3] and x.shape[4] >= 8
    if channels_inner:
        _channels_inner_packer()(x, map_d, map_h, map_w, fill, out)
    else:
        _channel_planes_packer()(x.transpose(0, 1, 2, 4, 3), map_d, map_h, map_w, fill, out)


@inline_helper
def _pack_task(t, pieces, dp, hp):
    """(piece, image, depth row, row) of packing task ``t``."""
    piece = t % pieces
    n = t // pieces // (dp * hp)
    r = t // pieces - n * (dp * hp)
    d = r // hp
    return piece, n, d, r - d * hp


@functools.cache
def _channels_inner_packer():
    """Channels-last rows read along C; kept apart from the channel-planes kernel so that a
    channels-first call never compiles the vector transpose (about 0.45 s of a cold first call)."""
    width, revision = simd().vector_bytes, PLANAR_REVISION

    def pack_rows_channels_inner(x, map_d, map_h, map_w, fill, out):
        n_img, dp, hp, c_n, phases, wq = out.shape
        zero = fill - fill
        item = out.itemsize
        vectors = x.strides[4] == item and x.strides[3] % item == 0 and x.strides[2] % item == 0 \
            and x.strides[1] % item == 0 and x.strides[0] % item == 0
        c_vec = c_n - c_n % (width // item) if vectors else 0  # channels packed by vectors
        rows = n_img * dp * hp
        pieces = 1 if rows >= PACK_TASKS else min(wq, -(-PACK_TASKS // max(rows, 1)))
        previous = balanced(rows * pieces)
        for t in prange(rows * pieces):
            piece, n, d, h = _pack_task(t, pieces, dp, hp)
            sd = map_d[d]
            sh = map_h[h]
            j0, j1 = piece * wq // pieces, (piece + 1) * wq // pieces
            c0 = 0
            if c_vec and sd >= 0 and sh >= 0:
                c0 = c_vec
                xbase = (n * x.strides[0] + sd * x.strides[1] + sh * x.strides[2]) // item
                for ph in range(phases):
                    obase = (t // pieces * c_n * phases + ph) * wq + j0
                    pack_planar_row(x, out, map_w[ph, j0:j1], xbase, x.strides[3] // item, obase, phases * wq,
                                    j1 - j0, c_vec, fill, width, revision)
            for ph in range(phases):
                for j in range(j0, j1):
                    sw = map_w[ph, j]
                    if sw == -2:
                        for c in range(c0, c_n):
                            out[n, d, h, c, ph, j] = zero
                    elif sd < 0 or sh < 0 or sw < 0:
                        for c in range(c0, c_n):
                            out[n, d, h, c, ph, j] = fill
                    else:
                        for c in range(c0, c_n):
                            out[n, d, h, c, ph, j] = x[n, sd, sh, sw, c]
        restore(previous)

    return parallel_kernel(pack_rows_channels_inner)


@inline_helper
def linear_run(map_w, ph, phases):
    """[lo, hi): the longest run of phase ph's packed columns whose sources are consecutive
    columns of the input row, phases apart (the unpadded interior, for any padding mode)."""
    wq = map_w.shape[1]
    lo, hi, start = 0, 0, 0
    for j in range(wq + 1):
        if j == wq or map_w[ph, j] < 0 or (j > start and map_w[ph, j] != map_w[ph, j - 1] + phases):
            if j - start > hi - lo:
                lo, hi = start, j
            start = j + 1 if j < wq and map_w[ph, j] < 0 else j
    return lo, hi


@functools.cache
def _channel_planes_packer():
    """Other input read along W, one channel at a time, x as (N, D, H, C, W) planes: the
    row's interior (linear_run) as a copy, vectorized for channels-first input (contiguous
    planes, stride 1), the rest (padding, reflected columns) through the maps. (Every
    column through the maps: TCN's 64 x 16000 rows took 2.1-2.8 ms a call, one thread;
    copied, 0.6-1.2.)"""

    def pack_rows_channel_planes(x, map_d, map_h, map_w, fill, out):
        n_img, dp, hp, c_n, phases, wq = out.shape
        zero = fill - fill
        rows = n_img * dp * hp
        pieces = 1 if rows >= PACK_TASKS else min(c_n, -(-PACK_TASKS // max(rows, 1)))
        previous = balanced(rows * pieces)
        for t in prange(rows * pieces):
            piece, n, d, h = _pack_task(t, pieces, dp, hp)
            sd = map_d[d]
            sh = map_h[h]
            for ph in range(phases):
                lo, hi = linear_run(map_w, ph, phases) if sd >= 0 and sh >= 0 else (0, 0)
                s0 = map_w[ph, lo] if hi > lo else 0
                for c in range(piece * c_n // pieces, (piece + 1) * c_n // pieces):
                    dst = out[n, d, h, c, ph]
                    src = x[n, max(sd, 0), max(sh, 0), c]
                    run = dst[lo:hi]
                    if phases == 1:
                        inner = src[s0:s0 + hi - lo]
                        for j in range(hi - lo):
                            run[j] = inner[j]
                    else:
                        for j in range(hi - lo):
                            run[j] = src[s0 + j * phases]
                    for k in range(wq - (hi - lo)):  # the columns outside the run
                        j = k if k < lo else k + hi - lo
                        sw = map_w[ph, j]
                        if sw == -2:
                            dst[j] = zero
                        elif sd < 0 or sh < 0 or sw < 0:
                            dst[j] = fill
                        else:
                            dst[j] = src[sw]
        restore(previous)

    return parallel_kernel(pack_rows_channel_planes)


def reduction_offsets(geom, planar: RowPlanar, channels: int, in_per_group: int) -> np.ndarray:
    """xoff[r] for reduction step r = (c, kd, kh, kw) flattened, the order of the weight's
    own axes: where step r reads, relative to the tile's first pixel and channel 0 of
    its group."""
    (kd_n, kh_n, kw_n), (dd, dh, dw) = geom.kernel, geom.dilation
    run = planar.phases * planar.wq  # one channel of one row
    row = channels * run
    depth = planar.hp * row
    c = np.arange(in_per_group)[:, None, None, None]
    kd = np.arange(kd_n)[None, :, None, None]
    kh = np.arange(kh_n)[None, None, :, None]
    kwd = (np.arange(kw_n) * dw)[None, None, None, :]
    off = kd * dd * depth + kh * dh * row + c * run + (kwd % planar.phases) * planar.wq + kwd // planar.phases
    return np.ascontiguousarray(off.reshape(-1), dtype=np.int64)


# ---------------------------------------------------------------------------------------
# The kernels
# ---------------------------------------------------------------------------------------

@inline_helper
def task_place(t, groups, kg, n_segments, kb_n, splits, v):
    """Task t of the direct kernels' loop over (1/splits of the plane's segments, group,
    block of V output channels): its block index, group, channel block, first output
    channel, valid channel count and range of segments."""
    blk = t % (groups * kb_n)
    split = t // (groups * kb_n)
    g = blk // kb_n
    kb = blk - g * kb_n
    first = split * n_segments // splits
    last = (split + 1) * n_segments // splits
    return blk, g, kb, g * kg + kb * v, min(v, kg - kb * v), first, last


@inline_helper
def task_block(t, w, steps, n_segments, kb_n, splits, v, lanes, revision):
    """Task t's place (:func:`task_place`, its block replacing the channel block) and its
    weight block packed for the micro-kernel, from w (G, K/G, steps)."""
    blk, g, kb, k0, kvalid, first, last = task_place(t, w.shape[0], w.shape[1], n_segments, kb_n, splits, v)
    wblk = aligned_empty(steps * v, w.dtype, lanes)
    pack_weight_block(w, g, kb, wblk, v, lanes, revision)
    return blk, g, k0, kvalid, first, last, wblk


@inline_helper
def task_block_swapped(t, w, steps, n_segments, kb_n, splits, v, lanes, revision, pos, sub):
    """As :func:`task_block`, the block packed from a conv's own weight w (G * Kin, C/G, T)
    with its channel axes swapped, each tap t at step pos[t] of sub (vector.swapped_pack)."""
    kin = steps // sub
    blk, g, kb, k0, kvalid, first, last = task_place(t, w.shape[0] // kin, w.shape[1], n_segments, kb_n, splits, v)
    wblk = aligned_empty(steps * v, w.dtype, lanes)
    pack_swapped_block(w, g, kb, kin, pos, sub, wblk, v, lanes, revision)
    return blk, g, k0, kvalid, first, last, wblk


@inline_helper
def tile_origin(row, n, g, oh_n, img_pitch, d_pitch, h_pitch, g_pitch):
    """A tile of image n, group g, at ``row`` of the flattened depth x height plane: where
    its input starts before the column's offset."""
    od = row // oh_n
    oh = row - od * oh_n
    return n * img_pitch + od * d_pitch + oh * h_pitch + g * g_pitch


NO_POS = np.zeros(0, np.int64)  # direct_kernel's pos for a weight in the forward's own layout


@functools.cache
def direct_kernel(shape: TileShape):
    """The parallel direct-convolution kernel for one tile shape, compiled (or loaded
    from Numba's cache) on first request. Named for what it is, e.g.
    ``conv_direct_rowplanar_p14v32_f32``. Its last argument, ``pos``: empty, or the weight is
    that of the conv whose input gradient it computes (or of a transposed conv), (G * Kin,
    C/G, T), packed by :func:`task_block_swapped` with tap t at step pos[t] (-1: not taken;
    an argument, not a second kernel: one compile per tile shape)."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION
    swapped_revision = SWAPPED_REVISION

    def kernel(x, w, xoff, bias, out, tile_row, tile_col, tile_sel, group_start, n_img, od_n, oh_n, ow_n, img_pitch,
               d_pitch, h_pitch, g_pitch, kb_n, splits, chan_last, act, pos):
        """One task per (group, block of V output channels, 1/splits of the segments), over
        every image of the chunk; see the module docstring. tile_row/tile_col/tile_sel and
        group_start are a PlaneTiles (one row group per kind, and the segment layout).

        w is the weight as (G, K/G, C/G * taps), or with ``pos`` as (G * Kin, C/G, taps);
        each task packs its channel block into a scratch buffer first. d_pitch and h_pitch
        are the input distances of one output step in depth and height (stride included);
        g_pitch is one group's channels of one row.
        """
        sub = 0  # with pos: the taps taken, steps per reduction channel
        for i in range(pos.size):
            sub += pos[i] >= 0
        groups, kg = w.shape[0] // (xoff.size // sub) if sub else w.shape[0], w.shape[1]
        plane = od_n * oh_n * ow_n
        k_n = groups * kg
        previous = balanced(groups * kb_n * splits)
        for t in prange(groups * kb_n * splits):
            if sub:
                blk, g, k0, kvalid, first, last, wblk = task_block_swapped(t, w, xoff.size, group_start[6], kb_n,
                                                                           splits, v, lanes, swapped_revision, pos, sub)
            else:
                blk, g, k0, kvalid, first, last, wblk = task_block(t, w, xoff.size, group_start[6], kb_n, splits, v,
                                                                   lanes, revision)
            for n in range(n_img):
                for s in range(first, last):
                    base, t0, t1 = segment_tiles(s, group_start, oh_n)
                    for i in range(t0, t1):
                        row = base + tile_row[i]
                        col = tile_col[i]
                        xbase = tile_origin(row, n, g, oh_n, img_pitch, d_pitch, h_pitch, g_pitch) + col
                        if chan_last:
                            obase = (n * plane + row * ow_n + col) * k_n + k0
                            fma_tile(x, wblk, xoff, bias, out, xbase, h_pitch, 0, blk * v, obase, ow_n * k_n, k_n, 1,
                                     kvalid, act, tile_sel[i], shapes, v, lanes, revision)
                        else:
                            obase = (n * k_n + k0) * plane + row * ow_n + col
                            fma_tile(x, wblk, xoff, bias, out, xbase, h_pitch, 0, blk * v, obase, ow_n, 1, plane,
                                     kvalid, act, tile_sel[i], shapes, v, lanes, revision)
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    weights = types.Array(dt, 3, "C", readonly=True)  # the user's read-only weights too (writeable ones convert)
    sig = (flat, weights, ints, flat, flat, ints, ints, ints, ints) + (types.int64,) * 10 + (types.boolean, types.int64,
                                                                                           ints)
    return specialised_kernel(kernel, f"conv_direct_rowplanar_{shape.name}", [sig])


def task_splits(tasks: int, segments: int, threads: int) -> int:
    """Into how many ranges of segments each channel block is cut: enough tasks for every
    thread (four each, for balance), at least one segment each. Each range packs its block."""
    return max(1, min(segments, -(-4 * threads // max(tasks, 1))))
