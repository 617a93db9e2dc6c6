"""What the depthwise kernels of both layouts share: the fused activation as a clamp,
the interior range of output columns, and unsigned indexing."""

from __future__ import annotations

import numpy as np

from ....kernels.inline import inline_helper

# ACTIVATION_CODES (layout.py) as clamp bounds: relu is [0, inf), relu6 [0, 6].
CLAMP_BOUNDS = {None: (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0)}


@inline_helper
def clamp(v, lo, hi):
    """v clamped to [lo, hi], NaN kept (as layout.activate does); branch-free, so loops vectorize."""
    v = lo if v < lo else v
    return hi if v > hi else v


@inline_helper
def u(i):
    """An index as uint64: Numba then emits no negative-index wraparound, which blocks
    vectorization. Callers only pass non-negative indices."""
    return np.uint64(i)


def interior_columns(in_w: int, k: int, stride: int, dilation: int, pad: int, out_w: int) -> tuple[int, int]:
    """[lo, hi): the output columns whose whole window lies inside the input row.

    Columns outside it are the border, computed with clipped windows. When no column is
    interior, lo == hi, so [0, lo) and [hi, out_w) still cover each column once.
    """
    lo = min(-(-pad // stride), out_w)
    hi = (in_w - 1 + pad - (k - 1) * dilation) // stride + 1
    return lo, min(max(hi, lo), out_w)
