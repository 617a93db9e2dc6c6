"""Transposed convolution's phases run by the direct kernel, each writing its outputs straight
into their interleaved places of a channels-last result (no per-phase output, no interleave).

Phase (r_d, r_h, r_w) of a transposed conv with strides (1, s_h, s_w) is a stride-1 forward
correlation (conv_transpose_phases.dim_phases) whose output q goes to o = q * s + r. When every
phase has the same output counts Q (each output size a multiple of its stride), one channels-last
output (N, OD, OH, OW, K) seen from phase r's first element is the direct kernel's channels-last
output (N, QD, QH, OW', K') with K' = s_w * K output channels and rows of OW' = s_h * QW pixels:
pixel q_w is K' = s_w * K elements after q_w - 1, row q_h is s_h * OW * K after q_h - 1, and an
image is QD * QH * OW' * K' = OD * OH * OW * K long. So the compiled direct kernel
(conv_direct_tiled.direct_kernel, the forward convolutions' own specialisations: nothing more to
compile) runs each phase when told of K' channels while computing only the phase's K
(kb_n = K / V channel blocks), given:

- the input packed once for all phases (row-planar, stride 1: (N, Dp, Hp, C, 1, WQ)) over the
  union of the phases' windows, zeros where they pass the input's edges; a phase reads it from
  its own window's start;
- a (1, K', C * taps) view of the phase's forward weight (the rows past K are never read);
- the output from the phase's first element.

Conditions (:func:`tiled_plan` returns None otherwise and the caller takes another path):
ungrouped, depth stride 1, output sizes multiples of the strides, K a multiple of the kernel's
channel block V (else the last block's padding lanes would be stored over the next phase's
channels). Phases without taps (kernel shorter than the stride) are bias (then activation) only.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import prange, uint64

from .._arrays import working_dtype
from .._jit import parallel_kernel
from .conv_direct_tiled import (
    L1_BYTES,
    PlaneTiles,
    TileShape,
    direct_kernel,
    pack_row_planar,
    plane_tiles,
    task_splits,
    tile_shape,
)
from .conv_transpose_phases import _product, dim_phases, phase_weights
from .layout import ACTIVATION_CODES, as_working, channels_last_5d, geometry3, image_chunks, lift3
from .weights import pack_bias_blocked


class TiledPhase(NamedTuple):
    x_at: int  # first element of its window in a packed image
    out_at: int  # its first output element in a channels-last image
    xoff: np.ndarray  # reduction step -> input offset, as conv_direct_tiled.reduction_offsets
    w_at: int  # its forward weight (K, C * taps) in the buffer phase_weights fills
    steps: int  # C * taps
    tiles: PlaneTiles
    splits: int  # task_splits of its channel blocks


class TiledPlan(NamedTuple):
    shape: TileShape
    maps: tuple  # source index maps of the packed input's depth, height and (1, WQ) columns
    packed_shape: tuple  # one packed image: (Dp, Hp, C, 1, WQ)
    pitches: tuple  # image, depth, row of the packed input
    counts: tuple  # (QD, QH, QW), every phase's output counts
    phases: tuple  # TiledPhases
    bias_only: tuple  # per phase without taps: its offsets (r_d, r_h, r_w)
    weight_table: np.ndarray  # phase_weights' table: one group of one phase per phase with taps
    weight_taps: np.ndarray
    weight_elems: int  # including the tail the last phase's (1, K', steps) view spans
    kb_n: int


@functools.lru_cache(maxsize=256)
def tiled_plan(spec, threads: int) -> TiledPlan | None:
    """The plan of a transposed-conv spec, or None when the conditions above do not hold. Cached:
    callers must not write to its arrays."""
    geom = geometry3(spec)
    k_n, c_n = spec.out_channels, spec.in_channels
    dtype = working_dtype(np.dtype(spec.dtype)).name
    shape = tile_shape(k_n, dtype)
    if (spec.groups != 1 or geom.stride[0] != 1 or math.prod(spec.stride) < 2 or k_n % shape.v
            or any(o % s for o, s in zip(geom.out_size, geom.stride)) or spec.padding_mode != "zeros"):
        return None
    per_dim = [dim_phases(n, k, s, d, b, o) for n, k, s, d, (b, _), o in
               zip(geom.in_size, geom.kernel, geom.stride, geom.dilation, geom.pads, geom.out_size)]
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
    flat = np.arange(math.prod(geom.kernel)).reshape(geom.kernel)
    phases, bias_only, table, taps, at = [], [], [], [], 0
    for combo in _product(per_dim):
        offsets = tuple(p.offset for p in combo)
        if any(p.taps is None for p in combo):
            bias_only.append(offsets)
            continue
        start = [p.crop[0] - p.pads[0] - a for p, a in zip(combo, lo)]
        kd, kh, kw = (np.arange(p.taps_n) * p.dilation for p in combo)
        xoff = (np.arange(c_n)[:, None, None, None] * wq + kd[None, :, None, None] * pitches[1]
                + kh[None, None, :, None] * row + kw[None, None, None, :])
        steps = xoff.size
        tiles = plane_tiles(*counts, shape, steps * shape.v * np.dtype(dtype).itemsize > L1_BYTES)
        x_at = start[0] * pitches[1] + start[1] * row + start[2]
        # the tiles read and write raw pointers: the last element each reaches must lie inside its image
        assert x_at + (counts[0] - 1) * pitches[1] + (counts[1] - 1) * row + counts[2] - 1 + xoff.max() < pitches[0]
        out_at = ((offsets[0] * oh_n + offsets[1]) * ow_n + offsets[2]) * k_n
        assert out_at + (((counts[0] - 1) * counts[1] + counts[1] - 1) * geom.stride[1] * ow_n
                         + (counts[2] - 1) * geom.stride[2] + 1) * k_n <= math.prod(geom.out_size) * k_n
        phases.append(TiledPhase(x_at, out_at, np.ascontiguousarray(xoff.reshape(-1)), at, steps, tiles,
                                 task_splits(k_n // shape.v, tiles.group_start.size - 1, threads)))
        taps.append(flat[tuple(p.taps for p in combo)].ravel())
        table.append((at, 0, 1, taps[-1].size))
        at += k_n * steps
    if not phases or all(p.steps == c_n for p in phases):  # 1x1 sub-kernels: one GEMM is faster
        return None
    width = max(t.size for t in taps)
    taps = np.array([np.pad(t, (0, width - t.size)) for t in taps], np.int64)
    tail = (geom.stride[2] - 1) * k_n * max(p.steps for p in phases)  # the (1, K', steps) views
    return TiledPlan(shape, tuple(maps[:2]) + (maps[2].reshape(1, -1),), (dp, hp, c_n, 1, wq), pitches, counts,
                     tuple(phases), tuple(bias_only), np.array(table, np.int64), taps, at + tail, k_n // shape.v)


def run_tiled(spec, plan: TiledPlan, x, weight, bias, fill) -> np.ndarray:
    """The transposed conv by ``plan``: (N, OD, OH, OW, K) in the working dtype, from the user's x and
    weight. ``fill`` (K,): activation(bias), the output of a phase without taps."""
    dtype = working_dtype(np.dtype(spec.dtype))
    k_n = spec.out_channels
    _, sh, sw = lift3(spec.stride, 1)
    wbits = np.ascontiguousarray(weight).reshape(-1).view(f"u{weight.dtype.itemsize}")
    wsub = np.empty(plan.weight_elems, wbits.dtype)
    phase_weights(wbits, 1, spec.in_channels, k_n, plan.weight_table, plan.weight_taps, wsub)
    wsub = wsub.view(weight.dtype).astype(dtype, copy=False)
    weights = [wsub[p.w_at:p.w_at + sw * k_n * p.steps].reshape(1, sw * k_n, p.steps) for p in plan.phases]
    bq = pack_bias_blocked(bias, spec, plan.shape.v, dtype).reshape(-1)
    kernel = direct_kernel(plan.shape)
    act = ACTIVATION_CODES[spec.activation]
    qd_n, qh_n, qw_n = plan.counts
    out = np.empty((spec.batch, *lift3(spec.out_size, 1), k_n), dtype)
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    for n0, n1 in image_chunks(spec, plan.pitches[0] * dtype.itemsize):
        xq = np.empty((n1 - n0, *plan.packed_shape), dtype)
        pack_row_planar(as_working(x5[n0:n1], dtype), *plan.maps, dtype.type(0), xq)
        xflat, oflat = xq.reshape(-1), out[n0:n1].reshape(-1)
        for p, w in zip(plan.phases, weights):
            t = p.tiles
            kernel(xflat[p.x_at:], w, p.xoff, bq, oflat[p.out_at:], t.row, t.col, t.sel, t.group_start, n1 - n0,
                   qd_n, qh_n, sh * qw_n, *plan.pitches, 0, plan.kb_n, p.splits, True, act)
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
