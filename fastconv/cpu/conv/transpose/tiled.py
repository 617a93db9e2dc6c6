"""Transposed convolution's phases run by the direct kernel, each writing its outputs straight
into their interleaved places of a channels-last result (no per-phase output, no interleave).

Phase (r_d, r_h, r_w) of a transposed conv with strides (1, s_h, s_w) is a stride-1 forward
correlation (conv.transpose.phases.dim_phases) whose output q goes to o = q * s + r. When every
phase has the same output counts Q (each output size a multiple of its stride), the channels-last
output (N, OD, OH, OW, K) seen from a phase's first element is the direct kernel's channels-last
output (N, QD, QH, OW', K') with K' = s_w * K channels and rows of OW' = s_h * QW pixels: pixel
q_w is s_w * K elements after q_w - 1, row q_h is s_h * OW * K after q_h - 1, and an image is
QD * QH * OW' * K' = OD * OH * OW * K long. So the compiled direct kernel
(conv.direct.tiled.direct_kernel, the forward convolutions' own specialisations: nothing more to
compile) runs the phases, given:

- the input packed once for all phases (row-planar, stride 1: (N, Dp, Hp, C, 1, WQ)) over the
  union of the phases' windows, zeros where they pass the input's edges; a call reads it from its
  (first) phase's window start;
- the output from that phase's first element;
- the weights: when the s_w phases of one output row phase have equal sub-kernels and windows
  evenly spaced along the width (DCGAN's 4x4 stride 2), they run as the s_w groups of one call:
  weight (s_w, K, C * taps), group g's input g_pitch elements on, its channels at g * K of the
  K' = s_w * K; other phases run one per call, with a (1, K', C * taps) view of the phase's weight
  of which the kernel computes only the first K channels (kb_n = K / V blocks; the rows past K are
  never read), which needs K to be a multiple of the channel block V (else the last block's
  padding lanes would be stored over the next phase's channels);
- where every call is one phase (3x3 stride 2: the input gradient of a strided 3x3 conv), all run
  in one call of swapped_phases.py's kernel instead, its tasks packing their block of the transposed
  weight once for every phase: no forward weights built (phase_weights), any K.

Conditions (:func:`tiled_plan` returns None otherwise and the caller takes another path):
ungrouped, zero padding, depth stride 1, output sizes multiples of the strides, K a multiple of V
where phases run alone in the direct kernel, not every sub-kernel 1x1 (those are one GEMM). Phases without taps
(kernel shorter than the stride) are bias (then activation) only. Channels-first callers get the
result through :func:`channels_first`, one parallel blocked transpose (measured 2x faster than
NumPy's copy through a transposed view).
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
from ..direct.tiled import (
    L1_BYTES,
    NO_POS,
    PlaneTiles,
    TileShape,
    direct_kernel,
    pack_row_planar,
    plane_tiles,
    task_splits,
    tile_shape,
)
from .phase_split import dim_phases, phase_combinations, phase_weights
from .swapped_phases import swapped_phases_kernel


class TiledCall(NamedTuple):
    """One call of the direct kernel: one phase, or the s_w phases of one output row phase as groups."""

    x_at: int  # first element of its (first phase's) window in a packed image
    out_at: int  # its (first phase's) first output element in a channels-last image
    xoff: np.ndarray  # reduction step -> input offset, as conv.direct.tiled.reduction_offsets
    g_pitch: int  # input offset from one grouped phase to the next
    w_at: int  # its forward weights in the buffer phase_weights fills
    w_shape: tuple  # (G, K/G, steps) as the kernel sees them
    tiles: PlaneTiles
    splits: int  # task_splits of its channel blocks


class TiledPlan(NamedTuple):
    shape: TileShape
    maps: tuple  # source index maps of the packed input's depth, height and (1, WQ) columns
    packed_shape: tuple  # one packed image: (Dp, Hp, C, 1, WQ)
    pitches: tuple  # image, depth, row of the packed input
    counts: tuple  # (QD, QH, QW), every phase's output counts
    calls: tuple  # TiledCalls
    bias_only: tuple  # per phase without taps: its offsets (r_d, r_h, r_w)
    weight_table: np.ndarray  # phase_weights' table
    weight_taps: np.ndarray
    weight_elems: int  # including the tail a single phase's (1, K', steps) view spans
    kb_n: int
    swapped: SwappedPhases | None  # every call one phase: all in one call of swapped_phases.py's kernel


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
    sh, sw = geom.stride[1:]
    kb_n = -(-k_n // shape.v)
    flat = np.arange(math.prod(geom.kernel)).reshape(geom.kernel)
    calls, bias_only, table, taps, at = [], [], [], [], 0
    for rows in phase_combinations(per_dim[:2]):
        if any(p.taps is None for p in rows):
            bias_only += [(rows[0].offset, rows[1].offset, p.offset) for p in per_dim[2]]
            continue
        bias_only += [(rows[0].offset, rows[1].offset, p.offset) for p in per_dim[2] if p.taps is None]
        cols = [p for p in per_dim[2] if p.taps is not None]
        starts = [p.crop[0] - p.pads[0] - lo[2] for p in cols]
        grouped = (len(cols) == sw > 1 and len({(p.taps_n, p.dilation) for p in cols}) == 1
                   and len({b - a for a, b in zip(starts, starts[1:])}) == 1 and starts[1] >= starts[0])
        for group in [cols] if grouped else [[p] for p in cols]:
            first = group[0]
            x_at = sum((p.crop[0] - p.pads[0] - a) * pitch for p, a, pitch in
                       zip((*rows, first), lo, pitches[1:] + (1,)))
            kd, kh, kw = (np.arange(p.taps_n) * p.dilation for p in (*rows, first))
            xoff = (np.arange(c_n)[:, None, None, None] * wq + kd[None, :, None, None] * pitches[1]
                    + kh[None, None, :, None] * row + kw[None, None, None, :]).reshape(-1)
            steps, g_n = xoff.size, len(group)
            g_pitch = starts[1] - starts[0] if grouped else 0
            out_at = ((rows[0].offset * oh_n + rows[1].offset) * ow_n + first.offset) * k_n
            # the tiles read and write raw pointers: the last element each reaches must lie inside its image
            assert (x_at + (g_n - 1) * g_pitch + (counts[0] - 1) * pitches[1] + (counts[1] - 1) * row
                    + counts[2] - 1 + xoff.max() < pitches[0])
            assert (out_at + (((counts[0] - 1) * counts[1] + counts[1] - 1) * sh * ow_n + (counts[2] - 1) * sw
                              + g_n) * k_n <= math.prod(geom.out_size) * k_n)
            tiles = plane_tiles(*counts, shape, steps * shape.v * np.dtype(dtype).itemsize > L1_BYTES)
            w_shape = (g_n, k_n, steps) if grouped else (1, sw * k_n, steps)
            calls.append(TiledCall(x_at, out_at, np.ascontiguousarray(xoff), g_pitch, at, w_shape, tiles,
                                   task_splits(g_n * kb_n, tiles.segments, threads)))
            for j, p in enumerate(group):
                taps.append(flat[tuple(q.taps for q in (*rows, p))].ravel())
                table.append((at, j, g_n, steps // c_n))
            at += g_n * k_n * steps
    if not calls or all(c.xoff.size == c_n for c in calls):  # 1x1 sub-kernels: one GEMM is faster
        return None
    width = max(t.size for t in taps)
    taps = np.array([np.pad(t, (0, width - t.size)) for t in taps], np.int64)
    tail = max(math.prod(c.w_shape) - c.w_shape[0] * k_n * c.xoff.size for c in calls)  # the (1, K', steps) views
    swapped = None
    if all(c.w_shape[0] == 1 for c in calls):
        swapped = _swapped_phases(calls, taps, c_n, math.prod(geom.kernel), shape.v, threads, kb_n)
    elif k_n % shape.v and any(c.w_shape[0] == 1 for c in calls):
        return None  # a phase's last channel block in the direct kernel would store its padding lanes over the
        # next phase's channels (the swapped-phases kernel stores K channels of every pixel)
    return TiledPlan(shape, tuple(maps[:2]) + (maps[2].reshape(1, -1),), (dp, hp, c_n, 1, wq), pitches, counts,
                     tuple(calls), tuple(bias_only), np.array(table, np.int64), taps, at + tail, kb_n, swapped)


def _swapped_phases(calls, taps, c_n: int, t_n: int, v: int, threads: int, kb_n: int) -> SwappedPhases:
    """The single-phase ``calls`` (call p's flat taps in row p of ``taps``, C = c_n reduction channels,
    T = t_n taps, blocks of V = v channels) as the arrays of one call of swapped_phases.py's kernel."""
    woff = [((np.arange(c_n)[:, None] * t_n + taps[p, :c.xoff.size // c_n][None, :]) * v).ravel()
            for p, c in enumerate(calls)]
    tiles = [c.tiles for c in calls]
    longest = max(t.group_start.size for t in tiles)
    group_start = np.array([np.pad(t.group_start, (0, longest - t.group_start.size)) for t in tiles], np.int64)
    return SwappedPhases(
        np.concatenate([c.xoff for c in calls]).astype(np.int64), np.concatenate(woff).astype(np.int64),
        np.cumsum([0] + [c.xoff.size for c in calls], dtype=np.int64), np.arange(t_n, dtype=np.int64),
        np.array([c.x_at for c in calls], np.int64), np.array([c.out_at for c in calls], np.int64),
        *(np.concatenate([getattr(t, f) for t in tiles]).astype(np.int64) for f in ("row", "col", "sel")),
        np.cumsum([0] + [t.row.size for t in tiles[:-1]], dtype=np.int64), group_start,
        task_splits(kb_n, max(t.segments for t in tiles), threads))


def run_tiled(spec, plan: TiledPlan, x, weight, bias, fill) -> np.ndarray:
    """The transposed conv by ``plan``: (N, OD, OH, OW, K) in the working dtype, from the user's x and
    weight. ``fill`` (K,): activation(bias), the output of a phase without taps."""
    dtype = working_dtype(np.dtype(spec.dtype))
    k_n = spec.out_channels
    _, sh, sw = lift3(spec.stride, 1)
    if plan.swapped is None:
        wbits = np.ascontiguousarray(weight).reshape(-1).view(f"u{weight.dtype.itemsize}")
        wsub = np.empty(plan.weight_elems, wbits.dtype)
        phase_weights(wbits, 1, spec.in_channels, k_n, plan.weight_table, plan.weight_taps, wsub)
        wsub = wsub.view(weight.dtype).astype(dtype, copy=False)
        weights = [wsub[c.w_at:c.w_at + math.prod(c.w_shape)].reshape(c.w_shape) for c in plan.calls]
    else:
        w3 = np.ascontiguousarray(np.asarray(weight).reshape(spec.in_channels, k_n, -1), dtype=dtype)
    bq = pack_bias_blocked(bias, spec, plan.shape.v, dtype).reshape(-1)
    biases = {g: np.tile(bq, g) for g in {c.w_shape[0] for c in plan.calls}}
    kernel = direct_kernel(plan.shape)
    act = ACTIVATION_CODES[spec.activation]
    qd_n, qh_n, qw_n = plan.counts
    out = np.empty((spec.batch, *lift3(spec.out_size, 1), k_n), dtype)
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    for n0, n1 in image_chunks(spec, plan.pitches[0] * dtype.itemsize):
        xq = np.empty((n1 - n0, *plan.packed_shape), dtype)
        pack_row_planar(as_working(x5[n0:n1], dtype), *plan.maps, dtype.type(0), xq)
        xflat, oflat = xq.reshape(-1), out[n0:n1].reshape(-1)
        if plan.swapped is not None:
            sp = plan.swapped
            swapped_phases_kernel(plan.shape)(
                xflat, w3, sp.xoff, sp.woff, sp.at, sp.taps, bq, oflat, sp.x_at, sp.out_at, sp.tile_row,
                sp.tile_col, sp.tile_sel, sp.tile_at, sp.group_start, n1 - n0, qd_n, qh_n, sh * qw_n, *plan.pitches,
                sw * k_n, plan.kb_n, sp.splits, act)
            continue
        for c, w in zip(plan.calls, weights):
            t = c.tiles
            kernel(xflat[c.x_at:], w, c.xoff, biases[c.w_shape[0]], oflat[c.out_at:], t.row, t.col, t.sel,
                   t.group_start, n1 - n0, qd_n, qh_n, sh * qw_n, *plan.pitches, c.g_pitch, plan.kb_n, c.splits,
                   True, act, NO_POS)
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
