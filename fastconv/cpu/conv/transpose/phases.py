"""Transposed convolution on the CPU by sub-pixel (phase) decomposition (algo="phases").

With stride s, the outputs o = q * s + r of one phase r (per spatial dim) receive only
the taps k with (r + pad_begin - k * dilation) % s == 0, from input q + (r + pad_begin
- k * dilation) / s. So each phase is a stride-1 forward correlation of the input with
that subset of taps, in reversed order, at dilation dilation / gcd(stride, dilation):
the transposed conv becomes prod(stride) forward convolutions, each run by the forward
CPU implementation that ``algo="auto"`` picks for it (1x1 sub-kernels: one GEMM; the
others: the register-tiled direct kernel), with bias and activation fused. Phases
whose sub-convolutions share the input window and sub-kernel shape run as one forward
conv with their output channels stacked (U-Net's 2x2 stride 2: one GEMM); when all
phases' output channels together fit one vector (DCGAN's 3-channel last layer), all
run as one conv over the union of their windows, zeros at the taps a phase lacks. As
0 * inf is NaN, a NaN or inf input runs such phases apart instead, and a NaN or inf weight
goes to the gather form (direct.py, algo "direct"): each phase's forward conv reads
zeros past the input's edges, where a transposed conv has no term at all. Non-finite values
then land exactly where the definition (and PyTorch) puts them: an output is non-finite
only through the terms it has. Which check runs, on the operands before or on the output
after (both causes only add NaN), is whichever reads fewer elements; none where no phase's
forward conv reads zeros (U-Net's 2x2 stride 2: every term of every output is a term of the
definition).
Otherwise, where its conditions hold (ungrouped, output sizes multiples of the strides, ...),
tiled.py runs every phase in one call of swapped_phases.py's kernel (the direct kernel's register
tiles, the transposed weight packed by each task itself) with the input packed once and each
phase's outputs written straight into their interleaved places (DCGAN's 4x4 and FCN's 3x3
stride-2 layers, a strided 3x3 conv's input gradient); 1x1 sub-kernels stay one GEMM.

Input: the user's layout (channels-first or channels-last), cropped by views where a
phase starts inside it; zero padding is left to the forward kernel. A phase with no
tap, or whose window lies wholly outside the input, is bias (then activation) only.

A phase that runs alone (stride 1's one phase, or the phases of different sub-kernel shapes of a
3x3 stride-2 layer's input gradient), where the forward table gives its conv to the direct kernel:
the kernel's tasks pack their weight blocks straight from the transposed weight, taking the phase's
taps (direct.run.conv_direct_swapped, :func:`_swapped_groups`); no forward weight is built for it.

Copies, beyond what the forward kernels do themselves: the weight, once, by
:func:`phase_weights` (transposed weight (C, K/G, *k) -> each group's forward weight
(G * P * K/G, C/G, *k_sub), a blocked transpose); the forward outputs, once, into
their interleaved slots of the result (out[..., r_h::s_h, r_w::s_w]) by one fused
kernel per layout: one output-sized copy in all. Channels-last phases stacked into one
1x1 conv (U-Net's 2x2 stride 2) skip that copy where the 1x1 kernel can write each
phase's outputs in their places (conv/direct/pointwise_rows.depth_to_space_plan), and
skip phase_weights too: :func:`phase_packed` writes the blocks the kernel's tiles read
straight from the transposed weight. Stride 1 (a single phase) returns
the forward output itself. float16 is copied as bits (uint16); the forward kernels
compute it in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba import prange, uint64

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ....dispatch import choose, register, weight_heavy
from ....kernels.geometry import lift3
from ....spec.conv import resolve_conv
from ..._jit import parallel_kernel
from ...weights import all_finite
from ..direct.pointwise_rows import depth_to_space_plan, run_rows, supports_rows
from ..direct.run import conv_direct_swapped
from .phase_split import dim_phases, phase_combinations, phase_packed, phase_rows, phase_weights
from .tiled import channels_first, run_tiled, tiled_plan


class PhaseGroup(NamedTuple):
    """Phases that run as one forward conv: ``phases`` stacked along its output channels."""

    phases: tuple  # tuples of DimPhase, one per spatial dim
    spec: object  # forward ConvSpec, or None: fill the whole output with activation(bias) first
    weight_at: int  # where its forward weight starts in the buffer phase_weights fills
    crop: tuple  # (begin, end) of the input slice, per spatial dim


class PhasePlan(NamedTuple):
    groups: tuple  # PhaseGroups
    weight_table: np.ndarray  # per phase with taps: (start of its group's weight, index in group, P, taps)
    weight_taps: np.ndarray  # per phase with taps: flat kernel index of each forward tap (-1: a zero)
    weight_elems: int
    union: bool  # all phases run as one conv over the union of their windows
    padded: bool  # some phase's forward conv reads zeros past the input's edges


@cached_plan
def phase_plan(spec, union_ok: bool = True) -> PhasePlan:
    """PhaseGroups for a transposed-conv spec, phases sharing a forward geometry stacked, and where
    each phase's forward weight comes from; ``union_ok=False`` never runs the phases as one conv
    over the union of their windows. Cached: callers must not write to its arrays."""
    per_dim = [dim_phases(n, k, s, d, b, o) for n, k, s, d, (b, _), o in
               zip(spec.in_size, spec.kernel, spec.stride, spec.dilation, spec.pads, spec.out_size)]
    tapped = [[p for p in phases if p.taps is not None] for phases in per_dim]
    # Phases with no tap (any dim without one) hold activation(bias): one fill of the whole
    # output before the phases with taps write theirs, not an entry per such phase (a stride
    # far above the kernel makes nearly all of stride**nd phases tapless).
    fill = math.prod(len(phases) for phases in per_dim) > math.prod(len(phases) for phases in tapped)
    by_geometry: dict = {None: []} if fill else {}
    for combo in phase_combinations(tapped):
        by_geometry.setdefault(tuple((p.crop, p.pads, p.dilation, p.taps_n) for p in combo), []).append(combo)
    flat = np.arange(math.prod(spec.kernel)).reshape(spec.kernel)
    union = _union(spec, per_dim) if union_ok else None
    if union is not None:
        phases = phase_combinations(per_dim)
        by_geometry = {tuple(key for key, _ in union): phases}
        phase_taps = [_union_taps(spec, phase, union) for phase in phases]
    groups, table, taps, at = [], [], [], 0
    for key, phases in by_geometry.items():
        if key is None:
            groups.append(PhaseGroup(tuple(phases), None, 0, ()))
            continue
        fspec = _forward_spec(spec, key, len(phases))
        groups.append(PhaseGroup(tuple(phases), fspec, at, tuple(crop for crop, _, _, _ in key)))
        for j, phase in enumerate(phases):
            taps.append(phase_taps[j] if union is not None else flat[tuple(p.taps for p in phase)].ravel())
            table.append((at, j, len(phases), taps[-1].size))
        at += math.prod(fspec.weight_shape)
    width = max([t.size for t in taps], default=1)
    taps = np.array([np.pad(t, (0, width - t.size)) for t in taps], np.int64).reshape(-1, width)
    padded = union is not None or any(p.pads != (0, 0) for phases in tapped for p in phases)
    return PhasePlan(tuple(groups), np.array(table, np.int64).reshape(-1, 4), taps, at, union is not None, padded)


UNION_CHANNELS = 16  # stacked output channels that one vector of floats holds


def _union(spec, per_dim):
    """Per spatial dim ((crop, pads, dilation, kernel), {phase offset: its tap window's start}) of one forward
    conv over the union of every phase's window, each phase's taps in its place and zeros elsewhere; or
    None. Worth it when the phases' output channels together still fit one vector: each phase alone
    would leave most lanes of the register tile empty (DCGAN's last layer, 3 channels)."""
    n_phases = math.prod(len(phases) for phases in per_dim)
    if n_phases < 2 or spec.out_per_group * n_phases > UNION_CHANNELS:
        return None
    dims = []
    for n, phases in zip(spec.in_size, per_dim):
        if any(p.taps is None or p.dilation != 1 for p in phases) or len({p.count for p in phases}) > 1:
            return None
        lo = {p.offset: p.crop[0] - p.pads[0] for p in phases}  # input index of output 0's first tap
        first, last = min(lo.values()), max(lo[p.offset] + p.taps_n for p in phases)
        reach = last + phases[0].count - 1  # end of the input range the union reads
        begin, end = max(first, 0), min(reach, n)
        if begin >= end:
            return None
        dims.append((((begin, end), (begin - first, reach - end), 1, last - first),
                     {r: start - first for r, start in lo.items()}))
    return dims


def _union_taps(spec, phase, union):
    """Flat kernel index of each tap of the union window for one phase, -1 where the phase has none."""
    per_dim = []
    for p, k, ((_, _, _, width), starts) in zip(phase, spec.kernel, union):
        idx = np.full(width, -1, np.int64)
        start = starts[p.offset]
        idx[start:start + p.taps_n] = np.arange(k)[p.taps]
        per_dim.append(idx)
    grids = np.meshgrid(*per_dim, indexing="ij")
    valid = np.logical_and.reduce([g >= 0 for g in grids])
    flat = np.ravel_multi_index(tuple(np.where(valid, g, 0) for g in grids), spec.kernel)
    return np.where(valid, flat, -1).ravel()


def _forward_spec(spec, key, stacked: int):
    in_size = tuple(e - b for (b, e), _, _, _ in key)
    shape = (spec.batch, *in_size, spec.in_channels) if spec.channels_last else (spec.batch, spec.in_channels,
                                                                                 *in_size)
    weight = (spec.out_channels * stacked, spec.in_per_group, *(m for _, _, _, m in key))
    return resolve_conv(
        f"conv{spec.nd}d", shape, weight, padding=tuple(p for _, p, _, _ in key),
        dilation=tuple(d for _, _, d, _ in key), groups=spec.groups, has_bias=spec.has_bias,
        activation=spec.activation, channels_last=spec.channels_last, dtype=spec.dtype)


def _spatial(spec, index):
    """An index of a batched array in the spec's layout: ``index`` on the spatial axes."""
    return (slice(None), *index, slice(None)) if spec.channels_last else (slice(None), slice(None), *index)


def _bias_only(spec, bias, dtype):
    """activation(bias) per output channel, broadcastable over the spec's layout."""
    b = np.zeros(spec.out_channels, dtype) if bias is None else np.asarray(bias, dtype=dtype)
    if spec.activation is not None:
        b = np.clip(b, 0, 6 if spec.activation == "relu6" else None)
    return b if spec.channels_last else b.reshape((-1,) + (1,) * spec.nd)


@parallel_kernel
def interleave_channels_first(ys, table, out, k_n, od_n, oh_n, ow_n, sd, sh, sw, kg):
    """out, flat (N, K, OD, OH, OW): out[n, k, rd + sd*qd, rh + sh*qh, rw + sw*qw] = ys[i][n, c, qd, qh, qw]
    for each phase row (i, j, stacked, rd, rh, rw, QD, QH, QW) of ``table``; ys[i] flat (N, K * stacked, QD,
    QH, QW); c = (k // kg * stacked + j) * kg + k % kg (phases stacked within each group)."""
    plane = od_n * oh_n * ow_n
    for t in prange(out.size // plane):
        n = t // k_n
        k = t - n * k_n
        for p in range(table.shape[0]):
            y = ys[table[p, 0]]
            stacked, rd, rh, rw = table[p, 2], table[p, 3], table[p, 4], table[p, 5]
            qd_n, qh_n, qw_n = table[p, 6], table[p, 7], table[p, 8]
            c = (k // kg * stacked + table[p, 1]) * kg + k % kg
            src = (n * k_n * stacked + c) * qd_n * qh_n * qw_n
            for qd in range(qd_n):
                for qh in range(qh_n):
                    dst = t * plane + ((rd + sd * qd) * oh_n + rh + sh * qh) * ow_n + rw
                    for qw in range(qw_n):
                        out[uint64(dst + sw * qw)] = y[uint64(src + qw)]
                    src += qw_n


@parallel_kernel
def interleave_channels_last(ys, table, out, od_n, oh_n, ow_n, k_n, sd, sh, sw, kg):
    """out, flat (N, OD, OH, OW, K): out[n, rd + sd*qd, rh + sh*qh, rw + sw*qw, k] = ys[i][n, qd, qh, qw, c],
    ys[i] flat (N, QD, QH, QW, K * stacked), with the phase table and c of :func:`interleave_channels_first`."""
    groups = k_n // kg
    for t in prange(out.size // (ow_n * k_n)):
        n = t // (od_n * oh_n)
        r = t - n * (od_n * oh_n)
        od = r // oh_n
        oh = r - od * oh_n
        for p in range(table.shape[0]):
            if table[p, 3] != od % sd or table[p, 4] != oh % sh:
                continue
            y = ys[table[p, 0]]
            j, stacked, rw = table[p, 1], table[p, 2], table[p, 5]
            qd_n, qh_n, qw_n = table[p, 6], table[p, 7], table[p, 8]
            ky = k_n * stacked
            src = ((n * qd_n + od // sd) * qh_n + oh // sh) * qw_n * ky
            for qw in range(qw_n):
                dst = (t * ow_n + rw + sw * qw) * k_n
                for g in range(groups):
                    sg = src + (g * stacked + j) * kg
                    for kk in range(kg):
                        out[uint64(dst + kk)] = y[uint64(sg + kk)]
                    dst += kg
                src += ky


def _flat_bits(a):
    """A C-contiguous array as a flat array of unsigned ints of its item size (the copy moves bits)."""
    return np.ascontiguousarray(a).reshape(-1).view(f"u{a.dtype.itemsize}")


@register("conv_transpose", "cpu", "phases",
          note="one forward conv per output phase (sub-pixel decomposition), by the forward kernels")
def conv_transpose_phases(spec, x, weight, bias):
    """Two things make a NaN here that the definition does not: a NaN or inf weight meeting a phase's
    zero pads, and (union plan) a NaN or inf input meeting the union's zero taps. Both only add NaN,
    so a finite output needs no second look: the cheaper of the two checks runs, the operands before
    (one pass over the weight, and the input for a union plan) or the output after; none when no
    forward conv reads zeros."""
    plan = phase_plan(spec)
    if not plan.padded:
        return _phases(spec, plan, x, weight, bias)
    after = math.prod(spec.output_shape) < weight.size + (x.size if plan.union else 0)
    if not after:
        exact = _nonfinite_route(spec, plan, x, weight, bias)
        if exact is not None:
            return exact()
    out = _phases(spec, plan, x, weight, bias)
    if after and not all_finite(out):
        exact = _nonfinite_route(spec, plan, x, weight, bias)
        if exact is not None:
            return exact()
    return out


def _nonfinite_route(spec, plan, x, weight, bias):
    """The exact computation when the operands hold NaN or inf where the phases would misplace it, else None:
    a non-finite weight goes to the gather form, a non-finite input of a union plan to the phases apart."""
    if not all_finite(weight):
        from .direct import conv_transpose_direct

        return lambda: conv_transpose_direct(spec, x, weight, bias)
    if plan.union and not all_finite(x):
        return lambda: _phases(spec, phase_plan(spec, False), x, weight, bias)
    return None


def _phases(spec, plan, x, weight, bias):
    dtype = np.dtype(spec.dtype)
    if not plan.union:
        out = _interleaved_in_kernel(spec, x, weight, bias)
        if out is not None:
            return out
    first = plan.groups[0]
    if _depth_to_space(spec, plan):
        interleaved = depth_to_space_plan(first.spec, spec.stride, spec.output_shape)
        if interleaved is not None:  # the 1x1 kernel writes each phase's outputs in their places
            packed = np.empty(plan.weight_elems, weight.dtype)
            phase_packed(_flat_bits(weight), spec.in_channels, plan.weight_taps[:, 0], interleaved.shape.v,
                         _flat_bits(packed))
            return _forward(spec, first, x, None, weight, bias, None,
                            lambda xs, _, b: run_rows(interleaved, xs, packed, b))
    g, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    swapped = _swapped_groups(spec, plan.union)
    wsub = None
    if _stacked_gemm(spec, plan):  # the GEMM reads the stacked weight as a transposed view: no transpose
        wsub = np.empty((spec.in_channels, plan.weight_elems // spec.in_channels), weight.dtype)
        phase_rows(_flat_bits(weight), spec.in_channels, plan.weight_taps[:, 0], _flat_bits(wsub))
        wsub = wsub.T
    elif len(swapped.rows):
        wbits = _flat_bits(weight)
        wsub = np.empty(plan.weight_elems, wbits.dtype)
        phase_weights(wbits, g, cg, kg, plan.weight_table[swapped.rows], plan.weight_taps[swapped.rows], wsub)
        wsub = wsub.view(dtype)
    if len(plan.groups) == 1 and len(first.phases) == 1 and first.spec is not None:  # stride 1: one forward conv
        return _forward(spec, first, x, wsub, weight, bias, swapped.pos[0])
    if _depth_to_space(spec, plan):
        return _depth_to_space_copy(spec, _forward(spec, first, x, wsub, weight, bias, None))
    out = np.empty(spec.output_shape, dtype)
    ys, table = [], []
    for group, pos in zip(plan.groups, swapped.pos):
        if group.spec is None:  # the tapless phases; the phases with taps overwrite their places below
            out[...] = _bias_only(spec, bias, working_dtype(dtype)).astype(dtype)
            continue
        for j, phase in enumerate(group.phases):
            table.append((len(ys), j, len(group.phases), *lift3([p.offset for p in phase], 0),
                          *lift3([p.count for p in phase], 1)))
        ys.append(_flat_bits(_forward(spec, group, x, wsub, weight, bias, pos)))
    if ys:
        args = (tuple(ys), np.array(table, np.int64), _flat_bits(out))
        sizes = lift3(spec.out_size, 1)
        if spec.channels_last:
            interleave_channels_last(*args, *sizes, spec.out_channels, *lift3(spec.stride, 1), kg)
        else:
            interleave_channels_first(*args, spec.out_channels, *sizes, *lift3(spec.stride, 1), kg)
    return out


class SwappedGroups(NamedTuple):
    pos: tuple  # per PhaseGroup: its taps' reduction steps for direct.run.conv_direct_swapped, or None
    rows: np.ndarray  # the rows of PhasePlan.weight_table whose forward weights phase_weights builds


@cached_plan
def _swapped_groups(spec, union_ok: bool = True) -> SwappedGroups:
    """Which PhaseGroups run as the direct kernel packing its weight blocks from the transposed weight
    itself (no forward weight built first): a group of one phase whose forward conv the forward table
    gives to the direct kernel; pos[t] is the step of flat tap t in that phase's sub-kernel (-1: a tap
    it does not take). The other groups' forward weights come from phase_weights. ``union_ok``: that of
    the phase_plan run (a plan that is not a union is the same either way)."""
    plan = phase_plan(spec, union_ok)
    flat = np.arange(math.prod(spec.kernel)).reshape(spec.kernel)
    positions, rows, row = [], [], 0
    for group in plan.groups:
        if group.spec is None:
            positions.append(None)
            continue
        pos = None
        if (not plan.union and len(group.phases) == 1 and not supports_rows(group.spec)
                and choose("conv", "cpu", group.spec).algo == "direct"):
            taps = flat[tuple(p.taps for p in group.phases[0])].ravel()
            pos = np.full(flat.size, -1, np.int64)
            pos[taps] = np.arange(taps.size)
        else:
            rows += range(row, row + len(group.phases))
        positions.append(pos)
        row += len(group.phases)
    return SwappedGroups(tuple(positions), np.array(rows, np.int64))


def _stacked_gemm(spec, plan) -> bool:
    """Whether the phases are one channels-first, ungrouped 1x1 conv of every phase stacked (U-Net's 2x2
    stride 2), not dispatch.weight_heavy, that the GEMM (conv/gemm.py) runs: its weight (P * K, C) is then a
    transposed view of phase_rows' (C, P * K)."""
    group = plan.groups[0]
    return (not spec.channels_last and spec.groups == 1 and not plan.union and len(plan.groups) == 1
            and group.spec is not None and len(group.phases) > 1 and plan.weight_taps.shape[1] == 1
            and not weight_heavy(group.spec))


DEPTH_TO_SPACE_CHANNELS = 16  # fewer output channels: runs too short for NumPy's copy; the interleave kernel


def _depth_to_space(spec, plan) -> bool:
    """Whether the phases are one channels-last forward conv, ungrouped, its channels every phase's K stacked
    in phase order (U-Net's 2x2 stride 2), with equal output counts: the interleave is then a depth-to-space
    copy whose runs are s_w * K long."""
    group = plan.groups[0]
    return (spec.channels_last and spec.groups == 1 and spec.out_channels >= DEPTH_TO_SPACE_CHANNELS
            and len(plan.groups) == 1 and group.spec is not None and len(group.phases) == math.prod(spec.stride)
            and not any(o % s for o, s in zip(spec.out_size, spec.stride)))


def _depth_to_space_copy(spec, y):
    """out[n, q_d*s_d + r_d, ..., q_w*s_w + r_w, k] = y[n, q_d, ..., q_w, ((r_d * s_h + r_h) * s_w + r_w) * K + k]
    for y (N, *Q, prod(s) * K), channels-last: one NumPy copy (measured 2x faster than the interleave kernel
    on U-Net's 112x112x128 output, whose K-long runs it copies one at a time)."""
    nd, k_n = spec.nd, spec.out_channels
    q = [o // s for o, s in zip(spec.out_size, spec.stride)]
    out = np.empty(spec.output_shape, y.dtype)
    # out as (N, Q_1, s_1, ..., Q_nd, s_nd * K) and y as (N, Q_1, ..., Q_nd, s_1, ..., s_nd * K)
    dst = out.reshape(spec.batch, *[v for qs in zip(q, spec.stride[:-1]) for v in qs], q[-1], spec.stride[-1] * k_n)
    src = y.reshape(spec.batch, *q, *spec.stride[:-1], spec.stride[-1] * k_n)
    order = [0] + [a for i in range(nd - 1) for a in (1 + i, 1 + nd + i)] + [nd, 2 * nd]
    np.copyto(dst, src.transpose(order))
    return out


def _interleaved_in_kernel(spec, x, weight, bias):
    """The phases by tiled.py (the direct kernel writing each phase's outputs in their
    interleaved places), or None where its conditions do not hold."""
    tiled = tiled_plan(spec, numba.get_num_threads())
    if tiled is None:
        return None
    dtype = np.dtype(spec.dtype)
    out = run_tiled(spec, tiled, x, weight, bias, _bias_only(spec, bias, working_dtype(dtype)).reshape(-1))
    if not spec.channels_last:
        first = np.empty((spec.batch, spec.out_channels, *spec.out_size), out.dtype)
        channels_first(out.reshape(-1), first.reshape(-1), spec.batch, math.prod(spec.out_size), spec.out_channels)
        out = first
    return out.reshape(spec.output_shape).astype(dtype, copy=False)


def _forward(spec, group, x, wsub, weight, bias, pos, run=None):
    """The forward conv of a PhaseGroup, in the user's layout: (N, G * P * K/G, *Q) channels-first; with
    ``pos``, by the direct kernel packing its weight blocks from the transposed weight itself;
    ``run(x, w, bias)``: run by that instead of the forward conv auto picks."""
    g, kg, p_n = spec.groups, spec.out_per_group, len(group.phases)
    xs = x[_spatial(spec, (slice(*crop) for crop in group.crop))]
    if pos is not None:
        return conv_direct_swapped(group.spec, xs, weight, bias, pos)
    shape = group.spec.weight_shape
    w = None
    if wsub is not None:  # phase_weights' buffer, or (_stacked_gemm) the group's (P * K, C) weight itself
        w = wsub.reshape(shape) if wsub.ndim == 2 else wsub[group.weight_at:group.weight_at + math.prod(shape)].reshape(
            shape)
    b = None
    if bias is not None:
        b = np.broadcast_to(np.asarray(bias).reshape(g, 1, kg), (g, p_n, kg)).reshape(-1)
    if run is not None:
        return run(xs, w, b)
    algo = "gemm" if wsub is not None and wsub.ndim == 2 else "auto"  # _stacked_gemm: the view is the GEMM's
    return choose("conv", "cpu", group.spec, algo).fn(group.spec, xs, w, b)
