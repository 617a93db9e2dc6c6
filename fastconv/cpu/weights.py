"""Weight packing for the CPU kernels: output channels innermost, so the inner loop
runs over consecutive output channels of one group."""

from __future__ import annotations

import numpy as np

from ..kernels.geometry import lift3
from ._jit import serial_kernel


@serial_kernel
def _finite(flat):
    """Whether flat holds no NaN or inf: no element's exponent bits are all set. A max over
    integers, which LLVM vectorises (a sum of x * 0 cannot be reordered: it took 0.73 ms
    single-threaded on a 4.7 MB weight, this 0.18)."""
    if flat.itemsize == 4:
        bits32 = flat.view(np.uint32)
        top32 = np.uint32(0)
        for i in range(flat.size):
            top32 = max(top32, bits32[i] & np.uint32(0x7F800000))
        return top32 != np.uint32(0x7F800000)
    bits64 = flat.view(np.uint64)
    top64 = np.uint64(0)
    for i in range(flat.size):
        top64 = max(top64, bits64[i] & np.uint64(0x7FF0000000000000))
    return top64 != np.uint64(0x7FF0000000000000)


def all_finite(a) -> bool:
    """Whether ``a`` holds no NaN or inf: one vectorised pass over its bits on the calling
    thread, no temporary (0.16 ms for a 4.7 MB weight; the same pass as a parallel kernel was
    not vectorised and took 0.55 ms on two threads). float16 sums in float32.

    Kernels that skip the taps reading zero padding (depthwise and taps, their implicit
    padding; the phases of a transposed conv, whose forward convs read zeros where a
    transposed conv has no term) check their weight with it: a NaN or inf weight must meet
    the padded zeros of a forward conv (0 * inf is NaN, as in PyTorch and the reference) and
    must not meet the phases' zeros."""
    if a.size == 0:
        return True
    if a.dtype == np.float16:
        return bool(np.isfinite(np.sum(a, dtype=np.float32)))
    return bool(_finite(np.ascontiguousarray(a).reshape(-1)))


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
