"""Weight packing for the CPU kernels: output channels innermost, so the inner loop
runs over consecutive output channels of one group."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._threads import balanced, restore
from ..kernels.geometry import lift3
from ..kernels.inline import inline_helper
from ._jit import parallel_kernel, serial_kernel

# Elements per task of the parallel finiteness check (a few hundred KB: worth a thread).
FINITE_BLOCK = 1 << 16


@inline_helper
def _finite_range(flat, lo, hi):
    """Whether flat[lo:hi] (lo < hi) holds no NaN or inf: x * 0 is 0 for finite x, NaN otherwise.
    Four sums side by side (one sum's chain of dependent adds took 4 cycles an element; measured
    2x faster, eight sums no faster than four)."""
    a = flat[lo] * 0
    b, c, d = a, a, a
    end = lo + 1 + (hi - lo - 1) // 4 * 4
    for i in range(lo + 1, end, 4):
        a += flat[i] * 0
        b += flat[i + 1] * 0
        c += flat[i + 2] * 0
        d += flat[i + 3] * 0
    for i in range(end, hi):
        a += flat[i] * 0
    return a + b + c + d == 0


@serial_kernel
def _finite_serial(flat):
    return _finite_range(flat, 0, flat.size)


@parallel_kernel
def _finite_parallel(flat, block, flags):
    n_blocks = flags.size
    previous = balanced(n_blocks)
    for b in prange(n_blocks):
        flags[b] = _finite_range(flat, b * block, min((b + 1) * block, flat.size))
    restore(previous)


def all_finite(a) -> bool:
    """Whether ``a`` holds no NaN or inf: the sum of ``x * 0`` over it is 0 (NaN when any x is
    not finite; one vectorised pass, no temporary, exact). Large arrays are checked in parallel
    on fastconv's threads (a BLAS dot product would wake OpenBLAS's own pool). float16 sums in
    float32.

    Kernels that skip the taps reading zero padding (depthwise and taps, their implicit
    padding; the phases of a transposed conv, whose forward convs read zeros where a
    transposed conv has no term) check their weight with it: a NaN or inf weight must meet
    the padded zeros of a forward conv (0 * inf is NaN, as in PyTorch and the reference) and
    must not meet the phases' zeros."""
    if a.size == 0:
        return True
    if a.dtype == np.float16:
        return bool(np.isfinite(np.sum(a, dtype=np.float32)))
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.size <= FINITE_BLOCK:
        return bool(_finite_serial(flat))
    flags = np.empty(-(-flat.size // FINITE_BLOCK), np.bool_)
    _finite_parallel(flat, FINITE_BLOCK, flags)
    return bool(flags.all())


def _lifted(weight, spec):
    """Weight with kernel dims lifted to 3: (A, B, KD, KH, KW)."""
    kd, kh, kw = lift3(spec.kernel, 1)
    return np.asarray(weight).reshape(weight.shape[0], weight.shape[1], kd, kh, kw)


def pack_conv_weight(weight, spec, dtype) -> np.ndarray:
    """(K, C/G, *k) -> (G, KD, KH, KW, C/G, K/G), contiguous, working dtype."""
    w = _lifted(weight, spec)
    g, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    w = w.reshape(g, kg, cg, *w.shape[2:]).transpose(0, 3, 4, 5, 2, 1)
    return np.ascontiguousarray(w, dtype=dtype)


def pack_transposed_weight(weight, spec, dtype) -> np.ndarray:
    """(C, K/G, *k) -> (G, KD, KH, KW, C/G, K/G), contiguous, working dtype."""
    w = _lifted(weight, spec)
    g, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    w = w.reshape(g, cg, kg, *w.shape[2:]).transpose(0, 3, 4, 5, 1, 2)
    return np.ascontiguousarray(w, dtype=dtype)


def pack_depthwise_weight(weight, spec, dtype, channels_last: bool = True) -> np.ndarray:
    """(C*M, 1, *k) -> (taps, C*M) (channels_last) or (C*M, taps), taps = KD*KH*KW in that
    order; C-contiguous, working dtype, always a new writeable array."""
    w = np.asarray(weight).reshape(spec.out_channels, -1)
    return np.array(w.T if channels_last else w, dtype=dtype, order="C")


def grouped_weight(weight, spec, dtype) -> np.ndarray:
    """(K, C/G, *k) -> (G, K/G, C/G * taps), C-contiguous, working dtype (a view when it can be).

    The direct kernel's tasks pack it block by block into the register tile's order,
    (C/G * taps, V) for each block of V output channels, zero-padded past K/G
    (vector.fma_tile.pack_weight_block): out[r * V + j] = w[g, kb*V + j, r].
    """
    g, kg = spec.groups, spec.out_per_group
    return np.ascontiguousarray(np.asarray(weight).reshape(g, kg, -1), dtype=dtype)


def pack_bias_blocked(bias, spec, v: int, dtype) -> np.ndarray:
    """(K,) or None -> (G, KB*V), KB = ceil((K/G) / V), zero-padded like the weight blocks."""
    g, kg = spec.groups, spec.out_per_group
    out = np.zeros((g, -(-kg // v) * v), dtype)
    if bias is not None:
        out[:, :kg] = np.asarray(bias).reshape(g, kg)
    return out
