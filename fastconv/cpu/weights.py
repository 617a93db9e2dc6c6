"""Weight packing for the CPU kernels: output channels innermost, so the inner loop
runs over consecutive output channels of one group."""

from __future__ import annotations

import numpy as np

from .layout import lift3


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


def pack_depthwise_weight(weight, spec, dtype) -> np.ndarray:
    """(C*M, 1, *k) -> (KD, KH, KW, C*M), contiguous, working dtype."""
    w = _lifted(weight, spec)[:, 0]
    return np.ascontiguousarray(w.transpose(1, 2, 3, 0), dtype=dtype)
