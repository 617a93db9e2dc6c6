"""The phases of a transposed convolution: per spatial dim, which taps and input window
each output phase r (outputs r, r + s, ...) takes, and the forward weights of the phases.

Shared by the phase-by-phase route (:mod:`.phases`) and the tiled route (:mod:`.tiled`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from numba import prange, uint64

from ..._jit import parallel_kernel


class DimPhase(NamedTuple):
    """One phase along one spatial dim: the taps, input window and forward geometry."""

    offset: int  # first output position, r
    count: int  # output positions r, r + s, ... (Q)
    taps: slice | None  # kernel indices in forward (reversed) order; None: no tap reaches the input
    taps_n: int
    crop: tuple  # (begin, end) of the input slice
    pads: tuple  # zero pads (begin, end) of the forward conv
    dilation: int


def dim_phases(n: int, k: int, s: int, d: int, pad_begin: int, out: int) -> list[DimPhase]:
    """The s phases of one spatial dim (input n, kernel k, ...; output size ``out``)."""
    step = s // math.gcd(s, d)  # tap spacing within a phase
    d_f = d // math.gcd(s, d)
    phases = []
    for r in range(min(s, out)):  # phases r >= out have no outputs (a stride of 2**31 must not loop that long)
        count = -(-(out - r) // s)
        if count == 0:
            continue
        taps = [t for t in range(k) if (r + pad_begin - t * d) % s == 0]
        if not taps:
            phases.append(DimPhase(r, count, None, 0, (0, 0), (0, 0), 1))
            continue
        e_min = (r + pad_begin - taps[-1] * d) // s
        lo, hi = e_min, count + e_min + (len(taps) - 1) * d_f  # input range [lo, hi) the phase reads
        begin, end = max(lo, 0), min(hi, n)
        if begin >= end:
            phases.append(DimPhase(r, count, None, 0, (0, 0), (0, 0), 1))
            continue
        sel, d_sub = slice(taps[-1], None, -step), d_f if len(taps) > 1 else 1
        phases.append(DimPhase(r, count, sel, len(taps), (begin, end), (begin - lo, hi - end), d_sub))
    return phases


def phase_combinations(per_dim):
    """Every combination of one phase per dim, first dim slowest."""
    combos = [()]
    for phases in per_dim:
        combos = [c + (p,) for c in combos for p in phases]
    return combos


@parallel_kernel
def phase_weights(w, g_n, cg, kg, table, taps, out):
    """The forward weight of every phase group, from w, flat (G, C/G, K/G, T).

    For phase row (at, p, P, T') of ``table``, out[at:] holds its group's (G, P, K/G, C/G, T') weight:
    [g, p, kk, ci, j] = w[g, ci, kk, taps[row, j]], 0 where that is -1. A transpose of (C/G, K/G), in
    16 x 16 blocks so that reads follow 16 sequential streams and writes fill whole runs.
    """
    t_n = w.size // (g_n * cg * kg)
    kb_n = (kg + 15) // 16
    for task in prange(g_n * kb_n):
        g = task // kb_n
        k0 = (task - g * kb_n) * 16
        for c0 in range(0, cg, 16):
            c_n = min(c0 + 16, cg) - c0
            for r in range(table.shape[0]):  # phases of one tap (a stacked 1x1 conv's): strided copies
                at, p, p_n, t_sub = table[r, 0], table[r, 1], table[r, 2], table[r, 3]
                if t_sub == 1 and taps[r, 0] >= 0:
                    for kk in range(k0, min(k0 + 16, kg)):
                        dst = at + ((g * p_n + p) * kg + kk) * cg + c0
                        src = ((g * cg + c0) * kg + kk) * t_n + taps[r, 0]
                        for ci in range(c_n):
                            out[uint64(dst + ci)] = w[uint64(src + ci * kg * t_n)]
            for kk in range(k0, min(k0 + 16, kg)):
                for r in range(table.shape[0]):
                    at, p, p_n, t_sub = table[r, 0], table[r, 1], table[r, 2], table[r, 3]
                    if t_sub == 1 and taps[r, 0] >= 0:
                        continue
                    dst = at + (((g * p_n + p) * kg + kk) * cg + c0) * t_sub
                    for ci in range(c0, c0 + c_n):
                        src = ((g * cg + ci) * kg + kk) * t_n
                        for j in range(t_sub):
                            t = taps[r, j]
                            out[uint64(dst + j)] = w[uint64(src + t)] if t >= 0 else 0
                        dst += t_sub


@parallel_kernel
def phase_packed(w, c_n, taps, v, out):
    """The forward weight of ungrouped phases of one tap each stacked into one 1x1 conv (U-Net's 2x2
    stride 2) as the 1x1 kernel packs it (conv/direct/pointwise_rows, RowsPlan.packed): out, flat
    (P, K/V, C, V) = w[c, kb * V + j, taps[p]], w flat (C, K, T), K a multiple of V. A task reads the
    rows of a block of V channels of w once for all phases: no forward weight built (phase_weights'
    (P * K, C) is a transpose, which the kernel's packing then transposed back)."""
    p_n = taps.size
    kb_n = out.size // (p_n * c_n * v)
    t_n = w.size // (c_n * kb_n * v)
    for kb in prange(kb_n):
        for c in range(c_n):
            src = (c * kb_n + kb) * v * t_n
            for p in range(p_n):
                dst = ((p * kb_n + kb) * c_n + c) * v
                t = taps[p]
                for j in range(v):
                    out[uint64(dst + j)] = w[uint64(src + j * t_n + t)]


@parallel_kernel
def phase_rows(w, c_n, taps, out):
    """The same stacked 1x1 weight for the GEMM of channels-first phases: out, flat (C, P, K) =
    w[c, k, taps[p]], whose transpose (a view) is the forward weight (P * K, C) phase_weights builds."""
    p_n = taps.size
    k_n = out.size // (c_n * p_n)
    t_n = w.size // (c_n * k_n)
    for c in prange(c_n):
        for p in range(p_n):
            src = c * k_n * t_n + taps[p]
            dst = (c * p_n + p) * k_n
            for k in range(k_n):
                out[uint64(dst + k)] = w[uint64(src + k * t_n)]
