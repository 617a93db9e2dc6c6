"""Weight packing for the CPU kernels: output channels innermost, so the inner loop
runs over consecutive output channels of one group."""

from __future__ import annotations

import math

import numpy as np

from .layout import lift3


def all_finite(a) -> bool:
    """Whether ``a`` holds no NaN or inf: its sum of squares is finite (one pass, no temporary; a sum
    that overflows says no, which only sends the call to a slower exact path). float16 sums in float32.

    Kernels that skip the taps reading zero padding (depthwise and taps, their implicit
    padding; the phases of a transposed conv, whose forward convs read zeros where a
    transposed conv has no term) check their weight with it: a NaN or inf weight must meet
    the padded zeros of a forward conv (0 * inf is NaN, as in PyTorch and the reference) and
    must not meet the phases' zeros."""
    if a.dtype == np.float16:
        return bool(np.isfinite(np.sum(a, dtype=np.float32)))
    flat = a.reshape(-1)
    return math.isfinite(flat @ flat)  # sum of squares by BLAS: faster than np.sum on small weights


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
    (conv_direct_microkernel.pack_weight_block): out[r * V + j] = w[g, kb*V + j, r].
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
