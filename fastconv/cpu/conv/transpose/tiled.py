"""Transposed convolution's phases run by one kernel, each writing its outputs straight into their
interleaved places of a channels-last result (no per-phase output, no interleave).

Phase (r_d, r_h, r_w) of a transposed conv with strides (1, s_h, s_w) is a stride-1 forward
correlation (conv.transpose.phases.dim_phases) whose output q goes to o = q * s + r. When every
phase has the same output counts Q (each output size a multiple of its stride), the channels-last
output (N, OD, OH, OW, K) seen from a phase's first element is a channels-last output
(N, QD, QH, OW', K') with K' = s_w * K channels and rows of OW' = s_h * QW pixels: pixel q_w is
s_w * K elements after q_w - 1, row q_h is s_h * OW * K after q_h - 1, and an image is
QD * QH * OW' * K' = OD * OH * OW * K long. So the direct kernel's register tiles run every phase,
given:

- the input packed once for all phases (row-planar, stride 1: (N, Dp, Hp, C, 1, WQ)) over the
  union of the phases' windows, zeros where they pass the input's edges, in the calling thread's
  kept buffer (conv.direct.scratch); a phase reads it from its window's start;
- the output from that phase's first element, K channels of each pixel stored (any K);
- the weights: all phases in one call of swapped_phases.py's kernel, its tasks packing their block
  of the transposed weight once for every phase: no forward weights built. DCGAN's 4x4 stride-2
  layers ran their s_w width phases as the groups of one direct-kernel call, on forward weights
  built by phase_split.phase_weights first (a pass over the weight, 8 MB on DCGAN's first layer);
  one call of this kernel measured 0.75-1.04 of that time per core on DCGAN's up1, 0.78-0.80 on up2,
  1.00-1.04 on up3 (one thread, thread CPU time, host loaded).

Conditions (:func:`tiled_plan` returns None otherwise and the caller takes another path):
ungrouped, zero padding, depth stride 1, output sizes multiples of the strides, not every
sub-kernel 1x1 (those are one GEMM). Phases without taps (kernel shorter than the stride) are
bias (then activation) only. Channels-first callers get the result through :func:`channels_first`,
one parallel blocked transpose (measured 2x faster than NumPy's copy through a transposed view).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import prange, uint64

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ....kernels.activation import ACTIVATION_CODES
from ....kernels.geometry import geometry3, lift3
from ..._jit import parallel_kernel
from ...layout import as_working, channels_last_5d, image_chunks
from ...weights import pack_bias_blocked
from ..direct.scratch import packing_buffer
from ..direct.tiled import L1_BYTES, PlaneTiles, TileShape, pack_row_planar, plane_tiles, task_splits, tile_shape
from .phase_split import dim_phases, phase_combinations
from .swapped_phases import swapped_phases_kernel


class TiledCall(NamedTuple):
    """One phase with taps."""

    x_at: int  # first element of its window in a packed image
    out_at: int  # its first output element in a channels-last image
    xoff: np.ndarray  # reduction step -> input offset, as conv.direct.tiled.reduction_offsets
    taps: np.ndarray  # flat kernel index of each of its taps, in its steps' order within a channel
    tiles: PlaneTiles


class TiledPlan(NamedTuple):
    shape: TileShape
    maps: tuple  # source index maps of the packed input's depth, height and (1, WQ) columns
    packed_shape: tuple  # one packed image: (Dp, Hp, C, 1, WQ)
    pitches: tuple  # image, depth, row of the packed input
    counts: tuple  # (QD, QH, QW), every phase's output counts
    calls: tuple  # TiledCalls
    bias_only: tuple  # per phase without taps: its offsets (r_d, r_h, r_w)
    kb_n: int
    swapped: SwappedPhases  # the calls as one call of swapped_phases.py's kernel


class SwappedPhases(NamedTuple):
    """The calls as swapped_phases.py's kernel takes them (see there), concatenated phase by phase."""

    xoff: np.ndarray
    woff: np.ndarray
    at: np.ndarray  # phase p's steps: [at[p], at[p + 1])
    taps: np.ndarray  # 0, 1, ..., T - 1: every tap packed, in the weight's order
    x_at: np.ndarray
    out_at: np.ndarray
    tile_row: np.ndarray
    tile_col: np.ndarray
    tile_sel: np.ndarray
    tile_at: np.ndarray
    group_start: np.ndarray  # (P, longest), each row a PlaneTiles.group_start
    splits: int
    images_outer: int  # 1: each image's phases in turn; 0: each phase's images (see _swapped_phases)


# Phases without taps that the tiled kernel lists one by one (a stride far above the kernel
# makes nearly all stride**nd phases tapless; the phases path then fills them in one pass).
MAX_BIAS_ONLY = 64


@cached_plan
def tiled_plan(spec, threads: int) -> TiledPlan | None:
    """The plan of a transposed-conv spec, or None when the conditions above do not hold. Cached:
    callers must not write to its arrays."""
    geom = geometry3(spec)
    k_n, c_n = spec.out_channels, spec.in_channels
    dtype = working_dtype(np.dtype(spec.dtype)).name
    shape = tile_shape(k_n, dtype)
    if (spec.groups != 1 or geom.stride[0] != 1 or math.prod(spec.stride) < 2
            or any(o % s for o, s in zip(geom.out_size, geom.stride)) or spec.padding_mode != "zeros"):
        return None
    per_dim = [dim_phases(n, k, s, d, b, o) for n, k, s, d, (b, _), o in
               zip(geom.in_size, geom.kernel, geom.stride, geom.dilation, geom.pads, geom.out_size)]
    tapless = math.prod(map(len, per_dim)) - math.prod(sum(p.taps is not None for p in ps) for ps in per_dim)
    if tapless > MAX_BIAS_ONLY:
        return None  # the phases path fills them in one pass instead of listing each
    counts = tuple(o // s for o, s in zip(geom.out_size, geom.stride))
    # per dim: the union [lo, hi) of the input ranges the phases with taps read
    lo = [min((p.crop[0] - p.pads[0] for p in ps if p.taps is not None), default=0) for ps in per_dim]
    hi = [max((p.crop[0] - p.pads[0] + q + (p.taps_n - 1) * p.dilation for p in ps if p.taps is not None),
              default=1) for ps, q in zip(per_dim, counts)]
    maps = [np.where((pos >= 0) & (pos < n), pos, -1) for pos, n in
            ((np.arange(a, b, dtype=np.int64), n) for a, b, n in zip(lo, hi, geom.in_size))]
    dp, hp, wq = (b - a for a, b in zip(lo, hi))
    row = c_n * wq
    pitches = (dp * hp * row, hp * row, row)
    _, oh_n, ow_n = geom.out_size
    sh = geom.stride[1]
    flat = np.arange(math.prod(geom.kernel)).reshape(geom.kernel)
    phases, bias_only = [], []
    for rows in phase_combinations(per_dim[:2]):
        for p in per_dim[2]:
            if any(q.taps is None for q in (*rows, p)):
                bias_only.append((rows[0].offset, rows[1].offset, p.offset))
                continue
            x_at = sum((q.crop[0] - q.pads[0] - a) * pitch for q, a, pitch in zip((*rows, p), lo, pitches[1:] + (1,)))
            kd, kh, kw = (np.arange(q.taps_n) * q.dilation for q in (*rows, p))
            xoff = (np.arange(c_n)[:, None, None, None] * wq + kd[None, :, None, None] * pitches[1]
                    + kh[None, None, :, None] * row + kw[None, None, None, :]).reshape(-1)
            out_at = ((rows[0].offset * oh_n + rows[1].offset) * ow_n + p.offset) * k_n
            # the tiles read and write raw pointers: the last element each reaches must lie inside its image
            assert (x_at + (counts[0] - 1) * pitches[1] + (counts[1] - 1) * row + counts[2] - 1 + xoff.max()
                    < pitches[0])
            assert (out_at + (((counts[0] - 1) * counts[1] + counts[1] - 1) * sh * ow_n + (counts[2] - 1)
                              * geom.stride[2] + 1) * k_n <= math.prod(geom.out_size) * k_n)
            phases.append((x_at, out_at, np.ascontiguousarray(xoff), flat[tuple(q.taps for q in (*rows, p))].ravel()))
    if not phases or all(xoff.size == c_n for _, _, xoff, _ in phases):  # 1x1 sub-kernels: one GEMM is faster
        return None
    tiles = [_phase_tiles(counts, shape, xoff.size * shape.v * np.dtype(dtype).itemsize > L1_BYTES)
             for _, _, xoff, _ in phases]
    calls = tuple(TiledCall(*phase, t) for phase, t in zip(phases, tiles))
    kb_n = -(-k_n // shape.v)
    return TiledPlan(shape, tuple(maps[:2]) + (maps[2].reshape(1, -1),), (dp, hp, c_n, 1, wq), pitches, counts,
                     calls, tuple(bias_only), kb_n,
                     _swapped_phases(calls, c_n, math.prod(geom.kernel), shape.v, threads, kb_n,
                                     np.dtype(dtype).itemsize))


# Phase planes at most this wide take tiles of at most SHORT_TILE_ROWS rows, chosen as if their weights were in L1.
# DCGAN's up2 (8x8 phase planes, 1024 steps of 32 channels) ran eight 8x1 tiles a plane (the model's pick with the
# weights streaming from L2); two 3x4 and two 1x4 tiles a group of four rows were 0.89-0.91 of its time, 4x3 tiles
# 0.94, 7x2 ones 0.93-0.94 (one thread, CPU time, medians of 40-60 calls alternating in one process, host loaded).
# Wider planes (up3's 16x16: 8x1 tiles on two columns beside 1x14 rows) measured the same or slower without them.
NARROW_PLANE = 8
# A task's packed weight block (every phase) at most this large stays in L2 while it runs an image's phases in
# turn (see swapped_phases.py). DCGAN's up3 (256 KiB blocks): each image's phases in turn 0.90-1.00 of the time of
# each phase's images; up2 (512 KiB) 1.04-1.09 and up1 (1 MiB) 1.06-1.08 (one thread, CPU time, medians of 50
# calls alternating in one process, host loaded).
L2_BLOCK_BYTES = 256 * 1024
SHORT_TILE_ROWS = 4


def _phase_tiles(counts, shape: TileShape, streams_l2: bool) -> PlaneTiles:
    """plane_tiles of one phase's output plane, narrow planes without tall tiles (see NARROW_PLANE)."""
    if counts[2] > NARROW_PLANE:
        return plane_tiles(*counts, shape, streams_l2)
    short = shape._replace(shapes=tuple(s for s in shape.shapes if s[0] <= SHORT_TILE_ROWS))
    tiles = plane_tiles(*counts, short, False)
    return tiles._replace(sel=np.array([shape.shapes.index(short.shapes[i]) for i in tiles.sel], np.int64))


def _swapped_phases(calls, c_n: int, t_n: int, v: int, threads: int, kb_n: int, itemsize: int) -> SwappedPhases:
    """The ``calls`` (C = c_n reduction channels, T = t_n taps, blocks of V = v channels) as the arrays
    of one call of swapped_phases.py's kernel. A task runs each image's phases in turn when its packed
    block (every tap) stays in L2 meanwhile (at most L2_BLOCK_BYTES), else each phase's images, its
    weights kept in L2 across the images."""
    woff = [((np.arange(c_n)[:, None] * t_n + c.taps[None, :]) * v).ravel() for c in calls]
    tiles = [c.tiles for c in calls]
    longest = max(t.group_start.size for t in tiles)
    group_start = np.array([np.pad(t.group_start, (0, longest - t.group_start.size)) for t in tiles], np.int64)
    return SwappedPhases(
        np.concatenate([c.xoff for c in calls]).astype(np.int64), np.concatenate(woff).astype(np.int64),
        np.cumsum([0] + [c.xoff.size for c in calls], dtype=np.int64), np.arange(t_n, dtype=np.int64),
        np.array([c.x_at for c in calls], np.int64), np.array([c.out_at for c in calls], np.int64),
        *(np.concatenate([getattr(t, f) for t in tiles]).astype(np.int64) for f in ("row", "col", "sel")),
        np.cumsum([0] + [t.row.size for t in tiles[:-1]], dtype=np.int64), group_start,
        task_splits(kb_n, max(t.segments for t in tiles), threads), int(c_n * t_n * v * itemsize <= L2_BLOCK_BYTES))


def run_tiled(spec, plan: TiledPlan, x, weight, bias, fill) -> np.ndarray:
    """The transposed conv by ``plan``: (N, OD, OH, OW, K) in the working dtype, from the user's x and
    weight. ``fill`` (K,): activation(bias), the output of a phase without taps."""
    dtype = working_dtype(np.dtype(spec.dtype))
    k_n = spec.out_channels
    _, sh, sw = lift3(spec.stride, 1)
    w3 = np.ascontiguousarray(np.asarray(weight).reshape(spec.in_channels, k_n, -1), dtype=dtype)
    bq = pack_bias_blocked(bias, spec, plan.shape.v, dtype).reshape(-1)
    act = ACTIVATION_CODES[spec.activation]
    qd_n, qh_n, qw_n = plan.counts
    out = np.empty((spec.batch, *lift3(spec.out_size, 1), k_n), dtype)
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    sp = plan.swapped
    kernel = swapped_phases_kernel(plan.shape)
    for n0, n1 in image_chunks(spec, plan.pitches[0] * dtype.itemsize):
        xq = packing_buffer((n1 - n0, *plan.packed_shape), dtype)
        pack_row_planar(as_working(x5[n0:n1], dtype), *plan.maps, dtype.type(0), xq)
        kernel(xq.reshape(-1), w3, sp.xoff, sp.woff, sp.at, sp.taps, bq, out[n0:n1].reshape(-1), sp.x_at, sp.out_at,
               sp.tile_row, sp.tile_col, sp.tile_sel, sp.tile_at, sp.group_start, n1 - n0, qd_n, qh_n, sh * qw_n,
               *plan.pitches, sw * k_n, plan.kb_n, sp.splits, sp.images_outer, act)
        xq = None
    for rd, rh, rw in plan.bias_only:
        out[:, rd::1, rh::sh, rw::sw] = fill
    return out


@parallel_kernel
def channels_first(src, out, n_img, p_n, k_n):
    """out, flat (N, K, P) = src, flat (N, P, K), in blocks of 16 x 16 (P: pixels, K: channels)."""
    pb_n = (p_n + 15) // 16
    kb_n = (k_n + 15) // 16
    for t in prange(n_img * pb_n):
        n = t // pb_n
        p0 = (t - n * pb_n) * 16
        pe = min(16, p_n - p0)
        src_at = (n * p_n + p0) * k_n
        out_at = n * k_n * p_n + p0
        for kb in range(kb_n):
            for k in range(kb * 16, kb * 16 + min(16, k_n - kb * 16)):
                o = out_at + k * p_n
                for p in range(pe):
                    out[uint64(o + p)] = src[uint64(src_at + k + p * k_n)]
