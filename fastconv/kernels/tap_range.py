"""Which outputs of one dim a tap reads the input for, for kernels that skip the taps
that would read padding (the weight gradients' depthwise and tiled kernels)."""

from __future__ import annotations

from .inline import inline_helper


@inline_helper
def reading_outputs(o_n, n, off, s):
    """[lo, hi): the outputs o (of o_n) whose input position o * s + off lies in [0, n)."""
    lo = 0 if off >= 0 else (s - 1 - off) // s
    hi = min(o_n, (n - 1 - off) // s + 1) if n - 1 - off >= 0 else 0
    return lo, max(lo, hi)
