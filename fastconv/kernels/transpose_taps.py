"""The gather form of transposed convolution: which input each output reads through a tap."""

from __future__ import annotations

from .inline import inline_helper


@inline_helper
def source_position(o, pad_begin, k, dilation, stride, size):
    """Input index that output position o receives through tap k, or -1."""
    t = o + pad_begin - k * dilation
    if t < 0:
        return -1
    i = t // stride  # one division: on a GPU each is a subroutine call
    if i * stride != t:
        return -1
    return i if i < size else -1
